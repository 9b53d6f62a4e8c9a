"""One bounded GET of revocation information: time, bytes, redirects, breakers, offline.

Against the real ``RevocationServer`` and the raw-socket hostile servers of
tests/support/hostile.py (a server that hangs, trickles its headers or drips its body).
"""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator

import pytest

from tests.support.hostile import Hanging, hostile_server, trickle_body, trickle_headers
from tests.support.notation_revocation import RevocationServer, chain
from webhook.core.deadline import Deadline
from webhook.core.offline import NeedsNetwork, offline
from webhook.registry.network import Network, NetworkLimits
from webhook.signatures.notation.certstatus import Unavailable
from webhook.signatures.notation.fetcher import Fetcher


@pytest.fixture(scope="module")
def server() -> Iterator[RevocationServer]:
    running = RevocationServer().start()
    yield running
    running.stop()


def get(
    url: str,
    deadline: Deadline | None = None,
    *,
    network: Network | None = None,
    max_bytes: int = 1 << 20,
    seconds: float = 0.5,
) -> bytes:
    fetcher = Fetcher(network or Network())
    return fetcher.get(
        url, deadline or Deadline(10), seconds=seconds, max_bytes=max_bytes, accept="*/*"
    )


def crl_route(server: RevocationServer, mode: str = "") -> str:
    _, ca, _ = chain(server)
    server.crl_modes[ca.name] = mode
    return server.crl_url(ca.name)


def test_the_body_is_read_and_charged_to_the_review(server: RevocationServer) -> None:
    deadline = Deadline(10)
    body = get(crl_route(server), deadline)
    assert body.startswith(b"\x30") and deadline.read_bytes == len(body)


def test_a_declared_length_over_the_limit_is_refused_unread(server: RevocationServer) -> None:
    deadline = Deadline(10)
    with pytest.raises(Unavailable, match="sent more than 4096 bytes"):
        get(crl_route(server, "flood"), deadline, max_bytes=4096)
    assert deadline.read_bytes == 0


def test_an_undeclared_flood_is_cut_at_the_limit(server: RevocationServer) -> None:
    _, ca, _ = chain(server)
    server.ocsp_modes[ca.name] = "flood-chunked"
    deadline = Deadline(10)
    with pytest.raises(Unavailable, match="sent more than 100000 bytes"):
        get(server.ocsp_url(ca.name) + "/x", deadline, max_bytes=100_000)
    assert deadline.read_bytes <= 100_000


@pytest.mark.parametrize("behaviour", [trickle_headers, trickle_body])
def test_a_dripping_server_is_cut_at_the_calls_own_time(behaviour: object) -> None:
    with hostile_server(behaviour) as hostile:  # type: ignore[arg-type]
        started = time.monotonic()
        with pytest.raises(Unavailable, match=rf"{hostile.host} did not answer within 0\.3 s"):
            get(f"http://{hostile.host}/crl", seconds=0.3)
        assert time.monotonic() - started < 1.5


def test_a_hanging_server_is_cut_at_the_calls_own_time() -> None:
    hanging = Hanging()
    try:
        started = time.monotonic()
        with pytest.raises(Unavailable, match=r"did not answer within 0\.3 s"):
            get(f"http://{hanging.host}/ocsp", seconds=0.3)
        assert time.monotonic() - started < 1.5
    finally:
        hanging.close()


def test_the_review_deadline_cuts_before_the_calls_own_time(server: RevocationServer) -> None:
    started = time.monotonic()
    with pytest.raises(Unavailable, match=r"when the review's deadline of 0\.3 s passed"):
        get(crl_route(server, "drip"), Deadline(0.3), seconds=5)
    assert time.monotonic() - started < 1.5
    with pytest.raises(Unavailable, match="no time was left in the review"):
        get(crl_route(server), Deadline(0))


def _loop(sock: socket.socket, request: bytes) -> None:
    sock.sendall(b"HTTP/1.1 302 Found\r\nLocation: /again\r\nContent-Length: 0\r\n\r\n")


def test_redirects_stay_on_the_host_and_are_few(server: RevocationServer) -> None:
    _, ca, _ = chain(server)
    server.crl_modes[ca.name] = "redirect-away"
    with pytest.raises(Unavailable, match=r"redirected to http://localhost:\d+/crl/"):
        get(server.crl_url(ca.name))
    server.crl_modes[ca.name] = "redirect-here"
    assert get(server.crl_url(ca.name)).startswith(b"\x30")
    with hostile_server(_loop) as looping:
        with pytest.raises(Unavailable, match="redirected more than 2 times"):
            get(f"http://{looping.host}/crl")
        assert looping.connections >= 1 and len(looping.requests) == 3


def test_credentials_in_a_url_are_never_sent(server: RevocationServer) -> None:
    url = crl_route(server).replace("http://", "http://admin:secret@")
    before = len(server.paths)
    with pytest.raises(Unavailable, match="it holds credentials") as caught:
        get(url)
    assert "secret" not in str(caught.value) and len(server.paths) == before


def test_server_errors_trip_the_breaker_and_missing_routes_do_not(
    server: RevocationServer,
) -> None:
    events: list[str] = []
    network = Network(NetworkLimits(failure_threshold=3), observer=lambda e, h: events.append(e))
    for _ in range(4):
        with pytest.raises(Unavailable, match="answered HTTP 404"):
            get(f"{server.url}/crl/nobody.crl", network=network)
    assert "breaker_open" not in events
    url = crl_route(server, "error")
    for _ in range(3):
        with pytest.raises(Unavailable, match="answered HTTP 500"):
            get(url, network=network)
    assert "breaker_open" in events
    with pytest.raises(Unavailable, match="refused by its circuit breaker"):
        get(url, network=network)


def test_the_offline_pass_stops_before_any_io(server: RevocationServer) -> None:
    before = len(server.paths)
    with pytest.raises(NeedsNetwork), offline():
        get(crl_route(server))
    assert len(server.paths) == before
