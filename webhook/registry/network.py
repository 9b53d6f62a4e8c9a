"""What every outbound call of a review goes through: per-host limits, a circuit
breaker per host, the review's byte budget, and sockets bound to its deadline.

A slow or failing host must not take the capacity that reviews of other hosts
need. So each host gets at most ``concurrency`` calls in flight per process; a
call waits for a slot only while the host is turning its calls over, and is
refused at once when every slot is held by a call that has already run longer
than ``queue_seconds``. After ``failure_threshold`` consecutive timeouts or
connection failures the host's breaker opens: calls to it are refused at once
for ``open_seconds``, then one probe call is let through (half-open) and its
outcome closes or reopens the breaker. Every refusal names the host and why.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Literal

import requests

from webhook.errors import UpstreamError
from webhook.offline import needs_io
from webhook.registry.deadline import Deadline
from webhook.registry.guard import guarded_session, watching

#: ``observer(event, host)``: breaker_open, breaker_half_open, breaker_closed,
#: breaker_rejected, limit_rejected, deadline_exceeded, budget_exceeded.
NetworkObserver = Callable[[str, str], None]

BreakerState = Literal["closed", "open", "half_open"]


class HostFailure(UpstreamError):
    """A host timed out or could not be reached: what the breaker counts."""


class HostRefused(UpstreamError):
    """A call was not made: the host's breaker is open or its slots are taken."""


@dataclass(frozen=True, slots=True)
class NetworkLimits:
    """``network:`` of trustgate.yaml; the defaults suit the chart (16 threads, 512Mi)."""

    concurrency: int = 8
    queue_seconds: float = 0.5
    failure_threshold: int = 5
    open_seconds: float = 30.0
    review_budget_bytes: int = 8 * 1024 * 1024


class _Host:
    """The slots and the breaker of one host; guarded by the Network's condition."""

    def __init__(self) -> None:
        self.started: list[float] = []  # monotonic start of each call in flight
        self.state: BreakerState = "closed"
        self.failures = 0
        self.opened_at = 0.0
        self.probing = False


class Network:
    """Per-host limits and breakers, and the per-thread guarded HTTP sessions."""

    def __init__(
        self, limits: NetworkLimits | None = None, observer: NetworkObserver | None = None
    ) -> None:
        self.limits = limits or NetworkLimits()
        self._observer = observer
        self._cond = threading.Condition()
        self._hosts: dict[str, _Host] = {}
        self._local = threading.local()

    def session(self) -> requests.Session:
        """This thread's HTTP session, created lazily; its sockets obey the call's deadline."""
        session: requests.Session | None = getattr(self._local, "session", None)
        if session is None:
            session = guarded_session()
            self._local.session = session
        return session

    def event(self, name: str, host: str) -> None:
        """Report ``name`` for ``host`` to the observer (metrics)."""
        if self._observer is not None:
            self._observer(name, host)

    def state(self, host: str) -> BreakerState:
        """The breaker state of ``host`` (closed for a host never called)."""
        with self._cond:
            entry = self._hosts.get(host)
            return "closed" if entry is None else entry.state

    @contextlib.contextmanager
    def call(self, host: str, deadline: Deadline) -> Iterator[None]:
        """Hold a slot of ``host`` for one call within ``deadline``.

        Inside, sockets of this thread's session are shut down when the deadline
        passes. A HostFailure raised inside counts against the host's breaker;
        anything else (an answer, even an error status) counts as the host
        being up. Raises HostRefused when the breaker is open or no slot frees
        up in time, and HostFailure when the deadline has already passed.
        """
        needs_io(host)  # an offline pass stops here (see webhook.offline)
        deadline.host = host
        started = self._enter(host, deadline)
        failed = False
        try:
            with watching(deadline.expires_at):
                yield
        except HostFailure:
            failed = True
            raise
        finally:
            self._leave(host, started, failed)

    def _enter(self, host: str, deadline: Deadline) -> float:
        limits = self.limits
        with self._cond:
            entry = self._hosts.setdefault(host, _Host())
            self._admit(host, entry)
            give_up = time.monotonic() + min(limits.queue_seconds, deadline.remaining())
            while len(entry.started) >= limits.concurrency:
                now = time.monotonic()
                stuck = all(now - start > limits.queue_seconds for start in entry.started)
                if stuck or now >= give_up:
                    if entry.state == "half_open":
                        entry.probing = False
                    self.event("limit_rejected", host)
                    held = max(now - start for start in entry.started)
                    raise HostRefused(
                        f"{host} already has {len(entry.started)} calls in flight from this "
                        f"server, the oldest for {held:.1f} s (network.perHostConcurrency); "
                        "not queuing behind a slow registry"
                    )
                self._cond.wait(give_up - now)
            started = time.monotonic()
            entry.started.append(started)
            return started

    def _admit(self, host: str, entry: _Host) -> None:
        if entry.state == "closed":
            return
        left = entry.opened_at + self.limits.open_seconds - time.monotonic()
        if entry.state == "open" and left <= 0:
            entry.state = "half_open"
            entry.probing = False
            self.event("breaker_half_open", host)
        if entry.state == "half_open" and not entry.probing:
            entry.probing = True  # this call is the probe
            return
        self.event("breaker_rejected", host)
        after = f"a probe follows in {left:.0f} s" if left > 0 else "a probe is under way"
        raise HostRefused(
            f"{host} is failing ({entry.failures} consecutive timeouts or connection "
            f"failures): calls to it are refused by its circuit breaker; {after}"
        )

    def _leave(self, host: str, started: float, failed: bool) -> None:
        with self._cond:
            entry = self._hosts[host]
            entry.started.remove(started)
            if failed:
                entry.failures += 1
                reopen = entry.state == "half_open"
                if reopen or (
                    entry.state == "closed" and entry.failures >= self.limits.failure_threshold
                ):
                    entry.state = "open"
                    entry.opened_at = time.monotonic()
                    entry.probing = False
                    self.event("breaker_open", host)
            else:
                entry.failures = 0
                if entry.state != "closed":
                    entry.state = "closed"
                    entry.probing = False
                    self.event("breaker_closed", host)
            self._cond.notify_all()
