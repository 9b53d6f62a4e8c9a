"""Paths of a policy set loaded from a copy, pointed back at the directory it was copied from.

The store loads a signed set from a private copy of the bytes it verified
(``policy/snapshot.py``), so that nothing can be swapped in between the check
and the read. The compiled policies then name files in that copy: key files in
``KeyRef.file``, the ``source`` of each policy, Notation trust store files,
trusted root paths, and the same paths in error messages. A ``Relocation``
rewrites them to the real directory, so that messages, the files the store
watches and the set's fingerprint are what a load of the directory itself
would give, and the copy can be deleted once the set is compiled.
"""

from __future__ import annotations

import copy
import dataclasses
import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from webhook.core.errors import PolicyError

__all__ = ["Relocation"]


class Relocation:
    """Rewrites paths under ``copy`` to the same paths under ``real``."""

    def __init__(self, copied: Path, real: Path) -> None:
        self._old = os.path.abspath(copied)
        self._new = os.path.abspath(real)
        #: Files the policies read from the real directory itself (named by an
        #: absolute path into it), not from the copy: ``note_read`` fills it.
        self.read_from_real: list[str] = []

    def note_read(self, paths: Iterable[str]) -> None:
        """Record which of ``paths`` (files the policies read) lie in the real directory.

        Called before the paths are rewritten: once rewritten, a file read
        from the copy and one read from the real directory look alike, yet
        only the first holds the bytes that were verified.
        """
        for path in paths:
            normal = os.path.normpath(os.path.abspath(path))
            if normal.startswith(self._new + os.sep) and normal not in self.read_from_real:
                self.read_from_real.append(normal)

    def text(self, value: str) -> str:
        """``value`` with every path under the copy rewritten (unchanged when none is)."""
        # The copy's path is a fresh private temporary directory: it occurs in
        # nothing but the paths (and messages) that name files in it.
        return value.replace(self._old, self._new) if self._old in value else value

    def error(self, error: PolicyError) -> PolicyError:
        """``error`` with its file and message pointing at the real directory."""
        return PolicyError(
            self.text(error.message),
            file=None if error.file is None else self.text(error.file),
            document=error.document,
            field=error.field,
            policy=error.policy,
        )

    def value(self, value: Any) -> Any:
        """``value`` (a compiled policy or exception) with its paths rewritten.

        Walks strings, paths, tuples and dataclasses, the shapes the compiled
        model is made of; anything else (keys, certificates, verifiers) holds no
        path and is kept as it is. A value with nothing to rewrite is returned
        itself, so an unchanged part is shared, not copied.
        """
        if isinstance(value, str):
            return self.text(value)
        if isinstance(value, Path):
            text = self.text(str(value))
            return value if text == str(value) else Path(text)
        if isinstance(value, tuple) and type(value) is tuple:
            items = tuple(self.value(item) for item in value)
            return value if all(a is b for a, b in zip(items, value, strict=True)) else items
        if dataclasses.is_dataclass(value) and not isinstance(value, type):
            return self._dataclass(value)
        return value

    def _dataclass(self, value: Any) -> Any:
        changes = {}
        for field in dataclasses.fields(value):
            old = getattr(value, field.name)
            new = self.value(old)
            if new is not old and new != old:
                changes[field.name] = new
        if not changes:
            return value
        if all(field.init for field in dataclasses.fields(value)):
            return dataclasses.replace(value, **changes)
        # A field computed at construction (a compiled regular expression):
        # copy, so it is not computed again, and set what changed.
        moved = copy.copy(value)
        for name, new in changes.items():
            object.__setattr__(moved, name, new)
        return moved
