"""The placeholder grammar shared by validation and the engine's rendering."""

from __future__ import annotations

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from revflow.definition import placeholder_problems, render_placeholders
from revflow.definition.placeholders import placeholders_all_valid

CONTACT = {
    "id": "c-1",
    "email": "ada@example.com",
    "phone": None,
    "external_id": "ext-9",
    "tags": {"vip", "beta"},
    "fields": {"first_name": "Ada", "score": 12, "prefs": {"sms": False}},
}


@pytest.mark.parametrize(
    "text",
    [
        "no placeholders",
        "{{contact.email}}",
        "{{ contact.phone }} {{contact.external_id}} {{contact.id}} {{contact.tags}}",
        "{{contact.fields.first_name}} {{contact.fields.prénom}} {{contact.fields.a-b}}",
        "closing only }}",
        "{ {contact.nothing} }",
    ],
)
def test_valid_texts(text: str) -> None:
    assert placeholder_problems(text) == []


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("{{contact.name}}", "unknown placeholder '{{contact.name}}'"),
        ("{{email}}", "unknown placeholder '{{email}}'"),
        ("{{}}", "unknown placeholder '{{}}'"),
        ("{{contact.fields.a.b}}", "unknown placeholder"),
        ("{{contact.fields.}}", "unknown placeholder"),
        ("{{contact.email}} and {{contact.email", "unterminated placeholder"),
    ],
)
def test_invalid_texts(text: str, message: str) -> None:
    problems = placeholder_problems(text)
    assert len(problems) == 1
    assert message in problems[0]


def test_several_unknown_placeholders_are_one_problem() -> None:
    (problem,) = placeholder_problems("{{a}} {{contact.email}} {{b}}")
    assert problem.startswith("unknown placeholder '{{a}}', '{{b}}';")


def test_render() -> None:
    text = (
        "Hi {{ contact.fields.first_name }} <{{contact.email}}> {{contact.phone}}|"
        "{{contact.tags}}|{{contact.fields.score}}|{{contact.fields.prefs}}|{{contact.fields.none}}"
    )
    assert render_placeholders(text, CONTACT) == (
        'Hi Ada <ada@example.com> |beta, vip|12|{"sms": false}|'
    )
    assert render_placeholders("plain", CONTACT) == "plain"


def test_a_url_placeholder_is_one_percent_encoded_segment() -> None:
    from revflow.definition import render_url

    contact = {"fields": {"slug": "x/../../admin?y=1#frag"}, "email": "a+b@example.com"}
    url = render_url(
        "https://api.example.com/users/{{contact.fields.slug}}/notify?to={{contact.email}}",
        contact,
    )
    assert url == (
        "https://api.example.com/users/x%2F..%2F..%2Fadmin%3Fy%3D1%23frag/notify"
        "?to=a%2Bb%40example.com"
    )


# Texts built from the pieces placeholders are made of, so that valid, invalid and unterminated
# placeholders, and ones broken by NUL, come up often.
_placeholder_texts = st.lists(
    st.sampled_from(
        ["{{", "}}", "{", "}", "contact.", "email", "fields.", "a-b", "é", " ", "\n", "\0", "x"]
    ),
    max_size=12,
).map("".join)


@given(st.lists(_placeholder_texts, max_size=6))
@example(["{", "{contact.email}}"])
@example(["{{contact.email}}\0", "{{contact.email"])
@example(["{{contact.", "email}}"])
def test_placeholders_all_valid_agrees_with_each_text(texts: list[str]) -> None:
    assert placeholders_all_valid(texts) == all(not placeholder_problems(t) for t in texts)
