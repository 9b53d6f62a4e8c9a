"""Warm reviews that log in with the pod's pull secrets, against the same login from the config.

Starts a token-protected docker-registry on 127.0.0.1 with a signed image only its
user may pull, and the stand-in Kubernetes API (tests/support/apistore.py) holding
that login as a pull secret. Two engines judge the same Pod (the code path of
``POST /validate``, without the HTTP server):

- baseline: the login comes from trustgate.yaml (``registries.<host>``), the Pod
  the same (its ``imagePullSecrets`` unread);
- pull secrets: ``credentials.pullSecrets`` with the watched store, the Pod naming
  a wrong secret, then the right one, and its service account another.

Rounds alternate between the two so that both see the same machine; the figure
that matters is the ratio of their p50s. Then it counts the API-server calls the
watched store made over 1,000 more reviews (target: none beyond its lists and
watches).

    python bench/pullsecrets.py [--rounds 2000]

Target: warm review with pull secrets at most 1.1x the baseline.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from stage import key_policies, push_app  # noqa: E402  (bench/)
from timing import percentiles  # noqa: E402

from tests.support.apistore import start_store  # noqa: E402
from tests.support.cosign import generate_key  # noqa: E402
from tests.support.kube import pod_spec, review, workload  # noqa: E402
from tests.support.pullcluster import (  # noqa: E402
    grant_cluster,
    kubeconfig,
    pull_secret,
    reset,
    service_account,
)
from tests.support.registry import start_token_registry  # noqa: E402
from webhook.admission.review import review as answer  # noqa: E402
from webhook.config import parse_config  # noqa: E402
from webhook.core.deadline import Deadline  # noqa: E402
from webhook.core.scope import PullIdentity  # noqa: E402
from webhook.policy.loader import load_directory  # noqa: E402
from webhook.services import build_engine, watched_pull_secrets  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=2000)
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "pullsecrets.json")
    args = parser.parse_args()

    tmp = Path(tempfile.mkdtemp(prefix="trustgate-bench-pull-"))
    registry = start_token_registry(tmp / "registry")
    api = reset(start_store(tmp / "api"))
    try:
        assert registry.username is not None and registry.password is not None
        key = generate_key("ecdsa-p256")
        push_app(registry, "bench/private", content=b"private\n", signed_by=key)
        image = f"{registry.host}/bench/private:v1"
        signed_dir, _ = key_policies(tmp, key, registry.host)
        policies = load_directory(signed_dir)

        right = {registry.host: (registry.username, registry.password)}
        wrong = {registry.host: (registry.username, "wrong-" + registry.password)}
        grant_cluster(api)
        api.put(pull_secret("prod-bench", "stale", wrong))
        api.put(pull_secret("prod-bench", "regcred", right))
        api.put(pull_secret("prod-bench", "robot", wrong))
        api.put(service_account("prod-bench", "default", "robot"))

        baseline_config = parse_config(
            {
                "registries": {
                    registry.host: {
                        "insecure": True,
                        "username": registry.username,
                        "password": registry.password,
                    }
                }
            }
        )
        pull_config = parse_config(
            {
                "registries": {registry.host: {"insecure": True}},
                "credentials": {"pullSecrets": True},
                "kubernetes": {"kubeconfig": str(kubeconfig(api, tmp))},
            }
        )
        watched = watched_pull_secrets(pull_config)
        assert watched is not None
        reader, store = watched
        store.start()
        reader.scope(PullIdentity("prod-bench"), Deadline(10))  # waits for the first lists

        # One Pod for both: the baseline reads no secret, so its names cost it only parsing.
        spec = {**pod_spec(image), "imagePullSecrets": [{"name": "stale"}, {"name": "regcred"}]}
        request = with_secrets = review(workload("Pod", spec, namespace="prod-bench"))

        baseline = build_engine(lambda: policies, baseline_config)
        pulling = build_engine(lambda: policies, pull_config, pull_secrets=reader)
        for engine, body in ((baseline, request), (pulling, with_secrets)):
            decision = answer(engine, body)[1]
            assert decision.allowed, decision.message

        if os.environ.get("TRUSTGATE_BENCH_PROFILE"):
            import cProfile
            import pstats

            for name, engine in (("baseline", baseline), ("pull secrets", pulling)):
                profile = cProfile.Profile()
                profile.runcall(lambda e=engine: [answer(e, request) for _ in range(20000)])
                print(f"--- {name}")
                pstats.Stats(profile).sort_stats("tottime").print_stats(14)
            return
        samples: dict[str, list[float]] = {"baseline": [], "pull secrets": []}
        for _ in range(args.rounds // 100):
            for name, engine, body in (
                ("baseline", baseline, request),
                ("pull secrets", pulling, with_secrets),
            ):
                for _ in range(100):
                    started = time.perf_counter()
                    answer(engine, body)
                    samples[name].append(time.perf_counter() - started)

        before_store, before_api = store.calls.snapshot(), len(api.calls)
        for _ in range(1000):
            answer(pulling, with_secrets)
        after_store, after_api = store.calls.snapshot(), len(api.calls)

        results = {name: percentiles(values) for name, values in samples.items()}
        ratio = statistics.median(samples["pull secrets"]) / statistics.median(samples["baseline"])
        results["ratio_p50"] = {"pull secrets / baseline": round(ratio, 3)}
        results["api_calls_per_1000_reviews"] = {
            kind: after_store[kind] - before_store[kind] for kind in after_store
        } | {"seen by the API server": after_api - before_api}
        results["api_calls_at_start"] = before_store
        for name, figures in results.items():
            print(f"{name:28s} {figures}")
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(results, indent=2) + "\n")
        baseline.close()
        pulling.close()
        store.close()
    finally:
        api.stop()
        registry.stop()


if __name__ == "__main__":
    main()
