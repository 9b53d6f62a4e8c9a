"""Every outbound call ends at the review's deadline, whatever the server does; per-host
limits, the circuit breaker and the byte budget, against hostile servers on 127.0.0.1."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator

import pytest

from tests.hostile import drip_tls, hang, hostile_server, trickle_body, trickle_headers
from tests.unit.registry.test_client import FakeRegistry, Reply
from webhook.errors import UpstreamError
from webhook.reference import ImageRef
from webhook.registry import Deadline, Network, NetworkLimits, RegistryClient, RegistrySettings
from webhook.registry.client import OCI_INDEX
from webhook.registry.network import HostFailure

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
        with pytest.raises(HostFailure, match=rf"{server.host} timed out.*deadline of 1 s"):
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


def test_the_breaker_opens_fails_fast_then_probes_and_closes(registry: FakeRegistry) -> None:
    events: list[tuple[str, str]] = []
    limits = NetworkLimits(failure_threshold=2, open_seconds=0.5)
    network = Network(limits, lambda event, host: events.append((event, host)))
    with hostile_server(hang) as server:
        client = client_for(server.host, network)
        ref = ImageRef(server.host, "acme/app", "1.0", None)
        for _ in range(2):
            with pytest.raises(HostFailure):
                client.resolve(ref, Deadline(0.3))
        assert network.state(server.host) == "open"
        started = time.monotonic()
        with pytest.raises(UpstreamError, match=rf"{server.host} is failing .*circuit breaker"):
            client.resolve(ref, Deadline(5.0))
        assert time.monotonic() - started < 0.1
        assert server.connections == 2
        time.sleep(0.6)
        with pytest.raises(HostFailure):  # the probe, which fails: open again
            client.resolve(ref, Deadline(0.3))
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
