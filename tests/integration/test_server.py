"""webhook.serving.server: real gunicorn processes serving a tiny app over TLS."""

from __future__ import annotations

import contextlib
import os
import re
import signal
import socket
import ssl
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import pytest
import requests

from tests.integration.conftest import der, free_port, served_certificate
from webhook.core import certs

ROOT = Path(__file__).resolve().parents[2]
READY_DEADLINE = 15.0
STOP_DEADLINE = 10.0


@dataclass
class Server:
    """A ``tinyapp`` process, its certificates and its combined output."""

    port: int
    paths: certs.CertPaths
    home: Path
    output: Path
    process: subprocess.Popen[bytes]

    @property
    def url(self) -> str:
        return f"https://localhost:{self.port}"

    def get(self, path: str, **kwargs: float | str) -> requests.Response:
        # A new session per call: each request is a new connection and handshake.
        with requests.Session() as session:
            return session.get(
                f"{self.url}{path}", params=kwargs, verify=str(self.paths.ca), timeout=10
            )

    def log(self) -> str:
        return self.output.read_text(errors="replace")


def run_tinyapp(
    tmp: Path, args: Sequence[str], home: Path | None = None
) -> tuple[subprocess.Popen[bytes], Path, Path]:
    """Start ``tinyapp`` with HOME in ``home`` (default ``tmp/home``) and no XDG_RUNTIME_DIR."""
    home = home or tmp / "home"
    home.mkdir(exist_ok=True)
    output = tmp / "server.log"
    env = {**os.environ, "HOME": str(home), "PYTHONUNBUFFERED": "1"}
    env.pop("XDG_RUNTIME_DIR", None)
    with output.open("wb") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", "tests.integration.tinyapp", *args],
            cwd=ROOT,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    return process, home, output


def start(tmp: Path, *, workers: int = 1, home: Path | None = None) -> Server:
    """Generate certificates, start a server and wait until it answers, or fail with its log."""
    tmp.mkdir(parents=True, exist_ok=True)
    paths = certs.generate(
        tmp / "certs", service="tiny", namespace="test", extra_sans=["localhost", "127.0.0.1"]
    )
    port = free_port()
    args = ["--port", str(port), "--cert", str(paths.cert), "--key", str(paths.key)]
    process, home, output = run_tinyapp(tmp, [*args, "--workers", str(workers)], home)
    server = Server(port, paths, home, output, process)
    deadline = time.monotonic() + READY_DEADLINE
    while time.monotonic() < deadline:
        if process.poll() is not None:
            pytest.fail(f"server exited with {process.returncode}:\n{server.log()}")
        try:
            if server.get("/healthz").status_code == 200:
                return server
        except requests.RequestException:
            time.sleep(0.05)
    stop(server)
    pytest.fail(f"server was not ready within {READY_DEADLINE}s:\n{server.log()}")


def stop(server: Server) -> int:
    """SIGTERM, then the exit status; SIGKILL if it does not exit in time."""
    server.process.send_signal(signal.SIGTERM)
    try:
        return server.process.wait(timeout=STOP_DEADLINE)
    except subprocess.TimeoutExpired:
        server.process.kill()
        server.process.wait()
        raise


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    running = start(tmp_path_factory.mktemp("server"))
    yield running
    if running.process.poll() is None:
        stop(running)


def weak_client(ca: Path, maximum: ssl.TLSVersion) -> ssl.SSLContext:
    """A client that really offers TLS 1.0/1.1 (OpenSSL 3 refuses to at its default level)."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.load_verify_locations(ca)
    context.set_ciphers("DEFAULT:@SECLEVEL=0")
    context.minimum_version = ssl.TLSVersion.TLSv1
    context.maximum_version = maximum
    return context


def handshake(port: int, context: ssl.SSLContext) -> str | None:
    with (
        socket.create_connection(("127.0.0.1", port), timeout=5) as sock,
        context.wrap_socket(sock, server_hostname="localhost") as tls,
    ):
        return tls.version()


@pytest.mark.e2e
def test_https_verified_against_the_ca(server: Server) -> None:
    response = server.get("/healthz")
    assert response.status_code == 200
    assert served_certificate(server.port) == der(server.paths.cert)


@pytest.mark.e2e
def test_app_is_built_in_the_worker(server: Server) -> None:
    ids = server.get("/healthz").json()
    master = server.process.pid
    assert ids["ppid"] == master
    assert ids["built_in"] == ids["pid"] != master


@pytest.mark.e2e
@pytest.mark.filterwarnings("ignore:ssl.TLSVersion.TLSv1:DeprecationWarning")
def test_tls_1_2_is_the_minimum(server: Server) -> None:
    assert handshake(server.port, weak_client(server.paths.ca, ssl.TLSVersion.TLSv1_2)) == "TLSv1.2"
    for version in (ssl.TLSVersion.TLSv1, ssl.TLSVersion.TLSv1_1):
        with pytest.raises(ssl.SSLError) as refused:
            handshake(server.port, weak_client(server.paths.ca, version))
        # The server's alert, not a client that could not offer the version.
        assert refused.value.reason == "TLSV1_ALERT_PROTOCOL_VERSION"


def tls_records(port: int, ca: Path, request: bytes) -> tuple[bytes, list[int]]:
    """The response to ``request`` on a new TLS 1.2 connection, and the size of each
    application-data record it came in, read off the wire (TLS 1.2: after the
    handshake, only the server's writes send application data)."""
    context = ssl.create_default_context(cafile=str(ca))
    context.maximum_version = ssl.TLSVersion.TLSv1_2
    incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
    tls = context.wrap_bio(incoming, outgoing, server_hostname="localhost")
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:

        def exchange() -> bytes:
            sock.sendall(outgoing.read())
            data = sock.recv(65536)
            assert data, "the server closed the connection"
            incoming.write(data)
            return data

        while True:
            try:
                tls.do_handshake()
                break
            except ssl.SSLWantReadError:
                exchange()
        tls.write(request)
        wire, response = b"", b""
        while True:
            wire += exchange()
            with contextlib.suppress(ssl.SSLWantReadError):
                while chunk := tls.read(65536):
                    response += chunk
            head, _, body = response.partition(b"\r\n\r\n")
            length = re.search(rb"(?im)^content-length: *(\d+)", head)
            if length and len(body) >= int(length.group(1)):
                break
    records = []
    while wire:
        kind, size = wire[0], int.from_bytes(wire[3:5], "big")
        if kind == 23:  # application data
            records.append(size)
        wire = wire[5 + size :]
    return response, records


@pytest.mark.e2e
def test_a_response_leaves_in_one_tls_record(server: Server) -> None:
    """Head and body in one write: one record to encrypt, send and wake the client for."""
    request = b"GET /healthz HTTP/1.1\r\nHost: localhost\r\n\r\n"
    response, records = tls_records(server.port, server.paths.ca, request)
    assert response.startswith(b"HTTP/1.1 200 OK\r\n")
    assert b'"built_in":' in response.partition(b"\r\n\r\n")[2], response
    assert len(records) == 1, records


@pytest.mark.e2e
def test_plain_http_gets_no_answer(server: Server) -> None:
    try:
        response = requests.get(f"http://127.0.0.1:{server.port}/healthz", timeout=5)
    except requests.ConnectionError:
        return
    assert response.status_code != 200


@pytest.mark.e2e
def test_two_servers_side_by_side(tmp_path: Path) -> None:
    # One HOME for both, as for two servers a developer starts on one machine.
    home = tmp_path / "home"
    first = start(tmp_path / "one", home=home)
    try:
        second = start(tmp_path / "two", home=home)
        try:
            for running in (first, second, first):
                assert running.get("/healthz").status_code == 200
        finally:
            assert stop(second) == 0
    finally:
        assert stop(first) == 0
    # Neither opened a control socket (~/.gunicorn/gunicorn.ctl) to fight over.
    assert list(home.iterdir()) == []
    assert "Control socket" not in first.log() + second.log()


@pytest.mark.e2e
def test_sigterm_finishes_requests_in_flight_and_exits_0(tmp_path: Path) -> None:
    server = start(tmp_path)
    started = tmp_path / "started"
    with ThreadPoolExecutor(max_workers=1) as pool:
        slow = pool.submit(server.get, "/slow", seconds=1.0, started=str(started))
        deadline = time.monotonic() + 5
        while not started.exists():
            assert time.monotonic() < deadline, server.log()
            time.sleep(0.01)
        signalled = time.monotonic()
        server.process.send_signal(signal.SIGTERM)
        assert slow.result().json() == {"done": True}
    assert server.process.wait(timeout=STOP_DEADLINE) == 0
    assert time.monotonic() - signalled < 5
    with pytest.raises(requests.ConnectionError):
        server.get("/healthz")


@pytest.mark.e2e
def test_idle_server_stops_promptly_on_sigterm(tmp_path: Path) -> None:
    server = start(tmp_path)
    signalled = time.monotonic()
    assert stop(server) == 0
    assert time.monotonic() - signalled < 3


@pytest.mark.e2e
def test_renewed_certificate_is_served_without_restart(tmp_path: Path) -> None:
    server = start(tmp_path, workers=2)
    old_ca = server.paths.ca
    renewed = certs.generate(
        tmp_path / "renewed", service="tiny", namespace="test", extra_sans=["localhost"]
    )

    # The certificate lands first: it does not match the key, so the old pair stays.
    os.replace(renewed.cert, server.paths.cert)
    for _ in range(4):
        assert served_certificate(server.port) != der(server.paths.cert)
        assert server.get("/healthz").status_code == 200
    assert "keeping the previous TLS certificate" in server.log()

    # Then the key: every worker switches on its next connection.
    os.replace(renewed.key, server.paths.key)
    for _ in range(6):
        assert served_certificate(server.port) == der(server.paths.cert)
    with requests.Session() as session:
        assert session.get(f"{server.url}/healthz", verify=str(renewed.ca)).status_code == 200
    with pytest.raises(requests.exceptions.SSLError):
        requests.get(f"{server.url}/healthz", verify=str(old_ca), timeout=5)

    # Regenerating in place (as `trustgate certs generate --force` does) is picked up too.
    again = certs.generate(
        server.paths.ca.parent,
        service="tiny",
        namespace="test",
        extra_sans=["localhost"],
        overwrite=True,
    )
    assert server.get("/healthz").status_code == 200
    assert served_certificate(server.port) == der(again.cert)
    assert stop(server) == 0


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--cert", "{tmp}/missing.crt", "--key", "{tmp}/certs/tls.key"], "cannot read "),
        (["--cert", "{tmp}/certs/tls.crt"], "both a certificate file and a key file"),
        (["--cert", "{tmp}/certs/tls.crt", "--key", "{tmp}/certs/ca.crt"], "private key"),
        (["--cert", "{tmp}/other/tls.crt", "--key", "{tmp}/certs/tls.key"], "private key"),
        (["--workers", "0"], "workers and threads must be at least 1, got 0 and 4"),
    ],
)
def test_refuses_to_start(tmp_path: Path, args: list[str], message: str) -> None:
    for name in ("certs", "other"):
        certs.generate(tmp_path / name, service="tiny", namespace="test")
    port = free_port()
    argv = ["--port", str(port), *(a.format(tmp=tmp_path) for a in args)]
    process, _, output = run_tinyapp(tmp_path, argv)
    assert process.wait(timeout=READY_DEADLINE) == 2
    log = output.read_text()
    assert message in log
    if "missing.crt" in " ".join(args):
        assert f"{tmp_path}/missing.crt" in log
    assert "Starting gunicorn" not in log
