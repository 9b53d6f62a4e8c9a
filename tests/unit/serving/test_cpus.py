"""webhook.serving.cpus: the CPUs a process may use, read from fake cgroup trees."""

from __future__ import annotations

from pathlib import Path

import pytest

from webhook.serving.cpus import MAX_AUTO_WORKERS, WorkerCount, auto_workers, cpu_quota

V2 = "0::/\n"
V2_NESTED = "0::/kubepods/burstable/pod1/abc\n"
V1 = "12:cpu,cpuacct:/\n4:memory:/\n0::/\n"


def tree(tmp: Path, membership: str, files: dict[str, str]) -> tuple[Path, Path]:
    """A cgroup mount holding ``files``, and a /proc/self/cgroup that reads ``membership``."""
    root = tmp / "cgroup"
    root.mkdir()
    for name, text in files.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(text)
    proc = tmp / "proc-self-cgroup"
    proc.write_text(membership)
    return root, proc


@pytest.mark.parametrize(
    ("membership", "files", "quota"),
    [
        (V2, {"cpu.max": "max 100000\n"}, None),
        (V2, {"cpu.max": "150000 100000\n"}, 1.5),
        (V2, {"cpu.max": "50000 100000\n"}, 0.5),
        (V2, {"cpu.max": "400000 200000\n"}, 2.0),
        (V2, {}, None),  # no cpu controller: no quota
        (V2, {"cpu.max": "garbage\n"}, None),
        (V2, {"cpu.max": "-5 100000\n"}, None),
        (V2, {"cpu.max": "100000 0\n"}, None),
        # The process's own cgroup, and the tightest of its ancestors.
        (
            V2_NESTED,
            {
                "kubepods/cpu.max": "max 100000\n",
                "kubepods/burstable/cpu.max": "300000 100000\n",
                "kubepods/burstable/pod1/abc/cpu.max": "max 100000\n",
            },
            3.0,
        ),
        (
            V2_NESTED,
            {
                "kubepods/burstable/pod1/cpu.max": "250000 100000\n",
                "kubepods/burstable/pod1/abc/cpu.max": "120000 100000\n",
            },
            1.2,
        ),
        # A cgroup namespace: the path named does not exist under the mount, its root counts.
        (V2_NESTED, {"cpu.max": "200000 100000\n"}, 2.0),
        # cgroup v1: the cpu controller's CFS quota, -1 for none.
        (
            V1,
            {"cpu,cpuacct/cpu.cfs_quota_us": "-1\n", "cpu,cpuacct/cpu.cfs_period_us": "100000\n"},
            None,
        ),
        (
            V1,
            {
                "cpu,cpuacct/cpu.cfs_quota_us": "250000\n",
                "cpu,cpuacct/cpu.cfs_period_us": "100000\n",
            },
            2.5,
        ),
        (
            "3:cpu:/docker/abc\n",
            {
                "cpu/docker/cpu.cfs_quota_us": "100000\n",
                "cpu/docker/cpu.cfs_period_us": "100000\n",
                "cpu/docker/abc/cpu.cfs_quota_us": "-1\n",
                "cpu/docker/abc/cpu.cfs_period_us": "100000\n",
            },
            1.0,
        ),
        (V1, {"cpu,cpuacct/cpu.cfs_quota_us": "250000\n"}, None),  # no period: unreadable
    ],
)
def test_cpu_quota(
    tmp_path: Path, membership: str, files: dict[str, str], quota: float | None
) -> None:
    root, proc = tree(tmp_path, membership, files)
    assert cpu_quota(root, proc) == quota


def test_cpu_quota_without_proc_file_reads_the_mount_root(tmp_path: Path) -> None:
    root, _ = tree(tmp_path, V2, {"cpu.max": "300000 100000\n"})
    assert cpu_quota(root, tmp_path / "missing") == 3.0


def test_cpu_quota_never_reads_above_the_mount(tmp_path: Path) -> None:
    # A path that climbs out of the mount must not make it read the parent's files.
    root, proc = tree(tmp_path, "0::/../../\n", {})
    (tmp_path / "cpu.max").write_text("100000 100000\n")
    assert cpu_quota(root, proc) is None


@pytest.mark.parametrize(
    ("affinity", "membership", "files", "millicores", "expected"),
    [
        # Kubernetes CPU limit 1.5 on a 64-CPU node: affinity lists them all, the quota rules.
        (64, V2, {"cpu.max": "150000 100000\n"}, None, WorkerCount(2, "cgroup CPU quota 1.5 CPUs")),
        (64, V2, {"cpu.max": "100000 100000\n"}, None, WorkerCount(1, "cgroup CPU quota 1 CPU")),
        (64, V2, {"cpu.max": "20000 100000\n"}, None, WorkerCount(1, "cgroup CPU quota 0.2 CPUs")),
        # A quota above the CPUs the process may run on: affinity rules.
        (2, V2, {"cpu.max": "800000 100000\n"}, None, WorkerCount(2, "CPU affinity 2 CPUs")),
        (2, V2, {"cpu.max": "max 100000\n"}, None, WorkerCount(2, "CPU affinity 2 CPUs")),
        (1, V2, {}, None, WorkerCount(1, "CPU affinity 1 CPU")),
        # Never more than the cap, however many CPUs.
        (
            64,
            V2,
            {"cpu.max": "max 100000\n"},
            None,
            WorkerCount(MAX_AUTO_WORKERS, f"CPU affinity 64 CPUs, at most {MAX_AUTO_WORKERS}"),
        ),
        (
            64,
            V2,
            {"cpu.max": "1600000 100000\n"},
            None,
            WorkerCount(MAX_AUTO_WORKERS, f"cgroup CPU quota 16 CPUs, at most {MAX_AUTO_WORKERS}"),
        ),
        # A request without a limit: what the scheduler reserved.
        (
            64,
            V2,
            {"cpu.max": "max 100000\n"},
            100,
            WorkerCount(1, "CPU request 0.1 CPUs (no CPU limit)"),
        ),
        (64, V2, {}, 2500, WorkerCount(3, "CPU request 2.5 CPUs (no CPU limit)")),
        (2, V2, {}, 8000, WorkerCount(2, "CPU affinity 2 CPUs")),
        (
            8,
            V2,
            {},
            0,
            WorkerCount(MAX_AUTO_WORKERS, f"CPU affinity 8 CPUs, at most {MAX_AUTO_WORKERS}"),
        ),
        # With a limit, the request does not lower it: the pod may use its limit.
        (64, V2, {"cpu.max": "200000 100000\n"}, 500, WorkerCount(2, "cgroup CPU quota 2 CPUs")),
    ],
)
def test_auto_workers(
    tmp_path: Path,
    affinity: int,
    membership: str,
    files: dict[str, str],
    millicores: int | None,
    expected: WorkerCount,
) -> None:
    root, proc = tree(tmp_path, membership, files)
    chosen = auto_workers(
        affinity=affinity, request_millicores=millicores, cgroup_root=root, proc_cgroup=proc
    )
    assert chosen == expected


def test_the_log_line_names_count_and_source() -> None:
    assert (
        str(WorkerCount(2, "cgroup CPU quota 1.5 CPUs")) == "2 workers: cgroup CPU quota 1.5 CPUs"
    )
    assert str(WorkerCount(1, "CPU affinity 1 CPU")) == "1 worker: CPU affinity 1 CPU"


def test_this_machine_by_default() -> None:
    # The real files of this machine: at least one worker, never more than the cap,
    # and never more than the CPUs the process may run on.
    import os

    chosen = auto_workers()
    assert 1 <= chosen.workers <= min(MAX_AUTO_WORKERS, len(os.sched_getaffinity(0)))
