"""Untrusted text in messages: verbatim only when short printable ASCII, else escaped and cut."""

from __future__ import annotations

import pytest

from webhook.untrusted import literal, quoted, shown


@pytest.mark.parametrize(
    ("text", "limit", "expected"),
    [
        ("quay.io/acme/api", 128, "quay.io/acme/api"),
        ("evil\nINFO forged log line", 128, '"evil\\nINFO forged log line"'),
        ("caf\u00e9", 128, '"caf\\u00e9"'),
        ("a" * 9, 4, '"aaaa..."'),
    ],
)
def test_shown(text: str, limit: int, expected: str) -> None:
    assert shown(text, limit) == expected


def test_shown_may_keep_longer_text_verbatim_than_it_quotes() -> None:
    assert shown("a" * 10, 4, verbatim=16) == "a" * 10
    assert shown("a\tb" * 10, 4, verbatim=64) == '"a\\tba..."'


def test_quoted_always_quotes_and_marks_the_cut() -> None:
    assert quoted("plain") == '"plain"'
    assert quoted("x" * 200, 10) == '"' + "x" * 10 + '..."'


def test_literal() -> None:
    assert literal("user@example.com") == "'user@example.com'"
    assert literal("a\u202eb") == '"a\\u202eb"'
    assert literal("y" * 300) == '"' + "y" * 160 + '"'
