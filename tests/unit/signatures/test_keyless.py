"""Keyless verification against a private Sigstore made by tests/support/sigstore_instance.py."""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import json
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.serialization import Encoding

from tests.support.sigstore_instance import (
    BUNDLE_V01,
    BUNDLE_V02,
    BUNDLE_V03,
    Identity,
    SigstoreInstance,
    bundle,
    cosign_annotations,
    hashedrekord_v2_body,
    now,
    tlog_entry,
)
from tests.support.tsa import TimestampAuthority
from webhook.core.errors import PolicyError
from webhook.policy.model import Keyless
from webhook.signatures.keyless import (
    COSIGN_SIGN_PREDICATE,
    KeylessResult,
    parse_bundle,
    verify_bundle,
    verify_legacy,
    verify_legacy_attestation,
)
from webhook.trust.trustroot import TrustRoot, load_trusted_root

ISSUER = "https://token.actions.githubusercontent.com"
SUBJECT = "https://github.com/acme/api/.github/workflows/release.yml@refs/tags/v1.0"
GITHUB = {
    "githubWorkflowRepository": "acme/api",
    "sourceRepositoryURI": "https://github.com/acme/api",
}
IDENTITY = Identity(SUBJECT, ISSUER, GITHUB)
PAYLOAD = b'{"critical":{"type":"cosign container image signature"}}'
IMAGE = hashlib.sha256(b"an image manifest").hexdigest()


def keyless(**fields: object) -> Keyless:
    values: dict[str, object] = {"issuer": ISSUER, "subject": SUBJECT}
    values.update(fields)
    return Keyless(**values)  # type: ignore[arg-type]


def legacy(
    root: TrustRoot, instance: SigstoreInstance, policy: Keyless, **sign: object
) -> KeylessResult:
    cert, signature, entry = instance.sign_blob(sign.pop("identity", IDENTITY), PAYLOAD, **sign)  # type: ignore[arg-type]
    annotations = cosign_annotations(instance, cert, signature, entry)
    return verify_legacy(
        root,
        policy,
        annotations=annotations,
        signature_b64=annotations["dev.cosignproject.cosign/signature"],
        payload=PAYLOAD,
    )


def test_legacy_cosign_signature_verifies(root: TrustRoot, instance: SigstoreInstance) -> None:
    result = legacy(root, instance, keyless(extensions=tuple(sorted(GITHUB.items()))))
    assert result == KeylessResult(True, payload=PAYLOAD)


@pytest.mark.parametrize(
    ("policy", "reason"),
    [
        (
            keyless(
                subject="https://github.com/acme/other/.github/workflows/release.yml@refs/tags/v1.0"
            ),
            "subject 'https://github.com/acme/api/",
        ),
        (
            keyless(issuer="https://accounts.google.com"),
            f"issuer {ISSUER!r} is not 'https://accounts.google.com'",
        ),
        # re.search would find these; a partial match must never pass.
        (
            keyless(subject=None, subject_regexp=r"https://github\.com/acme/api"),
            "does not match the whole of /https://github\\.com/acme/api/",
        ),
        (
            keyless(subject=None, subject_regexp=r"release\.yml@refs/tags/v1\.0"),
            "does not match the whole of",
        ),
        (
            keyless(issuer=None, issuer_regexp=r"https://token\.actions"),
            "does not match the whole of /https://token\\.actions/",
        ),
        (
            keyless(extensions=(("githubWorkflowRepository", "acme/other"),)),
            "GitHubWorkflowRepository does not match (got 'acme/api', expected 'acme/other')",
        ),
        (
            keyless(extensions=(("sourceRepositoryRef", "refs/heads/main"),)),
            "does not contain OIDCSourceRepositoryRef",
        ),
    ],
)
def test_identity_mismatch_is_denied(
    root: TrustRoot, instance: SigstoreInstance, policy: Keyless, reason: str
) -> None:
    result = legacy(root, instance, policy)
    assert not result.ok
    assert reason in result.reason


def test_anchored_regexes_that_match_the_whole_value_pass(
    root: TrustRoot, instance: SigstoreInstance
) -> None:
    policy = keyless(
        subject=None,
        subject_regexp=r"https://github\.com/acme/[^/]+/\.github/workflows/release\.yml@refs/tags/v.*",
        issuer=None,
        issuer_regexp=r"https://token\.actions\.githubusercontent\.com",
    )
    assert legacy(root, instance, policy).ok


def test_email_subject(root: TrustRoot, instance: SigstoreInstance) -> None:
    identity = Identity("dev@acme.test", "https://accounts.google.com")
    policy = keyless(subject="dev@acme.test", issuer="https://accounts.google.com")
    assert legacy(root, instance, policy, identity=identity).ok
    partial = keyless(subject=None, subject_regexp="dev@acme", issuer="https://accounts.google.com")
    assert (
        "does not match the whole of /dev@acme/"
        in legacy(root, instance, partial, identity=identity).reason
    )


def test_certificate_from_another_ca_is_denied(root: TrustRoot, instance: SigstoreInstance) -> None:
    other = SigstoreInstance("other")
    cert = other.ca.issue(IDENTITY)
    result = legacy(root, instance, keyless(), cert=cert)
    assert not result.ok
    assert result.reason.startswith("the certificate does not chain to a Fulcio CA")


@pytest.mark.parametrize(
    ("sct", "reason"),
    [
        ("missing", "does not contain a signed certificate timestamp"),
        ("forged", "failed to verify SCT on signing certificate"),
    ],
)
def test_missing_or_forged_sct_is_denied(
    root: TrustRoot, instance: SigstoreInstance, sct: str, reason: str
) -> None:
    result = legacy(root, instance, keyless(), sct=sct)
    assert not result.ok
    assert reason in result.reason


def test_log_entry_for_another_artifact_is_denied(
    root: TrustRoot, instance: SigstoreInstance
) -> None:
    result = legacy(root, instance, keyless(), logged_digest=hashlib.sha256(b"other").hexdigest())
    assert not result.ok
    assert "transparency log entry is inconsistent with other materials" in result.reason


def test_log_entry_signed_by_another_log_is_denied(
    root: TrustRoot, instance: SigstoreInstance
) -> None:
    other = SigstoreInstance("other")
    cert, signature, _ = instance.sign_blob(IDENTITY, PAYLOAD)
    entry = other.tlog.append({"kind": "hashedrekord", "apiVersion": "0.0.1", "spec": {}})
    annotations = cosign_annotations(instance, cert, signature, entry)
    result = verify_legacy(
        root,
        keyless(),
        annotations=annotations,
        signature_b64=annotations["dev.cosignproject.cosign/signature"],
        payload=PAYLOAD,
    )
    assert not result.ok
    assert "invalid inclusion promise" in result.reason


def test_signature_after_certificate_expiry_is_denied(
    root: TrustRoot, instance: SigstoreInstance
) -> None:
    start = now() - dt.timedelta(hours=1)
    result = legacy(root, instance, keyless(), not_before=start, lifetime=dt.timedelta(minutes=10))
    assert not result.ok
    assert result.reason.startswith(
        "the signing certificate was not valid when the transparency log recorded the signature"
    )


def test_tampered_payload_is_denied(root: TrustRoot, instance: SigstoreInstance) -> None:
    cert, signature, entry = instance.sign_blob(IDENTITY, PAYLOAD)
    annotations = cosign_annotations(instance, cert, signature, entry)
    result = verify_legacy(
        root,
        keyless(),
        annotations=annotations,
        signature_b64=annotations["dev.cosignproject.cosign/signature"],
        payload=PAYLOAD + b" ",
    )
    assert not result.ok


@pytest.mark.parametrize(
    "annotation", ["dev.sigstore.cosign/certificate", "dev.sigstore.cosign/bundle"]
)
def test_missing_annotations_are_denied(
    root: TrustRoot, instance: SigstoreInstance, annotation: str
) -> None:
    cert, signature, entry = instance.sign_blob(IDENTITY, PAYLOAD)
    annotations = cosign_annotations(instance, cert, signature, entry)
    del annotations[annotation]
    result = verify_legacy(
        root,
        keyless(),
        annotations=annotations,
        signature_b64=annotations["dev.cosignproject.cosign/signature"],
        payload=PAYLOAD,
    )
    assert result.reason.endswith(f"({annotation})")


@pytest.mark.parametrize("garbage", ["{}", "not json", '{"Payload": {"body": "!!"}}'])
def test_malformed_log_entry_is_denied_not_raised(
    root: TrustRoot, instance: SigstoreInstance, garbage: str
) -> None:
    cert, signature, entry = instance.sign_blob(IDENTITY, PAYLOAD)
    annotations = cosign_annotations(instance, cert, signature, entry)
    annotations["dev.sigstore.cosign/bundle"] = garbage
    result = verify_legacy(
        root,
        keyless(),
        annotations=annotations,
        signature_b64=annotations["dev.cosignproject.cosign/signature"],
        payload=PAYLOAD,
    )
    assert not result.ok
    assert result.reason.startswith("malformed keyless signature")


@pytest.mark.parametrize("media_type", [BUNDLE_V03, BUNDLE_V02])
def test_message_signature_bundle_verifies(
    root: TrustRoot, instance: SigstoreInstance, media_type: str
) -> None:
    cert, signature, entry = instance.sign_digest(IDENTITY, IMAGE)
    document = bundle(
        cert,
        entry,
        signature=signature,
        digest_hex=IMAGE,
        media_type=media_type,
        chain=[instance.ca.intermediate],
    )
    parsed = parse_bundle(json.dumps(document).encode())
    assert not isinstance(parsed, str)
    assert verify_bundle(root, keyless(), parsed, image_digest=f"sha256:{IMAGE}").ok


def test_v01_bundle_verifies(root: TrustRoot, instance: SigstoreInstance) -> None:
    cert, signature, entry = instance.sign_digest(IDENTITY, IMAGE)
    document = bundle(cert, entry, signature=signature, digest_hex=IMAGE, media_type=BUNDLE_V01)
    parsed = parse_bundle(json.dumps(document).encode())
    assert not isinstance(parsed, str)
    assert verify_bundle(root, keyless(), parsed, image_digest=f"sha256:{IMAGE}").ok


def test_bundle_for_another_image_is_denied(root: TrustRoot, instance: SigstoreInstance) -> None:
    other = hashlib.sha256(b"another image").hexdigest()
    cert, signature, entry = instance.sign_digest(IDENTITY, other)
    parsed = parse_bundle(
        json.dumps(bundle(cert, entry, signature=signature, digest_hex=other)).encode()
    )
    assert not isinstance(parsed, str)
    result = verify_bundle(root, keyless(), parsed, image_digest=f"sha256:{IMAGE}")
    assert not result.ok
    assert result.reason.startswith(f"the bundle signs another artifact, not sha256:{IMAGE}")


def statement(digest: str, predicate_type: str = COSIGN_SIGN_PREDICATE) -> dict[str, object]:
    return {
        "_type": "https://in-toto.io/Statement/v1",
        "subject": [{"name": "registry.test/acme/api", "digest": {"sha256": digest}}],
        "predicateType": predicate_type,
        "predicate": {"ok": True},
    }


def test_dsse_bundle_verifies_and_checks_subject_and_type(
    root: TrustRoot, instance: SigstoreInstance
) -> None:
    cert, envelope, entry = instance.sign_dsse(IDENTITY, statement(IMAGE))
    parsed = parse_bundle(json.dumps(bundle(cert, entry, envelope=envelope)).encode())
    assert not isinstance(parsed, str)
    ok = verify_bundle(root, keyless(), parsed, image_digest=f"sha256:{IMAGE}")
    assert ok.ok and json.loads(ok.payload)["predicate"] == {"ok": True}
    other = verify_bundle(root, keyless(), parsed, image_digest=f"sha256:{'0' * 64}")
    assert other.reason == f"signed statement is about another subject, not sha256:{'0' * 64}"
    wrong_type = verify_bundle(
        root,
        keyless(),
        parsed,
        image_digest=f"sha256:{IMAGE}",
        predicate_type="https://slsa.dev/provenance/v1",
    )
    assert (
        wrong_type.reason
        == f"signed statement has predicate type {COSIGN_SIGN_PREDICATE!r}, not https://slsa.dev/provenance/v1"
    )
    assert (
        "subject"
        in verify_bundle(
            root, keyless(subject="x@y.z"), parsed, image_digest=f"sha256:{IMAGE}"
        ).reason
    )


@pytest.mark.parametrize("raw", [b"", b"{}", b"[]", b'{"mediaType": "application/x"}'])
def test_malformed_bundles_are_reasons(raw: bytes) -> None:
    parsed = parse_bundle(raw)
    assert isinstance(parsed, str) and parsed.startswith("malformed Sigstore bundle")


def test_production_root_loads_offline() -> None:
    root = load_trusted_root("production", Path("/nonexistent"))
    assert root.name == "production" and len(root.digest) == 64


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (None, "cannot read trusted root"),
        (b"{}", "is not a usable Sigstore trusted root: mediaType: Field required"),
        (b"not json", "is not a usable Sigstore trusted root: document: Invalid JSON"),
    ],
)
def test_unloadable_root_is_a_policy_error(
    tmp_path: Path, content: bytes | None, message: str
) -> None:
    if content is not None:
        (tmp_path / "root.json").write_bytes(content)
    with pytest.raises(PolicyError, match=message):
        load_trusted_root("root.json", tmp_path)


def test_root_without_ct_logs_is_refused(tmp_path: Path, instance: SigstoreInstance) -> None:
    document = instance.trusted_root()
    document["ctlogs"] = []
    (tmp_path / "root.json").write_text(json.dumps(document))
    with pytest.raises(PolicyError, match="CTFE keys not found"):
        load_trusted_root("root.json", tmp_path)


# Legacy ``.att`` layers (cosign attest, keyless) ---------------------------------------

SLSA = "https://slsa.dev/provenance/v1"


def provenance(digest_hex: str = IMAGE, predicate_type: str = SLSA) -> dict[str, object]:
    return {
        "_type": "https://in-toto.io/Statement/v1",
        "subject": [{"name": "registry.test/acme/api", "digest": {"sha256": digest_hex}}],
        "predicateType": predicate_type,
        "predicate": {"builder": {"id": "https://github.com/acme/api"}},
    }


def legacy_attestation(
    root: TrustRoot,
    envelope: bytes,
    annotations: dict[str, str],
    policy: Keyless | None = None,
) -> KeylessResult:
    return verify_legacy_attestation(
        root,
        policy or keyless(),
        annotations=annotations,
        envelope=envelope,
        image_digest=f"sha256:{IMAGE}",
        predicate_type=SLSA,
    )


@pytest.mark.parametrize("kind", ["intoto", "dsse"])
def test_legacy_attestation_verifies(
    root: TrustRoot, instance: SigstoreInstance, kind: str
) -> None:
    envelope, annotations = instance.attest_legacy(IDENTITY, provenance(), kind=kind)
    result = legacy_attestation(root, envelope, annotations)
    assert result.ok, result.reason
    assert json.loads(result.payload)["predicate"] == {
        "builder": {"id": "https://github.com/acme/api"}
    }


def test_legacy_attestation_of_another_identity_is_denied(
    root: TrustRoot, instance: SigstoreInstance
) -> None:
    other = Identity("https://github.com/evil/api/.github/workflows/x.yml@refs/heads/main", ISSUER)
    envelope, annotations = instance.attest_legacy(other, provenance())
    result = legacy_attestation(root, envelope, annotations)
    assert not result.ok
    assert result.reason.startswith("subject 'https://github.com/evil/api/")
    assert f"does not match {SUBJECT!r}" in result.reason


@pytest.mark.parametrize("kind", ["intoto", "dsse"])
def test_tampered_legacy_attestation_is_denied(
    root: TrustRoot, instance: SigstoreInstance, kind: str
) -> None:
    envelope, annotations = instance.attest_legacy(IDENTITY, provenance(), kind=kind)
    document = json.loads(envelope)
    forged = json.dumps(provenance(hashlib.sha256(b"another image").hexdigest()))
    document["payload"] = base64.b64encode(forged.encode()).decode()
    result = legacy_attestation(root, json.dumps(document).encode(), annotations)
    assert result == KeylessResult(False, "DSSE: invalid signature")


@pytest.mark.parametrize(
    ("kind", "reason"),
    [
        ("intoto", "log entry is for another envelope (sha256:"),
        ("dsse", "log entry payload hash does not match bundle"),
    ],
)
def test_legacy_attestation_whose_entry_records_another_envelope_is_denied(
    root: TrustRoot, instance: SigstoreInstance, kind: str, reason: str
) -> None:
    other = provenance(predicate_type="https://example.com/other")
    envelope, annotations = instance.attest_legacy(
        IDENTITY, provenance(), kind=kind, logged_statement=other
    )
    result = legacy_attestation(root, envelope, annotations)
    assert not result.ok
    assert result.reason.startswith(reason)


def test_legacy_attestation_about_another_digest_is_denied(
    root: TrustRoot, instance: SigstoreInstance
) -> None:
    about = provenance(hashlib.sha256(b"another image").hexdigest())
    envelope, annotations = instance.attest_legacy(IDENTITY, about)
    result = legacy_attestation(root, envelope, annotations)
    assert result == KeylessResult(
        False, f"signed statement is about another subject, not sha256:{IMAGE}"
    )


def test_legacy_attestation_without_a_log_entry_is_a_reason(
    root: TrustRoot, instance: SigstoreInstance
) -> None:
    envelope, annotations = instance.attest_legacy(IDENTITY, provenance())
    del annotations["dev.sigstore.cosign/bundle"]
    result = legacy_attestation(root, envelope, annotations)
    assert result == KeylessResult(
        False, "attestation has no transparency log entry (dev.sigstore.cosign/bundle)"
    )


@pytest.mark.parametrize("statement_type", [None, "https://example.com/NotAStatement/v1"])
def test_legacy_attestation_that_is_not_an_in_toto_statement_is_denied(
    root: TrustRoot, instance: SigstoreInstance, statement_type: str | None
) -> None:
    """Signed and logged, of the right predicate type, but not an in-toto Statement."""
    statement = provenance()
    if statement_type is None:
        del statement["_type"]
    else:
        statement["_type"] = statement_type
    envelope, annotations = instance.attest_legacy(IDENTITY, statement)
    result = legacy_attestation(root, envelope, annotations)
    assert result == KeylessResult(False, "signed payload is not an in-toto statement")


def test_rekor_v2_bundle_without_a_timestamp_fails_closed_and_says_why(
    instance: SigstoreInstance,
) -> None:
    """sigstore-python verifies Rekor v2 entries, but they carry no time: a timestamp
    authority must give one. Without it the bundle is refused, saying so."""
    cert, signature, _ = instance.sign_digest(IDENTITY, IMAGE)
    document = bundle(cert, _, signature=signature, digest_hex=IMAGE)
    body = hashedrekord_v2_body(
        cert.public_bytes(Encoding.DER), signature, bytes.fromhex(IMAGE), certificate=True
    )
    entry = tlog_entry(instance.tlog.append(body), promise=False, version="0.0.2")
    document["verificationMaterial"]["tlogEntries"] = [entry]
    reason = parse_bundle(json.dumps(document).encode())
    assert isinstance(reason, str)
    assert reason.startswith(
        "malformed Sigstore bundle: the bundle has neither a signed entry timestamp (Rekor v1) "
        "nor an RFC 3161 timestamp that a timestamp authority of the trusted root verifies"
    )


def test_rekor_v2_bundle_with_a_timestamp_is_verified_by_sigstore_python(tmp_path: Path) -> None:
    """A Rekor v2 hashedrekord 0.0.2 entry and an RFC 3161 timestamp of the root's authority:
    what cosign 3 writes with a Rekor v2 signing config, verified by sigstore-python."""
    stamped = SigstoreInstance("stamped")
    stamped.tsa = TimestampAuthority()
    (tmp_path / "trusted_root.json").write_text(stamped.trusted_root_json())
    root = load_trusted_root("trusted_root.json", tmp_path)

    def rekor_v2(tsa: TimestampAuthority) -> object:
        cert, signature, entry = stamped.sign_digest(IDENTITY, IMAGE)
        document = bundle(cert, entry, signature=signature, digest_hex=IMAGE)
        body = hashedrekord_v2_body(
            cert.public_bytes(Encoding.DER), signature, bytes.fromhex(IMAGE), certificate=True
        )
        material = document["verificationMaterial"]
        material["tlogEntries"] = [
            tlog_entry(stamped.tlog.append(body), promise=False, version="0.0.2")
        ]
        stamp = base64.b64encode(tsa.stamp(signature)).decode()
        material["timestampVerificationData"] = {"rfc3161Timestamps": [{"signedTimestamp": stamp}]}
        parsed = parse_bundle(json.dumps(document).encode())
        assert not isinstance(parsed, str), parsed
        return verify_bundle(root, keyless(), parsed, image_digest=f"sha256:{IMAGE}")

    assert rekor_v2(stamped.tsa).ok  # type: ignore[attr-defined]
    refused = rekor_v2(TimestampAuthority())
    assert refused.reason.startswith("the bundle has neither a signed entry timestamp")  # type: ignore[attr-defined]
