"""Decisions kept per policy set (``Engine.derived_memo``): never one for another input.

A kept decision is returned for a request whose every input but the clock
matches the one it was computed for. These tests warm an engine's memo with
one request, then ask about requests that differ in exactly one input and
compare with an engine that never saw a request: any input the key forgot
would hand back the warm decision.
"""

from __future__ import annotations

import copy
import json
import logging
import threading
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric import ec

from tests.support.builders import policy
from tests.support.cosign import public_pem
from tests.support.kube import as_user, pod_spec, review, workload
from webhook.admission.decisionlog import log_outcome
from webhook.admission.review import Decision, _judge, decide, parse_review
from webhook.admission.review import review as run_review
from webhook.admission.waivers import BREAK_GLASS
from webhook.config import Config
from webhook.engine import Engine
from webhook.policy.loader import load_directory
from webhook.policy.model import BreakGlass, PolicySet
from webhook.services import build_engine

GOOD = "registry.redhat.io/ubi9/ubi:9.4"
ACME = "quay.io/acme/api:2.4.1"


def policies() -> PolicySet:
    production = policy(break_glass=BreakGlass(allowed=True, users=frozenset({"alice"})))
    audit = policy("audit-all", mode="audit", namespaces=("*",), registries=("quay.io/**",))
    # So that the kind decides too: no image is allowed in a ReplicaSet.
    replicasets = policy("no-replicasets", kinds=("ReplicaSet",), registries=("none.example/**",))
    return PolicySet((production, audit, replicasets))


def fresh(policy_set: PolicySet) -> Engine:
    return Engine(lambda: policy_set, no_match="deny")


def base_body() -> dict[str, Any]:
    """Allowed, with audit warnings, an image volume and a break-glass annotation (unneeded)."""
    obj = workload("Deployment", pod_spec(GOOD, ACME, init=(GOOD,), volumes=(ACME,)))
    obj["metadata"]["annotations"][BREAK_GLASS] = "INC-1 just in case"
    return as_user(review(obj), "bob", "dev")


def judged(engine: Engine, body: dict[str, Any], **options: Any) -> tuple[Decision, Any]:
    """The decision and the decision log's outcome fields (kept, or computed as a fresh one)."""
    request = parse_review(body)
    decision, outcome = _judge(engine, request, recheck_unchanged_images=False, now=None, **options)
    return decision, json.loads(json.dumps(outcome or log_outcome(request, decision)))


def _set_annotation(body: dict[str, Any], value: str) -> None:
    body["request"]["object"]["metadata"]["annotations"][BREAK_GLASS] = value


def _spec(body: dict[str, Any]) -> dict[str, Any]:
    spec: dict[str, Any] = body["request"]["object"]["spec"]["template"]["spec"]
    return spec


VARIANTS: dict[str, Any] = {
    "namespace": lambda b: b["request"].update(namespace="dev-web"),
    "object namespace only": lambda b: (
        b["request"].pop("namespace"),
        b["request"]["object"]["metadata"].update(namespace="staging"),
    ),
    "kind": lambda b: b["request"]["kind"].update(kind="ReplicaSet"),
    "image": lambda b: _spec(b)["containers"][0].update(image="docker.io/library/nginx:1"),
    "image order": lambda b: _spec(b)["containers"].reverse(),
    "container name": lambda b: _spec(b)["containers"][0].update(name="renamed"),
    "image volume": lambda b: _spec(b)["volumes"][1]["image"].update(reference=GOOD),
    "user": lambda b: b["request"]["userInfo"].update(username="alice"),
    "groups": lambda b: b["request"]["userInfo"].update(groups=["oncall"]),
    "break-glass annotation": lambda b: _set_annotation(b, "INC-42 outage"),
    "no break-glass annotation": lambda b: b["request"]["object"]["metadata"]["annotations"].pop(
        BREAK_GLASS
    ),
    "empty break-glass annotation": lambda b: _set_annotation(b, ""),
}


@pytest.mark.parametrize("change", sorted(VARIANTS))
def test_a_request_that_differs_in_one_input_never_gets_the_kept_decision(change: str) -> None:
    policy_set = policies()
    warm = fresh(policy_set)
    first = judged(warm, base_body())
    assert first[0].allowed
    assert decide(warm, parse_review(base_body())) is first[0]  # kept: the same object back
    body = base_body()
    VARIANTS[change](body)
    expected = judged(fresh(policy_set), copy.deepcopy(body))
    assert expected != first  # the change matters, so a forgotten input would show
    assert judged(warm, body) == expected


def test_the_dry_run_audit_and_the_webhook_do_not_share_a_decision() -> None:
    # user_known=False honours break-glass for anyone a policy allows: the key holds it.
    policy_set = policies()
    warm = fresh(policy_set)
    body = base_body()
    body["request"]["object"]["spec"]["template"]["spec"]["containers"][0]["image"] = (
        "docker.io/library/nginx:1"
    )
    _set_annotation(body, "INC-42")
    as_webhook = decide(warm, parse_review(copy.deepcopy(body)))
    as_audit = decide(warm, parse_review(copy.deepcopy(body)), user_known=False)
    assert not as_webhook.allowed  # bob may not break glass
    assert as_audit.allowed
    assert as_audit == decide(fresh(policy_set), parse_review(body), user_known=False)


def test_only_decisions_with_no_denial_are_kept() -> None:
    policy_set = policies()
    engine = fresh(policy_set)
    memo = engine.derived_memo(policy_set)
    assert memo is not None
    denied = base_body()
    _spec(denied)["containers"][0]["image"] = "docker.io/library/nginx:1"
    assert not decide(engine, parse_review(denied)).allowed
    assert len(memo) == 0  # a denial may turn on the clock (exceptions): never kept
    assert decide(engine, parse_review(base_body())).allowed
    assert len(memo) == 1


def test_a_new_policy_set_never_sees_the_old_sets_decisions() -> None:
    current = [policies()]
    engine = Engine(lambda: current[0], no_match="deny")
    body = base_body()
    assert decide(engine, parse_review(copy.deepcopy(body))).allowed
    current[0] = PolicySet((policy(registries=("quay.io/acme/**",)),))  # ubi9 no longer allowed
    again = decide(engine, parse_review(body))
    assert not again.allowed
    assert "registry.redhat.io/ubi9/ubi:9.4" in again.message


def test_nothing_is_kept_when_a_check_needs_the_network(tmp_path: Path) -> None:
    key = ec.generate_private_key(ec.SECP256R1())
    (tmp_path / "release.pub").write_text(public_pem(key))
    (tmp_path / "p.yaml").write_text(
        "apiVersion: trustgate.dev/v1alpha1\nkind: ImagePolicy\nmetadata: {name: p}\n"
        'spec:\n  match: {namespaces: ["prod-*"]}\n  registries: ["registry.redhat.io/**"]\n'
        "  signatures:\n    authorities:\n      - {name: release, key: {file: release.pub}}\n"
    )
    policy_set = load_directory(tmp_path)
    served = build_engine(lambda: policy_set, Config())  # the checks `trustgate serve` runs
    assert served.derived_memo(policy_set) is None
    allowlist_only = policies()
    assert build_engine(lambda: allowlist_only, Config()).derived_memo(allowlist_only) is not None


def test_the_memo_is_bounded() -> None:
    policy_set = policies()
    engine = fresh(policy_set)
    memo = engine.derived_memo(policy_set)
    assert memo is not None
    for index in range(1500):
        body = base_body()
        body["request"]["namespace"] = f"prod-{index}"
        assert decide(engine, parse_review(body)).allowed
        engine.derived_memo(policy_set)  # as each decision asks for it
        assert len(memo) <= 1024


def test_a_decision_on_many_images_is_not_kept() -> None:
    # The memo is bounded in entries; entries are bounded in images.
    policy_set = policies()
    engine = fresh(policy_set)
    memo = engine.derived_memo(policy_set)
    assert memo is not None
    many = [f"quay.io/acme/app-{n}:1" for n in range(33)]
    body = as_user(review(workload("Deployment", pod_spec(*many))), "bob", "dev")
    assert decide(engine, parse_review(body)).allowed
    assert len(memo) == 0
    body = as_user(review(workload("Deployment", pod_spec(*many[:32]))), "bob", "dev")
    assert decide(engine, parse_review(body)).allowed
    assert len(memo) == 1


def test_concurrent_reviews_each_get_their_own_decision() -> None:
    policy_set = policies()
    engine = fresh(policy_set)
    bodies = []
    for change in sorted(VARIANTS):
        body = base_body()
        VARIANTS[change](body)
        bodies.append(body)
    expected = [decide(fresh(policy_set), parse_review(copy.deepcopy(b))) for b in bodies]
    failures: list[str] = []

    def run(offset: int) -> None:
        for round_ in range(60):
            index = (offset + round_) % len(bodies)
            got = decide(engine, parse_review(copy.deepcopy(bodies[index])))
            if got != expected[index]:
                failures.append(sorted(VARIANTS)[index])

    threads = [threading.Thread(target=run, args=(n,)) for n in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert failures == []


def _logged(caplog: pytest.LogCaptureFixture) -> dict[str, Any]:
    records = [r for r in caplog.records if r.getMessage() == "admission review"]
    fields: dict[str, Any] = records[-1].fields  # type: ignore[attr-defined]
    return json.loads(json.dumps(fields))


def test_a_kept_decision_logs_the_line_a_fresh_one_would(
    caplog: pytest.LogCaptureFixture,
) -> None:
    policy_set = policies()
    warm = fresh(policy_set)
    logger = logging.getLogger("trustgate")
    logger.addHandler(caplog.handler)
    try:
        with caplog.at_level(logging.INFO, logger="trustgate"):
            alice = as_user(review(workload("Pod", pod_spec(GOOD))), "alice", "oncall")
            _set_annotation(alice, "INC-42")
            for _ in range(2):  # the second is kept
                run_review(warm, copy.deepcopy(alice))
            kept = _logged(caplog)
            run_review(fresh(policy_set), copy.deepcopy(alice))
            computed = _logged(caplog)
    finally:
        logger.removeHandler(caplog.handler)
    kept.pop("durationMs")
    computed.pop("durationMs")
    assert kept == computed
    assert kept["user"] == "alice"
    assert kept["breakGlass"]["user"] == "alice"


def test_decision_objects_are_shared_read_only() -> None:
    # A kept Decision goes to every request with the same inputs: answering one
    # must not change what the next receives.
    policy_set = policies()
    engine = fresh(policy_set)
    answer, decision, _ = run_review(engine, base_body())
    answer["response"]["auditAnnotations"] = {"x": "y"}
    answer["response"]["warnings"] = ["changed"]
    again: Decision = decide(engine, parse_review(base_body()))
    assert again is decision
    assert "x" not in again.audit_annotations
    assert "changed" not in again.warnings
