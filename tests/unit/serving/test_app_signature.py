"""The app with policies.signature: no trusted set means not ready, and every review denied."""

from __future__ import annotations

import json
import shutil
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric import ec
from flask import Flask
from flask.testing import FlaskClient

from tests.support.kube import pod_spec, review, workload
from tests.support.policysigning import private_pem, signed_set
from webhook.config import Config
from webhook.config.policysig import PolicySignatureConfig
from webhook.policy.signing.envelope import TrustedKey, sign_directory
from webhook.serving.app import Settings, create_app

TEAM = ec.generate_private_key(ec.SECP256R1())
GOOD = "quay.io/acme/api:1.0"


def make_app(directory: Path, *, reload: bool = True) -> Flask:
    signature = PolicySignatureConfig((TrustedKey("policy-team", TEAM.public_key()),), True)
    config = Config(policy_signature=signature, reload_interval_seconds=0.1)
    return create_app(Settings(policies=directory, config=config, reload=reload))


@pytest.fixture
def unsigned(tmp_path: Path) -> Path:
    directory = signed_set(tmp_path / "policies", TEAM, 1)
    shutil.rmtree(directory / ".trustgate")
    return directory


@pytest.fixture
def app(unsigned: Path) -> Iterator[Flask]:
    app = make_app(unsigned)
    yield app
    app.extensions["trustgate"].store.stop()


@pytest.fixture
def client(app: Flask) -> FlaskClient:
    return app.test_client()


def post(client: FlaskClient, path: str, body: object) -> tuple[int, dict]:
    answer = client.post(path, data=json.dumps(body), content_type="application/json")
    return answer.status_code, answer.get_json()


def test_not_ready_and_every_review_denied_with_the_reason(client: FlaskClient) -> None:
    ready = client.get("/readyz")
    assert ready.status_code == 503
    body = ready.get_json()
    assert body["ready"] is False
    assert body["reason"].startswith("trustgate has no trusted policy set loaded: refused")
    assert body["policySignature"]["state"] == "none"
    status, answer = post(client, "/validate", review(workload("Pod", pod_spec(GOOD)), uid="u"))
    assert status == 200
    response = answer["response"]
    assert (response["uid"], response["allowed"]) == ("u", False)
    assert response["status"]["message"].startswith("trustgate has no trusted policy set loaded")
    assert "unsigned" in response["status"]["message"]


def test_what_is_not_a_review_is_still_a_400(client: FlaskClient) -> None:
    status, answer = post(client, "/validate", {"kind": "AdmissionReview"})
    assert status == 400 and "not an AdmissionReview" in answer["error"]


def test_a_review_of_another_version_gets_the_400_a_loaded_set_gives(client: FlaskClient) -> None:
    """Without a set, what parse_review refuses is still named, on both paths, not denied."""
    body = review(workload("Pod", pod_spec(GOOD)), uid="v")
    body["apiVersion"] = "admission.k8s.io/v1beta1"
    for path in ("/validate", "/mutate"):
        status, answer = post(client, path, body)
        assert status == 400, path
        assert "expected apiVersion admission.k8s.io/v1" in answer["error"]
    text = client.get("/metrics").get_data(as_text=True)
    assert 'trustgate_admission_requests_total{decision="invalid"} 1.0' in text
    assert 'trustgate_mutation_requests_total{outcome="invalid"} 1.0' in text


def test_mutate_admits_unpatched(client: FlaskClient) -> None:
    status, answer = post(client, "/mutate", review(workload("Pod", pod_spec(GOOD)), uid="m"))
    assert status == 200
    response = answer["response"]
    assert (response["uid"], response["allowed"]) == ("m", True)
    assert "patch" not in response


def test_metrics_say_no_valid_signature(client: FlaskClient) -> None:
    text = client.get("/metrics").get_data(as_text=True)
    assert "trustgate_policy_set_signature_valid 0.0" in text
    assert 'trustgate_policy_set_refusals_total{reason="unsigned"} 1.0' in text
    assert 'trustgate_policy_set_refusals_total{reason="replayed"} 0.0' in text


def test_with_reloads_off_a_valid_set_still_loads(unsigned: Path) -> None:
    app = make_app(unsigned, reload=False)
    try:
        sign_directory(unsigned, private_pem(TEAM), source="k", version=1, now=datetime.now(UTC))
        client = app.test_client()
        deadline = time.monotonic() + 10
        while client.get("/readyz").status_code != 200:
            assert time.monotonic() < deadline, client.get("/readyz").get_json()
            time.sleep(0.05)
        _, answer = post(client, "/validate", review(workload("Pod", pod_spec(GOOD))))
        assert answer["response"]["allowed"] is True
        assert client.get("/readyz").get_json()["policySignature"]["state"] == "verified"
    finally:
        app.extensions["trustgate"].store.stop()


def test_with_reloads_off_the_first_valid_set_is_the_last(unsigned: Path) -> None:
    """Polled until a valid set loads, then not: reloadIntervalSeconds 0 disables reload."""
    app = make_app(unsigned, reload=False)
    try:
        sign_directory(unsigned, private_pem(TEAM), source="k", version=1, now=datetime.now(UTC))
        client = app.test_client()
        deadline = time.monotonic() + 10
        while client.get("/readyz").status_code != 200:
            assert time.monotonic() < deadline, client.get("/readyz").get_json()
            time.sleep(0.05)
        (unsigned / "policy.yaml").write_text((unsigned / "policy.yaml").read_text() + "# v2\n")
        sign_directory(unsigned, private_pem(TEAM), source="k", version=2, now=datetime.now(UTC))
        time.sleep(4.5)  # two polls of the 2 s interval a started store would use
        assert client.get("/readyz").get_json()["policySignature"]["version"] == 1
    finally:
        app.extensions["trustgate"].store.stop()


def test_without_policies_signature_the_body_says_none(tmp_path: Path) -> None:
    directory = signed_set(tmp_path / "policies", TEAM, 1)
    app = create_app(Settings(policies=directory, config=Config(), reload=False))
    body = app.test_client().get("/readyz").get_json()
    assert body["policySignature"] is None and body["reason"] is None and body["ready"]
    assert "trustgate_policy_set_signature_valid" not in app.test_client().get("/metrics").get_data(
        as_text=True
    )
