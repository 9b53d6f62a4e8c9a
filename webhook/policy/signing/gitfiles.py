"""The files libgit2 opens for a checkout are regular files, checked before it opens them.

libgit2 opens a repository's files (the ``.git`` link, ``HEAD``,
``commondir``, ``config``, ``packed-refs``, refs, ``objects/info/alternates``,
loose objects, packs) with a blocking ``open`` and without releasing
Python's GIL. A FIFO in their place, which anyone who can write to
git-sync's volume can make, would block that ``open`` until a writer came:
not only the reload thread but every thread of the process (the request path
too) would stop, for good. So before pygit2 opens the repository, every
entry under the directories it may read (the worktree's git directory, the
common directory it names, and the object directories of ``alternates``) must
be a regular file or a directory; a link must lead to a regular file.

This narrows the hole to a swap made between the check and libgit2's read;
git-sync never writes anything but regular files and directories there.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

from webhook.policy.signing.gate import PolicySignatureError

__all__ = ["MAX_REPOSITORY_ENTRIES", "check_repository"]

#: Most entries checked in a repository: git-sync's shallow clone holds far fewer
#: (``git gc --auto`` packs loose objects past 6,700).
MAX_REPOSITORY_ENTRIES = 200_000
#: Largest ``.git`` link, ``commondir`` or ``alternates`` file read.
_MAX_POINTER_BYTES = 64 * 1024
#: Most object directories ``alternates`` may add.
_MAX_ALTERNATES = 8
_RESTORE = (
    "git-sync writes only regular files and directories there: someone else wrote to the "
    "repository; delete git-sync's volume (or its root) so that it clones again"
)


def _refuse(message: str) -> PolicySignatureError:
    return PolicySignatureError(message, reason="invalid")


def _kind(mode: int) -> str:
    if stat.S_ISFIFO(mode):
        return "a FIFO"
    if stat.S_ISSOCK(mode):
        return "a socket"
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        return "a device"
    return "not a regular file"


def _small(path: Path) -> str:
    """The text of pointer file ``path``, read without blocking (a FIFO is refused)."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
    except OSError as exc:
        raise _refuse(f"cannot read {path}: {exc.strerror}") from None
    with os.fdopen(fd, "rb") as handle:
        mode = os.fstat(handle.fileno()).st_mode
        if not stat.S_ISREG(mode):
            raise _refuse(f"{path} is {_kind(mode)}; {_RESTORE}")
        data = handle.read(_MAX_POINTER_BYTES + 1)
    if len(data) > _MAX_POINTER_BYTES:
        raise _refuse(f"{path} is over {_MAX_POINTER_BYTES // 1024} KiB; {_RESTORE}")
    return data.decode("utf-8", "replace")


def _git_directories(worktree: Path) -> list[Path]:
    """The git directory of ``worktree``, and the common directory it names."""
    dotgit = worktree / ".git"
    try:
        mode = os.stat(dotgit).st_mode
    except OSError as exc:
        raise _refuse(f"cannot read {dotgit}: {exc.strerror}") from None
    if stat.S_ISDIR(mode):
        gitdir = dotgit
    else:
        text = _small(dotgit)
        if not text.startswith("gitdir:"):
            raise _refuse(f"{dotgit} is not a git directory link (gitdir: PATH); {_RESTORE}")
        gitdir = _joined(worktree, text.removeprefix("gitdir:").strip())
    places = [gitdir]
    if os.path.lexists(gitdir / "commondir"):
        places.append(_joined(gitdir, _small(gitdir / "commondir").strip()))
    return places


def _joined(base: Path, pointer: str) -> Path:
    """Where a relative (or absolute) pointer of a file in ``base`` leads, normalized."""
    return Path(os.path.normpath(base / pointer))


def _alternates(objects: Path) -> list[Path]:
    pointer = objects / "info" / "alternates"
    if not os.path.lexists(pointer):
        return []
    lines = [line.strip() for line in _small(pointer).splitlines()]
    found = [_joined(objects, line) for line in lines if line and not line.startswith("#")]
    if len(found) > _MAX_ALTERNATES:
        raise _refuse(f"{pointer} names more than {_MAX_ALTERNATES} object directories")
    return found


def check_repository(worktree: Path) -> None:
    """Refuse (``invalid``) a repository of ``worktree`` libgit2 could block on.

    Raises:
        PolicySignatureError: an entry is a FIFO, socket or device, or a link
            to one or to a directory; a pointer file is not one; or there are
            more than ``MAX_REPOSITORY_ENTRIES`` entries.
    """
    places = _git_directories(worktree)
    for place in list(places):
        places.extend(_alternates(place / "objects"))
    seen = 0
    for where in dict.fromkeys(str(p) for p in places):
        for current, dirs, names in os.walk(where):
            seen += len(dirs) + len(names)
            if seen > MAX_REPOSITORY_ENTRIES:
                raise _refuse(
                    f"the repository of {worktree} holds more than {MAX_REPOSITORY_ENTRIES} "
                    "entries; is git-sync running git gc?"
                )
            for name in dirs:
                if os.path.islink(os.path.join(current, name)):
                    raise _refuse(
                        f"{os.path.join(current, name)} is a link to a directory; {_RESTORE}"
                    )
            for name in names:
                _regular(os.path.join(current, name))


def _regular(path: str) -> None:
    try:
        mode = os.stat(path).st_mode
    except OSError:
        return  # a dangling link: libgit2's open fails at once, it does not block
    if not stat.S_ISREG(mode):
        raise _refuse(f"{path} is {_kind(mode)}; {_RESTORE}")
