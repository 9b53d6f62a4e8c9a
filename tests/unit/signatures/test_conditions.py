"""Conditions run in child processes within a cost limit, and say what they saw."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import pytest

from webhook.config import parse_config
from webhook.core.deadline import Deadline
from webhook.core.untrusted import quoted
from webhook.policy.cel import compile_condition
from webhook.services import build_evaluator
from webhook.signatures.conditions import (
    CostExceeded,
    Evaluator,
    failure,
    held_note,
    holding,
    statement_data,
)

DIGEST = "sha256:" + "a" * 64
STATEMENT = {
    "_type": "https://in-toto.io/Statement/v1",
    "predicateType": "https://slsa.dev/provenance/v1",
    "subject": [{"name": "quay.io/acme/app", "digest": {"sha256": "a" * 64}}],
    "predicate": {"runDetails": {"builder": {"id": "https://github.com/actions/runner"}}},
}
#: Quadratic in the list: minutes over 5,000 numbers if nothing stopped it.
SLOW = (
    "predicate.numbers.all(x, (predicate.numbers + predicate.numbers"
    " + predicate.numbers).size() > 0)"
)


@pytest.fixture(scope="module")
def evaluator() -> Iterator[Evaluator]:
    running = Evaluator(cost_seconds=0.5)
    yield running
    running.close()


def data(statement: dict[str, Any] = STATEMENT) -> dict[str, Any]:
    return statement_data(statement, "quay.io/acme/app", DIGEST)


def evaluate(evaluator: Evaluator, *texts: str, statement: dict[str, Any] = STATEMENT) -> Any:
    conditions = [compile_condition(text) for text in texts]
    return evaluator.evaluate(conditions, data(statement), Deadline(10))


def test_conditions_read_the_statement_and_the_image(evaluator: Evaluator) -> None:
    results = evaluate(
        evaluator,
        "predicate.runDetails.builder.id == 'https://github.com/actions/runner'",
        "subject.exists(s, 'sha256:' + s.digest.sha256 == image.digest)",
        "image.repository.startsWith('quay.io/acme/')",
        "predicateType == 'https://spdx.dev/Document'",
    )
    assert [r.held for r in results] == [True, True, True, False]


def test_a_failed_condition_names_the_expression_and_the_values_it_read(
    evaluator: Evaluator,
) -> None:
    hostile = {**STATEMENT, "predicate": {"runDetails": {"builder": {"id": "evil\n\x1b[31mok"}}}}
    text = "predicate.runDetails.builder.id == 'https://github.com/actions/runner'"
    (result,) = evaluate(evaluator, text, statement=hostile)
    line = failure(result, data(hostile))
    assert line == (
        f'condition "{text}" does not hold '
        '(saw predicate.runDetails.builder.id = "evil\\n\\u001b[31mok")'
    )
    assert line.isprintable()


def test_an_evaluation_error_fails_the_condition_and_says_why(evaluator: Evaluator) -> None:
    text = "predicate.runDetails.missing.id == 'x'"
    (result,) = evaluate(evaluator, text)
    assert not result.held
    assert failure(result, data()) == (
        f'condition "{text}" failed: NOT_FOUND: Key not found in map : "missing" '
        "(saw predicate.runDetails.missing absent)"
    )


def test_long_values_are_cut(evaluator: Evaluator) -> None:
    long = {**STATEMENT, "predicate": {"id": "x" * 10_000}}
    (result,) = evaluate(evaluator, "predicate.id == 'y'", statement=long)
    line = failure(result, data(long))
    assert line.endswith('(saw predicate.id = "' + "x" * 79 + "...)")


def test_holding_keeps_the_statements_meeting_every_condition(evaluator: Evaluator) -> None:
    other = {**STATEMENT, "predicate": {"runDetails": {"builder": {"id": "https://elsewhere"}}}}
    conditions = [
        compile_condition("image.digest == '" + DIGEST + "'"),
        compile_condition("predicate.runDetails.builder.id.startsWith('https://github.com/')"),
    ]
    kept, reason = holding(
        evaluator, conditions, [other, STATEMENT], ("quay.io/acme/app", DIGEST), Deadline(10)
    )
    assert kept == [1]
    assert reason == (
        "1 of 2 conditions held: condition "
        "\"predicate.runDetails.builder.id.startsWith('https://github.com/')\" does not hold "
        '(saw predicate.runDetails.builder.id = "https://elsewhere")'
    )
    assert held_note(conditions).startswith(' (conditions held: "image.digest == ')


def test_an_expression_over_its_cost_limit_is_stopped_and_the_evaluator_recovers(
    evaluator: Evaluator,
) -> None:
    numbers = {**STATEMENT, "predicate": {"numbers": list(range(5000))}}
    started = time.monotonic()
    with pytest.raises(CostExceeded) as raised:
        evaluate(evaluator, SLOW, statement=numbers)
    elapsed = time.monotonic() - started
    assert elapsed < 3.0  # the cost limit is 0.5 s; unbounded, this runs for minutes
    assert raised.value.message == (
        f"conditions {quoted(SLOW, 60)} did not finish within the cost limit of 0.5 s; "
        "the attestation does not count"
    )
    # The stuck process was killed; the next evaluation gets a new one.
    (result,) = evaluate(evaluator, "image.digest.startsWith('sha256:')")
    assert result.held


def test_the_review_deadline_bounds_the_evaluation_below_the_cost_limit() -> None:
    overruns: list[str] = []
    evaluator = Evaluator(cost_seconds=30.0, observer=overruns.append)
    numbers = statement_data({"predicate": {"numbers": list(range(5000))}}, "r", DIGEST)
    started = time.monotonic()
    with pytest.raises(CostExceeded, match="did not finish within the review's deadline"):
        evaluator.evaluate([compile_condition(SLOW)], numbers, Deadline(0.5))
    assert time.monotonic() - started < 3.0
    assert overruns == ["deadline"]
    evaluator.close()


def test_an_expression_exhausting_memory_dies_at_its_rlimit_not_at_the_cost_limit() -> None:
    evaluator = Evaluator(cost_seconds=60.0)
    # 20,000 copies of 200 kB: 4 GB, over the child's 1 GiB address space.
    blowup = "predicate.l.map(x, predicate.s + predicate.s).size() > 0"
    big = statement_data({"predicate": {"l": list(range(20000)), "s": "x" * 100_000}}, "r", DIGEST)
    started = time.monotonic()
    (result,) = evaluator.evaluate([compile_condition(blowup)], big, Deadline(60))
    assert time.monotonic() - started < 20.0
    assert (result.held, result.error) == (False, "std::bad_alloc")
    assert evaluator.evaluate([compile_condition("true")], data(), Deadline(10))[0].held
    evaluator.close()


def test_evaluations_beyond_the_processes_wait_no_longer_than_their_deadline() -> None:
    import threading

    overruns: list[str] = []
    evaluator = Evaluator(cost_seconds=0.5, processes=1, observer=overruns.append)
    assert evaluator.evaluate([compile_condition("true")], data(), Deadline(10))[0].held
    numbers = statement_data({"predicate": {"numbers": list(range(5000))}}, "r", DIGEST)
    errors: list[str] = []

    def slow() -> None:
        try:
            evaluator.evaluate([compile_condition(SLOW)], numbers, Deadline(10))
        except CostExceeded as exc:
            errors.append(exc.message)

    thread = threading.Thread(target=slow)
    thread.start()
    time.sleep(0.1)
    started = time.monotonic()
    # The one process is busy: this review waits what its deadline leaves, then gives up.
    busy = (
        r"found no free condition evaluator \(all 1 busy; conditions.processes\) "
        "within the review's deadline"
    )
    with pytest.raises(CostExceeded, match=busy):
        evaluator.evaluate([compile_condition("true")], data(), Deadline(0.2))
    assert time.monotonic() - started < 1.0
    thread.join(5)
    assert errors and "cost limit" in errors[0]
    assert overruns == ["busy", "cost"]
    assert evaluator.evaluate([compile_condition("true")], data(), Deadline(10))[0].held
    evaluator.close()


def test_a_child_is_replaced_before_its_cpu_rlimit_could_end_a_request() -> None:
    # 600 s of CPU at most 60 s a request: a child answers 8 requests, then is replaced.
    evaluator = Evaluator(cost_seconds=60.0, processes=1)
    pids = set()
    for _ in range(10):
        assert evaluator.evaluate([compile_condition("true")], data(), Deadline(10))[0].held
        child = evaluator._idle.queue[0]
        pids.add(child.process.pid)
    assert len(pids) == 2
    evaluator.close()


def test_a_tiny_cost_limit_from_the_configuration_cuts_an_expensive_condition() -> None:
    overruns: list[str] = []
    config = parse_config({"conditions": {"costSeconds": 0.05, "processes": 1}})
    evaluator = build_evaluator(config, overruns.append)
    numbers = statement_data({"predicate": {"numbers": list(range(5000))}}, "r", DIGEST)
    assert evaluator.evaluate([compile_condition("true")], data(), Deadline(10))[0].held
    with pytest.raises(CostExceeded, match=r"within the cost limit of 0\.05 s;"):
        evaluator.evaluate([compile_condition(SLOW)], numbers, Deadline(10))
    assert overruns == ["cost"]
    evaluator.close()


def test_a_child_killed_mid_evaluation_counts_as_crashed_and_denies_at_once() -> None:
    import os
    import signal
    import threading

    overruns: list[str] = []
    evaluator = Evaluator(cost_seconds=20.0, processes=1, observer=overruns.append)
    assert evaluator.evaluate([compile_condition("true")], data(), Deadline(10))[0].held
    (child,) = evaluator._idle.queue
    # As the kernel's OOM killer would, while the child is busy with an endless condition.
    threading.Timer(0.3, os.kill, (child.process.pid, signal.SIGKILL)).start()
    numbers = statement_data({"predicate": {"numbers": list(range(5000))}}, "r", DIGEST)
    started = time.monotonic()
    with pytest.raises(CostExceeded, match="the condition evaluator died evaluating conditions"):
        evaluator.evaluate([compile_condition(SLOW)], numbers, Deadline(30))
    assert time.monotonic() - started < 5.0  # not the 20 s of the cost limit
    assert overruns == ["crashed"]
    assert evaluator.evaluate([compile_condition("true")], data(), Deadline(10))[0].held
    evaluator.close()
