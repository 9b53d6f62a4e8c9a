"""Untrusted text in messages: verbatim only when short printable ASCII, else escaped and cut;
untrusted JSON parsed with one failure only."""

from __future__ import annotations

import json
import sys

import pytest

from webhook.core.untrusted import DuplicateKey, json_value, literal, quoted, shown, unique_keys


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


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"[" * 3000 + b"]" * 3000, "it nests too deeply to read (over ~1,000 levels)"),
        ('{"a":' * 3000 + "1" + "}" * 3000, "it nests too deeply to read"),
        (b"\xff\xfe\xff", "it is not UTF-8, UTF-16 or UTF-32"),
        (b'{"a"', "Expecting ':' delimiter"),
    ],
)
def test_json_value_fails_only_with_a_decode_error(data: bytes | str, message: str) -> None:
    with pytest.raises(json.JSONDecodeError) as caught:
        json_value(data)
    assert caught.value.msg.startswith(message)


def test_json_value_reads_what_json_reads_and_passes_hook_errors_through() -> None:
    assert json_value(b'{"a": [1, 2.5, null]}') == {"a": [1, 2.5, None]}
    assert json_value("[" * 100 + "]" * 100) == json.loads("[" * 100 + "]" * 100)

    def no_constant(name: str) -> None:
        raise KeyError(name)

    with pytest.raises(KeyError, match="NaN"):
        json_value("[NaN]", parse_constant=no_constant)
    assert sys.getrecursionlimit() >= 1000  # the limit the message quotes


def test_a_key_given_twice_is_refused_not_last_one_wins() -> None:
    with pytest.raises(DuplicateKey, match="key 'a' is given twice") as caught:
        json_value('{"a": 1, "b": {"a": 2}, "a": 3}', object_pairs_hook=unique_keys)
    assert caught.value.key == "a"
    assert json_value('{"a": 1, "b": {"a": 2}}', object_pairs_hook=unique_keys) == {
        "a": 1,
        "b": {"a": 2},
    }
