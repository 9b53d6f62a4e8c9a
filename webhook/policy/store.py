"""The current policy set, reloaded when the policy directory changes.

Readers take ``store.current``: an immutable ``PolicySet`` that a reload
replaces in one attribute assignment, so the request path needs no lock. A
reload that fails keeps the last good set in place and records the error.

Change detection is two-staged. A cheap stamp (``os.stat`` of every visible
entry and of the key files and trusted roots the policies read, after resolving
symlinks, plus the target of a ConfigMap's ``..data`` link) is compared on every
check; only when it differs is the directory re-read, and a new set is
installed only when the content fingerprint differs too. The
resolved paths matter for ConfigMap mounts: kubelet swaps ``..data`` to a new
timestamped directory in one rename, and the files it points to may carry
the same size and modification time as the old ones.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path

from webhook.core.counts import counted
from webhook.core.errors import PolicyError
from webhook.policy.loader import load_directory
from webhook.policy.model import PolicySet
from webhook.trust.trustroot import TrustRoots

log = logging.getLogger("trustgate.policy")

_Stamp = tuple[object, ...]


@dataclass(frozen=True, slots=True)
class ReloadStatus:
    """What the store holds and how its reloads went.

    ``loaded_at`` and ``last_error_at`` are Unix times. ``reloads`` counts the
    sets installed after the first, ``failures`` the reloads that failed.
    """

    loaded_at: float
    policies: int
    fingerprint: str
    last_error: str | None = None
    last_error_at: float | None = None
    reloads: int = 0
    failures: int = 0


class PolicyStore:
    """Holds the policy set of ``directory`` and reloads it when the directory changes.

    ``on_reload`` is called with the new status after every reload attempt that
    found a change, successful or not (not after the first load).
    """

    def __init__(
        self,
        directory: Path,
        *,
        interval: float = 2.0,
        on_reload: Callable[[ReloadStatus], None] | None = None,
        roots: TrustRoots | None = None,
    ) -> None:
        """Load ``directory`` now, its trusted roots from ``roots`` when given.

        Raises:
            PolicyError: when the first load fails; there is no good set to keep.
            ValueError: when ``interval`` is not positive.
        """
        if interval <= 0:
            raise ValueError(f"interval must be positive, not {interval}")
        self._directory = directory
        self._interval = interval
        self._on_reload = on_reload
        self._check_lock = threading.Lock()
        self._thread_lock = threading.Lock()
        self._stop_event = threading.Event()
        self._thread: threading.Thread | None = None
        self._roots = roots
        self._set = load_directory(directory, roots)
        self._stamp = _stamp(directory, self._set.files)
        self._status = ReloadStatus(
            loaded_at=time.time(), policies=len(self._set), fingerprint=self._set.fingerprint
        )
        log.info(
            "loaded %s from %s",
            counted(len(self._set), "policy", "policies"),
            directory,
            extra={"directory": str(directory), "fingerprint": self._set.fingerprint},
        )

    @property
    def current(self) -> PolicySet:
        """The policy set in force; immutable, safe to use from any thread."""
        return self._set

    @property
    def status(self) -> ReloadStatus:
        """The state of the store and of its last reload."""
        return self._status

    def check(self) -> bool:
        """Reload now if the directory changed since the last check.

        A failed reload keeps the current set, records the error in ``status``
        and logs it; it is not retried until the directory changes again.

        Returns:
            True if a new policy set was installed.
        """
        with self._check_lock:
            installed, status = self._check()
        if status is not None and self._on_reload is not None:
            self._on_reload(status)
        return installed

    def reload(self) -> bool:
        """Re-read the directory now, changed or not (a trusted root was refreshed).

        Returns:
            True if a new policy set was installed (its fingerprint differs).
        """
        with self._check_lock:
            installed, status = self._check(force=True)
        if status is not None and self._on_reload is not None:
            self._on_reload(status)
        return installed

    def _check(self, *, force: bool = False) -> tuple[bool, ReloadStatus | None]:
        stamp = _stamp(self._directory, self._set.files)
        if stamp == self._stamp and not force:
            return False, None
        # Recorded before reading: a change made while we read shows at the next check.
        self._stamp = stamp
        previous = self._status
        try:
            policy_set = load_directory(self._directory, self._roots)
        except PolicyError as exc:
            return False, self._failed(str(exc))
        except Exception as exc:
            # The loader raises only PolicyError; should a defect let something else
            # through, the reload still fails where readiness and metrics show it,
            # instead of leaving the old set in force with no sign of the change.
            log.exception("policy loader defect", extra={"outcome": "error"})
            return False, self._failed(f"cannot load the policies ({type(exc).__name__}: {exc})")
        if policy_set.fingerprint == self._set.fingerprint:
            if previous.last_error is None:
                return False, None  # touched, not changed
            # Back to the content in force: nothing to swap, but the error is over.
            self._status = replace(previous, last_error=None, last_error_at=None)
            log.info(
                "policy directory %s is valid again; its policies are unchanged",
                self._directory,
                extra={"directory": str(self._directory), "outcome": "ok"},
            )
            return False, self._status
        if policy_set.files != self._set.files:
            self._stamp = _stamp(self._directory, policy_set.files)
        self._set = policy_set
        self._status = ReloadStatus(
            loaded_at=time.time(),
            policies=len(policy_set),
            fingerprint=policy_set.fingerprint,
            reloads=previous.reloads + 1,
            failures=previous.failures,
        )
        log.info(
            "reloaded %s from %s",
            counted(len(policy_set), "policy", "policies"),
            self._directory,
            extra={
                "directory": str(self._directory),
                "fingerprint": policy_set.fingerprint,
                "outcome": "ok",
            },
        )
        return True, self._status

    def _failed(self, error: str) -> ReloadStatus:
        """Record a failed reload; the set in force stays."""
        previous = self._status
        self._status = replace(
            previous, last_error=error, last_error_at=time.time(), failures=previous.failures + 1
        )
        log.error(
            "policy reload failed, keeping the last good set: %s",
            error,
            extra={"directory": str(self._directory), "outcome": "error"},
        )
        return self._status

    def start(self) -> None:
        """Check the directory every ``interval`` seconds in a daemon thread (idempotent)."""
        with self._thread_lock:
            if self._thread is not None:
                return
            self._stop_event = threading.Event()
            self._thread = threading.Thread(
                target=self._poll,
                args=(self._stop_event,),
                name="trustgate-policy-reload",
                daemon=True,
            )
            self._thread.start()

    def stop(self) -> None:
        """Stop the polling thread, waiting for a check in progress to end (idempotent)."""
        with self._thread_lock:
            thread, self._thread = self._thread, None
            self._stop_event.set()
        if thread is not None and thread is not threading.current_thread():
            thread.join()

    def _poll(self, stop: threading.Event) -> None:
        while not stop.wait(self._interval):
            try:
                self.check()
            except Exception:
                # The thread's boundary: an unexpected failure (in on_reload, say)
                # must not end reloading for the life of the process.
                log.exception("policy reload check failed", extra={"outcome": "error"})


def _stamp(directory: Path, files: Sequence[str] = ()) -> _Stamp:
    """A cheap summary of the directory and of ``files`` (keys, trusted roots the
    policies read) that changes whenever their content may have."""
    try:
        names = sorted(os.listdir(directory))
    except OSError as exc:
        return ("unreadable", exc.errno)
    try:
        data_target: str | None = os.readlink(directory / "..data")
    except OSError:
        data_target = None
    entries = [_entry(name, directory / name) for name in names if not name.startswith(".")]
    entries.extend(_entry(file, Path(file)) for file in files)
    return (data_target, tuple(entries))


def _entry(name: str, path: Path) -> tuple[object, ...]:
    real = os.path.realpath(path)
    try:
        st = os.stat(real)
    except OSError as exc:
        return (name, real, exc.errno)
    return (name, real, st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)
