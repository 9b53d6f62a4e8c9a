"""``trustgate policy sign --keyless``, then ``policy verify`` and ``policy lint``, end to end.

Signing goes to the Fulcio and Rekor stand-ins of ``tests/support/sigstore_services.py``
through a ClientTrustConfig file (``--trust-config``); the identity token comes from
``SIGSTORE_ID_TOKEN`` or ``--identity-token``, as in CI.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric import ec

from tests.support.policysigning import policy_dir, private_pem, public_pem
from tests.support.sigstore_instance import FulcioCA
from tests.support.sigstore_services import SigstoreServices, ca_entry, sigstore_services
from webhook.cli.main import main
from webhook.signatures.policysign import TOKEN_VARIABLE

EMAIL = "policy-bot@trustgate.test"
ISSUER = "https://oidc.trustgate.test"
KEY = ec.generate_private_key(ec.SECP256R1())


@pytest.fixture
def services(monkeypatch: pytest.MonkeyPatch) -> Iterator[SigstoreServices]:
    for name in ("GITHUB_ACTIONS", "GITLAB_CI", "BUILDKITE", "CIRCLECI", TOKEN_VARIABLE):
        monkeypatch.delenv(name, raising=False)
    with sigstore_services() as running:
        yield running


def _setup(
    services: SigstoreServices,
    tmp_path: Path,
    *,
    subject: str = EMAIL,
    authorities: list[dict[str, Any]] | None = None,
    extra: str = "",
) -> tuple[Path, Path, Path]:
    """A policy directory, a trust config for signing, and a trustgate.yaml naming ``subject``.

    The configuration names its trusted root relatively (``root.json``), beside it.
    """
    directory = policy_dir(tmp_path)
    trust = tmp_path / "trust-config.json"
    trust.write_text(json.dumps(services.trust_config()))
    etc = tmp_path / "etc"
    etc.mkdir(exist_ok=True)
    root = services.trust_config(authorities=authorities)["trustedRoot"]
    (etc / "root.json").write_text(json.dumps(root))
    config = etc / "trustgate.yaml"
    config.write_text(
        "policies:\n  signature:\n    required: true\n    authorities:\n"
        f"{extra}"
        "      - name: ci\n        keyless:\n"
        f"          issuer: {ISSUER}\n          subject: {subject}\n"
        "          trustedRoot: root.json\n"
    )
    return directory, trust, config


def _sign(directory: Path, trust: Path, *more: str) -> int:
    return main(
        ["policy", "sign", str(directory), "--keyless", "--trust-config", str(trust), *more]
    )


def test_sign_verify_and_lint_round_trip(
    services: SigstoreServices,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    directory, trust, config = _setup(services, tmp_path)
    monkeypatch.setenv(TOKEN_VARIABLE, services.oidc.token(EMAIL))
    assert _sign(directory, trust) == 0
    out = capsys.readouterr().out
    assert f"as identity {EMAIL!r} (issuer {ISSUER!r}) ({trust} Sigstore)" in out
    assert "3 files, version 1" in out
    assert _sign(directory, trust) == 0
    assert "version 2" in capsys.readouterr().out
    monkeypatch.chdir("/")  # trustedRoot: root.json resolves beside the configuration
    services.stop()  # verify and lint are offline
    assert main(["policy", "verify", str(directory), "--config", str(config)]) == 0
    out = capsys.readouterr().out
    assert f"signed by 'ci' (identity {EMAIL!r} (issuer {ISSUER!r})), version 2" in out
    assert "3 files match" in out
    assert main(["policy", "lint", str(directory), "--config", str(config)]) == 0
    assert f"signature: valid, signed by 'ci' (identity {EMAIL!r}" in capsys.readouterr().out
    (directory / "policy.yaml").write_text("# weakened\n")
    assert main(["policy", "verify", str(directory), "--config", str(config)]) == 1
    assert "policy.yaml: changed after signing" in capsys.readouterr().err


def test_the_token_may_be_given_on_the_command_line(
    services: SigstoreServices, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    directory, trust, config = _setup(services, tmp_path)
    token = services.oidc.token(EMAIL)
    assert _sign(directory, trust, "--identity-token", token, "--version", "7") == 0
    assert "version 7" in capsys.readouterr().out
    assert main(["policy", "verify", str(directory), "--config", str(config)]) == 0


def test_an_unlisted_identity_is_refused_with_who_signed(
    services: SigstoreServices,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    directory, trust, config = _setup(services, tmp_path, subject="release@trustgate.test")
    monkeypatch.setenv(TOKEN_VARIABLE, services.oidc.token(EMAIL))
    assert _sign(directory, trust) == 0
    capsys.readouterr()
    assert main(["policy", "verify", str(directory), "--config", str(config)]) == 1
    err = capsys.readouterr().err
    assert f"signed by identity {EMAIL!r} (issuer {ISSUER!r})" in err
    assert "(authorities: ci)" in err
    assert main(["policy", "lint", str(directory), "--config", str(config)]) == 1
    assert "signature: not valid" in capsys.readouterr().out


def test_key_and_keyless_authorities_refuse_each_other(
    services: SigstoreServices,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    directory, trust, _ = _setup(services, tmp_path)
    (tmp_path / "signing.pub").write_bytes(public_pem(KEY))
    (tmp_path / "signing.key").write_bytes(private_pem(KEY))
    keys = tmp_path / "keys.yaml"
    keys.write_text(
        "policies:\n  signature:\n    authorities:\n"
        f"      - name: policy-team\n        key: {{file: {tmp_path}/signing.pub}}\n"
    )
    monkeypatch.setenv(TOKEN_VARIABLE, services.oidc.token(EMAIL))
    assert _sign(directory, trust) == 0
    assert main(["policy", "verify", str(directory), "--config", str(keys)]) == 1
    assert "'policy-team': a key" in capsys.readouterr().err
    keyless = tmp_path / "etc" / "trustgate.yaml"
    assert main(["policy", "sign", str(directory), "--key", str(tmp_path / "signing.key")]) == 0
    assert main(["policy", "verify", str(directory), "--config", str(keyless)]) == 1
    assert "'ci': keyless (identity" in capsys.readouterr().err


def test_either_authority_of_a_mixed_list_verifies(
    services: SigstoreServices,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    (tmp_path / "signing.pub").write_bytes(public_pem(KEY))
    (tmp_path / "signing.key").write_bytes(private_pem(KEY))
    extra = f"      - name: policy-team\n        key: {{file: {tmp_path}/signing.pub}}\n"
    directory, trust, config = _setup(services, tmp_path, extra=extra)
    monkeypatch.setenv(TOKEN_VARIABLE, services.oidc.token(EMAIL))
    assert _sign(directory, trust) == 0
    assert main(["policy", "verify", str(directory), "--config", str(config)]) == 0
    assert "signed by 'ci'" in capsys.readouterr().out
    assert main(["policy", "sign", str(directory), "--key", str(tmp_path / "signing.key")]) == 0
    assert main(["policy", "verify", str(directory), "--config", str(config)]) == 0
    assert "signed by 'policy-team' (key sha256:" in capsys.readouterr().out


def test_rotation_old_and_new_cas_then_the_old_one_removed(
    services: SigstoreServices,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    old, new = services.instance.ca, FulcioCA(services.instance.ct_log, "new")
    both = [ca_entry(old), ca_entry(new)]
    directory, trust, config = _setup(services, tmp_path, authorities=both)
    trust.write_text(json.dumps(services.trust_config(authorities=both)))
    monkeypatch.setenv(TOKEN_VARIABLE, services.oidc.token(EMAIL))
    assert _sign(directory, trust) == 0  # under the old CA
    assert main(["policy", "verify", str(directory), "--config", str(config)]) == 0
    (tmp_path / "later").mkdir()
    later = policy_dir(tmp_path / "later")
    services.fulcio.ca = new
    assert _sign(later, trust) == 0
    assert main(["policy", "verify", str(later), "--config", str(config)]) == 0
    capsys.readouterr()
    root = services.trust_config(authorities=[ca_entry(new)])["trustedRoot"]
    (tmp_path / "etc" / "root.json").write_text(json.dumps(root))
    assert main(["policy", "verify", str(later), "--config", str(config)]) == 0
    assert main(["policy", "verify", str(directory), "--config", str(config)]) == 1
    assert "does not chain to a Fulcio CA of trusted root" in capsys.readouterr().err


def test_no_token_is_bad_input(
    services: SigstoreServices, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    directory, trust, _ = _setup(services, tmp_path)
    assert _sign(directory, trust) == 2
    assert f"pass --identity-token, set {TOKEN_VARIABLE}" in capsys.readouterr().err
    assert not (directory / ".trustgate").exists()
    assert services.fulcio.requests == []


def test_an_unreachable_fulcio_is_bad_input_and_writes_nothing(
    services: SigstoreServices,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    directory, trust, _ = _setup(services, tmp_path)
    services.fulcio.behaviour = "hang"
    token = services.oidc.token(EMAIL)
    monkeypatch.setenv(TOKEN_VARIABLE, token)
    assert _sign(directory, trust, "--timeout", "1") == 2
    err = capsys.readouterr().err
    assert "did not finish within 1 s: Fulcio at http://127.0.0.1:" in err
    assert token not in err
    assert not (directory / ".trustgate" / "signature.json").exists()


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["--key", "k.pem", "--staging"], "go with --keyless"),
        (["--key", "k.pem", "--identity-token", "t"], "go with --keyless"),
    ],
)
def test_keyless_options_need_keyless(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], args: list[str], expected: str
) -> None:
    directory = policy_dir(tmp_path)
    assert main(["policy", "sign", str(directory), *args]) == 2
    assert expected in capsys.readouterr().err


@pytest.mark.parametrize(
    "args",
    [[], ["--key", "k.pem", "--keyless"], ["--keyless", "--timeout", "0"]],
)
def test_sign_needs_exactly_one_way(tmp_path: Path, args: list[str]) -> None:
    with pytest.raises(SystemExit) as caught:
        main(["policy", "sign", str(policy_dir(tmp_path)), *args])
    assert caught.value.code == 2
