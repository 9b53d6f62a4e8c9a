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
