"""Single flight: concurrent askers of one answer wait for one computation.

A rollout sends many reviews of the same new image at once; without this,
each of a worker's threads verifies it on its own and the registry sees every
one of them. Here the first asker of a key (the leader) computes, and the
others wait for its answer, each only within its own review's deadline.

A waiter waits for at most half of what its deadline has left, then computes
on its own, so that waiting for a slow leader never costs it its answer.
A leader's failure is not always an answer for the others: when it ran out
of its own time or byte budget, a waiter with more of either would have
succeeded. Such a waiter computes again (leading a new flight, so the rest
still wait for one computation). A failure the waiter would have met just as
well (the leader had at least as much time left, and some of it unspent) is
shared. Results are never kept here: caching is the caller's business.

The single-flight packages on PyPI are young (0.x); what matters here is
the per-waiter deadline and the rule for failures, in a few lines, so they
are kept in the house.
"""

from __future__ import annotations

import copy
import threading
from collections.abc import Callable, Hashable
from typing import Generic, TypeVar

from webhook.core.deadline import BudgetExceeded, Deadline
from webhook.core.errors import UpstreamError

V = TypeVar("V")

#: A leader that failed with less than this left had run out of time: its
#: failure is its own deadline's, not an answer for others.
SPENT_SECONDS = 0.05


class _Flight(Generic[V]):
    __slots__ = ("deadline", "done", "error", "left", "value")

    def __init__(self, deadline: Deadline) -> None:
        self.deadline = deadline
        self.done = threading.Event()
        self.value: V | None = None
        self.error: BaseException | None = None
        self.left = 0.0


class SingleFlight(Generic[V]):
    """One computation per key at a time, shared by everyone asking meanwhile."""

    def __init__(self) -> None:
        self._flights: dict[Hashable, _Flight[V]] = {}
        self._lock = threading.Lock()

    def run(
        self,
        key: Hashable,
        compute: Callable[[Deadline], V],
        deadline: Deadline,
        *,
        alone: Callable[[Deadline], V] | None = None,
    ) -> tuple[V, bool]:
        """``compute(deadline)``'s value for ``key``, and whether it was another's (waited for).

        ``alone`` (default ``compute``) is what a waiter that stopped waiting
        computes with, outside the flight: it must not wait for others again.

        Raises:
            Whatever ``compute`` raises: this caller's own computation, or a
                leader's failure that this caller would have met as well.
        """
        while True:
            with self._lock:
                flight = self._flights.get(key)
                leading = flight is None
                if flight is None:
                    flight = self._flights[key] = _Flight(deadline)
            if leading:
                return self._lead(key, flight, compute, deadline), False
            if not flight.done.wait(deadline.remaining() / 2):
                # Half of what was left is gone: the rest is this caller's to compute
                # with, on its own, so that waiting never costs it its answer.
                return (alone or compute)(deadline), False
            if flight.error is None:
                return flight.value, True  # type: ignore[return-value]
            if _shared(flight, deadline):
                raise _copy(flight.error)
            # The leader ran out of its own limits; compute (or wait) again.

    def __len__(self) -> int:
        with self._lock:
            return len(self._flights)

    def _lead(
        self,
        key: Hashable,
        flight: _Flight[V],
        compute: Callable[[Deadline], V],
        deadline: Deadline,
    ) -> V:
        try:
            flight.value = compute(deadline)
            return flight.value
        except BaseException as exc:
            # A copy, without the traceback: the flight must not keep the failed
            # call's frames (and the responses they hold) alive in a cycle.
            flight.error = _copy(exc)
            flight.left = deadline.remaining()
            raise
        finally:
            with self._lock:
                del self._flights[key]
            flight.done.set()


def _shared(flight: _Flight[V], waiter: Deadline) -> bool:
    """Whether the leader's failure is one ``waiter`` would have met as well."""
    if not isinstance(flight.error, Exception):
        return False  # a signal to the leader's thread (an offline pass, an exit), not an answer
    if isinstance(flight.error, BudgetExceeded):
        return False  # the leader's review spent its bytes, maybe on other images
    if flight.left < SPENT_SECONDS:
        return False  # the leader ran out of time
    return flight.deadline.expires_at >= waiter.expires_at


def _copy(error: BaseException) -> BaseException:
    """A copy without traceback: to keep in a flight, and to raise in a waiter's thread."""
    try:
        return copy.copy(error).with_traceback(None)
    except Exception:  # a type that cannot be copied: its message, in the tree
        return UpstreamError(f"{type(error).__name__}: {error}")
