"""The offline pass: I/O raises NeedsNetwork inside it, and its observations wait for its end."""

from __future__ import annotations

import threading

import pytest

from webhook.core.offline import NeedsNetwork, deferred, needs_io, offline


def test_needs_io_raises_only_inside_the_pass() -> None:
    needs_io("registry.example")  # outside: nothing happens
    with pytest.raises(NeedsNetwork, match=r"registry\.example"), offline():
        needs_io("registry.example")
    needs_io("registry.example")  # the flag is gone again


def test_the_flag_is_per_thread() -> None:
    raised: list[bool] = []

    def other() -> None:
        try:
            needs_io("x")
            raised.append(False)
        except NeedsNetwork:
            raised.append(True)

    with offline():
        thread = threading.Thread(target=other)
        thread.start()
        thread.join()
    assert raised == [False]


def test_no_error_handler_of_a_check_swallows_it() -> None:
    with pytest.raises(NeedsNetwork), offline():
        try:
            needs_io("x")
        except Exception:  # what a check might catch
            pytest.fail("NeedsNetwork is not an Exception")


def test_observations_count_once_a_pass_finishes_and_never_when_it_stops() -> None:
    seen: list[tuple[str, str]] = []
    observe = deferred(lambda name, result: seen.append((name, result)))
    assert observe is not None
    with offline():
        observe("verified", "hit")
        assert seen == []  # held until the pass is over
    assert seen == [("verified", "hit")]
    with pytest.raises(NeedsNetwork), offline():
        observe("digest", "miss")
        needs_io("x")
    assert seen == [("verified", "hit")]  # the check thread will count it
    observe("digest", "miss")
    assert seen == [("verified", "hit"), ("digest", "miss")]
    assert deferred(None) is None
