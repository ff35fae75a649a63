"""Step semantics (SPEC §2, §3) as pure functions over in-memory state.

The worker loads a batch of executions and their contacts, calls :func:`advance` for each, and
writes what it collected — history entries, messages, contact changes, the execution's new
position — in one transaction. Nothing here touches the database or the network: a step that
needs the outside world (``http_request``) stops the run and is handed back as ``external``.
"""

from __future__ import annotations

import datetime as dt
import uuid
from dataclasses import dataclass, field
from typing import Any, assert_never

from revflow.definition import (
    AddTagStep,
    Condition,
    ConditionStep,
    Definition,
    EndStep,
    Goal,
    HttpRequestStep,
    RemoveTagStep,
    SendEmailStep,
    SendSmsStep,
    Step,
    UpdateFieldStep,
    WaitStep,
    render_placeholders,
    render_url,
    wait_kind,
)

# A run stops after this many steps even without a wait (validation already forbids loops
# without a wait; this only bounds a single claim's work).
MAX_STEPS_PER_RUN = 200


@dataclass
class ContactState:
    id: uuid.UUID
    email: str | None
    phone: str | None
    external_id: str | None
    fields: dict[str, Any]
    tags: list[str]
    added_tags: list[str] = field(default_factory=list)
    removed_tags: list[str] = field(default_factory=list)
    changed_fields: list[str] = field(default_factory=list)
    dirty: bool = False

    def as_mapping(self) -> dict[str, Any]:
        return {
            "id": str(self.id),
            "email": self.email,
            "phone": self.phone,
            "external_id": self.external_id,
            "tags": list(self.tags),
            "fields": self.fields,
        }

    def value(self, name: str) -> Any:
        if name.startswith("fields."):
            return self.fields.get(name.removeprefix("fields."))
        return self.as_mapping().get(name)


@dataclass
class ExecutionState:
    id: uuid.UUID
    workflow_id: uuid.UUID
    version: int
    contact_id: uuid.UUID
    status: str
    current_step: str | None
    wake_at: dt.datetime | None
    outcome: str | None = None
    finished_at: dt.datetime | None = None
    wait_started_at: dt.datetime | None = None
    fired_goals: list[str] = field(default_factory=list)
    error: str | None = None

    @property
    def live(self) -> bool:
        return self.status in ("active", "waiting")


@dataclass
class ExternalCall:
    """A step that needs the network; the worker performs it outside the transaction."""

    execution_id: uuid.UUID
    step_id: str
    kind: str  # "http_request" | "email" | "sms"
    request: dict[str, Any]


@dataclass
class Effects:
    history: list[dict[str, Any]] = field(default_factory=list)
    messages: list[dict[str, Any]] = field(default_factory=list)
    external: list[ExternalCall] = field(default_factory=list)
    steps_run: int = 0

    def record(
        self,
        ex: ExecutionState,
        at: dt.datetime,
        step: str,
        result: str,
        detail: dict[str, Any] | None = None,
        error: str | None = None,
    ) -> None:
        self.history.append(
            {
                "execution_id": ex.id,
                "account_id": None,
                "at": at,
                "step": step,
                "result": result,
                "detail": detail or {},
                "error": error,
            }
        )


@dataclass(frozen=True)
class Channels:
    """Where ``send_email`` and ``send_sms`` go: ``outbox`` (internal) or an external channel."""

    email: str = "outbox"
    sms: str = "outbox"


def evaluate(condition: Condition, contact: ContactState) -> bool:
    """Evaluate a condition on the contact; a type mismatch is simply false."""
    actual = contact.value(condition.field)
    expected = condition.value
    op = condition.op
    if op == "exists":
        return actual not in (None, "", [])
    if op == "not_exists":
        return actual in (None, "", [])
    if op in ("contains", "not_contains"):
        if isinstance(actual, list) or (isinstance(actual, str) and isinstance(expected, str)):
            found = expected in actual
        else:
            found = False
        return found if op == "contains" else not found
    if op == "eq":
        return bool(actual == expected)
    if op == "ne":
        return bool(actual != expected)
    try:
        if op == "gt":
            return bool(actual > expected)
        if op == "gte":
            return bool(actual >= expected)
        if op == "lt":
            return bool(actual < expected)
        if op == "lte":
            return bool(actual <= expected)
    except TypeError:
        return False
    return False


def complete(ex: ExecutionState, now: dt.datetime, outcome: str = "completed") -> None:
    ex.status = "completed"
    ex.outcome = outcome
    ex.finished_at = now
    ex.wake_at = None


def fail(ex: ExecutionState, now: dt.datetime, error: str) -> None:
    ex.status = "failed"
    ex.outcome = "failed"
    ex.error = error
    ex.finished_at = now
    ex.wake_at = None


def _move(ex: ExecutionState, target: str | None, now: dt.datetime) -> None:
    """Continue at ``target``, or complete when there is none."""
    if target is None:
        complete(ex, now)
        return
    ex.current_step = target
    ex.status = "active"
    ex.wake_at = now
    ex.wait_started_at = None


def fire_goal(
    definition: Definition, ex: ExecutionState, goal: Goal, now: dt.datetime, effects: Effects
) -> None:
    """The goal is reached: cut a wait short, then jump to ``then`` or complete."""
    steps = definition.step_map()
    current = steps.get(ex.current_step or "")
    if ex.status == "waiting" and isinstance(current, WaitStep):
        effects.record(ex, now, current.id, "cut_short", {"goal": goal.id})
    ex.fired_goals = [*ex.fired_goals, goal.id]
    effects.record(ex, now, goal.id, "goal", {"then": goal.then})
    if goal.then is None:
        complete(ex, now, f"goal:{goal.id}")
    else:
        _move(ex, goal.then, now)


def check_condition_goals(
    definition: Definition,
    ex: ExecutionState,
    contact: ContactState,
    now: dt.datetime,
    effects: Effects,
) -> bool:
    """Fire the first ``if`` goal that now holds (each goal fires once per execution)."""
    for goal in definition.goals:
        if goal.if_ is None or goal.id in ex.fired_goals or goal.event is not None:
            continue
        if evaluate(goal.if_, contact):
            fire_goal(definition, ex, goal, now, effects)
            return True
    return False


def deliver_event(
    definition: Definition,
    ex: ExecutionState,
    contact: ContactState,
    name: str,
    now: dt.datetime,
    effects: Effects,
) -> bool:
    """An event of the contact reaches a live execution: goals first, then an event wait."""
    for goal in definition.goals:
        if goal.event != name or goal.id in ex.fired_goals:
            continue
        if goal.if_ is not None and not evaluate(goal.if_, contact):
            continue
        fire_goal(definition, ex, goal, now, effects)
        return True
    step = definition.step_map().get(ex.current_step or "")
    if ex.status == "waiting" and isinstance(step, WaitStep) and step.event == name:
        effects.record(ex, now, step.id, "event", {"event": name})
        _move(ex, step.next, now)
        return True
    return False


def _enter_wait(step: WaitStep, ex: ExecutionState, now: dt.datetime, effects: Effects) -> None:
    kind = wait_kind(step)
    detail: dict[str, Any] = {"kind": kind}
    if kind == "duration":
        assert step.duration is not None
        ex.wake_at = now + step.duration
    elif kind == "until":
        assert step.until is not None
        ex.wake_at = max(step.until, now)
    else:
        detail["event"] = step.event
        ex.wake_at = now + step.timeout if step.timeout is not None else None
    if ex.wake_at is not None:
        detail["wake_at"] = ex.wake_at.isoformat()
    ex.status = "waiting"
    ex.wait_started_at = now
    effects.record(ex, now, step.id, "waiting", detail)


def _leave_wait(step: WaitStep, ex: ExecutionState, now: dt.datetime, effects: Effects) -> None:
    if wait_kind(step) == "event":
        effects.record(ex, now, step.id, "timeout", {"event": step.event})
        _move(ex, step.timeout_next or step.next, now)
    else:
        effects.record(ex, now, step.id, "woke")
        _move(ex, step.next, now)


def _run_step(
    step: Step,
    ex: ExecutionState,
    contact: ContactState,
    now: dt.datetime,
    effects: Effects,
    channels: Channels,
) -> bool:
    """Run one step; False when the run must stop here (wait, external call)."""
    match step:
        case SendEmailStep() | SendSmsStep():
            return _send(step, ex, contact, now, effects, channels)
        case AddTagStep() | RemoveTagStep():
            return _change_tag(step, ex, contact, now, effects)
        case UpdateFieldStep():
            return _update_field(step, ex, contact, now, effects)
        case ConditionStep():
            return _branch(step, ex, contact, now, effects)
        case WaitStep():
            _enter_wait(step, ex, now, effects)
            return False
        case HttpRequestStep():
            return _request(step, ex, contact, effects)
        case EndStep():
            effects.record(ex, now, step.id, "completed")
            complete(ex, now)
            return True
        case _:  # pragma: no cover
            assert_never(step)


def _send(
    step: SendEmailStep | SendSmsStep,
    ex: ExecutionState,
    contact: ContactState,
    now: dt.datetime,
    effects: Effects,
    channels: Channels,
) -> bool:
    """Into the outbox and on, or handed back as an external call when the channel is not it."""
    data = contact.as_mapping()
    kind = "email" if isinstance(step, SendEmailStep) else "sms"
    to = contact.email if kind == "email" else contact.phone
    if not to:
        effects.record(
            ex,
            now,
            step.id,
            "skipped",
            {"reason": "contact has no phone" if kind == "sms" else "contact has no email"},
        )
        _move(ex, step.next, now)
        return True
    subject = render_placeholders(step.subject, data) if isinstance(step, SendEmailStep) else None
    # History names the message by its id; its address lives in the outbox row only, which
    # erasure clears (history never holds personal data).
    message = {
        "id": uuid.uuid4(),
        "kind": kind,
        "to": to,
        "subject": subject,
        "body": render_placeholders(step.body, data),
        "step": step.id,
        "execution_id": ex.id,
        "contact_id": contact.id,
    }
    if (channels.email if kind == "email" else channels.sms) != "outbox":
        effects.external.append(ExternalCall(ex.id, step.id, kind, message))
        return False
    effects.messages.append({**message, "channel": "outbox"})
    effects.record(
        ex, now, step.id, "sent", {"channel": "outbox", "message_id": str(message["id"])}
    )
    _move(ex, step.next, now)
    return True


def _change_tag(
    step: AddTagStep | RemoveTagStep,
    ex: ExecutionState,
    contact: ContactState,
    now: dt.datetime,
    effects: Effects,
) -> bool:
    adding = isinstance(step, AddTagStep)
    present = step.tag in contact.tags
    changed = present != adding
    if changed:
        contact.tags = (
            [*contact.tags, step.tag] if adding else [t for t in contact.tags if t != step.tag]
        )
        contact.dirty = True
        (contact.added_tags if adding else contact.removed_tags).append(step.tag)
    effects.record(ex, now, step.id, "done", {"tag": step.tag, "changed": changed})
    _move(ex, step.next, now)
    return True


def _update_field(
    step: UpdateFieldStep,
    ex: ExecutionState,
    contact: ContactState,
    now: dt.datetime,
    effects: Effects,
) -> bool:
    value = _render_json(step.value, contact.as_mapping())
    before = contact.value(step.field)
    if before != value:
        if step.field.startswith("fields."):
            contact.fields = {**contact.fields, step.field.removeprefix("fields."): value}
        elif step.field == "email":
            contact.email = None if value is None else str(value)
        else:
            contact.phone = None if value is None else str(value)
        contact.dirty = True
        contact.changed_fields.append(step.field)
    effects.record(ex, now, step.id, "done", {"field": step.field, "changed": before != value})
    _move(ex, step.next, now)
    return True


def _branch(
    step: ConditionStep,
    ex: ExecutionState,
    contact: ContactState,
    now: dt.datetime,
    effects: Effects,
) -> bool:
    result = evaluate(step.if_, contact)
    effects.record(ex, now, step.id, "branch", {"result": "then" if result else "else"})
    _move(ex, step.then if result else step.else_, now)
    return True


def _request(
    step: HttpRequestStep, ex: ExecutionState, contact: ContactState, effects: Effects
) -> bool:
    """An ``http_request`` always stops the run: the worker makes the call."""
    data = contact.as_mapping()
    body = step.body if step.body is not None else {"contact": data}
    request = {
        "url": render_url(step.url, data),
        "method": step.method,
        "body": _render_json(body, data),
        "headers": {k: render_placeholders(v, data) for k, v in (step.headers or {}).items()},
        "max_attempts": step.max_attempts,
    }
    effects.external.append(ExternalCall(ex.id, step.id, "http_request", request))
    return False


def _render_json(value: Any, data: dict[str, Any]) -> Any:
    if isinstance(value, str):
        return render_placeholders(value, data)
    if isinstance(value, list):
        return [_render_json(v, data) for v in value]
    if isinstance(value, dict):
        return {k: _render_json(v, data) for k, v in value.items()}
    return value


def advance(
    definition: Definition,
    ex: ExecutionState,
    contact: ContactState,
    now: dt.datetime,
    effects: Effects,
    channels: Channels = Channels(),
    *,
    max_steps: int = MAX_STEPS_PER_RUN,
) -> None:
    """Run a due execution until it waits, finishes, needs an external call, or has run
    ``max_steps`` steps (then it stays due, to go on in the next run)."""
    steps = definition.step_map()
    if ex.current_step is None:
        ex.current_step = definition.start_step_id()
    if ex.status == "waiting":
        step = steps.get(ex.current_step)
        if isinstance(step, WaitStep):
            if check_condition_goals(definition, ex, contact, now, effects):
                pass
            else:
                _leave_wait(step, ex, now, effects)
        else:
            ex.status = "active"
    for _ in range(max_steps):
        if not ex.live or ex.status == "waiting":
            return
        if check_condition_goals(definition, ex, contact, now, effects):
            continue
        step = steps.get(ex.current_step or "")
        if step is None:
            fail(ex, now, f"step {ex.current_step!r} does not exist in version {ex.version}")
            effects.record(ex, now, ex.current_step or "", "failed", error=ex.error)
            return
        effects.steps_run += 1
        if not _run_step(step, ex, contact, now, effects, channels):
            return


def external_done(
    definition: Definition,
    ex: ExecutionState,
    call: ExternalCall,
    now: dt.datetime,
    effects: Effects,
    *,
    error: str | None,
    detail: dict[str, Any],
) -> None:
    """Record the outcome of an external call and move on (or fail the execution)."""
    if error is not None:
        effects.record(ex, now, call.step_id, "failed", detail, error)
        fail(ex, now, error)
        return
    if call.kind in ("email", "sms"):
        detail = {**detail, "message_id": str(call.request["id"])}
    effects.record(ex, now, call.step_id, "sent" if call.kind != "http_request" else "done", detail)
    step = definition.step_map()[call.step_id]
    _move(ex, getattr(step, "next", None), now)
