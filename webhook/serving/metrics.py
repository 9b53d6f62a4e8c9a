"""Prometheus metrics, in a registry each app owns.

Metrics live in a registry owned by the app, never the process-global one, so
tests can build as many apps as they like. A server with several worker
processes calls :func:`share_metrics` first, so that each scrape shows the whole
pod rather than the one worker that answered it.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
    multiprocess,
    values,
)
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from webhook.core.observability import observe_drops
from webhook.core.scope import SOURCE_KINDS
from webhook.core.tally import Tally
from webhook.policy.signedset import SignatureState
from webhook.policy.signing.gate import REASONS
from webhook.signatures.conditions import OVERRUNS

_BREAKER_STATES = {"breaker_closed": 0, "breaker_half_open": 1, "breaker_open": 2}

#: When the serving certificate this process uses expires (seconds since the epoch);
#: set by the server at each (re)load of its TLS files, None before any.
_certificate_expiry: float | None = None


def note_certificate_expiry(timestamp: float) -> None:
    """Record when the serving certificate in use expires (the server calls it at each load)."""
    global _certificate_expiry
    _certificate_expiry = timestamp


class _CertificateExpiry(Collector):
    """``trustgate_certificate_expiry_timestamp_seconds``, once a certificate is served.

    Read at scrape time, so a reloaded certificate shows at once; absent (not 0)
    when the app runs without TLS, so that no expiry alert fires for it.
    """

    def collect(self) -> Iterator[Metric]:
        if _certificate_expiry is not None:
            yield GaugeMetricFamily(
                "trustgate_certificate_expiry_timestamp_seconds",
                "When the serving TLS certificate in use expires (its notAfter), in seconds "
                "since the epoch.",
                value=_certificate_expiry,
            )


#: Where the worker processes of this server write their metrics, once
#: :func:`share_metrics` was called here or in the process this one was forked from.
_shared_directory: Path | None = None


def share_metrics(directory: Path) -> None:
    """Make the metrics created from now on, here and in forked workers, one set for all.

    prometheus_client's multiprocess mode, its documented answer for gunicorn:
    each process writes its values to memory-mapped files in ``directory`` and
    a scrape, whichever worker answers it, adds them up: counters and
    histograms summed, each gauge by its ``multiprocess_mode``. The library
    chooses how values are kept when it is first imported, from
    ``PROMETHEUS_MULTIPROC_DIR``, and this process imported it long before
    ``serve`` knew how many workers it would start; so the variable is set
    here (workers inherit it, and the library reads it to name its files) and
    the library's own choice is made again. Call it in the server's master
    before the workers fork and before any metric exists; never in a process
    that builds several apps, whose metrics would share files.
    """
    global _shared_directory
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = str(directory)
    values.ValueClass = values.get_value_class()  # type: ignore[no-untyped-call]
    _shared_directory = directory


def forget_process(pid: int) -> None:
    """Drop the live gauges of worker ``pid``, which has exited (gunicorn's child_exit).

    Its counters and histograms stay, so that the pod's totals never go down.
    """
    if _shared_directory is not None:
        multiprocess.mark_process_dead(pid, str(_shared_directory))  # type: ignore[no-untyped-call]


class Metrics:
    """The webhook's Prometheus metrics, in a registry of their own.

    Gauges name how the workers' values combine when metrics are shared (see
    :func:`share_metrics`); a single process ignores it.
    """

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        #: Increments of the request path, applied in batches (see ``tally``).
        self.tally = Tally()
        #: What a scrape reads: this registry alone, or every worker's files.
        self._scraped = self.registry
        if _shared_directory is not None:
            self._scraped = CollectorRegistry()
            multiprocess.MultiProcessCollector(  # type: ignore[no-untyped-call]
                self._scraped, str(_shared_directory)
            )
            # Per process, not in the files: it answers for the worker scraped.
            self._scraped.register(_CertificateExpiry())
        self.requests = Counter(
            "trustgate_admission_requests",
            "Admission reviews answered, by decision (allowed, warned, denied, error, invalid).",
            ["decision"],
            registry=self.registry,
        )
        self.policy_decisions = Counter(
            "trustgate_policy_decisions",
            "Image x policy outcomes, by policy, mode and outcome (pass, warn, deny, error).",
            ["policy", "mode", "outcome"],
            registry=self.registry,
        )
        self.no_match = Counter(
            "trustgate_no_match_images",
            "Images no policy governed, by the defaults.noMatch action taken.",
            ["action"],
            registry=self.registry,
        )
        self.mutations = Counter(
            "trustgate_mutation_requests",
            "Mutation reviews (/mutate) answered, by outcome (patched, unchanged, error, invalid).",
            ["outcome"],
            registry=self.registry,
        )
        self.pinned_images = Counter(
            "trustgate_pinned_images",
            "Image references /mutate pinned to their verified digest.",
            registry=self.registry,
        )
        self.not_rechecked = Counter(
            "trustgate_not_rechecked_updates",
            "UPDATEs admitted without a re-check, by reason: unchanged (no image changed), "
            "deleting (the object is being deleted).",
            ["reason"],
            registry=self.registry,
        )
        self.cache = Counter(
            "trustgate_cache_lookups",
            "Cache lookups, by cache (digest, verified, failure, grade) and result: hit, miss, "
            "coalesced (waited for the same verification in this worker), awaited (got another "
            "worker's result through the shared cache), unawaited (stopped waiting, verified).",
            ["cache", "result"],
            registry=self.registry,
        )
        self.duration = Histogram(
            "trustgate_admission_duration_seconds",
            "Time to answer one admission review.",
            buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
            registry=self.registry,
        )
        self.policies_loaded = Gauge(
            "trustgate_policies_loaded",
            "Policies in the active set.",
            registry=self.registry,
            multiprocess_mode="livemostrecent",
        )
        self.reload_ok = Gauge(
            "trustgate_policy_reload_success",
            "1 if the last policy (re)load succeeded, 0 if it failed and an older set is active.",
            registry=self.registry,
            # 0 while any worker serves an older set.
            multiprocess_mode="livemin",
        )
        self.reload_failures = Counter(
            "trustgate_policy_reload_failures",
            "Policy reloads that failed and kept the last good set.",
            registry=self.registry,
        )
        self.reload_timestamp = Gauge(
            "trustgate_policy_last_reload_timestamp_seconds",
            "When the active policy set was loaded.",
            registry=self.registry,
            multiprocess_mode="livemax",
        )

        #: Made by the first observe_signature: absent without policies.signature,
        #: so that a 0 never fires TrustgatePolicySetRefused where nothing is signed.
        self.signature_valid: Gauge | None = None
        self.set_version: Gauge | None = None
        self.set_refusals = Counter(
            "trustgate_policy_set_refusals",
            "Policy sets refused (or, with required: false, loaded anyway), by reason: "
            "unsigned, untrusted (signed by no listed authority), altered (differs from "
            "what was signed), invalid (an unreadable signature), replayed (older than, or "
            "as old as with other content, a set already loaded), unavailable (the "
            "high-water mark cannot be read).",
            ["reason"],
            registry=self.registry,
        )
        for reason in REASONS:  # shown at 0, so that an alert has a series from start
            self.set_refusals.labels(reason)
        self.mark_write_failures = Counter(
            "trustgate_policy_set_mark_write_failures",
            "Failed writes of the highest policy-set version loaded (retried at each check).",
            registry=self.registry,
        )

        self.breaker_state = Gauge(
            "trustgate_breaker_state",
            "Circuit breaker of each outbound host: 0 closed, 1 half-open (probing), 2 open.",
            ["host"],
            registry=self.registry,
            # Each worker has its breakers: the worst one shows.
            multiprocess_mode="livemax",
        )
        self.breaker_rejections = Counter(
            "trustgate_breaker_rejections",
            "Calls refused at once because the host's circuit breaker was open, by host.",
            ["host"],
            registry=self.registry,
        )
        self.host_limit_rejections = Counter(
            "trustgate_host_limit_rejections",
            "Calls refused because the host already had network.perHostConcurrency calls "
            "in flight, by host.",
            ["host"],
            registry=self.registry,
        )
        self.deadline_exceeded = Counter(
            "trustgate_deadline_exceeded",
            "Calls (and reviews) cut off by the review deadline, by the host waited for.",
            ["host"],
            registry=self.registry,
        )
        self.exception_admissions = Counter(
            "trustgate_exception_admissions",
            "Admissions of images an enforce policy denied, made through an "
            "ImagePolicyException, by exception.",
            ["exception"],
            registry=self.registry,
        )
        self.break_glass = Counter(
            "trustgate_break_glass",
            "Reviews of objects carrying the break-glass annotation, by outcome (honoured: "
            "admitted through it; ignored: a policy or the user may not break glass, or the "
            "reason is empty; unneeded: nothing was denied).",
            ["outcome"],
            registry=self.registry,
        )
        self.budget_exceeded = Counter(
            "trustgate_budget_exceeded",
            "Reviews stopped for reading more than network.reviewBudgetBytes, by host.",
            ["host"],
            registry=self.registry,
        )
        self.auth_failures = Counter(
            "trustgate_registry_auth_failures",
            "Logins a registry (or its token service) refused, and login sources that could "
            "not give one, by source: config (registries.<host>), pullSecret, ecr, gcp, acr, "
            "plugin, anonymous. A refusal followed by another login's success counts too.",
            ["source"],
            registry=self.registry,
        )
        for kind in SOURCE_KINDS:  # shown at 0, so that a rate alert has a series from start
            self.auth_failures.labels(kind)
        self.condition_overruns = Counter(
            "trustgate_condition_overruns",
            "Evaluations of attestation conditions cut, each a denial, by reason: cost (past "
            "conditions.costSeconds), deadline (past what the review's deadline left), busy "
            "(no evaluator process came free in time), crashed (the process died, e.g. at "
            "its memory limit).",
            ["reason"],
            registry=self.registry,
        )
        for reason in OVERRUNS:  # shown at 0, so that a rate alert has a series from start
            self.condition_overruns.labels(reason)
        self.registry.register(_CertificateExpiry())

        self.log_lines_dropped = Counter(
            "trustgate_log_lines_dropped",
            "Log lines (decision-log lines included) dropped because the log sink fell behind "
            "and the worker's backlog of lines waiting for it was full.",
            registry=self.registry,
        )
        observe_drops(self.log_lines_dropped.inc)

        self.shared_lookups = Counter(
            "trustgate_shared_cache_lookups",
            "Lookups in the shared cache (Redis), by cache and result: hit, miss, rejected "
            "(an entry that failed verification), error (Redis failed or timed out), "
            "unavailable (skipped while Redis is down), oversized (a reply over the limit).",
            ["cache", "result"],
            registry=self.registry,
        )
        self.shared_writes = Counter(
            "trustgate_shared_cache_writes",
            "Writes to the shared cache, by cache and result: stored, error, unavailable, "
            "skipped (a value that is not shared); and for in-flight marks: claimed, held "
            "(by another worker), unheld, error, oversized.",
            ["cache", "result"],
            registry=self.registry,
        )
        self.shared_rejected = Counter(
            "trustgate_shared_cache_rejected_entries",
            "Shared cache entries ignored because their MAC did not verify or they did not "
            "decode: tampering, forgery or another key. Each is also logged.",
            ["cache"],
            registry=self.registry,
        )
        self.shared_errors = Counter(
            "trustgate_shared_cache_errors",
            "Shared cache calls that failed or timed out, by operation (get, put).",
            ["operation"],
            registry=self.registry,
        )
        self.shared_duration = Histogram(
            "trustgate_shared_cache_duration_seconds",
            "Time of one shared cache call, by operation (get, put).",
            ["operation"],
            buckets=(0.0002, 0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1),
            registry=self.registry,
        )
        self.shared_up = Gauge(
            "trustgate_shared_cache_up",
            "1 while the shared cache (cache.shared) is used; 0 while it is skipped after "
            "failures (reviews then use the local caches only) or is not configured.",
            registry=self.registry,
            # 0 while any worker skips it.
            multiprocess_mode="livemin",
        )

    def observe_signature(self, state: SignatureState) -> None:
        """Record whether the set in force is verified, and its version."""
        if self.signature_valid is None or self.set_version is None:
            self.signature_valid = Gauge(
                "trustgate_policy_set_signature_valid",
                "1 if the policy set on disk is verified (policies.signature) and in force; "
                "0 after a refusal (an older verified set, or none, is in force), or when a "
                "set was loaded without a valid signature (required: false).",
                registry=self.registry,
                multiprocess_mode="livemin",
            )
            self.set_version = Gauge(
                "trustgate_policy_set_version",
                "Signed version of the policy set in force (0: none verified).",
                registry=self.registry,
                multiprocess_mode="livemin",
            )
        self.signature_valid.set(1 if state.valid else 0)
        self.set_version.set(state.version or 0)

    def observe_shared(self, operation: str, cache: str, result: str, seconds: float) -> None:
        """Record one shared cache call (see sharedcache.SharedObserver)."""
        counter = self.shared_lookups if operation == "get" else self.shared_writes
        counter.labels(cache, result).inc()
        if result == "rejected":
            self.shared_rejected.labels(cache).inc()
        elif result == "error":
            self.shared_errors.labels(operation).inc()
        if result not in ("unavailable", "skipped"):
            self.shared_duration.labels(operation).observe(seconds)

    def observe_shared_state(self, up: bool) -> None:
        """Record whether the shared cache is used (1) or skipped after failures (0)."""
        self.shared_up.set(1 if up else 0)

    def observe_network(self, event: str, host: str) -> None:
        """Record one outbound-call event of ``host`` (see registry.network.NetworkObserver)."""
        if event.startswith("auth_failed:"):
            kind = event.partition(":")[2]
            self.auth_failures.labels(kind if kind in SOURCE_KINDS else "other").inc()
            return
        state = _BREAKER_STATES.get(event)
        if state is not None:
            self.breaker_state.labels(host).set(state)
            return
        counter = {
            "breaker_rejected": self.breaker_rejections,
            "limit_rejected": self.host_limit_rejections,
            "deadline_exceeded": self.deadline_exceeded,
            "budget_exceeded": self.budget_exceeded,
        }.get(event)
        if counter is not None:
            counter.labels(host).inc()

    def observe_condition_overrun(self, reason: str) -> None:
        """Count one condition evaluation cut (see signatures.conditions.OVERRUNS)."""
        self.condition_overruns.labels(reason).inc()

    def observe_cache(self, cache: str, result: str) -> None:
        """Count one cache lookup (``result``: hit, miss, coalesced, awaited, unawaited)."""
        self.cache.labels(cache, result).inc()

    def render(self) -> bytes:
        """The metrics in Prometheus text format, this worker's pending increments applied."""
        self.tally.flush()
        return generate_latest(self._scraped)
