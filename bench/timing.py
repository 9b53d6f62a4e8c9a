"""Timing shared by the in-process benchmarks: whole reviews, cold and warm, as p50/p99."""

from __future__ import annotations

import json
import statistics
import time
from collections.abc import Callable, Mapping
from pathlib import Path

from webhook.admission.review import review as answer
from webhook.config import Config
from webhook.policy.model import PolicySet
from webhook.services import build_engine


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


Request = dict[str, object]


def cold_review(policies: PolicySet, config: Config, request: Request) -> Callable[[], object]:
    """One allowed review of ``request`` on a new engine: nothing cached, as after a restart."""

    def run() -> object:
        engine = build_engine(lambda: policies, config)
        try:
            result = answer(engine, request)
        finally:
            engine.close()
        assert result[1].allowed, result[1].message
        return result

    return run


def review_timings(
    checked: PolicySet,
    baseline: PolicySet,
    config: Config,
    *,
    cold: Mapping[str, Request],
    warm: tuple[str, Request],
    rounds: int,
) -> dict[str, dict[str, float]]:
    """p50/p99 of whole admission reviews (``POST /validate`` without the HTTP server).

    Each ``cold`` request runs on a new engine per round (empty caches, as after
    a restart); the ``warm`` request runs again and again on one engine, and so
    does the same request under ``baseline`` (the allowlist-only policies),
    measured in the same run so the added cost is a difference on one machine
    at one moment. Results are named ``cold_...``, ``warm_<n>`` and
    ``allowlist_only_<n>``.
    """

    results = {
        name: percentiles(timed(rounds, cold_review(checked, config, r)))
        for name, r in cold.items()
    }
    name, request = warm
    warm_engine = build_engine(lambda: checked, config)
    plain_engine = build_engine(lambda: baseline, config)
    try:
        assert answer(warm_engine, request)[1].allowed
        answer(plain_engine, request)
        results[f"warm_{name}"] = percentiles(
            timed(rounds * 10, lambda: answer(warm_engine, request))
        )
        results[f"allowlist_only_{name}"] = percentiles(
            timed(rounds * 10, lambda: answer(plain_engine, request))
        )
    finally:
        warm_engine.close()
        plain_engine.close()
    return results


def report(results: dict[str, dict[str, float]], summary: dict[str, object], out: Path) -> None:
    """Print each figure and write ``summary`` (which holds ``results``) as JSON to ``out``."""
    for name, figures in results.items():
        print(f"{name:18s} p50 {figures['p50_ms']:8.2f} ms   p99 {figures['p99_ms']:8.2f} ms")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(summary, indent=2) + "\n")
