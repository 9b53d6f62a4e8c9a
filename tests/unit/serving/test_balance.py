"""AcceptBalance across real processes: forked children share the counts as workers do.

Each child is a process forked after the balance was made (as gunicorn's
workers are after the master made it) and runs one method of its copy per
command it receives, so the tests can interleave two or three "workers" step
by step. Nothing is mocked: the staleness and deferral times are real clocks,
checked with sleeps well past their bounds.
"""

from __future__ import annotations

import multiprocessing
import time
from collections.abc import Iterator
from multiprocessing.connection import Connection
from typing import Any

import pytest

from webhook.serving.balance import AcceptBalance

#: Longer than balance's staleness bound (1 s), by a margin for a loaded machine.
PAST_STALE = 1.3
_FORK = multiprocessing.get_context("fork")


def _serve(balance: AcceptBalance, conn: Connection) -> None:
    """The child: run the balance method each command names, send back what it returned."""
    while True:
        command, args = conn.recv()
        if command == "die":  # as a killed worker: no leave(), no more heartbeats
            conn.close()
            return
        conn.send(getattr(balance, command)(*args))


class Worker:
    """A forked process holding its own copy of ``balance`` (the shared memory is shared)."""

    def __init__(self, balance: AcceptBalance) -> None:
        self._conn, child = _FORK.Pipe()
        self.process = _FORK.Process(target=_serve, args=(balance, child), daemon=True)
        self.process.start()
        child.close()

    def call(self, command: str, *args: Any) -> Any:
        self._conn.send((command, args))
        assert self._conn.poll(10), f"the child did not answer {command}"
        return self._conn.recv()

    def join(self) -> bool:
        return bool(self.call("join"))

    def publish(self, connections: int) -> None:
        self.call("publish", connections)

    def should_accept(self, connections: int) -> bool:
        return bool(self.call("should_accept", connections))

    def leave(self) -> None:
        self.call("leave")

    def die(self) -> None:
        self._conn.send(("die", ()))
        self.process.join(10)
        assert self.process.exitcode == 0

    def stop(self) -> None:
        if self.process.is_alive():
            self.process.kill()
            self.process.join(10)


@pytest.fixture
def spawn() -> Iterator[Any]:
    """Fork workers sharing a balance; all are killed at the end."""
    started: list[Worker] = []

    def make(balance: AcceptBalance) -> Worker:
        worker = Worker(balance)
        started.append(worker)
        return worker

    yield make
    for worker in started:
        worker.stop()


def test_the_busier_worker_defers_and_the_other_accepts(spawn: Any) -> None:
    balance = AcceptBalance(slots=4, max_defer=60.0)
    busy, idle = spawn(balance), spawn(balance)
    assert busy.join() and idle.join()
    busy.publish(3)
    idle.publish(1)
    assert busy.should_accept(3) is False
    assert idle.should_accept(1) is True
    # Counts published by the other process are read, not a copy made at the fork.
    idle.publish(5)
    busy.publish(3)
    assert idle.should_accept(5) is False
    assert busy.should_accept(3) is True


def test_equal_counts_both_accept(spawn: Any) -> None:
    balance = AcceptBalance(slots=4, max_defer=60.0)
    one, two = spawn(balance), spawn(balance)
    assert one.join() and two.join()
    one.publish(2)
    two.publish(2)
    assert one.should_accept(2) is True
    assert two.should_accept(2) is True


def test_after_max_defer_the_busier_worker_accepts_anyway(spawn: Any) -> None:
    max_defer = 0.05
    balance = AcceptBalance(slots=4, max_defer=max_defer)
    busy, idle = spawn(balance), spawn(balance)
    assert busy.join() and idle.join()
    busy.publish(4)
    idle.publish(0)
    started = time.monotonic()
    answers = []
    while not answers or answers[-1] is False:
        answers.append(busy.should_accept(4))
        assert time.monotonic() - started < 0.9, "the busier worker never accepted"
        time.sleep(0.002)
    waited = time.monotonic() - started
    assert waited >= max_defer
    assert answers[0] is False and len(answers) > 2, answers
    # Accepting ends the streak: the next connection is deferred again.
    assert busy.should_accept(5) is False


def test_a_new_deferral_starts_when_the_sibling_took_the_last_connection(spawn: Any) -> None:
    """A deferral the sibling resolved must not count toward the next one.

    The busier worker defers, the sibling accepts, and the busier worker is not
    asked again until the next connection, later than ``max_defer``: it must
    defer again rather than accept at once because the old streak looks long.
    """
    balance = AcceptBalance(slots=4, max_defer=0.05)
    busy, idle = spawn(balance), spawn(balance)
    assert busy.join() and idle.join()
    busy.publish(3)
    idle.publish(1)
    assert busy.should_accept(3) is False
    idle.publish(2)  # the sibling took that connection: busy is not asked again
    time.sleep(0.5)  # past 5 max_defer: the next ask is for another connection
    idle.publish(2)
    assert busy.should_accept(3) is False


def test_a_sibling_without_a_heartbeat_for_a_second_is_ignored(spawn: Any) -> None:
    balance = AcceptBalance(slots=4, max_defer=60.0)
    busy, hung = spawn(balance), spawn(balance)
    assert busy.join() and hung.join()
    hung.publish(0)
    busy.publish(7)
    assert busy.should_accept(7) is False
    time.sleep(PAST_STALE)  # hung publishes nothing: its entry goes stale
    busy.publish(7)
    assert busy.should_accept(7) is True
    assert busy.should_accept(7) is True
    # Its next heartbeat makes it count again.
    hung.publish(0)
    assert busy.should_accept(7) is False


def test_a_dead_siblings_slot_goes_to_a_new_worker(spawn: Any) -> None:
    balance = AcceptBalance(slots=2, max_defer=60.0)
    first, second = spawn(balance), spawn(balance)
    assert first.join() and second.join()
    late = spawn(balance)
    assert late.join() is False  # both slots are live
    first.die()
    assert late.join() is False  # dead, but its heartbeat is not stale yet
    time.sleep(PAST_STALE)
    second.publish(3)
    replacement = spawn(balance)
    assert replacement.join() is True
    replacement.publish(0)
    # The new worker counts for the one that was there before.
    assert second.should_accept(3) is False
    assert replacement.should_accept(0) is True


def test_leave_frees_the_slot_at_once(spawn: Any) -> None:
    balance = AcceptBalance(slots=2, max_defer=60.0)
    leaving, staying = spawn(balance), spawn(balance)
    assert leaving.join() and staying.join()
    leaving.publish(0)
    staying.publish(4)
    assert staying.should_accept(4) is False
    leaving.leave()
    assert staying.should_accept(4) is True  # the one that left no longer counts
    newcomer = spawn(balance)
    assert newcomer.join() is True  # no staleness wait: the slot is free
    newcomer.publish(1)
    assert staying.should_accept(4) is False


def test_without_a_slot_a_worker_always_accepts(spawn: Any) -> None:
    balance = AcceptBalance(slots=2, max_defer=60.0)
    one, two = spawn(balance), spawn(balance)
    assert one.join() and two.join()
    one.publish(0)
    two.publish(0)
    extra = spawn(balance)
    assert extra.join() is False
    extra.publish(100)  # not counted anywhere: it has no slot
    assert one.should_accept(0) is True
    for _ in range(5):
        assert extra.should_accept(100) is True
        time.sleep(0.002)


def test_a_worker_whose_slot_was_taken_while_it_stalled_takes_another(spawn: Any) -> None:
    """A worker that stalls past the staleness bound loses its slot to a new joiner.

    When it runs again, both must not write the same slot: each would skip it
    as its own and ignore the other, so neither would ever defer to the other.
    """
    balance = AcceptBalance(slots=3, max_defer=60.0)
    stalled = spawn(balance)
    assert stalled.join()
    time.sleep(PAST_STALE)  # no heartbeat: its slot is stale
    newcomer = spawn(balance)
    assert newcomer.join()  # takes the first stale or free slot: the stalled one's
    stalled.publish(5)  # it runs again
    newcomer.publish(0)
    assert stalled.should_accept(5) is False
    newcomer.publish(9)
    assert newcomer.should_accept(9) is False
    assert stalled.should_accept(5) is True
