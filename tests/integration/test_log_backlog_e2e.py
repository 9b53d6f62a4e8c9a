"""A stalled log sink costs a worker bounded memory, and what it drops is counted.

`trustgate serve` runs with its stdout and stderr on a pipe that nobody reads: once the
pipe's 64 KiB buffer is full, the log writer thread blocks in write(2) for good. Reviews
then keep coming, each with a decision-log line of about 60 KiB (200 images with long
names). The worker must keep answering at once, hold at most its backlog bound of
those lines, and count every line it drops in trustgate_log_lines_dropped_total.
"""

from __future__ import annotations

import json
import os
import subprocess
import threading
import time
from pathlib import Path

import pytest
import requests

from tests.integration.conftest import READY_DEADLINE, free_port, trustgate_command
from tests.support.kube import pod_spec, review, workload
from webhook.core import certs

pytestmark = pytest.mark.e2e

MiB = 1024 * 1024
REVIEWS = 400  # ~24 MiB of decision log, three times the backlog bound

POLICY = (
    "apiVersion: trustgate.dev/v1alpha1\nkind: ImagePolicy\nmetadata: {name: open}\n"
    "spec:\n  mode: enforce\n  match: {namespaces: ['*']}\n  registries: ['quay.io/**']\n"
)


def _rss(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise AssertionError("no VmRSS")


def _worker(pid: int) -> int:
    children = Path(f"/proc/{pid}/task/{pid}/children")
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        found = children.read_text().split()
        if found:
            return int(found[0])
        time.sleep(0.1)
    raise AssertionError("no worker")


def test_a_stalled_log_sink_bounds_the_backlog_and_counts_the_drops(tmp_path: Path) -> None:
    paths = certs.generate(tmp_path / "certs", service="trustgate", namespace="trustgate",
                           extra_sans=["localhost", "127.0.0.1"])  # fmt: skip
    policies = tmp_path / "policies"
    policies.mkdir()
    (policies / "open.yaml").write_text(POLICY)
    config = tmp_path / "trustgate.yaml"
    config.write_text("policies: {reloadIntervalSeconds: 0}\n")
    port = free_port()
    process = subprocess.Popen(
        [*trustgate_command(), "serve", "--policies", str(policies), "--config", str(config),
         "--cert", str(paths.cert), "--key", str(paths.key), "--host", "127.0.0.1",
         "--port", str(port), "--workers", "1"],
        stdout=subprocess.PIPE,  # a sink nobody reads
        stderr=subprocess.STDOUT,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )  # fmt: skip
    url = f"https://localhost:{port}"
    session = requests.Session()
    ca = str(paths.ca)  # per call: a REQUESTS_CA_BUNDLE in the environment beats session.verify
    try:
        deadline = time.monotonic() + READY_DEADLINE
        problem: Exception | None = None
        while True:
            try:
                if session.get(f"{url}/healthz", timeout=2, verify=ca).status_code == 200:
                    break
            except requests.RequestException as exc:
                problem = exc
            assert time.monotonic() < deadline and process.poll() is None, f"not ready: {problem}"
            time.sleep(0.1)
        worker = _worker(process.pid)
        images = [f"quay.io/acme/{'x' * 180}/app{i}:1" for i in range(200)]
        body = json.dumps(review(workload("Pod", pod_spec(*images), namespace="prod-web")))
        headers = {"Content-Type": "application/json"}
        for _ in range(5):  # warm up: fills the pipe, and the first allocations are made
            session.post(f"{url}/validate", data=body, headers=headers, timeout=30, verify=ca)
        before = _rss(worker)
        slowest = 0.0
        for _ in range(REVIEWS):
            started = time.monotonic()
            answer = session.post(
                f"{url}/validate", data=body, headers=headers, timeout=30, verify=ca
            )
            slowest = max(slowest, time.monotonic() - started)
            assert answer.status_code == 200 and answer.json()["response"]["allowed"] is True
        growth = _rss(worker) - before
        metrics = session.get(f"{url}/metrics", timeout=10, verify=ca).text
        dropped = [
            float(line.split()[-1])
            for line in metrics.splitlines()
            if line.startswith("trustgate_log_lines_dropped_total ")
        ]
        print(f"\nRSS growth {growth / MiB:.1f} MiB, slowest review {slowest:.2f} s, {dropped=}")
        # The stalled sink never held a review up (each is a few milliseconds of work).
        assert slowest < 5
        # At most the 8 MiB backlog (and the lines' short-lived copies) stays: without
        # the bound every one of the 400 lines (~24 MiB) would.
        assert growth < 16 * MiB
        # 400 lines of ~60 KiB against an 8 MiB backlog: most of them dropped.
        assert dropped and dropped[0] > 150
    finally:
        drain = threading.Thread(
            target=lambda: process.stdout and process.stdout.read(), daemon=True
        )
        drain.start()  # gunicorn logs its shutdown: let it
        process.terminate()
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
