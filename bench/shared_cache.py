"""The shared cache across replicas: registry requests and latency, with and without it.

Starts Debian's docker-registry behind a counting proxy, Debian's redis-server,
and pushes 50 small images signed in cosign's format. Then, for each mode (local
caches only, then with ``cache.shared``), it starts 2 ``trustgate serve``
processes of 2 workers each (two replicas) and posts 50 x 20 reviews (each image
20 times, in one random order, spread over both servers by concurrent clients
with kept-alive connections, as the API server keeps them). It prints the
registry requests made and p50/p99 of those reviews, then warms every worker and
times a second, all-warm pass: the warm path, which must not get slower for the
shared tier behind it.

    python bench/shared_cache.py [--images 50] [--repeat 20] [--clients 4]

Targets: with the shared cache, registry requests fall to about one cold
verification per image (3 requests: tag, ``.sig`` manifest, signed payload), and
the warm p50 stays within 10% of the local-only warm p50.
"""

from __future__ import annotations

import argparse
import json
import random
import secrets
import sys
import tempfile
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import requests

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from stage import SIGNED_BY_RELEASE, pod_review, policy_head, push_app, write_policy  # noqa: E402
from timing import percentiles  # noqa: E402  (bench/, the script's own directory)

from tests.cosign import generate_key  # noqa: E402
from tests.countingproxy import CountingProxy  # noqa: E402
from tests.integration.conftest import Server, start_server, stop_server  # noqa: E402
from tests.redisserver import RedisServer, start_redis  # noqa: E402
from tests.registry import start_registry  # noqa: E402

COLD_REQUESTS_PER_IMAGE = 3  # tag -> digest, the .sig manifest, the signed payload


#: One client thread's work: (server index, AdmissionReview JSON) in order.
Work = list[tuple[int, str]]


class Clients:
    """Client threads, each with one kept-alive session per server for the whole run.

    gunicorn hands each new connection to one of its workers; keeping the
    connections lets the warm-up reach exactly the workers the measured
    passes will use.
    """

    def __init__(self, servers: Sequence[Server], count: int) -> None:
        self.servers = servers
        self.sessions = [[requests.Session() for _ in servers] for _ in range(count)]

    def run(self, work: Sequence[Work]) -> list[float]:
        """Run ``work[i]`` on thread ``i``, all threads at once; the seconds of each review."""
        results: list[list[float]] = [[] for _ in work]
        threads = [
            threading.Thread(target=self._post, args=(number, items, results[number]))
            for number, items in enumerate(work)
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        return [took for found in results for took in found]

    def _post(self, number: int, items: Work, out: list[float]) -> None:
        for server, body in items:
            target = self.servers[server]
            started = time.perf_counter()
            answer = self.sessions[number][server].post(
                f"{target.url}/validate",
                data=body,
                headers={"Content-Type": "application/json"},
                verify=str(target.ca),
                timeout=30,
            )
            out.append(time.perf_counter() - started)
            response = answer.json()["response"]
            assert response["allowed"], response.get("status")

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


def start_pair(name: str, tmp: Path, policies: Path, config: str) -> list[Server]:
    """Two servers (two replicas) of 2 workers each."""
    serve_args = ["--workers", "2", "--threads", "8"]
    return [start_server(tmp / f"{name}-{n}", policies, config, serve_args=serve_args)
            for n in range(2)]  # fmt: skip


def measure(
    pairs: dict[str, list[Server]],
    bodies: list[str],
    proxy: CountingProxy,
    args: argparse.Namespace,
) -> dict[str, dict[str, Any]]:
    """The cold run of each mode, then all-warm passes of the modes in turn.

    The warm passes alternate between the modes (in both orders), so drift in
    the machine's load falls on both alike.
    """
    order = [body for body in bodies for _ in range(args.repeat)]
    random.Random(args.seed).shuffle(order)
    clients = {name: Clients(servers, args.clients) for name, servers in pairs.items()}
    results: dict[str, dict[str, Any]] = {}
    for name, client in clients.items():
        proxy.reset()
        samples = client.run(client.spread(order, args.seed))
        made = proxy.requests
        results[name] = {
            "registry_requests": made,
            "registry_requests_per_image": round(made / len(bodies), 2),
            "reviews": percentiles(samples),
        }
        client.run(client.everywhere(bodies))  # every worker in use now has every image
    warm: dict[str, list[float]] = {name: [] for name in pairs}
    names = list(pairs)
    for number in range(args.warm_rounds):
        for name in names if number % 2 == 0 else reversed(names):
            proxy.reset()
            client = clients[name]
            warm[name] += client.run(client.spread(order, args.seed + 1 + number))
            assert proxy.requests == 0, f"{proxy.requests} registry requests on a warm pass"
    for name, result in results.items():
        result["warm_reviews"] = percentiles(warm[name])
        made = result["registry_requests"]
        print(
            f"{name:12s} registry requests {made:5d} ({made / len(bodies):5.2f} per image)   "
            f"all reviews p50 {result['reviews']['p50_ms']:7.2f} ms p99 "
            f"{result['reviews']['p99_ms']:7.2f} ms   warm p50 "
            f"{result['warm_reviews']['p50_ms']:7.2f} ms p99 "
            f"{result['warm_reviews']['p99_ms']:7.2f} ms"
        )
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--images", type=int, default=50)
    parser.add_argument("--repeat", type=int, default=20)
    parser.add_argument("--clients", type=int, default=4)
    parser.add_argument("--seed", type=int, default=13)
    parser.add_argument("--warm-rounds", type=int, default=4)
    parser.add_argument(
        "--out", type=Path, default=ROOT / "bench" / "results" / "shared_cache.json"
    )
    args = parser.parse_args()

    tmp = Path(tempfile.mkdtemp(prefix="trustgate-bench-shared-"))
    registry = start_registry(tmp / "registry")
    proxy = CountingProxy(registry.url)
    redis_server: RedisServer | None = None
    try:
        redis_server = start_redis(tmp / "redis")
        key = generate_key("ecdsa-p256")
        bodies = []
        for i in range(args.images):
            repository = f"bench/app{i}"
            content = f"app {i}\n".encode()
            push_app(registry, repository, content=content, signed_by=key, host=proxy.host)
            ref = f"{proxy.host}/{repository}:v1"
            bodies.append(json.dumps(pod_review(ref, kind="Deployment", namespace="prod-b")))

        text = policy_head(proxy.host) + SIGNED_BY_RELEASE
        policies = write_policy(tmp / "policies", text, key)
        key_file = tmp / "cache.key"
        key_file.write_text(secrets.token_hex(32))
        base = (
            "policies: {reloadIntervalSeconds: 0}\nlog: {level: warning}\n"
            f'registries: {{"{proxy.host}": {{insecure: true}}}}\n'
            # Long enough that no local entry expires between the cold run and the warm passes.
            "cache:\n  digestTTL: 600\n"
        )
        shared = base + f"  shared: {{url: '{redis_server.url}', keyFile: '{key_file}'}}\n"
        pairs = {
            "local only": start_pair("local", tmp, policies, base),
            "shared": start_pair("shared", tmp, policies, shared),
        }
        try:
            results = measure(pairs, bodies, proxy, args)
        finally:
            for server in (s for pair in pairs.values() for s in pair):
                stop_server(server)
    finally:
        proxy.stop()
        registry.stop()
        if redis_server is not None:
            redis_server.stop()

    local, with_shared = results["local only"], results["shared"]
    warm_ratio = with_shared["warm_reviews"]["p50_ms"] / local["warm_reviews"]["p50_ms"]
    per_image = with_shared["registry_requests_per_image"]
    summary = {
        "setup": {
            "servers": 2,
            "workers_per_server": 2,
            "images": args.images,
            "requests_per_image": args.repeat,
            "clients": args.clients,
        },
        "results": results,
        "warm_p50_shared_over_local": round(warm_ratio, 3),
        "targets": {
            "registry_requests_per_image": f"about {COLD_REQUESTS_PER_IMAGE} (one cold "
            "verification)",
            "warm_p50_shared_over_local": "<= 1.10",
        },
        "met": per_image <= COLD_REQUESTS_PER_IMAGE * 1.2 and warm_ratio <= 1.10,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(summary, indent=2) + "\n")
    print(
        f"registry requests: {local['registry_requests']} local only, "
        f"{with_shared['registry_requests']} shared "
        f"({per_image} per image; one cold verification is {COLD_REQUESTS_PER_IMAGE})"
    )
    print(f"warm p50 with the shared cache / local only: {warm_ratio:.3f} (target <= 1.10)")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
