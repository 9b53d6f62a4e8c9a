"""The decision log and Prometheus metrics.

Loggers are children of ``trustgate``; only ``server.py`` and ``cli.py`` attach
handlers. Metrics live in a registry owned by the app, never the process-global
one, so tests can build as many apps as they like. A server with several worker
processes calls :func:`share_metrics` first, so that each scrape shows the whole
pod rather than the one worker that answered it.
"""

from __future__ import annotations

import atexit
import json
import logging
import os
import sys
import threading
import time
from collections import deque
from collections.abc import Iterator
from pathlib import Path
from typing import Any, TextIO

import orjson
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

from webhook.tally import Tally, take

_ROOT = "trustgate"
#: Lines waiting for the writer thread; past this, new ones are dropped.
_QUEUE_SIZE = 10_000
#: How long a line waits for the writer thread at most, in seconds.
_FLUSH_SECONDS = 0.05
#: Lines waiting that wake the writer before its time.
_WAKE_BACKLOG = 1000
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

    The line is encoded by orjson, several times faster than the standard
    library's encoder on a decision-log entry. Values json.dumps would not encode
    (dataclasses, dates, anything else) are written as ``str()`` gives them, as
    ``json.dumps(default=str)`` would; what orjson refuses (integers past 64
    bits) goes to the standard library. orjson writes non-ASCII text as UTF-8
    rather than ``\\u`` escapes: the same JSON.
    """

    def __init__(self) -> None:
        super().__init__()
        # One tuple, replaced whole: request threads format concurrently.
        self._stamp: tuple[int, str] = (-1, "")

    def format(self, record: logging.LogRecord) -> str:
        """Render ``record`` as a JSON line."""
        entry = self._entry(record.created, int(record.msecs), record.levelname, record.name,
                            record.getMessage())  # fmt: skip
        for key in record.__dict__.keys() - _STANDARD:
            value = record.__dict__[key]
            if key == "fields" and isinstance(value, dict):
                entry.update(value)
            elif not key.startswith("_"):
                entry[key] = value
        if record.exc_info:
            entry["exc"] = self.formatException(record.exc_info)
        return self._encode(entry)

    def line(
        self, created: float, level: int, logger: str, msg: str, fields: dict[str, Any]
    ) -> str:
        """The line :meth:`format` writes for a record with these attributes and ``fields``.

        Written out rather than shared with :meth:`format`: it runs once per review.
        """
        second = int(created)
        stamp = self._stamp
        if stamp[0] != second:
            stamp = (second, time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(second)))
            self._stamp = stamp
        entry = {
            "time": f"{stamp[1]}.{int((created - second) * 1000):03d}Z",  # msecs as LogRecord's
            "level": _LEVELS[level],
            "logger": logger,
            "msg": msg,
            **fields,
        }
        try:
            return orjson.dumps(entry, default=str, option=_ORJSON_OPTIONS).decode()
        except (TypeError, orjson.JSONEncodeError):
            return self._encode(entry)

    def _entry(
        self, created: float, msecs: int, level: str, logger: str, msg: str
    ) -> dict[str, Any]:
        return {
            "time": f"{self._timestamp(created)}.{msecs:03d}Z",
            "level": level.lower(),
            "logger": logger,
            "msg": msg,
        }

    @staticmethod
    def _encode(entry: dict[str, Any]) -> str:
        try:
            return orjson.dumps(entry, default=str, option=_ORJSON_OPTIONS).decode()
        except (TypeError, orjson.JSONEncodeError):
            # Keys that are not strings, integers past 64 bits: what orjson refuses.
            return json.dumps(entry, default=str, separators=(",", ":"))

    def _timestamp(self, created: float) -> str:
        """``created``'s UTC date and time to the second, computed once per second."""
        second = int(created)
        stamp = self._stamp
        if stamp[0] != second:
            stamp = (second, time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(second)))
            self._stamp = stamp
        return stamp[1]


#: Level numbers to the names JSON lines give them.
_LEVELS = {
    level: logging.getLevelName(level).lower()
    for level in (logging.DEBUG, logging.INFO, logging.WARNING, logging.ERROR, logging.CRITICAL)
}

#: Types orjson would encode its own way, left to ``default=str`` as json.dumps does.
_ORJSON_OPTIONS = (
    orjson.OPT_PASSTHROUGH_DATACLASS
    | orjson.OPT_PASSTHROUGH_DATETIME
    | orjson.OPT_PASSTHROUGH_SUBCLASS
    | orjson.OPT_NON_STR_KEYS
)


class _BatchingHandler(logging.Handler):
    """Formats a record where it is logged; a writer thread writes the lines in batches.

    A request thread formats its line (a few microseconds with orjson) and
    appends it to a deque: no lock taken, no thread woken. The writer wakes
    every ``_FLUSH_SECONDS`` (or at once when a backlog builds) and writes what
    arrived in one call, without the GIL for the write itself. Waking a thread
    per record, as a ``QueueListener`` does, costs a futex wake-up and a GIL
    hand-over per review, more than formatting the line; formatting a batch in
    the writer instead would hold the GIL for a whole batch, which request
    threads then wait for in 5 ms switch intervals. Lines wait at most
    ``_FLUSH_SECONDS``; :meth:`close` writes what is left.

    A request thread never waits on a slow log sink: the review's deadline
    matters more than one log line. Past ``_QUEUE_SIZE`` waiting lines new ones
    are dropped, counted and reported.
    """

    def __init__(self, target: logging.Handler) -> None:
        super().__init__()
        self.target = target
        self.dropped = 0
        self._lines: deque[str] = deque()
        self._wake = threading.Event()
        self._stopping = False
        #: The logger it serves, and its formatter when lines can skip the
        #: LogRecord (see :func:`log_fields`); set by configure_logging.
        self.owner: logging.Logger | None = None
        self.direct: JsonFormatter | None = None
        self._writer = threading.Thread(target=self._run, name="trustgate-log-writer", daemon=True)
        self._writer.start()

    def handle(self, record: logging.LogRecord) -> bool:
        """Format ``record`` and queue its line (no handler lock: the deque is thread-safe)."""
        if not self.filter(record):
            return False
        self.emit(record)
        return True

    def emit(self, record: logging.LogRecord) -> None:
        """Queue ``record``'s line for the writer."""
        if self._full():
            return
        try:
            line = self.target.format(record)
        except Exception:
            self.handleError(record)
            return
        self.queue(line)

    def queue(self, line: str) -> None:
        """Queue a formatted line for the writer (dropped and counted when it is behind)."""
        backlog = len(self._lines)
        if self._full():
            return
        self._lines.append(line)
        if backlog >= _WAKE_BACKLOG and not self._wake.is_set():
            self._wake.set()

    def _full(self) -> bool:
        if len(self._lines) < _QUEUE_SIZE:
            return False
        self.dropped += 1
        if self.dropped % 1000 == 1:
            sys.stderr.write(
                f"trustgate: the log writer is behind; {self.dropped} records dropped\n"
            )
        return True

    def _run(self) -> None:
        while not self._stopping:
            self._wake.wait(_FLUSH_SECONDS)
            self._wake.clear()
            self._write_batch()

    def _write_batch(self) -> None:
        batch = list(take(self._lines))  # in C: the GIL is held for microseconds
        if not batch:
            return
        batch.append("")
        try:
            stream = self.target.stream  # type: ignore[attr-defined]
            stream.write("\n".join(batch))
            stream.flush()
        except Exception:
            # As logging does when a stream fails: say so on stderr, go on.
            if logging.raiseExceptions:
                sys.stderr.write("trustgate: writing the log failed\n")

    def close(self) -> None:
        """Stop the writer and write every line still waiting."""
        self._stopping = True
        self._wake.set()
        if self._writer.is_alive() and self._writer is not threading.current_thread():
            self._writer.join()
        self._write_batch()
        super().close()


_writer: _BatchingHandler | None = None


def _stop_writer() -> None:
    global _writer
    if _writer is not None:
        _writer.close()
        _writer = None


def log_fields(logger: logging.Logger, level: int, msg: str, fields: dict[str, Any]) -> None:
    """``logger.log(level, msg, extra={"fields": fields})``, cheaper where it can be.

    The decision log writes a line per review. When the line goes only to the
    background JSON writer (as under ``trustgate serve``), it is formatted here
    and queued, the same line :class:`JsonFormatter` writes for the record,
    without building a LogRecord and walking the handler chain: a third of
    what logging a review costs. Anywhere else (another handler or filter on
    the way, text logs, a test capturing records) it is logged as usual.
    """
    if not logger.isEnabledFor(level):
        return
    writer = _writer
    owner = writer.owner if writer is not None else None
    if (
        writer is not None
        and owner is not None
        and writer.direct is not None
        and level in _LEVELS
        and not logger.handlers
        and not logger.filters
        and logger.parent is owner
        and owner.handlers == [writer]
        and not owner.filters
        and not writer.filters
    ):
        writer.queue(writer.direct.line(time.time(), level, logger.name, msg, fields))
        return
    logger.log(level, msg, extra={"fields": fields})


def configure_logging(
    fmt: str = "json",
    level: str = "info",
    stream: TextIO | None = None,
    *,
    background: bool = False,
) -> None:
    """Attach one handler to the ``trustgate`` logger, replacing any earlier one.

    With ``background``, lines are written by a thread of their own, in
    batches (see :class:`_BatchingHandler`), so request threads never wait on
    or contend for the stream (the decision log writes a line per review).
    Call it in the process that logs: a thread does not survive a fork, so a
    server calls it in each worker.
    """
    global _writer
    logger = logging.getLogger(_ROOT)
    for old in list(logger.handlers):
        logger.removeHandler(old)
    _stop_writer()
    handler: logging.Handler = logging.StreamHandler(stream or sys.stderr)
    if fmt == "json":
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s %(message)s"))
    if background:
        _writer = _BatchingHandler(handler)
        _writer.owner = logger
        formatter = handler.formatter
        _writer.direct = formatter if isinstance(formatter, JsonFormatter) else None
        atexit.register(_stop_writer)
        handler = _writer
        # Nothing here prints thread names; not collecting them saves work on
        # every record of a log that writes a line per review. Process ids stay:
        # these switches are global, and gunicorn's own log prints %(process)d.
        logging.logThreads = False
        logging.logMultiprocessing = False
        # Nor the caller's file and line (a walk up the stack per record): the
        # logging HOWTO's documented switch for it.
        logging._srcfile = None
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
            # 0 while any worker skips it.
            multiprocess_mode="livemin",
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
        """The metrics in Prometheus text format, this worker's pending increments applied."""
        self.tally.flush()
        return generate_latest(self._scraped)
