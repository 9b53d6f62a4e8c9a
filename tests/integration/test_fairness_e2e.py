"""Through `trustgate serve`: one review cannot take another's threads, nor cost without bound.

- Fair share: a review of 2,000 images on a slow registry (each call answered after
  0.3 s, so every check holds a thread) runs while an unrelated signed review of an
  image on another registry is timed. Served first in, first out, the signed review
  queues behind the 2,000 checks until the big review's deadline; with a lane per
  review it gets a thread at once.
- admission.maxImages: a 12,000-image review (3.2 MB) is denied before any image is checked,
  naming the limit and the setting, and its decision-log line stays small.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from tests.integration.conftest import Server, start_server, stop_server
from tests.integration.test_signatures_e2e import image
from tests.support.cosign import generate_key, public_pem
from tests.support.cosign import push_signature as sign
from tests.support.kube import pod_spec, review, workload
from tests.support.registry import Registry

pytestmark = pytest.mark.e2e

RELEASE = generate_key("ecdsa-p256")
DEADLINE = 6.0
BIG = 2000


class _SlowHandler(BaseHTTPRequestHandler):
    def _slow_404(self) -> None:
        time.sleep(0.3)
        self.send_response(404)
        self.send_header("Content-Length", "0")
        self.end_headers()

    do_GET = do_HEAD = _slow_404

    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture
def slow_registry() -> Iterator[str]:
    """A registry that answers every request, 404, after 0.3 s: slow, not stuck."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), _SlowHandler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def _policy(name: str, namespaces: str, registry: str) -> str:
    return (
        "apiVersion: trustgate.dev/v1alpha1\nkind: ImagePolicy\n"
        f"metadata: {{name: {name}}}\nspec:\n  mode: enforce\n"
        f"  match: {{namespaces: {namespaces}}}\n  registries: ['{registry}/**']\n"
        "  signatures:\n    authorities:\n      - {name: release, key: {file: keys/release.pub}}\n"
    )


def _server(tmp: Path, hosts: list[str], admission: str) -> Server:
    policies = tmp / "policies"
    (policies / "keys").mkdir(parents=True)
    (policies / "keys" / "release.pub").write_text(public_pem(RELEASE))
    (policies / "policies.yaml").write_text(
        _policy("signed", '["prod-*"]', hosts[0]) + "---\n" + _policy("slow", '["big-*"]', hosts[1])
    )
    registries = ", ".join(f'"{host}": {{insecure: true}}' for host in hosts)
    config = (
        f"deadlineSeconds: {DEADLINE}\npolicies: {{reloadIntervalSeconds: 0}}\n"
        f"registries: {{{registries}}}\nadmission: {admission}\n"
        # Every signed review asks the registry again (tag, signature, blob), so it needs
        # the check threads: answered from the caches, it would need none.
        "cache: {digestTTL: 0.001, verifiedTTL: 0.001, failureTTL: 0.001}\n"
    )
    return start_server(tmp, policies, config)


def _post(server: Server, images: list[str], namespace: str) -> dict[str, Any]:
    body = review(workload("Pod", pod_spec(*images), namespace=namespace))
    answer = server.post(json.dumps(body), timeout=60)
    assert answer.status_code == 200, answer.text
    return dict(answer.json()["response"])


def test_a_review_of_thousands_of_images_leaves_other_reviews_their_threads(
    registry: Registry, slow_registry: str, tmp_path: Path
) -> None:
    signed, digest = image(registry, "acme/fair", b"fair")
    sign(registry, "acme/fair", digest, RELEASE)
    server = _server(tmp_path, [registry.host, slow_registry], "{maxImages: 5000}")
    try:
        assert _post(server, [signed], "prod-web")["allowed"] is True  # warm: connections
        big_images = [f"{slow_registry}/acme/app{i}:1" for i in range(BIG)]
        answers: list[dict[str, Any]] = []
        big = threading.Thread(
            target=lambda: answers.append(_post(server, big_images, "big-web")), daemon=True
        )
        started = time.monotonic()
        big.start()
        time.sleep(1.0)  # the big review's checks now hold its threads and queue the rest
        times = []
        for _ in range(5):
            begun = time.monotonic()
            assert _post(server, [signed], "prod-web")["allowed"] is True
            times.append(time.monotonic() - begun)
        measured_by = time.monotonic() - started
        big.join(DEADLINE + 10)
        print(f"\nsigned reviews under a {BIG}-image review: {[round(t, 3) for t in times]} s")
        # Measured while the big review was still running (it runs to its deadline).
        assert measured_by < DEADLINE
        (answer,) = answers
        assert answer["allowed"] is False
        # First in, first out, each signed review would wait behind 2,000 checks of
        # 0.3 s on 8 slots: until the big review's deadline. Its own lane: at once.
        assert max(times) < 1.0, times
    finally:
        assert stop_server(server) == 0


def test_a_review_past_max_images_is_denied_unchecked_with_a_small_log_line(
    registry: Registry, slow_registry: str, tmp_path: Path
) -> None:
    server = _server(tmp_path, [registry.host, slow_registry], "{}")
    try:
        images = [f"{slow_registry}/acme/app{i}:1" for i in range(12_000)]
        body = review(workload("Pod", pod_spec(*images), namespace="big-web"))
        started = time.monotonic()
        answer = server.post(json.dumps(body), timeout=60)
        elapsed = time.monotonic() - started
        assert answer.status_code == 200, answer.text
        response = answer.json()["response"]
        assert response["allowed"] is False
        assert response["status"]["message"] == (
            "the Pod names 12000 distinct images, more than the 200 one review may judge "
            "(admission.maxImages); split the workload or raise the limit"
        )
        # No image was asked about: the slow registry would take 0.3 s per call.
        assert elapsed < DEADLINE
        uid = body["request"]["uid"]
        (logged,) = [entry for entry in server.log_lines(uid) if entry["msg"] == "admission review"]
        (line,) = [
            t for t in server.log_text().splitlines() if uid in t and "admission review" in t
        ]
        assert len(line) < 10_000
        assert logged["images"] == []
        assert "admission.maxImages" in logged["note"]
    finally:
        assert stop_server(server) == 0
