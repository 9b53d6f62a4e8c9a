"""A real ``trustgate serve`` (gunicorn over TLS) on an ephemeral port, once per session."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import requests
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from tests.support.hostile import Hanging
from tests.support.kube import pod_spec, policy_yaml, review, workload
from tests.support.referrers import ReferrersFront
from tests.support.registry import Registry, default_layer, push_image
from webhook.core import certs

READY_DEADLINE = 30.0


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def trustgate_command() -> list[str]:
    """The installed console script, or the module when running from a source tree."""
    script = Path(sys.executable).with_name("trustgate")
    return [str(script)] if script.exists() else [sys.executable, "-m", "webhook.cli.main"]


@dataclass
class Server:
    """A running server and the files it was started with."""

    url: str
    ca: Path
    policies: Path
    log: Path
    process: subprocess.Popen[bytes]

    def post(self, body: bytes | str, timeout: float = 10.0) -> requests.Response:
        return requests.post(
            f"{self.url}/validate",
            data=body,
            headers={"Content-Type": "application/json"},
            verify=str(self.ca),
            timeout=timeout,
        )

    def decide(self, ref: str, namespace: str = "prod-web") -> dict[str, Any]:
        """The AdmissionResponse to a Deployment of ``ref`` created in ``namespace``."""
        result = self.post(
            json.dumps(review(workload("Deployment", pod_spec(ref), namespace=namespace))),
            timeout=30,
        )
        assert result.status_code == 200, result.text
        response: dict[str, Any] = result.json()["response"]
        return response

    def denial(self, ref: str, namespace: str = "prod-web") -> str:
        """The message of the denial ``decide`` must answer."""
        response = self.decide(ref, namespace)
        assert response["allowed"] is False, response
        message: str = response["status"]["message"]
        return message

    def get(self, path: str) -> requests.Response:
        return requests.get(f"{self.url}{path}", verify=str(self.ca), timeout=10)

    def log_text(self) -> str:
        return self.log.read_text(errors="replace")

    def logged(self, text: str, timeout: float = 5.0) -> bool:
        """Whether ``text`` appears in the log within ``timeout`` seconds.

        The server writes its log from a background thread, after the answer.
        """
        deadline = time.monotonic() + timeout
        while text not in self.log_text():
            if time.monotonic() > deadline:
                return False
            time.sleep(0.05)
        return True

    def log_lines(
        self, uid: str, msg: str = "admission review", timeout: float = 5.0
    ) -> list[dict[str, Any]]:
        """The JSON log lines that mention request ``uid``, once one of them is ``msg``.

        The decision log is written from a background thread after the answer, so this
        waits up to ``timeout`` seconds, then fails the test with the log's tail.
        """
        deadline = time.monotonic() + timeout
        while True:
            lines = [
                json.loads(line)
                for line in self.log_text().splitlines()
                if line.startswith("{") and uid in line
            ]
            if any(line.get("msg") == msg for line in lines):
                return lines
            if time.monotonic() > deadline:
                pytest.fail(f"no {msg!r} log line for {uid}:\n{self.log_text()[-3000:]}")
            time.sleep(0.05)


def start_server(
    tmp: Path,
    policies: Path,
    config: str = "",
    *,
    tls: certs.CertPaths | None = None,
    serve_args: Sequence[str] = (),
) -> Server:
    """Start ``trustgate serve`` and wait until it answers /healthz, or fail with its log.

    ``tls`` names the certificate files to serve (default: new ones under ``tmp``);
    ``serve_args`` are more options for ``trustgate serve`` (``--workers`` overrides 1).
    """
    paths = tls or certs.generate(
        tmp / "certs",
        service="trustgate",
        namespace="trustgate",
        extra_sans=["localhost", "127.0.0.1"],
    )
    config_file = tmp / "trustgate.yaml"
    config_file.write_text(config or "policies: {reloadIntervalSeconds: 0.2}\n")
    port = free_port()
    log = tmp / "server.log"
    process = subprocess.Popen(
        [
            *trustgate_command(),
            "serve",
            "--policies",
            str(policies),
            "--config",
            str(config_file),
            "--cert",
            str(paths.cert),
            "--key",
            str(paths.key),
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            # One worker unless a test asks for more: tests read per-process state
            # (/readyz, tokens, log lines), which --workers auto would spread over the CPUs.
            "--workers",
            "1",
            *serve_args,
        ],
        stdout=log.open("wb"),
        stderr=subprocess.STDOUT,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    server = Server(f"https://localhost:{port}", paths.ca, policies, log, process)
    deadline = time.monotonic() + READY_DEADLINE
    while time.monotonic() < deadline:
        if process.poll() is not None:
            pytest.fail(f"trustgate serve exited with {process.returncode}:\n{server.log_text()}")
        try:
            if server.get("/healthz").status_code == 200:
                return server
        except requests.RequestException:
            time.sleep(0.1)
    stop_server(server)
    pytest.fail(f"trustgate serve was not ready within {READY_DEADLINE}s:\n{server.log_text()}")


def served_certificate(port: int) -> bytes:
    """The DER certificate a new TLS connection to ``port`` is offered, unverified."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    with (
        socket.create_connection(("127.0.0.1", port), timeout=5) as sock,
        context.wrap_socket(sock, server_hostname="localhost") as tls,
    ):
        der = tls.getpeercert(binary_form=True)
    assert der is not None
    return der


def der(path: Path) -> bytes:
    """The DER form of the PEM certificate at ``path``."""
    certificate = x509.load_pem_x509_certificate(path.read_bytes())
    return certificate.public_bytes(serialization.Encoding.DER)


def stop_server(server: Server) -> int:
    server.process.send_signal(signal.SIGTERM)
    try:
        return server.process.wait(timeout=20)
    except subprocess.TimeoutExpired:
        server.process.kill()
        return server.process.wait()


def wait_for(predicate: Callable[[], bool], timeout: float = 10.0) -> bool:
    """Whether ``predicate`` holds within ``timeout`` seconds (asked every 0.1 s)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.1)
    return False


def serve_config(*hosts: str, deadline: float = 5, extra: str = "") -> str:
    """A server configuration: ``deadline``, no policy reloads, ``hosts`` over plain HTTP.

    ``extra`` is more YAML, appended as it is.
    """
    registries = ", ".join(f'"{host}": {{insecure: true}}' for host in hosts)
    return (
        f"deadlineSeconds: {deadline}\npolicies: {{reloadIntervalSeconds: 0}}\n"
        f"registries: {{{registries}}}\n{extra}"
    )


@contextlib.contextmanager
def serving(tmp: Path, files: Mapping[str, str], config: str) -> Iterator[Server]:
    """``trustgate serve`` of a policy directory holding ``files`` (relative path: text).

    On leaving, the server is stopped and must exit cleanly.
    """
    policies = tmp / "policies"
    for name, text in files.items():
        (policies / name).parent.mkdir(parents=True, exist_ok=True)
        (policies / name).write_text(text)
    running = start_server(tmp, policies, config)
    try:
        yield running
    finally:
        assert stop_server(running) == 0


def small_image(
    registry: Registry, repository: str, content: bytes | None = None
) -> tuple[str, str]:
    """Push a one-layer image tagged v1 holding ``content`` (default: the repository's name).

    Returns its tag reference on the registry and its digest.
    """
    layer = default_layer(content=repository.encode() if content is None else content)
    digest = push_image(registry, repository, tag="v1", layers=[layer])
    return f"{registry.host}/{repository}:v1", digest


@pytest.fixture(scope="module")
def hanging() -> Iterator[Hanging]:
    """A registry that accepts connections and never answers."""
    server = Hanging()
    yield server
    server.close()


@pytest.fixture(scope="module")
def front(registry: Registry) -> Iterator[ReferrersFront]:
    """The referrers API (tests/support/referrers.py) in front of the session's registry."""
    running = ReferrersFront(registry).start()
    yield running
    running.stop()


E2E_POLICIES = {
    "production.yaml": policy_yaml(),
    "staging.yaml": policy_yaml("staging", mode="audit", namespaces='["staging"]'),
}


def e2e_policies(tmp: Path) -> Path:
    """``tmp/policies`` holding :data:`E2E_POLICIES`."""
    policies = tmp / "policies"
    policies.mkdir()
    for name, text in E2E_POLICIES.items():
        (policies / name).write_text(text)
    return policies


@pytest.fixture(scope="session")
def webhook_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    tmp = tmp_path_factory.mktemp("trustgate")
    policies = tmp / "policies"
    policies.mkdir()
    for name, text in E2E_POLICIES.items():
        (policies / name).write_text(text)
    server = start_server(tmp, policies)
    yield server
    stop_server(server)
    shutil.rmtree(tmp / "certs", ignore_errors=True)
