"""The shared cache end to end: two `trustgate serve` processes, one real Redis, one registry.

The registry sits behind a counting proxy, so each test sees exactly how many
calls a review made. The two servers stand for two replicas of the webhook.
"""

from __future__ import annotations

import re
import secrets
import shutil
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.integration.conftest import Server, start_server, stop_server, wait_for
from tests.integration.test_signatures_e2e import policy, sign
from tests.support.cosign import generate_key, public_pem
from tests.support.countingproxy import CountingProxy
from tests.support.hostileredis import DrippingRedis, FloodingRedis
from tests.support.redisserver import RedisServer
from tests.support.registry import Registry, default_layer, push_image
from webhook.cache.shared import Codec, canonical_key, redis_key, seal
from webhook.policy.loader import load_directory
from webhook.services import SHARED_TYPES
from webhook.signatures.check import SignatureOutcome, trust_fingerprint

pytestmark = pytest.mark.e2e

RELEASE = generate_key("ecdsa-p256")
ROTATED = generate_key("ecdsa-p256")
KEY = secrets.token_bytes(32)
RETRY_SECONDS = 0.5


@dataclass
class Pair:
    """Two servers sharing one Redis, the proxy before the registry, and their files."""

    a: Server
    b: Server
    proxy: CountingProxy
    registry: Registry
    policies: Path

    def image(self, repository: str, *, signed_by: object | None = RELEASE) -> tuple[str, str]:
        """Push (and sign) a new image; its reference names the proxy's host."""
        digest = push_image(
            self.registry,
            repository,
            tag="v1",
            layers=[default_layer(content=secrets.token_bytes(16))],
        )
        if signed_by is not None:
            sign(self.registry, repository, digest, signed_by)
        return f"{self.proxy.host}/{repository}:v1", digest

    def signature_key(self, repository: str, digest: str, policy_name: str) -> tuple[str, bytes]:
        """Where the servers share the signature outcome of this image, and its sealed name."""
        chosen = next(p for p in load_directory(self.policies) if p.name == policy_name)
        signatures = chosen.signatures
        assert signatures is not None
        basis = trust_fingerprint(signatures, signatures.authorities)
        key = (f"{self.proxy.host}/{repository}", digest, basis)
        where, name = redis_key("verified", key), canonical_key("verified", key)
        assert where is not None and name is not None
        return where, name


def metric(server: Server, name: str, labels: str = "") -> float:
    """The sum of a metric's samples whose labels contain ``labels``."""
    text = server.get("/metrics").text
    pattern = re.compile(rf"^{name}(?:\{{([^}}]*)\}})? (\S+)$", re.M)
    return sum(float(v) for found, v in pattern.findall(text) if labels in (found or ""))


@pytest.fixture(scope="module")
def pair(
    registry: Registry, redis_server: RedisServer, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Pair]:
    tmp = tmp_path_factory.mktemp("shared")
    proxy = CountingProxy(registry.url)
    policies = tmp / "policies"
    (policies / "keys").mkdir(parents=True)
    (policies / "keys" / "release.pub").write_text(public_pem(RELEASE))
    (policies / "keys" / "rotated.pub").write_text(public_pem(ROTATED))
    (policies / "signed.yaml").write_text(policy("signed", proxy.host))
    (policies / "rotating.yaml").write_text(policy("rotating", proxy.host, namespaces='["rot-*"]'))
    key_file = tmp / "cache.key"
    key_file.write_bytes(KEY.hex().encode())
    config = (
        "deadlineSeconds: 5\n"
        "policies: {reloadIntervalSeconds: 0.2}\n"
        f'registries: {{"{proxy.host}": {{insecure: true}}}}\n'
        "cache:\n"
        "  failureTTL: 1\n"
        f"  shared: {{url: '{redis_server.url}', keyFile: '{key_file}',\n"
        f"           timeoutMilliseconds: 200, retrySeconds: {RETRY_SECONDS}}}\n"
    )
    servers = []
    for name in ("a", "b"):
        (tmp / name).mkdir()
        servers.append(start_server(tmp / name, policies, config))
    yield Pair(servers[0], servers[1], proxy, registry, policies)
    for server in servers:
        assert stop_server(server) == 0
        shutil.rmtree(Path(server.log).parent / "certs", ignore_errors=True)
    proxy.stop()


@pytest.fixture(autouse=True)
def redis_up(redis_server: RedisServer) -> None:
    if redis_server.process is None or redis_server.process.poll() is not None:
        redis_server.start()


def test_a_verdict_made_by_one_server_costs_the_other_no_registry_call(pair: Pair) -> None:
    image, _ = pair.image("shared/one")
    pair.proxy.reset()
    assert pair.a.decide(image)["allowed"] is True
    cold = pair.proxy.requests
    assert cold >= 3  # tag -> digest, the .sig manifest, the signed payload
    pair.proxy.reset()
    assert pair.b.decide(image)["allowed"] is True
    assert pair.proxy.requests == 0, pair.proxy.paths
    assert metric(pair.b, "trustgate_shared_cache_lookups_total", 'result="hit"') >= 2
    # Warm in b now: no registry call, and not even a Redis call.
    lookups = metric(pair.b, "trustgate_shared_cache_lookups_total")
    assert pair.b.decide(image)["allowed"] is True
    assert metric(pair.b, "trustgate_shared_cache_lookups_total") == lookups
    assert pair.proxy.requests == 0
    ready = pair.b.get("/readyz").json()["sharedCache"]
    assert ready["state"] == "up"
    assert ready["url"].startswith("redis://127.0.0.1:")


def test_a_denial_is_shared_only_briefly(pair: Pair) -> None:
    image, _ = pair.image("shared/unsigned", signed_by=None)
    assert "no signature found" in pair.a.decide(image)["status"]["message"]
    pair.proxy.reset()
    assert pair.b.decide(image)["allowed"] is False
    assert pair.proxy.requests == 0  # the digest (60 s) and the denial (1 s) are shared
    time.sleep(1.3)  # failureTTL: 1
    pair.proxy.reset()
    assert pair.a.decide(image)["allowed"] is False
    assert pair.proxy.requests >= 1, "the expired denial was reused"


@pytest.mark.parametrize("attack", ["forged", "replayed"])
def test_a_forged_or_replayed_admission_in_redis_does_not_admit(
    pair: Pair, redis_server: RedisServer, attack: str
) -> None:
    """Someone who can write to Redis plants "verified" for an unsigned image: still denied."""
    signed, signed_digest = pair.image(f"attack/{attack}-signed")
    assert pair.a.decide(signed)["allowed"] is True
    genuine_key, _ = pair.signature_key(f"attack/{attack}-signed", signed_digest, "signed")
    genuine = redis_server.client().get(genuine_key)
    assert genuine, "the server shares its outcome under the key the attack aims at"

    unsigned, digest = pair.image(f"attack/{attack}-unsigned", signed_by=None)
    target, name = pair.signature_key(f"attack/{attack}-unsigned", digest, "signed")
    if attack == "replayed":
        planted = genuine  # a genuine entry, about another image
    else:
        payload = Codec(SHARED_TYPES).encode(SignatureOutcome(("release",), (), 1))
        assert payload is not None
        planted = seal(b"guessed-key".ljust(32, b"!"), "verified", name, 2**40, payload)
    redis_server.client().set(target, planted)
    rejected = metric(pair.b, "trustgate_shared_cache_rejected_entries_total")
    answer = pair.b.decide(unsigned)
    assert answer["allowed"] is False
    assert "no signature found" in answer["status"]["message"]
    assert metric(pair.b, "trustgate_shared_cache_rejected_entries_total") == rejected + 1
    assert pair.b.logged("shared cache entry ignored")


def test_a_reloaded_policy_set_does_not_reuse_old_verdicts(pair: Pair) -> None:
    image, _ = pair.image("rotating/app")
    assert pair.a.decide(image, "rot-1")["allowed"] is True
    fingerprints = {s.get("/readyz").json()["fingerprint"] for s in (pair.a, pair.b)}
    (pair.policies / "rotating.yaml").write_text(
        policy("rotating", pair.proxy.host, namespaces='["rot-*"]', keys=("rotated",))
    )
    for server in (pair.a, pair.b):
        assert wait_for(lambda s=server: s.get("/readyz").json()["fingerprint"] not in fingerprints)
    pair.proxy.reset()
    answer = pair.b.decide(image, "rot-1")
    assert answer["allowed"] is False
    assert "rotated:" in answer["status"]["message"]
    assert pair.proxy.requests >= 2  # verified again against the new key


def test_redis_killed_mid_run_reviews_go_on_and_sharing_resumes(
    pair: Pair, redis_server: RedisServer
) -> None:
    before, _ = pair.image("outage/before")
    assert pair.a.decide(before)["allowed"] is True
    redis_server.stop()
    try:
        started = time.monotonic()
        for number in range(4):
            image, _ = pair.image(f"outage/during-{number}")
            unsigned, _ = pair.image(f"outage/unsigned-{number}", signed_by=None)
            for server in (pair.a, pair.b):
                assert server.decide(image)["allowed"] is True
                assert server.decide(unsigned)["allowed"] is False
        assert time.monotonic() - started < 20  # 16 reviews, none waiting out a deadline
        for server in (pair.a, pair.b):
            ready = server.get("/readyz").json()
            assert ready["ready"] is True
            assert ready["sharedCache"]["state"] == "down"
            assert "local caches only" in ready["sharedCache"]["note"]
            assert metric(server, "trustgate_shared_cache_up") == 0
            assert metric(server, "trustgate_shared_cache_errors_total") >= 1
            assert server.logged("shared cache unreachable")
    finally:
        redis_server.start()  # empty: a Redis that lost its memory
    time.sleep(RETRY_SECONDS + 0.2)
    # The next call of each server probes Redis and finds it back.
    for server in (pair.a, pair.b):
        assert server.decide(pair.image("outage/probe")[0])["allowed"] is True
        assert server.get("/readyz").json()["sharedCache"]["state"] == "up"
    after, _ = pair.image("outage/after")
    assert pair.a.decide(after)["allowed"] is True
    pair.proxy.reset()
    assert pair.b.decide(after)["allowed"] is True
    assert pair.proxy.requests == 0, pair.proxy.paths
    assert metric(pair.b, "trustgate_shared_cache_up") == 1


def test_signed_images_are_admitted_while_redis_drips(
    pair: Pair, tmp_path_factory: pytest.TempPathFactory
) -> None:
    """A Redis that answers one byte per millisecond (no read ever waits long): each call
    ends at its own 200 ms deadline, the breaker skips Redis after 3 of them, and
    signed images are admitted in time, unsigned ones denied on their merits."""
    tmp = tmp_path_factory.mktemp("dripping")
    dripper = DrippingRedis()
    key_file = tmp / "cache.key"
    key_file.write_bytes(KEY.hex().encode())
    config = (
        "deadlineSeconds: 5\n"
        f'registries: {{"{pair.proxy.host}": {{insecure: true}}}}\n'
        f"cache: {{shared: {{url: '{dripper.url}', keyFile: '{key_file}',\n"
        "                   timeoutMilliseconds: 200, retrySeconds: 600}}\n"
    )
    server = start_server(tmp, pair.policies, config)
    try:
        started = time.monotonic()
        for number in range(3):
            signed, _ = pair.image(f"drip/signed-{number}")
            unsigned, _ = pair.image(f"drip/unsigned-{number}", signed_by=None)
            assert server.decide(signed)["allowed"] is True
            assert "no signature found" in server.decide(unsigned)["status"]["message"]
        # 6 reviews; 3 Redis calls of 200 ms at most before Redis is skipped. The drip of
        # one reply alone takes 2 s, so a client bounded per read only is far slower.
        assert time.monotonic() - started < 4.5
        assert dripper.commands <= 3
        ready = server.get("/readyz").json()["sharedCache"]
        assert ready["state"] == "down"
        assert "in time" in ready["lastError"]
        assert metric(server, "trustgate_shared_cache_up") == 0
    finally:
        assert stop_server(server) == 0
        dripper.stop()


def test_a_burst_of_reviews_of_new_images_verifies_each_once(pair: Pair) -> None:
    """16 concurrent reviews of each of 3 new signed images, split over two servers that
    share Redis: concurrent reviews wait for one verification, in a server (single
    flight) and across servers (the in-flight mark), so the registry sees about one cold
    verification per image, not one per review."""
    images = [pair.image(f"burst/app-{number}")[0] for number in range(3)]
    pair.proxy.reset()
    answers: list[bool] = []
    lock = threading.Lock()

    def review(server: Server, image: str) -> None:
        allowed = server.decide(image)["allowed"] is True
        with lock:
            answers.append(allowed)

    threads = [
        threading.Thread(target=review, args=(server, image))
        for image in images
        for _ in range(8)
        for server in (pair.a, pair.b)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert answers == [True] * len(threads)
    per_image = pair.proxy.requests / len(images)
    # One cold verification is 3 requests (tag, .sig manifest, signed payload); without
    # coalescing this burst makes 25-30 per image. Two servers may each verify once.
    assert per_image <= 6, pair.proxy.paths
    assert (
        metric(pair.a, "trustgate_cache_lookups_total", 'result="coalesced"')
        + metric(pair.b, "trustgate_cache_lookups_total", 'result="coalesced"')
        >= 1
    )


def worker_peak_rss(server: Server) -> int:
    """The highest resident memory any worker of the server has had, in bytes (Linux)."""
    pid = server.process.pid
    children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    peaks = [0]
    for child in children:
        for line in Path(f"/proc/{child}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                peaks.append(int(line.split()[1]) * 1024)
    return max(peaks)


def test_a_flooding_redis_is_not_read(pair: Pair, tmp_path_factory: pytest.TempPathFactory) -> None:
    """A Redis answering every lookup with a 300 MB reply: the worker reads its
    announcement only, drops the connection, counts an oversized reply, and admits
    signed images; its memory never holds the flood (a worker is about 100 MB)."""
    tmp = tmp_path_factory.mktemp("flooding")
    flooder = FloodingRedis()
    key_file = tmp / "cache.key"
    key_file.write_bytes(KEY.hex().encode())
    config = (
        "deadlineSeconds: 5\n"
        f'registries: {{"{pair.proxy.host}": {{insecure: true}}}}\n'
        f"cache: {{shared: {{url: '{flooder.url}', keyFile: '{key_file}',\n"
        "                   timeoutMilliseconds: 250, retrySeconds: 0.2}}\n"
    )
    server = start_server(tmp, pair.policies, config)
    try:
        for number in range(3):
            signed, _ = pair.image(f"flood/signed-{number}")
            assert server.decide(signed)["allowed"] is True
            time.sleep(0.3)  # past retrySeconds: the next review probes Redis again
        assert flooder.commands >= 3
        assert flooder.sent < 64 * 1024 * 1024, "the worker kept reading the flood"
        assert worker_peak_rss(server) < 300 * 1024 * 1024
        assert metric(server, "trustgate_shared_cache_lookups_total", 'result="oversized"') >= 3
    finally:
        assert stop_server(server) == 0
        flooder.stop()
