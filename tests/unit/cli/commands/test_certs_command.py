"""``trustgate certs generate``: a CA and a serving certificate, overwritten only with --force."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.support.cli import run


def test_certs_generate(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out_dir = tmp_path / "certs"
    code, _, _ = run(capsys, "certs", "generate", "--out", str(out_dir), "--san", "127.0.0.1")
    assert code == 0
    assert (out_dir / "tls.crt").exists()
    code, _, err = run(capsys, "certs", "generate", "--out", str(out_dir))
    assert code == 2
    assert "--force" in err
    code, out, _ = run(capsys, "certs", "generate", "--out", str(out_dir), "--force", "-o", "json")
    assert code == 0
    assert json.loads(out) == {
        "ca": str(out_dir / "ca.crt"),
        "cert": str(out_dir / "tls.crt"),
        "key": str(out_dir / "tls.key"),
    }
