"""The trustgate command line through ``main``: the global --config reaches every command.

Each command's own behaviour is tested in tests/unit/cli/commands/test_<command>_command.py;
help, examples, exit codes and --version in test_conventions.py.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support.cli import BAD, GOOD, run


def test_bad_config_file(
    policies: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = tmp_path / "trustgate.yaml"
    config.write_text("defaults: {noMatch: maybe}\n")
    code, _, err = run(capsys, "check", GOOD, "--policies", str(policies), "--config", str(config))
    assert code == 2
    assert "field defaults.noMatch" in err


def test_config_no_match_warn(
    policies: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = tmp_path / "trustgate.yaml"
    config.write_text("defaults: {noMatch: warn}\n")
    code, out, _ = run(
        capsys, "check", BAD, "-n", "dev", "--policies", str(policies), "--config", str(config)
    )
    assert code == 0
    assert "defaults.noMatch: warn" in out


def test_a_reader_that_leaves_gets_no_traceback() -> None:
    # `trustgate policy schema | head -c 10`, with the reader gone before the first write.
    read_end, write_end = os.pipe()
    os.close(read_end)
    try:
        writer = subprocess.run(
            [sys.executable, "-m", "webhook.cli", "policy", "schema"],
            stdout=write_end,
            stderr=subprocess.PIPE,
            text=True,
            timeout=60,
            check=False,
        )
    finally:
        os.close(write_end)
    assert "Traceback" not in writer.stderr, writer.stderr
    assert writer.stderr == ""
    assert writer.returncode == 141
