"""A burst of legitimate reviews over two replicas: the herd a rollout makes.

Scaling a Deployment up, rolling out a DaemonSet or draining a node sends many
reviews of the same new images at once. This starts Debian's docker-registry
behind a counting proxy (tests/support/countingproxy.py), Debian's redis-server, and for
each mode (local caches only, then ``cache.shared``) 2 ``trustgate serve``
processes of 2 workers each (their other settings are the server's defaults).
96 client threads each keep one TLS connection to one of the servers, 48 each.

- Warm baseline: 6 signed images go through every connection first, so every
  worker those connections reach has verified them; then ``--warm-rounds``
  bursts of 96 reviews of them (16 of each image, 8 per server) released at once.
- Runs: ``--runs`` times, 6 signed images pushed for the run and never reviewed
  before, the same burst of 96 reviews released at once.

Per mode it prints the denials of these signed images (each should be admitted)
with their messages, the registry requests per image (all the requests the proxy
passed on during a burst / 6), and the burst's p50 and p99 against the warm
baseline's; it writes bench/results/herd.json.

    python bench/herd.py [--runs 10] [--warm-rounds 3] [--threads 16]

Targets: 0 denials in 10 runs; at most 12 registry requests per image with local
caches only (one cold verification, 3 requests, per worker at most), at most 6
with ``cache.shared``.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
import tempfile
from collections import Counter
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from stage import Answer, Clients, Replicas, Work, pod_review, replicas  # noqa: E402
from timing import percentiles  # noqa: E402  (bench/, the script's own directory)

from tests.integration.conftest import Server, stop_server  # noqa: E402

IMAGES = 6  # new images per burst
PER_IMAGE = 16  # concurrent reviews of each
SERVERS = 2
TARGETS = {"local only": 12, "shared": 6}  # registry requests per image, at most
_IMAGE_NAME = re.compile(r"herd/[\w.-]+(:v1|@sha256:[0-9a-f]+)?")
_SECONDS = re.compile(r"\b\d+(\.\d+)? s\b")


def burst(bodies: list[str]) -> list[Work]:
    """One review per thread: thread ``t`` sends image ``t % 6`` to server ``t // 6 % 2``.

    Each image gets 16 reviews, 8 through each server.
    """
    return [[((t // len(bodies)) % SERVERS, bodies[t % len(bodies)])]
            for t in range(len(bodies) * PER_IMAGE)]  # fmt: skip


def body(ref: str) -> str:
    """A Deployment of ``ref`` in a namespace the signed policy governs."""
    return json.dumps(pod_review(ref, kind="Deployment", namespace="prod-herd"))


def wrong(answers: list[Answer]) -> tuple[list[str], list[str]]:
    """The denials' messages and the errors (no decision) among ``answers``."""
    denials = [a.message for a in answers if a.decided and not a.allowed]
    errors = [f"HTTP {a.status}: {a.message}" if a.status else a.message
              for a in answers if not a.decided]  # fmt: skip
    return denials, errors


def run_mode(
    stage: Replicas, mode: str, servers: list[Server], args: argparse.Namespace
) -> dict[str, Any]:
    """The warm baseline, then ``args.runs`` bursts of new images, through ``servers``."""
    slug = mode.replace(" ", "-")
    clients = Clients(servers, IMAGES * PER_IMAGE)
    warm = [body(stage.push_signed(f"herd/{slug}-warm{i}", f"{slug} warm {i}\n".encode()))
            for i in range(IMAGES)]  # fmt: skip
    runs = [[stage.push_signed(f"herd/{slug}-r{run}-i{i}", f"{slug} {run} {i}\n".encode())
             for i in range(IMAGES)]
            for run in range(args.runs)]  # fmt: skip

    # Every warm image through every connection the bursts use.
    layout = burst(warm)
    clients.touch(layout)
    clients.run([[(work[0][0], b) for b in warm] for work in layout])
    stage.proxy.reset()
    warm_answers: list[Answer] = []
    for _ in range(args.warm_rounds):
        clients.touch(layout)
        warm_answers += clients.run(layout)
    warm_requests = stage.proxy.requests
    warm_denials, warm_errors = wrong(warm_answers)
    baseline = percentiles([a.seconds for a in warm_answers])
    print(f"{mode:10s} warm baseline: {len(warm_answers)} reviews, "
          f"p50 {baseline['p50_ms']:8.2f} ms p99 {baseline['p99_ms']:8.2f} ms, "
          f"{warm_requests} registry requests, "
          f"{len(warm_denials)} denials, {len(warm_errors)} errors")  # fmt: skip

    results = []
    samples: list[float] = []
    denials: list[str] = []
    errors: list[str] = []
    for number, refs in enumerate(runs):
        layout = burst([body(ref) for ref in refs])
        clients.touch(layout)
        stage.proxy.reset()
        answers = clients.run(layout)
        paths = list(stage.proxy.paths)
        by_image = [sum(1 for p in paths if f"/{ref.split('/', 1)[1].split(':')[0]}/" in p)
                    for ref in refs]  # fmt: skip
        found, failed = wrong(answers)
        denials += found
        errors += failed
        samples += [a.seconds for a in answers]
        figures = percentiles([a.seconds for a in answers])
        results.append({
            "registry_requests": len(paths),
            "registry_requests_per_image": round(len(paths) / IMAGES, 2),
            "most_requests_for_one_image": max(by_image),
            "denials": len(found),
            "errors": len(failed),
            **figures,
        })  # fmt: skip
        print(f"{mode:10s} run {number + 1:2d}: denials {len(found):2d}, errors {len(failed):2d}, "
              f"registry requests {len(paths):4d} ({len(paths) / IMAGES:5.1f} per image, "
              f"most for one {max(by_image):3d}), burst p50 {figures['p50_ms']:8.2f} ms "
              f"p99 {figures['p99_ms']:8.2f} ms", flush=True)  # fmt: skip

    total = sum(r["registry_requests"] for r in results)
    per_image = [r["registry_requests_per_image"] for r in results]
    figures = percentiles(samples)
    return {
        "warm_baseline": {**baseline, "reviews": len(warm_answers),
                          "registry_requests": warm_requests,
                          "denials": len(warm_denials), "errors": len(warm_errors)},
        "runs": results,
        "burst": figures,
        "p50_over_warm": round(figures["p50_ms"] / baseline["p50_ms"], 2),
        "p99_over_warm": round(figures["p99_ms"] / baseline["p99_ms"], 2),
        "denials": len(denials),
        "denial_messages": grouped(denials + warm_denials),
        "errors": len(errors),
        "error_messages": grouped(errors + warm_errors),
        "registry_requests_per_image": round(total / IMAGES / max(len(results), 1), 2),
        "registry_requests_per_image_worst_run": max(per_image, default=0.0),
    }  # fmt: skip


def grouped(messages: list[str]) -> dict[str, int]:
    """``messages`` with image names and durations blanked, each distinct one with its count."""
    counts = Counter(
        _SECONDS.sub("<n> s", _IMAGE_NAME.sub("herd/<image>", m))[:400] for m in messages
    )
    return dict(counts.most_common())


def report(mode: str, result: dict[str, Any], runs: int) -> bool:
    """Print a mode's figures beside the targets; whether it met them."""
    target = TARGETS[mode]
    per_image = result["registry_requests_per_image"]
    worst = result["registry_requests_per_image_worst_run"]
    burst_figures, warm = result["burst"], result["warm_baseline"]
    print(f"\n{mode}:")
    print(f"  denials of signed images  {result['denials']:6d} in {runs} runs"
          f"        target 0")  # fmt: skip
    for message, count in result["denial_messages"].items():
        print(f"    {count:4d} x {message}")
    if result["errors"]:
        print(f"  errors (no decision)      {result['errors']:6d}")
        for message, count in result["error_messages"].items():
            print(f"    {count:4d} x {message}")
    print(f"  registry requests/image   {per_image:6.1f} (worst run {worst:.1f})"
          f"   target <= {target}")  # fmt: skip
    print(f"  burst p50 {burst_figures['p50_ms']:8.2f} ms, warm p50 {warm['p50_ms']:8.2f} ms: "
          f"x {result['p50_over_warm']:.2f}")  # fmt: skip
    print(f"  burst p99 {burst_figures['p99_ms']:8.2f} ms, warm p99 {warm['p99_ms']:8.2f} ms: "
          f"x {result['p99_over_warm']:.2f}")  # fmt: skip
    return bool(result["denials"] == 0 and result["errors"] == 0 and worst <= target)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=10, help="bursts of new images per mode")
    parser.add_argument("--warm-rounds", type=int, default=3, help="warm bursts per mode")
    parser.add_argument("--threads", type=int, default=16, help="threads per worker")
    parser.add_argument("--modes", nargs="+", choices=list(TARGETS), default=list(TARGETS))
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "herd.json")
    args = parser.parse_args()

    tmp = Path(tempfile.mkdtemp(prefix="trustgate-bench-herd-"))
    results: dict[str, dict[str, Any]] = {}
    with replicas(tmp) as stage:
        # One mode at a time: the machine serves 4 workers, not 8, while it is measured.
        for mode in args.modes:
            servers = stage.start_servers(mode, SERVERS, ["--threads", str(args.threads)])
            try:
                results[mode] = run_mode(stage, mode, servers, args)
            finally:
                for server in servers:
                    stop_server(server)

    met = {mode: report(mode, result, args.runs) for mode, result in results.items()}
    summary = {
        "setup": {
            "servers": SERVERS,
            "workers_per_server": 2,
            "threads_per_worker": args.threads,
            "new_images_per_burst": IMAGES,
            "reviews_per_image": PER_IMAGE,
            "runs": args.runs,
            "warm_rounds": args.warm_rounds,
        },
        "results": results,
        "targets": {
            "denials": 0,
            "registry_requests_per_image": {mode: f"<= {n}" for mode, n in TARGETS.items()},
        },
        "met": met,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(summary, indent=2) + "\n")
    print(f"\nwrote {args.out}")


if __name__ == "__main__":
    main()
