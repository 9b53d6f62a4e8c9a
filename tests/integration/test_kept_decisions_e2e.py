"""Kept decisions through `trustgate serve`: a decision is reused only for the same inputs.

The policies here check nothing but the allowlist, so every allowed decision is
kept. An attacker who gets one object admitted then tries to have that answer
reused for what differs from it in one input: another namespace, another user
behind a break-glass annotation, a mix of both under concurrent load.
"""

from __future__ import annotations

import copy
import json
import uuid
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest

from tests.integration.conftest import Server
from tests.support.kube import as_user, pod_spec, review, workload
from webhook.admission.waivers import BREAK_GLASS

GOOD = "registry.redhat.io/ubi9/ubi:9.4"


def deployment(namespace: str = "prod-web") -> dict[str, Any]:
    return workload("Deployment", pod_spec(GOOD), namespace=namespace)


def ask(server: Server, obj: dict[str, Any], user: str = "ci") -> tuple[str, dict[str, Any]]:
    uid = str(uuid.uuid4())
    body = as_user(review(copy.deepcopy(obj), uid=uid), user, "deployers")
    response = server.post(json.dumps(body))
    assert response.status_code == 200, response.text
    answer: dict[str, Any] = response.json()["response"]
    assert answer["uid"] == uid
    return uid, answer


@pytest.mark.e2e
def test_a_kept_admission_is_not_reused_in_another_namespace(webhook_server: Server) -> None:
    for _ in range(3):  # the second and third are answered from the kept decision
        assert ask(webhook_server, deployment())[1]["allowed"] is True
    # No policy governs "elsewhere": the default denies, whatever was admitted in prod.
    _, answer = ask(webhook_server, deployment("elsewhere"))
    assert answer["allowed"] is False
    assert "elsewhere" in answer["status"]["message"] or "no policy" in answer["status"]["message"]


@pytest.mark.e2e
def test_the_decision_log_names_each_user_of_a_kept_decision(webhook_server: Server) -> None:
    obj = deployment()
    obj["metadata"]["annotations"][BREAK_GLASS] = "INC-7 rollback"
    for user in ("alice", "bob", "alice", "mallory"):
        uid, answer = ask(webhook_server, obj, user)
        assert answer["allowed"] is True
        (line,) = webhook_server.log_lines(uid)
        assert line["user"] == user
        assert line["breakGlass"]["user"] == user
        assert line["breakGlass"]["reason"] == "INC-7 rollback"


@pytest.mark.e2e
def test_concurrent_reviews_never_get_each_others_answer(webhook_server: Server) -> None:
    namespaces = ["prod-web", "elsewhere"] * 60

    def one(namespace: str) -> tuple[str, bool]:
        return namespace, ask(webhook_server, deployment(namespace))[1]["allowed"]

    with ThreadPoolExecutor(max_workers=8) as pool:
        results = list(pool.map(one, namespaces))
    assert all(allowed == (namespace == "prod-web") for namespace, allowed in results), results
