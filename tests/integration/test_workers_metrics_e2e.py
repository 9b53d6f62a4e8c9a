"""Several workers, one pod's metrics: ``trustgate serve --workers 2`` over TLS.

Each worker is a process of its own. Without shared metrics a scrape reads the
registry of whichever worker answers it, so the admission counter jumps between
one worker's share and the other's. These tests count the reviews sent and
compare every scrape against that count, check that per-pod gauges and the
certificate collector appear once, that a killed worker's counts are kept and
its live gauges are dropped, and that the shared directory is private to the
server and gone when it stops.
"""

from __future__ import annotations

import json
import os
import re
import signal
import stat
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from prometheus_client.multiprocess import MultiProcessCollector

from tests.integration.conftest import (
    E2E_POLICIES,
    Server,
    e2e_policies,
    start_server,
    stop_server,
    wait_for,
)
from tests.support.kube import pod_spec, review, workload
from tests.support.scrape import samples
from webhook.core.tally import FLUSH_SECONDS
from webhook.serving.cpus import auto_workers

REVIEWS = 60
SCRAPES = 8


def admitted(text: str) -> float:
    """The admission counter's total over its decisions."""
    return sum(value for _, value in samples(text).get("trustgate_admission_requests_total", []))


def send_reviews(server: Server, count: int) -> None:
    """``count`` allowed reviews, 8 at a time, each on a new connection (so both workers answer)."""
    body = json.dumps(review(workload("Deployment", pod_spec("quay.io/acme/api:1.0"))))

    def one(_: int) -> bool:
        response = server.post(body)
        return response.status_code == 200 and response.json()["response"]["allowed"] is True

    with ThreadPoolExecutor(max_workers=8) as pool:
        assert all(pool.map(one, range(count)))


def shared_directory(tmp: Path) -> Path:
    """The one directory the server's workers write their metrics to (under its TMPDIR)."""
    found = list(tmp.glob("trustgate-metrics-*"))
    assert len(found) == 1, found
    return found[0]


def worker_pids(directory: Path) -> set[int]:
    """The workers that have written counters, by their files' names."""
    return {
        int(m.group(1))
        for f in directory.iterdir()
        if (m := re.match(r"counter_(\d+)\.db", f.name))
    }


def reviews_counted_by(directory: Path, pid: int) -> float:
    """What worker ``pid`` alone counted, read from its own file."""
    total = 0.0
    for metric in MultiProcessCollector.merge([str(directory / f"counter_{pid}.db")]):
        if metric.name == "trustgate_admission_requests":
            total += sum(s.value for s in metric.samples if s.name.endswith("_total"))
    return total


def counted_by_each(directory: Path, pids: set[int], reviews: int) -> dict[int, float]:
    """What each worker counted, once their files add up to ``reviews``.

    A worker applies its counts in batches, within tally.FLUSH_SECONDS.
    """
    deadline = time.monotonic() + 20 * FLUSH_SECONDS
    per_worker = {pid: reviews_counted_by(directory, pid) for pid in pids}
    while sum(per_worker.values()) < reviews and time.monotonic() < deadline:
        time.sleep(FLUSH_SECONDS / 2)
        per_worker = {pid: reviews_counted_by(directory, pid) for pid in pids}
    return per_worker


@pytest.fixture
def two_workers(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[Server, Path]]:
    """A server with two workers whose temporary files go under ``tmp_path/tmp``."""
    temporary = tmp_path / "tmp"
    temporary.mkdir()
    monkeypatch.setenv("TMPDIR", str(temporary))
    policies = e2e_policies(tmp_path)
    server = start_server(tmp_path, policies, serve_args=["--workers", "2"])
    try:
        # Both workers serving, so that both answer reviews (one may still be starting).
        assert wait_for(
            lambda: len(re.findall(r'"msg":"worker \d+ ready"', server.log_text())) == 2
        )
        yield server, temporary
    finally:
        if server.process.poll() is None:
            stop_server(server)


@pytest.mark.e2e
def test_every_scrape_counts_every_workers_reviews(two_workers: tuple[Server, Path]) -> None:
    server, temporary = two_workers
    send_reviews(server, REVIEWS)
    directory = shared_directory(temporary)
    pids = worker_pids(directory)
    assert len(pids) == 2, pids
    # Both workers answered reviews: a scrape of either one alone would be short.
    per_worker = counted_by_each(directory, pids, REVIEWS)
    assert all(count > 0 for count in per_worker.values()), per_worker
    assert sum(per_worker.values()) == REVIEWS

    for _ in range(SCRAPES):
        text = server.get("/metrics").text  # a new connection each time
        assert admitted(text) == REVIEWS
        found = samples(text)
        histogram = found["trustgate_admission_duration_seconds_count"]
        assert [value for _, value in histogram] == [REVIEWS]
        # Per-pod gauges and the certificate collector: one sample each, no pid label.
        for name in (
            "trustgate_policies_loaded",
            "trustgate_policy_reload_success",
            "trustgate_certificate_expiry_timestamp_seconds",
        ):
            assert len(found[name]) == 1, (name, found[name])
            assert "pid" not in found[name][0][0]
        assert found["trustgate_policies_loaded"][0][1] == len(E2E_POLICIES)
        assert found["trustgate_policy_reload_success"][0][1] == 1
        states = [labels["state"] for labels, _ in found["trustgate_client_connections"]]
        assert sorted(states) == ["busy", "waiting"]


@pytest.mark.e2e
def test_a_killed_workers_counts_stay_and_its_live_gauges_go(
    two_workers: tuple[Server, Path],
) -> None:
    server, temporary = two_workers
    send_reviews(server, REVIEWS)
    directory = shared_directory(temporary)
    # Private to the server's user: other users cannot forge its metrics.
    assert stat.S_IMODE(directory.stat().st_mode) == 0o700
    before = worker_pids(directory)
    # Counted in the files, which is what a killed worker leaves (its last
    # FLUSH_SECONDS of increments are lost with it).
    per_worker = counted_by_each(directory, before, REVIEWS)
    victim = max(before, key=lambda pid: per_worker[pid])
    assert per_worker[victim] > 0
    os.kill(victim, signal.SIGKILL)
    # gunicorn starts a replacement, which writes its own files once its app is built.
    assert wait_for(lambda: len(worker_pids(directory) - before) == 1, timeout=30)
    assert wait_for(lambda: not list(directory.glob(f"gauge_live*_{victim}.db")))
    for _ in range(SCRAPES):
        assert admitted(server.get("/metrics").text) == REVIEWS
    send_reviews(server, 10)
    # The answering worker's own counts at once, the other's within FLUSH_SECONDS.
    assert wait_for(
        lambda: admitted(server.get("/metrics").text) == REVIEWS + 10, timeout=20 * FLUSH_SECONDS
    )

    assert stop_server(server) == 0
    assert not directory.exists()
    assert not list(temporary.iterdir())


@pytest.mark.e2e
def test_auto_starts_one_worker_per_available_cpu_and_says_why(tmp_path: Path) -> None:
    policies = e2e_policies(tmp_path)
    expected = auto_workers()  # the same machine, the same files
    server = start_server(tmp_path, policies, serve_args=["--workers", "auto"])
    try:
        assert server.logged(f'"msg":"{expected}"')
        master = server.process.pid
        children = Path(f"/proc/{master}/task/{master}/children")
        assert wait_for(lambda: len(children.read_text().split()) == expected.workers)
    finally:
        assert stop_server(server) == 0
