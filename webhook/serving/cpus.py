"""How many CPUs this process may really use, and so how many workers ``serve`` starts.

``os.cpu_count()`` counts the machine's CPUs, and in a container that is the
node's: a pod limited to 1.5 CPUs on a 64-CPU node still sees 64, and even its
CPU affinity lists every CPU. Kubernetes enforces a CPU limit as a CFS quota
on the container's cgroup (``cpu.max`` in cgroup v2, ``cpu.cfs_quota_us`` and
``cpu.cfs_period_us`` in v1), so that is where the real budget is read. A pod
with a CPU request and no limit has no quota; the chart hands the request in
through the Downward API, and it counts as the budget then.

Why one worker per CPU: a review's decision runs Python code under the GIL,
so one process decides on at most one CPU at a time, while its threads
overlap the waits on registries. More workers than CPUs only add memory and
contention; fewer leave CPUs the pod pays for idle.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

__all__ = ["MAX_AUTO_WORKERS", "WorkerCount", "auto_workers", "cpu_quota"]

#: At most this many workers for ``--workers auto``. Each worker is a whole
#: interpreter with its own app (about 65 MB RSS at start) and its own local
#: caches (thousands of entries each), so four fit the chart's 512Mi memory
#: limit with room for their caches; past four CPUs a pod is better split into
#: replicas, which the HPA adds and which also spread the failure domain.
MAX_AUTO_WORKERS = 4

CGROUP_ROOT = Path("/sys/fs/cgroup")
PROC_SELF_CGROUP = Path("/proc/self/cgroup")

#: Reads one cgroup directory's CPU quota, in CPUs.
_Reader = Callable[[Path], float | None]


@dataclass(frozen=True, slots=True)
class WorkerCount:
    """A number of workers and where it came from, for the start-up log line."""

    workers: int
    source: str

    def __str__(self) -> str:
        noun = "worker" if self.workers == 1 else "workers"
        return f"{self.workers} {noun}: {self.source}"


def auto_workers(
    *,
    affinity: int | None = None,
    request_millicores: int | None = None,
    cgroup_root: Path = CGROUP_ROOT,
    proc_cgroup: Path = PROC_SELF_CGROUP,
    cap: int = MAX_AUTO_WORKERS,
) -> WorkerCount:
    """One worker per CPU this process may use, rounded up, between 1 and ``cap``.

    The CPUs are the fewest of: the CPUs in this process's affinity (``affinity``,
    default ``os.sched_getaffinity``), the cgroup CPU quota (a Kubernetes CPU
    limit) and, only where there is no quota, ``request_millicores`` (a CPU
    request without a limit: what the scheduler reserved for the pod). A
    fractional budget rounds up, so 1.5 CPUs get 2 workers, which together can
    use all of it, where one would decide on 1 CPU at most.
    """
    cpus = float(affinity if affinity is not None else _affinity())
    source = f"CPU affinity {_cpus(cpus)}"
    quota = cpu_quota(cgroup_root, proc_cgroup)
    if quota is not None and quota < cpus:
        cpus, source = quota, f"cgroup CPU quota {_cpus(quota)}"
    elif quota is None and request_millicores and request_millicores / 1000 < cpus:
        cpus = request_millicores / 1000
        source = f"CPU request {_cpus(cpus)} (no CPU limit)"
    workers = max(1, math.ceil(cpus))
    if workers > cap:
        return WorkerCount(cap, f"{source}, at most {cap}")
    return WorkerCount(workers, source)


def cpu_quota(
    cgroup_root: Path = CGROUP_ROOT, proc_cgroup: Path = PROC_SELF_CGROUP
) -> float | None:
    """The CPUs this process's cgroups allow it (quota / period), or None without a quota.

    The smallest quota of the process's cgroup and its ancestors counts, in
    cgroup v2 (``0::/path`` in ``/proc/self/cgroup``, ``cpu.max`` files) and in
    v1 (the ``cpu`` controller's ``cpu.cfs_quota_us``, -1 for none). Inside a
    container the cgroup namespace usually makes the process's cgroup the root
    of the mount; where the path named in ``proc_cgroup`` does not exist under
    the mount, the mount's root is read. Files that cannot be read or parsed
    count as no quota: a wrong guess costs some throughput, never a start-up.
    """
    paths = _cgroup_paths(proc_cgroup)
    quotas: list[float] = []
    if "" in paths:
        quotas += _walk(cgroup_root, paths[""], _v2_quota)
    for mount in ("cpu", "cpu,cpuacct", "cpuacct,cpu"):
        if (cgroup_root / mount).is_dir():
            quotas += _walk(cgroup_root / mount, paths.get("cpu", "/"), _v1_quota)
            break
    return min(quotas, default=None)


def _cgroup_paths(proc_cgroup: Path) -> dict[str, str]:
    """Controller (``""`` for cgroup v2) -> the process's cgroup path, from /proc/self/cgroup."""
    try:
        text = proc_cgroup.read_text()
    except OSError:
        return {"": "/"}
    paths: dict[str, str] = {}
    for line in text.splitlines():
        parts = line.split(":", 2)
        if len(parts) != 3:
            continue
        _, controllers, path = parts
        for controller in controllers.split(",") if controllers else [""]:
            paths[controller] = path
    return paths


def _walk(mount: Path, path: str, read: _Reader) -> list[float]:
    """The quotas ``read`` finds from the process's cgroup up to the mount's root."""
    parts = [part for part in path.split("/") if part not in ("", ".")]
    directory = mount.joinpath(*parts)
    if ".." in parts or not directory.is_dir():
        directory = mount
    quotas: list[float] = []
    while True:
        quota = read(directory)
        if quota is not None:
            quotas.append(quota)
        if directory == mount or mount not in directory.parents:
            return quotas
        directory = directory.parent


def _v2_quota(directory: Path) -> float | None:
    """``cpu.max`` is "QUOTA PERIOD" in microseconds, QUOTA "max" for none."""
    try:
        quota, period = (directory / "cpu.max").read_text().split()
        return _ratio(quota, period)
    except (OSError, ValueError):
        return None


def _v1_quota(directory: Path) -> float | None:
    """``cpu.cfs_quota_us`` (-1 for none) over ``cpu.cfs_period_us``."""
    try:
        quota = (directory / "cpu.cfs_quota_us").read_text().strip()
        period = (directory / "cpu.cfs_period_us").read_text().strip()
        return _ratio(quota, period)
    except (OSError, ValueError):
        return None


def _ratio(quota: str, period: str) -> float | None:
    if quota in ("max", "-1"):
        return None
    quota_us, period_us = int(quota), int(period)
    if quota_us <= 0 or period_us <= 0:
        return None
    return quota_us / period_us


def _affinity() -> int:
    """The CPUs this process may run on (all of them where the platform cannot say)."""
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


def _cpus(cpus: float) -> str:
    text = f"{cpus:.2f}".rstrip("0").rstrip(".")
    return f"{text} CPU" if text == "1" else f"{text} CPUs"
