"""The contact paths a definition may name: condition fields, update targets, placeholders.

Kept in one module so that validation and the engine that renders texts agree on one grammar.
"""

from __future__ import annotations

import functools
import json
import re
from collections.abc import Callable, Mapping
from urllib.parse import quote

# Field names are the keys of a contact's `fields` object. Dots are excluded so that a path
# names exactly one flat key; letters of any script are allowed (`\w` is Unicode-aware).
FIELD_NAME_PATTERN = r"[\w-]{1,128}"

CONDITION_FIELDS = ("email", "phone", "tags", "external_id")
UPDATE_FIELDS = ("email", "phone")
PLACEHOLDER_NAMES = ("email", "phone", "external_id", "id", "tags")

_CUSTOM_FIELD_RE = re.compile(rf"fields\.({FIELD_NAME_PATTERN})")
PLACEHOLDER_RE = re.compile(r"\{\{(.*?)\}\}", re.DOTALL)
_PLACEHOLDER_PATH_RE = re.compile(
    rf"contact\.(?:{'|'.join(PLACEHOLDER_NAMES)}|fields\.{FIELD_NAME_PATTERN})"
)
# Matches one valid placeholder; removing them all and finding no "{{" left is the fast path.
_VALID_PLACEHOLDER_RE = re.compile(rf"\{{\{{\s*{_PLACEHOLDER_PATH_RE.pattern}\s*\}}\}}")
_PLACEHOLDER_HELP = (
    "placeholders must be one of {{contact.email}}, {{contact.phone}}, "
    "{{contact.external_id}}, {{contact.id}}, {{contact.tags}} or {{contact.fields.<name>}}"
)


def custom_field_name(path: str) -> str | None:
    """Return ``name`` for a path ``fields.<name>``, or None when the path is not of that form."""
    match = _CUSTOM_FIELD_RE.fullmatch(path)
    return match.group(1) if match else None


def condition_field_problem(path: str) -> str | None:
    """Explain why ``path`` cannot be a condition field, or return None when it can."""
    if path in CONDITION_FIELDS or custom_field_name(path) is not None:
        return None
    return (
        f"unknown contact field '{path}'; use email, phone, tags, external_id or fields.<name> "
        "(name: letters, digits, '_' or '-')"
    )


def update_field_problem(path: str) -> str | None:
    """Explain why ``path`` cannot be the target of an ``update_field`` step, or return None."""
    if path in UPDATE_FIELDS or custom_field_name(path) is not None:
        return None
    return (
        f"cannot update '{path}'; use email, phone or fields.<name> "
        "(name: letters, digits, '_' or '-')"
    )


def placeholder_problems(text: str) -> list[str]:
    """List what is wrong with the ``{{…}}`` placeholders of ``text`` (empty when all is well).

    An unterminated ``{{`` is reported too: it is almost always a typo that would otherwise be
    sent to the contact verbatim.
    """
    if "{{" not in text or "{{" not in _VALID_PLACEHOLDER_RE.sub("", text):
        return []
    problems = []
    unknown = [
        match.group(0)
        for match in PLACEHOLDER_RE.finditer(text)
        if not _PLACEHOLDER_PATH_RE.fullmatch(match.group(1).strip())
    ]
    if unknown:
        listed = ", ".join(f"'{item}'" for item in unknown)
        problems.append(f"unknown placeholder {listed}; {_PLACEHOLDER_HELP}")
    if "{{" in PLACEHOLDER_RE.sub("", text):
        problems.append("unterminated placeholder: '{{' without a closing '}}'")
    return problems


def placeholders_all_valid(texts: list[str]) -> bool:
    """Whether :func:`placeholder_problems` finds nothing in any of ``texts``, in one pass.

    Joined by NUL, which no placeholder contains, each text keeps its own matches and no
    ``{{`` can form across two of them, so the joined text is valid exactly when each is.
    """
    return "{{" not in _VALID_PLACEHOLDER_RE.sub("", "\0".join(texts))


def render_placeholders(
    text: str, contact: Mapping[str, object], *, encode: Callable[[str], str] | None = None
) -> str:
    """Fill the placeholders of a validated text from ``contact``; ``encode`` transforms each
    filled-in value (a URL percent-encodes them: see ``render_url``).

    ``contact`` holds ``id``, ``email``, ``phone``, ``external_id``, ``tags`` and ``fields`` (a
    mapping). A missing or null value renders as an empty string, a list or set of strings (the
    tags) as a comma-separated list (a set sorted), and a non-string field value as its JSON text.
    """
    if "{{" not in text:
        return text
    out: list[str] = []
    for part in _template(text):
        if isinstance(part, str):
            out.append(part)
            continue
        name, field = part
        if field is not None:
            fields = contact.get("fields")
            value = fields.get(field) if isinstance(fields, Mapping) else None
        else:
            value = contact.get(name)
        rendered = _render_value(value)
        out.append(encode(rendered) if encode is not None else rendered)
    return "".join(out)


@functools.lru_cache(maxsize=4096)
def _template(text: str) -> tuple[str | tuple[str, str | None], ...]:
    """``text`` split once into its literal parts and its placeholders, each placeholder as
    (the name after ``contact.``, the custom field it names or None); a placeholder that
    names no contact path stays literal. The engine renders the same few texts for every
    contact, so the parse is kept."""
    parts: list[str | tuple[str, str | None]] = []
    end = 0
    for match in PLACEHOLDER_RE.finditer(text):
        parts.append(text[end : match.start()])
        path = match.group(1).strip()
        if path.startswith("contact."):
            name = path.removeprefix("contact.")
            parts.append((name, custom_field_name(name)))
        else:
            parts.append(match.group(0))
        end = match.end()
    parts.append(text[end:])
    return tuple(parts)


def render_url(url: str, contact: Mapping[str, object]) -> str:
    """Fill a URL's placeholders, each value percent-encoded as one path segment or query
    value: contact data can never add a path segment, a query parameter or change the host
    (``x/../../admin?y=1`` stays inside its segment)."""
    return render_placeholders(url, contact, encode=lambda value: quote(value, safe=""))


def _render_value(value: object) -> str:
    if value is None:
        return ""
    if isinstance(value, str):
        return value
    if isinstance(value, set | frozenset) and all(isinstance(v, str) for v in value):
        return ", ".join(sorted(value))
    if isinstance(value, list | tuple) and all(isinstance(v, str) for v in value):
        return ", ".join(value)
    return json.dumps(value, ensure_ascii=False, sort_keys=True, default=str)
