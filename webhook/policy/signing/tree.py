"""The files of a policy directory that a signature covers, read safely.

Every file under the directory counts, in subdirectories too: policies,
exceptions, test cases, and whatever they name beside them (key files, a test
case's resource file), so that swapping a key file breaks the signature as
editing a policy does. Skipped are only the signature's own directory
(``.trustgate``), ``.git`` (git-sync's worktree link) and the ``..data`` and
``..<timestamp>`` entries of a ConfigMap mount, whose files are reached
through the visible links that point into them.

A symbolic link counts as the file it points to, which must lie inside the
directory: a link leading out of it would let an unsigned file stand in for a
signed one. Links to directories, and anything but regular files (a FIFO
would hang the reader), are refused.
"""

from __future__ import annotations

import errno
import os
import stat
from pathlib import Path
from typing import BinaryIO

from webhook.core.errors import PolicyError
from webhook.policy.signing.manifest import check_path

__all__ = [
    "MAX_FILES",
    "MAX_TOTAL_BYTES",
    "SIGNATURE_DIR",
    "NotRegularFile",
    "read_at_most",
    "read_regular",
    "read_tree",
]

#: Where the signature lives inside the directory; never part of the manifest.
SIGNATURE_DIR = ".trustgate"
#: Most files, and most bytes in all, one policy directory may hold.
MAX_FILES = 10_000
MAX_TOTAL_BYTES = 64 * 1024 * 1024


def _skipped(name: str, top: bool) -> bool:
    return name.startswith("..") or name == ".git" or (top and name == SIGNATURE_DIR)


def read_tree(directory: Path) -> dict[str, bytes]:
    """Every covered file of ``directory``, by relative POSIX path, with its content.

    Raises:
        PolicyError: the directory cannot be read, a link leads out of it or to
            a directory, an entry is not a regular file, a name is not UTF-8,
            or there are more than ``MAX_FILES`` files or ``MAX_TOTAL_BYTES``.
    """
    try:
        root = directory.resolve(strict=True)
    except OSError as exc:
        raise PolicyError(f"cannot read policy directory {directory}: {exc.strerror}") from exc
    except RuntimeError:  # Python 3.11 reports a link loop so
        raise PolicyError(f"{directory} is a loop of symbolic links") from None
    if not root.is_dir():
        raise PolicyError(f"{directory} is not a directory")
    files: dict[str, bytes] = {}
    total = 0
    folders = 0

    def fail(error: OSError) -> None:
        raise PolicyError(f"cannot read {error.filename}: {error.strerror}")

    for current, dirs, names in os.walk(root, onerror=fail):
        top = Path(current) == root
        dirs[:] = sorted(d for d in dirs if not _skipped(d, top))
        folders += len(dirs)
        if folders > MAX_FILES:  # empty directories cost a walk too
            raise PolicyError(
                f"{directory} holds more than {MAX_FILES} directories; is it the policy directory?"
            )
        for name in dirs:
            if os.path.islink(os.path.join(current, name)):
                relative = _relative(root, Path(current, name))
                raise PolicyError(
                    "is a symbolic link to a directory; a signed policy directory may "
                    "link to files inside it only",
                    file=relative,
                )
        for name in sorted(n for n in names if not _skipped(n, top)):
            relative = _relative(root, Path(current, name))
            data = _read(root, Path(current, name), relative)
            total += len(data)
            if len(files) >= MAX_FILES or total > MAX_TOTAL_BYTES:
                raise PolicyError(
                    f"{directory} holds more than {MAX_FILES} files or "
                    f"{MAX_TOTAL_BYTES // (1024 * 1024)} MiB; is it the policy directory?"
                )
            files[relative] = data
    return files


def _relative(root: Path, path: Path) -> str:
    relative = path.relative_to(root).as_posix()
    try:
        relative.encode("utf-8")
    except UnicodeEncodeError:
        shown = relative.encode("utf-8", "surrogateescape").decode("utf-8", "replace")
        raise PolicyError("the file name is not UTF-8; rename it", file=shown) from None
    return check_path(relative)


def _read(root: Path, path: Path, relative: str) -> bytes:
    """The content of ``path``, a regular file inside ``root`` (``relative`` names it)."""
    try:
        target = path.resolve()
    except RuntimeError:  # Python 3.11 reports a link loop so
        raise PolicyError(
            "is a loop of symbolic links; replace it with the file it should be", file=relative
        ) from None
    if not target.is_relative_to(root):
        raise PolicyError(
            f"is a symbolic link to {target}, outside the policy directory; a signature "
            "covers only files inside it, so copy the file in",
            file=relative,
        )
    try:
        # O_NONBLOCK: opening a FIFO must not wait for a writer; fstat refuses it next.
        fd = os.open(target, os.O_RDONLY | os.O_NONBLOCK | os.O_NOFOLLOW)
    except OSError as exc:
        raise PolicyError(f"cannot read the file: {exc.strerror}", file=relative) from exc
    with os.fdopen(fd, "rb") as handle:
        status = os.fstat(handle.fileno())
        if not stat.S_ISREG(status.st_mode):
            raise PolicyError("is not a regular file", file=relative)
        if status.st_size > MAX_TOTAL_BYTES:  # refused unread: a sparse TiB costs nothing
            raise PolicyError(
                f"holds more than {MAX_TOTAL_BYTES:,} bytes, all that a policy directory may "
                "hold; is it a policy file?",
                file=relative,
            )
        return read_at_most(handle, MAX_TOTAL_BYTES)


def read_at_most(handle: BinaryIO, limit: int) -> bytes:
    """The content of open file ``handle``, and one byte more when it exceeds ``limit``.

    ``read(n)`` allocates n bytes before it reads: the first read is sized by
    ``fstat`` (and one byte more, to see a file that grew since), so that
    reading a 1 KiB policy does not set aside the whole limit (64 MiB) each
    time. A file that did grow is read on, up to the limit.
    """
    size = os.fstat(handle.fileno()).st_size
    data = handle.read(min(size, limit) + 1)
    if len(data) > size:
        data += handle.read(limit + 1 - len(data))
    return data


class NotRegularFile(Exception):
    """A path that is a FIFO, a device or a socket: refused unread."""


def read_regular(path: Path, limit: int) -> bytes:
    """The content of regular file ``path``, and one byte more when it exceeds ``limit``.

    Opened with ``O_NONBLOCK``, so that a FIFO put in the file's place makes
    the reader refuse it instead of waiting forever for a writer (the reload
    thread would hang, and policies with it).

    Raises:
        OSError: ``path`` cannot be opened or read (``FileNotFoundError`` when
            absent, ``IsADirectoryError`` for a directory, as ``open`` raises).
        NotRegularFile: ``path`` is a FIFO, a device or a socket.
    """
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
    with os.fdopen(fd, "rb") as handle:
        mode = os.fstat(handle.fileno()).st_mode
        if stat.S_ISDIR(mode):  # as open() says of one
            raise IsADirectoryError(errno.EISDIR, os.strerror(errno.EISDIR), str(path))
        if not stat.S_ISREG(mode):
            raise NotRegularFile(str(path))
        return read_at_most(handle, limit)
