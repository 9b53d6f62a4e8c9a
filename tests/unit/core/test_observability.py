"""The structured logger and the metrics registry."""

from __future__ import annotations

import io
import json
import logging
import os
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from tests.support.scrape import samples
from webhook.core import observability
from webhook.core.observability import configure_logging, get_logger
from webhook.serving.metrics import Metrics


@pytest.fixture(autouse=True)
def restore_logging() -> Iterator[None]:
    logger = logging.getLogger("trustgate")
    handlers, level, propagate = list(logger.handlers), logger.level, logger.propagate
    yield
    configure_logging("json", "warning", io.StringIO())
    logger.handlers[:] = handlers
    logger.setLevel(level)
    logger.propagate = propagate


def test_get_logger_is_a_trustgate_child() -> None:
    assert get_logger("webhook.signatures.conditions").name == "trustgate.signatures.conditions"
    assert get_logger("admission").name == "trustgate.admission"


@pytest.mark.parametrize("background", [False, True])
def test_json_lines_merge_fields(background: bool) -> None:
    stream = io.StringIO()
    configure_logging("json", "info", stream, background=background)
    get_logger("webhook.test").info(
        "hello %s", "world", extra={"fields": {"name": "web", "uid": "u-1"}, "check": "allowlist"}
    )
    get_logger("webhook.test").debug("not at info")
    configure_logging("json", "warning", io.StringIO())  # stops and drains the writer thread
    (line,) = stream.getvalue().splitlines()
    entry = json.loads(line)
    assert entry["msg"] == "hello world"
    assert entry["level"] == "info"
    assert entry["logger"] == "trustgate.test"
    assert (entry["name"], entry["uid"], entry["check"]) == ("web", "u-1", "allowlist")
    assert entry["time"].endswith("Z")


def test_text_format_and_no_propagation(caplog: pytest.LogCaptureFixture) -> None:
    stream = io.StringIO()
    configure_logging("text", "info", stream)
    get_logger("x").warning("careful")
    assert "WARNING trustgate.x careful" in stream.getvalue()
    assert logging.getLogger("trustgate").propagate is False


def test_metrics_registries_are_separate() -> None:
    first, second = Metrics(), Metrics()
    first.requests.labels("denied").inc()
    assert b'decision="denied"' in first.render()
    assert b'decision="denied"' not in second.render()


def test_network_events_become_per_host_metrics() -> None:
    metrics = Metrics()
    for event in ("breaker_open", "breaker_rejected", "breaker_rejected", "limit_rejected"):
        metrics.observe_network(event, "slow.example")
    metrics.observe_network("deadline_exceeded", "slow.example")
    metrics.observe_network("budget_exceeded", "big.example")
    metrics.observe_network("breaker_half_open", "other.example")
    text = metrics.render().decode()
    assert 'trustgate_breaker_state{host="slow.example"} 2.0' in text
    assert 'trustgate_breaker_state{host="other.example"} 1.0' in text
    assert 'trustgate_breaker_rejections_total{host="slow.example"} 2.0' in text
    assert 'trustgate_host_limit_rejections_total{host="slow.example"} 1.0' in text
    assert 'trustgate_deadline_exceeded_total{host="slow.example"} 1.0' in text
    assert 'trustgate_budget_exceeded_total{host="big.example"} 1.0' in text


def test_authentication_failures_are_counted_by_source_from_zero() -> None:
    metrics = Metrics()
    text = metrics.render().decode()
    assert 'trustgate_registry_auth_failures_total{source="pullSecret"} 0.0' in text
    metrics.observe_network("auth_failed:pullSecret", "quay.io")
    metrics.observe_network("auth_failed:pullSecret", "ghcr.io")
    metrics.observe_network("auth_failed:ecr", "1.dkr.ecr.us-east-1.amazonaws.com")
    metrics.observe_network("auth_failed:made-up", "quay.io")
    text = metrics.render().decode()
    assert 'trustgate_registry_auth_failures_total{source="pullSecret"} 2.0' in text
    assert 'trustgate_registry_auth_failures_total{source="ecr"} 1.0' in text
    assert 'trustgate_registry_auth_failures_total{source="other"} 1.0' in text
    series = [line for line in text.splitlines() if line.startswith("trustgate_registry_auth")]
    assert series and not any("host=" in line for line in series), series


class CountingStream(io.StringIO):
    """A stream that counts its writes and can hold them back, as a stuck sink would."""

    def __init__(self) -> None:
        super().__init__()
        self.writes = 0
        self.entered = threading.Event()
        self.release = threading.Event()
        self.release.set()

    def write(self, text: str) -> int:
        self.entered.set()
        self.release.wait(30)
        self.writes += 1
        return super().write(text)


def test_background_records_are_written_in_batches_in_order() -> None:
    stream = CountingStream()
    configure_logging("json", "info", stream, background=True)
    for n in range(500):
        get_logger("webhook.test").info("review %d", n)
    configure_logging("json", "warning", io.StringIO())  # stops and drains the writer thread
    lines = [json.loads(line)["msg"] for line in stream.getvalue().splitlines()]
    assert lines == [f"review {n}" for n in range(500)]
    assert stream.writes < 50  # one write per batch, not per record


def test_background_records_appear_without_a_stop() -> None:
    stream = CountingStream()
    configure_logging("json", "info", stream, background=True)
    get_logger("webhook.test").warning("soon")
    deadline = time.monotonic() + 5  # records wait 0.05 s at most
    while "soon" not in stream.getvalue() and time.monotonic() < deadline:
        time.sleep(0.01)
    assert '"msg":"soon"' in stream.getvalue()


def test_a_stuck_log_sink_never_blocks_a_request_and_drops_are_counted(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(observability, "_QUEUE_SIZE", 100)
    stream = CountingStream()
    stream.release.clear()  # every write hangs until released
    configure_logging("json", "info", stream, background=True)
    log = get_logger("webhook.test")
    log.info("first")
    assert stream.entered.wait(5)  # the writer is stuck in the sink now
    started = time.monotonic()
    for n in range(150):
        log.info("review %d", n)
    assert time.monotonic() - started < 2  # the 150 calls returned at once
    (handler,) = logging.getLogger("trustgate").handlers
    assert getattr(handler, "dropped", None) == 50
    assert capsys.readouterr().err == ""  # the sink behind may be stderr itself
    stream.release.set()
    configure_logging("json", "warning", io.StringIO())
    lines = [json.loads(line) for line in stream.getvalue().splitlines()]
    assert [line["msg"] for line in lines[:101]] == ["first", *(f"review {n}" for n in range(100))]
    # Once the sink takes lines again, the log says what it lost.
    assert lines[101]["msg"] == "the log writer fell behind; 50 lines dropped (50 in all)"
    assert (lines[101]["level"], lines[101]["dropped"]) == ("warning", 50)


def test_the_message_is_what_was_logged_even_if_its_arguments_change() -> None:
    stream = io.StringIO()
    configure_logging("json", "info", stream, background=True)
    images = ["a"]
    get_logger("webhook.test").info("images %s", images)
    images.append("b")
    configure_logging("json", "warning", io.StringIO())
    assert json.loads(stream.getvalue())["msg"] == "images ['a']"


@dataclass(frozen=True)
class Point:
    x: int


def test_json_lines_write_what_json_dumps_would_for_any_value() -> None:
    """orjson encodes the line; values it would encode its own way are str() as before."""
    stream = io.StringIO()
    configure_logging("json", "info", stream)
    when = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
    fields = {"point": Point(1), "when": when, "text": "café ✓", "nested": {"n": [1, 2.5, None]}}
    get_logger("webhook.test").info("values", extra={"fields": fields})
    get_logger("webhook.test").info("huge", extra={"fields": {"n": 2**70, "keys": {1: "one"}}})
    try:
        raise ValueError("boom")
    except ValueError:
        get_logger("webhook.test").exception("failed")
    first, huge, failed = (json.loads(line) for line in stream.getvalue().splitlines())
    assert first["point"] == "Point(x=1)"
    assert first["when"] == str(when)
    assert first["text"] == "café ✓"
    assert first["nested"] == {"n": [1, 2.5, None]}
    assert huge["n"] == 2**70  # past orjson's 64 bits: the standard library writes it
    assert huge["keys"] == {"1": "one"}
    assert "ValueError: boom" in failed["exc"]
    assert failed["level"] == "error"


def test_a_backlog_wakes_the_writer_before_its_time(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(observability, "_FLUSH_SECONDS", 30.0)
    monkeypatch.setattr(observability, "_WAKE_BACKLOG", 10)
    stream = CountingStream()
    configure_logging("json", "info", stream, background=True)
    for n in range(20):
        get_logger("webhook.test").info("review %d", n)
    deadline = time.monotonic() + 5  # not the 30 s of the timer
    while stream.getvalue().count("\n") < 11 and time.monotonic() < deadline:
        time.sleep(0.01)
    assert stream.getvalue().count("\n") >= 11


#: Run in a process of its own: share_metrics changes how this process keeps metrics.
_SHARED = """
import os, sys
from pathlib import Path
from typing import Any
from webhook.serving.metrics import Metrics, forget_process, share_metrics
share_metrics(Path(sys.argv[1]))

def work(value):
    metrics = Metrics()
    metrics.requests.labels("allowed").inc(value)
    metrics.duration.observe(0.01)
    metrics.policies_loaded.set(value)
    metrics.reload_ok.set(value == 5)
    metrics.observe_network("breaker_open" if value == 3 else "breaker_closed", "quay.io")
    metrics.observe_shared_state(True)
    return metrics

# Two workers, forked as gunicorn forks them; the first has ended.
child = os.fork()
if child == 0:
    work(3)
    os._exit(0)
os.waitpid(child, 0)
metrics = work(5)
sys.stdout.write(metrics.render().decode())
sys.stdout.write("# the first worker is gone\\n")
forget_process(child)
sys.stdout.write(metrics.render().decode())
"""


def test_shared_metrics_add_up_and_every_gauge_appears_once(tmp_path: Path) -> None:
    run = subprocess.run(
        [sys.executable, "-c", _SHARED, str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    both, after = (samples(text) for text in run.stdout.split("# the first worker is gone\n"))
    # A gauge left at the default mode would show once per process, with a pid label.
    assert "pid" not in run.stdout
    for found in (both, after):
        # Counters and histograms add up, a worker that has ended included.
        assert found["trustgate_admission_requests_total"] == [({"decision": "allowed"}, 8.0)]
        assert found["trustgate_admission_duration_seconds_count"] == [({}, 2.0)]
        assert found["trustgate_policies_loaded"] == [({}, 5.0)]  # the most recent
        assert found["trustgate_shared_cache_up"] == [({}, 1.0)]
    assert both["trustgate_policy_reload_success"] == [({}, 0.0)]  # any failure shows
    assert both["trustgate_breaker_state"] == [({"host": "quay.io"}, 2.0)]  # the worst
    # Once the ended worker is forgotten, its gauges no longer count.
    assert after["trustgate_policy_reload_success"] == [({}, 1.0)]
    assert after["trustgate_breaker_state"] == [({"host": "quay.io"}, 0.0)]


def _fields() -> dict[str, Any]:
    return {
        "uid": "u-1",
        "name": 'web "quoted" é',
        "images": [{"image": "quay.io/acme/api:1", "containers": ["api"], "passed": ["p"]}],
        "note": None,
        "dryRun": False,
        "durationMs": 0.125,
        "big": 2**70,  # past 64 bits: the standard library writes it
    }


def test_the_direct_decision_log_line_is_the_line_logging_writes() -> None:
    stream = io.StringIO()
    configure_logging("json", "info", stream, background=True)
    logger = get_logger("webhook.admission.review")
    observability.log_fields(logger, logging.INFO, "admission review", _fields())
    logger.info("admission review", extra={"fields": _fields()})
    observability.log_fields(logger, logging.DEBUG, "not at info", _fields())
    configure_logging("json", "warning", io.StringIO())  # stops and drains the writer thread
    direct, logged = (json.loads(line) for line in stream.getvalue().splitlines())
    assert direct.pop("time").endswith("Z")
    logged.pop("time")
    assert direct == logged
    assert list(direct) == list(logged)  # the same keys in the same order
    assert direct["big"] == 2**70


def test_a_filter_or_another_format_sees_the_record_as_usual() -> None:
    seen: list[logging.LogRecord] = []

    class Keep(logging.Filter):
        def filter(self, record: logging.LogRecord) -> bool:
            seen.append(record)
            return True

    stream = io.StringIO()
    configure_logging("json", "info", stream, background=True)
    logger = get_logger("admission")
    keep = Keep()
    logger.addFilter(keep)
    try:
        observability.log_fields(logger, logging.INFO, "admission review", _fields())
    finally:
        logger.removeFilter(keep)
    configure_logging("text", "info", stream)
    observability.log_fields(logger, logging.INFO, "as text", _fields())
    configure_logging("json", "warning", io.StringIO())
    (record,) = seen
    assert record.fields["uid"] == "u-1"  # type: ignore[attr-defined]
    lines = stream.getvalue().splitlines()
    assert json.loads(lines[0])["uid"] == "u-1"
    assert lines[1].endswith("INFO trustgate.admission as text")


def test_a_stalled_sink_bounds_the_backlog_in_bytes_and_counts_the_drops(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A real pipe nobody reads: the writer blocks in write(2) once the pipe's buffer is full."""
    monkeypatch.setattr(observability, "_QUEUE_BYTES", 2 * 1024 * 1024)
    metrics = Metrics()  # counts drops from here on
    read_end, write_end = os.pipe()
    sink = os.fdopen(write_end, "w", buffering=1)
    try:
        configure_logging("json", "info", sink, background=True)
        (handler,) = logging.getLogger("trustgate").handlers
        log = get_logger("webhook.admission.review")
        big = "x" * 256 * 1024  # a review's worth of decision log
        for n in range(40):  # 10 MiB in all; the pipe holds 64 KiB
            observability.log_fields(log, logging.INFO, "admission review", {"n": n, "pad": big})
        backlog = getattr(handler, "backlog_bytes", None)
        dropped = getattr(handler, "dropped", 0)
        assert backlog is not None and backlog <= 2 * 1024 * 1024
        assert dropped >= 40 - 2 * 1024 * 1024 // len(big)
        text = metrics.render().decode()
        assert f"trustgate_log_lines_dropped_total {float(dropped)}" in text
    finally:
        os.close(read_end)  # the blocked write fails; the writer goes on
        configure_logging("json", "warning", io.StringIO())
        sink.close()
