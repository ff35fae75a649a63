"""The garbage collector's settings of a long-running revflow process (``serve``, ``worker``).

Two changes from CPython's defaults, made once the process has loaded what it keeps:

- Everything alive then (modules, the app, compiled statements and schemas) lives as long as
  the process: ``gc.freeze`` keeps it out of the collector's passes, which otherwise walk it
  again and again (the worker spends ~15 % less CPU on the same steps).
- The youngest generation is collected after ``YOUNG_THRESHOLD`` net allocations of tracked
  objects instead of 700. A request that validates a 200-step definition holds tens of
  thousands of containers at once, nearly all freed by reference counting when it ends; at
  700 the collector ran during nearly every such request and, one request in about twelve,
  passed over the middle generation too (0.4-0.75 ms each, in the slowest tenth of
  creates). At 20,000 those passes are rare, and what cyclic garbage can pile up before one
  comes is bounded by the same count.
"""

from __future__ import annotations

import gc

YOUNG_THRESHOLD = 20_000


def settle() -> None:
    """Freeze what the process has loaded and raise the youngest generation's threshold."""
    gc.collect()
    gc.freeze()
    _, middle, oldest = gc.get_threshold()
    gc.set_threshold(YOUNG_THRESHOLD, middle, oldest)
