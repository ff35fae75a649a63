"""A change to a contact and what it sets off (:mod:`revflow.engine.changes`), without a
database: the functions the API, the worker, resume and the simulator share."""

from __future__ import annotations

import datetime as dt

from revflow.engine.changes import change_contact, deliver_change
from revflow.engine.interpreter import Effects
from tests.engine.test_interpreter import NOW, contact, definition, execution


def test_a_change_answers_what_it_changed_and_leaves_the_rest() -> None:
    person = contact(email="a@x.example", fields={"plan": "free", "age": 3}, tags=["lead"])
    change = change_contact(
        person,
        email="a@x.example",  # the same: no change
        phone="+100",
        fields={"plan": "pro", "age": 3, "new": None},
        add_tags=["vip", "lead", "vip"],
        remove_tags=["lead", "absent"],
    )
    assert change.changed_fields == ["phone", "fields.plan", "fields.new"]
    assert (change.added_tags, change.removed_tags) == (["vip"], ["lead"])
    assert change.changes_contact
    assert (person.email, person.phone) == ("a@x.example", "+100")
    assert person.fields == {"plan": "pro", "age": 3, "new": None}
    assert person.tags == ["vip"]


def test_set_tags_replaces_the_tags_and_a_change_to_the_same_values_is_none() -> None:
    person = contact(tags=["a", "b"], fields={"x": 1})
    change = change_contact(person, set_tags=["b", "c"])
    assert (change.added_tags, change.removed_tags, person.tags) == (["c"], ["a"], ["b", "c"])
    same = change_contact(person, fields={"x": 1}, add_tags=["b"], remove_tags=["zz"])
    assert not same.changes_contact and same.changed_fields == []


def test_events_come_before_the_condition_goals_of_a_changed_contact() -> None:
    flow = definition(
        [
            {"id": "pause", "type": "wait", "event": "paid", "next": "thanks"},
            {"id": "thanks", "type": "add_tag", "tag": "thanked"},
        ],
        goals=[{"id": "vip", "if": {"field": "tags", "op": "contains", "value": "vip"}}],
    )
    person = contact(tags=["vip"])
    ex = execution(person, status="waiting", current_step="pause")
    effects = Effects()
    later = NOW + dt.timedelta(hours=1)
    assert deliver_change(flow, ex, person, ["paid"], True, later, effects)
    # The event moved it on from the wait; then the changed contact reached the goal.
    assert [(h["step"], h["result"]) for h in effects.history] == [
        ("pause", "event"),
        ("vip", "goal"),
    ]
    assert (ex.status, ex.outcome) == ("completed", "goal:vip")
    # A finished execution is reached by nothing.
    assert not deliver_change(flow, ex, person, ["paid"], True, later, Effects())


def test_an_unchanged_contact_does_not_check_condition_goals() -> None:
    flow = definition(
        [{"id": "pause", "type": "wait", "duration": "1d"}],
        goals=[{"id": "vip", "if": {"field": "tags", "op": "contains", "value": "vip"}}],
    )
    person = contact(tags=["vip"])
    ex = execution(person, status="waiting", current_step="pause")
    assert not deliver_change(flow, ex, person, ["other"], False, NOW, Effects())
    assert ex.status == "waiting"
