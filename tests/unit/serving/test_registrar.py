"""webhook.serving.registrar: registration waits for /readyz, and retries within bounds.

A real HTTPS server stands for this server's /readyz (its status set by each test), and
the stand-in API server of tests/support/apistore.py stores the webhook configurations
and authorizes the service account by the chart's ClusterRole. The whole of
``trustgate serve --register`` under gunicorn: tests/integration/test_register_e2e.py.
"""

from __future__ import annotations

import json
import logging
import socket
import ssl
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from tests.support.apistore import Store, start_store
from tests.support.registration import GROUP, SA_TOKEN, VALIDATING, document, prepare, write
from webhook.core import certs
from webhook.kube.credentials import from_kubeconfig
from webhook.kube.registration import Endpoint
from webhook.serving.registrar import NotReady, Registrar, Schedule, Target, probe_readyz

FAST = Schedule(
    poll=0.05, first_retry=0.2, max_retry=0.8, resync=0.2, call_timeout=1.0, probe_timeout=1.0
)


class Ready:
    """An HTTPS server answering GET /readyz with ``status``, as trustgate serve would."""

    def __init__(self, tls: certs.CertPaths) -> None:
        self.status = 503
        owner = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: Any) -> None:
                pass

            def do_GET(self) -> None:
                body = json.dumps({"ready": owner.status == 200}).encode()
                self.send_response(owner.status if self.path == "/readyz" else 404)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(tls.cert, tls.key)
        self.server.socket = context.wrap_socket(self.server.socket, server_side=True)
        self.port = self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Store]:
    server = start_store(tmp_path_factory.mktemp("apistore"))
    yield server
    server.stop()


@pytest.fixture
def cluster(store: Store) -> Store:
    return prepare(store)


@pytest.fixture
def tls(tmp_path: Path) -> certs.CertPaths:
    return certs.generate(tmp_path / "tls", service="trustgate", namespace="trustgate-system")


@pytest.fixture
def ready(tls: certs.CertPaths) -> Iterator[Ready]:
    server = Ready(tls)
    yield server
    server.stop()


def registrar(store: Store, tmp_path: Path, tls: certs.CertPaths, port: int) -> Registrar:
    target = Target(write(tmp_path, document()), tls.ca, "127.0.0.1", port)
    config = store.kubeconfig(tmp_path / "kubeconfig", SA_TOKEN)
    return Registrar(target, FAST, credentials=lambda: from_kubeconfig(config))


# --- the readiness check ---------------------------------------------------------------


def test_probe_checks_readyz_as_the_api_server_would_call_it(
    ready: Ready, tls: certs.CertPaths, tmp_path: Path
) -> None:
    endpoint = Endpoint("trustgate.trustgate-system.svc", tls.ca.read_bytes())
    where = f"https://127.0.0.1:{ready.port}/readyz as trustgate.trustgate-system.svc"
    assert probe_readyz("127.0.0.1", ready.port, endpoint, 2.0) == NotReady(
        f"{where}: answered 503"
    )
    ready.status = 200
    assert probe_readyz("127.0.0.1", ready.port, endpoint, 2.0) is None

    # A name the certificate does not carry, or a CA that did not sign it: the API
    # server would refuse the TLS connection, so every review would fail.
    other_name = Endpoint("trustgate.elsewhere.svc", tls.ca.read_bytes())
    other_ca = certs.generate(tmp_path / "other", service="trustgate", namespace="x").ca
    for wrong in (other_name, Endpoint(endpoint.host, other_ca.read_bytes())):
        problem = probe_readyz("127.0.0.1", ready.port, wrong, 2.0)
        assert problem is not None and problem.misconfigured
        assert "the API server would refuse this certificate too" in problem.message
        assert f"must name {wrong.host}" in problem.message

    problem = probe_readyz("127.0.0.1", 1, endpoint, 2.0)
    assert problem is not None and not problem.misconfigured
    assert "Connection refused" in problem.message


def test_a_status_line_that_drips_is_not_ready_within_the_probe_timeout(
    tls: certs.CertPaths,
) -> None:
    # Each byte comes before the per-read timeout; the whole line never comes in time.
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(tls.cert, tls.key)
    listener = socket.create_server(("127.0.0.1", 0))
    stop = threading.Event()

    def drip() -> None:
        conn, _ = listener.accept()
        with context.wrap_socket(conn, server_side=True) as client:
            client.recv(4096)
            for byte in b"HTTP/1.1 200 OK" * 10:
                if stop.wait(0.2):
                    return
                client.sendall(bytes([byte]))

    threading.Thread(target=drip, daemon=True).start()
    endpoint = Endpoint("trustgate.trustgate-system.svc", tls.ca.read_bytes())
    started = time.monotonic()
    try:
        problem = probe_readyz("127.0.0.1", listener.getsockname()[1], endpoint, 1.0)
    finally:
        stop.set()
        listener.close()
    assert time.monotonic() - started < 2.0
    assert problem is not None and not problem.misconfigured
    assert "timed out" in problem.message or "within the probe's timeout" in problem.message


# --- the registrar ---------------------------------------------------------------------


def test_nothing_is_registered_before_readyz_answers_200(
    cluster: Store,
    ready: Ready,
    tmp_path: Path,
    tls: certs.CertPaths,
    caplog: pytest.LogCaptureFixture,
) -> None:
    seen: list[tuple[float, int]] = []
    cluster.on_write = lambda call: seen.append((time.monotonic(), ready.status))
    stop = threading.Event()
    worker = threading.Thread(
        target=registrar(cluster, tmp_path, tls, ready.port).run,
        args=(lambda: not stop.is_set(),),
    )
    with caplog.at_level(logging.INFO, logger="trustgate"):
        worker.start()
        try:
            time.sleep(1.0)  # twenty readiness checks, all 503
            assert cluster.calls == [] and seen == []
            ready.status = 200
            turned_ready = time.monotonic()
            deadline = time.monotonic() + 5
            while not cluster.get(GROUP, VALIDATING, "trustgate").get("webhooks"):
                assert time.monotonic() < deadline, caplog.text
                time.sleep(0.05)
        finally:
            stop.set()
            worker.join(5)
    assert not worker.is_alive()
    assert seen and all(at >= turned_ready and status == 200 for at, status in seen)
    assert "not registering yet: https://127.0.0.1" in caplog.text
    assert "answered 503" in caplog.text
    assert "registered the webhooks in ValidatingWebhookConfiguration trustgate" in caplog.text


def test_a_refusal_is_retried_with_a_bounded_backoff_and_said_clearly(
    cluster: Store,
    ready: Ready,
    tmp_path: Path,
    tls: certs.CertPaths,
    caplog: pytest.LogCaptureFixture,
) -> None:
    ready.status = 200
    binding = cluster.objects.pop(("rbac.authorization.k8s.io", "clusterrolebindings", "",
                                   "trustgate-register"))  # fmt: skip
    it = registrar(cluster, tmp_path, tls, ready.port)
    with caplog.at_level(logging.INFO, logger="trustgate"):
        delays = [it.step() for _ in range(6)]
    # Doubling from first_retry, never past max_retry, less up to a quarter (jitter).
    for failures, delay in enumerate(delays, start=1):
        ceiling = min(FAST.max_retry, FAST.first_retry * 2 ** (failures - 1))
        assert 0.75 * ceiling <= delay <= ceiling
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 6
    assert warnings[0].startswith(
        "cannot register the webhooks: ValidatingWebhookConfiguration trustgate: reading "
        "validatingwebhookconfigurations: forbidden"
    )
    assert "needs get and patch on this object by name" in warnings[0]
    assert "(attempt 6; next in" in warnings[-1]
    assert {c.method for c in cluster.calls} == {"GET"}

    cluster.put(binding)  # the ClusterRoleBinding arrives
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="trustgate"):
        assert it.step() == FAST.resync
    assert "registration works again after 6 failed attempts" in caplog.text
    assert cluster.get(GROUP, VALIDATING, "trustgate")["webhooks"]


def test_a_hanging_api_server_costs_one_call_timeout_per_pass(
    cluster: Store,
    ready: Ready,
    tmp_path: Path,
    tls: certs.CertPaths,
    caplog: pytest.LogCaptureFixture,
) -> None:
    ready.status = 200
    it = registrar(cluster, tmp_path, tls, ready.port)
    cluster.hanging.set()
    try:
        started = time.monotonic()
        with caplog.at_level(logging.WARNING, logger="trustgate"):
            delay = it.step()
        took = time.monotonic() - started
    finally:
        cluster.hanging.clear()
    # One call's timeout, not one per configuration: an API that hangs ends the pass.
    assert FAST.call_timeout <= took < 2 * FAST.call_timeout
    assert 0 < delay <= FAST.first_retry
    assert "did not answer in time" in caplog.text and "(attempt 1;" in caplog.text
    assert it.step() == FAST.resync


def test_an_unreadable_registration_is_retried_not_fatal(
    cluster: Store,
    ready: Ready,
    tmp_path: Path,
    tls: certs.CertPaths,
    caplog: pytest.LogCaptureFixture,
) -> None:
    ready.status = 200
    it = registrar(cluster, tmp_path, tls, ready.port)
    it.target.registration.write_text("{")  # kubelet swapping the ConfigMap's files
    with caplog.at_level(logging.WARNING, logger="trustgate"):
        assert 0 < it.step() <= FAST.first_retry
    assert "cannot read what to register" in caplog.text
    assert cluster.calls == []
    write(tmp_path, document())
    assert it.step() == FAST.resync


def test_removed_webhooks_are_put_back_at_the_next_pass(
    cluster: Store,
    ready: Ready,
    tmp_path: Path,
    tls: certs.CertPaths,
) -> None:
    ready.status = 200
    it = registrar(cluster, tmp_path, tls, ready.port)
    assert it.step() == FAST.resync
    writes = len([c for c in cluster.calls if c.method == "PATCH"])
    assert it.step() == FAST.resync  # unchanged: nothing written
    assert len([c for c in cluster.calls if c.method == "PATCH"]) == writes
    del cluster.get(GROUP, VALIDATING, "trustgate")["webhooks"]  # helm upgrade --force-replace
    assert it.step() == FAST.resync
    assert cluster.get(GROUP, VALIDATING, "trustgate")["webhooks"]
