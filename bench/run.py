"""Load `trustgate serve` over TLS and, in the same run, minimal apps on the same stack.

The baselines (bench/minimal_app.py) admit everything after reading the body:
"minimal" is a bare Flask app, "lean" the same view below Flask's request
machinery, on the path trustgate serves reviews by (webhook.serving.reviewpath). All get
the same gunicorn/TLS settings (trustgate's worker class, workers and threads)
and the same realistic Deployment AdmissionReview (an allowlist-only policy);
wrk drives each at 4 and 32 connections, the servers in turn for several rounds
so that load from elsewhere on the machine falls on all. Besides
requests/s and latency, each measurement takes the CPU time (user + system) the
server's whole process tree (gunicorn's master and workers) spent, per request.
The figures that matter are ratios measured in one run, since absolute numbers on
a shared 2-core machine move from run to run.

    python bench/run.py [--seconds 10] [--rounds 3] [--workers 2] [--threads 4]

Targets: capacity ratio (the minimal app's CPU per request over trustgate's, at 32
connections, median over rounds) at least 0.9; trustgate's p99 at 4 connections
within 1.25 x the minimal app's. The lean ratio (the lean app's CPU per request
over trustgate's) is printed beside them: what the decision itself costs.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from serving import free_port, usage, wait_ready  # noqa: E402  (bench/, the script's own directory)

from webhook.core import certs  # noqa: E402

POLICY = """\
apiVersion: trustgate.dev/v1alpha1
kind: ImagePolicy
metadata: {name: production}
spec:
  mode: enforce
  match: {namespaces: ["prod-*"]}
  registries: ["registry.redhat.io/**", "quay.io/acme/**"]
"""

_UNITS = {"us": 1e-3, "ms": 1.0, "s": 1000.0}


def deployment_review() -> dict:
    """A Deployment as kubectl apply creates it: three containers, one init container."""
    containers = [
        {
            "name": name,
            "image": image,
            "ports": [{"containerPort": 8080, "protocol": "TCP"}],
            "env": [{"name": "LOG_LEVEL", "value": "info"}],
            "resources": {"limits": {"cpu": "500m", "memory": "256Mi"}},
            "readinessProbe": {"httpGet": {"path": "/ready", "port": 8080}},
            "terminationMessagePath": "/dev/termination-log",
            "imagePullPolicy": "IfNotPresent",
        }
        for name, image in [
            ("api", "quay.io/acme/api:2.4.1"),
            ("proxy", "registry.redhat.io/ubi9/nginx-124:1-21"),
            ("metrics", "quay.io/acme/exporter@sha256:" + "7" * 64),
        ]
    ]
    template = {
        "metadata": {"labels": {"app": "api"}},
        "spec": {
            "initContainers": [{"name": "migrate", "image": "quay.io/acme/migrate:2.4.1"}],
            "containers": containers,
            "restartPolicy": "Always",
            "serviceAccountName": "api",
        },
    }
    obj = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {
            "name": "api",
            "namespace": "prod-shop",
            "labels": {"app": "api"},
            "annotations": {"kubectl.kubernetes.io/last-applied-configuration": "{}" * 200},
        },
        "spec": {"replicas": 3, "selector": {"matchLabels": {"app": "api"}}, "template": template},
    }
    gvk = {"group": "apps", "version": "v1", "kind": "Deployment"}
    gvr = {"group": "apps", "version": "v1", "resource": "deployments"}
    return {
        "apiVersion": "admission.k8s.io/v1",
        "kind": "AdmissionReview",
        "request": {
            "uid": "0df28fbd-5f5f-11e8-bc74-36e6bb280816",
            "kind": gvk,
            "resource": gvr,
            "requestKind": gvk,
            "requestResource": gvr,
            "name": "api",
            "namespace": "prod-shop",
            "operation": "CREATE",
            "userInfo": {"username": "ci-deployer", "groups": ["system:authenticated"]},
            "object": obj,
            "oldObject": None,
            "dryRun": False,
            "options": {"apiVersion": "meta.k8s.io/v1", "kind": "CreateOptions"},
        },
    }


def wrk(url: str, script: Path, connections: int, seconds: int) -> dict[str, float]:
    """One wrk run; requests/s, the requests made, and latency percentiles in milliseconds."""
    threads = min(2, connections)
    command = [
        "wrk", f"-t{threads}", f"-c{connections}", f"-d{seconds}s", "--latency",
        "-s", str(script), f"{url}/validate",
    ]  # fmt: skip
    out = subprocess.run(command, capture_output=True, text=True, check=True).stdout
    result = {
        "rps": float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1)),  # type: ignore[union-attr]
        "requests": float(re.search(r"(\d+) requests in", out).group(1)),  # type: ignore[union-attr]
    }
    for pct in ("50", "99"):
        value, unit = re.search(rf"^\s+{pct}%\s+([\d.]+)(us|ms|s)\s*$", out, re.M).groups()  # type: ignore[union-attr]
        result[f"p{pct}_ms"] = round(float(value) * _UNITS[unit], 3)
    errors = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    if errors:
        raise SystemExit(f"{errors.group(1)} non-2xx responses from {url}:\n{out}")
    return result


def measure(url: str, pid: int, script: Path, connections: int, seconds: int) -> dict[str, float]:
    """One wrk run, with the server tree's CPU milliseconds per request over it."""
    before = usage(pid).cpu_seconds
    result = wrk(url, script, connections, seconds)
    spent = usage(pid).cpu_seconds - before
    result["cpu_ms_per_request"] = round(1000 * spent / max(result["requests"], 1), 4)
    return result


def median_of(runs: list[dict[str, float]]) -> dict[str, float]:
    """The median of each figure over the rounds."""
    return {key: round(statistics.median(r[key] for r in runs), 4) for key in runs[0]}


def _line(name: str, label: str, connections: str, r: dict[str, float]) -> str:
    return (
        f"{name:10s} {label:7s} c{connections:<2s} {r['rps']:7.0f} req/s"
        f"  cpu {r['cpu_ms_per_request']:.3f} ms/req"
        f"  p50 {r['p50_ms']:6.2f} ms  p99 {r['p99_ms']:6.2f} ms"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=int, default=10, help="seconds per measurement")
    parser.add_argument("--rounds", type=int, default=3, help="measurements of each server")
    parser.add_argument("--workers", type=int, default=2, help="gunicorn workers per server")
    parser.add_argument("--threads", type=int, default=4, help="server threads per worker")
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "webhook.json")
    args = parser.parse_args()
    if shutil.which("wrk") is None:
        raise SystemExit("wrk is not installed: apt-get install wrk (make bench does this)")

    tmp = Path(tempfile.mkdtemp(prefix="trustgate-bench-"))
    paths = certs.generate(tmp / "certs", service="trustgate", namespace="bench",
                           extra_sans=["127.0.0.1"])  # fmt: skip
    (tmp / "policies").mkdir()
    (tmp / "policies" / "production.yaml").write_text(POLICY)
    body = json.dumps(deployment_review())
    script = tmp / "post.lua"
    script.write_text(
        'wrk.method = "POST"\nwrk.headers["Content-Type"] = "application/json"\n'
        f"wrk.body = [==[{body}]==]\n"
    )
    python = sys.executable
    trustgate = Path(python).with_name("trustgate")
    stack = ["--cert", str(paths.cert), "--key", str(paths.key), "--workers", str(args.workers),
             "--threads", str(args.threads), "--port"]  # fmt: skip
    servers = {
        "trustgate": [str(trustgate), "serve", "--policies", str(tmp / "policies"),
                      "--host", "127.0.0.1", *stack],
        "minimal": [python, str(ROOT / "bench" / "minimal_app.py"), *stack],
        "lean": [python, str(ROOT / "bench" / "minimal_app.py"), "--lean", *stack],
    }  # fmt: skip
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join(filter(None, [os.environ.get("PYTHONPATH"), str(ROOT)])),
    }
    running: dict[str, tuple[subprocess.Popen[bytes], str]] = {}
    runs: dict[str, dict[str, list[dict[str, float]]]] = {n: {"c4": [], "c32": []} for n in servers}
    try:
        for name, command in servers.items():
            port = free_port()
            log = tmp / f"{name}.log"
            process = subprocess.Popen([*command, str(port)], stdout=log.open("wb"),
                                       stderr=subprocess.STDOUT, env=env)  # fmt: skip
            running[name] = (process, f"https://127.0.0.1:{port}")
            wait_ready(running[name][1], paths.ca, process, log)
        for _process, url in running.values():
            wrk(url, script, 32, 3)  # warm-up: imports, TLS sessions, caches
        for round_ in range(1, args.rounds + 1):
            for name, (process, url) in running.items():
                for c in (4, 32):
                    result = measure(url, process.pid, script, c, args.seconds)
                    runs[name][f"c{c}"].append(result)
                    print(_line(name, f"round {round_}", str(c), result), flush=True)
    finally:
        for process, _ in running.values():
            process.send_signal(signal.SIGTERM)
        for process, _ in running.values():
            process.wait(timeout=30)

    results = {name: {c: median_of(r) for c, r in by_c.items()} for name, by_c in runs.items()}
    for name, by_c in results.items():
        for c, r in by_c.items():
            print(_line(name, "median", c[1:], r))
    tg, mini = results["trustgate"], results["minimal"]
    pairs = {
        c: list(zip(runs["minimal"][c], runs["trustgate"][c], strict=True)) for c in ("c4", "c32")
    }
    capacity = [m["cpu_ms_per_request"] / t["cpu_ms_per_request"] for m, t in pairs["c32"]]
    # What the decision alone costs: trustgate against the same view on its own serving path.
    lean = [
        m["cpu_ms_per_request"] / t["cpu_ms_per_request"]
        for m, t in zip(runs["lean"]["c32"], runs["trustgate"]["c32"], strict=True)
    ]
    p99 = [t["p99_ms"] / m["p99_ms"] for m, t in pairs["c4"]]
    throughput = tg["c32"]["rps"] / mini["c32"]["rps"]
    summary = {
        "settings": {
            "workers": args.workers,
            "threads": args.threads,
            "seconds": args.seconds,
            "rounds": args.rounds,
        },
        "results": results,
        "rounds": runs,
        "capacity_ratio_c32": round(statistics.median(capacity), 3),
        "capacity_ratio_c32_rounds": [round(x, 3) for x in capacity],
        "lean_capacity_ratio_c32": round(statistics.median(lean), 3),
        "p99_ratio_c4": round(statistics.median(p99), 3),
        "p99_ratio_c4_rounds": [round(x, 3) for x in p99],
        "throughput_ratio_c32": round(throughput, 3),
        "targets": {"capacity_ratio_c32": ">= 0.90", "p99_ratio_c4": "<= 1.25"},
    }
    summary["met"] = summary["capacity_ratio_c32"] >= 0.9 and summary["p99_ratio_c4"] <= 1.25
    spread = ", ".join(f"{x:.2f}" for x in capacity)
    print(
        f"capacity ratio at 32 connections (minimal CPU/request over trustgate's): "
        f"{summary['capacity_ratio_c32']:.2f} median of [{spread}] (target >= 0.90)"
    )
    spread = ", ".join(f"{x:.2f}" for x in p99)
    print(
        f"p99 at 4 connections, trustgate over minimal: {summary['p99_ratio_c4']:.2f} "
        f"median of [{spread}] (target <= 1.25)"
    )
    print(f"throughput ratio at 32 connections (medians): {throughput:.2f}")
    spread = ", ".join(f"{x:.2f}" for x in lean)
    print(
        f"lean capacity ratio at 32 connections (the lean app's CPU/request over trustgate's, "
        f"what the decision itself costs): {summary['lean_capacity_ratio_c32']:.2f} "
        f"median of [{spread}]"
    )
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(summary, indent=2) + "\n")
    print(f"wrote {args.out}")
    shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
