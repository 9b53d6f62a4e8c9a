"""Notation signature verification against cosign key verification, on the same registry.

Starts Debian's docker-registry and the OCSP responder and CRL server of the tests
(tests/support/notation_revocation.py) on 127.0.0.1, and pushes three small images:
one signed by a cosign key (a ``.sig`` layer), one signed with Notation under a test CA
(a JWS envelope attached as a referrer, found through the ``sha256-<hex>`` tag), and one
signed with Notation under a CA whose certificates name the local responder. It times
whole admission reviews in-process (the code path of ``POST /validate`` without the
HTTP server), rounds interleaved so that load from elsewhere falls on every form alike:

- cold: a new engine per review (empty caches, as after a restart), for the cosign image,
  the Notation image with revocation skipped (``override: {revocation: skip}``) and the
  Notation image with revocation checked (OCSP for the signing and intermediate
  certificates: the revocation cache is empty too);
- warm: the same review again and again on one engine, for cosign and for Notation, with
  the allowlist-only review of the same image as the baseline.

Prints p50 and p99 of each, the cold ratios to the cosign review, the warm difference
between Notation and cosign, and writes ``bench/results/notation.json``.

    python bench/notation.py [--rounds 30] [--out bench/results/notation.json]

Targets: a cold Notation review under 2 x a cold cosign review without revocation (one
more round trip: the image manifest, whose size and media type a Notation signature
names); warm Notation within 10 % (or 0.2 ms) of warm cosign.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.serialization import Encoding

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from stage import insecure, pod_review, policy_head, push_app, write_policy  # noqa: E402
from timing import cold_review, percentiles, report, timed  # noqa: E402

from tests.support.cosign import generate_key  # noqa: E402
from tests.support.notation_images import of, sign_image, signing_chain  # noqa: E402
from tests.support.notation_pki import Authority  # noqa: E402
from tests.support.notation_revocation import RevocationServer, chain  # noqa: E402
from tests.support.registry import start_registry  # noqa: E402
from webhook.admission.review import review as answer  # noqa: E402
from webhook.config import parse_config  # noqa: E402
from webhook.policy.loader import load_directory  # noqa: E402
from webhook.services import build_engine  # noqa: E402

Request = dict[str, Any]


def notation_policy(host: str, store: str, extra: str = "") -> str:
    """A policy whose one authority is a notation trust store (``store``, a file name)."""
    return policy_head(host) + (
        "  signatures:\n    authorities:\n      - name: wabbit\n        notation:\n"
        f"          trustStore: {store}\n          trustedIdentities: ['*']\n{extra}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=30)
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "notation.json")
    args = parser.parse_args()

    tmp = Path(tempfile.mkdtemp(prefix="trustgate-bench-notation-"))
    registry = start_registry(tmp / "registry")
    responder = RevocationServer().start()
    try:
        host = registry.host
        key = generate_key("ecdsa-p256")
        push_app(registry, "bench/cosign", content=b"cosign\n", signed_by=key)
        ca = Authority.root()
        builder = ca.intermediate().leaf("builder")
        digest = push_app(registry, "bench/notation", content=b"notation\n")
        sign_image(registry, "bench/notation", digest, of(builder))
        leaf, intermediate, top = chain(responder)
        revoked_digest = push_app(registry, "bench/revocation", content=b"revocation\n")
        signer = signing_chain(leaf.key, (leaf.cert, intermediate.cert, top.cert))
        sign_image(registry, "bench/revocation", revoked_digest, signer)

        head = policy_head(host)
        cosign_dir = write_policy(
            tmp / "cosign",
            head + "  signatures:\n    authorities:\n"
            "      - {name: release, key: {file: release.pub}}\n",
            key,
        )
        plain_dir = write_policy(tmp / "plain", head)
        skip = "          override: {revocation: skip}\n"
        notation_dir = write_policy(tmp / "notation", notation_policy(host, "ca.pem", skip))
        (notation_dir / "ca.pem").write_bytes(ca.cert.public_bytes(Encoding.PEM))
        revocation_dir = write_policy(tmp / "revocation", notation_policy(host, "ca.pem"))
        (revocation_dir / "ca.pem").write_bytes(top.cert.public_bytes(Encoding.PEM))
        # The file was written after the policy: load now that both are there.
        config = parse_config(insecure(host))
        cosign, plain = load_directory(cosign_dir), load_directory(plain_dir)
        notation, revocation = load_directory(notation_dir), load_directory(revocation_dir)
        reviews = {
            "cosign": pod_review(f"{host}/bench/cosign:v1"),
            "notation": pod_review(f"{host}/bench/notation:v1"),
            "notation_revocation": pod_review(f"{host}/bench/revocation:v1"),
        }
        sets = {"cosign": cosign, "notation": notation, "notation_revocation": revocation}

        samples: dict[str, list[float]] = {f"cold_{name}": [] for name in reviews}
        for _ in range(args.rounds):  # interleaved: each round times every form once
            for name, request in reviews.items():
                samples[f"cold_{name}"] += timed(1, cold_review(sets[name], config, request))
        ocsp_asked = sum(responder.hits.values())

        engines = {
            "warm_cosign": (build_engine(lambda: cosign, config), reviews["cosign"]),
            "warm_notation": (build_engine(lambda: notation, config), reviews["notation"]),
            "allowlist_only": (build_engine(lambda: plain, config), reviews["notation"]),
        }
        try:
            for engine, request in engines.values():
                assert answer(engine, request)[1].allowed
            for name in engines:
                samples[name] = []
            for _ in range(args.rounds):
                for name, (engine, request) in engines.items():
                    samples[name] += timed(10, lambda e=engine, r=request: answer(e, r))
        finally:
            for engine, _ in engines.values():
                engine.close()
    finally:
        responder.stop()
        registry.stop()

    results = {name: percentiles(values) for name, values in samples.items()}
    p50 = {name: figures["p50_ms"] for name, figures in results.items()}
    ratios = {
        "notation": round(p50["cold_notation"] / p50["cold_cosign"], 2),
        "notation_revocation": round(p50["cold_notation_revocation"] / p50["cold_cosign"], 2),
    }
    warm_difference = round(p50["warm_notation"] - p50["warm_cosign"], 3)
    warm_ratio = round(p50["warm_notation"] / p50["warm_cosign"], 3)
    summary = {
        "results": results,
        "cold_p50_ratio_to_cosign": ratios,
        "warm_notation_minus_cosign_p50_ms": warm_difference,
        "warm_p50_ratio_to_cosign": warm_ratio,
        "ocsp_and_crl_requests": ocsp_asked,
        "targets": {"cold_notation_ratio": "< 2", "warm": "within 10 % or 0.2 ms of cosign"},
        "met": ratios["notation"] < 2 and (abs(warm_difference) < 0.2 or abs(warm_ratio - 1) < 0.1),
    }
    report(results, summary, args.out)
    for name, ratio in ratios.items():
        print(f"cold {name} review costs {ratio:.2f} x a cold cosign key review")
    print(f"{ocsp_asked} OCSP/CRL requests over {args.rounds} cold reviews with revocation")
    print(
        f"warm Notation review: {warm_difference:+.3f} ms against a warm cosign review "
        f"({warm_ratio:.3f} x)"
    )
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
