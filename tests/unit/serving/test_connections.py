"""A worker's connection table: counts, the byte budget, and which connection goes first."""

from __future__ import annotations

import selectors
import socket
from collections.abc import Iterator
from types import SimpleNamespace

import prometheus_client
import pytest

from webhook.serving.connections import Conn, Connections
from webhook.serving.connstats import ConnectionStats
from webhook.serving.framing import RequestFramer


class Table:
    """A table over a real selector, and the client ends of its connections."""

    def __init__(self, largest_request: int = 1) -> None:
        self.poller = selectors.DefaultSelector()
        self.stats = ConnectionStats(client_timeout=10.0, capacity=8)
        self.registry = prometheus_client.CollectorRegistry()
        self.stats.attach(self.registry)
        self.conns = Connections(
            self.poller, self.stats, client_timeout=10.0, largest_request=largest_request
        )
        self.clients: list[socket.socket] = []

    def open(self, expires: float = 100.0) -> Conn:
        server, client = socket.socketpair()
        self.clients.append(client)
        conn = Conn(SimpleNamespace(is_ssl=False), server, ("peer", 1), ("here", 2), _framer())
        conn.callback = lambda _fileobj: None
        conn.expires = expires
        self.conns.add(conn)
        return conn

    def closed(self) -> dict[str, float]:
        """Closings by reason, as the metric counts them."""
        return {
            sample.labels["reason"]: sample.value
            for metric in self.registry.collect()
            for sample in metric.samples
            if sample.name == "trustgate_client_connections_closed_total" and sample.value
        }

    def close(self) -> None:
        self.conns.drop_all()
        for client in self.clients:
            client.close()
        self.poller.close()


def _framer() -> RequestFramer:
    return RequestFramer(64 * 1024, 1024)


@pytest.fixture
def table() -> Iterator[Table]:
    made = Table()
    yield made
    made.close()


def test_a_connection_is_counted_from_add_to_drop_once(table: Table) -> None:
    conn = table.open()
    assert (table.conns.open, table.conns.waiting, table.conns.busy) == (1, 1, 0)
    table.conns.drop(conn)
    table.conns.drop(conn)
    assert (table.conns.open, table.conns.waiting) == (0, 0)
    assert conn.sock.fileno() == -1


def test_a_taken_request_leaves_its_pipelined_bytes_and_makes_the_connection_busy(
    table: Table,
) -> None:
    conn = table.open()
    table.conns.received(conn, b"first|second")
    assert table.conns.take(conn, 6) == b"first|"
    assert bytes(conn.buf) == b"second"
    assert table.conns.buffered == len(b"second")
    assert (table.conns.waiting, table.conns.busy) == (0, 1)
    table.conns.wait(conn)
    assert (table.conns.waiting, table.conns.busy) == (1, 0)


def test_eviction_takes_the_oldest_waiting_connection(table: Table) -> None:
    oldest, newest = table.open(), table.open()
    assert table.conns.evict_oldest()
    assert oldest.closed and not newest.closed
    assert table.closed() == {"evicted": 1}


def test_eviction_takes_a_lingering_connection_first_without_counting_it(table: Table) -> None:
    waiting, closing = table.open(), table.open()
    table.conns.close_gracefully(closing)
    assert table.conns.evict_oldest()
    assert closing.closed and not waiting.closed
    assert table.closed() == {}


def test_past_the_budget_the_oldest_other_incomplete_requests_are_shed(table: Table) -> None:
    budget = table.conns.budget = 100
    idle, oldest, middle, receiving = table.open(), table.open(), table.open(), table.open()
    table.conns.received(oldest, b"a" * (budget // 2))
    table.conns.received(middle, b"b" * (budget // 2))
    table.conns.received(receiving, b"c" * (budget // 4))
    assert oldest.closed and not middle.closed and not receiving.closed and not idle.closed
    assert table.conns.buffered == budget // 2 + budget // 4
    assert table.closed() == {"shed": 1}


def test_past_its_deadline_a_partial_request_is_answered_408(table: Table) -> None:
    partial, idle, kept = table.open(expires=1.0), table.open(expires=1.0), table.open(1.0)
    kept.kept = True
    later = table.open(expires=5.0)
    table.conns.received(partial, b"POST /validate HTTP/1.1\r\n")
    table.conns.expire(now=2.0)
    assert table.clients[0].recv(1024).startswith(b"HTTP/1.1 408 Request Timeout\r\n")
    assert partial.closing and idle.closed and kept.closed and not later.closed
    assert table.closed() == {"timeout": 2}  # a kept-alive connection's idle end is no timeout
    assert table.conns.buffered == 0


def test_a_closing_connection_drains_until_its_client_closes(table: Table) -> None:
    conn = table.open()
    table.conns.close_gracefully(conn)
    assert conn.closing and table.conns.open == 1
    assert table.clients[0].recv(1) == b""  # the server's half-close
    table.clients[0].sendall(b"late bytes")
    table.conns.drain(conn)
    assert not conn.closed
    table.clients[0].close()
    table.conns.drain(conn)
    assert conn.closed and table.conns.open == 0
