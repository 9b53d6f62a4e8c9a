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

from timing import report, review_timings  # noqa: E402  (bench/, the script's own directory)

from tests.kube import pod_spec, review, workload  # noqa: E402
from tests.pyxis import grades, image_record, running_pyxis  # noqa: E402
from tests.registry import default_layer, push_image, start_registry  # noqa: E402
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
            layer = default_layer(content=f"fresh {i}\n".encode())
            digest = push_image(registry, repository, tag="v1", layers=[layer])
            pyxis.add(image_record("amd64", digest, grades(("A", now - timedelta(days=5), None))))
            images.append(f"{registry.host}/{repository}:v1")

        graded_dir, plain_dir = tmp / "graded", tmp / "plain"
        for directory in (graded_dir, plain_dir):
            directory.mkdir()
        head = (
            "apiVersion: trustgate.dev/v1alpha1\nkind: ImagePolicy\nmetadata: {name: p}\n"
            f'spec:\n  match: {{namespaces: ["prod-*"]}}\n  registries: ["{registry.host}/**"]\n'
        )
        (plain_dir / "p.yaml").write_text(head)
        (graded_dir / "p.yaml").write_text(head + "  freshness: {minimumGrade: B}\n")
        config = parse_config(
            {
                "registries": {registry.host: {"insecure": True}},
                "freshness": {"pyxis": {"url": pyxis.url}},
            }
        )
        graded, plain = load_directory(graded_dir), load_directory(plain_dir)
        pod = review(workload("Pod", pod_spec(*images), namespace="prod-bench"))

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
