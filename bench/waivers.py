"""What exceptions and break-glass add to a review, against the same review without them.

Times whole admission reviews in-process (the code path of ``POST /validate``
without the HTTP server) of one 10-image Pod under an allowlist-only policy,
every variant in the same run:

- allowed: every image allowed, no exception in the directory (nothing to settle);
- denied: 10 images the policy denies, no exception: the baseline of the rest;
- denied_scanning: the same denied Pod with ``--exceptions`` exceptions loaded,
  none of which covers it;
- waived: 10 denied images, each admitted by one of those exceptions (the loud
  path: warnings, annotations);
- break_glass: the 10 denied images admitted by break-glass.

    python bench/waivers.py [--rounds 2000] [--exceptions 200] [--out bench/results/waivers.json]

Targets: with 200 exceptions loaded, a denied review costs at most 1.2x the
denied review without them (the per-set coverage memo makes the scan a lookup);
the loud paths (waived, break_glass: warnings, annotations) add under 0.5 ms
to a 10-image review.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from timing import percentiles, timed  # noqa: E402  (bench/, the script's own directory)

from tests.support.kube import as_user, pod_spec, policy_yaml, review, workload  # noqa: E402
from webhook.admission.review import review as answer  # noqa: E402
from webhook.config import Config  # noqa: E402
from webhook.policy.loader import load_directory  # noqa: E402
from webhook.policy.model import PolicySet  # noqa: E402
from webhook.services import build_engine  # noqa: E402

IMAGES = 10
GLASS = "  breakGlass: {allowed: true, groups: [oncall]}\n"


def exception(number: int) -> str:
    return f"""\
apiVersion: trustgate.dev/v1alpha1
kind: ImagePolicyException
metadata: {{name: vendor-{number}}}
spec:
  namespaces: ["prod-*"]
  images: ["quay.io/vendor-{number}/**"]
  policies: [production]
  reason: benchmark
  expires: 2999-12-31
"""


def _time(rounds: int, policy_set: PolicySet, request: dict, allowed: bool) -> dict[str, float]:
    engine = build_engine(lambda: policy_set, Config())
    try:
        assert answer(engine, request)[1].allowed is allowed
        return percentiles(timed(rounds, lambda: answer(engine, request)))
    finally:
        engine.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=2000)
    parser.add_argument("--exceptions", type=int, default=200)
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "waivers.json")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        plain, loaded = Path(tmp, "plain"), Path(tmp, "loaded")
        for directory in (plain, loaded):
            directory.mkdir()
            (directory / "production.yaml").write_text(policy_yaml(extra=GLASS))
        (loaded / "exceptions.yaml").write_text(
            "---\n".join(exception(n) for n in range(args.exceptions))
        )
        baseline_set, loaded_set = load_directory(plain), load_directory(loaded)
    good = [f"quay.io/acme/app-{n}:1.0" for n in range(IMAGES)]
    covered = [f"quay.io/vendor-{n}/app:1.0" for n in range(IMAGES)]
    uncovered = [f"quay.io/other-{n}/app:1.0" for n in range(IMAGES)]
    glass = workload("Pod", pod_spec(*uncovered))
    glass["metadata"]["annotations"]["trustgate.dev/break-glass"] = "benchmark"
    variants = {
        "allowed": (baseline_set, review(workload("Pod", pod_spec(*good))), True),
        "denied": (baseline_set, review(workload("Pod", pod_spec(*uncovered))), False),
        "denied_scanning": (loaded_set, review(workload("Pod", pod_spec(*uncovered))), False),
        "waived": (loaded_set, review(workload("Pod", pod_spec(*covered))), True),
        "break_glass": (baseline_set, as_user(review(glass), "bob", "oncall"), True),
    }
    results = {name: _time(args.rounds, *variant) for name, variant in variants.items()}
    base = results["denied"]["p50_ms"]
    ratios = {
        f"{name}_over_denied_p50": round(results[name]["p50_ms"] / base, 2)
        for name in ("denied_scanning", "waived", "break_glass")
    }
    summary = {"exceptions": args.exceptions, "images": IMAGES, **results, **ratios}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(summary, indent=2) + "\n")
    print(json.dumps(summary, indent=2))


if __name__ == "__main__":
    main()
