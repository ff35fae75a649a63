"""Workflow definitions: schema, validation, canonical JSON and hash (pure, no I/O).

Rules chosen where SPEC section 2 is silent:

- ``null`` means "absent" for every optional key; ``value`` is required for comparisons and
  must be absent or null for ``exists``/``not_exists``; ``tags`` take only ``contains``,
  ``not_contains``, ``exists``, ``not_exists``; ``gt``/``gte``/``lt``/``lte`` compare with a
  number or a string.
- ``fields.<name>``: ``name`` is 1-128 letters (any script), digits, ``_`` or ``-``; no dots.
  ``field_changed`` triggers take the same paths as conditions.
- Durations: ``<integer><s|m|h|d|w>`` or ISO 8601 with weeks, days, hours, minutes and
  (fractional) seconds; positive and at most ten years. ``until`` needs a date and a time and
  is stored in UTC; a past ``until`` is valid (validation does not depend on the clock).
- A wait's ``timeout_next`` needs a ``timeout``. ``update_field`` sets ``email``/``phone`` to a
  string or null only. ``http_request`` URLs start with ``http://`` or ``https://``; header
  names are HTTP tokens and values have no line breaks; header values are templates too.
- Placeholders are ``{{contact.<path>}}`` with optional spaces inside the braces; an
  unterminated ``{{`` is an error. A goal id may not also be a step id.
- A definition over ``max_definition_bytes`` gets that one error and nothing else; one nested
  deeper than about 250 levels is refused with one error at the root.
"""

from revflow.definition.canonical import canonical_json, content_hash
from revflow.definition.durations import MAX_DURATION, parse_datetime, parse_duration
from revflow.definition.loading import load_definition_text
from revflow.definition.models import (
    CONDITION_OPS,
    HTTP_METHODS,
    STEP_ID_PATTERN,
    STEP_TYPES,
    TRIGGER_TYPES,
    AddTagStep,
    Condition,
    ConditionOp,
    ConditionStep,
    ContactCreatedTrigger,
    Definition,
    EndStep,
    EventTrigger,
    FieldChangedTrigger,
    Goal,
    HttpMethod,
    HttpRequestStep,
    ManualTrigger,
    RemoveTagStep,
    SendEmailStep,
    SendSmsStep,
    Step,
    TagAddedTrigger,
    Trigger,
    UpdateFieldStep,
    WaitKind,
    WaitStep,
    step_references,
    wait_kind,
)
from revflow.definition.placeholders import placeholder_problems, render_placeholders, render_url
from revflow.definition.samples import make_definition
from revflow.definition.validation import (
    DEFAULT_MAX_DEFINITION_BYTES,
    DEFAULT_MAX_STEPS,
    DefinitionInvalid,
    DefinitionProblem,
    ValidatedDefinition,
    validate_definition,
)

__all__ = [
    "CONDITION_OPS",
    "DEFAULT_MAX_DEFINITION_BYTES",
    "DEFAULT_MAX_STEPS",
    "HTTP_METHODS",
    "MAX_DURATION",
    "STEP_ID_PATTERN",
    "STEP_TYPES",
    "TRIGGER_TYPES",
    "AddTagStep",
    "Condition",
    "ConditionOp",
    "ConditionStep",
    "ContactCreatedTrigger",
    "Definition",
    "DefinitionInvalid",
    "DefinitionProblem",
    "EndStep",
    "EventTrigger",
    "FieldChangedTrigger",
    "Goal",
    "HttpMethod",
    "HttpRequestStep",
    "ManualTrigger",
    "RemoveTagStep",
    "SendEmailStep",
    "SendSmsStep",
    "Step",
    "TagAddedTrigger",
    "Trigger",
    "UpdateFieldStep",
    "ValidatedDefinition",
    "WaitKind",
    "WaitStep",
    "canonical_json",
    "content_hash",
    "load_definition_text",
    "make_definition",
    "parse_datetime",
    "parse_duration",
    "placeholder_problems",
    "render_placeholders",
    "render_url",
    "step_references",
    "validate_definition",
    "wait_kind",
]
