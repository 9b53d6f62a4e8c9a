"""Exceptions and break-glass through a real ``trustgate serve`` (gunicorn over TLS).

Policies here are allowlist-only, so the images are never contacted: what is
under test is the decision, the answer, the metrics and the decision log.
"""

from __future__ import annotations

import json
import re
import shutil
import time
from collections.abc import Iterator
from typing import Any

import pytest

from tests.integration.conftest import Server, start_server, stop_server
from tests.support.kube import as_user, pod_spec, pod_with, policy_yaml, review, workload
from webhook.admission.waivers import BREAK_GLASS

CURRENT = "quay.io/vendor/current/app:1.0"
LAPSED = "quay.io/vendor/lapsed/app:1.0"
LATER = "quay.io/vendor/later/app:1.0"
OTHER = "quay.io/vendor/other/app:1.0"  # no exception covers it
RELOAD_DEADLINE = 15.0

EXCEPTION = """\
apiVersion: trustgate.dev/v1alpha1
kind: ImagePolicyException
metadata: {{name: {name}}}
spec:
  namespaces: ["prod-*"]
  images: ["{images}"]
  policies: [production]
  reason: the vendor signs its images from next quarter on
  owner: team-vendor
  expires: {expires}
"""


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    tmp = tmp_path_factory.mktemp("waivers")
    policies = tmp / "policies"
    policies.mkdir()
    glass = "  breakGlass: {allowed: true, groups: [oncall]}\n"
    (policies / "production.yaml").write_text(policy_yaml(extra=glass))
    (policies / "strict.yaml").write_text(
        policy_yaml(
            "strict", namespaces='["prod-payments"]', registries='["registry.redhat.io/**"]'
        )
    )
    (policies / "exceptions.yaml").write_text(
        EXCEPTION.format(
            name="vendor-current", images="quay.io/vendor/current/**", expires="2999-12-31"
        )
        + "---\n"
        + EXCEPTION.format(
            name="vendor-lapsed", images="quay.io/vendor/lapsed/**", expires="2020-01-31"
        )
    )
    running = start_server(tmp, policies)
    yield running
    stop_server(running)
    shutil.rmtree(tmp / "certs", ignore_errors=True)


def post(server: Server, body: dict[str, Any]) -> dict[str, Any]:
    answer = server.post(json.dumps(body))
    assert answer.status_code == 200, answer.text
    response: dict[str, Any] = answer.json()["response"]
    assert response["uid"] == body["request"]["uid"]
    return response


def metric(server: Server, name: str, labels: str) -> float:
    text = server.get("/metrics").text
    match = re.search(rf"^{name}\{{{re.escape(labels)}\}} (\S+)$", text, re.M)
    return float(match.group(1)) if match else 0.0


def test_an_exception_before_its_expiry_admits_loudly(server: Server) -> None:
    before = metric(server, "trustgate_exception_admissions_total", 'exception="vendor-current"')
    body = review(pod_with(CURRENT))
    response = post(server, body)
    assert response["allowed"] is True
    (warning,) = response["warnings"]
    assert warning.startswith(f'image {CURRENT} admitted by exception "vendor-current"')
    assert "until the end of 2999-12-31 UTC" in warning
    (entry,) = json.loads(response["auditAnnotations"]["exceptions"])
    assert entry["exception"] == "vendor-current" and entry["policy"] == "production"
    after = metric(server, "trustgate_exception_admissions_total", 'exception="vendor-current"')
    assert after == before + 1
    (line,) = [x for x in server.log_lines(body["request"]["uid"]) if "images" in x]
    assert line["exceptions"] == ["vendor-current"]
    assert line["images"][0]["waived"][0]["exception"] == "vendor-current"


def test_an_exception_after_its_expiry_no_longer_applies(server: Server) -> None:
    response = post(server, review(pod_with(LAPSED)))
    assert response["allowed"] is False
    message = response["status"]["message"]
    assert f'image {LAPSED} denied by policy "production"' in message
    assert 'exception "vendor-lapsed" expired at the end of 2020-01-31 UTC' in message
    assert "warnings" not in response
    text = server.get("/metrics").text
    assert 'exception="vendor-lapsed"' not in text


def test_an_exception_added_to_the_directory_applies_after_the_reload(server: Server) -> None:
    assert post(server, review(pod_with(LATER)))["allowed"] is False
    (server.policies / "later.yaml").write_text(
        EXCEPTION.format(
            name="vendor-later", images="quay.io/vendor/later/**", expires="2999-01-01"
        )
    )
    try:
        deadline = time.monotonic() + RELOAD_DEADLINE
        while not post(server, review(pod_with(LATER)))["allowed"]:
            assert time.monotonic() < deadline, "the new exception was not loaded"
            time.sleep(0.1)
    finally:
        (server.policies / "later.yaml").unlink()


def test_break_glass_by_an_allowed_group(server: Server) -> None:
    before = metric(server, "trustgate_break_glass_total", 'outcome="honoured"')
    body = as_user(review(pod_with(OTHER, break_glass="INC-4711 payments down")), "bob", "oncall")
    response = post(server, body)
    assert response["allowed"] is True
    (warning,) = response["warnings"]
    assert warning.startswith(
        f'BREAK-GLASS by user "bob", reason "INC-4711 payments down": image {OTHER} admitted '
        'although policy "production" denies it'
    )
    recorded = json.loads(response["auditAnnotations"]["break-glass"])
    assert recorded["user"] == "bob" and recorded["reason"] == "INC-4711 payments down"
    assert metric(server, "trustgate_break_glass_total", 'outcome="honoured"') == before + 1
    (line,) = [x for x in server.log_lines(body["request"]["uid"]) if "images" in x]
    assert line["breakGlass"]["user"] == "bob"
    assert line["breakGlass"]["reason"] == "INC-4711 payments down"
    assert line["breakGlass"]["honoured"] is True
    assert line["images"][0]["waived"][0]["by"] == "break-glass"


def test_break_glass_by_a_user_outside_the_allowed_groups(server: Server) -> None:
    before = metric(server, "trustgate_break_glass_total", 'outcome="ignored"')
    body = as_user(review(pod_with(OTHER, break_glass="just this once")), "mallory", "developers")
    response = post(server, body)
    assert response["allowed"] is False
    assert f'image {OTHER} denied by policy "production"' in response["status"]["message"]
    (warning,) = response["warnings"]
    assert warning == (
        f'break-glass not honoured for image {OTHER}: user "mallory" is not among the users '
        'or groups policy "production" allows to break glass'
    )
    assert metric(server, "trustgate_break_glass_total", 'outcome="ignored"') == before + 1
    lines = server.log_lines(body["request"]["uid"])
    (ignored,) = [x for x in lines if x["msg"] == "break-glass annotation not honoured"]
    assert ignored["level"] == "warning" and ignored["user"] == "mallory"
    (line,) = [x for x in lines if x["msg"] == "admission review"]
    assert line["breakGlass"]["honoured"] is False
    assert line["breakGlass"]["ignored"] == [warning]


def test_break_glass_is_ignored_where_the_policy_does_not_allow_it(server: Server) -> None:
    body = as_user(
        review(pod_with(OTHER, namespace="prod-payments", break_glass="INC-1")), "bob", "oncall"
    )
    response = post(server, body)
    assert response["allowed"] is False
    assert 'denied by policy "strict"' in response["status"]["message"]
    assert f'break-glass not honoured for image {OTHER}: policy "strict" does not allow' in (
        " ".join(response["warnings"])
    )


def test_an_update_that_removes_the_annotation_is_judged_again(server: Server) -> None:
    glass = workload("Deployment", pod_spec(OTHER))
    glass["metadata"]["annotations"][BREAK_GLASS] = "INC-2"
    assert post(server, as_user(review(glass), "bob", "oncall"))["allowed"] is True
    plain = json.loads(json.dumps(glass))
    del plain["metadata"]["annotations"][BREAK_GLASS]
    response = post(server, as_user(review(plain, operation="UPDATE", old=glass), "bob", "oncall"))
    assert response["allowed"] is False
    assert f'image {OTHER} denied by policy "production"' in response["status"]["message"]
