"""The added cost of ``POST /mutate`` (digest pinning) over ``POST /validate``, in one run.

With the mutating webhook installed, the API server calls ``/mutate`` and then
``/validate`` on the patched object; without it, only ``/validate``. This times
both sequences through the Flask app (routes, JSON in and out, the decision log
written as the server writes it), in-process, for:

- the allowlist-only path: no policy pins, so ``/mutate`` answers without
  evaluating anything, and ``/validate`` judges the same object;
- a warm signed image (Debian's docker-registry on 127.0.0.1, a cosign
  signature): ``/mutate`` verifies the tag from the caches and pins it, and
  ``/validate`` judges the pinned digest from the caches.

Each figure is a ratio against a single ``/validate`` of the unpinned object,
measured interleaved in the same run. Target: ``/mutate`` then ``/validate``
together cost at most 2.2 x a single ``/validate``.

    python bench/mutate.py [--rounds 2000] [--out bench/results/mutate.json]
"""

from __future__ import annotations

import argparse
import base64
import io
import json
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import jsonpatch  # noqa: E402
from flask.testing import FlaskClient  # noqa: E402
from stage import insecure, key_policies, pod_review, push_app  # noqa: E402  (bench/)
from timing import percentiles, report  # noqa: E402

from tests.support.cosign import generate_key  # noqa: E402
from tests.support.registry import start_registry  # noqa: E402
from webhook.config import parse_config  # noqa: E402
from webhook.core.observability import configure_logging  # noqa: E402
from webhook.serving.app import Settings, create_app  # noqa: E402

TARGET = 2.2
Body = dict[str, Any]


def post(client: FlaskClient, path: str, body: bytes) -> dict[str, Any]:
    result = client.post(path, data=body, content_type="application/json")
    response: dict[str, Any] = result.get_json()["response"]
    return response


def patched(body: Body, response: dict[str, Any]) -> bytes:
    """The review /validate gets after the API server applies /mutate's patch."""
    obj = body["request"]["object"]
    if "patch" in response:
        obj = jsonpatch.apply_patch(obj, json.loads(base64.b64decode(response["patch"])))
    return json.dumps({**body, "request": {**body["request"], "object": obj}}).encode()


def measure(client: FlaskClient, body: Body, rounds: int) -> dict[str, Any]:
    """Single /validate and /mutate-then-/validate, interleaved round by round."""
    raw = json.dumps(body).encode()
    first = post(client, "/mutate", raw)
    pinned = patched(body, first)
    assert post(client, "/validate", pinned)["allowed"] is True
    assert post(client, "/validate", raw)["allowed"] is True

    def validate() -> None:
        post(client, "/validate", raw)

    def both() -> None:
        post(client, "/mutate", raw)
        post(client, "/validate", pinned)

    single: list[float] = []
    pair: list[float] = []
    for _ in range(rounds):
        for run, samples in ((validate, single), (both, pair)):
            started = time.perf_counter()
            run()
            samples.append(time.perf_counter() - started)
    ratio = statistics.median(pair) / statistics.median(single)
    return {
        "validate": percentiles(single),
        "mutate_then_validate": percentiles(pair),
        "ratio_p50": round(ratio, 3),
        "patched": "patch" in first,
    }


def app_client(policies: Path, config: dict[str, Any]) -> tuple[FlaskClient, Callable[[], None]]:
    app = create_app(Settings(policies=policies, config=parse_config(config), reload=False))

    def close() -> None:
        app.extensions["trustgate"].store.stop()
        app.extensions["trustgate"].engine.close()

    return app.test_client(), close


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=2000)
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "mutate.json")
    args = parser.parse_args()

    # The decision log is written for both routes, as the server writes it.
    configure_logging(stream=io.StringIO(), background=True)
    tmp = Path(tempfile.mkdtemp(prefix="trustgate-bench-mutate-"))
    registry = start_registry(tmp / "registry")
    try:
        key = generate_key("ecdsa-p256")
        repository = "bench/pinned"
        push_app(registry, repository, signed_by=key)
        image = f"{registry.host}/{repository}:v1"

        signed_dir, plain_dir = key_policies(tmp, key, registry.host)
        config = insecure(registry.host)
        body = pod_review(image, image, kind="Deployment")
        results: dict[str, Any] = {}
        for name, directory in (("allowlist_only", plain_dir), ("warm_signed", signed_dir)):
            client, close = app_client(directory, config)
            try:
                results[name] = measure(client, body, args.rounds)
            finally:
                close()
    finally:
        registry.stop()

    assert results["warm_signed"]["patched"] and not results["allowlist_only"]["patched"]
    figures = {
        f"{name}_{what}": results[name][what]
        for name in results
        for what in ("validate", "mutate_then_validate")
    }
    ratios = {name: results[name]["ratio_p50"] for name in results}
    summary = {
        "results": results,
        "ratios_p50": ratios,
        "target": f"mutate then validate <= {TARGET} x validate",
        "met": all(r <= TARGET for r in ratios.values()),
    }
    report(figures, summary, args.out)
    for name, ratio in ratios.items():
        print(f"{name}: /mutate then /validate = {ratio:.2f} x /validate (target <= {TARGET})")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
