"""What a worker's connection limits did: closings by reason, open connections by state.

The worker (``webhook.serving.worker``) and its connection table
(``webhook.serving.connections``) close connections for several reasons; this
is the operator's view of them, in one place: the two metrics, and a warning
once a minute that sums up what was closed. It is separate so that the metric
names, their help texts and the log line are read and kept together, apart
from the rules that cause them.
"""

from __future__ import annotations

import time
from collections import Counter

import prometheus_client

from webhook.core.observability import get_logger

__all__ = ["ConnectionStats"]

_log = get_logger("worker")

_REPORT_INTERVAL = 60.0


class ConnectionStats:
    """Closings counted by reason (``timeout``, ``evicted``, ``shed``, ``refused``) and open counts.

    Counts go to the app's metrics registry once :meth:`attach` has one, and
    to a warning every minute in which something was closed.
    """

    def __init__(self, client_timeout: float, capacity: int) -> None:
        self._client_timeout = client_timeout
        self._capacity = capacity
        self._closed: Counter[str] = Counter()
        self._next_report = time.monotonic() + _REPORT_INTERVAL
        self._metrics: prometheus_client.Counter | None = None
        self._open_gauge: prometheus_client.Gauge | None = None

    def attach(self, registry: prometheus_client.CollectorRegistry) -> None:
        """Publish the counts as metrics of ``registry`` (the app's)."""
        self._metrics = prometheus_client.Counter(
            "trustgate_client_connections_closed",
            "Client connections closed by the server before a complete request, by reason: "
            "timeout (no complete request within the client timeout), evicted (to make room "
            "at the connection limit), shed (to bound buffered bytes), refused (431, 413, 400).",
            ["reason"],
            registry=registry,
        )
        self._open_gauge = prometheus_client.Gauge(
            "trustgate_client_connections",
            "Open client connections of the server's workers, by state: waiting (for a complete "
            "request or idle between requests) and busy (a request being served).",
            ["state"],
            registry=registry,
            multiprocess_mode="livesum",  # the pod's, when workers share metrics
        )

    def count(self, reason: str) -> None:
        """One connection closed for ``reason``."""
        self._closed[reason] += 1
        if self._metrics is not None:
            self._metrics.labels(reason).inc()

    def observe(self, now: float, waiting: int, busy: int) -> None:
        """Set the open connections by state; once a minute, log what was closed meanwhile."""
        if self._open_gauge is not None:
            self._open_gauge.labels("waiting").set(waiting)
            self._open_gauge.labels("busy").set(busy)
        if now >= self._next_report:
            self._next_report = now + _REPORT_INTERVAL
            self._report()

    def _report(self) -> None:
        if not self._closed:
            return
        _log.warning(
            "closed %d connections that sent no complete request within %g s, %d to make room "
            "at %d connections, %d to bound buffered bytes, refused %d requests that were too "
            "large or malformed, in the last %g s",
            self._closed["timeout"],
            self._client_timeout,
            self._closed["evicted"],
            self._capacity,
            self._closed["shed"],
            self._closed["refused"],
            _REPORT_INTERVAL,
            extra={"fields": dict(self._closed)},
        )
        self._closed.clear()
