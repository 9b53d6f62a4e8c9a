"""Expiring logins: fetched once, renewed before they expire, waited on only within a deadline."""

from __future__ import annotations

import threading
import time
from collections.abc import Hashable

import pytest

from webhook.core.deadline import Deadline
from webhook.core.errors import UpstreamError
from webhook.credentials.renewal import Expiring, Renewing


class Clock:
    def __init__(self) -> None:
        self.now = 1_000_000.0

    def __call__(self) -> float:
        return self.now


def test_one_fetch_for_many_askers_and_renewal_before_expiry() -> None:
    clock = Clock()
    fetched: list[Hashable] = []
    gate = threading.Event()

    def fetch(key: Hashable) -> Expiring[str]:
        gate.wait(5)
        fetched.append(key)
        return Expiring(f"token-{len(fetched)}", clock.now + 3600)

    logins: Renewing[str] = Renewing("ecr", fetch, clock=clock)
    got: list[str] = []
    threads = [threading.Thread(target=lambda: got.append(logins.get("a", Deadline(5))))
               for _ in range(8)]  # fmt: skip
    for thread in threads:
        thread.start()
    gate.set()
    for thread in threads:
        thread.join()
    assert got == ["token-1"] * 8 and fetched == ["a"]
    # Past 75 % of its life: still served, while the next one is fetched behind it.
    clock.now += 0.8 * 3600
    assert logins.get("a", Deadline(5)) == "token-1"
    deadline = time.monotonic() + 5
    while len(fetched) < 2 and time.monotonic() < deadline:
        time.sleep(0.01)
    assert logins.get("a", Deadline(5)) == "token-2"


def test_a_slow_identity_endpoint_costs_a_review_its_deadline_not_more() -> None:
    release = threading.Event()

    def fetch(key: Hashable) -> Expiring[str]:
        release.wait(10)
        return Expiring("late", time.time() + 3600)

    logins: Renewing[str] = Renewing("gcp", fetch)
    started = time.monotonic()
    with pytest.raises(UpstreamError, match="still being fetched when the review's deadline"):
        logins.get("a", Deadline(0.3))
    assert time.monotonic() - started < 1.0
    release.set()
    time.sleep(0.1)
    assert logins.get("a", Deadline(1)) == "late"  # the fetch went on and serves the next


def test_a_failure_says_why_and_holds_no_secret() -> None:
    def fetch(key: Hashable) -> Expiring[str]:
        raise RuntimeError("AccessDenied: not authorized to perform ecr:GetAuthorizationToken")

    with pytest.raises(UpstreamError, match=r"ecr: cannot get a login: .*AccessDenied"):
        Renewing("ecr", fetch).get("a", Deadline(2))


def test_ever_new_keys_are_refused_past_the_bound() -> None:
    clock = Clock()
    logins: Renewing[str] = Renewing(
        "acr", lambda key: Expiring(str(key), clock.now + 60), clock=clock, max_keys=3
    )
    for key in ("a", "b", "c"):
        assert logins.get(key, Deadline(2)) == key
    with pytest.raises(UpstreamError, match="logins for 3 registries are held already"):
        logins.get("d", Deadline(2))
    assert logins.get("a", Deadline(2)) == "a"  # those held still serve
    clock.now += 120  # they expired: room again
    assert logins.get("d", Deadline(2)) == "d"


def test_failures_of_ever_new_keys_are_remembered_within_the_bound() -> None:
    clock = Clock()

    def fetch(key: Hashable) -> Expiring[str]:
        raise RuntimeError(f"no registry {key}")

    logins: Renewing[str] = Renewing("acr", fetch, clock=clock, max_keys=3)
    for number in range(20):
        with pytest.raises(UpstreamError, match=f"no registry {number}"):
            logins.get(number, Deadline(2))
    assert len(logins._failed) == 3  # the latest three; no more are kept
    assert set(logins._failed) == {17, 18, 19}
