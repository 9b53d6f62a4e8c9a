"""Network failures are told in plain words, never as urllib3's wrappers.

Each failure is real: a closed port, a name under .invalid, a server with a
certificate no CA here signed, plain HTTP where TLS was expected, a server that
never answers.
"""

from __future__ import annotations

import socket
import ssl
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
import requests

from tests.support.cli import run
from tests.support.hostile import hang, hostile_server
from webhook.core import certs
from webhook.core.failures import describe

INTERNALS = ("Max retries", "ConnectionPool", "Caused by", "object at 0x")


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def failure(url: str, **kwargs: object) -> str:
    with pytest.raises(requests.RequestException) as raised:
        requests.get(url, timeout=kwargs.pop("timeout", 5), **kwargs)  # type: ignore[arg-type]
    text = describe(raised.value)
    assert not any(word in text for word in INTERNALS), text
    return text


@contextmanager
def tls_server(tmp_path: Path) -> Iterator[int]:
    """A TLS server whose certificate chains to a CA the client does not know."""
    paths = certs.generate(tmp_path, service="s", namespace="n", extra_sans=["127.0.0.1"])
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(paths.cert, paths.key)
    listener = socket.create_server(("127.0.0.1", 0))
    stop = threading.Event()

    def serve() -> None:
        listener.settimeout(0.2)
        while not stop.is_set():
            try:
                conn, _ = listener.accept()
            except OSError:
                continue
            try:
                with context.wrap_socket(conn, server_side=True):
                    pass
            except OSError:
                conn.close()

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield int(listener.getsockname()[1])
    finally:
        stop.set()
        thread.join(5)
        listener.close()


def test_refused_connection() -> None:
    text = failure(f"https://127.0.0.1:{closed_port()}/v2/")
    assert text.startswith("the connection was refused")


def test_unknown_host_name() -> None:
    assert failure("https://registry.trustgate.invalid/v2/").startswith(
        "the host name does not resolve"
    )


def test_untrusted_certificate(tmp_path: Path) -> None:
    with tls_server(tmp_path) as port:
        text = failure(f"https://127.0.0.1:{port}/v2/")
    assert text.startswith("its TLS certificate is not trusted (")
    assert "check the CA" in text


def test_plain_http_where_tls_was_expected() -> None:
    with hostile_server(hang) as server:
        # hang reads the request head and never answers; TLS gets no ServerHello.
        text = failure(f"https://{server.host}/v2/", timeout=0.5)
    assert text.startswith(("it did not answer in time", "the TLS handshake failed"))


def test_no_answer_in_time() -> None:
    with hostile_server(hang) as server:
        text = failure(f"http://{server.host}/v2/", timeout=0.5)
    assert text.startswith("it did not answer in time")


def test_unknown_causes_keep_their_own_words_shortened() -> None:
    assert describe(ValueError("x" * 500)) == "x" * 200 + "..."
    assert describe(RuntimeError("first line\nsecond")) == "first line"


@pytest.mark.parametrize("command", ["check", "grade"])
def test_cli_says_what_failed_for_an_unreachable_registry(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], command: str
) -> None:
    policies = tmp_path / "policies"
    policies.mkdir()
    (policies / "p.yaml").write_text(
        "apiVersion: trustgate.dev/v1alpha1\nkind: ImagePolicy\nmetadata: {name: p}\n"
        "spec:\n  registries: ['**']\n  freshness: {minimumGrade: B, sources: [pyxis]}\n"
    )
    image = f"127.0.0.1:{closed_port()}/acme/api:1.0"
    code, out, err = run(capsys, command, "--policies", str(policies), image)
    assert code == 1
    assert f"cannot reach {image.split('/')[0]}: the connection was refused" in out + err
    assert not any(word in out + err for word in INTERNALS), out + err


def test_audit_cluster_says_what_failed_for_an_unreachable_api_server(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    server = f"https://127.0.0.1:{closed_port()}"
    kubeconfig = tmp_path / "kubeconfig"
    kubeconfig.write_text(
        "apiVersion: v1\nkind: Config\ncurrent-context: x\n"
        f"clusters: [{{name: c, cluster: {{server: '{server}'}}}}]\n"
        "users: [{name: u, user: {token: t}}]\n"
        "contexts: [{name: x, context: {cluster: c, user: u}}]\n"
    )
    policies = tmp_path / "policies"
    policies.mkdir()
    (policies / "p.yaml").write_text(
        "apiVersion: trustgate.dev/v1alpha1\nkind: ImagePolicy\nmetadata: {name: p}\n"
        "spec:\n  registries: ['**']\n"
    )
    code, _, err = run(
        capsys, "audit", "--cluster", "--kubeconfig", str(kubeconfig), "--policies", str(policies)
    )
    assert code == 2
    assert f"cannot reach {server}: the connection was refused" in err
    assert not any(word in err for word in INTERNALS), err
