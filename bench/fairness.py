"""Fair check scheduling: a signed review's latency while a review of thousands of images runs.

Starts Debian's docker-registry on 127.0.0.1 with one signed image, and a slow registry
(every request answered 404 after 0.3 s, so each of its checks holds a check thread).
Whole admission reviews run in process (the code path of ``POST /validate`` without the
HTTP server), on one engine, with caches that expire at once, so every signed review asks
the registry again and needs the check threads. For each variant:

- unloaded: the signed review alone, ``--rounds`` times;
- loaded: the same while another thread keeps sending a review of ``--images`` images on
  the slow registry (the next 0.1 s after the last is answered);

and prints unloaded p50, loaded p50/p99 and the ratio of the p50s. Variants:

- uncapped: ``admission.maxImages`` above ``--images``, so the big review is checked (it
  runs until its deadline);
- capped: the default ``admission.maxImages`` (200), so the big review is refused unchecked.

    python bench/fairness.py [--rounds 30] [--images 2000] [--out bench/results/fairness.json]

Target: loaded p50 within 2x the unloaded p50, capped and uncapped.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from stage import SIGNED_BY_RELEASE, pod_review, push_app, write_policy  # noqa: E402
from timing import percentiles, report  # noqa: E402

from tests.support.cosign import generate_key  # noqa: E402
from tests.support.registry import start_registry  # noqa: E402
from webhook.admission.review import review  # noqa: E402
from webhook.config import parse_config  # noqa: E402
from webhook.engine import Engine  # noqa: E402
from webhook.policy.loader import load_directory  # noqa: E402
from webhook.services import build_engine  # noqa: E402

SLOW_SECONDS = 0.3


class _Slow(BaseHTTPRequestHandler):
    def _answer(self) -> None:
        time.sleep(SLOW_SECONDS)
        self.send_response(404)
        self.send_header("Content-Length", "0")
        self.end_headers()

    do_GET = do_HEAD = _answer

    def log_message(self, format: str, *args: Any) -> None:
        pass


@contextmanager
def slow_registry() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Slow)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def _policy(name: str, namespace: str, host: str) -> str:
    return (
        f"apiVersion: trustgate.dev/v1alpha1\nkind: ImagePolicy\nmetadata: {{name: {name}}}\n"
        f'spec:\n  match: {{namespaces: ["{namespace}"]}}\n  registries: ["{host}/**"]\n'
        + SIGNED_BY_RELEASE
    )


def _timed(engine: Engine, request: dict[str, Any], rounds: int) -> list[float]:
    samples = []
    for _ in range(rounds):
        started = time.perf_counter()
        _, decision, _ = review(engine, request)
        samples.append(time.perf_counter() - started)
        assert decision.allowed, decision.message
    return samples


def measure(
    engine: Engine, signed: dict[str, Any], big: dict[str, Any], rounds: int
) -> dict[str, Any]:
    """Unloaded and loaded latencies of ``signed`` on ``engine``, and the ratio of the p50s."""
    _timed(engine, signed, 3)  # connections, sessions, threads
    unloaded = percentiles(_timed(engine, signed, rounds))
    stop = threading.Event()
    big_reviews: list[float] = []

    def load() -> None:
        while not stop.is_set():
            started = time.perf_counter()
            _, decision, _ = review(engine, big)
            big_reviews.append(time.perf_counter() - started)
            assert not decision.allowed
            stop.wait(0.1)  # a steady stream (ten a second), not a CPU flood in one process

    loader = threading.Thread(target=load, daemon=True)
    loader.start()
    time.sleep(0.5)  # the big review's checks now hold their threads
    loaded = percentiles(_timed(engine, signed, rounds))
    stop.set()
    loader.join(30)
    return {
        "unloaded": unloaded,
        "loaded": loaded,
        "ratio_p50": round(loaded["p50_ms"] / unloaded["p50_ms"], 2),
        "big_reviews": len(big_reviews),
        "big_review_p50_ms": percentiles(big_reviews)["p50_ms"] if big_reviews else None,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=30)
    parser.add_argument("--images", type=int, default=2000)
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "fairness.json")
    args = parser.parse_args()

    tmp = Path(tempfile.mkdtemp(prefix="trustgate-bench-fair-"))
    registry = start_registry(tmp / "registry")
    key = generate_key("ecdsa-p256")
    results: dict[str, Any] = {}
    try:
        push_app(registry, "bench/fair", content=b"fair\n", signed_by=key)
        signed = pod_review(f"{registry.host}/bench/fair:v1", namespace="prod-bench")
        with slow_registry() as slow:
            text = _policy("signed", "prod-*", registry.host) + "---\n"
            text += _policy("slow", "big-*", slow)
            policies = load_directory(write_policy(tmp / "policies", text, key))
            images = [f"{slow}/bench/app{i}:v1" for i in range(args.images)]
            big = pod_review(*images, namespace="big-bench")
            for name, admission in (("uncapped", {"maxImages": args.images + 1}), ("capped", {})):
                config = parse_config(
                    {
                        "deadlineSeconds": 6,
                        "admission": admission,
                        "registries": {h: {"insecure": True} for h in (registry.host, slow)},
                        # Every signed review asks the registry again: it needs the threads.
                        "cache": {"digestTTL": 0.001, "verifiedTTL": 0.001, "failureTTL": 0.001},
                    }
                )
                engine = build_engine(lambda: policies, config)
                try:
                    results[name] = measure(engine, signed, big, args.rounds)
                finally:
                    engine.close()
    finally:
        registry.stop()

    flat = {
        f"{name}_{phase}": figures[phase]
        for name, figures in results.items()
        for phase in ("unloaded", "loaded")
    }
    summary = {
        "results": results,
        "target": "loaded p50 < 2x unloaded p50",
        "met": all(r["ratio_p50"] < 2 for r in results.values()),
    }
    report(flat, summary, args.out)
    for name, figures in results.items():
        print(
            f"{name}: loaded p50 is {figures['ratio_p50']}x the unloaded p50 "
            f"({figures['big_reviews']} big reviews ran meanwhile, "
            f"p50 {figures['big_review_p50_ms']} ms)"
        )
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
