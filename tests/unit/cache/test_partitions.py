"""What a review with pull secrets fetched stays in its partition; a verified fact serves all.

See webhook.core.scope: a failure (or a flight in progress) met with one namespace's logins
must not deny, or hold up, a review with other logins, nor a tag it resolved serve another.
"""

from __future__ import annotations

import threading
import time

import pytest

from webhook.cache.local import Cache
from webhook.core.deadline import Deadline
from webhook.core.errors import UpstreamError
from webhook.core.reference import ImageRef, parse_reference
from webhook.core.scope import Scope
from webhook.registry.resolver import CachedResolver


def review(namespace: str | None, seconds: float = 5) -> Deadline:
    if namespace is None:
        return Deadline(seconds)
    return Deadline(seconds, scope=Scope(f"{namespace}:k", namespace, lambda image: ()))


def test_a_failure_is_kept_for_its_partition_and_a_pass_for_everyone() -> None:
    passes: Cache[str] = Cache("signatures", 16, 60)
    failures: Cache[str] = Cache("signature-failures", 16, 60)
    asked: list[str] = []

    def verify(outcome: str) -> object:
        def compute(limit: Deadline) -> str:
            asked.append(outcome)
            return outcome

        return compute

    def ask(namespace: str | None, outcome: str) -> str:
        return passes.get_or_compute(
            "sha256:d",
            verify(outcome),  # type: ignore[arg-type]
            review(namespace),
            failures=failures,
            passed=lambda value: value == "verified",
        )

    assert ask("team-b", "no signature found") == "no signature found"
    # Team B's failure (what its logins could read) is not team A's, nor anyone's.
    assert ask("team-a", "verified") == "verified"
    assert ask(None, "unused") == "verified"
    assert ask("team-b", "unused") == "verified"
    assert asked == ["no signature found", "verified"]


def test_a_flight_that_fails_in_one_partition_does_not_fail_a_waiter_in_another() -> None:
    cache: Cache[str] = Cache("signatures", 16, 60)
    started = threading.Event()

    def refused(limit: Deadline) -> str:
        started.set()
        time.sleep(0.3)
        raise UpstreamError("authentication failed; tried: anonymous")

    failed: list[BaseException] = []

    def leader() -> None:
        try:
            cache.get_or_compute("sha256:d", refused, review("team-b", 10))
        except UpstreamError as exc:
            failed.append(exc)

    thread = threading.Thread(target=leader)
    thread.start()
    assert started.wait(5)
    got = cache.get_or_compute("sha256:d", lambda limit: "verified", review("team-a", 5))
    thread.join()
    assert got == "verified"
    assert len(failed) == 1


def test_a_tag_resolved_with_pull_secrets_serves_only_that_partition() -> None:
    answers = iter(["sha256:" + "a" * 64, "sha256:" + "b" * 64, "sha256:" + "c" * 64])
    asked: list[str | None] = []

    class Client:
        def resolve(self, ref: ImageRef, deadline: Deadline) -> str:
            asked.append(None if deadline.scope is None else deadline.scope.key)
            return next(answers)

    resolver = CachedResolver(Client(), Cache("digest", 16, 60))  # type: ignore[arg-type]
    image = parse_reference("registry.example.com/acme/app:v1")
    team_a = resolver(image, review("team-a"))
    assert resolver(image, review("team-a")) == team_a
    assert resolver(image, review("team-b")) != team_a
    assert resolver(image, review(None)) not in (team_a,)
    assert asked == ["team-a:k", "team-b:k", None]


@pytest.mark.parametrize("namespace", ["team-a", None])
def test_a_scope_without_logins_shares_the_common_partition(namespace: str | None) -> None:
    cache: Cache[str] = Cache("digest", 16, 60)
    resolver = CachedResolver(
        type("C", (), {"resolve": lambda self, ref, d: "sha256:" + "e" * 64})(),  # type: ignore[arg-type]
        cache,
    )
    image = parse_reference("registry.example.com/acme/app:v1")
    empty = Deadline(5, scope=Scope(None, "namespace team-x", lambda image: ()))
    resolver(image, empty)
    assert len(cache) == 1
    resolver(image, review(None))
    assert len(cache) == 1
    if namespace is not None:
        resolver(image, review(namespace))
        assert len(cache) == 2
