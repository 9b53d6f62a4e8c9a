"""Slow, idle and oversized clients against a real ``trustgate serve`` over TLS.

Any pod can connect to the webhook's Service, so a client that opens a
connection and sends nothing, one byte of a TLS ClientHello, half a request
line or half a body, must cost neither a worker thread nor the capacity to
accept the next connection; a review sent meanwhile is answered in its usual
time.
"""

from __future__ import annotations

import contextlib
import json
import resource
import selectors
import socket
import ssl
import statistics
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.integration.conftest import Server, e2e_policies, start_server, stop_server
from tests.support.kube import pod_spec, review, workload

pytestmark = pytest.mark.e2e

#: The default of ``trustgate serve --client-timeout``.
CLIENT_TIMEOUT = 10.0
#: How late after its deadline a connection may close (the loop checks four times a second).
CLOSE_SLACK = 2.0
REVIEW = json.dumps(review(workload("Pod", pod_spec("registry.redhat.io/ubi9/ubi-minimal:9.4"))))


@pytest.fixture(autouse=True)
def _enough_descriptors() -> None:
    """This test holds 1,200 connections open; the default soft limit is often 1,024."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    wanted = 4096 if hard == resource.RLIM_INFINITY else min(hard, 4096)
    if soft != resource.RLIM_INFINITY and soft < wanted:
        resource.setrlimit(resource.RLIMIT_NOFILE, (wanted, hard))


@pytest.fixture
def server(tmp_path: Path) -> Iterator[Server]:
    running = start_server(tmp_path, e2e_policies(tmp_path))
    yield running
    stop_server(running)


def address(server: Server) -> tuple[str, int]:
    return "127.0.0.1", int(server.url.rsplit(":", 1)[1])


def review_latency(server: Server) -> float:
    """Seconds for one review on a new connection (TCP, TLS handshake, request, answer)."""
    started = time.monotonic()
    result = server.post(REVIEW, timeout=30)
    elapsed = time.monotonic() - started
    assert result.status_code == 200, result.text
    assert result.json()["response"]["allowed"] is True
    return elapsed


def latencies(server: Server, count: int = 5) -> list[float]:
    return [review_latency(server) for _ in range(count)]


def client_hello() -> bytes:
    """The first flight of a real TLS client, as it would go on the wire."""
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
    tls = context.wrap_bio(incoming, outgoing, server_hostname="localhost")
    with pytest.raises(ssl.SSLWantReadError):
        tls.do_handshake()
    return outgoing.read()


def tls_connection(server: Server) -> ssl.SSLSocket:
    context = ssl.create_default_context(cafile=str(server.ca))
    raw = socket.create_connection(address(server), timeout=10)
    return context.wrap_socket(raw, server_hostname="localhost")


class Trickle:
    """Sends one more byte on each connection every ``interval`` seconds, as a slow client does."""

    def __init__(
        self, connections: list[tuple[socket.socket, bytes]], interval: float = 0.5
    ) -> None:
        self._connections = connections
        self._interval = interval
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        sent = 0
        while not self._stop.wait(self._interval):
            for sock, pattern in self._connections:
                with contextlib.suppress(OSError, ValueError):
                    sock.send(pattern[sent % len(pattern) : sent % len(pattern) + 1])
            sent += 1

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)


def closed(socks: list[socket.socket], seconds: float = 0.0) -> dict[socket.socket, bytes]:
    """Wait up to ``seconds`` for the server to close each socket; what each closed one received.

    A TLS socket can be readable and still open (a TLS 1.3 session ticket
    arrives after the handshake), so readiness is only a hint to read.
    """
    deadline = time.monotonic() + seconds
    received = dict.fromkeys(socks, b"")
    done: dict[socket.socket, bytes] = {}
    with selectors.DefaultSelector() as selector:
        for sock in socks:
            sock.setblocking(False)
            selector.register(sock, selectors.EVENT_READ)
        while len(done) < len(socks):
            ready = selector.select(timeout=max(0.0, deadline - time.monotonic()))
            for key, _ in ready:
                sock = key.fileobj  # type: ignore[assignment]
                if _drain(sock, received):
                    done[sock] = received[sock]
                    selector.unregister(sock)
            if time.monotonic() >= deadline:
                break
    return done


def _drain(sock: socket.socket, received: dict[socket.socket, bytes]) -> bool:
    """Read what is there; whether the server has closed the connection."""
    try:
        while data := sock.recv(4096):
            received[sock] += data
    except (ssl.SSLWantReadError, BlockingIOError):
        return False
    except (ssl.SSLError, ConnectionResetError):
        return True
    return True


def test_idle_and_slow_clients_do_not_delay_a_review(server: Server) -> None:
    """1,000 idle + 64 slow-TLS + 64 slow-header + 4 slow-body connections at once.

    With gunicorn's own gthread worker, 16 of the slow ones hold every thread
    and a review waits as long as they stay; 1,000 idle ones fill its
    worker_connections. Here a review keeps its normal latency, and every slow
    connection is closed at its deadline, whatever it trickles.
    """
    baseline = latencies(server)

    opened = time.monotonic()
    idle = [socket.create_connection(address(server), timeout=10) for _ in range(1000)]
    hello = client_hello()
    slow_tls = [socket.create_connection(address(server), timeout=10) for _ in range(64)]
    for sock in slow_tls:
        sock.sendall(hello[:1])
    slow_head: list[socket.socket] = []
    for _ in range(64):
        tls = tls_connection(server)
        tls.sendall(b"POST /validate HT")
        slow_head.append(tls)
    slow_body: list[socket.socket] = []
    for _ in range(4):
        tls = tls_connection(server)
        tls.sendall(
            b"POST /validate HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\n"
            b"Content-Length: 100000\r\n\r\n" + REVIEW[:100].encode()
        )
        slow_body.append(tls)
    opened_all = time.monotonic()
    trickle = Trickle(
        [(s, b"TP/1.1\r\nHost: localhost\r\nX-Slow: " + b"a" * 64) for s in slow_head]
        + [(s, b" ") for s in slow_body]
    )
    attack = [*idle, *slow_tls, *slow_head, *slow_body]
    try:
        under_attack = latencies(server)
        print(
            f"\nreview latency, new TLS connection each: median {statistics.median(baseline):.3f} s"
            f" alone, {statistics.median(under_attack):.3f} s (max {max(under_attack):.3f} s) "
            f"with {len(attack)} idle and slow connections open"
        )
        assert max(under_attack) < 1.0, (baseline, under_attack)
        # The attack was in force all along: the server had closed none of it yet.
        assert time.monotonic() - opened_all < CLIENT_TIMEOUT - CLOSE_SLACK
        assert closed(attack) == {}

        # Every one is closed at its deadline, counted from its accept, whatever it trickles.
        wait = opened_all + CLIENT_TIMEOUT + CLOSE_SLACK - time.monotonic()
        answers = closed(attack, wait)
        assert len(answers) == len(attack), f"{len(attack) - len(answers)} outlived the deadline"
        assert time.monotonic() - opened > CLIENT_TIMEOUT - 0.5
    finally:
        trickle.stop()
    for sock in slow_head + slow_body:
        assert answers[sock].startswith(b"HTTP/1.1 408 Request Timeout\r\n"), answers[sock]
        assert b'"the request was not complete within 10 seconds"' in answers[sock]
    for sock in idle + slow_tls:
        assert answers[sock] == b""
    for sock in attack:
        sock.close()

    after = latencies(server)
    assert max(after) < 1.0, after
    metrics = server.get("/metrics").text
    assert metric(metrics, 'trustgate_client_connections_closed_total{reason="timeout"}') >= len(
        attack
    )
    assert metric(metrics, 'trustgate_client_connections{state="busy"}') <= 1
    log = server.log_text()
    assert "Traceback" not in log
    assert "Logging error" not in log


@pytest.mark.parametrize(
    "codings",
    [
        b"Transfer-Encoding: identity\r\nTransfer-Encoding: chunked\r\n",
        b"Transfer-Encoding: gzip\r\nTransfer-Encoding: chunked\r\n",
    ],
    ids=["identity then chunked", "gzip then chunked"],
)
def test_dripping_behind_two_transfer_encodings_holds_no_thread(
    server: Server, codings: bytes
) -> None:
    """20 clients announce a chunked body behind a second Transfer-Encoding line, then drip it.

    The framing judged such a request complete at its head, while gunicorn's
    parser read a chunked body from the socket in a pool thread: a byte every
    3 s held a thread for good, and 20 such clients held all 16, so a review
    got no answer. Now each is refused with 400 and closed at once.
    """
    drippers = []
    for _ in range(20):
        tls = tls_connection(server)
        tls.sendall(
            b"POST /validate HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\n"
            + codings
            + b"\r\n"
        )
        drippers.append(tls)
    drip = Trickle([(sock, b"1\r\n{\r\n") for sock in drippers], interval=3.0)
    try:
        time.sleep(0.5)
        started = time.monotonic()
        result = server.post(REVIEW, timeout=15)
        assert time.monotonic() - started < 3.0
        assert result.status_code == 200, result.text
        answers = closed(drippers, 5.0)
    finally:
        drip.stop()
    assert len(answers) == len(drippers), f"{len(drippers) - len(answers)} still open"
    for answer in answers.values():
        assert answer.startswith(b"HTTP/1.1 400 Bad Request\r\n"), answer
        assert b"\r\nConnection: close\r\n" in answer
        assert b"Transfer-Encoding is given more than once" in answer
    for sock in drippers:
        sock.close()
    refused = metric(
        server.get("/metrics").text,
        'trustgate_client_connections_closed_total{reason="refused"}',
    )
    assert refused >= len(drippers)
    assert "Traceback" not in server.log_text()


def test_clients_that_never_close_do_not_stall_the_loop(server: Server) -> None:
    """Closing after "Connection: close" waits for the client's FIN; never by blocking.

    gunicorn's gthread worker lingers up to 2 s per such connection in its event
    loop, blocking: 16 clients that ask to close and then keep their end open
    stall every other connection, for up to half a minute in all.
    """
    request = b"GET /healthz HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n"
    stubborn = []
    for _ in range(16):
        tls = tls_connection(server)
        tls.sendall(request)
        stubborn.append(tls)
    time.sleep(0.2)
    assert max(latencies(server, 3)) < 1.0
    for tls in stubborn:
        assert tls.recv(4096).startswith(b"HTTP/1.1 200 OK\r\n")
        tls.close()


def metric(text: str, sample: str) -> float:
    """The value of one sample in Prometheus text format."""
    for line in text.splitlines():
        if line.startswith(sample + " "):
            return float(line.split()[-1])
    raise AssertionError(f"{sample} not in the metrics:\n{text}")


def test_at_capacity_the_oldest_waiting_connection_makes_room(tmp_path: Path) -> None:
    """Past --max-connections, new clients are still accepted: the oldest idle one goes."""
    server = start_server(
        tmp_path, e2e_policies(tmp_path), serve_args=["--max-connections", "100", "--threads", "4"]
    )
    try:
        idle = [socket.create_connection(address(server), timeout=10) for _ in range(150)]
        for _ in range(3):
            assert review_latency(server) < 1.0
        # Long before the 10 s deadline, the oldest idle connections were closed
        # for the newer ones and the reviews; the newest are still open.
        assert closed(idle[:50], 2.0) == dict.fromkeys(idle[:50], b"")
        assert closed(idle[-40:]) == {}
        evicted = metric(
            server.get("/metrics").text,
            'trustgate_client_connections_closed_total{reason="evicted"}',
        )
        assert evicted >= 50
        for sock in idle:
            sock.close()
    finally:
        assert stop_server(server) == 0


def test_client_timeout_option_and_oversized_head(tmp_path: Path) -> None:
    """--client-timeout sets the deadline; a head past 64 KiB gets 431 without waiting for it."""
    server = start_server(tmp_path, e2e_policies(tmp_path), serve_args=["--client-timeout", "1.5"])
    try:
        slow = tls_connection(server)
        slow.sendall(b"POST /validate HTTP/1.1\r\nHost: localhost\r\n")
        started = time.monotonic()
        answer = closed_by_server_within(slow, 5.0)
        assert 1.0 < time.monotonic() - started < 1.5 + CLOSE_SLACK
        assert answer.startswith(b"HTTP/1.1 408 ")
        assert b"not complete within 1.5 seconds" in answer

        big = tls_connection(server)
        big.sendall(b"GET /healthz HTTP/1.1\r\nHost: localhost\r\nX-Pad: " + b"a" * 70_000)
        answer = closed_by_server_within(big, 1.0)
        assert answer.startswith(b"HTTP/1.1 431 ")
        assert b"the request head is longer than 65536 bytes" in answer

        # A client that waits for "100 Continue" gets it at once, and once.
        asking = tls_connection(server)
        asking.sendall(
            b"POST /validate HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\n"
            b"Expect: 100-continue\r\nContent-Length: %d\r\n\r\n" % len(REVIEW)
        )
        assert asking.recv(4096) == b"HTTP/1.1 100 Continue\r\n\r\n"
        asking.sendall(REVIEW.encode())
        answer = asking.recv(65536)
        assert answer.startswith(b"HTTP/1.1 200 OK\r\n"), answer
        asking.close()

        # Keep-alive still works, and a second request trickled on a kept-alive
        # connection meets the same deadline.
        kept = tls_connection(server)
        request = b"GET /healthz HTTP/1.1\r\nHost: localhost\r\n\r\n"
        kept.sendall(request + request[:10])
        first = kept.recv(4096)
        assert first.startswith(b"HTTP/1.1 200 ")
        rest = closed_by_server_within(kept, 5.0)
        assert b'{"status":"ok"}HTTP/1.1 408 ' in first + rest
    finally:
        assert stop_server(server) == 0


def closed_by_server_within(sock: socket.socket, seconds: float) -> bytes:
    answer = closed([sock], seconds)
    assert sock in answer, f"still open after {seconds} s"
    return answer[sock]


def test_sigterm_shutdown_logs_cleanly(tmp_path: Path) -> None:
    """gunicorn's log format prints the process id: every line must come out, no logging error."""
    server = start_server(tmp_path, e2e_policies(tmp_path))
    assert review_latency(server) < 5
    assert stop_server(server) == 0
    log = server.log_text()
    assert "Logging error" not in log
    assert "Traceback" not in log
    for line in ("Handling signal: term", "Worker exiting (pid: ", "Shutting down: Master"):
        assert line in log, log
