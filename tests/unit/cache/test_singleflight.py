"""Single flight: one computation per key for concurrent askers, each within its own deadline."""

from __future__ import annotations

import contextlib
import gc
import threading
import time
import weakref
from collections.abc import Callable

import pytest

from webhook.cache.singleflight import SingleFlight
from webhook.core.deadline import BudgetExceeded, Deadline
from webhook.core.errors import UpstreamError
from webhook.core.offline import NeedsNetwork


def together(count: int, ask: Callable[[int], object]) -> list[object]:
    """Run ``ask(i)`` in ``count`` threads started at once; their results or exceptions."""
    results: list[object] = [None] * count
    start = threading.Barrier(count)

    def run(number: int) -> None:
        start.wait()
        try:
            results[number] = ask(number)
        except Exception as exc:
            results[number] = exc

    threads = [threading.Thread(target=run, args=(n,)) for n in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    return results


def failed_run(
    flights: SingleFlight[str],
    compute: Callable[[Deadline], str],
    deadline: Deadline,
    errors: list[Exception],
) -> None:
    """Run a leader that is expected to fail; its exception goes to ``errors``."""
    try:
        flights.run("key", compute, deadline)
    except Exception as exc:
        errors.append(exc)


def test_concurrent_askers_of_one_key_wait_for_one_computation() -> None:
    flights: SingleFlight[str] = SingleFlight()
    calls: list[float] = []

    def compute(deadline: Deadline) -> str:
        calls.append(deadline.remaining())
        time.sleep(0.2)
        return "sha256:abc"

    results = together(16, lambda _: flights.run("key", compute, Deadline(5)))
    assert len(calls) == 1
    assert [value for value, _ in results] == ["sha256:abc"] * 16  # type: ignore[misc]
    assert sorted(waited for _, waited in results) == [False] + [True] * 15  # type: ignore[misc]
    assert len(flights) == 0


def test_other_keys_do_not_wait() -> None:
    flights: SingleFlight[int] = SingleFlight()
    calls: list[int] = []

    def compute(number: int) -> Callable[[Deadline], int]:
        def run(_: Deadline) -> int:
            calls.append(number)
            time.sleep(0.1)
            return number

        return run

    results = together(4, lambda n: flights.run(n, compute(n), Deadline(5)))
    assert sorted(calls) == [0, 1, 2, 3]
    assert results == [(0, False), (1, False), (2, False), (3, False)]


def test_a_leader_that_ran_out_of_its_own_time_is_not_the_waiters_answer() -> None:
    """The leader's review had 0.2 s left; a waiter with 5 s computes itself and succeeds."""
    flights: SingleFlight[str] = SingleFlight()
    entered = threading.Event()
    calls: list[str] = []

    def slow(deadline: Deadline) -> str:
        calls.append("leader")
        entered.set()
        time.sleep(deadline.remaining())
        raise UpstreamError("registry.example timed out")

    def fast(_: Deadline) -> str:
        calls.append("waiter")
        return "verified"

    errors: list[Exception] = []
    leader = threading.Thread(target=failed_run, args=(flights, slow, Deadline(0.2), errors))
    leader.start()
    assert entered.wait(5)
    assert flights.run("key", fast, Deadline(5)) == ("verified", False)
    leader.join(5)
    assert calls == ["leader", "waiter"]
    assert [type(e) for e in errors] == [UpstreamError]


def test_a_leader_over_its_byte_budget_is_not_the_waiters_answer() -> None:
    flights: SingleFlight[str] = SingleFlight()
    entered = threading.Event()

    def spent(_: Deadline) -> str:
        entered.set()
        time.sleep(0.1)
        raise BudgetExceeded("the review read more than 1000 bytes")

    errors: list[Exception] = []
    leader = threading.Thread(target=failed_run, args=(flights, spent, Deadline(10), errors))
    leader.start()
    assert entered.wait(5)
    assert flights.run("key", lambda _: "verified", Deadline(5)) == ("verified", False)
    leader.join(5)
    assert [type(e) for e in errors] == [BudgetExceeded]


def test_a_failure_the_waiter_would_meet_as_well_is_shared() -> None:
    """The leader had more time than the waiter and most of it left: its answer stands."""
    flights: SingleFlight[str] = SingleFlight()
    entered = threading.Event()
    calls: list[str] = []

    def failing(_: Deadline) -> str:
        calls.append("leader")
        entered.set()
        time.sleep(0.1)
        raise UpstreamError("registry.example answered 503")

    def never(_: Deadline) -> str:
        calls.append("waiter")
        return "verified"

    errors: list[Exception] = []
    leader = threading.Thread(target=failed_run, args=(flights, failing, Deadline(10), errors))
    leader.start()
    assert entered.wait(5)
    with pytest.raises(UpstreamError, match="answered 503"):
        flights.run("key", never, Deadline(5))
    leader.join(5)
    assert calls == ["leader"]
    assert [type(e) for e in errors] == [UpstreamError]


def test_a_waiter_waits_for_at_most_half_its_time_then_computes_itself() -> None:
    """A leader held up (a slow registry): the waiter keeps half its deadline to compute."""
    flights: SingleFlight[str] = SingleFlight()
    entered = threading.Event()
    release = threading.Event()

    def held(_: Deadline) -> str:
        entered.set()
        release.wait(10)
        return "verified"

    leader = threading.Thread(target=flights.run, args=("key", held, Deadline(20)))
    leader.start()
    assert entered.wait(5)
    started = time.monotonic()
    # ``alone``, not ``compute``: a waiter that stopped waiting does not wait again.
    own = flights.run("key", lambda _: "led", Deadline(4), alone=lambda _: "alone")
    assert own == ("alone", False)
    assert 1.5 < time.monotonic() - started < 3.5  # about 2 s: half of the 4 s it had
    release.set()
    leader.join(5)


def test_a_failed_flight_keeps_no_frames_alive() -> None:
    """The failed call's frames hold what it read (up to a review's byte budget): once the
    error is handled they go at once, not at the next garbage collection."""
    flights: SingleFlight[str] = SingleFlight()

    class Response:
        pass

    held: list[weakref.ref[Response]] = []

    def compute(_: Deadline) -> str:
        response = Response()
        held.append(weakref.ref(response))
        raise UpstreamError("registry.example sent too much")

    gc.disable()
    try:
        with contextlib.suppress(UpstreamError):
            flights.run("key", compute, Deadline(5))
        assert held[0]() is None
    finally:
        gc.enable()


def test_a_signal_to_the_leaders_thread_is_no_answer_for_waiters() -> None:
    """A leader stopped by a BaseException (an offline pass's NeedsNetwork, an exit):
    the waiter computes itself instead of receiving that signal."""
    flights: SingleFlight[str] = SingleFlight()
    entered = threading.Event()
    errors: list[BaseException] = []

    def stopped(_: Deadline) -> str:
        entered.set()
        time.sleep(0.1)
        raise NeedsNetwork("registry.example")

    def lead() -> None:
        try:
            flights.run("key", stopped, Deadline(10))
        except NeedsNetwork as exc:
            errors.append(exc)

    leader = threading.Thread(target=lead)
    leader.start()
    assert entered.wait(5)
    assert flights.run("key", lambda _: "verified", Deadline(5)) == ("verified", False)
    leader.join(5)
    assert [type(e) for e in errors] == [NeedsNetwork]
