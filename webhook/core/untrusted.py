"""Untrusted input made safe: text to put in a message, and JSON bytes to parse.

Image names come from the request, and signed payloads, certificates and
registry answers from whoever controls the registry: any of them may carry
control characters meant to forge a log line or a ``kubectl`` warning, or be
long enough to drown the reason. Every such value goes through one of these.
JSON from outside (manifests, indexes, referrers, token and Pyxis answers,
signed payloads) is parsed by ``json_value``, which fails in one way only.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

#: What ``json_value`` says of a document nested past the parser's recursion limit.
TOO_DEEP = "it nests too deeply to read (over ~1,000 levels)"


class NestedTooDeep(json.JSONDecodeError):
    """A JSON document nested past the parser's recursion limit (``json_value``)."""


class DuplicateKey(ValueError):
    """A JSON object names ``key`` twice (``unique_keys``)."""

    def __init__(self, key: str) -> None:
        super().__init__(f"key {key!r} is given twice")
        self.key = key


def unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    """An ``object_pairs_hook`` for JSON that must name each key once.

    ``json`` keeps the last of two equal keys silently, so a document could say
    one thing to a reader and another to trustgate. Raises DuplicateKey.
    """
    result: dict[str, Any] = {}
    for key, value in pairs:
        if key in result:
            raise DuplicateKey(key)
        result[key] = value
    return result


def _plain(text: str, limit: int) -> bool:
    return text.isascii() and text.isprintable() and len(text) <= limit


def quoted(text: str, limit: int = 128) -> str:
    """``text`` JSON-quoted and escaped, cut after ``limit`` characters (marked ``..."``)."""
    if len(text) <= limit:
        return json.dumps(text)
    return json.dumps(text[:limit])[:-1] + '..."'


def shown(text: str, limit: int = 128, *, verbatim: int | None = None) -> str:
    """``text`` as it is when printable ASCII of at most ``verbatim`` (default ``limit``)
    characters, else ``quoted(text, limit)``."""
    return text if _plain(text, limit if verbatim is None else verbatim) else quoted(text, limit)


def literal(text: str, limit: int = 160) -> str:
    """``text`` always in quotes: ``'text'`` when printable ASCII of at most ``limit``
    characters, else JSON-escaped and cut at ``limit``."""
    return repr(text) if _plain(text, limit) else json.dumps(text[:limit])


def json_value(
    data: bytes | str,
    *,
    object_pairs_hook: Callable[[list[tuple[str, Any]]], Any] | None = None,
    parse_constant: Callable[[str], Any] | None = None,
) -> Any:
    """``json.loads(data)`` for bytes from outside, which fails only with json.JSONDecodeError.

    The standard parser raises RecursionError for a document nested past the
    interpreter's recursion limit (a 3,000-level ``[[[...]]]`` is 6 kB, and
    anyone who can push to a registry can publish one), and UnicodeDecodeError
    for bytes in no JSON encoding; callers that catch ValueError would let the
    first through as a crash. Both become a JSONDecodeError whose ``msg`` says
    what is wrong; errors raised by the hooks pass through unchanged.

    Raises:
        NestedTooDeep: ``data`` nests past the parser's recursion limit (a JSONDecodeError).
        json.JSONDecodeError: ``data`` is not a JSON document this parser can read.
        ValueError: a number of more than 4,300 digits (Python's limit on int parsing).
    """
    try:
        return json.loads(data, object_pairs_hook=object_pairs_hook, parse_constant=parse_constant)
    except RecursionError:
        raise NestedTooDeep(TOO_DEEP, _text(data), 0) from None
    except UnicodeDecodeError as exc:
        raise json.JSONDecodeError(
            f"it is not UTF-8, UTF-16 or UTF-32 ({exc.reason})", "", exc.start
        ) from None


def _text(data: bytes | str) -> str:
    # JSONDecodeError computes a line and column from the document; keep it short.
    head = data[:64]
    return head if isinstance(head, str) else head.decode("utf-8", "replace")
