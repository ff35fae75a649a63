"""Time `validate_definition` and its parts on a generated definition, in process.

    PYTHONPATH=src python benchmarks/bench_validation.py [--steps 200]

Each number is the best of several repeats (ms per call): the machine's other load only ever
adds time.
"""

from __future__ import annotations

import argparse
import timeit
from collections.abc import Callable
from typing import Any

from revflow.definition import validation
from revflow.definition.canonical import canonical_json, canonical_json_and_copy
from revflow.definition.models import Definition
from revflow.definition.samples import make_definition


def _best_ms(call: Callable[[], object], number: int, repeat: int) -> float:
    return min(timeit.repeat(call, number=number, repeat=repeat)) / number * 1000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=200)
    parser.add_argument("--number", type=int, default=200)
    parser.add_argument("--repeat", type=int, default=15)
    args = parser.parse_args()
    definition = make_definition(args.steps, 1)
    copied = canonical_json_and_copy(definition)[1]
    assert copied is not None  # a generated definition is plain JSON
    document: dict[str, Any] = copied
    parts: dict[str, Callable[[], object]] = {
        "canonical JSON and copy": lambda: canonical_json_and_copy(definition),
        "Definition.model_validate": lambda: Definition.model_validate(document),
        "document-wide rules": lambda: validation._Graph(document).check(args.steps),
        "validate_definition": lambda: validation.validate_definition(definition),
    }
    print(f"{args.steps} steps, {len(canonical_json(definition))} bytes of canonical JSON")
    for name, call in parts.items():
        print(f"{name:28s} {_best_ms(call, args.number, args.repeat):.3f} ms")


if __name__ == "__main__":
    main()
