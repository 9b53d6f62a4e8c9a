"""What every outbound call of a review goes through: per-host limits, a circuit
breaker per host, the review's byte budget, and sockets bound to its deadline.

A slow or failing host must not take the capacity that reviews of other hosts
need. So each host gets at most ``concurrency`` calls in flight per process.
Calls beyond that wait their turn, first come first served, for as long as
their review has time, provided the host turns its calls over; once every slot
is held by a call that has run longer than ``queue_seconds`` and none has
finished for that long, the waiting calls are refused at once.

The breaker counts only the host's own failures (``HostFailure``): a refused or
reset connection, a TLS failure, a 5xx answer, or a call that timed out within
its own per-call timeout while its review still had time. A call cut off by its
review's deadline, or never started (``CallCut``), says nothing about the host:
otherwise one review naming thousands of images could run out of its own time
and close a healthy registry to every other tenant. After ``failure_threshold``
consecutive failures the breaker opens: calls are refused at once for
``open_seconds``, then one probe call is let through (half-open), and its
outcome closes or reopens the breaker; a probe cut off by its review's deadline
decides nothing, and the next call probes instead. Every refusal names the host
and why.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Literal

from webhook.core.deadline import Deadline
from webhook.core.errors import TrustgateError, UpstreamError
from webhook.core.offline import needs_io
from webhook.registry.guard import watching
from webhook.registry.transport import Transport

#: ``observer(event, host)``: breaker_open, breaker_half_open, breaker_closed,
#: breaker_rejected, limit_rejected, deadline_exceeded, budget_exceeded.
NetworkObserver = Callable[[str, str], None]

BreakerState = Literal["closed", "open", "half_open"]

#: How a call ended, for the breaker: the host answered, failed, or neither.
_Outcome = Literal["up", "failed", "cut"]


class HostFailure(UpstreamError):
    """The host itself failed: refused or reset, TLS, 5xx, or its own per-call timeout.

    What the breaker counts, unless the review's deadline had passed by then.
    """


class CallCut(UpstreamError):
    """A call cut off, or never started, because its review's deadline passed.

    The breaker does not count it: the review ran out of time, not the host.
    """


class HostRefused(UpstreamError):
    """A call was not made: the host's breaker is open or its slots are held by slow calls."""


@dataclass(frozen=True, slots=True)
class NetworkLimits:
    """``network:`` of trustgate.yaml; the defaults suit the chart (16 threads, 512Mi).

    ``call_seconds`` is a registry call's own timeout (each wait for bytes); a
    call is also cut at its review's deadline, whichever comes first.
    """

    concurrency: int = 8
    queue_seconds: float = 0.5
    failure_threshold: int = 5
    open_seconds: float = 30.0
    review_budget_bytes: int = 8 * 1024 * 1024
    call_seconds: float = 5.0


class _Call:
    """One call of a host: waiting in its queue, then in flight from ``started``."""

    __slots__ = ("started",)

    def __init__(self) -> None:
        self.started = 0.0


class _Host:
    """The slots, queue and breaker of one host; guarded by the Network's condition."""

    def __init__(self) -> None:
        self.calls: list[_Call] = []  # in flight
        self.queue: deque[_Call] = deque()  # waiting for a slot, first come first served
        self.finished = float("-inf")  # monotonic end of the latest call the host answered
        self.state: BreakerState = "closed"
        self.failures = 0
        self.opened_at = 0.0
        self.probe: _Call | None = None  # the half-open breaker's probe, once let through


class Network:
    """Per-host limits and breakers, and the transport whose sockets obey each call's deadline."""

    def __init__(
        self, limits: NetworkLimits | None = None, observer: NetworkObserver | None = None
    ) -> None:
        self.limits = limits or NetworkLimits()
        self._observer = observer
        self._cond = threading.Condition()
        self._hosts: dict[str, _Host] = {}
        self.transport = Transport(per_host=self.limits.concurrency)

    def event(self, name: str, host: str) -> None:
        """Report ``name`` for ``host`` to the observer (metrics)."""
        if self._observer is not None:
            self._observer(name, host)

    def state(self, host: str) -> BreakerState:
        """The breaker state of ``host`` (closed for a host never called)."""
        with self._cond:
            entry = self._hosts.get(host)
            return "closed" if entry is None else entry.state

    def waiting(self, host: str) -> int:
        """How many calls wait in line for a slot of ``host``."""
        with self._cond:
            entry = self._hosts.get(host)
            return 0 if entry is None else len(entry.queue)

    @contextlib.contextmanager
    def call(self, host: str, deadline: Deadline) -> Iterator[None]:
        """Hold a slot of ``host`` for one call within ``deadline``.

        Inside, sockets of this thread's session are shut down when the deadline
        passes. A HostFailure raised inside counts against the host's breaker
        (the caller raises it only for what the host did while the review had
        time); a CallCut, or an error outside the TrustgateError tree, counts
        for nothing; any other UpstreamError (an answer, even an error status)
        counts as the host being up.

        Raises:
            HostRefused: the breaker is open, or every slot is held by a slow call.
            CallCut: the deadline passed before a slot came free.
        """
        needs_io(host)  # an offline pass stops here (see webhook.core.offline)
        deadline.host = host
        call = self._enter(host, deadline)
        outcome: _Outcome = "cut"
        try:
            with watching(deadline.expires_at):
                yield
            outcome = "up"
        except HostFailure:
            outcome = "failed"
            raise
        except CallCut:
            raise
        except TrustgateError:
            outcome = "up"
            raise
        finally:
            self._leave(host, call, outcome)

    def _enter(self, host: str, deadline: Deadline) -> _Call:
        call = _Call()
        with self._cond:
            entry = self._hosts.setdefault(host, _Host())
            self._admit(host, entry, None)
            entry.queue.append(call)
            try:
                while not (entry.queue[0] is call and len(entry.calls) < self.limits.concurrency):
                    self._wait(host, entry, deadline)
                self._admit(host, entry, call)
            finally:
                entry.queue.remove(call)
                self._cond.notify_all()  # the next in line may take a free slot
            if deadline.remaining() <= 0:
                if entry.probe is call:
                    entry.probe = None
                raise self._late(host, deadline, "before its call could start")
            call.started = time.monotonic()
            entry.calls.append(call)
            return call

    def _wait(self, host: str, entry: _Host, deadline: Deadline) -> None:
        """Wait for a change, or raise when waiting longer makes no sense."""
        limits = self.limits
        left = deadline.remaining()
        if left <= 0:
            raise self._late(
                host,
                deadline,
                f"while its call waited in line for one of the {limits.concurrency} slots "
                "this server allows per host (network.perHostConcurrency)",
            )
        full = len(entry.calls) >= limits.concurrency
        if not full:
            self._cond.wait(left)  # a free slot, but others are ahead in line
            return
        now = time.monotonic()
        # Slow: every call in flight has run past queue_seconds and none has
        # finished for as long. A host that answers promptly frees slots often.
        slow_from = max(max(c.started for c in entry.calls), entry.finished) + limits.queue_seconds
        if now >= slow_from:
            held = max(now - c.started for c in entry.calls)
            self.event("limit_rejected", host)
            raise HostRefused(
                f"{host} already has {len(entry.calls)} calls in flight from this server, "
                f"the oldest for {held:.1f} s, and none has finished for "
                f"{limits.queue_seconds:g} s (network.perHostConcurrency); "
                "not queuing behind a slow registry"
            )
        self._cond.wait(min(left, slow_from - now + 0.001))

    def _late(self, host: str, deadline: Deadline, when: str) -> CallCut:
        self.event("deadline_exceeded", host)
        return CallCut(
            f"{host} timed out: the review's deadline of {deadline.seconds:g} s passed {when}"
        )

    def _admit(self, host: str, entry: _Host, call: _Call | None) -> None:
        """Refuse when the breaker is open; ``call`` (at a free slot) may become the probe."""
        if entry.state == "closed":
            return
        left = entry.opened_at + self.limits.open_seconds - time.monotonic()
        if entry.state == "open" and left <= 0:
            entry.state = "half_open"
            entry.probe = None
            self.event("breaker_half_open", host)
        if entry.state == "half_open" and entry.probe is None:
            if call is not None:
                entry.probe = call  # this call is the probe
            return
        self.event("breaker_rejected", host)
        after = f"a probe follows in {left:.0f} s" if left > 0 else "a probe is under way"
        raise HostRefused(
            f"{host} is failing ({entry.failures} consecutive timeouts, connection "
            f"failures or server errors): calls to it are refused by its circuit breaker; "
            f"{after}"
        )

    def _leave(self, host: str, call: _Call, outcome: _Outcome) -> None:
        with self._cond:
            entry = self._hosts[host]
            entry.calls.remove(call)
            if entry.probe is call:
                entry.probe = None
            if outcome == "failed":
                entry.finished = time.monotonic()
                entry.failures += 1
                if entry.state == "half_open" or (
                    entry.state == "closed" and entry.failures >= self.limits.failure_threshold
                ):
                    entry.state = "open"
                    entry.opened_at = time.monotonic()
                    self.event("breaker_open", host)
            elif outcome == "up":
                entry.finished = time.monotonic()
                entry.failures = 0
                if entry.state != "closed":
                    entry.state = "closed"
                    self.event("breaker_closed", host)
            # A call cut by its review's deadline decides nothing; a cut probe
            # leaves the next call to probe.
            self._cond.notify_all()
