"""A slow registry cannot starve reviews of other registries, and a flooding one cannot
blow the worker's memory, end to end through `trustgate serve` (gunicorn, 16 threads).

The isolation test measures the latency of reviews of a signed image in a real registry
(Debian's docker-registry) and of allowlist-only reviews, first alone (the baseline), then
while 32 clients keep reviews hanging on a registry that accepts connections and never
answers. The memory test measures the gunicorn worker's peak RSS (VmHWM) while reviews
read from a registry serving 4 MiB manifests and 16 referrers pages of 4 MiB each.
"""

from __future__ import annotations

import hashlib
import json
import statistics
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
import requests

from tests.integration.conftest import Server, start_server, stop_server
from tests.integration.test_signatures_e2e import image, sign
from tests.support.cosign import generate_key, public_pem
from tests.support.hostile import hang, hostile_server
from tests.support.kube import pod_spec, review, workload
from tests.support.registry import Registry

pytestmark = pytest.mark.e2e

RELEASE = generate_key("ecdsa-p256")
DEADLINE = 5.0
HANGING_CLIENTS = 32
MiB = 1024 * 1024


def write_policies(directory: Path, documents: list[str]) -> None:
    (directory / "keys").mkdir(parents=True)
    (directory / "keys" / "release.pub").write_text(public_pem(RELEASE))
    (directory / "policies.yaml").write_text("---\n".join(documents))


def policy(name: str, namespaces: str, registries: str, signatures: str = "") -> str:
    return (
        "apiVersion: trustgate.dev/v1alpha1\nkind: ImagePolicy\n"
        f"metadata: {{name: {name}}}\nspec:\n  mode: enforce\n"
        f"  match: {{namespaces: {namespaces}}}\n  registries: [{registries}]\n" + signatures
    )


KEY_SIGNATURES = (
    "  signatures:\n    authorities:\n      - {name: release, key: {file: keys/release.pub}}\n"
)
KEYLESS_SIGNATURES = (
    "  signatures:\n    authorities:\n      - name: ci\n        keyless:\n"
    "          issuer: https://token.actions.githubusercontent.com\n"
    "          subjectRegExp: https://github\\.com/acme/.*\n"
    "          trustedRoot: production\n"
)


def post(server: Server, session: requests.Session, image_name: str, namespace: str) -> Any:
    body = review(workload("Deployment", pod_spec(image_name), namespace=namespace))
    answer = session.post(
        f"{server.url}/validate",
        data=json.dumps(body),
        headers={"Content-Type": "application/json"},
        verify=str(server.ca),
        timeout=60,
    )
    assert answer.status_code == 200, answer.text
    return answer.json()["response"]


def timed(server: Server, session: requests.Session, image_name: str, namespace: str) -> float:
    started = time.monotonic()
    response = post(server, session, image_name, namespace)
    elapsed = time.monotonic() - started
    assert response["allowed"] is True, response
    return elapsed


# --- isolation ------------------------------------------------------------------------


def test_reviews_hanging_on_one_registry_leave_other_reviews_their_latency(
    registry: Registry, tmp_path: Path
) -> None:
    with hostile_server(hang) as slow:
        policies = tmp_path / "policies"
        write_policies(
            policies,
            [
                policy("signed", '["prod-*"]', f'"{registry.host}/**"', KEY_SIGNATURES),
                policy("slow", '["hang-*"]', f'"{slow.host}/**"', KEY_SIGNATURES),
                policy("allowlist", '["open-*"]', '"quay.io/acme/**"'),
            ],
        )
        config = (
            f"deadlineSeconds: {DEADLINE}\npolicies: {{reloadIntervalSeconds: 0}}\n"
            f'registries: {{"{registry.host}": {{insecure: true}}, '
            f'"{slow.host}": {{insecure: true}}}}\n'
            # Every signed review asks the real registry again: tag, signature, blob.
            "cache: {digestTTL: 0.001, verifiedTTL: 0.001, failureTTL: 0.001}\n"
            # A first call times out on its own (what the breaker counts), its retry at the
            # deadline (which it does not).
            "network: {callTimeoutSeconds: 3}\n"
        )
        server = start_server(tmp_path, policies, config)
        try:
            _isolation(server, registry, slow.host)
        finally:
            assert stop_server(server) == 0


def _latencies(server: Server, signed: str, seconds: float) -> tuple[list[float], list[float]]:
    """Signed-image and allowlist-only review latencies, alternating, for ``seconds``."""
    session = requests.Session()
    signed_times: list[float] = []
    open_times: list[float] = []
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        signed_times.append(timed(server, session, signed, "prod-web"))
        open_times.append(timed(server, session, "quay.io/acme/api:1", "open-web"))
        time.sleep(0.05)
    return signed_times, open_times


def _isolation(server: Server, registry: Registry, slow_host: str) -> None:
    signed, digest = image(registry, "acme/isolated", b"isolated")
    sign(registry, "acme/isolated", digest, RELEASE)
    _latencies(server, signed, 1.0)  # warm up: connections, caches
    base_signed, base_open = _latencies(server, signed, 3.0)

    stop = threading.Event()
    hanging: list[tuple[float, str]] = []
    lock = threading.Lock()

    def hang_forever(n: int) -> None:
        session = requests.Session()
        while not stop.is_set():
            started = time.monotonic()
            response = post(server, session, f"{slow_host}/acme/app{n}:1", "hang-web")
            with lock:
                hanging.append((time.monotonic() - started, response["status"]["message"]))
            assert response["allowed"] is False
            stop.wait(0.5)  # a steady stream, not a CPU flood on a shared machine

    clients = [
        threading.Thread(target=hang_forever, args=(n,), daemon=True)
        for n in range(HANGING_CLIENTS)
    ]
    for client in clients:
        client.start()
    time.sleep(1.0)  # the first wave takes the host's slots; the excess is refused
    attack_signed, attack_open = _latencies(server, signed, 2 * DEADLINE)
    stop.set()
    for client in clients:
        client.join(DEADLINE + 5)

    def p50(values: list[float]) -> float:
        return statistics.median(values)

    def p90(values: list[float]) -> float:
        return statistics.quantiles(values, n=10)[-1]

    print(
        f"\nbaseline signed p50 {p50(base_signed) * 1000:.0f} ms, "
        f"open p50 {p50(base_open) * 1000:.0f} ms; under {HANGING_CLIENTS} hanging clients: "
        f"signed p50 {p50(attack_signed) * 1000:.0f} ms p90 {p90(attack_signed) * 1000:.0f} ms "
        f"max {max(attack_signed) * 1000:.0f} ms, open p50 {p50(attack_open) * 1000:.0f} ms "
        f"max {max(attack_open) * 1000:.0f} ms; {len(hanging)} hanging reviews answered"
    )
    # Without isolation every review here waits behind the hanging ones: seconds, up to
    # the 5 s deadline and beyond. With it they keep (close to) their baseline.
    for base, attack in ((base_signed, attack_signed), (base_open, attack_open)):
        assert p50(attack) < 3 * p50(base) + 0.1
        assert p90(attack) < 1.0
    # Every hanging review was denied within the deadline, naming the host and why.
    assert len(hanging) > HANGING_CLIENTS
    reasons = {"timed out", "calls in flight", "circuit breaker"}
    for elapsed, message in hanging:
        assert elapsed < DEADLINE + 1.5, message
        assert slow_host in message and any(r in message for r in reasons), message
    # The breaker opened after the first wave of timeouts, and the metrics say so.
    metrics = server.get("/metrics").text
    assert f'trustgate_breaker_state{{host="{slow_host}"}} 2.0' in metrics
    assert f'trustgate_breaker_rejections_total{{host="{slow_host}"}}' in metrics
    assert f'trustgate_host_limit_rejections_total{{host="{slow_host}"}}' in metrics
    assert f'trustgate_deadline_exceeded_total{{host="{slow_host}"}}' in metrics


# --- memory ---------------------------------------------------------------------------

PAGE = 4 * MiB
PAGES = 16
BUNDLE = "application/vnd.dev.sigstore.bundle.v0.3+json"


def _padded(document: dict[str, Any], size: int) -> bytes:
    """``document`` with a ``pad`` annotation that makes it ``size`` bytes of JSON."""
    body = json.dumps({**document, "annotations": {"pad": ""}}).encode()
    return json.dumps({**document, "annotations": {"pad": "x" * (size - len(body))}}).encode()


class Flooding(ThreadingHTTPServer):
    """A registry whose every manifest is 4 MiB and whose referrers run to 16 pages of 4 MiB."""

    daemon_threads = True

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _FloodHandler)
        self.host = f"127.0.0.1:{self.server_address[1]}"
        self.manifest = _padded({"schemaVersion": 2, "layers": []}, PAGE - 1024)
        self.digest = "sha256:" + hashlib.sha256(self.manifest).hexdigest()
        descriptor = {"mediaType": "application/vnd.oci.image.manifest.v1+json",
                      "digest": self.digest, "size": 1, "artifactType": BUNDLE}  # fmt: skip
        self.page = _padded({"schemaVersion": 2, "manifests": [descriptor]}, PAGE - 1024)
        self.sent = 0
        self.lock = threading.Lock()
        threading.Thread(target=self.serve_forever, daemon=True).start()

    def handle_error(self, request: Any, client_address: Any) -> None:
        pass  # a client that hangs up mid-flood is what the test wants


class _FloodHandler(BaseHTTPRequestHandler):
    server: Flooding
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def do_HEAD(self) -> None:
        self.do_GET()

    def do_GET(self) -> None:
        path, _, query = self.path.partition("?")
        headers = {"Docker-Content-Digest": self.server.digest}
        if "/manifests/" in path:
            body = self.server.manifest
            headers["Content-Type"] = "application/vnd.oci.image.manifest.v1+json"
        elif "/referrers/" in path:
            n = int(query.removeprefix("n=") or 0)
            body = self.server.page
            headers["Content-Type"] = "application/vnd.oci.image.index.v1+json"
            if n + 1 < PAGES:
                headers["Link"] = f'<{path}?n={n + 1}>; rel="next"'
        else:
            body = b'{"errors":[{"code":"NOT_FOUND"}]}'
            self.send_response(404)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
            return
        self.send_response(200)
        for name, value in {**headers, "Content-Length": str(len(body))}.items():
            self.send_header(name, value)
        self.end_headers()
        if self.command == "GET":
            try:
                self.wfile.write(body)
            except OSError:
                return  # the client stopped reading, as it should
            with self.server.lock:
                self.server.sent += len(body)


def worker_peak_rss(server: Server) -> int:
    """VmHWM (peak resident set) of the gunicorn worker, in bytes."""
    children = Path(f"/proc/{server.process.pid}/task/{server.process.pid}/children")
    (worker,) = children.read_text().split()
    for line in Path(f"/proc/{worker}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    raise AssertionError("no VmHWM")


@pytest.fixture
def flooding() -> Iterator[Flooding]:
    server = Flooding()
    yield server
    server.shutdown()
    server.server_close()


def test_a_flooding_registry_cannot_blow_the_worker_memory(
    registry: Registry, flooding: Flooding, tmp_path: Path
) -> None:
    policies = tmp_path / "policies"
    write_policies(
        policies,
        [
            policy("signed", '["prod-*"]', f'"{registry.host}/**"', KEY_SIGNATURES),
            policy("flood", '["flood-*"]', f'"{flooding.host}/**"', KEYLESS_SIGNATURES),
        ],
    )
    config = (
        f"deadlineSeconds: {DEADLINE}\npolicies: {{reloadIntervalSeconds: 0}}\n"
        f'registries: {{"{registry.host}": {{insecure: true}}, '
        f'"{flooding.host}": {{insecure: true}}}}\n'
    )
    server = start_server(tmp_path, policies, config)
    try:
        signed, digest = image(registry, "acme/steady", b"steady")
        sign(registry, "acme/steady", digest, RELEASE)
        session = requests.Session()
        for _ in range(5):
            timed(server, session, signed, "prod-web")
        baseline = worker_peak_rss(server)

        messages: list[str] = []

        def flood(n: int) -> None:
            response = post(server, requests.Session(), f"{flooding.host}/acme/f{n}:1", "flood-a")
            assert response["allowed"] is False
            messages.append(response["status"]["message"])

        for _ in range(2):
            threads = [threading.Thread(target=flood, args=(n,)) for n in range(16)]
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join(60)
        peak = worker_peak_rss(server)
        print(
            f"\nworker peak RSS {baseline / MiB:.0f} MiB before, {peak / MiB:.0f} MiB after "
            f"32 flooding reviews (16 at once); {flooding.sent / MiB:.0f} MiB were sent"
        )
        assert len(messages) == 32
        budget = [m for m in messages if "(network.reviewBudgetBytes)" in m]
        for message in budget:
            assert f"the last of them from {flooding.host}" in message, message
        # On a loaded machine reading 8 MiB takes long enough that some of the 16
        # reviews at once find the host's 8 slots taken: they are refused without
        # reading at all. Whatever reached the registry stopped at the budget.
        for message in set(messages) - set(budget):
            assert f"{flooding.host} already has 8 calls in flight" in message, message
        assert len(budget) >= 8
        # One such review alone reached 1.6 GB before the budget; 16 at once now stay
        # within what the chart's 512Mi limit leaves above the baseline.
        assert peak - baseline < 320 * MiB
        assert flooding.sent < 32 * 3 * PAGE  # each review stopped within its budget
        timed(server, session, signed, "prod-web")  # and the worker is still healthy
    finally:
        assert stop_server(server) == 0
