"""One review cannot open a healthy registry's circuit breaker, end to end through
`trustgate serve` and Debian's docker-registry.

A Pod naming 2,000 distinct digests on the registry runs out of its own (short) deadline:
its calls are cut off, never started or queued behind each other. None of that is the
registry failing, so the next tenant's signed image from the same registry is admitted
at once, and the metrics show the breaker closed.
"""

from __future__ import annotations

import hashlib
import json
import time
from pathlib import Path

import pytest

from tests.integration.conftest import serve_config, serving
from tests.integration.test_signatures_e2e import image
from tests.support.cosign import generate_key, public_pem
from tests.support.cosign import push_signature as sign
from tests.support.kube import pod_spec, review, workload
from tests.support.registry import Registry

pytestmark = pytest.mark.e2e

RELEASE = generate_key("ecdsa-p256")
DEADLINE = 1.5
DIGESTS = 2000


def policy(registry_host: str) -> str:
    return (
        "apiVersion: trustgate.dev/v1alpha1\nkind: ImagePolicy\n"
        "metadata: {name: signed}\nspec:\n  mode: enforce\n"
        '  match: {namespaces: ["tenant-*"]}\n'
        f'  registries: ["{registry_host}/**"]\n'
        "  signatures:\n    authorities:\n      - {name: release, key: {file: keys/release.pub}}\n"
    )


#: The flood must reach the registry: admission.maxImages (200 by default) would deny it
#: before any call, which is the first line of defence but not what this test is about.
UNCAPPED = f"admission: {{maxImages: {DIGESTS}}}\n"


def many_digests(registry: Registry) -> list[str]:
    return [
        f"{registry.host}/flood/app@sha256:{hashlib.sha256(str(n).encode()).hexdigest()}"
        for n in range(DIGESTS)
    ]


def test_a_review_of_thousands_of_digests_leaves_the_breaker_closed(
    registry: Registry, tmp_path: Path
) -> None:
    signed, digest = image(registry, "tenant-b/api", b"tenant-b")
    sign(registry, "tenant-b/api", digest, RELEASE)
    files = {"keys/release.pub": public_pem(RELEASE), "signed.yaml": policy(registry.host)}
    with serving(
        tmp_path, files, serve_config(registry.host, deadline=DEADLINE, extra=UNCAPPED)
    ) as server:
        flood = review(workload("Pod", pod_spec(*many_digests(registry)), namespace="tenant-a"))
        started = time.monotonic()
        answer = server.post(json.dumps(flood), timeout=60)
        elapsed = time.monotonic() - started
        assert answer.status_code == 200, answer.text
        response = answer.json()["response"]
        assert response["allowed"] is False
        assert registry.host in response["status"]["message"]
        assert "circuit breaker" not in response["status"]["message"]
        print(f"flood answered in {elapsed:.2f} s")
        assert elapsed < DEADLINE + 10  # generous: a loaded machine, 2,000 images to list

        metrics = server.get("/metrics").text
        host = f'host="{registry.host}"'
        assert f"trustgate_deadline_exceeded_total{{{host}}}" in metrics  # the flood was cut
        assert f"trustgate_breaker_state{{{host}}} 2.0" not in metrics, metrics
        other = server.decide(signed, namespace="tenant-b")
        assert other["allowed"] is True, other
        metrics = server.get("/metrics").text
        assert f"trustgate_breaker_state{{{host}}} 2.0" not in metrics
        assert f"trustgate_breaker_rejections_total{{{host}}}" not in metrics
        assert "Traceback" not in server.log_text()
