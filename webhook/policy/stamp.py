"""The cheap stamp of a policy directory that tells the store when to read it again.

``os.stat`` of every visible entry at the top of the directory and of the
files the policies read (key files, trusted roots), after resolving symbolic
links; the target of a ConfigMap's ``..data`` link; the real path of the
directory itself, which git-sync swaps (a link to a new worktree) in one
rename; and the signature file ``.trustgate/signature.json``, hidden like
every dot entry but part of what the store checks. Signed sets add every
verified file and the subdirectories holding them. Paths are resolved before
``stat``: kubelet swaps a ConfigMap's ``..data`` to a new timestamped
directory in one rename, and the files there may carry the same size and
modification time as the old ones.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence
from pathlib import Path

from webhook.policy.signing.tree import MAX_FILES, SIGNATURE_DIR

__all__ = ["Stamp", "stamp", "verified_paths"]

Stamp = tuple[object, ...]
_SIGNATURE = f"{SIGNATURE_DIR}/signature.json"


def stamp(directory: Path, files: Sequence[str] = ()) -> Stamp:
    """A cheap summary of the directory and of ``files`` (keys, trusted roots the
    policies read, verified files) that changes whenever their content may have."""
    real = os.path.realpath(directory)
    try:
        names = sorted(os.listdir(directory))
    except OSError as exc:
        return ("unreadable", real, exc.errno)
    if len(names) > MAX_FILES:
        # Not a policy directory (read_tree and the loader refuse it): stat-ing a
        # million entries at every check would slow the reload thread, and the
        # request path with it. The names themselves still tell a change.
        return ("crowded", real, hash(tuple(names)))
    try:
        data_target: str | None = os.readlink(directory / "..data")
    except OSError:
        data_target = None
    entries = [_entry(name, directory / name) for name in names if not name.startswith(".")]
    entries.append(_entry(_SIGNATURE, directory / _SIGNATURE))
    entries.extend(_entry(file, Path(file)) for file in files)
    return (real, data_target, tuple(entries))


def verified_paths(directory: Path, files: Iterable[str]) -> list[str]:
    """The verified files under ``directory``, and every subdirectory on the way to them,
    that ``stamp`` does not already cover as a visible entry at the top.

    A file edited in place in a subdirectory changes no entry at the top, and
    one added there changes only its directory's times: both are watched. A
    visible top-level file or directory is left out: ``stamp`` stats it as an
    entry of the directory at every check, and watching it again would double
    the cost of the check that runs every few seconds for a flat set. Hidden
    top-level files (a signature covers them; the entries skip them) stay.
    """
    names = list(files)
    parents = {
        "/".join(parts[:depth])
        for parts in (name.split("/") for name in names)
        for depth in range(1, len(parts))
    }
    return [
        str(directory / name)
        for name in (*names, *sorted(parents))
        if "/" in name or name.startswith(".")
    ]


def _entry(name: str, path: Path) -> tuple[object, ...]:
    real = os.path.realpath(path)
    try:
        st = os.stat(real)
    except OSError as exc:
        return (name, real, exc.errno)
    return (name, real, st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)
