"""``make demo`` (python -m webhook.cli.demo): the offline tour runs, shows every outcome."""

from __future__ import annotations

import re
import socket
import subprocess
import sys
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import pytest

pytestmark = pytest.mark.e2e


def test_demo_shows_allowed_warned_and_denied_then_stops_what_it_started() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "webhook.cli.demo"],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    out = done.stdout
    assert done.returncode == 0, out + done.stderr
    for command in ("check", "grade", "review", "audit"):
        assert re.search(rf"^\$ trustgate {command} ", out, re.M), command
    # check: the signed fresh image passes, the unsigned and the stale one are denied, with why.
    assert "3 images: 1 allowed, 0 warned, 2 denied" in out
    assert re.search(r"demo/tools:1\.0 .*DENIED .*release: no signature found", out)
    assert re.search(r"demo/legacy:1\.0 .*DENIED .*freshness grade D is below the minimum B", out)
    # grade: the fix behind it, and when it fell below B: in the past (a Critical fix unapplied
    # for more than 7 days grades C), not the next drop still to come.
    released = re.search(r"fix: RHSA-DEMO:0001 \(Critical, released (\S+)\)", out)
    below = re.search(r"below the minimum from: (\S+)", out)
    assert released is not None and below is not None, out
    fell = date.fromisoformat(below.group(1))
    assert fell == date.fromisoformat(released.group(1)) + timedelta(days=7)
    assert fell < datetime.now(UTC).date()
    # review: the API server's answer; audit: all three outcomes.
    assert '"allowed": false' in out
    assert "4 images: 1 allowed, 1 warned, 2 denied" in out
    assert re.search(r"Deployment/tools +staging .*WARNED .*audit mode", out)
    # Everything it started is gone: the registry's port is closed, its files removed.
    match = re.search(r"registry http://127\.0\.0\.1:(\d+); files in (\S+)", out)
    assert match is not None, out
    with socket.socket() as sock:
        assert sock.connect_ex(("127.0.0.1", int(match.group(1)))) != 0
    assert not Path(match.group(2)).exists()
