"""Timing helpers shared by the in-process benchmarks: repeat a call, report p50/p99."""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable


def percentiles(samples: list[float]) -> dict[str, float]:
    """p50 and p99 of ``samples`` (seconds), in milliseconds."""
    ordered = sorted(samples)
    p99 = ordered[min(len(ordered) - 1, round(0.99 * (len(ordered) - 1)))]
    return {"p50_ms": round(statistics.median(ordered) * 1000, 3), "p99_ms": round(p99 * 1000, 3)}


def timed(rounds: int, run: Callable[[], object]) -> list[float]:
    """The wall-clock seconds of ``rounds`` calls of ``run``, one sample each."""
    samples = []
    for _ in range(rounds):
        started = time.perf_counter()
        run()
        samples.append(time.perf_counter() - started)
    return samples
