"""The engine: matching policies, checks in order, enforce vs audit, no-match defaults."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from tests.support.builders import engine, policy
from webhook.checks import CheckContext
from webhook.core.deadline import Deadline
from webhook.core.errors import UpstreamError
from webhook.core.offline import needs_io
from webhook.core.reference import ImageRef
from webhook.engine import Engine, display
from webhook.policy.model import Authority, Freshness, KeyRef, PolicySet, Signatures


def one(e: Engine, image: str, namespace: str = "prod-web", kind: str = "Pod"):
    (verdict,) = e.evaluate([image], namespace=namespace, kind=kind)
    return verdict


def test_allowlisted_image_is_allowed() -> None:
    verdict = one(engine(policy()), "quay.io/acme/api:1.2")
    assert verdict.allowed
    assert verdict.denials == verdict.warnings == ()
    assert [r.passed for r in verdict.policies] == [True]


def test_denial_names_image_policy_and_check() -> None:
    verdict = one(engine(policy()), "nginx")
    assert not verdict.allowed
    assert verdict.denials == (
        'image nginx denied by policy "production": repository docker.io/library/nginx '
        "is not in the registry allowlist (registry.redhat.io/**, quay.io/acme/**)",
    )
    assert verdict.policies[0].failure is not None
    assert verdict.policies[0].failure.check == "allowlist"


@pytest.mark.parametrize(
    "image",
    [
        "quay.io.evil.com/acme/api:1",
        "evil.com/quay.io/acme/api:1",
        "quay.io/acme-evil/api:1",
        "quay.io/acmeapi:1",
        "registry.redhat.io.evil.com/ubi9/ubi",
        "quay.io:443@evil",
    ],
)
def test_lookalike_references_are_denied(image: str) -> None:
    assert not one(engine(policy()), image).allowed


def test_uppercase_host_is_the_same_host() -> None:
    assert one(engine(policy()), "QUAY.IO/acme/api:1").allowed


def test_audit_mode_warns_instead_of_denying() -> None:
    verdict = one(engine(policy(mode="audit")), "nginx")
    assert verdict.allowed
    assert verdict.denials == ()
    (warning,) = verdict.warnings
    assert warning.startswith('image nginx would be denied by policy "production" (audit mode): ')


def test_every_matching_policy_must_pass() -> None:
    strict = policy("strict", registries=("quay.io/acme/**",))
    loose = policy("loose", registries=("**",))
    verdict = one(engine(loose, strict), "registry.redhat.io/ubi9/ubi")
    assert not verdict.allowed
    assert [r.policy for r in verdict.policies] == ["loose", "strict"]
    assert 'policy "strict"' in verdict.denials[0]


def test_enforce_denial_and_audit_warning_together() -> None:
    verdict = one(engine(policy("a"), policy("b", mode="audit")), "ghcr.io/x/y")
    assert len(verdict.denials) == 1
    assert len(verdict.warnings) == 1


@pytest.mark.parametrize(
    ("no_match", "allowed", "denials", "warnings"),
    [("deny", False, 1, 0), ("warn", True, 0, 1), ("allow", True, 0, 0)],
)
def test_no_match_default(no_match: str, allowed: bool, denials: int, warnings: int) -> None:
    verdict = one(engine(policy(), no_match=no_match), "nginx", namespace="dev")
    assert verdict.allowed is allowed
    assert len(verdict.denials) == denials
    assert len(verdict.warnings) == warnings
    assert verdict.no_match == no_match
    for line in verdict.denials + verdict.warnings:
        assert line == (
            'image nginx: no policy governs docker.io/library/nginx in namespace "dev" '
            f"(defaults.noMatch: {no_match})"
        )


def test_invalid_reference_is_denied_even_when_no_match_allows() -> None:
    verdict = one(engine(policy(), no_match="allow"), "quay.io/Acme/x")
    assert not verdict.allowed
    assert verdict.reference is None
    assert "invalid image reference" in verdict.denials[0]


def test_exclude_namespaces_wins() -> None:
    e = engine(policy(namespaces=("*",), exclude=("kube-*",)))
    assert one(e, "nginx", namespace="kube-system").no_match == "deny"
    assert one(e, "nginx", namespace="default").policies


def test_kinds_filter() -> None:
    e = engine(policy(kinds=("Deployment",)), no_match="allow")
    assert not one(e, "nginx", kind="Deployment").allowed
    assert one(e, "nginx", kind="Pod").allowed


def test_image_globs_select_the_policy() -> None:
    e = engine(policy(images=("quay.io/**",), registries=("quay.io/acme/**",)), no_match="allow")
    assert one(e, "registry.redhat.io/ubi9/ubi").allowed
    assert not one(e, "quay.io/other/x").allowed


def test_require_digest() -> None:
    e = engine(policy(require_digest=True))
    pinned = "quay.io/acme/api@sha256:" + "a" * 64
    assert one(e, pinned).allowed
    verdict = one(e, "quay.io/acme/api:1.2")
    assert "not pinned by digest" in verdict.denials[0]
    assert verdict.policies[0].results[-1].check == "digest"


def test_allowlist_runs_before_anything_else() -> None:
    e = engine(policy(require_digest=True))
    verdict = one(e, "nginx")
    assert [r.check for r in verdict.policies[0].results] == ["allowlist"]


@pytest.mark.parametrize(
    ("extra", "check"),
    [
        ({"signatures": Signatures(1, (Authority("k", key=KeyRef(pem="x")),))}, "signatures"),
        ({"freshness": Freshness(minimum_grade="B")}, "freshness"),
    ],
)
def test_unavailable_checks_deny_never_skip(extra: dict, check: str) -> None:
    verdict = one(engine(policy(**extra)), "quay.io/acme/api:1")
    assert not verdict.allowed
    failure = verdict.policies[0].failure
    assert failure is not None
    assert (failure.check, failure.outcome) == (check, "error")
    assert f"requires {check} verification" in verdict.denials[0]


def test_images_are_evaluated_once_each_in_order() -> None:
    verdicts = engine(policy()).evaluate(
        ["nginx", "quay.io/acme/a:1", "nginx"], namespace="prod-x", kind="Pod"
    )
    assert [v.image for v in verdicts] == ["nginx", "quay.io/acme/a:1"]


def test_reloaded_policies_take_effect() -> None:
    current = [PolicySet((policy(registries=("quay.io/acme/**",)),))]
    e = Engine(lambda: current[0])
    assert not one(e, "registry.redhat.io/ubi9/ubi").allowed
    current[0] = PolicySet((policy(),))
    assert one(e, "registry.redhat.io/ubi9/ubi").allowed


@pytest.mark.parametrize(
    ("text", "shown"),
    [
        ("nginx", "nginx"),
        ("evil\nimage denied by policy", "'evil\\nimage denied by policy'"),
        ("a" * 300, repr("a" * 200) + "..."),
        ("qu\u0430y.io/x", "'qu\u0430y.io/x'"),
    ],
)
def test_display_neutralises_hostile_text(text: str, shown: str) -> None:
    assert display(text) == shown


def test_verdicts_are_immutable() -> None:
    verdict = one(engine(policy()), "nginx")
    with pytest.raises(AttributeError):
        verdict.image = "other"  # type: ignore[misc]


class CountingCheck:
    """A check with side effects (like a registry call): never memoised."""

    name = "allowlist"

    def __init__(self, pure: bool) -> None:
        self.pure = pure
        self.calls = 0

    def run(self, image: object, policy: object, context: object) -> None:
        self.calls += 1


@pytest.mark.parametrize(("pure", "calls"), [(True, 1), (False, 3)])
def test_verdicts_are_memoised_only_for_pure_checks(pure: bool, calls: int) -> None:
    check = CountingCheck(pure)
    policy_set = PolicySet((policy(),))
    e = Engine(lambda: policy_set, checks={"allowlist": check})
    for _ in range(3):
        e.evaluate(["quay.io/acme/a:1"], namespace="prod-x", kind="Pod")
    assert check.calls == calls


class ResolvingCheck:
    """A network check that needs the digest and says how the image passed."""

    name = "allowlist"
    pure = False

    def run(self, image: object, policy: object, context: CheckContext) -> str | None:
        return f"checked {context.resolve()}"


def test_verdict_carries_the_resolved_digest_and_pass_notes() -> None:
    digest = "sha256:" + "1" * 64
    asked: list[str] = []

    def resolver(ref: ImageRef, deadline: Deadline) -> str:
        asked.append(ref.repository)
        return digest

    policy_set = PolicySet((policy(), policy("second")))
    e = Engine(lambda: policy_set, checks={"allowlist": ResolvingCheck()}, resolver=resolver)
    verdict = one(e, "quay.io/acme/api:1.2")
    assert verdict.digest == digest
    assert verdict.notes == (
        f'policy "production": checked {digest}',
        f'policy "second": checked {digest}',
    )
    assert asked == ["quay.io/acme/api"]  # resolved once for both policies


def test_verdict_digest_is_the_pinned_one_and_none_when_never_needed() -> None:
    pinned = "sha256:" + "2" * 64
    assert one(engine(policy()), f"quay.io/acme/api@{pinned}").digest == pinned
    verdict = one(engine(policy()), "quay.io/acme/api:1.2")
    assert verdict.digest is None
    assert verdict.notes == ()


class StuckCheck:
    """A network check stuck where no socket is (a DNS lookup, say) after calling ``host``."""

    name = "allowlist"
    pure = False

    def __init__(self) -> None:
        self.release = threading.Event()

    def run(self, image: object, policy: object, context: CheckContext) -> None:
        needs_io("slow.example:5000")  # as every registry call does (Network.call)
        context.deadline.host = "slow.example:5000"
        self.release.wait(30)


@pytest.mark.parametrize("images", [["quay.io/acme/a:1"], ["quay.io/acme/a:1", "quay.io/acme/b:1"]])
def test_the_answer_never_waits_past_the_deadline(images: list[str]) -> None:
    check = StuckCheck()
    policy_set = PolicySet((policy(),))
    events: list[tuple[str, str]] = []
    e = Engine(
        lambda: policy_set,
        checks={"allowlist": check},
        deadline_seconds=0.5,
        on_event=lambda event, host: events.append((event, host)),
    )
    started = time.monotonic()
    verdicts = e.evaluate(images, namespace="prod-x", kind="Pod")
    elapsed = time.monotonic() - started
    check.release.set()
    assert elapsed < 0.5 + 0.25  # the configured deadline: the answer is due by then
    for image, verdict in zip(images, verdicts, strict=True):
        assert verdict.denials == (
            f"image {image} denied: its checks did not finish within the review's deadline "
            "of 0.5 s (deadlineSeconds), still waiting for slow.example:5000",
        )
    assert ("deadline_exceeded", "slow.example:5000") in events


class CutAtDeadline:
    """A registry call whose socket is shut down when the review's calls must stop."""

    name = "allowlist"
    pure = False

    def run(self, image: object, policy: object, context: CheckContext) -> None:
        needs_io("slow.example")
        time.sleep(max(0.0, context.deadline.expires_at - time.monotonic()))
        raise UpstreamError("slow.example timed out", check="signatures")


def test_calls_stop_early_enough_for_the_denial_to_go_out_within_the_deadline() -> None:
    policy_set = PolicySet((policy(),))
    e = Engine(lambda: policy_set, checks={"allowlist": CutAtDeadline()}, deadline_seconds=2.0)
    started = time.monotonic()
    (verdict,) = e.evaluate(["quay.io/acme/a:1"], namespace="prod-x", kind="Pod")
    elapsed = time.monotonic() - started
    # The call's own reason, not a review cut off from outside, and within the 2 s:
    # the calls stop a tenth of the deadline (at most 0.5 s) before it.
    assert verdict.denials == (
        'image quay.io/acme/a:1 denied by policy "production": slow.example timed out',
    )
    assert 1.7 < elapsed < 2.0


def test_a_stuck_check_does_not_keep_the_process_from_exiting(tmp_path: Path) -> None:
    script = tmp_path / "stuck.py"
    script.write_text(
        "import threading, time\n"
        "from tests.support.builders import policy\n"
        "from tests.unit.test_engine import StuckCheck\n"
        "from webhook.engine import Engine\n"
        "from webhook.policy.model import PolicySet\n"
        "policy_set = PolicySet((policy(),))\n"
        "e = Engine(lambda: policy_set, checks={'allowlist': StuckCheck()}, deadline_seconds=0.3)\n"
        "print(e.evaluate(['quay.io/acme/a:1'], namespace='prod-x', kind='Pod')[0].allowed)\n"
    )
    started = time.monotonic()
    done = subprocess.run(
        [sys.executable, str(script)],
        capture_output=True,
        text=True,
        timeout=25,
        check=True,
        # The script imports this test module: the project's root must be importable.
        env={**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2])},
    )
    assert done.stdout.strip() == "False"
    assert time.monotonic() - started < 15  # the stuck thread waits 30 s; exit does not


class Recording:
    """A network check whose answer for some images is cached: those need no I/O."""

    name = "allowlist"
    pure = False

    def __init__(self, cached: set[str]) -> None:
        self.cached = cached
        self.threads: dict[str, list[str]] = {}

    def run(self, image: ImageRef, policy: object, context: CheckContext) -> None:
        if image.repository not in self.cached:
            needs_io("registry.example")  # as Network.call does
        self.threads.setdefault(image.repository, []).append(threading.current_thread().name)


def test_cached_images_are_judged_in_the_request_thread_the_rest_in_check_threads() -> None:
    check = Recording(cached={"quay.io/acme/warm"})
    policy_set = PolicySet((policy(),))
    e = Engine(lambda: policy_set, checks={"allowlist": check})
    images = ["quay.io/acme/cold:1", "quay.io/acme/warm:1"]
    verdicts = e.evaluate(images, namespace="prod-x", kind="Pod")
    assert [v.image for v in verdicts] == images  # in order, whatever ran where
    assert all(v.allowed for v in verdicts)
    here = threading.current_thread().name
    # Each ran to its end exactly once: the warm one here, the cold one in a check
    # thread (its offline attempt stopped at the I/O and is not counted).
    assert check.threads == {
        "quay.io/acme/warm": [here],
        "quay.io/acme/cold": ["trustgate-check"],
    }
    e.close()
