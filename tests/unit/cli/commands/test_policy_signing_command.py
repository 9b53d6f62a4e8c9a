"""``trustgate policy sign | verify`` and the signature line of ``policy lint``."""

from __future__ import annotations

from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric import ec

from tests.support.policysigning import policy_dir, private_pem, public_pem
from webhook.cli.main import main

KEY = ec.generate_private_key(ec.SECP256R1())
OTHER = ec.generate_private_key(ec.SECP256R1())


def _files(tmp_path: Path, required: bool = False) -> tuple[Path, Path, Path]:
    directory = policy_dir(tmp_path)
    key = tmp_path / "signing.key"
    key.write_bytes(private_pem(KEY))
    (tmp_path / "signing.pub").write_bytes(public_pem(KEY))
    config = tmp_path / "trustgate.yaml"
    config.write_text(
        "policies:\n  signature:\n"
        f"    required: {str(required).lower()}\n"
        "    authorities:\n      - name: policy-team\n"
        f"        key: {{file: {tmp_path}/signing.pub}}\n"
    )
    return directory, key, config


def test_sign_then_verify(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    directory, key, config = _files(tmp_path)
    assert main(["policy", "sign", str(directory), "--key", str(key)]) == 0
    assert "3 files, version 1" in capsys.readouterr().out
    assert main(["policy", "sign", str(directory), "--key", str(key)]) == 0
    assert "version 2" in capsys.readouterr().out
    assert main(["policy", "verify", str(directory), "--config", str(config)]) == 0
    assert "signed by 'policy-team' (key sha256:" in capsys.readouterr().out


def test_verify_names_the_tampered_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    directory, key, config = _files(tmp_path)
    main(["policy", "sign", str(directory), "--key", str(key), "--version", "5"])
    (directory / "exception.yaml").write_text("# emptied\n")
    assert main(["policy", "verify", str(directory), "--config", str(config)]) == 1
    assert "exception.yaml: changed after signing" in capsys.readouterr().err


def test_a_lower_version_is_signed_with_a_warning(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    directory, key, _ = _files(tmp_path)
    main(["policy", "sign", str(directory), "--key", str(key), "--version", "5"])
    assert main(["policy", "sign", str(directory), "--key", str(key), "--version", "3"]) == 0
    assert "version 3 is not above the current signature's (5)" in capsys.readouterr().err


def test_verify_and_lint_refuse_a_version_below_minimum_version(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """What the server refuses as below minimumVersion, policy verify does not pass."""
    directory, key, config = _files(tmp_path, required=True)
    config.write_text(
        config.read_text().replace("  signature:\n", "  signature:\n    minimumVersion: 4\n")
    )
    main(["policy", "sign", str(directory), "--key", str(key), "--version", "3"])
    capsys.readouterr()
    assert main(["policy", "verify", str(directory), "--config", str(config)]) == 1
    assert "version 3, below policies.signature.minimumVersion 4" in capsys.readouterr().err
    assert main(["policy", "lint", str(directory), "--config", str(config)]) == 1
    assert "signature: not valid: the policy set is version 3, below" in capsys.readouterr().out
    main(["policy", "sign", str(directory), "--key", str(key), "--version", "4"])
    assert main(["policy", "verify", str(directory), "--config", str(config)]) == 0


def test_verify_without_authorities_is_bad_input(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    directory, _, _ = _files(tmp_path)
    assert main(["policy", "verify", str(directory)]) == 2
    assert "no policies.signature authorities" in capsys.readouterr().err
    assert (
        main(
            [
                "policy",
                "verify",
                str(tmp_path / "nowhere"),
                "--config",
                str(tmp_path / "trustgate.yaml"),
            ]
        )
        == 2
    )


def test_sign_with_an_unreadable_key_is_bad_input(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    directory, _, _ = _files(tmp_path)
    assert main(["policy", "sign", str(directory), "--key", str(tmp_path / "none.key")]) == 2
    assert "cannot read key file" in capsys.readouterr().err


def test_a_keyless_authority_without_a_subject_is_bad_input(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    directory, _, config = _files(tmp_path)
    config.write_text(
        "policies:\n  signature:\n    authorities:\n"
        "      - name: ci\n        keyless: {issuer: https://token.actions.githubusercontent.com}\n"
    )
    assert main(["policy", "verify", str(directory), "--config", str(config)]) == 2
    assert "field policies.signature.authorities.0.keyless" in capsys.readouterr().err


@pytest.mark.parametrize(("required", "code"), [(False, 0), (True, 1)])
def test_lint_reports_the_signature(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], required: bool, code: int
) -> None:
    directory, key, config = _files(tmp_path, required)
    assert main(["policy", "lint", str(directory), "--config", str(config)]) == code
    assert "signature: not valid" in capsys.readouterr().out
    other = tmp_path / "other.key"
    other.write_bytes(private_pem(OTHER))
    main(["policy", "sign", str(directory), "--key", str(other)])
    capsys.readouterr()
    assert main(["policy", "lint", str(directory), "--config", str(config), "-o", "json"]) == code
    assert f'"valid": false, "required": {str(required).lower()}' in capsys.readouterr().out
    main(["policy", "sign", str(directory), "--key", str(key)])
    capsys.readouterr()
    assert main(["policy", "lint", str(directory), "--config", str(config)]) == 0
    assert "signature: valid, signed by 'policy-team' (key sha256:" in capsys.readouterr().out
