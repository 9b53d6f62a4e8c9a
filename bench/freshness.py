"""Freshness grades against a local registry and a local Pyxis double, cold and warm.

Starts Debian's docker-registry and the Pyxis double of the tests on 127.0.0.1,
pushes 10 small images each graded in Pyxis, and times whole admission reviews
of one 10-image Pod (the code path of ``POST /validate`` without the HTTP server):

- cold: a new engine per review (empty digest and grade caches: 10 tag
  resolutions and 10 Pyxis lookups, run concurrently);
- warm: the same engine again (digests and grades cached);
- the allowlist-only baseline for the same Pod, measured in the same run.

    python bench/freshness.py [--rounds 30] [--out bench/results/freshness.json]

Target: warm adds under 5 ms over the allowlist-only review.
"""

from __future__ import annotations

import argparse
import contextlib
import sys
import tempfile
from datetime import UTC, datetime, timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from stage import pod_review, policy_head, push_app, write_policy  # noqa: E402  (bench/)
from timing import report, review_timings  # noqa: E402

from tests.support.pyxis import grades, image_record, running_pyxis  # noqa: E402
from tests.support.registry import start_registry  # noqa: E402
from webhook.config import parse_config  # noqa: E402
from webhook.policy.loader import load_directory  # noqa: E402

IMAGES = 10


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=30)
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "freshness.json")
    args = parser.parse_args()

    tmp = Path(tempfile.mkdtemp(prefix="trustgate-bench-fresh-"))
    registry = start_registry(tmp / "registry")
    now = datetime.now(UTC)
    stack = contextlib.ExitStack()
    pyxis = stack.enter_context(running_pyxis())
    try:
        images = []
        for i in range(IMAGES):
            repository = f"bench/fresh{i}"
            digest = push_app(registry, repository, content=f"fresh {i}\n".encode())
            pyxis.add(image_record("amd64", digest, grades(("A", now - timedelta(days=5), None))))
            images.append(f"{registry.host}/{repository}:v1")

        head = policy_head(registry.host)
        graded_dir = write_policy(tmp / "graded", head + "  freshness: {minimumGrade: B}\n")
        plain_dir = write_policy(tmp / "plain", head)
        config = parse_config(
            {
                "registries": {registry.host: {"insecure": True}},
                "freshness": {"pyxis": {"url": pyxis.url}},
            }
        )
        graded, plain = load_directory(graded_dir), load_directory(plain_dir)
        pod = pod_review(*images)

        before = len(pyxis.requests)
        results = review_timings(
            graded, plain, config, cold={"cold_10": pod}, warm=("10", pod), rounds=args.rounds
        )
        # The warm engine's first review asks once per image; its later ones never.
        cold_lookups = len(pyxis.requests) - before - IMAGES
    finally:
        stack.close()
        registry.stop()

    added = results["warm_10"]["p50_ms"] - results["allowlist_only_10"]["p50_ms"]
    summary = {
        "results": results,
        "warm_added_p50_ms": round(added, 3),
        "pyxis_lookups_per_cold_review": cold_lookups / args.rounds,
        "targets": {"warm_added_ms": "< 5"},
        "met": added < 5,
    }
    report(results, summary, args.out)
    print(f"Pyxis lookups per cold review: {cold_lookups / args.rounds:.1f} (warm: none)")
    print(
        f"warm 10-image review adds {added:.2f} ms over the allowlist-only review (target < 5 ms)"
    )
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
