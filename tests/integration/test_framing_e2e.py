"""Request framing through a real ``trustgate serve``: refused shapes, a head alone, and h11.

Each request whose framing two HTTP implementations could read differently
gets a 400 with ``Connection: close`` from the event loop, and the connection
is closed. Generated requests, valid and hostile, get the answer h11 gives
(tests/support/http1.py): served, or refused with 400, with pipelined requests
behind them served in order.
"""

from __future__ import annotations

import http.client
import re
import socket
import ssl
import time
from collections.abc import Iterator

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.integration.conftest import Server, e2e_policies, start_server, stop_server
from tests.support.http1 import SENTINEL, Generated, expected_end, requests

pytestmark = pytest.mark.e2e

HEAD = b"POST /validate HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\n"
_STATUS = re.compile(rb"HTTP/1\.[01] (\d{3}) ")


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    tmp = tmp_path_factory.mktemp("framing")
    running = start_server(tmp, e2e_policies(tmp))
    yield running
    assert stop_server(running) == 0


def connect(server: Server) -> ssl.SSLSocket:
    port = int(server.url.rsplit(":", 1)[1])
    context = ssl.create_default_context(cafile=str(server.ca))
    raw = socket.create_connection(("127.0.0.1", port), timeout=10)
    return context.wrap_socket(raw, server_hostname="localhost")


def exchange(server: Server, data: bytes, wait: float = 5.0) -> tuple[bytes, bool]:
    """Send ``data`` on a new connection; what came back, and whether the server closed.

    Reads until the server closes or ``wait`` seconds pass.
    """
    with connect(server) as tls:
        tls.sendall(data)
        tls.settimeout(wait)
        received = b""
        deadline = time.monotonic() + wait
        try:
            while time.monotonic() < deadline:
                piece = tls.recv(65536)
                if not piece:
                    return received, True
                received += piece
        except (ConnectionResetError, ssl.SSLError):
            return received, True
        except TimeoutError:
            pass
        return received, False


REFUSED = {
    "TE identity, then TE chunked": (
        b"Transfer-Encoding: identity\r\nTransfer-Encoding: chunked\r\n"
    ),
    "TE gzip, then TE chunked": b"Transfer-Encoding: gzip\r\nTransfer-Encoding: chunked\r\n",
    "TE gzip, chunked": b"Transfer-Encoding: gzip, chunked\r\n",
    "TE chunked twice": b"Transfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n",
    "TE and CL": b"Transfer-Encoding: chunked\r\nContent-Length: 2\r\n",
    "CL twice, equal": b"Content-Length: 2\r\nContent-Length: 2\r\n",
    "CL list": b"Content-Length: 2, 2\r\n",
    "CL invalid": b"Content-Length: +2\r\n",
    "folding": b"X-Folded: a\r\n b\r\nContent-Length: 2\r\n",
    "bare CR": b"X-Cr: a\rb\r\nContent-Length: 2\r\n",
    "bare LF": b"X-Lf: a\nContent-Length: 2\r\n",
}


@pytest.mark.parametrize("fields", REFUSED.values(), ids=REFUSED.keys())
def test_each_ambiguous_framing_gets_400_and_close(server: Server, fields: bytes) -> None:
    """Head alone, without a body: the refusal does not wait for one."""
    started = time.monotonic()
    answer, closed = exchange(server, HEAD + fields + b"\r\n")
    assert closed, answer
    assert time.monotonic() - started < 3.0
    assert answer.startswith(b"HTTP/1.1 400 Bad Request\r\n"), answer
    assert b"\r\nConnection: close\r\n" in answer
    assert len(_STATUS.findall(answer)) == 1


def test_a_chunk_without_crlf_after_its_data_gets_400_and_close(server: Server) -> None:
    data = HEAD + b"Transfer-Encoding: chunked\r\n\r\n2\r\n{}XX0\r\n\r\n"
    answer, closed = exchange(server, data)
    assert closed
    assert answer.startswith(b"HTTP/1.1 400 Bad Request\r\n"), answer
    assert b"\r\nConnection: close\r\n" in answer
    assert b"not followed by CRLF" in answer


@pytest.mark.parametrize(
    "head",
    [
        HEAD,
        HEAD + b"Content-Length: 0\r\n",
        b"POST /validate HTTP/1.0\r\nContent-Type: application/json\r\n",
        b"GET /healthz HTTP/1.1\r\nHost: localhost\r\n",
    ],
    ids=["no length", "length 0", "HTTP/1.0", "GET"],
)
def test_a_head_alone_is_answered_at_once_without_500(server: Server, head: bytes) -> None:
    """A request without a body is complete at its head: no thread waits for a body.

    gunicorn reads a request without Content-Length or Transfer-Encoding to the
    end of the connection; from the socket, that was a thread stuck until the
    client timeout, then an HTTP 500 and a traceback.
    """
    started = time.monotonic()
    with connect(server) as tls:
        tls.sendall(head + b"\r\n")
        response = http.client.HTTPResponse(tls)  # type: ignore[arg-type]
        response.begin()
        body = response.read()
    assert time.monotonic() - started < 3.0
    assert response.status < 500, body
    assert "Traceback" not in server.log_text()


def served(answer: bytes) -> list[bytes]:
    return [status for status in _STATUS.findall(answer) if status != b"100"]


@settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(st.lists(requests(), min_size=1, max_size=2))
def test_the_server_frames_as_h11_does(server: Server, generated: list[Generated]) -> None:
    """Generated requests, pipelined and then a closing GET: answered as h11 frames them."""
    expected: list[bytes] = []
    closes = False
    for index, request in enumerate(generated):
        following = b"".join(r.data for r in generated[index + 1 :]) + SENTINEL
        end = expected_end(request, following)
        if end == "refused":
            expected.append(b"400")
            closes = True
            break
        assert end == len(request.data), "the generator meant another end"
        expected.append(b"ok")
        if request.http10:  # HTTP/1.0 without keep-alive: answered, then closed
            closes = True
            break
    else:
        expected.append(b"ok")  # the closing GET
        closes = True
    data = b"".join(r.data for r in generated) + SENTINEL
    answer, closed = exchange(server, data)
    statuses = [b"400" if status == b"400" else b"ok" for status in served(answer)]
    assert statuses == expected, answer
    assert closed is closes
    if expected[-1] == b"400":
        assert b"\r\nConnection: close\r\n" in answer.rsplit(b"HTTP/1.1 400 ", 1)[1]


def test_no_traceback_after_the_hostile_requests(server: Server) -> None:
    """Runs last in this module: nothing above made the server log a traceback."""
    log = server.log_text()
    assert "Traceback" not in log, log[-3000:]
