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
import sys
import tempfile
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from stage import Answer, Clients, Replicas, pod_review, replicas  # noqa: E402
from timing import percentiles  # noqa: E402  (bench/, the script's own directory)

from tests.integration.conftest import Server, stop_server  # noqa: E402

COLD_REQUESTS_PER_IMAGE = 3  # tag -> digest, the .sig manifest, the signed payload


def admitted(answers: list[Answer]) -> list[float]:
    """The seconds of each review; every one must have been admitted."""
    for answer in answers:
        assert answer.allowed, answer.message
    return [answer.seconds for answer in answers]


def start_pair(stage: Replicas, mode: str) -> list[Server]:
    """Two servers (two replicas) of 2 workers each."""
    return stage.start_servers(mode, serve_args=["--threads", "8"])


def measure(
    pairs: dict[str, list[Server]],
    bodies: list[str],
    stage: Replicas,
    args: argparse.Namespace,
) -> dict[str, dict[str, Any]]:
    """The cold run of each mode, then all-warm passes of the modes in turn.

    The warm passes alternate between the modes (in both orders), so drift in
    the machine's load falls on both alike.
    """
    order = [body for body in bodies for _ in range(args.repeat)]
    random.Random(args.seed).shuffle(order)
    proxy = stage.proxy
    clients = {name: Clients(servers, args.clients) for name, servers in pairs.items()}
    results: dict[str, dict[str, Any]] = {}
    for name, client in clients.items():
        proxy.reset()
        samples = admitted(client.run(client.spread(order, args.seed)))
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
            warm[name] += admitted(client.run(client.spread(order, args.seed + 1 + number)))
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
    with replicas(tmp) as stage:
        bodies = []
        for i in range(args.images):
            ref = stage.push_signed(f"bench/app{i}", f"app {i}\n".encode())
            bodies.append(json.dumps(pod_review(ref, kind="Deployment", namespace="prod-b")))
        pairs = {mode: start_pair(stage, mode) for mode in ("local only", "shared")}
        try:
            results = measure(pairs, bodies, stage, args)
        finally:
            for server in (s for pair in pairs.values() for s in pair):
                stop_server(server)

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
