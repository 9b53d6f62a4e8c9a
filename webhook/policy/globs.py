"""Glob patterns for namespaces, kinds and image repositories.

``*`` matches within one path component (it never crosses ``/``) and ``**``
matches across components. Every other character is literal and the pattern is
anchored at both ends, so ``quay.io/**`` can never match ``quay.io.evil.com/x``
or ``evil.com/quay.io/x``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

_TOKEN = re.compile(r"\*\*|\*|[^*]+")


def _translate(pattern: str) -> str:
    parts = []
    for token in _TOKEN.findall(pattern):
        if token == "**":
            parts.append(".*")
        elif token == "*":
            parts.append("[^/]*")
        else:
            parts.append(re.escape(token))
    return "".join(parts)


@dataclass(frozen=True, slots=True)
class Glob:
    """A compiled glob; equal globs have equal patterns."""

    pattern: str
    _regex: re.Pattern[str] = field(init=False, repr=False, compare=False, hash=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "_regex", re.compile(_translate(self.pattern), re.DOTALL))

    def matches(self, text: str) -> bool:
        """Whether the whole of ``text`` matches the pattern."""
        return self._regex.fullmatch(text) is not None

    def __str__(self) -> str:
        return self.pattern


def any_match(globs: tuple[Glob, ...], text: str) -> bool:
    """Whether any of ``globs`` matches ``text``; an empty tuple matches nothing."""
    return any(glob.matches(text) for glob in globs)
