"""A long-running process's collector: what it loaded frozen, the youngest generation
collected less often (``revflow.kit.collector``)."""

from __future__ import annotations

import gc
from collections.abc import Iterator

import pytest

from revflow.kit import collector


@pytest.fixture
def restored() -> Iterator[None]:
    thresholds = gc.get_threshold()
    yield
    gc.unfreeze()
    gc.set_threshold(*thresholds)


@pytest.mark.usefixtures("restored")
def test_settle_freezes_what_is_loaded_and_raises_the_young_threshold() -> None:
    kept = [[index] for index in range(1000)]
    _, middle, oldest = gc.get_threshold()
    collector.settle()
    assert gc.get_threshold() == (collector.YOUNG_THRESHOLD, middle, oldest)
    assert gc.get_freeze_count() >= len(kept)
    # A request's worth of containers, freed as it ends, leaves no pass of the collector.
    passes: list[int] = []

    def seen(phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            passes.append(info["generation"])

    gc.callbacks.append(seen)
    try:
        for _ in range(50):
            request = [{"step": index, "next": [index + 1]} for index in range(5000)]
            del request
    finally:
        gc.callbacks.remove(seen)
    assert passes == []
