"""Counted nouns in what trustgate prints: ``1 policy``, ``2 policies``, ``0 images``.

Separate because every layer that reports a count (the CLI's summaries, the
policy store's log lines) needs the same small rule, and none of them owns it.
"""

from __future__ import annotations


def counted(count: int, noun: str, nouns: str | None = None) -> str:
    """``count`` and ``noun``, plural unless ``count`` is 1 (``nouns``, else ``noun`` + s)."""
    return f"{count} {noun if count == 1 else nouns or noun + 's'}"
