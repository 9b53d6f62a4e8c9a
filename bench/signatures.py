"""Key-based signature verification against a real local registry, cold and warm.

Starts Debian's docker-registry on 127.0.0.1, pushes 20 small images signed in
cosign's format, and times whole admission reviews (the same code path as
``POST /validate``, without the HTTP server) for:

- cold, 1 image: a new engine (empty caches) per review;
- warm, 1 image: the same engine again (tag, verification cached);
- the allowlist-only baseline for the same image, measured in the same run;
- cold, 20 images in one Pod: distinct images are checked concurrently.

    python bench/signatures.py [--rounds 30] [--out bench/results/signatures.json]

Targets: cold single image under 50 ms; warm under 5 ms over the allowlist-only
review; 20 images cold under 300 ms.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from stage import insecure, key_policies, pod_review, push_app  # noqa: E402  (bench/)
from timing import report, review_timings  # noqa: E402

from tests.support.cosign import generate_key  # noqa: E402
from tests.support.registry import start_registry  # noqa: E402
from webhook.config import parse_config  # noqa: E402
from webhook.policy.loader import load_directory  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=30)
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "signatures.json")
    args = parser.parse_args()

    tmp = Path(tempfile.mkdtemp(prefix="trustgate-bench-sig-"))
    registry = start_registry(tmp / "registry")
    try:
        key = generate_key("ecdsa-p256")
        images = []
        for i in range(20):
            repository = f"bench/app{i}"
            push_app(registry, repository, content=f"app {i}\n".encode(), signed_by=key)
            images.append(f"{registry.host}/{repository}:v1")

        signed_dir, plain_dir = key_policies(tmp, key, registry.host)
        config = parse_config(insecure(registry.host))
        signed, plain = load_directory(signed_dir), load_directory(plain_dir)
        one, twenty = pod_review(images[0]), pod_review(*images)
        results = review_timings(
            signed,
            plain,
            config,
            cold={"cold_1": one, "cold_20": twenty},
            warm=("1", one),
            rounds=args.rounds,
        )
    finally:
        registry.stop()

    added = results["warm_1"]["p50_ms"] - results["allowlist_only_1"]["p50_ms"]
    summary = {
        "results": results,
        "warm_added_p50_ms": round(added, 3),
        "targets": {"cold_1_p50_ms": "< 50", "warm_added_ms": "< 5", "cold_20_p50_ms": "< 300"},
        "met": results["cold_1"]["p50_ms"] < 50
        and added < 5
        and results["cold_20"]["p50_ms"] < 300,
    }
    report(results, summary, args.out)
    print(f"warm review adds {added:.2f} ms over the allowlist-only review (target < 5 ms)")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
