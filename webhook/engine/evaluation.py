"""One image and the policies that govern it -> a Verdict.

The engine is pure orchestration: it parses the reference, finds the matching
policies, runs each policy's checks cheapest first, and records the outcome in
frozen dataclasses. It knows nothing of Kubernetes requests or HTTP.
"""

from __future__ import annotations

import functools
import threading
import time
from collections.abc import Callable, Hashable, Iterable
from concurrent.futures import Future
from concurrent.futures import TimeoutError as FutureTimeout
from typing import Any

from webhook.checks import Caution, Check, CheckContext, checks_for, offline_checks
from webhook.core.deadline import Deadline
from webhook.core.errors import CheckUnavailable, TrustgateError, UpstreamError
from webhook.core.offline import NeedsNetwork, offline
from webhook.core.reference import ImageRef, parse_reference
from webhook.core.scheduler import FairPool, Lane
from webhook.core.scope import PullIdentity, Scope
from webhook.core.sources import ScopeReader
from webhook.engine.verdict import (
    PENDING,
    CheckResult,
    PolicyResult,
    Verdict,
    denial_line,
    display,
)
from webhook.policy.model import NoMatch, Policy, PolicySet

_Judge = Callable[[str, str, str], Verdict]
#: Tag -> digest, asked of the registry (through its cache) within the deadline.
Resolver = Callable[[ImageRef, Deadline], str]

#: Distinct images (and image x namespace x kind verdicts) remembered per engine.
_MEMO_SIZE = 4096
#: Entries of a derived memo (a kept decision holds up to 32 images' worth).
_DERIVED_MEMO_SIZE = 1024
#: The last part of a review's deadline that belongs to the answer: calls stop
#: this long (at most a tenth of the deadline) before it, so that the denial they
#: end in is sent within ``deadlineSeconds``, not after it.
ANSWER_RESERVE_SECONDS = 0.5
#: How long past a deadline without a reserve the engine waits for a review's
#: checks: every socket is shut down at the deadline, so they finish within it
#: unless stuck where no socket is (a DNS lookup); then the answer does not wait.
GRACE_SECONDS = 0.5


class Engine:
    """Evaluates images against the current policy set.

    ``policies`` is called for every evaluation so that a reloaded set takes
    effect at once; it must be cheap (an attribute read).
    """

    def __init__(
        self,
        policies: Callable[[], PolicySet],
        *,
        no_match: NoMatch = "deny",
        checks: dict[str, Check] | None = None,
        resolver: Resolver | None = None,
        deadline_seconds: float = 8.0,
        max_workers: int = 32,
        budget_bytes: int | None = None,
        on_event: Callable[[str, str], None] | None = None,
        review_share: int | None = None,
        max_images: int | None = None,
        pull_secrets: ScopeReader | None = None,
    ) -> None:
        self._policies = policies
        self._no_match = no_match
        self._checks = checks if checks is not None else offline_checks()
        self._resolver = resolver
        self._deadline_seconds = deadline_seconds
        self._max_workers = max_workers
        self._budget_bytes = budget_bytes
        self._on_event = on_event
        #: Most distinct images one review may name (admission.maxImages); None: no limit.
        self.max_images = max_images
        self._review_share = review_share
        self._pool: FairPool[Verdict] | None = None
        self._pool_lock = threading.Lock()
        # Parsing is pure and the same few images come back on every deploy;
        # a bounded memo keeps the grammar off the hot path.
        self._parse = functools.lru_cache(maxsize=_MEMO_SIZE)(parse_reference)
        self._memo: tuple[PolicySet, _Judge | None, dict[Hashable, Any] | None] | None = None
        #: Reads the pull secrets of a workload (``credentials.pullSecrets``); None: unused.
        self.pull_secrets = pull_secrets

    def evaluate(
        self,
        images: Iterable[str],
        *,
        namespace: str,
        kind: str,
        deadline: Deadline | None = None,
        pinning: bool = False,
        policy_set: PolicySet | None = None,
        pull: PullIdentity | None = None,
    ) -> tuple[Verdict, ...]:
        """A Verdict for each distinct image of a request, in first-seen order.

        Each image is first judged here, offline (see ``webhook.core.offline``): an
        image whose every answer is cached costs no thread. Images that need
        I/O are checked concurrently in this review's lane of the engine's
        threads (see ``webhook.core.scheduler``: a review gets at most its share of
        them, and reviews take turns), each outbound call within what is left
        of ``deadline`` and its byte budget. More distinct images than
        ``max_images`` are all denied unchecked (see :meth:`over_limit`). The
        answer never waits longer than the deadline (plus a short grace), also
        for a single image: an image whose checks have not finished by then is
        denied, never admitted, naming the host the review was waiting for.
        ``pinning``: the verdicts only decide what ``/mutate`` pins, never an
        admission (see ``CheckContext.pinning``).
        ``policy_set``: the set to judge by (default: the set in force now).
        ``pull``: the pull secrets and service account of the workload, whose
        logins the review's registry calls may use (with ``pull_secrets``).
        """
        if policy_set is None:
            policy_set = self._policies()
        distinct = list(dict.fromkeys(images))
        refusal = self.over_limit(len(distinct), kind)
        if refusal is not None:  # admission refuses first; this guards every other caller
            return tuple(Verdict(display(i), None, (), denials=(refusal,)) for i in distinct)
        memo = self._memo_for(policy_set)
        if memo is not None and not pinning:
            return tuple(memo(image, namespace, kind) for image in distinct)
        deadline = deadline or self.deadline()
        if pull is not None and self.pull_secrets is not None and deadline.scope is None:
            deadline.scope = self._scope(pull, deadline)
        judge = functools.partial(
            self.evaluate_one,
            namespace=namespace,
            kind=kind,
            policy_set=policy_set,
            deadline=deadline,
            pinning=pinning,
        )
        # First in this thread, offline: an image whose every answer is cached
        # needs no check thread (see webhook.core.offline). The others go to this
        # review's lane of the check threads as soon as they are known to.
        judged: list[Verdict] = []
        waiting: list[tuple[int, Future[Verdict]]] = []
        lane: Lane[Verdict] | None = None  # made only when an image needs a thread
        try:
            for image in distinct:
                try:
                    with offline():
                        judged.append(judge(image))
                    continue
                except NeedsNetwork:
                    pass
                if lane is None:
                    lane = self._executor().lane()
                waiting.append((len(judged), lane.submit(functools.partial(judge, image))))
                judged.append(PENDING)
            for index, future in waiting:
                judged[index] = self._collect(distinct[index], future, deadline)
        finally:
            if lane is not None:
                lane.close()  # what is still queued past the deadline frees its threads
        return tuple(judged)

    def _scope(self, pull: PullIdentity, deadline: Deadline) -> Scope | None:
        """The scope of ``pull``'s secrets; one that says why when they cannot be read.

        Secrets that cannot be read in time do not stop the review: its calls
        go on without them, in a partition of their own, and a denial for want
        of a login says why the secrets were not tried.
        """
        assert self.pull_secrets is not None
        try:
            return self.pull_secrets.scope(pull, deadline)
        except UpstreamError as exc:
            return Scope(
                key=f"{pull.namespace}:unread",
                label=f"namespace {pull.namespace}",
                lookup=lambda _image: (),
                problems=(f"the pull secrets of namespace {pull.namespace}: {exc.message}",),
            )

    def over_limit(self, count: int, kind: str) -> str | None:
        """The denial of a ``kind`` naming ``count`` distinct images, when that is too many.

        None within ``admission.maxImages``. A review past it is refused before
        any image is checked or logged one by one: every image costs threads,
        registry calls and a decision-log entry.
        """
        limit = self.max_images
        if limit is None or count <= limit:
            return None
        return (
            f"the {kind} names {count} distinct images, more than the {limit} one review "
            f"may judge (admission.maxImages); split the workload or raise the limit"
        )

    def parse(self, image: str) -> ImageRef:
        """``parse_reference(image)``, remembered: the same few images come back on every deploy.

        Raises:
            ImageReferenceError: as parse_reference.
        """
        return self._parse(image)

    @property
    def policy_set(self) -> PolicySet:
        """The policy set in force now, its exceptions included."""
        return self._policies()

    def deadline(self) -> Deadline:
        """A new review's deadline and byte budget, as configured."""
        reserve = min(ANSWER_RESERVE_SECONDS, self._deadline_seconds / 10)
        return Deadline(self._deadline_seconds, max_bytes=self._budget_bytes, reserve=reserve)

    def _collect(self, image: str, future: Future[Verdict], deadline: Deadline) -> Verdict:
        try:
            cutoff = deadline.answer_by  # one cutoff for all images
            if cutoff <= deadline.expires_at:  # no time reserved for the answer
                cutoff = deadline.expires_at + GRACE_SECONDS
            return future.result(timeout=max(0.0, cutoff - time.monotonic()))
        except FutureTimeout:
            future.cancel()
            host = deadline.host
            if self._on_event is not None:
                self._on_event("deadline_exceeded", host or "none")
            shown = display(image)
            waiting = f", still waiting for {host}" if host else ""
            line = (
                f"image {shown} denied: its checks did not finish within the review's "
                f"deadline of {deadline.seconds:g} s (deadlineSeconds){waiting}"
            )
            return Verdict(shown, None, (), denials=(line,))

    def _executor(self) -> FairPool[Verdict]:
        with self._pool_lock:
            if self._pool is None:
                self._pool = FairPool(self._max_workers, self._review_share)
            return self._pool

    def close(self) -> None:
        """Stop the worker threads once they are idle."""
        with self._pool_lock:
            if self._pool is not None:
                self._pool.close()
                self._pool = None

    def _memo_for(self, policy_set: PolicySet) -> _Judge | None:
        """A memoised evaluation for ``policy_set`` when all its checks are pure, else None.

        A verdict then depends only on (image, namespace, kind) and the set, so
        it is kept until the set is replaced; a reload starts a new memo.
        """
        return self._memos(policy_set)[1]

    def derived_memo(self, policy_set: PolicySet) -> dict[Hashable, Any] | None:
        """A memo for what follows from ``policy_set`` and a request alone.

        Given only when every check of the set is pure (see :meth:`_memo_for`):
        whatever is computed from its verdicts and the request's own fields can
        then be kept, under a key that holds every input it was computed from.
        It is emptied when it reaches its size and replaced with the set, so an
        entry never outlives the policies it came from. None when a check needs
        the network or the clock: those verdicts are cached elsewhere, with
        lifetimes.
        """
        derived = self._memos(policy_set)[2]
        if derived is not None and len(derived) >= _DERIVED_MEMO_SIZE:
            derived.clear()
        return derived

    def _memos(
        self, policy_set: PolicySet
    ) -> tuple[PolicySet, _Judge | None, dict[Hashable, Any] | None]:
        current = self._memo
        if current is not None and current[0] is policy_set:
            return current
        pure = all(
            check.pure for policy in policy_set for check in checks_for(policy, self._checks)
        )
        memo: _Judge | None = None
        if pure:

            def judge(image: str, namespace: str, kind: str) -> Verdict:
                return self.evaluate_one(
                    image, namespace=namespace, kind=kind, policy_set=policy_set
                )

            memo = functools.lru_cache(maxsize=_MEMO_SIZE)(judge)
        current = self._memo = (policy_set, memo, {} if memo is not None else None)
        return current

    def evaluate_one(
        self,
        image: str,
        *,
        namespace: str,
        kind: str,
        policy_set: PolicySet | None = None,
        deadline: Deadline | None = None,
        pinning: bool = False,
    ) -> Verdict:
        """The Verdict for one image in a ``kind`` request in ``namespace``."""
        shown = display(image)
        try:
            ref = self._parse(image)
        except TrustgateError as exc:
            # Never admitted, whatever the policies: what cannot be parsed
            # cannot be matched, and a parser differential is an attack surface.
            return Verdict(
                image=shown,
                reference=None,
                policies=(),
                denials=(f"image {shown} denied: invalid image reference: {exc.message}",),
            )
        policy_set = policy_set if policy_set is not None else self._policies()
        matching = policy_set.matching(namespace, kind, ref)
        if not matching:
            return self._unmatched(shown, ref, namespace)
        context = self._context(ref, deadline or self.deadline(), pinning)
        results = tuple(self._run_policy(ref, policy, context) for policy in matching)
        denials: list[str] = []
        warnings: list[str] = []
        for result in results:
            warnings.extend(
                f'image {shown}: policy "{result.policy}": {caution.message}'
                for caution in result.cautions
            )
            failure = result.failure
            if failure is None:
                continue
            line = denial_line(shown, result.policy, result.mode, failure)
            (denials if result.mode == "enforce" else warnings).append(line)
        login = context.deadline.logins.get(ref.repository)
        return Verdict(
            shown, ref, results, tuple(denials), tuple(warnings), digest=context.digest, login=login
        )

    def _context(self, ref: ImageRef, deadline: Deadline, pinning: bool = False) -> CheckContext:
        resolver = self._resolver

        def resolve() -> str:
            if resolver is None:
                raise CheckUnavailable("no registry client is configured to resolve tags")
            return resolver(ref, deadline)

        return CheckContext(deadline, resolve, ref.digest, pinning=pinning)

    def _run_policy(self, ref: ImageRef, policy: Policy, context: CheckContext) -> PolicyResult:
        results: list[CheckResult] = []
        for check in checks_for(policy, self._checks):
            context.vouched = None
            try:
                note = check.run(ref, policy, context)
            except TrustgateError as exc:
                results.append(CheckResult(check.name, exc.outcome, exc.message))
                break
            verified = context.vouched
            if isinstance(note, Caution):
                results.append(CheckResult(check.name, "warn", note.message, verified))
            else:
                results.append(CheckResult(check.name, "pass", note or "", verified))
        return PolicyResult(policy.name, policy.mode, tuple(results), policy.pin_digest)

    def _unmatched(self, shown: str, ref: ImageRef, namespace: str) -> Verdict:
        where = f'namespace "{namespace}"' if namespace else "cluster scope"
        text = f"image {shown}: no policy governs {ref.repository} in {where}"
        if self._no_match == "deny":
            line = f"{text} (defaults.noMatch: deny)"
            return Verdict(shown, ref, (), denials=(line,), no_match="deny")
        if self._no_match == "warn":
            line = f"{text} (defaults.noMatch: warn)"
            return Verdict(shown, ref, (), warnings=(line,), no_match="warn")
        return Verdict(shown, ref, (), no_match="allow")
