"""Steps validated before are taken as they are: the same models, the same problems."""

from __future__ import annotations

import copy
import sys
import typing
from typing import Any

import pytest

from revflow.definition import DefinitionInvalid, validate_definition
from revflow.definition import validation as validation_module
from revflow.definition.models import Step
from revflow.definition.samples import make_definition


def pointers(definition: Any) -> list[str]:
    with pytest.raises(DefinitionInvalid) as caught:
        validate_definition(definition)
    return [problem["pointer"] for problem in caught.value.errors]


def test_a_step_seen_before_is_not_validated_again(monkeypatch: pytest.MonkeyPatch) -> None:
    first = make_definition(50, 3)
    before = validate_definition(first).model
    edited = copy.deepcopy(first)
    editable = next(i for i, step in enumerate(edited["steps"]) if "body" in step)
    edited["steps"][editable]["body"] += " (edited)"

    validated: list[Any] = []
    step = validation_module._STEP
    monkeypatch.setattr(
        validation_module._STEP,
        "validate_python",
        lambda value: validated.append(value) or step.__class__.validate_python(step, value),
    )
    after = validate_definition(edited).model

    assert validated == [edited["steps"][editable]]  # the edited step alone
    assert after.steps[editable].body.endswith("(edited)")  # type: ignore[union-attr]
    assert all(
        a is b
        for i, (a, b) in enumerate(zip(before.steps, after.steps, strict=True))
        if i != editable
    )
    # Key order does not make a step new; what it holds does.
    reordered = copy.deepcopy(edited)
    reordered["steps"] = [dict(reversed(list(s.items()))) for s in reordered["steps"]]
    validated.clear()
    assert validate_definition(reordered).model == after
    assert validated == []


def test_the_models_are_the_whole_documents_models() -> None:
    for steps, seed in ((5, 1), (60, 2), (200, 7)):
        definition = make_definition(steps, seed)
        validate_definition(definition)  # now every step is known
        cached = validate_definition(copy.deepcopy(definition)).model
        assert cached == validation_module.Definition.model_validate(definition)


def test_known_steps_models_are_not_checked_again() -> None:
    """A known step's model is put into the definition's as it is: its validators do not run
    again (pydantic runs them on an instance handed to a model that holds it)."""
    definition = make_definition(60, 4)
    validate_definition(definition)  # every step is known now
    step_classes = {cls.__name__ for cls in typing.get_args(typing.get_args(Step)[0])}
    assert "WaitStep" in step_classes
    checks: list[str] = []

    def seen(frame: Any, event: str, _arg: Any) -> None:
        qualname = frame.f_code.co_qualname
        if event == "call" and qualname.split(".")[0] in step_classes:
            checks.append(qualname)

    sys.setprofile(seen)
    try:
        model = validate_definition(copy.deepcopy(definition)).model
    finally:
        sys.setprofile(None)
    assert checks == []
    assert model == validation_module.Definition.model_validate(definition)


def test_a_failing_step_beside_known_ones_is_reported_as_the_whole_model_reports_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    definition = make_definition(30, 5)
    broken = copy.deepcopy(definition)
    broken["steps"][7] = {**broken["steps"][7], "unexpected": 1}
    broken["steps"][12] = {**broken["steps"][12], "id": "x y"}
    # A value JSON allows and a step's key cannot be made of: the schema answers.
    huge = copy.deepcopy(definition)
    huge["steps"][3] = {**huge["steps"][3], "max_attempts": 10**30}
    with monkeypatch.context() as nothing_kept:
        nothing_kept.setattr(validation_module, "STEPS_KEPT", 0)
        nothing_kept.setattr(validation_module, "_step_models", validation_module._Kept())
        nothing_kept.setattr(validation_module, "_step_facts", validation_module._Kept())
        expected = [pointers(broken), pointers(huge)]
    validate_definition(definition)  # every step but the broken ones is known now
    assert [pointers(broken), pointers(huge)] == expected
    assert {"/steps/7/unexpected", "/steps/12/id"} <= set(expected[0])
    assert "/steps/3/max_attempts" in expected[1]


def test_the_kept_steps_are_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(validation_module, "STEPS_KEPT", 10)
    monkeypatch.setattr(validation_module, "_step_models", validation_module._Kept())
    monkeypatch.setattr(validation_module, "_step_facts", validation_module._Kept())
    validate_definition(make_definition(40, 9))
    assert len(validation_module._step_models) == 10
    assert len(validation_module._step_facts) == 10


def test_known_steps_are_checked_against_the_document_they_are_in_now() -> None:
    """A step's references are its own; whether they name a step is the document's."""
    email = {"id": "a", "type": "send_email", "subject": "Hi {{contact.email}}", "body": "B"}
    end = {"id": "end", "type": "end"}
    good = {"trigger": {"type": "manual"}, "steps": [{**email, "next": "end"}, end]}
    assert validate_definition(good).warnings == []
    # The same first step, known now, in a document without "end".
    alone = {"trigger": {"type": "manual"}, "steps": [{**email, "next": "end"}]}
    assert pointers(alone) == ["/steps/0/next"]
    # Known steps move: problems and warnings follow their index.
    moved = {
        "trigger": {"type": "manual"},
        "start": "end",
        "steps": [end, {"id": "loop", "type": "add_tag", "tag": "t", "next": "loop"}],
    }
    assert pointers({**moved, "steps": list(reversed(moved["steps"])), "start": "loop"}) == [
        "/steps/0"
    ]
    assert pointers(moved) == ["/steps/1"]  # the loop without a wait, at its own index
    # A known step's broken placeholder is reported in every document holding it.
    broken = {"id": "b", "type": "send_sms", "body": "Hi {{contact.nope}}", "next": "end"}
    for steps in ([broken, end], [end, broken]):
        document = {"trigger": {"type": "manual"}, "start": "b", "steps": steps}
        found = pointers(document)
        assert found == [f"/steps/{steps.index(broken)}/body"], found
