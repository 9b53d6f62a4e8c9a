"""Keyless policy-set signatures, checked offline: who signed, over what, under which CA.

Bundles are made for real: sigstore-python signs against the Fulcio and Rekor
stand-ins of ``tests/support/sigstore_services.py``, and the verifier is
sigstore-python's own on the test trusted root.
"""

from __future__ import annotations

import base64
import copy
import datetime as dt
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.serialization import Encoding

from tests.support.policysigning import policy_dir
from tests.support.sigstore_instance import FulcioCA, Identity, now
from tests.support.sigstore_services import SigstoreServices, ca_entry, sigstore_services
from webhook.policy.model import Keyless
from webhook.policy.signing.envelope import (
    SIGNATURE_FILE,
    PolicySignatureError,
    Refusal,
    TrustedKey,
    Vouch,
    check_directory,
    verify_directory,
    write_signature,
)
from webhook.signatures.policyset import MAX_BUNDLE_BYTES, KeylessAuthority
from webhook.signatures.policysign import identity_token, load_instance, sign_keyless
from webhook.trust.trustroot import load_trusted_root

EMAIL = "policy-bot@trustgate.test"
ISSUER = "https://oidc.trustgate.test"
WHEN = dt.datetime(2026, 3, 1, tzinfo=dt.UTC)


@pytest.fixture
def services() -> Iterator[SigstoreServices]:
    with sigstore_services() as running:
        yield running


def _bundle(services: SigstoreServices, tmp_path: Path, data: bytes) -> dict[str, Any]:
    """A bundle over ``data`` signed through Fulcio and Rekor, as policy sign --keyless makes."""
    config = tmp_path / "trust-config.json"
    config.write_text(json.dumps(services.trust_config()))
    signature = sign_keyless(
        data, load_instance(trust_config=config), identity_token(services.oidc.token(EMAIL))
    )
    return signature.bundle


def _authority(
    tmp_path: Path,
    root: dict[str, Any],
    *,
    name: str = "ci",
    subject: str = EMAIL,
    issuer: str = ISSUER,
) -> KeylessAuthority:
    path = tmp_path / f"root-{name}.json"
    path.write_text(json.dumps(root))
    loaded = load_trusted_root(path.name, tmp_path)
    keyless = Keyless(
        issuer=issuer,
        subject=subject,
        trusted_root=loaded.name,
        root_digest=loaded.digest,
        root=loaded,
    )
    return KeylessAuthority(name, keyless)


def _signed_dir(services: SigstoreServices, tmp_path: Path, version: int = 1) -> Path:
    directory = policy_dir(tmp_path)

    def sign(data: bytes) -> tuple[str, Any]:
        return "bundle", _bundle(services, tmp_path, data)

    write_signature(directory, sign, version=version, now=WHEN)
    return directory


def test_a_keyless_set_verifies_offline(services: SigstoreServices, tmp_path: Path) -> None:
    directory = _signed_dir(services, tmp_path, version=3)
    authority = _authority(tmp_path, services.instance.trusted_root())
    services.stop()  # verification needs no network
    checked = check_directory(directory, [authority])
    assert checked.verified.authority == "ci"
    assert checked.verified.version == 3
    assert checked.signer == f"identity {EMAIL!r} (issuer {ISSUER!r})"
    document = json.loads((directory / SIGNATURE_FILE).read_text())
    assert document["bundle"]["mediaType"] == "application/vnd.dev.sigstore.bundle.v0.3+json"
    assert "messageSignature" in document["bundle"]


def test_a_bundle_over_other_bytes_is_altered(services: SigstoreServices, tmp_path: Path) -> None:
    authority = _authority(tmp_path, services.instance.trusted_root())
    answer = authority.vouch({"bundle": _bundle(services, tmp_path, b"other")}, b"manifest")
    assert isinstance(answer, Refusal)
    assert answer.reason == "altered"
    assert "signs other bytes than this manifest" in answer.message


def test_an_edited_manifest_is_refused_as_altered(
    services: SigstoreServices, tmp_path: Path
) -> None:
    directory = _signed_dir(services, tmp_path)
    path = directory / SIGNATURE_FILE
    document = json.loads(path.read_text())
    document["manifest"] = document["manifest"].replace('"version":1', '"version":9')
    path.write_text(json.dumps(document))
    with pytest.raises(PolicySignatureError, match="altered after signing") as caught:
        verify_directory(directory, [_authority(tmp_path, services.instance.trusted_root())])
    assert caught.value.reason == "altered"


def test_a_changed_file_is_named(services: SigstoreServices, tmp_path: Path) -> None:
    directory = _signed_dir(services, tmp_path)
    (directory / "exception.yaml").write_text("# emptied\n")
    with pytest.raises(PolicySignatureError, match=r"exception\.yaml: changed after signing"):
        verify_directory(directory, [_authority(tmp_path, services.instance.trusted_root())])


@pytest.mark.parametrize(
    ("subject", "issuer"),
    [("someone-else@trustgate.test", ISSUER), (EMAIL, "https://accounts.example.com")],
)
def test_another_identity_is_untrusted_and_named(
    services: SigstoreServices, tmp_path: Path, subject: str, issuer: str
) -> None:
    directory = _signed_dir(services, tmp_path)
    root = services.instance.trusted_root()
    authority = _authority(tmp_path, root, subject=subject, issuer=issuer)
    other = _authority(tmp_path, root, name="team", subject="team@trustgate.test")
    with pytest.raises(PolicySignatureError) as caught:
        verify_directory(directory, [authority, other])
    message = str(caught.value)
    assert caught.value.reason == "untrusted"
    assert f"signed by identity {EMAIL!r} (issuer {ISSUER!r})" in message
    assert "not an authority of policies.signature (authorities: ci, team)" in message


def test_a_certificate_from_a_ca_the_root_does_not_list_is_untrusted(
    services: SigstoreServices, tmp_path: Path
) -> None:
    services.fulcio.ca = FulcioCA(services.instance.ct_log, "rogue")
    authority = _authority(tmp_path, services.instance.trusted_root())
    bundle = _trusted_by_signer(services, tmp_path)
    answer = authority.vouch({"bundle": bundle}, b"manifest")
    assert isinstance(answer, Refusal)
    assert answer.reason == "untrusted"
    assert "does not chain to a Fulcio CA of trusted root" in answer.message


def _trusted_by_signer(services: SigstoreServices, tmp_path: Path) -> dict[str, Any]:
    """A bundle from the current Fulcio CA, with a trust config that lists that CA."""
    config = tmp_path / "rogue-config.json"
    config.write_text(json.dumps(services.trust_config(authorities=[ca_entry(services.fulcio.ca)])))
    token = identity_token(services.oidc.token(EMAIL))
    return sign_keyless(b"manifest", load_instance(trust_config=config), token).bundle


def test_a_bundle_without_a_log_entry_is_invalid(
    services: SigstoreServices, tmp_path: Path
) -> None:
    bundle = _bundle(services, tmp_path, b"manifest")
    bundle["verificationMaterial"]["tlogEntries"] = []
    answer = _authority(tmp_path, services.instance.trusted_root()).vouch(
        {"bundle": bundle}, b"manifest"
    )
    assert isinstance(answer, Refusal)
    assert answer.reason == "invalid"
    assert "log entry" in answer.message


@pytest.mark.parametrize("shift", [-60, 1])
def test_a_moved_log_time_is_invalid(
    services: SigstoreServices, tmp_path: Path, shift: int
) -> None:
    """Before the certificate (-60 s), or within it (+1 s): the signed entry timestamp fails."""
    bundle = _bundle(services, tmp_path, b"manifest")
    entry = bundle["verificationMaterial"]["tlogEntries"][0]
    entry["integratedTime"] = str(int(entry["integratedTime"]) + shift)
    answer = _authority(tmp_path, services.instance.trusted_root()).vouch(
        {"bundle": bundle}, b"manifest"
    )
    assert isinstance(answer, Refusal)
    assert answer.reason == "invalid"


def test_a_key_authority_refuses_a_keyless_signature_and_the_reverse(
    services: SigstoreServices, tmp_path: Path
) -> None:
    from cryptography.hazmat.primitives.asymmetric import ec

    key = TrustedKey("policy-team", ec.generate_private_key(ec.SECP256R1()).public_key())
    directory = _signed_dir(services, tmp_path)
    with pytest.raises(PolicySignatureError) as caught:
        verify_directory(directory, [key])
    assert caught.value.reason == "untrusted"
    assert "'policy-team': a key" in str(caught.value)
    assert "signed keylessly" in str(caught.value)
    authority = _authority(tmp_path, services.instance.trusted_root())
    answer = authority.vouch({"key": {"fingerprint": "sha256:00", "signature": ""}}, b"m")
    assert isinstance(answer, Refusal)
    assert answer.reason == "untrusted"
    assert answer.message.startswith("keyless (identity")
    assert "key-signed" in answer.message


def _huge(bundle: dict[str, Any]) -> dict[str, Any]:
    padded = copy.deepcopy(bundle)
    padded["verificationMaterial"]["padding"] = "x" * (MAX_BUNDLE_BYTES + 1)
    return padded


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        (_huge, "over 256 KiB"),
        (lambda b: "a string", "not a JSON object"),
        (lambda b: {**b, "mediaType": "application/json"}, "not a Sigstore bundle v0.3"),
        (lambda b: {"mediaType": b["mediaType"]}, "malformed Sigstore bundle"),
        (
            lambda b: {**b, "verificationMaterial": {"certificate": {"rawBytes": "AAAA"}}},
            "malformed Sigstore bundle",
        ),
        (lambda b: {**b, "messageSignature": "nope"}, "malformed Sigstore bundle"),
    ],
)
def test_a_huge_or_malformed_bundle_is_invalid(
    services: SigstoreServices, tmp_path: Path, change: Any, expected: str
) -> None:
    bundle = _bundle(services, tmp_path, b"manifest")
    authority = _authority(tmp_path, services.instance.trusted_root())
    answer = authority.vouch({"bundle": change(bundle)}, b"manifest")
    assert isinstance(answer, Refusal)
    assert answer.reason == "invalid"
    assert expected in answer.message


def test_a_deeply_nested_signature_file_is_invalid(tmp_path: Path) -> None:
    directory = policy_dir(tmp_path)
    (directory / ".trustgate").mkdir()
    (directory / SIGNATURE_FILE).write_text('{"manifest": "{}", "bundle": ' + "[" * 50_000 + "}")
    with pytest.raises(PolicySignatureError, match="not a trustgate policy signature") as caught:
        verify_directory(directory, [])
    assert caught.value.reason == "invalid"


# Trust-root rotation ------------------------------------------------------------------------


def test_a_root_listing_old_and_new_cas_verifies_sets_signed_under_each(
    services: SigstoreServices, tmp_path: Path
) -> None:
    old = services.instance.ca
    new = FulcioCA(services.instance.ct_log, "new")
    root = services.instance.trusted_root()
    root["certificateAuthorities"] = [ca_entry(old), ca_entry(new)]
    authority = _authority(tmp_path, root)
    under_old = _trusted_by_signer(services, tmp_path)
    services.fulcio.ca = new
    under_new = _trusted_by_signer(services, tmp_path)
    assert isinstance(authority.vouch({"bundle": under_old}, b"manifest"), Vouch)
    assert isinstance(authority.vouch({"bundle": under_new}, b"manifest"), Vouch)


def test_a_set_signed_under_a_removed_ca_is_refused(
    services: SigstoreServices, tmp_path: Path
) -> None:
    under_old = _trusted_by_signer(services, tmp_path)
    root = services.instance.trusted_root()
    root["certificateAuthorities"] = [ca_entry(FulcioCA(services.instance.ct_log, "new"))]
    answer = _authority(tmp_path, root).vouch({"bundle": under_old}, b"manifest")
    assert isinstance(answer, Refusal)
    assert answer.reason == "untrusted"
    assert "does not chain to a Fulcio CA of trusted root" in answer.message


def test_a_set_signed_after_its_ca_was_retired_is_refused(
    services: SigstoreServices, tmp_path: Path
) -> None:
    old = services.instance.ca
    new = FulcioCA(services.instance.ct_log, "new")
    retired = now() - dt.timedelta(minutes=5)
    root = services.instance.trusted_root()
    root["certificateAuthorities"] = [ca_entry(old, end=retired), ca_entry(new)]
    authority = _authority(tmp_path, root)
    under_old = _trusted_by_signer(services, tmp_path)  # signed now, after the retirement
    answer = authority.vouch({"bundle": under_old}, b"manifest")
    assert isinstance(answer, Refusal)
    assert answer.reason == "untrusted"
    assert "by Fulcio CA 'CN=trustgate-test-intermediate,O=trustgate.test'" in answer.message
    assert f"which the root retired at {retired:%Y-%m-%dT%H:%M:%SZ}" in answer.message
    assert answer.message.endswith("; sign the set again under the root's current CA and log keys")
    services.fulcio.ca = new
    assert isinstance(
        authority.vouch({"bundle": _trusted_by_signer(services, tmp_path)}, b"manifest"), Vouch
    )


def test_a_set_signed_before_its_ca_was_retired_still_verifies(
    services: SigstoreServices, tmp_path: Path
) -> None:
    services.rekor.when = now() - dt.timedelta(seconds=20)  # the certificate is from -30 s
    under_old = _trusted_by_signer(services, tmp_path)
    root = services.instance.trusted_root()
    retired = now() - dt.timedelta(seconds=10)
    root["certificateAuthorities"] = [ca_entry(services.instance.ca, end=retired)]
    assert isinstance(_authority(tmp_path, root).vouch({"bundle": under_old}, b"manifest"), Vouch)


def test_a_swapped_certificate_is_refused(services: SigstoreServices, tmp_path: Path) -> None:
    """A bundle whose certificate is swapped for another of the same identity fails."""
    bundle = _bundle(services, tmp_path, b"manifest")
    cert, _ = services.instance.ca.issue(Identity(EMAIL, ISSUER))
    bundle["verificationMaterial"]["certificate"]["rawBytes"] = base64.b64encode(
        cert.public_bytes(Encoding.DER)
    ).decode()
    answer = _authority(tmp_path, services.instance.trusted_root()).vouch(
        {"bundle": bundle}, b"manifest"
    )
    assert isinstance(answer, Refusal)
    assert answer.reason in {"invalid", "altered"}
