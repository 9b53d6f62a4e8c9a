"""Keyless signatures whose certificates cryptography cannot read are refusals, not crashes.

cryptography raises ``InvalidVersion``, ``DuplicateExtension`` and
``UnsupportedGeneralNameType`` (not ValueErrors; the last two only when the
extensions are first read) for the certificates of tests/support/oddcerts.py.
Each place a registry's certificate bytes are read must refuse them in its
own words: the bundle, cosign's certificate annotation, the log entry's body.
"""

from __future__ import annotations

import base64
import hashlib
import json

import pytest
from sigstore.models import InvalidBundle
from sigstore_models.bundle import v1 as bundle_v1

from tests.support.oddcerts import ODD_CASES, odd_certificates, odd_pem
from tests.support.sigstore_instance import (
    BUNDLE_V01,
    BUNDLE_V03,
    Identity,
    SigstoreInstance,
    bundle,
    cosign_annotations,
    intoto_body,
)
from webhook.policy.model import Keyless
from webhook.signatures.keyless import (
    CERTIFICATE_ANNOTATION,
    _LegacyBundle,
    parse_bundle,
    verify_legacy,
    verify_legacy_attestation,
)
from webhook.signatures.tlog import intoto_body_problem
from webhook.trust.trustroot import TrustRoot

ISSUER = "https://token.actions.githubusercontent.com"
SUBJECT = "https://github.com/acme/api/.github/workflows/release.yml@refs/tags/v1.0"
IDENTITY = Identity(SUBJECT, ISSUER)
PAYLOAD = b'{"critical":{"type":"cosign container image signature"}}'
IMAGE = hashlib.sha256(b"an image manifest").hexdigest()
KEYLESS = Keyless(issuer=ISSUER, subject=SUBJECT)
#: What cryptography says of each case, as the reason must show it.
SAYS = {
    "an unknown X.509 version": "not a valid X509 version",
    "a SAN given twice": "Duplicate 2.5.29.17 extension",
    "an x400Address SAN": "x400Address/EDIPartyName are not supported",
}


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


@pytest.mark.parametrize("case", ODD_CASES)
@pytest.mark.parametrize("media_type", [BUNDLE_V03, BUNDLE_V01])
def test_a_bundle_whose_certificate_cannot_be_read_is_malformed(
    instance: SigstoreInstance, case: str, media_type: str
) -> None:
    cert, signature, entry = instance.sign_digest(IDENTITY, IMAGE)
    document = bundle(
        cert, entry, signature=signature, digest_hex=IMAGE, media_type=media_type, chain=[]
    )
    material = document["verificationMaterial"]
    holder = material.get("certificate") or material["x509CertificateChain"]["certificates"][0]
    holder["rawBytes"] = _b64(odd_certificates()[case])
    parsed = parse_bundle(json.dumps(document).encode())
    assert isinstance(parsed, str)
    assert parsed.startswith("malformed Sigstore bundle: ") and SAYS[case] in parsed


@pytest.mark.parametrize("case", ODD_CASES)
def test_a_cosign_certificate_annotation_that_cannot_be_read_is_a_reason(
    root: TrustRoot, instance: SigstoreInstance, case: str
) -> None:
    cert, signature, entry = instance.sign_blob(IDENTITY, PAYLOAD)
    annotations = cosign_annotations(instance, cert, signature, entry)
    annotations[CERTIFICATE_ANNOTATION] = odd_pem(case).decode()
    result = verify_legacy(
        root,
        KEYLESS,
        annotations=annotations,
        signature_b64=annotations["dev.cosignproject.cosign/signature"],
        payload=PAYLOAD,
    )
    assert not result.ok
    assert result.reason.startswith(
        "the signing certificate of the keyless signature cannot be read: "
    )
    assert SAYS[case] in result.reason


@pytest.mark.parametrize("case", ODD_CASES)
def test_a_legacy_attestation_whose_certificate_cannot_be_read_is_a_reason(
    root: TrustRoot, instance: SigstoreInstance, case: str
) -> None:
    statement = {
        "_type": "https://in-toto.io/Statement/v1",
        "subject": [{"name": "registry.test/acme/api", "digest": {"sha256": IMAGE}}],
        "predicateType": "https://slsa.dev/provenance/v1",
        "predicate": {},
    }
    envelope, annotations = instance.attest_legacy(IDENTITY, statement, kind="intoto")
    annotations[CERTIFICATE_ANNOTATION] = odd_pem(case).decode()
    result = verify_legacy_attestation(
        root,
        KEYLESS,
        annotations=annotations,
        envelope=envelope,
        image_digest=f"sha256:{IMAGE}",
        predicate_type="https://slsa.dev/provenance/v1",
    )
    assert not result.ok
    assert result.reason.startswith(
        "the signing certificate of the keyless attestation cannot be read: "
    )


@pytest.mark.parametrize("case", ODD_CASES)
def test_a_legacy_bundle_of_an_unreadable_certificate_is_an_invalid_bundle(
    instance: SigstoreInstance, case: str
) -> None:
    # _LegacyBundle is built from a certificate already read; should one ever
    # reach it unread, sigstore-python's own refusal comes out, not cryptography's.
    cert, signature, entry = instance.sign_digest(IDENTITY, IMAGE)
    document = bundle(cert, entry, signature=signature, digest_hex=IMAGE)
    document["verificationMaterial"]["certificate"]["rawBytes"] = _b64(odd_certificates()[case])
    inner = bundle_v1.Bundle.from_json(json.dumps(document))
    with pytest.raises(InvalidBundle, match="the signing certificate cannot be read"):
        _LegacyBundle(inner)


@pytest.mark.parametrize("case", ODD_CASES)
def test_an_intoto_entry_naming_an_unreadable_certificate_is_refused(
    instance: SigstoreInstance, case: str
) -> None:
    cert, _ = instance.ca.issue(IDENTITY)
    payload = b'{"_type":"https://in-toto.io/Statement/v1"}'
    signature = b"a signature"
    envelope = json.dumps(
        {
            "payloadType": "application/vnd.in-toto+json",
            "payload": _b64(payload),
            "signatures": [{"keyid": "", "sig": _b64(signature)}],
        }
    ).encode()
    body = intoto_body(cert, envelope)
    body["spec"]["content"]["envelope"]["signatures"][0]["publicKey"] = _b64(odd_pem(case))
    problem = intoto_body_problem(
        json.dumps(body).encode(),
        envelope=envelope,
        payload=payload,
        signature=signature,
        cert=cert,
    )
    # An unknown version fails at load; the others load (their extensions
    # unread) and are not the signer's certificate.
    if case == "an unknown X.509 version":
        assert problem == (
            "log entry's signer is not a PEM certificate cryptography can read: "
            "94 is not a valid X509 version"
        )
    else:
        assert problem == "log entry names another signing certificate"
