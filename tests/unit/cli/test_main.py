"""The trustgate command line through ``main``: the global --config reaches every command.

Each command's own behaviour is tested in tests/unit/cli/commands/test_<command>_command.py;
help, examples, exit codes and --version in test_conventions.py.
"""

from __future__ import annotations

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
