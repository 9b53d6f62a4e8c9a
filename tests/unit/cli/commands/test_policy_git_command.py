"""``policy verify`` and ``policy lint`` with ``policies.signature.source: git``, and its config."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.support.gitsigning import WHEN, commit, public_line, source_repo, ssh_key, sync
from tests.support.policysigning import FILES
from webhook.cli.main import main


@pytest.fixture(scope="module")
def keys(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    home = tmp_path_factory.mktemp("cli-keys")
    return {"team": ssh_key(home, "team"), "other": ssh_key(home, "other")}


def _config(tmp_path: Path, authority: str, *, source: str = "git", required: bool = True) -> Path:
    config = tmp_path / "trustgate.yaml"
    config.write_text(
        "policies:\n  signature:\n"
        f"    required: {str(required).lower()}\n    source: {source}\n"
        f"    authorities:\n      - name: maintainers\n        key: {authority}\n"
    )
    return config


def _signers(tmp_path: Path, key: Path, options: str = "") -> str:
    path = tmp_path / "allowed_signers"
    path.write_text(f"alice@example.com {options} {public_line(key)}\n")
    return f"{{allowedSigners: {path}}}"


def test_verify_a_signed_checkout(
    tmp_path: Path, keys: dict[str, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    repo = source_repo(tmp_path)
    commit_id = commit(repo, FILES, key=keys["team"])
    link = sync(repo, tmp_path)
    config = _config(tmp_path, _signers(tmp_path, keys["team"]))
    assert main(["policy", "verify", str(link), "--config", str(config)]) == 0
    out = capsys.readouterr().out
    assert f"signed by 'maintainers', version {WHEN} (commit {commit_id})" in out
    assert "3 files match" in out
    (link / "policy.yaml").write_text("# weakened\n")
    assert main(["policy", "verify", str(link), "--config", str(config)]) == 1
    assert "policy.yaml: changed after signing" in capsys.readouterr().err


def test_an_openssh_key_file_is_an_authority(
    tmp_path: Path, keys: dict[str, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    repo = source_repo(tmp_path)
    commit(repo, FILES, key=keys["other"])
    link = sync(repo, tmp_path)
    config = _config(tmp_path, f"{{file: {keys['team']}.pub}}")
    assert main(["policy", "verify", str(link), "--config", str(config)]) == 1
    assert "which no authority of policies.signature admits" in capsys.readouterr().err
    config = _config(tmp_path, f"{{file: {keys['other']}.pub}}")
    assert main(["policy", "verify", str(link), "--config", str(config)]) == 0


@pytest.mark.parametrize(("required", "code"), [(False, 0), (True, 1)])
def test_lint_reports_the_commit_signature(
    tmp_path: Path,
    keys: dict[str, Path],
    capsys: pytest.CaptureFixture[str],
    required: bool,
    code: int,
) -> None:
    repo = source_repo(tmp_path)
    commit(repo, FILES, key=None)
    link = sync(repo, tmp_path)
    config = _config(tmp_path, _signers(tmp_path, keys["team"]), required=required)
    assert main(["policy", "lint", str(link), "--config", str(config)]) == code
    assert "signature: not valid: commit" in capsys.readouterr().out
    commit(repo, FILES, key=keys["team"], when=WHEN + 60)
    sync(repo, tmp_path)
    assert main(["policy", "lint", str(link), "--config", str(config)]) == 0
    assert f"signature: valid, signed by 'maintainers', version {WHEN + 60}" in (
        capsys.readouterr().out
    )


@pytest.mark.parametrize(
    ("source", "options", "says"),
    [
        ("files", "", "use them with policies.signature.source git"),
        ("git", "cert-authority", "cert-authority (SSH certificates) is not supported"),
    ],
)
def test_allowed_signers_refused_at_load(
    tmp_path: Path,
    keys: dict[str, Path],
    capsys: pytest.CaptureFixture[str],
    source: str,
    options: str,
    says: str,
) -> None:
    config = _config(tmp_path, _signers(tmp_path, keys["team"], options), source=source)
    assert main(["policy", "verify", str(tmp_path), "--config", str(config)]) == 2
    err = capsys.readouterr().err
    assert "policies.signature.authorities[0].key.allowedSigners" in err and says in err


def test_two_authorities_of_one_name_are_refused(
    tmp_path: Path, keys: dict[str, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    config = _config(tmp_path, _signers(tmp_path, keys["team"]))
    config.write_text(
        config.read_text()
        + f"      - name: maintainers\n        key: {{file: {keys['team']}.pub}}\n"
    )
    assert main(["policy", "verify", str(tmp_path), "--config", str(config)]) == 2
    assert "'maintainers' is already used" in capsys.readouterr().err
