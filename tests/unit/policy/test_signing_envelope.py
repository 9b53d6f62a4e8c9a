"""Signing a policy directory with a key and verifying it: every tampering is named."""

from __future__ import annotations

import hashlib
import json
import os
from datetime import UTC, datetime
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric import ec, ed25519

from tests.support.policysigning import policy_dir, private_pem
from webhook.core.errors import PolicyError
from webhook.policy.signing.envelope import (
    SIGNATURE_FILE,
    PolicySignatureError,
    TrustedKey,
    previous_version,
    sign_directory,
    verify_directory,
)

WHEN = datetime(2026, 3, 1, 12, 0, 0, tzinfo=UTC)
EC_KEY = ec.generate_private_key(ec.SECP256R1())
P384_KEY = ec.generate_private_key(ec.SECP384R1())
ED_KEY = ed25519.Ed25519PrivateKey.generate()
OTHER_KEY = ec.generate_private_key(ec.SECP256R1())
TRUSTED = [TrustedKey("policy-team", EC_KEY.public_key()), TrustedKey("ed", ED_KEY.public_key())]


def _sign(directory: Path, key: object = EC_KEY, version: int = 1) -> None:
    sign_directory(directory, private_pem(key), source="test key", version=version, now=WHEN)  # type: ignore[arg-type]


@pytest.fixture
def signed(tmp_path: Path) -> Path:
    directory = policy_dir(tmp_path)
    _sign(directory)
    return directory


@pytest.mark.parametrize(("key", "name"), [(EC_KEY, "policy-team"), (ED_KEY, "ed")])
def test_round_trip(tmp_path: Path, key: object, name: str) -> None:
    directory = policy_dir(tmp_path)
    _sign(directory, key, version=4)
    signed = verify_directory(directory, TRUSTED)
    assert signed.authority == name
    assert signed.version == 4
    assert signed.signed_at == WHEN
    assert sorted(signed.files or {}) == ["exception.yaml", "policy.yaml", "tests.yaml"]
    document = json.loads((directory / SIGNATURE_FILE).read_text())
    assert signed.digest == "sha256:" + hashlib.sha256(document["manifest"].encode()).hexdigest()
    assert (signed.files or {})["policy.yaml"] == (directory / "policy.yaml").read_bytes()


def test_p384_keys_sign_too(tmp_path: Path) -> None:
    directory = policy_dir(tmp_path)
    _sign(directory, P384_KEY)
    assert (
        verify_directory(directory, [TrustedKey("big", P384_KEY.public_key())]).authority == "big"
    )


@pytest.mark.parametrize("name", ["policy.yaml", "exception.yaml", "tests.yaml"])
def test_a_changed_file_of_each_kind_is_named(signed: Path, name: str) -> None:
    with (signed / name).open("a") as handle:
        handle.write("# one more line\n")
    with pytest.raises(PolicySignatureError, match=rf"{name}: changed after signing"):
        verify_directory(signed, TRUSTED)


def test_an_added_file_is_named(signed: Path) -> None:
    (signed / "sub").mkdir()
    (signed / "sub" / "wide.yaml").write_text("x: 1\n")
    with pytest.raises(PolicySignatureError, match=r"sub/wide\.yaml: added after signing"):
        verify_directory(signed, TRUSTED)


def test_a_removed_file_is_named(signed: Path) -> None:
    (signed / "exception.yaml").unlink()
    with pytest.raises(PolicySignatureError, match=r"exception\.yaml: removed after signing"):
        verify_directory(signed, TRUSTED)


def test_a_renamed_file_shows_both_names(signed: Path) -> None:
    (signed / "tests.yaml").rename(signed / "tests.yml")
    with pytest.raises(PolicySignatureError) as caught:
        verify_directory(signed, TRUSTED)
    assert "tests.yaml: removed after signing" in str(caught.value)
    assert "tests.yml: added after signing" in str(caught.value)


def test_a_hidden_key_file_counts(tmp_path: Path) -> None:
    directory = policy_dir(tmp_path)
    (directory / ".keys").mkdir()
    (directory / ".keys" / "cosign.pub").write_text("one key")
    _sign(directory)
    (directory / ".keys" / "cosign.pub").write_text("another key")
    with pytest.raises(PolicySignatureError, match=r"\.keys/cosign.pub: changed"):
        verify_directory(directory, TRUSTED)


def test_a_configmap_mount_verifies(tmp_path: Path) -> None:
    """Visible files are links into ..data, itself a link to a timestamped directory."""
    directory = tmp_path / "mount"
    stamped = directory / "..2026_03_01"
    stamped.mkdir(parents=True)
    policy_dir(tmp_path)
    for item in (tmp_path / "policies").iterdir():
        (stamped / item.name).write_bytes(item.read_bytes())
        (directory / item.name).symlink_to(Path("..data") / item.name)
    (directory / "..data").symlink_to("..2026_03_01")
    _sign(directory)
    assert sorted(verify_directory(directory, TRUSTED).files or {}) == [
        "exception.yaml",
        "policy.yaml",
        "tests.yaml",
    ]


def test_a_link_out_of_the_directory_is_refused(signed: Path, tmp_path: Path) -> None:
    outside = tmp_path / "outside.yaml"
    outside.write_bytes((signed / "policy.yaml").read_bytes())
    (signed / "policy.yaml").unlink()
    (signed / "policy.yaml").symlink_to(outside)
    with pytest.raises(PolicySignatureError, match=r"policy.yaml: is a symbolic link to .*outside"):
        verify_directory(signed, TRUSTED)
    with pytest.raises(PolicyError, match="outside the policy directory"):
        _sign(signed)


def test_a_fifo_is_refused_without_hanging(signed: Path) -> None:
    os.mkfifo(signed / "pipe.yaml")
    with pytest.raises(PolicySignatureError, match=r"pipe\.yaml: is not a regular file"):
        verify_directory(signed, TRUSTED)


def test_an_unlisted_key_is_named_with_the_authorities(tmp_path: Path) -> None:
    directory = policy_dir(tmp_path)
    _sign(directory, OTHER_KEY)
    with pytest.raises(PolicySignatureError) as caught:
        verify_directory(directory, TRUSTED)
    message = str(caught.value)
    assert "not an authority of policies.signature (authorities: policy-team, ed)" in message
    assert "signed by key sha256:" in message


def test_an_unsigned_directory_is_refused(tmp_path: Path) -> None:
    with pytest.raises(PolicySignatureError, match="unsigned"):
        verify_directory(policy_dir(tmp_path), TRUSTED)


def test_an_edited_manifest_breaks_the_signature(signed: Path) -> None:
    path = signed / SIGNATURE_FILE
    document = json.loads(path.read_text())
    document["manifest"] = document["manifest"].replace('"version":1', '"version":9')
    path.write_text(json.dumps(document))
    with pytest.raises(PolicySignatureError, match="does not verify with the key of authority"):
        verify_directory(signed, TRUSTED)


@pytest.mark.parametrize("content", ["", "[]", '{"manifest": 1}', '{"manifest": "{}", "key": {}}'])
def test_a_garbled_signature_file_is_refused(signed: Path, content: str) -> None:
    (signed / SIGNATURE_FILE).write_text(content)
    with pytest.raises(PolicySignatureError, match="not a trustgate policy signature"):
        verify_directory(signed, TRUSTED)


def test_previous_version_reads_the_current_signature(tmp_path: Path) -> None:
    directory = policy_dir(tmp_path)
    assert previous_version(directory) == 0
    _sign(directory, version=12)
    assert previous_version(directory) == 12


def test_a_public_key_cannot_sign(tmp_path: Path) -> None:
    from tests.support.policysigning import public_pem

    with pytest.raises(PolicyError, match="not a PEM private key"):
        sign_directory(
            policy_dir(tmp_path), public_pem(EC_KEY), source="key file k", version=1, now=WHEN
        )
