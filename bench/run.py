"""Load `trustgate serve` over TLS and, in the same run, a minimal app on the same stack.

Both servers get the same gunicorn/TLS settings and the same realistic Deployment
AdmissionReview (an allowlist-only policy); wrk drives each at 4 and 32
connections. The figures that matter are ratios measured in one run, since
absolute numbers on a shared 2-core machine move from run to run.

    python bench/run.py [--seconds 10] [--out bench/results/webhook.json]

Targets: at 32 connections trustgate reaches at least 70% of the minimal app's
throughput; at 4 connections its p99 stays under 5 ms.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from serving import free_port, wait_ready  # noqa: E402  (bench/, the script's own directory)

from webhook import certs  # noqa: E402

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
    """One wrk run; requests/s and latency percentiles in milliseconds."""
    threads = min(2, connections)
    command = [
        "wrk", f"-t{threads}", f"-c{connections}", f"-d{seconds}s", "--latency",
        "-s", str(script), f"{url}/validate",
    ]  # fmt: skip
    out = subprocess.run(command, capture_output=True, text=True, check=True).stdout
    result = {"rps": float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))}  # type: ignore[union-attr]
    for pct in ("50", "99"):
        value, unit = re.search(rf"^\s+{pct}%\s+([\d.]+)(us|ms|s)\s*$", out, re.M).groups()  # type: ignore[union-attr]
        result[f"p{pct}_ms"] = round(float(value) * _UNITS[unit], 3)
    errors = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    if errors:
        raise SystemExit(f"{errors.group(1)} non-2xx responses from {url}:\n{out}")
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=int, default=10)
    parser.add_argument("--threads", type=int, default=16, help="server threads per worker")
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
    servers = {
        "trustgate": [
            str(trustgate), "serve", "--policies", str(tmp / "policies"),
            "--cert", str(paths.cert), "--key", str(paths.key), "--threads", str(args.threads),
            "--host", "127.0.0.1", "--port",
        ],
        "minimal": [
            python, str(ROOT / "bench" / "minimal_app.py"), "--cert", str(paths.cert),
            "--key", str(paths.key), "--threads", str(args.threads), "--port",
        ],
    }  # fmt: skip
    results: dict[str, dict[str, dict[str, float]]] = {}
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join(filter(None, [os.environ.get("PYTHONPATH"), str(ROOT)])),
    }
    for name, command in servers.items():
        port = free_port()
        log = tmp / f"{name}.log"
        process = subprocess.Popen([*command, str(port)], stdout=log.open("wb"),
                                   stderr=subprocess.STDOUT, env=env)  # fmt: skip
        url = f"https://127.0.0.1:{port}"
        try:
            wait_ready(url, paths.ca, process, log)
            wrk(url, script, 8, 2)  # warm-up: imports, TLS sessions, caches
            results[name] = {f"c{c}": wrk(url, script, c, args.seconds) for c in (4, 32)}
        finally:
            process.send_signal(signal.SIGTERM)
            process.wait(timeout=30)
        print(f"{name:10s} " + "  ".join(
            f"c{c}: {r['rps']:8.0f} req/s p50 {r['p50_ms']:6.2f} ms p99 {r['p99_ms']:6.2f} ms"
            for c, r in ((k[1:], v) for k, v in results[name].items())
        ))  # fmt: skip

    ratio = results["trustgate"]["c32"]["rps"] / results["minimal"]["c32"]["rps"]
    p99 = results["trustgate"]["c4"]["p99_ms"]
    summary = {
        "results": results,
        "throughput_ratio_c32": round(ratio, 3),
        "trustgate_p99_ms_c4": p99,
        "targets": {"throughput_ratio_c32": ">= 0.70", "trustgate_p99_ms_c4": "< 5"},
        "met": ratio >= 0.70 and p99 < 5.0,
    }
    print(f"throughput ratio at 32 connections: {ratio:.2f} (target >= 0.70)")
    print(f"trustgate p99 at 4 connections: {p99:.2f} ms (target < 5 ms)")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(summary, indent=2) + "\n")
    print(f"wrote {args.out}")
    shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
