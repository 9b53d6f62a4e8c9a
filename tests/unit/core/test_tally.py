"""Counter increments applied in batches: none lost, none counted twice, none late for a scrape."""

from __future__ import annotations

import threading
import time
from collections import deque

from prometheus_client import CollectorRegistry, Counter

from tests.support.scrape import samples
from webhook.core.tally import FLUSH_SECONDS, Tally, take
from webhook.serving.metrics import Metrics


def counter() -> Counter:
    return Counter("reviews", "Reviews.", ["decision"], registry=CollectorRegistry())


def value(c: Counter, label: str) -> float:
    return float(c.labels(label)._value.get())


def test_increments_are_applied_per_label_set_on_flush() -> None:
    c = counter()
    tally = Tally()
    tally.inc(c, ("allowed",))
    tally.inc(c, ("allowed",), 3)
    tally.inc(c, ("denied",))
    tally.flush()
    assert (value(c, "allowed"), value(c, "denied")) == (4, 1)
    tally.flush()  # nothing pending: nothing counted again
    assert (value(c, "allowed"), value(c, "denied")) == (4, 1)


def test_the_background_thread_applies_them_without_a_flush() -> None:
    c = counter()
    tally = Tally()
    tally.inc(c, ("allowed",), 2)
    deadline = time.monotonic() + 50 * FLUSH_SECONDS
    while value(c, "allowed") < 2 and time.monotonic() < deadline:
        time.sleep(FLUSH_SECONDS / 4)
    assert value(c, "allowed") == 2


def test_no_increment_is_lost_or_doubled_while_threads_count_and_flush() -> None:
    c = counter()
    tally = Tally()
    threads_, per_thread = 8, 5000
    stop = threading.Event()

    def count() -> None:
        for n in range(per_thread):
            tally.inc(c, ("allowed",), 1 + n % 2)

    def flush() -> None:
        while not stop.is_set():
            tally.flush()

    flusher = threading.Thread(target=flush)
    flusher.start()
    workers = [threading.Thread(target=count) for _ in range(threads_)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    stop.set()
    flusher.join()
    tally.flush()
    assert value(c, "allowed") == threads_ * sum(1 + n % 2 for n in range(per_thread))


def test_take_leaves_what_arrives_meanwhile_for_the_next_call() -> None:
    items = deque(["a", "b"])
    taken = take(items)
    items.append("c")  # after take() was called, before it is consumed
    assert list(taken) == ["a", "b"]
    assert list(items) == ["c"]
    assert list(take(deque())) == []


def test_a_scrape_shows_the_increments_of_its_own_worker_at_once() -> None:
    metrics = Metrics()
    metrics.tally.inc(metrics.requests, ("allowed",), 7)
    found = samples(metrics.render().decode())
    assert found["trustgate_admission_requests_total"] == [({"decision": "allowed"}, 7.0)]
