"""The generated definitions used by benchmarks and other tests."""

from __future__ import annotations

import pytest

from revflow.definition import STEP_TYPES, make_definition, validate_definition


@pytest.mark.parametrize("n_steps", [1, 2, 3, 8, 9, 17, 50, 200, 500])
@pytest.mark.parametrize("seed", [0, 1, 7])
def test_samples_are_valid_with_every_step_reachable(n_steps: int, seed: int) -> None:
    definition = make_definition(n_steps, seed)
    validated = validate_definition(definition)
    assert len(validated.model.steps) == n_steps
    assert validated.warnings == []


@pytest.mark.parametrize("seed", range(5))
def test_samples_mix_every_step_type_and_wait_kind(seed: int) -> None:
    definition = make_definition(200, seed)
    assert {step["type"] for step in definition["steps"]} == set(STEP_TYPES)
    waits = [step for step in definition["steps"] if step["type"] == "wait"]
    assert {kind for step in waits for kind in ("duration", "until", "event") if kind in step} == {
        "duration",
        "until",
        "event",
    }
    ids = [step["id"] for step in definition["steps"]]
    loops_back = [
        step
        for step in definition["steps"]
        if step["type"] == "condition"
        and ids.index(step.get("else", ids[-1])) < ids.index(step["id"])
    ]
    assert loops_back, "a sample should contain a loop (through a wait)"


def test_samples_are_deterministic() -> None:
    assert make_definition(100, seed=4) == make_definition(100, seed=4)
    assert make_definition(100, seed=4) != make_definition(100, seed=5)


def test_samples_need_a_step() -> None:
    with pytest.raises(ValueError):
        make_definition(0)
