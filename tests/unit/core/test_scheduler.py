"""The fair pool: a review runs at most its share of the threads, and reviews take turns.

Most tests run the pool without threads (``threads=False``) and take turns by
hand with ``run_one``, so the order is exact; one runs real threads and waits on
events, never on the clock.
"""

from __future__ import annotations

import threading
from collections.abc import Callable

import pytest

from webhook.core.scheduler import FairPool, default_share


def recorder(order: list[str]) -> Callable[[str], Callable[[], str]]:
    def task(name: str) -> Callable[[], str]:
        def run() -> str:
            order.append(name)
            return name

        return run

    return task


def test_reviews_take_turns_instead_of_first_in_first_out() -> None:
    pool: FairPool[str] = FairPool(4, share=4, threads=False)
    order: list[str] = []
    task = recorder(order)
    big, small = pool.lane(), pool.lane()
    futures = [big.submit(task(f"big{i}")) for i in range(1000)]
    late = small.submit(task("small"))
    # One task of the big review ahead of it, not a thousand.
    assert pool.run_one() and pool.run_one()
    assert order == ["big0", "small"]
    assert late.result(timeout=0) == "small"
    while pool.run_one():
        pass
    assert [f.result(timeout=0) for f in futures] == [f"big{i}" for i in range(1000)]


def test_three_reviews_round_robin() -> None:
    pool: FairPool[str] = FairPool(8, share=8, threads=False)
    order: list[str] = []
    task = recorder(order)
    lanes = {name: pool.lane() for name in "abc"}
    for i in range(3):
        for name, lane in lanes.items():
            if name != "c" or i == 0:
                lane.submit(task(f"{name}{i}"))
    while pool.run_one():
        pass
    assert order == ["a0", "b0", "c0", "a1", "b1", "a2", "b2"]


def test_a_review_never_runs_more_than_its_share() -> None:
    pool: FairPool[str] = FairPool(8, share=2, threads=False)
    big, small = pool.lane(), pool.lane()
    for i in range(10):
        big.submit(lambda i=i: f"big{i}")
    small.submit(lambda: "small")
    taken = [pool.take() for _ in range(4)]  # as threads do, without finishing them
    lanes = [t[0] if t is not None else None for t in taken]
    # Two of the big review's (its share), the small one's, then nothing runnable:
    # the big review's other eight wait for its own tasks to end.
    assert lanes == [big, small, big, None]
    assert big.running == 2
    pool.done(big)
    nxt = pool.take()
    assert nxt is not None and nxt[0] is big


def test_closing_a_lane_cancels_what_it_has_queued() -> None:
    pool: FairPool[str] = FairPool(2, share=1, threads=False)
    lane, other = pool.lane(), pool.lane()
    queued = [lane.submit(lambda: "x") for _ in range(5)]
    kept = other.submit(lambda: "y")
    lane.close()
    assert all(f.cancelled() for f in queued)
    assert pool.run_one()
    assert kept.result(timeout=0) == "y"
    assert not pool.run_one()
    assert lane.submit(lambda: "z").cancelled()  # a closed lane takes nothing more


def test_exceptions_reach_the_future() -> None:
    pool: FairPool[str] = FairPool(1, threads=False)

    def fail() -> str:
        raise KeyError("boom")

    future = pool.lane().submit(fail)
    assert pool.run_one()
    with pytest.raises(KeyError, match="boom"):
        future.result(timeout=0)


@pytest.mark.parametrize(("threads", "share"), [(32, 8), (16, 4), (3, 1), (1, 1)])
def test_default_share_is_a_quarter_at_least_one(threads: int, share: int) -> None:
    assert default_share(threads) == share
    assert FairPool(threads, threads=False).share == share


def test_with_threads_a_blocked_review_leaves_threads_for_others() -> None:
    """Real threads: a review whose tasks all block holds its share, and no more."""
    pool: FairPool[str] = FairPool(4, share=2)
    release = threading.Event()
    started = threading.Semaphore(0)

    def blocked() -> str:
        started.release()
        release.wait(30)
        return "late"

    big = pool.lane()
    held = [big.submit(blocked) for _ in range(50)]
    assert started.acquire(timeout=10) and started.acquire(timeout=10)
    other = pool.lane().submit(lambda: "prompt")
    try:
        assert other.result(timeout=10) == "prompt"  # while the big review still blocks
        assert sum(f.running() for f in held) == 2
    finally:
        big.close()
        release.set()
        pool.close()
    assert sum(f.cancelled() for f in held) == 48
