"""Exceptions and break-glass settled on real verdicts, through ``decide``, with a fixed clock."""

from __future__ import annotations

import copy
import datetime as dt
import json
import logging
from pathlib import Path
from typing import Any

import pytest

from tests.support.kube import as_user, pod_spec, pod_with, policy_yaml, review, workload
from webhook.admission.review import decide, parse_review
from webhook.admission.review import review as run_review
from webhook.admission.waivers import BREAK_GLASS
from webhook.cli.audit import Manifest, audit
from webhook.engine import Engine
from webhook.policy.loader import load_directory

VENDOR = "quay.io/vendor/tools:1.0"  # outside production's allowlist
GOOD = "registry.redhat.io/ubi9/ubi:9.4"
LOOSE = "docker.io/library/busybox:1"  # no policy governs namespace dev
BEFORE = dt.datetime(2026, 6, 30, 23, 59, 59, tzinfo=dt.UTC)
AFTER = dt.datetime(2026, 7, 1, 0, 0, tzinfo=dt.UTC)
GLASS = "  breakGlass: {allowed: true, groups: [oncall], users: [alice]}\n"


def exception(
    name: str = "vendor-tools",
    *,
    policies: str = "policies: [production]",
    namespaces: str = '["prod-*"]',
    images: str = '["quay.io/vendor/**"]',
    expires: str = "2026-06-30",
) -> str:
    return f"""\
apiVersion: trustgate.dev/v1alpha1
kind: ImagePolicyException
metadata: {{name: {name}}}
spec:
  namespaces: {namespaces}
  images: {images}
  {policies}
  reason: vendor images are signed from Q3 on
  owner: team-tools
  expires: {expires}
"""


def make_engine(tmp_path: Path, *exceptions: str, extra: str = "", more: str = "") -> Engine:
    (tmp_path / "production.yaml").write_text(policy_yaml(extra=extra) + more)
    if exceptions:
        (tmp_path / "exceptions.yaml").write_text("---\n".join(exceptions))
    policy_set = load_directory(tmp_path)
    return Engine(lambda: policy_set, no_match="deny")


def judge(engine: Engine, body: dict, now: dt.datetime = BEFORE):
    return decide(engine, parse_review(body), now=now)


def test_an_exception_admits_loudly_until_the_end_of_its_day(tmp_path: Path) -> None:
    engine = make_engine(tmp_path, exception())
    body = review(pod_with(VENDOR, GOOD))
    before = judge(engine, body, BEFORE)
    assert before.allowed
    assert before.label == "warned"
    (warning,) = before.warnings
    assert warning.startswith(f'image {VENDOR} admitted by exception "vendor-tools"')
    assert "until the end of 2026-06-30 UTC" in warning
    assert 'waiving policy "production"' in warning
    assert "allowlist" in warning or "not in" in warning
    (waiver,) = before.waivers
    assert (waiver.image, waiver.policy, waiver.exception, waiver.by) == (
        VENDOR,
        "production",
        "vendor-tools",
        "exception",
    )
    (entry,) = json.loads(before.audit_annotations["exceptions"])
    assert entry == {
        "image": VENDOR,
        "policy": "production",
        "exception": "vendor-tools",
        "expires": "2026-06-30",
    }
    after = judge(engine, body, AFTER)
    assert not after.allowed
    assert after.waivers == ()
    assert f'image {VENDOR} denied by policy "production"' in after.message
    assert 'exception "vendor-tools" expired at the end of 2026-06-30 UTC' in after.message
    assert "exceptions" not in after.audit_annotations


@pytest.mark.parametrize(
    ("image", "namespace"),
    [
        (VENDOR, "staging"),  # namespace not covered
        ("quay.io/vendorx/tools:1.0", "prod-web"),  # a prefix is not a path component
        ("quay.io/other/tools:1.0", "prod-web"),
    ],
)
def test_an_exception_covers_only_its_namespaces_and_images(
    tmp_path: Path, image: str, namespace: str
) -> None:
    engine = make_engine(tmp_path, exception(namespaces='["prod-*", "staging"]'))
    decision = judge(engine, review(pod_with(image, namespace=namespace)))
    if namespace == "staging":
        # production does not govern staging: the no-match default denies,
        # and an exception naming production does not waive it.
        assert "defaults.noMatch: deny" in decision.message
    assert not decision.allowed
    assert decision.waivers == ()


def test_an_exception_waives_only_the_policies_it_names(tmp_path: Path) -> None:
    second = "---\n" + policy_yaml("vendor-signed", registries='["registry.redhat.io/**"]')
    engine = make_engine(tmp_path, exception(), more=second)
    decision = judge(engine, review(pod_with(VENDOR)))
    assert not decision.allowed
    assert 'denied by policy "vendor-signed"' in decision.message
    # The denial names what still denies the image; it is not admitted, so no
    # waiver is recorded or counted.
    assert 'denied by policy "production"' not in decision.message
    assert decision.waivers == ()
    assert decision.warnings == ()


def test_all_policies_waives_the_no_match_default_and_a_named_one_does_not(tmp_path: Path) -> None:
    where = {"images": '["docker.io/**"]', "namespaces": '["dev"]'}
    named = make_engine(tmp_path, exception(**where))
    assert not judge(named, review(pod_with(LOOSE, namespace="dev"))).allowed
    every = make_engine(tmp_path, exception(**where, policies="allPolicies: true"))
    decision = judge(every, review(pod_with(LOOSE, namespace="dev")))
    assert decision.allowed
    (waiver,) = decision.waivers
    assert (waiver.policy, waiver.check) == ("", "noMatch")
    assert "waiving defaults.noMatch" in decision.warnings[0]


def test_an_exception_never_waives_an_invalid_reference(tmp_path: Path) -> None:
    engine = make_engine(
        tmp_path, exception(images='["**"]', namespaces='["*"]', policies="allPolicies: true")
    )
    decision = judge(engine, review(pod_with("quay.io/vendor/Tools:1.0")))
    assert not decision.allowed
    assert "invalid image reference" in decision.message
    assert decision.waivers == ()


def test_an_exception_is_not_used_for_an_image_that_passes(tmp_path: Path) -> None:
    engine = make_engine(tmp_path, exception(images='["registry.redhat.io/**"]'))
    decision = judge(engine, review(pod_with(GOOD)))
    assert decision.allowed and decision.warnings == () and decision.waivers == ()


def test_break_glass_by_an_allowed_group_and_by_a_user_outside_it(tmp_path: Path) -> None:
    engine = make_engine(tmp_path, extra=GLASS)
    obj = pod_with(VENDOR, break_glass="INC-4711: payment outage")
    allowed = judge(engine, as_user(review(obj), "bob", "oncall"))
    assert allowed.allowed
    (warning,) = allowed.warnings
    assert warning.startswith(
        f'BREAK-GLASS by user "bob", reason "INC-4711: payment outage": image {VENDOR} '
        'admitted although policy "production" denies it: repository quay.io/vendor/tools '
        "is not in the registry allowlist"
    )
    recorded = json.loads(allowed.audit_annotations["break-glass"])
    assert recorded == {
        "user": "bob",
        "reason": "INC-4711: payment outage",
        "waived": [{"image": VENDOR, "policy": "production"}],
    }
    by_name = judge(engine, as_user(review(obj), "alice"))
    assert by_name.allowed

    outside = judge(engine, as_user(review(obj), "mallory", "dev"))
    assert not outside.allowed
    assert f'image {VENDOR} denied by policy "production"' in outside.message
    (note,) = outside.warnings
    assert note == (
        f'break-glass not honoured for image {VENDOR}: user "mallory" is not among '
        'the users or groups policy "production" allows to break glass'
    )
    assert "break-glass" not in outside.audit_annotations
    assert json.loads(outside.audit_annotations["break-glass-ignored"]) == [note]


def test_break_glass_is_ignored_where_the_policy_does_not_allow_it(tmp_path: Path) -> None:
    engine = make_engine(tmp_path)
    decision = judge(
        engine, as_user(review(pod_with(VENDOR, break_glass="outage")), "root", "oncall")
    )
    assert not decision.allowed
    assert decision.warnings == (
        f'break-glass not honoured for image {VENDOR}: policy "production" does not allow '
        "break-glass",
    )


@pytest.mark.parametrize("reason", ["", "   "])
def test_an_empty_reason_is_not_a_break_glass(tmp_path: Path, reason: str) -> None:
    engine = make_engine(tmp_path, extra=GLASS)
    decision = judge(
        engine, as_user(review(pod_with(VENDOR, break_glass=reason)), "alice", "oncall")
    )
    assert not decision.allowed
    assert "annotation is empty; a break-glass needs a reason" in decision.warnings[0]


def test_break_glass_does_not_reach_images_no_policy_governs(tmp_path: Path) -> None:
    engine = make_engine(tmp_path, extra=GLASS)
    obj = pod_with(LOOSE, break_glass="outage", namespace="dev")
    decision = judge(engine, as_user(review(obj), "alice"))
    assert not decision.allowed
    assert "no policy governs the image, so none allows break-glass" in decision.warnings[0]


def test_break_glass_needs_every_denying_policy_to_allow_it(tmp_path: Path) -> None:
    second = "---\n" + policy_yaml("strict", registries='["registry.redhat.io/**"]')
    engine = make_engine(tmp_path, extra=GLASS, more=second)
    decision = judge(engine, as_user(review(pod_with(VENDOR, break_glass="outage")), "alice"))
    assert not decision.allowed
    assert 'denied by policy "strict"' in decision.message
    assert 'denied by policy "production"' not in decision.message
    assert decision.warnings == (
        f'break-glass not honoured for image {VENDOR}: policy "strict" does not allow break-glass',
    )
    assert decision.waivers == ()
    assert "break-glass" not in decision.audit_annotations


def test_break_glass_is_read_from_the_object_not_its_pod_template(tmp_path: Path) -> None:
    engine = make_engine(tmp_path, extra=GLASS)
    deployment = workload("Deployment", pod_spec(VENDOR))
    deployment["spec"]["template"]["metadata"]["annotations"] = {BREAK_GLASS: "outage"}
    assert not judge(engine, as_user(review(deployment), "alice")).allowed
    deployment["metadata"]["annotations"][BREAK_GLASS] = "outage"
    assert judge(engine, as_user(review(deployment), "alice")).allowed


def controller_pod(annotation: str) -> dict:
    """A Pod a ReplicaSet's controller creates: the template's annotations, an owner."""
    obj = pod_with(VENDOR, break_glass=annotation)
    obj["metadata"]["ownerReferences"] = [
        {"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": "web-5d4f", "controller": True}
    ]
    return obj


RS_CONTROLLER = "system:serviceaccount:kube-system:replicaset-controller"


def test_pods_a_controller_creates_are_judged_as_the_controller(tmp_path: Path) -> None:
    """The request's user is the controller's service account, not the person who
    annotated the Deployment: the Pod is denied unless the policy names it."""
    engine = make_engine(tmp_path, extra=GLASS)
    body = as_user(review(controller_pod("outage")), RS_CONTROLLER, "system:serviceaccounts")
    decision = judge(engine, body)
    assert not decision.allowed
    assert f'user "{RS_CONTROLLER}" is not among the users or groups' in decision.warnings[0]
    controllers = GLASS.replace("users: [alice]", f"users: [alice, '{RS_CONTROLLER}']")
    engine = make_engine(tmp_path, extra=controllers)
    assert judge(engine, body).allowed


def test_removing_the_annotation_brings_the_object_back_under_the_policy(tmp_path: Path) -> None:
    engine = make_engine(tmp_path, extra=GLASS)
    glass = workload("Deployment", pod_spec(VENDOR))
    glass["metadata"]["annotations"][BREAK_GLASS] = "outage"
    plain = copy.deepcopy(glass)
    del plain["metadata"]["annotations"][BREAK_GLASS]
    # A label change that keeps the annotation: no new admission, as before.
    relabelled = copy.deepcopy(glass)
    relabelled["metadata"]["labels"]["tier"] = "web"
    kept = judge(engine, as_user(review(relabelled, operation="UPDATE", old=glass), "bob"))
    assert kept.allowed and kept.unchecked == (VENDOR,)
    # Taking the annotation away with the same images is judged, and denied.
    removed = judge(engine, as_user(review(plain, operation="UPDATE", old=glass), "bob"))
    assert not removed.allowed
    assert removed.unchecked == ()
    assert f'image {VENDOR} denied by policy "production"' in removed.message
    # Emptying it counts as removing it.
    emptied = copy.deepcopy(glass)
    emptied["metadata"]["annotations"][BREAK_GLASS] = " "
    assert not judge(engine, as_user(review(emptied, operation="UPDATE", old=glass), "bob")).allowed
    # An object being deleted is never judged again: its finalizers must come off.
    deleting = copy.deepcopy(glass)
    deleting["metadata"]["deletionTimestamp"] = "2026-06-30T10:00:00Z"
    stripped = copy.deepcopy(deleting)
    del stripped["metadata"]["annotations"][BREAK_GLASS]
    gone = judge(engine, as_user(review(stripped, operation="UPDATE", old=deleting), "bob"))
    assert gone.allowed and gone.unchecked == (VENDOR,)
    # Removing it together with fixing the image is admitted.
    fixed = copy.deepcopy(plain)
    fixed["spec"]["template"]["spec"]["containers"][0]["image"] = GOOD
    assert judge(engine, as_user(review(fixed, operation="UPDATE", old=glass), "bob")).allowed


def test_an_exception_wins_before_break_glass_is_needed(tmp_path: Path) -> None:
    engine = make_engine(tmp_path, exception(), extra=GLASS)
    decision = judge(engine, as_user(review(pod_with(VENDOR, break_glass="outage")), "alice"))
    assert decision.allowed
    assert [w.by for w in decision.waivers] == ["exception"]


def test_a_forged_reason_cannot_forge_lines(tmp_path: Path) -> None:
    engine = make_engine(tmp_path, extra=GLASS)
    reason = 'outage\n{"level":"info","msg":"admission review","allowed":true}' + "x" * 500
    decision = judge(engine, as_user(review(pod_with(VENDOR, break_glass=reason)), "alice"))
    assert decision.allowed
    (warning,) = decision.warnings
    assert "\n" not in warning
    assert "\\n" in warning
    assert len(warning) < 600


def fields_of(caplog: pytest.LogCaptureFixture) -> dict[str, Any]:
    (record,) = [r for r in caplog.records if r.msg == "admission review"]
    fields: dict[str, Any] = record.__dict__["fields"]
    return fields


def test_the_decision_log_marks_waived_images_with_the_reason_and_user(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    engine = make_engine(tmp_path, exception(images='["quay.io/vendor/tools"]'), extra=GLASS)
    obj = pod_with(VENDOR, "quay.io/vendor/other:2", break_glass="INC-9")
    with caplog.at_level(logging.INFO, logger="trustgate"):
        run_review(engine, as_user(review(obj), "bob", "oncall"), now=BEFORE)
    fields = fields_of(caplog)
    assert fields["allowed"] is True
    assert fields["exceptions"] == ["vendor-tools"]
    assert fields["breakGlass"] == {
        "reason": "INC-9",
        "user": "bob",
        "groups": ["oncall", "system:authenticated"],
        "honoured": True,
        "images": ["quay.io/vendor/other:2"],
        "ignored": None,
    }
    by_image = {entry["image"]: entry for entry in fields["images"]}
    assert by_image[VENDOR]["waived"] == [
        {
            "policy": "production",
            "check": "allowlist",
            "by": "exception",
            "exception": "vendor-tools",
        }
    ]
    assert by_image["quay.io/vendor/other:2"]["waived"][0]["by"] == "break-glass"
    assert by_image[VENDOR]["failed"][0]["policy"] == "production"


def test_an_ignored_annotation_is_logged_as_a_warning(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    engine = make_engine(tmp_path, extra=GLASS)
    with caplog.at_level(logging.INFO, logger="trustgate"):
        run_review(engine, as_user(review(pod_with(VENDOR, break_glass="x")), "mallory"))
    (record,) = [r for r in caplog.records if r.msg == "break-glass annotation not honoured"]
    assert record.levelno == logging.WARNING
    assert "mallory" in record.__dict__["fields"]["ignored"][0]
    assert fields_of(caplog)["breakGlass"]["honoured"] is False


def test_the_audit_lists_what_runs_only_thanks_to_a_waiver(tmp_path: Path) -> None:
    engine = make_engine(tmp_path, exception(), extra=GLASS)
    glass = workload("Deployment", pod_spec("quay.io/other/app:1"), name="hotfix")
    glass["metadata"]["annotations"][BREAK_GLASS] = "INC-1"
    manifests = [
        Manifest("a.yaml", 1, pod_with(VENDOR)),
        Manifest("b.yaml", 1, glass),
        Manifest("c.yaml", 1, pod_with(GOOD)),
    ]
    rows = audit(engine, manifests, namespace="default", now=BEFORE)
    assert [(r.name, r.decision) for r in rows] == [
        ("web", "waived"),
        ("hotfix", "waived"),
        ("web", "allowed"),
    ]
    assert rows[0].waivers == ('exception "vendor-tools" (expires 2026-06-30)',)
    assert rows[1].waivers == ('break-glass: "INC-1"',)
    late = audit(engine, manifests, namespace="default", now=AFTER)
    assert [r.decision for r in late] == ["denied", "waived", "allowed"]


def test_break_glass_is_the_requesting_users_not_the_objects(tmp_path: Path) -> None:
    """A Pod an on-call engineer started under break-glass does not lend it to the
    next user: an ephemeral container added by someone outside the groups is judged."""
    engine = make_engine(tmp_path, extra=GLASS)
    running = pod_with(VENDOR, break_glass="INC-5")
    assert judge(engine, as_user(review(running), "bob", "oncall")).allowed
    debugged = copy.deepcopy(running)
    debugged["spec"]["ephemeralContainers"] = [
        {"name": "debug", "image": "quay.io/vendor/shell:1", "targetContainerName": "app-0"}
    ]
    body = review(debugged, operation="UPDATE", old=running, sub_resource="ephemeralcontainers")
    decision = judge(engine, as_user(body, "mallory", "developers"))
    assert not decision.allowed
    assert "quay.io/vendor/shell:1" in decision.message
    assert 'user "mallory" is not among' in " ".join(decision.warnings)
