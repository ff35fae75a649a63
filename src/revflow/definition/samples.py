"""Generated definitions for benchmarks and tests."""

from __future__ import annotations

import random
from typing import Any

_BODY_TYPES = (
    "send_email",
    "send_sms",
    "add_tag",
    "remove_tag",
    "update_field",
    "http_request",
    "wait",
    "condition",
)
_TRIGGERS: tuple[dict[str, Any], ...] = (
    {"type": "manual"},
    {"type": "contact_created", "reenroll": "never"},
    {"type": "tag_added", "tag": "lead"},
    {"type": "field_changed", "field": "fields.plan", "reenroll": "30d"},
    {"type": "event", "event": "signed_up", "reenroll": "after_finish"},
)
_CONDITIONS: tuple[dict[str, Any], ...] = (
    {"field": "tags", "op": "contains", "value": "vip"},
    {"field": "fields.score", "op": "gte", "value": 10},
    {"field": "email", "op": "exists"},
    {"field": "fields.plan", "op": "eq", "value": "pro"},
)
_DURATIONS = ("30m", "2h", "3d", "P1DT2H", "1w")


def make_definition(n_steps: int, seed: int = 0) -> dict[str, Any]:
    """Build a valid definition of ``n_steps`` steps mixing every step type.

    The same ``n_steps`` and ``seed`` always give the same document. Steps form a chain (every
    step is reachable, the last is an ``end``); conditions branch forward or loop back to an
    earlier duration wait, so the result has cycles, all through a wait. Every eight steps hold
    each non-``end`` type once, in an order that depends on ``seed``.
    """
    if n_steps < 1:
        raise ValueError("a definition needs at least one step")
    rng = random.Random(seed)
    types: list[str] = []
    while len(types) < n_steps - 1:
        block = list(_BODY_TYPES)
        rng.shuffle(block)
        types.extend(block)
    types = [*types[: n_steps - 1], "end"]
    ids = [f"{step_type}_{i}" for i, step_type in enumerate(types)]

    steps: list[dict[str, Any]] = []
    duration_waits: list[str] = []
    for i, step_type in enumerate(types):
        step: dict[str, Any] = {"id": ids[i], "type": step_type}
        following = ids[i + 1] if i + 1 < n_steps else None
        after_following = ids[i + 2] if i + 2 < n_steps else None
        if step_type == "send_email":
            step["subject"] = f"Hello {{{{contact.fields.first_name}}}} ({i})"
            step["body"] = "Your account {{contact.email}} is ready.\nSee you soon!"
        elif step_type == "send_sms":
            step["body"] = f"Hi {{{{contact.fields.first_name}}}}, message {i}"
        elif step_type in ("add_tag", "remove_tag"):
            step["tag"] = rng.choice(("vip", "lead", "nurture", "customer"))
        elif step_type == "update_field":
            step.update(
                rng.choice(
                    (
                        {"field": "fields.score", "value": rng.randint(0, 100)},
                        {"field": "fields.plan", "value": "pro"},
                        {"field": "fields.profile", "value": {"seen": True, "step": i}},
                        {"field": "phone", "value": "+15550100"},
                    )
                )
            )
        elif step_type == "http_request":
            step["url"] = "https://hooks.example.com/contacts/{{contact.id}}"
            step["method"] = rng.choice(("POST", "PUT"))
            step["body"] = {"email": "{{contact.email}}", "step": i, "tags": "{{contact.tags}}"}
            step["headers"] = {"X-Source": "revflow"}
            step["max_attempts"] = rng.randint(1, 5)
        elif step_type == "wait":
            kind = rng.choice(("duration", "duration", "until", "event"))
            if kind == "duration":
                step["duration"] = rng.choice(_DURATIONS)
                duration_waits.append(ids[i])
            elif kind == "until":
                step["until"] = "2030-01-01T09:00:00Z"
            else:
                step["event"] = rng.choice(("clicked", "replied"))
                step["timeout"] = "2d"
                if after_following is not None:
                    step["timeout_next"] = after_following
        elif step_type == "condition":
            step["if"] = dict(rng.choice(_CONDITIONS))
            # A condition is never last (the last step is the end), so `then` always exists.
            step["then"] = following
            if duration_waits and rng.random() < 0.5:
                step["else"] = rng.choice(duration_waits)
            elif after_following is not None:
                step["else"] = after_following
        if following is not None and step_type not in ("condition", "end"):
            step["next"] = following
        steps.append(step)

    return {
        "trigger": dict(_TRIGGERS[seed % len(_TRIGGERS)]),
        "start": ids[0],
        "steps": steps,
        "goals": [
            {"id": "goal_purchased", "event": "purchase", "then": ids[-1]},
            {"id": "goal_vip", "if": {"field": "tags", "op": "contains", "value": "vip"}},
        ],
    }
