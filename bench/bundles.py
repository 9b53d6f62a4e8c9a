"""Key-signed Sigstore bundles (cosign 3) against ``.sig`` signatures, cold and warm.

Starts Debian's docker-registry on 127.0.0.1 and the referrers API front of the tests
(``tests/support/referrers.py``) over it, pushes three small images signed with one key:

- ``sig``: cosign's legacy ``sha256-<hex>.sig`` layer;
- ``bundle_tag``: a DSSE bundle of the cosign sign predicate, attached as an OCI referrer and
  found through the ``sha256-<hex>`` tag fallback (docker-registry 2.8 has no referrers API);
- ``bundle_api``: the same kind of bundle, read through the front's referrers API;

and times whole admission reviews in-process (the code path of ``POST /validate`` without the
HTTP server): each image with empty caches (a new engine per review) and warm, with the
allowlist-only review of the same image as the baseline, all in the same run.

    python bench/bundles.py [--rounds 30] [--out bench/results/bundles.json]

Target: a cold key bundle costs under 2 x a cold ``.sig`` review (two or three more registry
round trips: the missing ``.sig`` tag, the referrers listing, the bundle), and warm reviews of
both forms add under 5 ms over the allowlist-only review.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from stage import insecure, key_policies, pod_review, push_app  # noqa: E402  (bench/)
from timing import report, review_timings  # noqa: E402

from tests.support.cosign import (  # noqa: E402
    BUNDLE_V03,
    dsse_envelope,
    generate_key,
    key_bundle,
    sign_statement,
)
from tests.support.referrers import ReferrersFront, push_referrer  # noqa: E402
from tests.support.registry import start_registry  # noqa: E402
from webhook.config import parse_config  # noqa: E402
from webhook.policy.loader import load_directory  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=30)
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "bundles.json")
    args = parser.parse_args()

    tmp = Path(tempfile.mkdtemp(prefix="trustgate-bench-bundles-"))
    registry = start_registry(tmp / "registry")
    front = ReferrersFront(registry).start()
    try:
        key = generate_key("ecdsa-p256")
        refs = {}
        for form in ("sig", "bundle_tag", "bundle_api"):
            repository = f"bench/{form}"
            host = front.host if form == "bundle_api" else registry.host
            name = f"{host}/{repository}"
            signer = key if form == "sig" else None
            digest = push_app(registry, repository, content=form.encode(), signed_by=signer)
            if form != "sig":
                envelope = dsse_envelope(sign_statement(digest, name), key)
                document = json.dumps(key_bundle(key, envelope=envelope)).encode()
                push_referrer(
                    registry, repository, digest, document, artifact_type=BUNDLE_V03,
                    tag_index=form == "bundle_tag",
                )  # fmt: skip
            refs[form] = f"{name}:v1"

        signed_dir, plain_dir = key_policies(tmp, key, registry.host, front.host)
        config = parse_config(insecure(registry.host, front.host))
        signed, plain = load_directory(signed_dir), load_directory(plain_dir)

        requests = {form: pod_review(ref) for form, ref in refs.items()}
        # One untimed pass first: the first review of a process pays one-off costs
        # (lazy imports, connection pools) that would otherwise land on the first form.
        for form, request in requests.items():
            review_timings(
                signed, plain, config, cold={form: request}, warm=(form, request), rounds=2
            )
        results: dict[str, dict[str, float]] = {}
        for form, request in requests.items():
            results |= review_timings(
                signed, plain, config, cold={f"cold_{form}": request}, warm=(form, request),
                rounds=args.rounds,
            )  # fmt: skip
    finally:
        front.stop()
        registry.stop()

    cold_ratio = {
        form: round(results[f"cold_{form}"]["p50_ms"] / results["cold_sig"]["p50_ms"], 2)
        for form in ("bundle_tag", "bundle_api")
    }
    warm_added = {
        form: round(
            results[f"warm_{form}"]["p50_ms"] - results[f"allowlist_only_{form}"]["p50_ms"], 3
        )
        for form in refs
    }
    summary = {
        "results": results,
        "cold_p50_ratio_to_sig": cold_ratio,
        "warm_added_p50_ms": warm_added,
        "targets": {"cold_ratio_to_sig": "< 2", "warm_added_ms": "< 5"},
        "met": all(r < 2 for r in cold_ratio.values()) and all(a < 5 for a in warm_added.values()),
    }
    report(results, summary, args.out)
    for form, ratio in cold_ratio.items():
        print(f"cold {form} review costs {ratio:.2f} x a cold .sig review (target < 2)")
    for form, added in warm_added.items():
        print(f"warm {form} review adds {added:.2f} ms over the allowlist-only review (target < 5)")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
