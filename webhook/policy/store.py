"""The current policy set, reloaded when the policy directory changes.

Readers take ``store.current``: an immutable ``PolicySet`` that a reload
replaces in one attribute assignment, so the request path needs no lock. A
reload that fails keeps the last good set in place and records the error.

Change detection is two-staged: a cheap stamp (``policy/stamp.py``) is
compared on every check; only when it differs is the directory re-read, and a
new set is installed only when the content fingerprint differs too.

With a ``SetVerifier`` (``policies.signature``), a set loads only when
``SignedSets`` admits it (signed by an authority, not a replay), and it is
compiled from the bytes that were verified (``policy/snapshot.py``). Every
verified file is watched, in subdirectories too. Without a good set at
start-up the store holds none (``loaded`` is false) instead of raising, and
tries again at each change: see ``PolicyStore`` for why.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path

from webhook.core.counts import counted
from webhook.core.errors import PolicyError
from webhook.policy.loader import load_directory
from webhook.policy.model import PolicySet
from webhook.policy.signedset import Refusal, SignatureState, SignedSets
from webhook.policy.signing.gate import (
    MarkError,
    MarkStore,
    PolicySignatureError,
    SetVerifier,
    Verified,
)
from webhook.policy.snapshot import load_verified, uncovered
from webhook.policy.stamp import Stamp as _Stamp
from webhook.policy.stamp import stamp as _stamp
from webhook.policy.stamp import verified_paths as _verified_paths
from webhook.trust.trustroot import TrustRoots

log = logging.getLogger("trustgate.policy")


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

    With ``verifier``, only sets it verifies load (``policy/signedset.py``):
    ``marks`` keeps the high-water mark, ``minimum_version`` is the lowest
    version accepted, ``on_refused`` hears each refusal and ``on_mark_error``
    each failed write of the mark. With ``required`` false (audit) a refused
    set loads anyway, with a warning.

    Without a good set at start-up the store does not raise: it holds no set
    (``loaded`` is false, ``current`` is empty) and checks again at every
    change, so the pod is not ready until a valid set appears, and loads it
    within one interval of its arrival. Exiting instead would put the pod in a
    crash loop whose back-off delays the recovery by minutes, and tell the
    operator less than /readyz does. A refusal while a good set is in force
    keeps that set, and the pod stays ready (see ``webhook.serving.app``).
    """

    def __init__(
        self,
        directory: Path,
        *,
        interval: float = 2.0,
        on_reload: Callable[[ReloadStatus], None] | None = None,
        roots: TrustRoots | None = None,
        verifier: SetVerifier | None = None,
        marks: MarkStore | None = None,
        required: bool = True,
        minimum_version: int = 0,
        on_refused: Callable[[PolicySignatureError], None] | None = None,
        on_mark_error: Callable[[MarkError], None] | None = None,
    ) -> None:
        """Load ``directory`` now, its trusted roots from ``roots`` when given.

        Raises:
            PolicyError: when the first load fails and there is no ``verifier``;
                there is no good set to keep.
            ValueError: when ``interval`` is not positive.
        """
        if interval <= 0:
            raise ValueError(f"interval must be positive, not {interval}")
        self._directory = directory
        self._interval = interval
        self._on_reload = on_reload
        self._on_refused = on_refused
        self._check_lock = threading.Lock()
        self._thread_lock = threading.Lock()
        self._stop_event = threading.Event()
        self._thread: threading.Thread | None = None
        self._roots = roots
        self._signed: SignedSets | None = None
        self._signature: SignatureState | None = None
        self._retry = False
        self._stamp: _Stamp | None = None
        self._set: PolicySet | None = None
        self._watched: tuple[str, ...] = ()
        self._status = ReloadStatus(loaded_at=0.0, policies=0, fingerprint="")
        if verifier is not None:
            self._signed = SignedSets(
                verifier,
                marks,
                required=required,
                minimum_version=minimum_version,
                on_mark_error=on_mark_error,
            )
            self._signature = SignatureState(required=required)
            self._check(force=True)
            return
        stamp = _stamp(directory)
        self._set = load_directory(directory, roots)
        self._watched = self._set.files
        self._stamp = None if self._watched else stamp
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
        """The policy set in force (empty when none is); immutable, safe from any thread."""
        return self._set if self._set is not None else _NO_SET

    @property
    def loaded(self) -> bool:
        """Whether a policy set is in force (false only with a verifier, before a good set)."""
        return self._set is not None

    @property
    def status(self) -> ReloadStatus:
        """The state of the store and of its last reload."""
        return self._status

    @property
    def signature(self) -> SignatureState | None:
        """What the signature of the set in force is; None without a verifier."""
        return self._signature

    def check(self) -> bool:
        """Reload now if the directory changed since the last check.

        A failed reload keeps the current set, records the error in ``status``
        and logs it; it is not retried until the directory changes again
        (except a refusal for an unreadable high-water mark: retried at every check).

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
        if self._signed is not None:
            self._signed.retry()
        stamp = _stamp(self._directory, self._watched)
        changed = force or stamp != self._stamp
        if not changed and not self._retry:
            return False, None
        # Recorded before reading: a change made while we read shows at the next check.
        self._stamp = stamp
        try:
            policy_set, verified, refusal = self._load()
        except PolicySignatureError as exc:
            return False, self._refused(exc, quiet=not changed)
        except PolicyError as exc:
            return False, self._failed(str(exc), quiet=not changed)
        except Exception as exc:
            # The loader raises only PolicyError; should a defect let something else
            # through, the reload still fails where readiness and metrics show it,
            # instead of leaving the old set in force with no sign of the change.
            log.exception("policy loader defect", extra={"outcome": "error"})
            return False, self._failed(f"cannot load the policies ({type(exc).__name__}: {exc})")
        return self._install(policy_set, verified, refusal)

    def _load(self) -> tuple[PolicySet, Verified | None, PolicySignatureError | None]:
        """The set of the directory, who signed it, and (audit) why it loaded unverified."""
        self._retry = False
        if self._signed is None:
            return load_directory(self._directory, self._roots), None, None
        try:
            verified = self._signed.admit(self._directory)
        except PolicySignatureError as exc:
            # Retried at every check while required: a mark store that is back
            # must let the set load with no change on disk. (Audit loads anyway.)
            self._retry = exc.reason == "unavailable" and self._signed.required
            if self._signed.required:
                raise
            return load_directory(self._directory, self._roots), None, exc
        if verified.files is None:
            # A verifier that kept no content (none so far): load what is on disk.
            policy_set = load_directory(self._directory, self._roots)
        else:
            try:
                policy_set = load_verified(self._directory, verified.files, self._roots)
            except PolicySignatureError as exc:
                if self._signed.required:
                    raise
                # Audit: what required would refuse loads, as for any other refusal.
                return load_directory(self._directory, self._roots), None, exc
            refusal = uncovered(policy_set, self._directory)
            if refusal is not None:
                if self._signed.required:
                    raise refusal
                return policy_set, None, refusal
        self._signed.advance(verified)
        return policy_set, verified, None

    def _install(
        self,
        policy_set: PolicySet,
        verified: Verified | None,
        refusal: PolicySignatureError | None,
    ) -> tuple[bool, ReloadStatus | None]:
        previous = self._status
        before = self._signature
        self._note_signature(verified, refusal)
        watched = policy_set.files
        if verified is not None and verified.files is not None:
            watched = tuple(
                dict.fromkeys((*watched, *_verified_paths(self._directory, verified.files)))
            )
        if watched != self._watched:
            # Files now watched were read before their stamp could be taken: one may
            # have changed since. The next check stamps them and reads them again.
            self._watched = watched
            self._stamp = None
        if self._set is not None and policy_set.fingerprint == self._set.fingerprint:
            if previous.last_error is None and before == self._signature:
                return False, None  # touched, not changed
            # Back to the content in force: nothing to swap, but the error is over.
            self._status = replace(previous, last_error=None, last_error_at=None)
            log.info(
                "policy directory %s is valid again; its policies are unchanged",
                self._directory,
                extra={"directory": str(self._directory), "outcome": "ok"},
            )
            return False, self._status
        first = self._set is None
        self._set = policy_set
        self._status = ReloadStatus(
            loaded_at=time.time(),
            policies=len(policy_set),
            fingerprint=policy_set.fingerprint,
            reloads=previous.reloads + (0 if first else 1),
            failures=previous.failures,
        )
        signed = "" if verified is None else f", version {verified.version} signed by "
        signed += "" if verified is None else repr(verified.authority)
        log.info(
            "%s %s from %s%s",
            "loaded" if first else "reloaded",
            counted(len(policy_set), "policy", "policies"),
            self._directory,
            signed,
            extra={
                "directory": str(self._directory),
                "fingerprint": policy_set.fingerprint,
                "outcome": "ok",
            },
        )
        return True, self._status

    def _note_signature(
        self, verified: Verified | None, refusal: PolicySignatureError | None
    ) -> None:
        """Record what the set about to be in force is: verified, or loaded in audit."""
        state = self._signature
        if state is None:
            return
        if verified is not None:
            self._signature = replace(
                state,
                state="verified",
                authority=verified.authority,
                version=verified.version,
                digest=verified.digest,
            )
            return
        if refusal is None:
            return
        message = str(refusal)
        last = state.last_refusal
        if state.state == "audit" and last is not None and last.message == message:
            return  # the same set read again: reported once
        log.warning(
            "loading policy set %s without a valid signature, as policies.signature."
            "required is false (audit); with required: true it would be refused: %s",
            self._directory,
            message,
            extra={"directory": str(self._directory), "outcome": "warn"},
        )
        if self._on_refused is not None:
            self._on_refused(refusal)
        self._signature = replace(
            state,
            state="audit",
            authority=None,
            version=None,
            digest=None,
            last_refusal=Refusal(refusal.reason, message, time.time()),
        )

    def _refused(self, exc: PolicySignatureError, *, quiet: bool) -> ReloadStatus | None:
        """Record a refused set; the set in force, if any, stays."""
        message = str(exc)
        state = self._signature
        assert state is not None  # refusals come from a verifier
        last = state.last_refusal
        repeated = quiet and last is not None and last.message == message
        self._signature = replace(
            state,
            state="refused" if self._set is not None else "none",
            last_refusal=Refusal(exc.reason, message, time.time()),
        )
        if not repeated and self._on_refused is not None:
            self._on_refused(exc)
        return self._failed(f"refused ({exc.reason}): {message}", quiet=repeated)

    def _failed(self, error: str, *, quiet: bool = False) -> ReloadStatus | None:
        """Record a failed reload; the set in force stays.

        ``quiet``: a retry with nothing changed on disk; the same failure again
        is not news (None), not logged, counted or reported again.
        """
        previous = self._status
        if quiet and previous.last_error == error:
            return None
        self._status = replace(
            previous, last_error=error, last_error_at=time.time(), failures=previous.failures + 1
        )
        if self._set is None:
            log.error(
                "no policy set loaded; reviews are denied until a valid one appears: %s",
                error,
                extra={"directory": str(self._directory), "outcome": "error"},
            )
        else:
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


#: What ``current`` gives while no set is loaded: nothing matches it.
_NO_SET = PolicySet()
