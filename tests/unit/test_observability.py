"""The structured logger and the metrics registry."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator

import pytest

from webhook.observability import Metrics, configure_logging, get_logger


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
    assert get_logger("webhook.admission").name == "trustgate.admission"


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
