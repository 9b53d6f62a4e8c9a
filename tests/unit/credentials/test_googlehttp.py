"""webhook.credentials.googlehttp: google-auth's transport, bounded however a server answers.

The metadata server, STS and IAM are stood in for by ``tests.support.gcp`` in
test_gcp.py; here the hostile servers of ``tests.support.hostile`` drip answers.
"""

from __future__ import annotations

import gzip
import socket
import time

import pytest
from google.auth import exceptions

from tests.support.hostile import Behaviour, hostile_server, trickle_body
from webhook.credentials.googlehttp import BoundedRequest


def drip_declared_body(sock: socket.socket, request: bytes) -> None:
    """A body declared at 64 bytes, sent a byte every 0.2 s (within any read timeout)."""
    sock.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 64\r\n\r\n")
    for _ in range(64):
        sock.sendall(b"{")
        time.sleep(0.2)


def gzipped_token(sock: socket.socket, request: bytes) -> None:
    body = gzip.compress(b'{"access_token": "ya29.x", "expires_in": 3599}')
    head = (
        b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Encoding: gzip\r\n"
        b"Content-Length: " + str(len(body)).encode() + b"\r\n\r\n"
    )
    sock.sendall(head + body)


@pytest.mark.parametrize("behaviour", [drip_declared_body, trickle_body])
def test_a_dripped_body_is_cut_at_the_bound(behaviour: Behaviour) -> None:
    with hostile_server(behaviour) as server:
        started = time.monotonic()
        with pytest.raises(exceptions.TransportError, match=r"took longer than 0\.5 s"):
            BoundedRequest(0.5, 64 * 1024)(f"http://{server.host}/token")
        assert time.monotonic() - started < 1.5


def test_a_whole_answer_is_read_and_decoded() -> None:
    with hostile_server(gzipped_token) as server:
        answer = BoundedRequest(2.0, 64 * 1024)(f"http://{server.host}/token")
    assert answer.status == 200
    assert answer.data == b'{"access_token": "ya29.x", "expires_in": 3599}'
    assert answer.headers["content-type"] == "application/json"
