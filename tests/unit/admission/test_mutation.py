"""``POST /mutate`` through the Flask app, against a real registry with real cosign signatures.

The app, its engine and its checks are the real ones; the registry is Debian's
docker-registry on 127.0.0.1 (the session fixture). Patches are applied with
``jsonpatch``, an implementation of RFC 6902 that is not ours.
"""

from __future__ import annotations

import base64
import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import jsonpatch
import pytest
from flask import Flask
from flask.testing import FlaskClient
from hypothesis import HealthCheck, given, settings

from tests.integration.test_signatures_e2e import OTHER, RELEASE, image, policy, sign
from tests.support.cosign import public_pem
from tests.support.hostile import hang, hostile_server
from tests.support.kube import pod_spec, review, workload
from tests.support.mutations import mutated_reviews
from tests.support.registry import Registry
from webhook.admission.mutation import mutate
from webhook.admission.workloads import find_images
from webhook.cli.main import main
from webhook.config import parse_config
from webhook.serving.app import Settings, create_app

DEADLINE = 2.0


def write_policies(directory: Path, *documents: str) -> Path:
    (directory / "keys").mkdir(parents=True, exist_ok=True)
    (directory / "keys" / "release.pub").write_text(public_pem(RELEASE))
    (directory / "keys" / "other.pub").write_text(public_pem(OTHER))
    (directory / "p.yaml").write_text("---\n".join(documents))
    return directory


def config_text(*hosts: str) -> str:
    registries = ", ".join(f'"{h}": {{insecure: true}}' for h in hosts)
    return f"deadlineSeconds: {DEADLINE}\nregistries: {{{registries}}}\n"


def build_app(policies: Path, *hosts: str) -> Flask:
    import yaml

    config = parse_config(yaml.safe_load(config_text(*hosts)))
    return create_app(Settings(policies=policies, config=config, reload=False))


@pytest.fixture
def app(registry: Registry, tmp_path: Path) -> Iterator[Flask]:
    policies = write_policies(
        tmp_path / "policies",
        policy("signed", registry.host),
        policy("opt-out", registry.host, namespaces='["tags-*"]').replace(
            "  signatures:", "  pinDigest: false\n  signatures:"
        ),
        policy("pinned-only", registry.host, namespaces='["digest-*"]').replace(
            "  signatures:", "  requireDigest: true\n  signatures:"
        ),
        policy("rollout", registry.host, namespaces='["both-*"]'),
        policy("strict", registry.host, mode="audit", namespaces='["both-*"]', keys=("other",)),
    )
    app = build_app(policies, registry.host)
    yield app
    app.extensions["trustgate"].store.stop()
    app.extensions["trustgate"].engine.close()


@pytest.fixture
def client(app: Flask) -> FlaskClient:
    return app.test_client()


def call(client: FlaskClient, path: str, body: dict[str, Any]) -> dict[str, Any]:
    result = client.post(path, data=json.dumps(body), content_type="application/json")
    assert result.status_code == 200, result.get_data(as_text=True)
    response: dict[str, Any] = result.get_json()["response"]
    assert response["uid"] == body["request"]["uid"]
    return response


def patched(body: dict[str, Any], response: dict[str, Any]) -> dict[str, Any]:
    """``body`` with the object the API server stores after applying the response's patch."""
    assert response["allowed"] is True
    obj = body["request"]["object"]
    if "patch" in response:
        assert response["patchType"] == "JSONPatch"
        patch = json.loads(base64.b64decode(response["patch"]))
        obj = jsonpatch.apply_patch(obj, patch)
    return review(obj)


def signed_image(registry: Registry, name: str) -> tuple[str, str]:
    ref, digest = image(registry, f"pin/{name}", name.encode())
    sign(registry, f"pin/{name}", digest, RELEASE)
    return ref, digest


def test_a_signed_tag_is_pinned_to_its_verified_digest(
    registry: Registry, client: FlaskClient
) -> None:
    ref, digest = signed_image(registry, "signed")
    body = review(workload("Deployment", pod_spec(ref, ref, init=(ref,))))
    after = patched(body, call(client, "/mutate", body))
    images = [i.image for i in find_images(after["request"]["object"])]
    assert images == [f"{ref}@{digest}"] * 3
    assert call(client, "/validate", after)["allowed"] is True


def test_an_unsigned_image_gets_no_patch_and_is_denied(
    registry: Registry, client: FlaskClient
) -> None:
    signed, digest = signed_image(registry, "beside-unsigned")
    unsigned, _ = image(registry, "pin/unsigned", b"unsigned")
    body = review(workload("Pod", pod_spec(signed, unsigned)))
    after = patched(body, call(client, "/mutate", body))
    images = [i.image for i in find_images(after["request"]["object"])]
    assert images == [f"{signed}@{digest}", unsigned]  # only what was verified
    verdict = call(client, "/validate", after)
    assert verdict["allowed"] is False
    assert "no signature found" in verdict["status"]["message"]


def test_require_digest_policies_pin_tags_and_then_pass(
    registry: Registry, client: FlaskClient
) -> None:
    """requireDigest denies a tag at /validate; /mutate verifies and pins it first."""
    ref, digest = signed_image(registry, "require-digest")
    body = review(workload("Deployment", pod_spec(ref), namespace="digest-web"))
    denied = call(client, "/validate", body)
    assert denied["allowed"] is False
    assert "requireDigest" in denied["status"]["message"]
    after = patched(body, call(client, "/mutate", body))
    assert [i.image for i in find_images(after["request"]["object"])] == [f"{ref}@{digest}"]
    assert call(client, "/validate", after)["allowed"] is True
    unsigned, _ = image(registry, "pin/require-digest-unsigned", b"nope")
    body = review(workload("Pod", pod_spec(unsigned), namespace="digest-web"))
    assert "patch" not in call(client, "/mutate", body)


def test_pinned_images_stay_as_written(registry: Registry, client: FlaskClient) -> None:
    ref, digest = signed_image(registry, "already")
    pinned = f"{registry.host}/pin/already@{digest}"
    body = review(workload("Pod", pod_spec(pinned, f"{ref}@{digest}")))
    assert call(client, "/mutate", body) == {"uid": body["request"]["uid"], "allowed": True}


def test_reasons_for_leaving_an_image_as_written(registry: Registry, app: Flask) -> None:
    """pinDigest: false; an audit policy that found fault; an image no check verified."""
    from webhook.admission.review import parse_review

    engine = app.extensions["trustgate"].engine
    ref, _ = signed_image(registry, "reasons")
    for namespace, reason in (
        ("tags-web", "no policy governing it sets pinDigest"),
        ("both-web", 'policy "strict" did not pass'),
    ):
        body = review(workload("Pod", pod_spec(ref), namespace=namespace))
        mutation = mutate(engine, parse_review(body))
        assert mutation.pins == ()
        assert mutation.skipped == ((ref, reason),)
    body = review(workload("Pod", pod_spec("quay.io/acme/api:1"), namespace="prod-web"))
    assert mutate(engine, parse_review(body)).skipped == (("quay.io/acme/api:1", "denied"),)


def test_an_update_without_a_new_image_is_not_pinned(
    registry: Registry, client: FlaskClient
) -> None:
    """Scaling a Deployment written with tags must not roll it out to pinned digests."""
    ref, _ = signed_image(registry, "update")
    old = workload("Deployment", pod_spec(ref))
    new = json.loads(json.dumps(old))
    new["spec"]["replicas"] = 5
    body = review(new, operation="UPDATE", old=old)
    assert "patch" not in call(client, "/mutate", body)
    swapped = review(workload("Deployment", pod_spec(ref, ref)), operation="UPDATE", old=old)
    assert "patch" in call(client, "/mutate", swapped)


def test_an_update_pins_only_what_it_changes(registry: Registry, client: FlaskClient) -> None:
    """kubectl debug adds an ephemeral container: only it is pinned. Pinning the running
    containers too would change their image strings, and the kubelet would restart them."""
    ref, digest = signed_image(registry, "running")
    debug, debug_digest = signed_image(registry, "debugger")
    old = workload("Pod", pod_spec(ref, init=(ref,)))
    new = workload("Pod", pod_spec(ref, init=(ref,), ephemeral=(debug,)))
    body = review(new, operation="UPDATE", old=old, sub_resource="ephemeralcontainers")
    after = patched(body, call(client, "/mutate", body))
    assert [i.image for i in find_images(after["request"]["object"])] == [
        ref,
        ref,
        f"{debug}@{debug_digest}",
    ]
    # an image changed in place is pinned where it changed, and only there
    moved = workload("Pod", pod_spec(ref, debug))
    body = review(moved, operation="UPDATE", old=workload("Pod", pod_spec(ref, ref)))
    after = patched(body, call(client, "/mutate", body))
    assert [i.image for i in find_images(after["request"]["object"])] == [
        ref,
        f"{debug}@{debug_digest}",
    ]
    assert digest != debug_digest


def test_objects_a_controller_owns_are_pinned_through_their_owner(
    registry: Registry, client: FlaskClient
) -> None:
    """A ReplicaSet pinned apart from its Deployment would make the Deployment controller
    create ReplicaSets without end; the Pods it creates are pinned, as nothing compares them."""
    ref, digest = signed_image(registry, "owned")
    owner = {"apiVersion": "apps/v1", "kind": "Deployment", "name": "web", "controller": True}
    replica_set = workload("ReplicaSet", pod_spec(ref))
    replica_set["metadata"]["ownerReferences"] = [owner]
    assert "patch" not in call(client, "/mutate", review(replica_set))
    pod = workload("Pod", pod_spec(ref))
    pod["metadata"]["ownerReferences"] = [{**owner, "kind": "ReplicaSet", "name": "web-5d4"}]
    body = review(pod)
    after = patched(body, call(client, "/mutate", body))
    assert [i.image for i in find_images(after["request"]["object"])] == [f"{ref}@{digest}"]


def test_only_allowlist_policies_answer_at_once(tmp_path: Path) -> None:
    """No policy pins: nothing is evaluated, nothing contacted, the object stays as written."""
    directory = tmp_path / "p"
    directory.mkdir()
    (directory / "p.yaml").write_text(
        "apiVersion: trustgate.dev/v1alpha1\nkind: ImagePolicy\nmetadata: {name: p}\n"
        'spec: {registries: ["**"]}\n'
    )
    app = build_app(directory)
    try:
        engine = app.extensions["trustgate"].engine
        from webhook.admission.review import parse_review

        body = review(workload("Pod", pod_spec("quay.io/acme/api:1")))
        mutation = mutate(engine, parse_review(body))
        assert (mutation.pins, mutation.verdicts) == ((), ())
        assert mutation.note == "no policy sets pinDigest"
    finally:
        app.extensions["trustgate"].store.stop()


def test_internal_errors_admit_without_a_patch(
    registry: Registry, app: Flask, client: FlaskClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    ref, _ = signed_image(registry, "internal")
    engine = app.extensions["trustgate"].engine

    def broken(*args: object, **kwargs: object) -> None:
        raise RuntimeError("boom")

    monkeypatch.setattr(engine, "evaluate", broken)
    body = review(workload("Pod", pod_spec(ref)))
    assert call(client, "/mutate", body) == {"uid": body["request"]["uid"], "allowed": True}
    metrics = client.get("/metrics").get_data(as_text=True)
    assert 'trustgate_mutation_requests_total{outcome="error"} 1.0' in metrics


def test_a_hanging_registry_admits_without_a_patch_within_the_deadline(tmp_path: Path) -> None:
    with hostile_server(hang) as hanging:
        app = build_app(write_policies(tmp_path / "p", policy("hang", hanging.host)), hanging.host)
        try:
            body = review(workload("Pod", pod_spec(f"{hanging.host}/app:v1")))
            started = time.monotonic()
            response = call(app.test_client(), "/mutate", body)
            elapsed = time.monotonic() - started
        finally:
            app.extensions["trustgate"].store.stop()
    assert response == {"uid": body["request"]["uid"], "allowed": True}
    assert elapsed < DEADLINE + 1.5  # the registry would hold the call for 120 s


@settings(
    max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(body=mutated_reviews())
def test_no_body_gets_a_denial_or_a_server_error(client: FlaskClient, body: dict) -> None:
    result = client.post("/mutate", data=json.dumps(body), content_type="application/json")
    text = result.get_data(as_text=True)
    assert "Traceback" not in text
    if result.status_code == 400:
        assert result.get_json()["error"].startswith("not an AdmissionReview trustgate can answer")
        return
    assert result.status_code == 200, text
    response = result.get_json()["response"]
    assert response["allowed"] is True
    assert "patch" not in response  # the base reviews' images are unknown to the registry


def test_review_mutate_prints_the_patch(
    registry: Registry,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    ref, digest = signed_image(registry, "cli")
    unsigned, _ = image(registry, "pin/cli-unsigned", b"cli-unsigned")
    policies = write_policies(tmp_path / "policies", policy("signed", registry.host))
    config = tmp_path / "trustgate.yaml"
    config.write_text(config_text(registry.host))
    body = review(workload("CronJob", pod_spec(ref, unsigned)))
    file = tmp_path / "review.json"
    file.write_text(json.dumps(body))
    argv = ["review", "--mutate", str(file), "--policies", str(policies), "--config", str(config)]
    assert main(argv) == 0
    out, err = capsys.readouterr()
    after = patched(body, json.loads(out)["response"])
    images = [i.image for i in find_images(after["request"]["object"])]
    assert images == [f"{ref}@{digest}", unsigned]
    assert f"pinned {ref} -> {ref}@{digest}" in err
    assert f"not pinned {unsigned}: denied" in err
    assert '"op": "test"' in err


def test_a_known_grade_is_pinned_and_an_unknown_one_admitted_by_default_is_not(
    registry: Registry, tmp_path: Path
) -> None:
    """A grade is bound to the digest it was looked up for; "unknown, allowed" verified nothing."""
    import yaml

    from webhook.admission.review import parse_review

    graded, digest = image(registry, "pin/graded", b"graded")
    ungraded, _ = image(registry, "pin/ungraded", b"ungraded")
    grades = tmp_path / "grades.yaml"
    grades.write_text(f"grades:\n  - digest: {digest}\n    grade: A\n")
    directory = tmp_path / "policies"
    directory.mkdir()
    (directory / "fresh.yaml").write_text(
        "apiVersion: trustgate.dev/v1alpha1\nkind: ImagePolicy\nmetadata: {name: fresh}\n"
        f'spec:\n  registries: ["{registry.host}/**"]\n'
        "  freshness: {minimumGrade: B, sources: [static], onUnknown: allow}\n"
    )
    config = yaml.safe_load(config_text(registry.host))
    config["freshness"] = {"static": {"file": str(grades)}}
    app = create_app(Settings(policies=directory, config=parse_config(config), reload=False))
    try:
        engine = app.extensions["trustgate"].engine
        body = review(workload("Pod", pod_spec(graded, ungraded)))
        mutation = mutate(engine, parse_review(body))
    finally:
        app.extensions["trustgate"].store.stop()
    assert [(pin.image, pin.digest) for pin in mutation.pins] == [(graded, digest)]
    ((image_shown, reason),) = mutation.skipped
    assert image_shown == ungraded
    assert reason.startswith("no check verified a digest")
