"""Connections opened at once spread over the workers: ``trustgate serve --workers 2``.

A client pool (the API server's) opens its keep-alive connections together.
Without balancing, the worker that wakes first often accepts all of them and
the other stays idle. Here the connections are counted where they live: the
kernel's table of TCP sockets (/proc/net/tcp) names each socket's inode, and
each worker's open descriptors (/proc/<pid>/fd) name the inodes it holds.
"""

from __future__ import annotations

import http.client
import json
import os
import signal
import ssl
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.integration.conftest import Server, e2e_policies, start_server, stop_server, wait_for
from tests.support.kube import pod_spec, review, workload

pytestmark = pytest.mark.e2e

CONNECTIONS = 8
#: Each cycle that balances by chance without the balance makes a pass less likely.
CYCLES = 8
_ESTABLISHED = "01"


@pytest.fixture(scope="module")
def two_workers(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    tmp = tmp_path_factory.mktemp("balance")
    server = start_server(tmp, e2e_policies(tmp), serve_args=["--workers", "2"])
    yield server
    stop_server(server)


def port_of(server: Server) -> int:
    return int(server.url.rsplit(":", 1)[1])


def worker_pids(server: Server, other_than: tuple[int, ...] = ()) -> list[int]:
    """The master's children: the workers (both, once both are up), none of ``other_than``."""
    pid = server.process.pid
    children = Path(f"/proc/{pid}/task/{pid}/children")
    found: list[int] = []

    def both() -> bool:
        found[:] = [int(p) for p in children.read_text().split()]
        return len(found) == 2 and not set(found) & set(other_than)

    assert wait_for(both, timeout=10), found
    return found


def established_inodes(port: int) -> set[int]:
    """Inodes of the established TCP sockets whose local port is ``port`` (the server's side)."""
    inodes = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with open(table) as rows:
            next(rows)
            for row in rows:
                fields = row.split()
                local, state, inode = fields[1], fields[3], int(fields[9])
                if int(local.rsplit(":", 1)[1], 16) == port and state == _ESTABLISHED:
                    inodes.add(inode)
    return inodes


def socket_inodes(pid: int) -> set[int]:
    """Inodes of the sockets process ``pid`` holds open."""
    inodes = set()
    directory = f"/proc/{pid}/fd"
    for fd in os.listdir(directory):
        try:
            target = os.readlink(f"{directory}/{fd}")
        except FileNotFoundError:  # closed meanwhile
            continue
        if target.startswith("socket:["):
            inodes.add(int(target[len("socket:[") : -1]))
    return inodes


def held_by_each(server: Server, pids: list[int]) -> dict[int, int]:
    """How many established connections each worker holds."""
    connections = established_inodes(port_of(server))
    return {pid: len(connections & socket_inodes(pid)) for pid in pids}


def open_at_once(server: Server, count: int) -> list[http.client.HTTPSConnection]:
    """``count`` TLS connections opened together (a barrier), one review answered on each."""
    context = ssl.create_default_context(cafile=str(server.ca))
    body = json.dumps(review(workload("Deployment", pod_spec("quay.io/acme/api:1.0"))))
    barrier = threading.Barrier(count)
    opened: list[http.client.HTTPSConnection] = []
    failures: list[str] = []
    lock = threading.Lock()

    def one() -> None:
        conn = http.client.HTTPSConnection(
            "localhost", port_of(server), context=context, timeout=10
        )
        with lock:
            opened.append(conn)
        try:
            barrier.wait(timeout=10)
            conn.request("POST", "/validate", body, {"Content-Type": "application/json"})
            response = conn.getresponse()
            answer = json.loads(response.read())
            if response.status != 200 or answer["response"]["allowed"] is not True:
                failures.append(f"{response.status} {answer}")
        except (OSError, http.client.HTTPException, threading.BrokenBarrierError) as exc:
            failures.append(repr(exc))

    threads = [threading.Thread(target=one) for _ in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(20)
    assert not failures, failures
    return opened


def until_both_serve(server: Server, pids: list[int]) -> None:
    """Wait until each worker has accepted a connection: it is in its loop, balance joined.

    The server answers /healthz as soon as one worker has loaded the app; the
    other may still be loading it, and meanwhile the first rightly takes every
    connection. One connection at a time, both idle workers race to accept.
    """
    seen: set[int] = set()
    deadline = time.monotonic() + 30
    while seen != set(pids):
        assert time.monotonic() < deadline, f"only {seen} of {pids} accepted connections"
        (conn,) = open_at_once(server, 1)
        seen |= {pid for pid, n in held_by_each(server, pids).items() if n}
        conn.close()
        time.sleep(0.05)


def balanced_cycles(server: Server, pids: list[int], cycles: int) -> None:
    """``cycles`` times: open CONNECTIONS at once, check each worker holds its half, close."""
    port = port_of(server)
    until_both_serve(server, pids)
    assert wait_for(lambda: not established_inodes(port), timeout=10)
    time.sleep(0.35)
    for cycle in range(cycles):
        opened = open_at_once(server, CONNECTIONS)
        try:
            held = held_by_each(server, pids)
            assert sum(held.values()) == CONNECTIONS, held
            # 4 each, give or take one: not 8 and 0, nor 6 and 2.
            assert all(3 <= n <= 5 for n in held.values()), f"cycle {cycle}: {held}"
        finally:
            for conn in opened:
                conn.close()
        # The workers see the closes and publish counts of 0 again (every 0.25 s).
        assert wait_for(lambda: not established_inodes(port), timeout=10)
        time.sleep(0.35)


def test_connections_opened_at_once_spread_over_both_workers(two_workers: Server) -> None:
    server = two_workers
    balanced_cycles(server, worker_pids(server), CYCLES)
    # The server answered everything and is still serving.
    assert server.get("/healthz").status_code == 200


def test_a_killed_worker_strands_no_connection_and_its_replacement_balances(
    tmp_path: Path,
) -> None:
    """Killed, a worker leaves its entry (count 0) live for a second: the survivor defers
    each connection at most max_defer, then takes it; the replacement joins a slot."""
    server = start_server(tmp_path, e2e_policies(tmp_path), serve_args=["--workers", "2"])
    try:
        pids = worker_pids(server)
        until_both_serve(server, pids)
        victim, survivor = pids
        os.kill(victim, signal.SIGKILL)
        started = time.monotonic()
        opened = open_at_once(server, CONNECTIONS)  # every one answered (it asserts)
        assert time.monotonic() - started < 5
        for conn in opened:
            conn.close()
        balanced_cycles(server, worker_pids(server, other_than=(victim,)), 2)
        assert survivor in worker_pids(server)
    finally:
        stop_server(server)
