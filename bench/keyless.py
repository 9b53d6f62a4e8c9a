"""Keyless signature verification against a real local registry, cold and warm.

Starts Debian's docker-registry on 127.0.0.1, signs 20 small images keylessly
with the test Sigstore of tests/support/sigstore_instance.py (Fulcio-style certificates
with embedded SCTs, a transparency log with signed entry timestamps, inclusion
proofs and checkpoints), half in cosign's legacy ``.sig`` layout and half as
Sigstore bundles attached as OCI referrers (found through the ``sha256-<hex>``
referrers tag, as docker-registry 2.8 has no referrers API), and times whole
admission reviews (the code path of ``POST /validate`` without the HTTP server):

- cold, 1 image, each format: a new engine (empty caches) per review; the
  trusted root was loaded with the policies, as in the server;
- warm, 1 image: the same engine again (tag and verification cached);
- the allowlist-only baseline for the same image, measured in the same run;
- cold, 20 images in one Pod: distinct images are checked concurrently.

    python bench/keyless.py [--rounds 30] [--out bench/results/keyless.json]

Targets: cold single image under 80 ms; warm as for keys (under 5 ms over the
allowlist-only review).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from stage import insecure, pod_review, policy_head, write_policy  # noqa: E402
from timing import report, review_timings  # noqa: E402

from tests.integration.conftest import small_image  # noqa: E402
from tests.integration.test_keyless_e2e import (  # noqa: E402
    ISSUER,
    SIGSTORE,
    SUBJECT,
    message_bundle,
    push_referrer,
    sign_legacy,
)
from tests.support.registry import start_registry  # noqa: E402
from webhook.config import parse_config  # noqa: E402
from webhook.policy.loader import load_directory  # noqa: E402

COLD_TARGET_MS = 80
WARM_ADDED_TARGET_MS = 5


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=30)
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "keyless.json")
    args = parser.parse_args()

    tmp = Path(tempfile.mkdtemp(prefix="trustgate-bench-keyless-"))
    registry = start_registry(tmp / "registry")
    try:
        images = []
        for i in range(20):
            repository = f"bench/keyless{i}"
            ref, digest = small_image(registry, repository)
            if i % 2 == 0:
                sign_legacy(registry, repository, digest)
            else:
                push_referrer(registry, repository, digest, message_bundle(digest))
            images.append(ref)

        head = policy_head(registry.host)
        plain_dir = write_policy(tmp / "plain", head)
        keyless_dir = write_policy(
            tmp / "keyless",
            head + "  signatures:\n    authorities:\n      - name: ci\n        keyless:\n"
            f"          issuer: {ISSUER}\n          subject: {SUBJECT}\n"
            "          trustedRoot: roots/trusted_root.json\n",
        )
        (keyless_dir / "roots").mkdir()
        (keyless_dir / "roots" / "trusted_root.json").write_text(SIGSTORE.trusted_root_json())
        config = parse_config(insecure(registry.host))
        signed, plain = load_directory(keyless_dir), load_directory(plain_dir)
        legacy, bundled = pod_review(images[0]), pod_review(images[1])
        twenty = pod_review(*images)
        results = review_timings(
            signed,
            plain,
            config,
            cold={"cold_1_legacy": legacy, "cold_1_bundle": bundled, "cold_20": twenty},
            warm=("1", legacy),
            rounds=args.rounds,
        )
    finally:
        registry.stop()

    warm, baseline = results["warm_1"]["p50_ms"], results["allowlist_only_1"]["p50_ms"]
    added = warm - baseline
    ratio = warm / baseline if baseline else float("inf")
    cold_worst = max(results["cold_1_legacy"]["p50_ms"], results["cold_1_bundle"]["p50_ms"])
    summary = {
        "results": results,
        "warm_added_p50_ms": round(added, 3),
        "warm_over_allowlist_ratio": round(ratio, 2),
        "targets": {
            "cold_1_p50_ms": f"< {COLD_TARGET_MS}",
            "warm_added_ms": f"< {WARM_ADDED_TARGET_MS}",
        },
        "met": cold_worst < COLD_TARGET_MS and added < WARM_ADDED_TARGET_MS,
    }
    report(results, summary, args.out)
    print(
        f"warm review adds {added:.2f} ms over the allowlist-only review "
        f"(x{ratio:.2f}; target < {WARM_ADDED_TARGET_MS} ms); "
        f"cold single image p50 {cold_worst:.2f} ms (target < {COLD_TARGET_MS} ms)"
    )
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
