"""Untrusted text made safe to put in a message: denial reasons, errors, logs.

Image names come from the request, and signed payloads, certificates and
registry answers from whoever controls the registry: any of them may carry
control characters meant to forge a log line or a ``kubectl`` warning, or be
long enough to drown the reason. Every such value goes through one of these.
"""

from __future__ import annotations

import json


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
