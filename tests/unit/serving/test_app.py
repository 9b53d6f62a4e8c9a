"""The Flask app through its test client: routes, limits, metrics, reload state."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from flask import Flask
from flask.testing import FlaskClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.support.kube import pod_spec, policy_yaml, review, workload
from tests.support.mutations import admitted_by_accident, base_reviews, mutated_reviews
from webhook.config import Config
from webhook.serving.app import Settings, _dumps, create_app

BAD = "docker.io/library/nginx:1.27"
GOOD = "quay.io/acme/api:1.0"


@pytest.fixture
def policy_dir(tmp_path: Path) -> Path:
    (tmp_path / "prod.yaml").write_text(policy_yaml())
    return tmp_path


@pytest.fixture
def app(policy_dir: Path) -> Iterator[Flask]:
    config = Config(max_request_bytes=64 * 1024)
    app = create_app(Settings(policies=policy_dir, config=config, reload=False))
    yield app
    app.extensions["trustgate"].store.stop()


@pytest.fixture
def client(app: Flask) -> FlaskClient:
    return app.test_client()


def post(client: FlaskClient, body: object) -> tuple[int, dict]:
    result = client.post("/validate", data=json.dumps(body), content_type="application/json")
    return result.status_code, result.get_json()


def test_denial(client: FlaskClient) -> None:
    body = review(workload("Deployment", pod_spec(BAD)), uid="u-1")
    status, answer = post(client, body)
    assert status == 200
    assert answer["response"]["uid"] == "u-1"
    assert answer["response"]["allowed"] is False
    assert (
        "docker.io/library/nginx is not in the registry allowlist"
        in (answer["response"]["status"]["message"])
    )


def test_admission(client: FlaskClient) -> None:
    status, answer = post(client, review(workload("Pod", pod_spec(GOOD))))
    assert status == 200
    assert answer["response"]["allowed"] is True


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"{not json", "not valid JSON"),
        (b"", "not valid JSON"),
        (b"[1,2]", "must be a JSON object"),
        (b'{"apiVersion": "v1"}', "expected apiVersion admission.k8s.io/v1"),
        (b"[" * 5000 + b"]" * 5000, "nests too deeply"),
        ("\ud800".encode("utf-8", "surrogatepass"), "not valid JSON"),
    ],
)
def test_bad_bodies_get_400(client: FlaskClient, data: bytes, message: str) -> None:
    result = client.post("/validate", data=data, content_type="application/json")
    assert result.status_code == 400
    assert message in result.get_json()["error"]


def test_oversized_body_gets_413(client: FlaskClient) -> None:
    result = client.post("/validate", data=b" " * (65 * 1024), content_type="application/json")
    assert result.status_code == 413
    assert result.get_json() == {"error": "the body is larger than 65536 bytes"}


def test_unknown_route_and_method_are_json(client: FlaskClient) -> None:
    assert client.get("/nope").status_code == 404
    result = client.get("/validate")
    assert result.status_code == 405
    assert "error" in result.get_json()


def test_health_and_readiness(client: FlaskClient) -> None:
    assert client.get("/healthz").get_json() == {"status": "ok"}
    ready = client.get("/readyz").get_json()
    assert ready["ready"] is True
    assert ready["policies"] == 1
    assert ready["lastError"] is None


def test_metrics_count_decisions(client: FlaskClient) -> None:
    post(client, review(workload("Pod", pod_spec(BAD))))
    post(client, review(workload("Pod", pod_spec(GOOD))))
    client.post("/validate", data=b"nope")
    text = client.get("/metrics").get_data(as_text=True)
    assert 'trustgate_admission_requests_total{decision="denied"} 1.0' in text
    assert 'trustgate_admission_requests_total{decision="allowed"} 1.0' in text
    assert 'trustgate_admission_requests_total{decision="invalid"} 1.0' in text
    assert (
        'trustgate_policy_decisions_total{mode="enforce",outcome="deny",policy="production"} 1.0'
        in text
    )
    assert "trustgate_admission_duration_seconds_count 2.0" in text
    assert "trustgate_policies_loaded 1.0" in text
    assert "trustgate_policy_reload_success 1.0" in text


def test_counts_accumulate_per_label_set_across_reviews(client: FlaskClient) -> None:
    """The counters' children are looked up once and reused: counts still add up per label."""
    for _ in range(3):
        post(client, review(workload("Pod", pod_spec(BAD))))
    for _ in range(2):
        post(client, review(workload("Pod", pod_spec(GOOD))))
    text = client.get("/metrics").get_data(as_text=True)
    assert 'trustgate_admission_requests_total{decision="denied"} 3.0' in text
    assert 'trustgate_admission_requests_total{decision="allowed"} 2.0' in text
    assert (
        'trustgate_policy_decisions_total{mode="enforce",outcome="deny",policy="production"} 3.0'
        in text
    )
    assert (
        'trustgate_policy_decisions_total{mode="enforce",outcome="pass",policy="production"} 2.0'
        in text
    )


def test_an_answer_is_compact_json_and_keeps_any_text(client: FlaskClient) -> None:
    """Answers are encoded by orjson: UTF-8 text where json.dumps wrote escapes, the same JSON."""
    body = review(workload("Pod", pod_spec(BAD)), uid="uid-ü-✓-\u2028")
    result = client.post("/validate", data=json.dumps(body), content_type="application/json")
    answer = json.loads(result.data)
    assert answer["response"]["uid"] == "uid-ü-✓-\u2028"
    assert result.data == json.dumps(answer, separators=(",", ":"), ensure_ascii=False).encode()
    assert result.mimetype == "application/json"


def test_what_orjson_refuses_is_encoded_by_the_standard_library() -> None:
    data = {"n": 2**70, "keys": {1: "one"}}
    assert json.loads(_dumps(data)) == {"n": 2**70, "keys": {"1": "one"}}


def test_broken_reload_keeps_last_good_set(
    app: Flask, client: FlaskClient, policy_dir: Path
) -> None:
    (policy_dir / "prod.yaml").write_text(
        policy_yaml(registries='["docker.io/**"]') + "  bogus: 1\n"
    )
    store = app.extensions["trustgate"].store
    assert store.check() is False
    ready = client.get("/readyz").get_json()
    assert "prod.yaml" in ready["lastError"]
    text = client.get("/metrics").get_data(as_text=True)
    assert "trustgate_policy_reload_success 0.0" in text
    assert "trustgate_policy_reload_failures_total 1.0" in text
    _, answer = post(client, review(workload("Pod", pod_spec(BAD))))
    assert answer["response"]["allowed"] is False  # the old set still rules

    (policy_dir / "prod.yaml").write_text(policy_yaml(registries='["docker.io/**"]'))
    assert store.check() is True
    assert client.get("/readyz").get_json()["lastError"] is None
    _, answer = post(client, review(workload("Pod", pod_spec(BAD))))
    assert answer["response"]["allowed"] is True


def test_two_apps_do_not_share_state(policy_dir: Path) -> None:
    settings = Settings(policies=policy_dir, reload=False)
    first, second = create_app(settings), create_app(settings)
    post(first.test_client(), review(workload("Pod", pod_spec(BAD))))
    text = second.test_client().get("/metrics").get_data(as_text=True)
    assert 'decision="denied"' not in text


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=10), children, max_size=4)
    ),
    max_leaves=30,
)


def _mutations() -> st.SearchStrategy[bytes]:
    valid = json.dumps(review(workload("Deployment", pod_spec(BAD, GOOD)))).encode()
    truncated = st.integers(0, len(valid)).map(lambda n: valid[:n])
    random_json = json_values.map(lambda v: json.dumps(v).encode())
    review_like = st.fixed_dictionaries(
        {"apiVersion": st.just("admission.k8s.io/v1"), "kind": st.just("AdmissionReview")},
        optional={"request": json_values},
    ).map(lambda v: json.dumps(v).encode())
    return truncated | random_json | review_like | st.binary(max_size=200)


@settings(
    max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(data=_mutations())
def test_no_body_produces_a_server_error(client: FlaskClient, data: bytes) -> None:
    result = client.post("/validate", data=data, content_type="application/json")
    assert result.status_code in (200, 400)
    answer = result.get_json()
    if result.status_code == 200:
        assert answer["kind"] == "AdmissionReview"
        assert isinstance(answer["response"]["allowed"], bool)


def test_metrics_count_a_pass_with_a_warning_as_warn(tmp_path: Path) -> None:
    """A grade about to drop (warnBeforeDays) admits with a warning, counted as "warn"."""
    from datetime import UTC, datetime, timedelta

    from webhook.config import parse_config

    released = (datetime.now(UTC) - timedelta(days=3)).date().isoformat()
    grades = tmp_path / "grades.yaml"
    grades.write_text(
        "grades:\n  - image: quay.io/acme/**\n    fixes:\n"
        f'      - {{id: RHSA-1, severity: Critical, released: "{released}"}}\n'
    )
    policies = tmp_path / "policies"
    policies.mkdir()
    freshness = "  freshness: {minimumGrade: B, sources: [static], warnBeforeDays: 30}\n"
    (policies / "prod.yaml").write_text(policy_yaml() + freshness)
    config = parse_config({"freshness": {"static": {"file": str(grades)}}})
    app = create_app(Settings(policies=policies, config=config, reload=False))
    try:
        client = app.test_client()
        image = f"{GOOD.split(':')[0]}@sha256:{'7' * 64}"
        status, answer = post(client, review(workload("Pod", pod_spec(image))))
        assert status == 200
        response = answer["response"]
        assert response["allowed"] is True
        assert "warnBeforeDays" in response["warnings"][0]
        text = client.get("/metrics").get_data(as_text=True)
        labels = 'mode="enforce",outcome="warn",policy="production"'
        assert f"trustgate_policy_decisions_total{{{labels}}} 1.0" in text
    finally:
        app.extensions["trustgate"].store.stop()


@settings(
    max_examples=400, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(body=mutated_reviews())
def test_a_field_of_the_wrong_type_anywhere_is_a_400_or_a_denial(
    client: FlaskClient, body: dict
) -> None:
    """Never a 500, a traceback or an internal-error denial; never an image admitted unchecked."""
    result = client.post("/validate", data=json.dumps(body), content_type="application/json")
    text = result.get_data(as_text=True)
    assert "Traceback" not in text
    answer = result.get_json()
    if result.status_code == 400:
        assert answer["error"].startswith("not an AdmissionReview trustgate can answer: ")
        return
    assert result.status_code == 200, text
    response = answer["response"]
    assert isinstance(response["allowed"], bool)
    assert response.get("status", {}).get("code", 403) == 403, response
    assert not admitted_by_accident(body, answer), (body, answer)


def test_every_base_review_is_denied_unmutated(client: FlaskClient) -> None:
    """The property above means something only if each base review is denied as it is."""
    for body in base_reviews():
        _, answer = post(client, body)
        assert answer["response"]["allowed"] is False
        assert BAD in answer["response"]["status"]["message"]
    text = client.get("/metrics").get_data(as_text=True)
    assert 'trustgate_admission_requests_total{decision="error"}' not in text


def test_readyz_shows_the_shared_cache(policy_dir: Path, tmp_path: Path) -> None:
    from tests.support.registry import free_port

    key = tmp_path / "cache.key"
    key.write_text("k" * 32)
    url = f"redis://user:pa55word@127.0.0.1:{free_port()}/0"  # nothing listens there
    shared = {"url": url, "keyFile": str(key), "retrySeconds": 60}
    config = Config(cache={"shared": shared})
    app = create_app(Settings(policies=policy_dir, config=config, reload=False))
    try:
        client = app.test_client()
        ready = client.get("/readyz").get_json()
        assert ready["sharedCache"] == {"url": url.replace("user:pa55word@", ""), "state": "up"}
        # The allowlist decides these without a digest: Redis is never asked.
        _, answer = post(client, review(workload("Pod", pod_spec(BAD))))
        assert answer["response"]["allowed"] is False
        _, answer = post(client, review(workload("Pod", pod_spec(GOOD))))
        assert answer["response"]["allowed"] is True
        ready = client.get("/readyz").get_json()
        assert ready["sharedCache"]["state"] == "up"
        assert "pa55word" not in json.dumps(ready)
        text = client.get("/metrics").get_data(as_text=True)
        assert "trustgate_shared_cache_up 1.0" in text
        assert "trustgate_shared_cache_lookups_total{" not in text
    finally:
        app.extensions["trustgate"].store.stop()


def test_readyz_without_a_shared_cache(client: FlaskClient) -> None:
    assert client.get("/readyz").get_json()["sharedCache"] is None
