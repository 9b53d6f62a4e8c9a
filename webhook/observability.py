"""The decision log and Prometheus metrics.

Loggers are children of ``trustgate``; only ``server.py`` and ``cli.py`` attach
handlers. Metrics live in a registry owned by the app, never the process-global
one, so tests can build as many apps as they like.
"""

from __future__ import annotations

import atexit
import copy
import json
import logging
import logging.handlers
import queue
import sys
import time
from collections.abc import Iterator
from typing import Any, TextIO

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

_ROOT = "trustgate"
#: Records waiting for the writer thread; past this, new ones are dropped.
_QUEUE_SIZE = 10_000
#: LogRecord attributes that are not structured fields.
_STANDARD = frozenset(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {
    "message",
    "asctime",
    "taskName",
}


def get_logger(name: str) -> logging.Logger:
    """The logger for module ``name`` (a child of ``trustgate``)."""
    short = name.removeprefix("webhook.")
    return logging.getLogger(f"{_ROOT}.{short}")


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message and every ``extra`` field.

    ``extra={"fields": {...}}`` is merged into the top level, so a record may carry
    keys such as ``name`` that would clash with LogRecord's own attributes.
    """

    def format(self, record: logging.LogRecord) -> str:
        """Render ``record`` as a JSON line."""
        entry: dict[str, Any] = {
            "time": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
            + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        for key in record.__dict__.keys() - _STANDARD:
            value = record.__dict__[key]
            if key == "fields" and isinstance(value, dict):
                entry.update(value)
            elif not key.startswith("_"):
                entry[key] = value
        if record.exc_info:
            entry["exc"] = self.formatException(record.exc_info)
        return json.dumps(entry, default=str, separators=(",", ":"))


class _DroppingQueueHandler(logging.handlers.QueueHandler):
    """Hands records to the writer thread; drops them rather than block when it lags.

    A request thread must never wait on a slow log sink: the review's deadline
    matters more than one log line. Drops are counted and reported.
    """

    def __init__(self, log_queue: queue.Queue[logging.LogRecord]) -> None:
        super().__init__(log_queue)
        self.dropped = 0

    def prepare(self, record: logging.LogRecord) -> logging.LogRecord:
        # The writer formats; here only the message is merged, as in the base class.
        record = copy.copy(record)
        record.msg = record.getMessage()
        record.args = None
        return record

    def enqueue(self, record: logging.LogRecord) -> None:
        try:
            self.queue.put_nowait(record)
        except queue.Full:
            self.dropped += 1
            if self.dropped % 1000 == 1:
                sys.stderr.write(
                    f"trustgate: the log writer is behind; {self.dropped} records dropped\n"
                )


_listener: logging.handlers.QueueListener | None = None


def _stop_listener() -> None:
    global _listener
    if _listener is not None:
        _listener.stop()
        _listener = None


def configure_logging(
    fmt: str = "json",
    level: str = "info",
    stream: TextIO | None = None,
    *,
    background: bool = False,
) -> None:
    """Attach one handler to the ``trustgate`` logger, replacing any earlier one.

    With ``background``, records are formatted and written by a thread of
    their own, so request threads never contend for the stream (the decision
    log writes a line per review). Call it in the process that logs: a thread
    does not survive a fork, so a server calls it in each worker.
    """
    global _listener
    logger = logging.getLogger(_ROOT)
    for old in list(logger.handlers):
        logger.removeHandler(old)
    _stop_listener()
    handler: logging.Handler = logging.StreamHandler(stream or sys.stderr)
    if fmt == "json":
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s %(message)s"))
    if background:
        log_queue: queue.Queue[logging.LogRecord] = queue.Queue(maxsize=_QUEUE_SIZE)
        _listener = logging.handlers.QueueListener(log_queue, handler)
        _listener.start()
        atexit.register(_stop_listener)
        handler = _DroppingQueueHandler(log_queue)
        # Nothing here prints thread names; not collecting them saves work on
        # every record of a log that writes a line per review. Process ids stay:
        # these switches are global, and gunicorn's own log prints %(process)d.
        logging.logThreads = False
        logging.logMultiprocessing = False
    logger.addHandler(handler)
    logger.setLevel(level.upper())
    logger.propagate = False


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


class Metrics:
    """The webhook's Prometheus metrics, in a registry of their own."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
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
            "Cache lookups, by cache (digest, verified, failure, grade) and result (hit, miss).",
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
        )
        self.reload_ok = Gauge(
            "trustgate_policy_reload_success",
            "1 if the last policy (re)load succeeded, 0 if it failed and an older set is active.",
            registry=self.registry,
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
        )

        self.breaker_state = Gauge(
            "trustgate_breaker_state",
            "Circuit breaker of each outbound host: 0 closed, 1 half-open (probing), 2 open.",
            ["host"],
            registry=self.registry,
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
        self.registry.register(_CertificateExpiry())

        self.shared_lookups = Counter(
            "trustgate_shared_cache_lookups",
            "Lookups in the shared cache (Redis), by cache and result: hit, miss, rejected "
            "(an entry that failed verification), error (Redis failed or timed out), "
            "unavailable (skipped while Redis is down).",
            ["cache", "result"],
            registry=self.registry,
        )
        self.shared_writes = Counter(
            "trustgate_shared_cache_writes",
            "Writes to the shared cache, by cache and result: stored, error, unavailable, "
            "skipped (a value that is not shared).",
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
        )

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

    def observe_cache(self, cache: str, result: str) -> None:
        """Count one cache lookup (``result`` is hit or miss)."""
        self.cache.labels(cache, result).inc()

    def render(self) -> bytes:
        """The metrics in Prometheus text format."""
        return generate_latest(self.registry)
