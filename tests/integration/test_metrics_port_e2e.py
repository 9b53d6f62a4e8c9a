"""``trustgate serve --metrics-port``: /metrics on a port of its own, the webhook port for reviews.

With /metrics on the webhook port, anything that may call the webhook may read
its metrics, and a NetworkPolicy cannot tell a scrape from a review. With a
metrics port, the webhook port answers reviews and health only (404 for
/metrics), and the metrics port answers GET /metrics only (404 for reviews and
health), over the same TLS, with the counts of every worker added up.
"""

from __future__ import annotations

import json
import re
import socket
import ssl
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from tests.integration.conftest import (
    Server,
    e2e_policies,
    free_port,
    start_server,
    stop_server,
    trustgate_command,
    wait_for,
)
from tests.integration.test_workers_metrics_e2e import (
    admitted,
    counted_by_each,
    send_reviews,
    shared_directory,
    worker_pids,
)
from tests.support.kube import pod_spec, review, workload
from tests.support.scrape import samples

REVIEWS = 40
SCRAPES = 6


def scrape(server: Server, port: int, path: str = "/metrics") -> requests.Response:
    """GET ``path`` on ``port`` of the server's address, over its TLS, on a new connection."""
    return requests.get(f"https://localhost:{port}{path}", verify=str(server.ca), timeout=10)


@pytest.fixture
def split_server(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[tuple[Server, int, Path]]:
    """Two workers, a metrics port, and temporary files under ``tmp_path/tmp``."""
    temporary = tmp_path / "tmp"
    temporary.mkdir()
    monkeypatch.setenv("TMPDIR", str(temporary))
    metrics_port = free_port()
    server = start_server(
        tmp_path,
        e2e_policies(tmp_path),
        serve_args=["--workers", "2", "--metrics-port", str(metrics_port)],
    )
    try:
        assert wait_for(
            lambda: len(re.findall(r'"msg":"worker \d+ ready"', server.log_text())) == 2
        )
        yield server, metrics_port, temporary
    finally:
        if server.process.poll() is None:
            stop_server(server)


@pytest.mark.e2e
def test_the_metrics_port_serves_every_workers_metrics(
    split_server: tuple[Server, int, Path],
) -> None:
    server, metrics_port, temporary = split_server
    send_reviews(server, REVIEWS)
    directory = shared_directory(temporary)
    pids = worker_pids(directory)
    assert len(pids) == 2, pids
    per_worker = counted_by_each(directory, pids, REVIEWS)
    # Both workers answered reviews: one worker's own registry would be short.
    assert all(count > 0 for count in per_worker.values()), per_worker
    for _ in range(SCRAPES):
        answer = scrape(server, metrics_port)
        assert answer.status_code == 200
        assert answer.headers["Content-Type"].startswith("text/plain")
        assert admitted(answer.text) == REVIEWS
        found = samples(answer.text)
        assert [v for _, v in found["trustgate_admission_duration_seconds_count"]] == [REVIEWS]
        # Served over the webhook's certificate: the expiry the alert reads is there.
        assert len(found["trustgate_certificate_expiry_timestamp_seconds"]) == 1


def raw_get(server: Server, head: bytes) -> bytes:
    """What the webhook port answers to a request head sent as it is, over TLS."""
    port = int(server.url.rsplit(":", 1)[1])
    context = ssl.create_default_context(cafile=str(server.ca))
    with (
        socket.create_connection(("127.0.0.1", port), timeout=10) as sock,
        context.wrap_socket(sock, server_hostname="localhost") as tls,
    ):
        tls.sendall(head)
        answer = b""
        while chunk := tls.recv(65536):
            answer += chunk
    return answer


@pytest.mark.e2e
def test_the_webhook_port_no_longer_serves_metrics(split_server: tuple[Server, int, Path]) -> None:
    server, metrics_port, _ = split_server
    send_reviews(server, 4)
    for path in ("/metrics", "//metrics", "///metrics//", "/%6Detrics", "/metrics?x=1"):
        answer = server.get(path)
        assert "trustgate_admission_requests" not in answer.text, path
        assert answer.status_code == 404, (path, answer.status_code)
    # The port is the listener's, not what the client names.
    for head in (
        f"GET /metrics HTTP/1.1\r\nHost: localhost:{metrics_port}\r\nConnection: close\r\n\r\n",
        f"GET https://localhost:{metrics_port}/metrics HTTP/1.1\r\nHost: localhost:"
        f"{metrics_port}\r\nConnection: close\r\n\r\n",
    ):
        answer = raw_get(server, head.encode())
        assert answer.startswith(b"HTTP/1.1 404"), answer[:200]
        assert b"trustgate_admission_requests" not in answer
    # Reviews and health stay where they were.
    assert server.get("/healthz").status_code == 200
    assert server.get("/readyz").json()["ready"] is True
    assert server.decide("quay.io/acme/api:1.0")["allowed"] is True


@pytest.mark.e2e
def test_the_metrics_port_serves_nothing_else(split_server: tuple[Server, int, Path]) -> None:
    server, metrics_port, _ = split_server
    body = json.dumps(review(workload("Deployment", pod_spec("quay.io/acme/api:1.0"))))
    for path in ("/validate", "/mutate"):
        answer = requests.post(
            f"https://localhost:{metrics_port}{path}",
            data=body,
            headers={"Content-Type": "application/json"},
            verify=str(server.ca),
            timeout=10,
        )
        assert answer.status_code == 404, (path, answer.text)
        assert "response" not in answer.json()
    for path in ("/healthz", "/readyz", "/", "/metricsx"):
        assert scrape(server, metrics_port, path).status_code == 404, path
    # Only reads: a POST to /metrics is refused as a method, not served.
    refused = requests.post(
        f"https://localhost:{metrics_port}/metrics", verify=str(server.ca), timeout=10
    )
    assert refused.status_code == 405
    # Nothing the metrics port was sent counted as a review.
    assert admitted(scrape(server, metrics_port).text) == 0


@pytest.mark.e2e
def test_without_a_metrics_port_metrics_stay_on_the_webhook_port(tmp_path: Path) -> None:
    server = start_server(tmp_path, e2e_policies(tmp_path))
    try:
        send_reviews(server, 3)
        assert wait_for(lambda: admitted(server.get("/metrics").text) == 3)
    finally:
        assert stop_server(server) == 0


@pytest.mark.e2e
def test_a_metrics_port_equal_to_the_webhook_port_is_refused(tmp_path: Path) -> None:
    port = str(free_port())
    result = subprocess.run(
        [
            *trustgate_command(),
            "serve",
            "--policies",
            str(e2e_policies(tmp_path)),
            "--insecure-http",
            "--port",
            port,
            "--metrics-port",
            port,
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2, result.stderr
    assert "the metrics port must differ from the webhook port" in result.stderr
