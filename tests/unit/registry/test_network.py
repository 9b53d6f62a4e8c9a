"""Every outbound call ends at the review's deadline, whatever the server does; per-host
limits, the circuit breaker and the byte budget, against hostile servers on 127.0.0.1.

The breaker counts the host's own failures only (refused or reset connections, TLS
failures, 5xx answers, its own per-call timeouts), never calls cut off by their
review's deadline, never started, or refused by the per-host limit.
"""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Iterator

import pytest

from tests.support.hostile import drip_tls, hang, hostile_server, trickle_body, trickle_headers
from tests.unit.registry.test_client import FakeRegistry, Reply
from webhook.core.deadline import Deadline
from webhook.core.errors import UpstreamError
from webhook.core.reference import ImageRef
from webhook.registry.client import OCI_INDEX, RegistryClient, RegistrySettings
from webhook.registry.network import CallCut, HostFailure, HostRefused, Network, NetworkLimits

DIGEST = "sha256:" + "ab" * 32
#: Time allowed past the deadline: the reaper's shutdown and the error's way back.
SLACK = 1.0


@pytest.fixture
def registry() -> Iterator[FakeRegistry]:
    server = FakeRegistry()
    yield server
    server.close()


def client_for(host: str, network: Network | None = None, **settings: object) -> RegistryClient:
    # A per-read timeout far above the deadline: only the deadline can end these calls.
    return RegistryClient(
        {host: RegistrySettings(insecure=True, **settings)},  # type: ignore[arg-type]
        timeout=30.0,
        network=network,
    )


@pytest.mark.parametrize(
    ("behaviour", "call"),
    [
        (trickle_headers, "resolve"),
        (trickle_body, "manifest"),
        (hang, "resolve"),
    ],
)
def test_a_server_that_drips_cannot_outlive_the_deadline(behaviour: object, call: str) -> None:
    with hostile_server(behaviour) as server:  # type: ignore[arg-type]
        client = client_for(server.host)
        ref = ImageRef(server.host, "acme/app", "1.0", None)
        started = time.monotonic()
        with pytest.raises(CallCut, match=rf"{server.host} timed out.*deadline of 1 s"):
            if call == "resolve":
                client.resolve(ref, Deadline(1.0))
            else:
                client.manifest(ref, "1.0", Deadline(1.0))
        assert time.monotonic() - started < 1.0 + SLACK
        # The socket was shut down: the server sees the client hang up (its thread
        # notices at its next write, later on a loaded machine).
        wait_until = time.monotonic() + 5
        while time.monotonic() < wait_until:
            with server.lock:
                if server.open_for:
                    break
            time.sleep(0.05)
        with server.lock:
            assert server.open_for, "the client never hung up"


def test_a_tls_handshake_that_drips_cannot_outlive_the_deadline() -> None:
    with hostile_server(drip_tls, reads=False) as server:
        client = RegistryClient(timeout=30.0)  # HTTPS: the handshake itself drips
        ref = ImageRef(server.host, "acme/app", "1.0", None)
        started = time.monotonic()
        with pytest.raises(UpstreamError, match=rf"{server.host}.*deadline of 1 s"):
            client.resolve(ref, Deadline(1.0))
        assert time.monotonic() - started < 1.0 + SLACK


def test_a_slow_host_takes_only_its_slots_and_excess_calls_fail_fast() -> None:
    limits = NetworkLimits(concurrency=2, queue_seconds=0.2, failure_threshold=100)
    network = Network(limits)
    with hostile_server(hang) as server:
        client = client_for(server.host, network)
        ref = ImageRef(server.host, "acme/app", "1.0", None)
        errors: list[tuple[str, float]] = []

        def review() -> None:
            started = time.monotonic()
            try:
                client.resolve(ref, Deadline(2.0))
            except UpstreamError as exc:
                errors.append((exc.message, time.monotonic() - started))

        threads = [threading.Thread(target=review) for _ in range(6)]
        for thread in threads:
            thread.start()
            time.sleep(0.05)
        for thread in threads:
            thread.join(10)
    refused = [(m, t) for m, t in errors if "calls in flight" in m]
    assert len(refused) == 4, errors
    for message, elapsed in refused:
        assert f"{server.host} already has 2 calls in flight" in message
        assert elapsed < 0.2 + SLACK / 2
    assert server.connections == 2  # the excess never reached the host


def timing_out(host: str, network: Network) -> RegistryClient:
    """A client whose own per-call timeout (0.3 s) ends calls long before their deadline."""
    settings = {host: RegistrySettings(insecure=True)}
    return RegistryClient(settings, timeout=0.3, retries=0, network=network)


def test_the_breaker_opens_fails_fast_then_probes_and_closes(registry: FakeRegistry) -> None:
    events: list[tuple[str, str]] = []
    limits = NetworkLimits(failure_threshold=2, open_seconds=0.5)
    network = Network(limits, lambda event, host: events.append((event, host)))
    with hostile_server(hang) as server:
        client = timing_out(server.host, network)
        ref = ImageRef(server.host, "acme/app", "1.0", None)
        for _ in range(2):
            with pytest.raises(HostFailure, match=rf"{server.host} timed out"):
                client.resolve(ref, Deadline(5.0))
        assert network.state(server.host) == "open"
        started = time.monotonic()
        with pytest.raises(UpstreamError, match=rf"{server.host} is failing .*circuit breaker"):
            client.resolve(ref, Deadline(5.0))
        assert time.monotonic() - started < 0.1
        assert server.connections == 2
        time.sleep(0.6)
        with pytest.raises(HostFailure):  # the probe, which fails: open again
            client.resolve(ref, Deadline(5.0))
        assert network.state(server.host) == "open"
    assert ("breaker_open", server.host) in events
    assert ("breaker_half_open", server.host) in events
    assert ("breaker_rejected", server.host) in events
    # A host that answers closes its breaker at the first probe.
    host = registry.host
    registry.routes["HEAD /v2/acme/app/manifests/1.0"] = Reply(
        headers={"Docker-Content-Digest": DIGEST}
    )
    network._hosts[host] = network._hosts.pop(server.host)
    time.sleep(0.6)
    assert client_for(host, network).resolve(registry.ref(), Deadline(5.0)) == DIGEST
    assert network.state(host) == "closed"
    assert ("breaker_closed", host) in events


def test_the_byte_budget_covers_every_response_of_a_review(registry: FakeRegistry) -> None:
    # 16 pages of 700 KiB, each linking to the next: 11 MiB if read to the end.
    page = json.dumps({"schemaVersion": 2, "manifests": [], "pad": "x" * (700 * 1024)}).encode()
    path = f"/v2/acme/app/referrers/{DIGEST}"
    for n in range(16):
        link = f'<{path}?n={n + 1}>; rel="next"'
        reply = Reply(headers={"Content-Type": OCI_INDEX, "Link": link}, body=page)
        registry.routes[f"GET {path}?n={n}" if n else f"GET {path}"] = reply
    events: list[tuple[str, str]] = []
    client = client_for(registry.host, Network(observer=lambda e, h: events.append((e, h))))
    deadline = Deadline(5.0, max_bytes=2 * 1024 * 1024)
    with pytest.raises(
        UpstreamError, match=rf"more than 2097152 bytes .*the last of them from {registry.host}"
    ):
        client.referrers(registry.ref(), DIGEST, deadline)
    assert deadline.read_bytes < 2 * 1024 * 1024 + 1024 * 1024
    assert ("budget_exceeded", registry.host) in events


def test_a_kept_alive_connection_outlives_the_deadline_of_the_review_that_opened_it(
    registry: FakeRegistry,
) -> None:
    registry.routes["HEAD /v2/acme/app/manifests/1.0"] = Reply(
        headers={"Docker-Content-Digest": DIGEST}
    )
    client = client_for(registry.host)
    assert client.resolve(registry.ref(), Deadline(0.3)) == DIGEST
    time.sleep(0.5)  # the first review's deadline passes while the connection idles
    assert client.resolve(registry.ref(), Deadline(5.0)) == DIGEST
    first, second = registry.requests
    assert first.client_port == second.client_port  # the same connection, not shut down


# --- what the breaker counts ------------------------------------------------------------

HOST = "registry.example"


def recorder() -> tuple[list[str], Network]:
    events: list[str] = []
    limits = NetworkLimits(failure_threshold=2, open_seconds=30.0)
    return events, Network(limits, lambda event, host: events.append(event))


def test_calls_cut_by_their_deadline_or_never_started_do_not_count() -> None:
    events, network = recorder()
    with hostile_server(hang) as server:
        client = client_for(server.host, network)  # only the deadline ends these calls
        ref = ImageRef(server.host, "acme/app", "1.0", None)
        for _ in range(4):
            with pytest.raises(CallCut, match=rf"{server.host} timed out.*deadline of 0.2 s"):
                client.resolve(ref, Deadline(0.2))
        for _ in range(4):
            with pytest.raises(CallCut, match=rf"{server.host} timed out.*before its call"):
                client.manifest(ref, "1.0", Deadline(0.0))
        assert network.state(server.host) == "closed"
    assert "breaker_open" not in events
    assert events.count("deadline_exceeded") == 8


def test_a_timeout_whose_retry_the_deadline_cut_short_counts() -> None:
    events, network = recorder()
    with hostile_server(hang) as server:
        settings = {server.host: RegistrySettings(insecure=True)}
        # The first attempt times out on its own at 0.3 s; the retry 0.2 s later is cut.
        client = RegistryClient(settings, timeout=0.3, retries=1, network=network)
        ref = ImageRef(server.host, "acme/app", "1.0", None)
        for _ in range(2):
            with pytest.raises(HostFailure, match=f"{server.host} timed out"):
                client.resolve(ref, Deadline(0.6))
        assert network.state(server.host) == "open"
    assert events.count("breaker_open") == 1


def test_calls_refused_by_the_per_host_limit_do_not_count() -> None:
    network = Network(NetworkLimits(concurrency=1, queue_seconds=0.05, failure_threshold=1))
    held, release = threading.Event(), threading.Event()

    def hold() -> None:
        with network.call(HOST, Deadline(10.0)):
            held.set()
            release.wait(10)

    holder = threading.Thread(target=hold)
    holder.start()
    assert held.wait(5)
    try:
        for _ in range(3):
            refused = pytest.raises(HostRefused, match=f"{HOST} already has 1 calls in flight")
            with refused, network.call(HOST, Deadline(5.0)):
                pass
    finally:
        release.set()
        holder.join(5)
    assert network.state(HOST) == "closed"


def nobody_listening() -> str:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return f"127.0.0.1:{sock.getsockname()[1]}"


@pytest.mark.parametrize("failure", ["refused", "tls", "5xx", "timeout"])
def test_the_hosts_own_failures_open_its_breaker(registry: FakeRegistry, failure: str) -> None:
    events, network = recorder()
    with hostile_server(hang) as hanging:
        host, settings = registry.host, RegistrySettings(insecure=True)
        if failure == "refused":
            host = nobody_listening()
        elif failure == "tls":
            settings = RegistrySettings()  # HTTPS to a server that speaks plain HTTP
        elif failure == "timeout":
            host = hanging.host  # the call's own 0.3 s timeout, deadline 5 s away
        registry.routes["HEAD /v2/acme/app/manifests/1.0"] = Reply(status=500)
        timeout = 0.3 if failure == "timeout" else 5.0
        client = RegistryClient({host: settings}, timeout=timeout, retries=0, network=network)
        ref = ImageRef(host, "acme/app", "1.0", None)
        expected = {
            "refused": f"cannot reach {host}",
            "tls": f"TLS with {host} failed",
            "5xx": f"{host} answered 500",
            "timeout": f"{host} timed out",
        }[failure]
        for _ in range(2):
            with pytest.raises(HostFailure, match=expected):
                client.resolve(ref, Deadline(5.0))
        assert network.state(host) == "open"
        with pytest.raises(HostRefused, match=rf"{host} is failing \(2 consecutive"):
            client.resolve(ref, Deadline(5.0))
    assert events.count("breaker_open") == 1


def test_rate_limiting_is_not_a_failure(registry: FakeRegistry) -> None:
    events, network = recorder()
    registry.routes["HEAD /v2/acme/app/manifests/1.0"] = Reply(status=429)
    client = RegistryClient(
        {registry.host: RegistrySettings(insecure=True)}, retries=0, network=network
    )
    for _ in range(4):
        with pytest.raises(UpstreamError, match=f"rate limited by {registry.host}"):
            client.resolve(registry.ref(), Deadline(5.0))
    assert network.state(registry.host) == "closed"
    assert "breaker_open" not in events


def test_a_probe_cut_by_its_deadline_decides_nothing_and_the_next_call_probes() -> None:
    events: list[str] = []
    limits = NetworkLimits(failure_threshold=1, open_seconds=0.2)
    network = Network(limits, lambda event, host: events.append(event))
    with pytest.raises(HostFailure), network.call(HOST, Deadline(5.0)):
        raise HostFailure("connection refused")
    assert network.state(HOST) == "open"
    time.sleep(0.3)
    with pytest.raises(CallCut), network.call(HOST, Deadline(5.0)):
        raise CallCut("the review's deadline passed")
    assert network.state(HOST) == "half_open"
    # The next call probes; while it runs, others are refused at once.
    probing, release = threading.Event(), threading.Event()

    def probe() -> None:
        with network.call(HOST, Deadline(5.0)):
            probing.set()
            release.wait(5)

    prober = threading.Thread(target=probe)
    prober.start()
    assert probing.wait(5)
    try:
        with (
            pytest.raises(HostRefused, match="a probe is under way"),
            network.call(HOST, Deadline(5.0)),
        ):
            pass
    finally:
        release.set()
        prober.join(5)
    assert network.state(HOST) == "closed"
    assert events == [
        "breaker_open",
        "breaker_half_open",
        "breaker_rejected",
        "breaker_closed",
    ]


# --- the per-host limit queues legitimate work ------------------------------------------


def test_a_burst_queues_for_a_prompt_host_and_a_hanging_host_is_refused_fast(
    registry: FakeRegistry,
) -> None:
    # 64 calls, 8 at a time, each answered in 50 ms: the last wait about 0.35 s in line,
    # longer than queue_seconds, behind calls that are never slow.
    registry.routes["HEAD /v2/acme/app/manifests/1.0"] = Reply(
        headers={"Docker-Content-Digest": DIGEST}, delay=0.05
    )
    limits = NetworkLimits(concurrency=8, queue_seconds=0.25)
    network = Network(limits)
    results: list[str] = []
    lock = threading.Lock()

    def call(host: str, deadline: float) -> None:
        client = client_for(host, network)
        try:
            result = client.resolve(ImageRef(host, "acme/app", "1.0", None), Deadline(deadline))
        except UpstreamError as exc:
            result = exc.message
        with lock:
            results.append(result)

    burst = [threading.Thread(target=call, args=(registry.host, 20.0)) for _ in range(64)]
    for thread in burst:
        thread.start()
    for thread in burst:
        thread.join(30)
    assert results == [DIGEST] * 64

    results.clear()
    with hostile_server(hang) as server:
        held = [threading.Thread(target=call, args=(server.host, 3.0)) for _ in range(8)]
        for thread in held:
            thread.start()
        until = time.monotonic() + 5
        while server.connections < 8 and time.monotonic() < until:
            time.sleep(0.01)
        time.sleep(0.3)  # all 8 slots held, every call past queue_seconds
        started = time.monotonic()
        refused = [threading.Thread(target=call, args=(server.host, 3.0)) for _ in range(8)]
        for thread in refused:
            thread.start()
        for thread in refused:
            thread.join(10)
        elapsed = time.monotonic() - started
        for thread in held:
            thread.join(10)
    assert sum("already has 8 calls in flight" in r for r in results) == 8, results
    assert elapsed < 3.0 / 2  # refused well before the deadline those calls had
    assert server.connections == 8


def test_the_queue_is_first_come_first_served() -> None:
    network = Network(NetworkLimits(concurrency=1, queue_seconds=5.0))
    admitted: list[int] = []
    held, release = threading.Event(), threading.Event()

    def hold() -> None:
        with network.call(HOST, Deadline(10.0)):
            held.set()
            release.wait(10)

    def wait_in_line(n: int) -> None:
        with network.call(HOST, Deadline(10.0)):
            admitted.append(n)
            time.sleep(0.01)

    holder = threading.Thread(target=hold)
    holder.start()
    assert held.wait(5)
    waiting = []
    for n in range(6):
        waiting.append(threading.Thread(target=wait_in_line, args=(n,)))
        waiting[-1].start()
        until = time.monotonic() + 5
        while network.waiting(HOST) <= n and time.monotonic() < until:
            time.sleep(0.005)  # in line before the next arrives
        assert network.waiting(HOST) == n + 1
    release.set()
    for thread in [holder, *waiting]:
        thread.join(10)
    assert admitted == list(range(6))


def test_a_call_waiting_in_line_ends_at_its_deadline() -> None:
    network = Network(NetworkLimits(concurrency=1, queue_seconds=5.0, failure_threshold=1))
    held, release = threading.Event(), threading.Event()

    def hold() -> None:
        with network.call(HOST, Deadline(10.0)):
            held.set()
            release.wait(10)

    holder = threading.Thread(target=hold)
    holder.start()
    assert held.wait(5)
    try:
        cut = pytest.raises(CallCut, match=rf"{HOST} timed out: .*waited in line")
        with cut, network.call(HOST, Deadline(0.2)):
            pass
    finally:
        release.set()
        holder.join(5)
    assert network.state(HOST) == "closed"
