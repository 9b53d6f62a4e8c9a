"""Digest pinning end to end: `trustgate serve`, a real registry, real cosign signatures.

``/mutate`` and then ``/validate`` are called as kube-apiserver calls them, the
patch applied in between with ``jsonpatch`` (RFC 6902). The registry writes an
access log, so the tests count what each call asked of it.
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
import requests

from tests.integration.conftest import Server, serve_config, serving
from tests.integration.test_signatures_e2e import RELEASE, policy, sign
from tests.support.cosign import public_pem
from tests.support.hostile import Hanging
from tests.support.kube import pod_spec, review, workload
from tests.support.kubeapi import kubeconfig, start_api_server
from tests.support.registry import Registry, default_layer, push_image, start_registry
from webhook.admission.workloads import find_images
from webhook.cli.main import main

pytestmark = pytest.mark.e2e

DEADLINE = 3.0
#: Long enough that a warm cache, not a short TTL, explains a call with no request.
TTL = 600


@pytest.fixture(scope="module")
def counted(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Registry]:
    """A registry of this module's own, with an access log to count requests by."""
    registry = start_registry(tmp_path_factory.mktemp("pin-registry"), access_log=True)
    yield registry
    registry.stop()


@pytest.fixture(scope="module")
def server(
    counted: Registry, hanging: Hanging, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Server]:
    documents = [
        policy("signed", counted.host),
        policy("hanging", hanging.host, namespaces='["hang-*"]'),
    ]
    files = {"keys/release.pub": public_pem(RELEASE), "signed.yaml": "---\n".join(documents)}
    # the tag cache expires at once: a moved tag is seen by the next tag lookup
    cache = f"cache: {{digestTTL: 0.001, verifiedTTL: {TTL}}}\n"
    config = serve_config(counted.host, hanging.host, deadline=DEADLINE, extra=cache)
    with serving(tmp_path_factory.mktemp("pinning"), files, config) as server:
        yield server


def push(registry: Registry, repository: str, content: bytes, *, signed: bool) -> tuple[str, str]:
    layer = default_layer(content=content)
    digest = push_image(registry, repository, tag="v1", layers=[layer])
    if signed:
        sign(registry, repository, digest, RELEASE)
    return f"{registry.host}/{repository}:v1", digest


def call(server: Server, path: str, body: dict[str, Any]) -> dict[str, Any]:
    result = requests.post(
        f"{server.url}{path}", json=body, verify=str(server.ca), timeout=30
    )  # fmt: skip
    assert result.status_code == 200, result.text
    response: dict[str, Any] = result.json()["response"]
    assert response["uid"] == body["request"]["uid"]
    return response


def mutated(server: Server, body: dict[str, Any]) -> dict[str, Any]:
    """What the API server stores after /mutate: the object with the patch applied."""
    response = call(server, "/mutate", body)
    assert response["allowed"] is True
    obj = body["request"]["object"]
    if "patch" in response:
        assert response["patchType"] == "JSONPatch"
        obj = jsonpatch.apply_patch(obj, json.loads(base64.b64decode(response["patch"])))
    return obj


def images_of(obj: dict[str, Any]) -> list[str]:
    return [item.image for item in find_images(obj)]


def counting(registry: Registry) -> int:
    time.sleep(0.3)  # the registry logs a request just after answering it
    return len(registry.requests_seen())


def decision_lines(server: Server, uid: str, msg: str) -> list[dict[str, Any]]:
    """The log lines ``msg`` ("admission review", "mutation review") of request ``uid``."""
    return [line for line in server.log_lines(uid, msg) if line.get("msg") == msg]


def test_a_tag_is_pinned_to_its_verified_digest_and_validated_from_the_caches(
    counted: Registry, server: Server
) -> None:
    ref, digest = push(counted, "pin/api", b"api", signed=True)
    body = review(workload("Deployment", pod_spec(ref)))
    before = counting(counted)
    obj = mutated(server, body)
    assert images_of(obj) == [f"{ref}@{digest}"]
    asked = counting(counted)
    assert asked > before  # the tag, the .sig manifest, the signed payload
    pinned = review(obj)
    assert call(server, "/validate", pinned)["allowed"] is True
    assert counting(counted) == asked  # no second round trip: the digest's verdict is cached
    (line,) = decision_lines(server, pinned["request"]["uid"], "admission review")
    (entry,) = line["images"]
    assert (entry["image"], entry["digest"]) == (f"{ref}@{digest}", digest)
    (logged,) = decision_lines(server, body["request"]["uid"], "mutation review")
    assert logged["pinned"] == [
        {"image": ref, "digest": digest, "paths": ["/spec/template/spec/containers/0/image"]}
    ]


def test_a_tag_moved_after_pinning_is_judged_at_the_pinned_digest(
    counted: Registry, server: Server
) -> None:
    ref, verified = push(counted, "pin/moving", b"release 1", signed=True)
    body = review(workload("Deployment", pod_spec(ref)))
    obj = mutated(server, body)
    _, moved = push(counted, "pin/moving", b"not what was verified", signed=False)
    assert moved != verified
    answer = call(server, "/validate", review(obj))
    assert answer["allowed"] is True
    assert images_of(obj) == [f"{ref}@{verified}"]  # what the kubelet pulls
    # without the pin, the same tag now names an unsigned image: the gap pinning closes
    unpinned = call(server, "/validate", review(workload("Deployment", pod_spec(ref))))
    assert unpinned["allowed"] is False
    assert f"sha256-{moved.split(':')[1]}" in unpinned["status"]["message"]


def test_an_unsigned_image_gets_no_patch_and_is_denied(counted: Registry, server: Server) -> None:
    ref, _ = push(counted, "pin/unsigned", b"unsigned", signed=False)
    body = review(workload("Pod", pod_spec(ref)))
    response = call(server, "/mutate", body)
    assert response == {"uid": body["request"]["uid"], "allowed": True}
    answer = call(server, "/validate", body)
    assert answer["allowed"] is False
    assert "no signature found" in answer["status"]["message"]
    (logged,) = decision_lines(server, body["request"]["uid"], "mutation review")
    assert logged["notPinned"] == [{"image": ref, "reason": "denied"}]


def test_a_registry_that_never_answers_gets_no_patch_within_the_deadline(
    hanging: Hanging, server: Server
) -> None:
    """/mutate is bounded by the review's deadline and then admits unchanged; /validate denies."""
    body = review(workload("Deployment", pod_spec(f"{hanging.host}/app:v1"), namespace="hang-1"))
    started = time.monotonic()
    response = call(server, "/mutate", body)
    elapsed = time.monotonic() - started
    assert response == {"uid": body["request"]["uid"], "allowed": True}
    # The registry would hold the connection for ever; the slack is for a loaded machine
    # (the first review of a fresh server also imports the signature stack).
    assert elapsed < DEADLINE + 3
    (logged,) = decision_lines(server, body["request"]["uid"], "mutation review")
    assert logged["patched"] is False
    assert call(server, "/validate", body)["allowed"] is False


@pytest.mark.parametrize("kind", ["CronJob", "Pod"])
def test_every_image_of_a_cron_job_and_a_pod_is_patched(
    counted: Registry, server: Server, kind: str
) -> None:
    app, app_digest = push(counted, f"pin/{kind.lower()}-app", kind.encode(), signed=True)
    init, init_digest = push(counted, f"pin/{kind.lower()}-init", b"init", signed=True)
    debug, debug_digest = push(counted, f"pin/{kind.lower()}-debug", b"debug", signed=True)
    data, data_digest = push(counted, f"pin/{kind.lower()}-data", b"data", signed=True)
    spec = pod_spec(app, init=(init,), ephemeral=(debug,), volumes=(data,))
    original = workload(kind, spec)
    obj = mutated(server, review(original))
    assert images_of(obj) == [
        f"{app}@{app_digest}",
        f"{init}@{init_digest}",
        f"{debug}@{debug_digest}",
        f"{data}@{data_digest}",
    ]
    answer = call(server, "/validate", review(obj))
    assert answer["allowed"] is True, answer
    # nothing but the images changed
    for item in find_images(obj):
        jsonpatch.JsonPointer(item.pointer).set(obj, "-")
    for item in find_images(original):
        jsonpatch.JsonPointer(item.pointer).set(original, "-")
    assert obj == original


def test_pods_of_a_pinned_deployment_run_and_audit_the_verified_digest(
    counted: Registry,
    server: Server,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Controllers copy the pinned template; ``audit --cluster`` shows the digest that runs."""
    ref, digest = push(counted, "pin/fleet", b"fleet", signed=True)
    deployment = mutated(server, review(workload("Deployment", pod_spec(ref), name="fleet")))
    bare = mutated(server, review(workload("Pod", pod_spec(ref), name="debug")))
    template = deployment["spec"]["template"]
    api = start_api_server(tmp_path / "api")
    try:
        meta = {"namespace": "prod-web", "uid": "u", "resourceVersion": "1"}

        def owned_by(kind: str, name: str) -> list[dict[str, Any]]:
            return [{"apiVersion": "apps/v1", "kind": kind, "name": name, "controller": True}]

        pods = [
            {
                "metadata": {
                    **meta,
                    "name": f"fleet-5d4-{i}",
                    "ownerReferences": owned_by("ReplicaSet", "fleet-5d4"),
                },
                "spec": template["spec"],  # what the ReplicaSet controller copies
            }
            for i in range(2)
        ]
        api.objects = {
            "deployments": [{"metadata": {**meta, "name": "fleet"}, "spec": deployment["spec"]}],
            "replicasets": [
                {
                    "metadata": {
                        **meta,
                        "name": "fleet-5d4",
                        "ownerReferences": owned_by("Deployment", "fleet"),
                    },
                    "spec": {"replicas": 2, "template": template},
                }
            ],
            "pods": [*pods, {"metadata": {**meta, "name": "debug"}, "spec": bare["spec"]}],
        }
        for pod in api.objects["pods"]:
            assert images_of({"kind": "Pod", **pod}) == [f"{ref}@{digest}"]
        config = tmp_path / "trustgate.yaml"
        config.write_text(f'registries: {{"{counted.host}": {{insecure: true}}}}\n')
        monkeypatch.setenv("KUBECONFIG", str(kubeconfig(tmp_path / "kube", api, token=api.token)))
        argv = ["audit", "--cluster", "--policies", str(server.policies), "--config", str(config)]
        code = main([*argv, "--output", "json"])
    finally:
        api.stop()
    out, _ = capsys.readouterr()
    rows = json.loads(out)
    assert code == 0, rows
    assert [(r["kind"], r["name"], r["decision"]) for r in rows] == [
        ("Deployment", "fleet", "allowed"),
        ("Pod", "debug", "allowed"),
    ]
    assert {(r["image"], r["digest"]) for r in rows} == {(f"{ref}@{digest}", digest)}
