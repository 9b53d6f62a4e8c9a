"""Key-signed Sigstore bundles (cosign 3's ``sign --key``): built here, and real ones.

The real ones are sigstore-conformance's managed-key bundles (tests/data/conformance/README.md):
verified offline with the production and staging trusted roots, their log entries (inclusion
proof, checkpoint, signed entry timestamp) and RFC 3161 timestamp included.
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import json
import socket
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from tests.support.cosign import (
    COSIGN_SIGN_PREDICATE,
    dsse_envelope,
    generate_key,
    in_toto_statement,
    key_bundle,
    public_pem,
    sign_digest,
    sign_statement,
)
from tests.support.sigstore_instance import (
    Identity,
    SigstoreInstance,
    bundle,
    dsse_key_body,
    dsse_v2_body,
    hashedrekord_key_body,
    hashedrekord_v2_body,
    now,
    pae,
    tlog_entry,
)
from tests.support.tsa import TimestampAuthority
from webhook.core.errors import PolicyError
from webhook.signatures.keybundle import (
    UNLOGGED,
    UNVERIFIED,
    VERIFIED,
    KeyBundleResult,
    parse_key_bundle,
    verify_key_bundle,
    verify_key_bundles,
)
from webhook.trust.keys import load_public_key
from webhook.trust.trustroot import TrustRoot, load_trusted_root

DATA = Path(__file__).parents[2] / "data" / "conformance"
DIGEST = "sha256:" + "ab" * 32
NAME = "registry.test/acme/api"
KEY = generate_key("ecdsa-p256")
PUBLIC = load_public_key(public_pem(KEY), source="test")
PEM = public_pem(KEY).encode()
DER = KEY.public_key().public_bytes(Encoding.DER, PublicFormat.SubjectPublicKeyInfo)


def check(document: dict[str, Any], **options: Any) -> KeyBundleResult:
    parsed = parse_key_bundle(json.dumps(document).encode())
    assert not isinstance(parsed, str), parsed
    options.setdefault("image_digest", DIGEST)
    options.setdefault("repository", NAME)
    return verify_key_bundle(parsed, options.pop("key", PUBLIC), "release", **options)


def dsse(statement: dict[str, Any] | None = None) -> dict[str, Any]:
    return dsse_envelope(statement or sign_statement(DIGEST, NAME), KEY)


# Built the way cosign 3 writes them ------------------------------------------------------


def test_dsse_bundle_of_the_sign_predicate_verifies() -> None:
    assert check(key_bundle(KEY, envelope=dsse())).ok


def test_message_signature_bundle_verifies() -> None:
    assert check(key_bundle(KEY, digest=DIGEST)).ok


def test_rsa_message_signature_verifies() -> None:
    rsa = generate_key("rsa")
    key = load_public_key(public_pem(rsa), source="rsa")
    assert check(key_bundle(rsa, digest=DIGEST), key=key).ok


@pytest.mark.parametrize(
    ("document", "reason", "rank"),
    [
        (key_bundle(generate_key(), digest=DIGEST), "does not verify with key release", UNVERIFIED),
        (
            key_bundle(KEY, envelope=dsse(sign_statement("sha256:" + "cd" * 32, NAME))),
            f"about another subject, not {DIGEST}",
            VERIFIED,
        ),
        (
            key_bundle(KEY, envelope=dsse(in_toto_statement(DIGEST, NAME, "https://evil", {}))),
            f"predicate type 'https://evil', not {COSIGN_SIGN_PREDICATE}",
            VERIFIED,
        ),
        (
            key_bundle(KEY, digest="sha256:" + "cd" * 32),
            "the bundle signs another artifact",
            UNVERIFIED,
        ),
    ],
)
def test_bundles_that_are_not_this_keys_signature_of_this_image_fail(
    document: dict[str, Any], reason: str, rank: int
) -> None:
    result = check(document)
    assert not result.ok
    assert reason in result.reason
    if rank != VERIFIED:
        assert result.rank == rank


def test_the_key_hint_is_not_trusted() -> None:
    """The bundle names another key in its hint: the policy's key decides, not the hint."""
    assert check(key_bundle(generate_key(), envelope=dsse())).ok


def test_another_key_signing_the_envelope_fails() -> None:
    other = generate_key()
    result = check(key_bundle(other, envelope=dsse_envelope(sign_statement(DIGEST, NAME), other)))
    assert not result.ok
    assert result.reason == "bundle envelope does not verify with key release"


def test_tampered_envelope_payload_fails() -> None:
    envelope = dsse()
    statement = json.loads(base64.b64decode(envelope["payload"]))
    statement["subject"][0]["digest"]["sha256"] = "cd" * 32
    envelope["payload"] = base64.b64encode(json.dumps(statement).encode()).decode()
    result = check(key_bundle(KEY, envelope=envelope))
    assert result.reason == "bundle envelope does not verify with key release"


def test_tampered_payload_type_fails() -> None:
    envelope = dsse()
    envelope["payloadType"] = "application/json"
    assert not check(key_bundle(KEY, envelope=envelope)).ok


def test_every_rule_applies_to_the_statement() -> None:
    signed = key_bundle(KEY, envelope=dsse(sign_statement(DIGEST, NAME, {"env": "prod"})))
    assert check(signed, required_annotations={"env": "prod"}, check_reference=True).ok
    missing = check(key_bundle(KEY, envelope=dsse()), required_annotations={"env": "prod"})
    assert missing.reason == "signed statement missing annotation env=prod"
    elsewhere = check(signed, repository="registry.test/acme/other", check_reference=True)
    assert "names repository" in elsewhere.reason


def test_a_message_signature_meets_no_annotation_or_reference_rule() -> None:
    document = key_bundle(KEY, digest=DIGEST)
    annotated = check(document, required_annotations={"env": "prod"})
    assert "carries no annotations, and the policy requires env=prod" in annotated.reason
    assert "names no repository" in check(document, check_reference=True).reason


def test_a_keyless_bundle_is_not_a_key_signature(instance: SigstoreInstance) -> None:
    cert, signature, entry = instance.sign_digest(Identity("a@b", "https://issuer"), "ab" * 32)
    raw = json.dumps(bundle(cert, entry, signature=signature, digest_hex="ab" * 32)).encode()
    assert parse_key_bundle(raw) == (
        "the bundle is signed with a certificate (keyless), not with a key"
    )


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        (b"{", "malformed Sigstore bundle"),
        (b'{"mediaType": "application/json"}', "malformed Sigstore bundle"),
    ],
)
def test_malformed_bundles_are_reasons(raw: bytes, reason: str) -> None:
    parsed = parse_key_bundle(raw)
    assert isinstance(parsed, str)
    assert parsed.startswith(reason)


# Transparency logs: Rekor v1 (SET, inclusion proof) and Rekor v2 (hashedrekord 0.0.2) -------


def logged_dsse(
    instance: SigstoreInstance,
    *,
    v2: bool = False,
    logged: dict[str, Any] | None = None,
    kind: str = "hashedrekord",
) -> dict[str, Any]:
    """A DSSE key bundle and its log entry (Rekor v2: a hashedrekord or a dsse entry)."""
    envelope = dsse()
    recorded = logged or envelope
    payload = base64.b64decode(recorded["payload"])
    if v2 and kind == "dsse":
        entry = instance.tlog.append(dsse_v2_body(DER, recorded))
        return key_bundle(
            KEY, envelope=envelope, tlog_entries=[tlog_entry(entry, promise=False, version="0.0.2")]
        )
    if v2:
        digest = hashlib.sha256(pae(recorded["payloadType"], payload)).digest()
        signature = base64.b64decode(recorded["signatures"][0]["sig"])
        entry = instance.tlog.append(hashedrekord_v2_body(DER, signature, digest))
        return key_bundle(
            KEY, envelope=envelope, tlog_entries=[tlog_entry(entry, promise=False, version="0.0.2")]
        )
    entry = instance.tlog.append(dsse_key_body(PEM, recorded))
    return key_bundle(KEY, envelope=envelope, tlog_entries=[tlog_entry(entry)])


def logged_message(
    instance: SigstoreInstance, *, v2: bool = False, logged: str = DIGEST
) -> dict[str, Any]:
    signature = sign_digest(KEY, DIGEST)
    hex_digest = logged.partition(":")[2]
    if v2:
        entry = instance.tlog.append(
            hashedrekord_v2_body(DER, signature, bytes.fromhex(hex_digest))
        )
        entries = [tlog_entry(entry, promise=False, version="0.0.2")]
    else:
        entries = [
            tlog_entry(instance.tlog.append(hashedrekord_key_body(PEM, signature, hex_digest)))
        ]
    return key_bundle(KEY, digest=DIGEST, signature=signature, tlog_entries=entries)


@pytest.mark.parametrize("v2", [False, True], ids=["rekor-v1", "rekor-v2"])
def test_logged_bundles_verify_with_tlog_required(
    instance: SigstoreInstance, root: TrustRoot, v2: bool
) -> None:
    assert check(logged_dsse(instance, v2=v2), tlog_root=root).ok
    assert check(logged_message(instance, v2=v2), tlog_root=root).ok


def test_rekor_v2_dsse_entry_verifies(instance: SigstoreInstance, root: TrustRoot) -> None:
    assert check(logged_dsse(instance, v2=True, kind="dsse"), tlog_root=root).ok
    other = dsse(sign_statement(DIGEST, "registry.test/acme/other"))
    result = check(logged_dsse(instance, v2=True, kind="dsse", logged=other), tlog_root=root)
    assert result.reason.endswith("log entry is for another payload (its payload hash differs "
                                  "from this envelope's)")  # fmt: skip


def test_unlogged_bundle_fails_only_with_tlog_required(root: TrustRoot) -> None:
    document = key_bundle(KEY, envelope=dsse())
    assert check(document).ok
    result = check(document, tlog_root=root)
    assert result.rank == UNLOGGED
    assert result.reason == (
        "signature verifies with key release, but the bundle has no transparency-log entry "
        "(tlog: required)"
    )


def test_entry_of_another_log_fails(root: TrustRoot) -> None:
    result = check(logged_dsse(SigstoreInstance("elsewhere")), tlog_root=root)
    assert "log entry signed by an unknown log" in result.reason


@pytest.mark.parametrize("v2", [False, True], ids=["rekor-v1", "rekor-v2"])
def test_entry_recording_something_else_fails(
    instance: SigstoreInstance, root: TrustRoot, v2: bool
) -> None:
    other = dsse(sign_statement(DIGEST, "registry.test/acme/other"))
    result = check(logged_dsse(instance, v2=v2, logged=other), tlog_root=root)
    assert not result.ok and "log entry" in result.reason
    message = check(logged_message(instance, v2=v2, logged="sha256:" + "cd" * 32), tlog_root=root)
    assert "log entry is for another artifact" in message.reason


def test_forged_checkpoint_fails(instance: SigstoreInstance, root: TrustRoot) -> None:
    document = logged_dsse(instance, v2=True)
    entry = document["verificationMaterial"]["tlogEntries"][0]
    entry["inclusionProof"]["rootHash"] = base64.b64encode(b"\0" * 32).decode()
    result = check(document, tlog_root=root)
    assert "log entry does not verify with trusted root" in result.reason


def test_forged_signed_entry_timestamp_fails(instance: SigstoreInstance, root: TrustRoot) -> None:
    document = logged_dsse(instance)
    entry = document["verificationMaterial"]["tlogEntries"][0]
    entry["inclusionPromise"]["signedEntryTimestamp"] = base64.b64encode(b"0" * 70).decode()
    assert "log entry does not verify" in check(document, tlog_root=root).reason


def test_unsupported_entry_kind_is_named(instance: SigstoreInstance, root: TrustRoot) -> None:
    entry = instance.tlog.append(hashedrekord_key_body(PEM, b"sig", "ab" * 32))
    document = key_bundle(KEY, envelope=dsse(), tlog_entries=[tlog_entry(entry)])
    result = check(document, tlog_root=root)
    assert "log entry of kind 'hashedrekord/0.0.1' is not supported for a DSSE envelope" in (
        result.reason
    )


def test_timestamp_without_authority_in_root_fails(root: TrustRoot) -> None:
    stamp = base64.b64decode(
        _conformance_bundle()["verificationMaterial"]["timestampVerificationData"][
            "rfc3161Timestamps"
        ][0]["signedTimestamp"]
    )
    document = key_bundle(KEY, envelope=dsse(), timestamps=[stamp])
    result = check(document, timestamp_root=root)
    assert "names no timestamp authority" in result.reason


def test_timestamps_verify_with_the_roots_authority(tmp_path: Path) -> None:
    stamped = SigstoreInstance("stamped")
    stamped.tsa = TimestampAuthority()
    (tmp_path / "trusted_root.json").write_text(stamped.trusted_root_json())
    root = load_trusted_root("trusted_root.json", tmp_path)
    envelope = dsse()
    signature = base64.b64decode(envelope["signatures"][0]["sig"])
    good = key_bundle(KEY, envelope=envelope, timestamps=[stamped.tsa.stamp(signature)])
    assert check(good, timestamp_root=root).ok
    over_other = key_bundle(KEY, envelope=envelope, timestamps=[stamped.tsa.stamp(b"else")])
    other_tsa = key_bundle(
        KEY, envelope=envelope, timestamps=[TimestampAuthority().stamp(signature)]
    )
    for document in (over_other, other_tsa):
        result = check(document, timestamp_root=root)
        assert result.reason.endswith(
            "signed timestamp 0 does not verify with a timestamp authority of trusted root "
            f"{root.name}, or was made outside its validity"
        )
    many = key_bundle(KEY, envelope=envelope, timestamps=[stamped.tsa.stamp(signature)] * 5)
    assert "carries 5 signed timestamps; at most 4" in check(many, timestamp_root=root).reason


def test_the_most_telling_failure_is_reported() -> None:
    documents: list[bytes | str] = [
        "malformed Sigstore bundle: x",
        json.dumps(key_bundle(generate_key(), digest=DIGEST)).encode(),
        json.dumps(
            key_bundle(KEY, envelope=dsse()),
        ).encode(),
    ]
    result = verify_key_bundles(
        documents,
        PUBLIC,
        "release",
        image_digest=DIGEST,
        repository=NAME,
        required_annotations={"env": "prod"},
        check_reference=False,
        root=None,
    )
    assert (
        result.reason == "signed statement missing annotation env=prod (and 2 other bundles failed)"
    )


# Real bundles: sigstore-conformance's managed-key cases ------------------------------------


@pytest.fixture
def offline(monkeypatch: pytest.MonkeyPatch) -> None:
    """Any attempt to open a connection fails the test: verification must be offline."""

    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError(f"network access during offline verification: {args!r}")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)


def _conformance_bundle(case: str = "managed-key-happy-path") -> dict[str, Any]:
    document: dict[str, Any] = json.loads((DATA / case / "bundle.sigstore.json").read_bytes())
    return document


ARTIFACT = "sha256:" + hashlib.sha256((DATA / "a.txt").read_bytes()).hexdigest()


def _real(
    case: str, root: TrustRoot | None, document: dict[str, Any] | None = None
) -> KeyBundleResult:
    raw = (
        (DATA / case / "bundle.sigstore.json").read_bytes()
        if document is None
        else json.dumps(document).encode()
    )
    parsed = parse_key_bundle(raw)
    assert not isinstance(parsed, str), parsed
    key = load_public_key((DATA / case / "key.pub").read_bytes(), source=case)
    return verify_key_bundle(
        parsed,
        key,
        "conformance",
        image_digest=ARTIFACT,
        repository=NAME,
        tlog_root=root,
        timestamp_root=root,
    )


@pytest.mark.usefixtures("offline")
def test_real_production_bundle_verifies_with_its_log_entry_and_timestamp() -> None:
    production = load_trusted_root("production", DATA)
    assert _real("managed-key-happy-path", production).ok
    staging = load_trusted_root(
        str(DATA / "managed-key-and-trusted-root" / "trusted_root.json"), DATA
    )
    assert _real("managed-key-and-trusted-root", staging).ok
    # The staging root knows neither the production timestamp authority nor its log.
    assert "signed timestamp 0 does not verify with a timestamp authority" in (
        _real("managed-key-happy-path", staging).reason
    )
    unstamped = _conformance_bundle()
    del unstamped["verificationMaterial"]["timestampVerificationData"]
    assert "log entry signed by an unknown log" in (
        _real("managed-key-happy-path", staging, unstamped).reason
    )


@pytest.mark.usefixtures("offline")
def test_real_bundle_tampered_or_for_another_artifact_fails() -> None:
    production = load_trusted_root("production", DATA)
    document = _conformance_bundle()
    signature = bytearray(base64.b64decode(document["messageSignature"]["signature"]))
    signature[-1] ^= 1
    document["messageSignature"]["signature"] = base64.b64encode(bytes(signature)).decode()
    assert _real("managed-key-happy-path", production, document).reason == (
        "bundle signature does not verify with key conformance"
    )
    stamped = _conformance_bundle()
    stamps = stamped["verificationMaterial"]["timestampVerificationData"]["rfc3161Timestamps"]
    raw = bytearray(base64.b64decode(stamps[0]["signedTimestamp"]))
    raw[-10] ^= 1
    stamps[0]["signedTimestamp"] = base64.b64encode(bytes(raw)).decode()
    result = _real("managed-key-happy-path", production, stamped)
    assert "signed timestamp 0" in result.reason
    parsed = parse_key_bundle(
        (DATA / "managed-key-happy-path" / "bundle.sigstore.json").read_bytes()
    )
    assert not isinstance(parsed, str)
    key = load_public_key((DATA / "managed-key-happy-path" / "key.pub").read_bytes(), source="k")
    other = verify_key_bundle(parsed, key, "k", image_digest=DIGEST, repository=NAME)
    assert "the bundle signs another artifact" in other.reason


def test_the_conformance_wrong_key_is_refused_at_policy_load() -> None:
    with pytest.raises(PolicyError, match="not a valid public key"):
        load_public_key((DATA / "managed-key-wrong-key_fail" / "key.pub").read_bytes(), source="k")


def test_copies_are_byte_exact() -> None:
    sums = {
        "a.txt": "a0cfc71271d6e278e57cd332ff957c3f7043fdda354c4cbb190a30d56efa01bf",
        "managed-key-happy-path/bundle.sigstore.json": (
            "3a7cbc7ce43ebe9af2fc6ad86e6ac28ff3f11e2fa51e971af88efbcc9ea4457d"
        ),
        "managed-key-happy-path/key.pub": (
            "be23225356911668bb870173733013d2211ec0ed0a3738ee7b74de1e20bcf5d7"
        ),
        "managed-key-and-trusted-root/bundle.sigstore.json": (
            "46d5d28bdc855310c7aff136fb31f62ba4780d8b5839c58a432077a5023c7e29"
        ),
        "managed-key-and-trusted-root/trusted_root.json": (
            "108f2939905920ff1c2974121f3a09aa8e15d34898aab2199bd57a06509f8f70"
        ),
    }
    for path, expected in sums.items():
        assert hashlib.sha256((DATA / path).read_bytes()).hexdigest() == expected, path


def test_entry_logged_after_the_root_retired_the_log_key_fails(tmp_path: Path) -> None:
    instance = SigstoreInstance("retired-log")
    document = instance.trusted_root()
    retired = now() - dt.timedelta(minutes=5)
    document["tlogs"][0]["publicKey"]["validFor"]["end"] = f"{retired:%Y-%m-%dT%H:%M:%SZ}"
    (tmp_path / "root.json").write_text(json.dumps(document))
    root = load_trusted_root("root.json", tmp_path)
    result = check(logged_message(instance), tlog_root=root)
    assert not result.ok
    assert f"whose key the root retired at {retired:%Y-%m-%dT%H:%M:%SZ}" in result.reason
