"""A credential-bearing POST reaches its host only, and ends in time whatever the server does."""

from __future__ import annotations

import socket
import ssl
import time
from collections.abc import Iterator
from urllib.parse import parse_qs

import pytest

from tests.support import hostile
from tests.support.entraid import Handler, Recording, json_answer, serving_certificate
from webhook.core import certs
from webhook.core.errors import UpstreamError
from webhook.credentials.formpost import post_form

SECRET = "eyJhbGciOiJSUzI1NiJ9.eyJhdWQiOiJ4In0.secret-signature"


@pytest.fixture(scope="module")
def tls(tmp_path_factory: pytest.TempPathFactory) -> certs.CertPaths:
    return serving_certificate(tmp_path_factory.mktemp("tls"))


@pytest.fixture
def trusted(tls: certs.CertPaths, monkeypatch: pytest.MonkeyPatch) -> certs.CertPaths:
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(tls.ca))
    for name in ("HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy"):
        monkeypatch.delenv(name, raising=False)
    return tls


def _server(tls: certs.CertPaths | None, answer: tuple[int, dict[str, str], bytes]) -> Recording:
    handler = type("H", (Handler,), {"answer": lambda _h, _seen: answer})
    return Recording(handler, tls)


@pytest.fixture
def decoy(tls: certs.CertPaths) -> Iterator[Recording]:
    server = _server(tls, json_answer(200, {"refresh_token": "decoy"}))
    yield server
    server.stop()


def test_the_fields_are_posted_form_encoded_and_the_answer_read(trusted: certs.CertPaths) -> None:
    server = _server(trusted, json_answer(200, {"refresh_token": "r"}))
    try:
        reply = post_form(
            f"{server.url}/oauth2/exchange",
            {"grant_type": "access_token", "access_token": SECRET},
            seconds=5,
            max_bytes=1024,
        )
    finally:
        server.stop()
    assert reply.status == 200 and reply.body == b'{"refresh_token": "r"}'
    assert reply.content_type.startswith("application/json")
    (seen,) = server.seen()
    assert seen.method == "POST" and seen.path == "/oauth2/exchange"
    assert seen.headers["Content-Type"] == "application/x-www-form-urlencoded"
    assert parse_qs(seen.body.decode()) == {
        "grant_type": ["access_token"],
        "access_token": [SECRET],
    }


def test_a_redirect_is_returned_and_never_followed(
    trusted: certs.CertPaths, decoy: Recording
) -> None:
    server = _server(trusted, (307, {"Location": f"{decoy.url}/oauth2/exchange"}, b""))
    try:
        reply = post_form(f"{server.url}/x", {"access_token": SECRET}, seconds=5, max_bytes=1024)
    finally:
        server.stop()
    assert reply.status == 307 and reply.location == f"{decoy.url}/oauth2/exchange"
    assert decoy.seen() == []


def test_plain_http_is_refused_before_any_connection() -> None:
    server = _server(None, json_answer(200, {}))
    try:
        with pytest.raises(UpstreamError, match="sent over HTTPS only"):
            post_form(f"{server.url}/x", {"access_token": SECRET}, seconds=5, max_bytes=1024)
        assert server.seen() == []
    finally:
        server.stop()


def test_an_untrusted_certificate_is_refused_and_nothing_is_sent(
    tls: certs.CertPaths, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("REQUESTS_CA_BUNDLE", raising=False)
    monkeypatch.delenv("CURL_CA_BUNDLE", raising=False)
    server = _server(tls, json_answer(200, {}))
    try:
        with pytest.raises(UpstreamError, match="TLS certificate is not trusted") as caught:
            post_form(f"{server.url}/x", {"access_token": SECRET}, seconds=5, max_bytes=1024)
        assert server.seen() == []
    finally:
        server.stop()
    assert SECRET not in str(caught.value)


def test_a_refused_connection_says_so() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    with pytest.raises(UpstreamError, match=rf"127.0.0.1:{port}: the connection was refused"):
        post_form(f"https://127.0.0.1:{port}/x", {"a": "b"}, seconds=5, max_bytes=1024)


def _tls_behaviour(tls: certs.CertPaths, then: hostile.Behaviour) -> hostile.Behaviour:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(tls.cert, tls.key)

    def serve(sock: socket.socket, _request: bytes) -> None:
        wrapped = context.wrap_socket(sock, server_side=True)
        head = b""
        while b"\r\n\r\n" not in head:
            chunk = wrapped.recv(4096)
            if not chunk:
                return
            head += chunk
        then(wrapped, head)

    return serve


@pytest.mark.parametrize("behaviour", ["drip_tls", "trickle_headers", "trickle_body", "hang"])
def test_a_slow_server_is_cut_at_the_deadline(trusted: certs.CertPaths, behaviour: str) -> None:
    serve = getattr(hostile, behaviour)
    if behaviour != "drip_tls":
        serve = _tls_behaviour(trusted, serve)
    with hostile.hostile_server(serve, reads=False) as server:
        started = time.monotonic()
        with pytest.raises(UpstreamError, match=r"did not answer within 1s"):
            post_form(f"https://{server.host}/x", {"a": "b"}, seconds=1.0, max_bytes=1 << 20)
        elapsed = time.monotonic() - started
    assert elapsed < 2.5, elapsed


def test_an_answer_declared_too_large_is_not_read(trusted: certs.CertPaths) -> None:
    server = _server(trusted, (200, {"Content-Length": str(10**9)}, b""))
    try:
        with pytest.raises(UpstreamError, match="larger than 1024 bytes"):
            post_form(f"{server.url}/x", {"a": "b"}, seconds=5, max_bytes=1024)
    finally:
        server.stop()


def test_an_answer_too_large_is_cut_at_the_cap(trusted: certs.CertPaths) -> None:
    body = b"x" * 5000
    server = _server(trusted, (200, {"Content-Type": "application/json"}, body))
    try:
        with pytest.raises(UpstreamError, match="larger than 1024 bytes"):
            post_form(f"{server.url}/x", {"a": "b"}, seconds=5, max_bytes=1024)
    finally:
        server.stop()


def test_an_error_status_is_an_answer(trusted: certs.CertPaths) -> None:
    server = _server(trusted, json_answer(401, {"errors": [{"code": "UNAUTHORIZED"}]}))
    try:
        reply = post_form(f"{server.url}/x", {"a": "b"}, seconds=5, max_bytes=1024)
    finally:
        server.stop()
    assert reply.status == 401 and b"UNAUTHORIZED" in reply.body
