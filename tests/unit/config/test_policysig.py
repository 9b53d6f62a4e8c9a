"""``policies.signature.authorities[].keyless``: the image policies' grammar, in trustgate.yaml."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from tests.support.sigstore_instance import SigstoreInstance
from webhook.config import load_config, parse_config
from webhook.core.errors import ConfigError
from webhook.policy.signing.envelope import TrustedKey
from webhook.signatures.policyset import KeylessAuthority

ISSUER = "https://token.actions.githubusercontent.com"
SUBJECT = "https://github.com/acme/policies/.github/workflows/sign.yml@refs/heads/main"


def _config(*authorities: dict[str, Any]) -> dict[str, Any]:
    return {"policies": {"signature": {"authorities": list(authorities)}}}


def _keyless(**fields: Any) -> dict[str, Any]:
    return {"name": "ci", "keyless": {"issuer": ISSUER, "subject": SUBJECT, **fields}}


def test_a_keyless_authority_is_read_with_its_root() -> None:
    extensions = {
        "githubWorkflowRepository": "acme/policies",
        "githubWorkflowRef": "refs/heads/main",
    }
    config = parse_config(_config(_keyless(extensions=extensions)))
    assert config.policy_signature is not None
    (authority,) = config.policy_signature.authorities
    assert isinstance(authority, KeylessAuthority)
    assert authority.name == "ci"
    assert authority.keyless.issuer == ISSUER
    assert authority.keyless.subject == SUBJECT
    assert authority.keyless.trusted_root == "production"
    assert authority.keyless.extensions == tuple(sorted(extensions.items()))
    assert authority.root.name == "production"


def test_regular_expressions_and_staging() -> None:
    raw = {
        "name": "ci",
        "keyless": {
            "issuerRegExp": r"https://token\.actions\.githubusercontent\.com",
            "subjectRegExp": r"https://github\.com/acme/.+",
            "trustedRoot": "staging",
        },
    }
    config = parse_config(_config(raw))
    assert config.policy_signature is not None
    (authority,) = config.policy_signature.authorities
    assert isinstance(authority, KeylessAuthority)
    assert authority.keyless.subject_regexp == r"https://github\.com/acme/.+"
    assert authority.root.name == "staging"


def test_a_relative_trusted_root_is_beside_the_configuration(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    etc = tmp_path / "etc"
    etc.mkdir()
    (etc / "root.json").write_text(SigstoreInstance().trusted_root_json())
    (etc / "trustgate.yaml").write_text(
        "policies:\n  signature:\n    authorities:\n      - name: ci\n        keyless:\n"
        f"          issuer: {ISSUER}\n          subject: {SUBJECT}\n"
        "          trustedRoot: root.json\n"
    )
    monkeypatch.chdir(tmp_path)
    config = load_config(Path("etc/trustgate.yaml"))
    assert config.policy_signature is not None
    (authority,) = config.policy_signature.authorities
    assert isinstance(authority, KeylessAuthority)
    assert authority.root.name == str(etc / "root.json")


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        (
            {"subjectRegExp": "(", "subject": None},
            r"field policies\.signature\.authorities\[0\]\.keyless\.subjectRegExp: "
            "is not a valid regular expression",
        ),
        (
            {"trustedRoot": "missing.json"},
            r"field policies\.signature\.authorities\[0\]\.keyless\.trustedRoot: "
            "cannot read trusted root .*missing\\.json",
        ),
    ],
)
def test_mistakes_name_the_field(fields: dict[str, Any], message: str) -> None:
    raw = _keyless(**fields)
    raw["keyless"] = {k: v for k, v in raw["keyless"].items() if v is not None}
    with pytest.raises(ConfigError, match=message):
        parse_config(_config(raw), source="/etc/trustgate/trustgate.yaml")


def test_a_trusted_root_that_is_not_one_is_refused(tmp_path: Path) -> None:
    (tmp_path / "root.json").write_text(json.dumps({"mediaType": "nope"}))
    with pytest.raises(ConfigError, match=r"keyless\.trustedRoot: trusted root .* not a usable"):
        parse_config(_config(_keyless(trustedRoot="root.json")), source=str(tmp_path / "t.yaml"))


@pytest.mark.parametrize(
    "keyless",
    [
        {"issuer": ISSUER},
        {"subject": SUBJECT},
        {"issuer": ISSUER, "issuerRegExp": ".*", "subject": SUBJECT},
        {"issuer": ISSUER, "subject": SUBJECT, "sujbect": SUBJECT},
        {"issuer": ISSUER, "subject": SUBJECT, "extensions": {}},
        {"issuer": ISSUER, "subject": SUBJECT, "extensions": {"githubWorkflowRepo": "x"}},
        {"issuer": ISSUER, "subject": ""},
    ],
)
def test_the_image_policy_grammar_is_enforced(keyless: dict[str, Any]) -> None:
    with pytest.raises(ConfigError, match=r"field policies\.signature\.authorities\.0\.keyless"):
        parse_config(_config({"name": "ci", "keyless": keyless}))


def test_one_identity_twice_is_refused() -> None:
    second = {**_keyless(), "name": "again"}
    with pytest.raises(ConfigError, match="the same identity and trusted root as authority 'ci'"):
        parse_config(_config(_keyless(), second))
    other_root = {**_keyless(trustedRoot="staging"), "name": "staged"}
    config = parse_config(_config(_keyless(), other_root))
    assert config.policy_signature is not None
    assert len(config.policy_signature.authorities) == 2


def test_names_are_unique_across_keys_and_identities(tmp_path: Path) -> None:
    from cryptography.hazmat.primitives.asymmetric import ec

    from tests.support.policysigning import public_pem

    (tmp_path / "k.pub").write_bytes(public_pem(ec.generate_private_key(ec.SECP256R1())))
    key = {"name": "ci", "key": {"file": str(tmp_path / "k.pub")}}
    with pytest.raises(ConfigError, match=r"authorities\[1\]\.name: 'ci' is already used"):
        parse_config(_config(key, _keyless()))
    config = parse_config(_config({**key, "name": "team"}, _keyless()))
    assert config.policy_signature is not None
    kinds = [type(a) for a in config.policy_signature.authorities]
    assert kinds == [TrustedKey, KeylessAuthority]
