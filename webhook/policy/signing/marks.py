"""The rollback high-water mark in a file: the highest policy-set version loaded, kept.

``policies.signature.rollback: {file: PATH}``. The file is one JSON object,
``{"version": 12, "digest": "sha256:...", "updatedAt": "2026-12-06T09:30:00Z"}``,
written beside itself and renamed over (temp file, fsync, rename, fsync of the
directory), so a crash leaves the old mark or the new one, never half of one.

Several gunicorn workers (processes) of one pod share the file: each advance
reads, compares and writes under an exclusive ``flock`` of a lock file beside
it (``PATH.lock``, never renamed, so every process locks the same inode), and
never writes a lower version than the one it finds. Two workers advancing at
once end at the higher of the two.

A file that cannot be read, or holds no valid mark, is an error, never "no
mark": reading it as none would let an old signed set load, which is the replay
this mark exists to refuse. Only a missing file in an existing directory is
"no mark yet" (the first start). The file survives container restarts on an
``emptyDir`` and pod moves on a persistent volume; a mark that must outlive the
pod without a volume belongs in a ConfigMap (``webhook/kube/policymark.py``, a
layer below this one: ``RemoteMark`` makes it a ``MarkStore``).
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import json
import os
import re
import tempfile
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Final, Protocol

from webhook.core.errors import TrustgateError
from webhook.policy.signing.gate import Mark, MarkError
from webhook.policy.signing.manifest import MAX_VERSION
from webhook.policy.signing.tree import NotRegularFile, read_regular

__all__ = ["MAX_MARK_BYTES", "FileMark", "MarkFields", "RemoteMark", "checked_mark"]

#: A mark is under a hundred bytes; a file larger than this is not one.
MAX_MARK_BYTES: Final = 4096
#: How long an advance waits for another process's (seconds): an advance takes milliseconds.
LOCK_SECONDS: Final = 5.0
_DIGEST = re.compile(r"[a-z0-9]+:[A-Za-z0-9._-]{1,128}")


def checked_mark(version: object, digest: object, where: str) -> Mark:
    """``version`` and ``digest`` as read from a store, checked; the error says what to do.

    Raises:
        MarkError: either is missing or not what a mark holds.
    """
    if isinstance(version, str) and version.isascii() and version.isdecimal() and len(version) < 20:
        version = int(version)
    if isinstance(version, bool) or not isinstance(version, int) or not 0 <= version <= MAX_VERSION:
        raise MarkError(f"{where}: version is not a whole number of zero or more; {_REPAIR}")
    if not isinstance(digest, str) or not _DIGEST.fullmatch(digest):
        raise MarkError(f"{where}: digest is not a digest (sha256:..., git:...); {_REPAIR}")
    return Mark(version, digest)


#: What an operator does about a mark that cannot be read (shared by the file and ConfigMap).
_REPAIR = (
    "the high-water mark cannot be trusted, so no policy set loads until it is repaired: "
    "set policies.signature.minimumVersion to the version deployed now (trustgate policy "
    "verify prints it), then remove the mark so that the next load writes a new one"
)


class FileMark:
    """The high-water mark in the JSON file ``path``; shared safely by the pod's workers.

    ``now`` is the clock of ``updatedAt`` (informational: the mark compares versions).
    """

    def __init__(
        self,
        path: Path,
        *,
        lock_seconds: float = LOCK_SECONDS,
        now: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self.path = path
        self.where = f"file {path}"
        self.lock_seconds = lock_seconds
        self._now = now

    def read(self) -> Mark | None:
        """The stored mark; None when the file was never written.

        Raises:
            MarkError: the file or its directory cannot be read, or holds no valid mark.
        """
        try:
            data = read_regular(self.path, MAX_MARK_BYTES)
        except NotRegularFile:
            raise MarkError(f"{self.where}: not a regular file; {_REPAIR}") from None
        except FileNotFoundError:
            if not self.path.parent.is_dir():
                raise MarkError(self._no_directory()) from None
            return None
        except OSError as exc:
            raise MarkError(f"{self.where}: cannot read it: {_why(exc)}") from None
        if len(data) > MAX_MARK_BYTES:
            raise MarkError(f"{self.where}: over {MAX_MARK_BYTES} bytes, not a mark; {_REPAIR}")
        try:
            document = json.loads(data)
        except ValueError:
            raise MarkError(f"{self.where}: not JSON; {_REPAIR}") from None
        if not isinstance(document, dict):
            raise MarkError(f"{self.where}: not a JSON object; {_REPAIR}")
        return checked_mark(document.get("version"), document.get("digest"), self.where)

    def advance(self, mark: Mark) -> None:
        """Record ``mark`` unless the file holds this version or a higher one.

        Raises:
            MarkError: the file cannot be locked, read (a corrupt mark is not written
                over) or written.
        """
        with self._locked():
            stored = self.read()
            if stored is not None and stored.version >= mark.version:
                return
            self._write(mark)

    def _no_directory(self) -> str:
        return (
            f"{self.where}: the directory {self.path.parent} does not exist; mount a volume "
            "there (an emptyDir keeps the mark across container restarts, a persistent "
            "volume across pods) or name another file in policies.signature.rollback.file"
        )

    def _write(self, mark: Mark) -> None:
        document = {
            "version": mark.version,
            "digest": mark.digest,
            "updatedAt": self._now().strftime("%Y-%m-%dT%H:%M:%SZ"),
        }
        directory = self.path.parent
        try:
            handle, temp = tempfile.mkstemp(prefix=f".{self.path.name}.", dir=directory)
        except OSError as exc:
            raise MarkError(f"{self.where}: cannot write in {directory}: {_why(exc)}") from None
        try:
            with os.fdopen(handle, "wb") as file:
                file.write(json.dumps(document).encode() + b"\n")
                file.flush()
                os.fsync(file.fileno())
            os.replace(temp, self.path)
            _sync_directory(directory)
        except OSError as exc:
            with contextlib.suppress(OSError):
                os.unlink(temp)
            raise MarkError(f"{self.where}: cannot write it: {_why(exc)}") from None

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        """An exclusive lock of ``PATH.lock``, waited for at most ``lock_seconds``."""
        lock = self.path.with_name(self.path.name + ".lock")
        try:
            descriptor = os.open(lock, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        except FileNotFoundError:
            raise MarkError(self._no_directory()) from None
        except OSError as exc:
            raise MarkError(
                f"{self.where}: cannot open the lock file {lock}: {_why(exc)}"
            ) from None
        try:
            end = time.monotonic() + self.lock_seconds
            while True:
                try:
                    fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    break
                except BlockingIOError:
                    if time.monotonic() > end:
                        raise MarkError(
                            f"{self.where}: another process held {lock} for over "
                            f"{self.lock_seconds:g}s; the next load tries again"
                        ) from None
                    time.sleep(0.01)
            yield
        finally:
            os.close(descriptor)  # releases the lock


def _sync_directory(directory: Path) -> None:
    """Make the rename durable: fsync the directory that holds the entry."""
    descriptor = os.open(directory, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)


def _why(exc: OSError) -> str:
    reason = exc.strerror or type(exc).__name__
    if exc.errno in (errno.EACCES, errno.EPERM):
        return f"{reason} (the server's user must be able to read and write it)"
    if exc.errno == errno.EROFS:
        return f"{reason} (mount a writable volume there)"
    return reason


class _Fields(Protocol):
    @property
    def version(self) -> str: ...

    @property
    def digest(self) -> str: ...


class MarkFields(Protocol):
    """A mark kept as text fields by a lower layer (``kube.policymark.ConfigMapMark``)."""

    where: str

    def read(self) -> _Fields | None:
        """The fields as stored; None when none were written."""
        ...

    def advance(self, version: int, digest: str) -> None:
        """Write them unless this version or a higher one is stored."""
        ...


class RemoteMark:
    """A ``MarkStore`` over ``MarkFields``: fields checked, every failure a ``MarkError``."""

    def __init__(self, fields: MarkFields) -> None:
        self.fields = fields
        self.where = fields.where

    def read(self) -> Mark | None:
        """The stored mark; None when none was ever written.

        Raises:
            MarkError: the store cannot be read now, or holds no valid mark.
        """
        try:
            found = self.fields.read()
        except TrustgateError as exc:
            raise MarkError(exc.message) from None
        return None if found is None else checked_mark(found.version, found.digest, self.where)

    def advance(self, mark: Mark) -> None:
        """Record ``mark`` unless a higher version is already stored (never lowers it).

        Raises:
            MarkError: the store cannot be written now.
        """
        try:
            self.fields.advance(mark.version, mark.digest)
        except TrustgateError as exc:
            raise MarkError(exc.message) from None
