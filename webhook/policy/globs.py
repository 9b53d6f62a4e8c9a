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
_SCHEME = re.compile(r"^[a-z][a-z0-9+.-]*://")
#: What a normalised repository is made of, plus the two wildcards and a port's ':'.
_REPOSITORY_CHARS = re.compile(r"[a-z0-9._/:*-]")


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


def repository_glob_problem(pattern: str) -> str | None:
    """Why ``pattern`` can never match a normalised repository, or None if it can.

    Repository globs are matched against ``domain/path`` (``quay.io/myorg/app``):
    no scheme, no tag, no digest, and only ``*`` and ``**`` are special. A
    pattern outside that grammar is accepted by YAML but matches nothing, and
    in enforce mode denies every image; the answer says what to write instead.
    """
    scheme = _SCHEME.match(pattern)
    if scheme is not None:
        return (
            f"{pattern!r} has a URL scheme, but image references have none: "
            f"write {pattern[scheme.end() :]!r}"
        )
    if "***" in pattern:
        fixed = re.sub(r"\*{3,}", "**", pattern)
        return (
            f"{pattern!r} has three or more '*' in a row, which is not a glob: '*' matches "
            f"within one path component and '**' across components; write {fixed!r}"
        )
    head, _, rest = pattern.partition("/")
    where = pattern.find("@")
    if where < 0 and ":" in rest:
        where = len(head) + 1 + rest.index(":")
    if where >= 0:
        return (
            f"{pattern!r} names a tag or digest ({pattern[where:]!r}), but patterns match "
            f"the repository alone, without tag or digest: write {pattern[:where]!r} "
            "(and requireDigest: true to insist on digests)"
        )
    odd = sorted({c for c in pattern if not _REPOSITORY_CHARS.fullmatch(c)})
    if odd:
        shown = " ".join(repr(c) for c in odd)
        return (
            f"{pattern!r} uses {shown}, which never appear in a repository name: only '*' "
            "(within a path component) and '**' (across components) are wildcards, every "
            "other character is literal; write e.g. 'quay.io/myorg/*' or list the "
            "repositories one by one"
        )
    return None


def any_match(globs: tuple[Glob, ...], text: str) -> bool:
    """Whether any of ``globs`` matches ``text``; an empty tuple matches nothing."""
    return any(glob.matches(text) for glob in globs)
