"""What the benchmarks set up alike: signed images in a registry, policy directories, reviews.

Replica benchmarks (several ``trustgate serve`` processes behind one counting registry)
share :class:`Replicas` and :class:`Clients`. Like timing.py, this expects the repository
root on ``sys.path`` (each script puts it there before importing its siblings).
"""

from __future__ import annotations

import random
import secrets
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import requests

from tests.integration.conftest import Server, start_server
from tests.support.cosign import PrivateKey, generate_key, public_pem, push_signature
from tests.support.countingproxy import CountingProxy
from tests.support.kube import pod_spec, review, workload
from tests.support.redisserver import RedisServer, start_redis
from tests.support.registry import Registry, default_layer, push_image, start_registry

#: The ``signatures`` section that trusts the key written next to the policy as release.pub.
SIGNED_BY_RELEASE = (
    "  signatures:\n    authorities:\n      - {name: release, key: {file: release.pub}}\n"
)


def push_app(
    registry: Registry,
    repository: str,
    *,
    content: bytes | None = None,
    signed_by: PrivateKey | None = None,
    host: str | None = None,
) -> str:
    """Push a one-layer image tagged v1 and, with ``signed_by``, cosign's ``.sig`` for it.

    ``content`` is the layer's file (default: default_layer's); the signature names the
    repository under ``host`` (default: the registry's own host). Returns the digest.
    """
    layer = default_layer() if content is None else default_layer(content=content)
    digest = push_image(registry, repository, tag="v1", layers=[layer])
    if signed_by is not None:
        reference = f"{host or registry.host}/{repository}"
        push_signature(registry, repository, digest, signed_by, reference=reference)
    return digest


def policy_head(*hosts: str) -> str:
    """An ImagePolicy ``p`` for namespaces ``prod-*`` and every image on ``hosts``, no checks."""
    registries = ", ".join(f'"{host}/**"' for host in hosts)
    return (
        "apiVersion: trustgate.dev/v1alpha1\nkind: ImagePolicy\nmetadata: {name: p}\n"
        f'spec:\n  match: {{namespaces: ["prod-*"]}}\n  registries: [{registries}]\n'
    )


def write_policy(directory: Path, text: str, key: PrivateKey | None = None) -> Path:
    """Create ``directory`` holding ``p.yaml`` (``text``) and, with ``key``, ``release.pub``."""
    directory.mkdir(parents=True)
    if key is not None:
        (directory / "release.pub").write_text(public_pem(key))
    (directory / "p.yaml").write_text(text)
    return directory


def key_policies(tmp: Path, key: PrivateKey, *hosts: str) -> tuple[Path, Path]:
    """Two policy directories under ``tmp`` for ``hosts``: signed by ``key``, and allowlist-only.

    The allowlist-only one is the baseline each benchmark measures in the same run.
    """
    head = policy_head(*hosts)
    signed = write_policy(tmp / "signed", head + SIGNED_BY_RELEASE, key)
    plain = write_policy(tmp / "plain", head)
    return signed, plain


def insecure(*hosts: str) -> dict[str, Any]:
    """The configuration that reaches ``hosts`` over plain HTTP (the local registries)."""
    return {"registries": {host: {"insecure": True} for host in hosts}}


def pod_review(*refs: str, kind: str = "Pod", namespace: str = "prod-bench") -> dict[str, Any]:
    """An AdmissionReview of a ``kind`` running ``refs`` in ``namespace``."""
    return review(workload(kind, pod_spec(*refs), namespace=namespace))


# Replicas: two or more `trustgate serve` processes in front of one counting registry
# (bench/shared_cache.py and bench/herd.py).


@dataclass
class Replicas:
    """What replica benchmarks share: a registry behind a counting proxy, Redis, a key, policies.

    ``configs`` maps a mode's name to its trustgate.yaml: ``"local only"`` (each
    worker's own caches) and ``"shared"`` (``cache.shared`` on the Redis here).
    Images are pushed to the registry directly, so the proxy counts only the
    servers' requests; references name the proxy's host.
    """

    tmp: Path
    registry: Registry
    proxy: CountingProxy
    redis: RedisServer
    key: PrivateKey
    policies: Path
    configs: dict[str, str]

    def push_signed(self, repository: str, content: bytes) -> str:
        """Push a signed one-layer image; its ``:v1`` reference through the proxy."""
        push_app(self.registry, repository, content=content, signed_by=self.key,
                 host=self.proxy.host)  # fmt: skip
        return f"{self.proxy.host}/{repository}:v1"

    def start_servers(
        self, mode: str, count: int = 2, serve_args: Sequence[str] = ()
    ) -> list[Server]:
        """``count`` servers (replicas) of 2 workers each, configured for ``mode``."""
        args = ["--workers", "2", *serve_args]
        slug = mode.replace(" ", "-")
        return [start_server(self.tmp / f"{slug}-{n}", self.policies, self.configs[mode],
                             serve_args=args)
                for n in range(count)]  # fmt: skip


@contextmanager
def replicas(tmp: Path, extra_config: str = "") -> Iterator[Replicas]:
    """Start the registry, its counting proxy and Redis under ``tmp``; stop them on exit.

    The policy admits, in namespaces ``prod-*``, images on the proxy's host that
    carry a signature by the generated key. ``extra_config`` is appended to both
    configurations (YAML at the top level, e.g. ``deadlineSeconds: 8``).
    """
    registry = start_registry(tmp / "registry")
    proxy = CountingProxy(registry.url)
    redis_server: RedisServer | None = None
    try:
        redis_server = start_redis(tmp / "redis")
        key = generate_key("ecdsa-p256")
        policies = write_policy(tmp / "policies", policy_head(proxy.host) + SIGNED_BY_RELEASE, key)
        key_file = tmp / "cache.key"
        key_file.write_text(secrets.token_hex(32))
        base = (
            "policies: {reloadIntervalSeconds: 0}\nlog: {level: warning}\n"
            f'registries: {{"{proxy.host}": {{insecure: true}}}}\n{extra_config}'
            # Long enough that no local entry expires during a run.
            "cache:\n  digestTTL: 600\n"
        )
        shared = base + f"  shared: {{url: '{redis_server.url}', keyFile: '{key_file}'}}\n"
        yield Replicas(tmp, registry, proxy, redis_server, key, policies,
                       {"local only": base, "shared": shared})  # fmt: skip
    finally:
        proxy.stop()
        registry.stop()
        if redis_server is not None:
            redis_server.stop()


@dataclass(frozen=True, slots=True)
class Answer:
    """One review as a client saw it: seconds, and the decision or what went wrong."""

    seconds: float
    status: int = 0  # the HTTP status; 0 when no answer came
    decided: bool = False  # an AdmissionResponse came back
    allowed: bool = False
    message: str = ""  # the denial's message, or what went wrong


#: One client thread's work: (server index, AdmissionReview JSON) in order.
Work = list[tuple[int, str]]


class Clients:
    """Client threads, each with one kept-alive session per server for the whole run.

    gunicorn hands each new connection to one of its workers; keeping the
    connections lets a warm-up reach exactly the workers the measured passes
    will use, and keeps TLS handshakes out of the measured reviews.
    """

    def __init__(self, servers: Sequence[Server], count: int) -> None:
        self.servers = servers
        self.sessions = [[requests.Session() for _ in servers] for _ in range(count)]

    def run(self, work: Sequence[Work]) -> list[Answer]:
        """Run ``work[i]`` on thread ``i``, all threads released at once; every review's Answer."""
        results: list[list[Answer]] = [[] for _ in work]
        start = threading.Barrier(len(work))
        threads = [
            threading.Thread(target=self._post, args=(number, items, results[number], start))
            for number, items in enumerate(work)
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        return [answer for found in results for answer in found]

    def touch(self, work: Sequence[Work]) -> None:
        """Open (or check) the connection each thread of ``work`` will use, before timing it.

        A connection the server closed meanwhile is replaced here, not in a measured review.
        """

        def connect(number: int, items: Work) -> None:
            for server in sorted({server for server, _ in items}):
                target = self.servers[server]
                self.sessions[number][server].get(
                    f"{target.url}/healthz", verify=str(target.ca), timeout=30
                )

        threads = [threading.Thread(target=connect, args=pair) for pair in enumerate(work)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()

    def _post(self, number: int, items: Work, out: list[Answer], start: threading.Barrier) -> None:
        start.wait()
        for server, body in items:
            target = self.servers[server]
            started = time.perf_counter()
            try:
                answer = self.sessions[number][server].post(
                    f"{target.url}/validate",
                    data=body,
                    headers={"Content-Type": "application/json"},
                    verify=str(target.ca),
                    timeout=30,
                )
            except requests.RequestException as exc:
                problem = f"{type(exc).__name__}: {exc}"
                out.append(Answer(time.perf_counter() - started, message=problem))
                continue
            took = time.perf_counter() - started
            try:
                response = answer.json()["response"]
                message = "" if response["allowed"] else response["status"]["message"]
                allowed = bool(response["allowed"])
                out.append(Answer(took, answer.status_code, True, allowed, message))
            except (ValueError, KeyError, TypeError):
                out.append(Answer(took, answer.status_code, message=answer.text[:300]))

    def spread(self, bodies: Sequence[str], seed: int) -> list[Work]:
        """``bodies`` in order, dealt to the threads in turn, each to a server at random."""
        chooser = random.Random(seed)
        work: list[Work] = [[] for _ in self.sessions]
        for index, body in enumerate(bodies):
            work[index % len(work)].append((chooser.randrange(len(self.servers)), body))
        return work

    def everywhere(self, bodies: Sequence[str]) -> list[Work]:
        """Every body through every connection: warms each worker the connections reach."""
        return [[(s, body) for s in range(len(self.servers)) for body in bodies]
                for _ in self.sessions]  # fmt: skip
