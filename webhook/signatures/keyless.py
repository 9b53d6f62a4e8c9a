"""Keyless (Fulcio certificate) signatures, verified by sigstore-python.

Two storage formats reach the same verifier:

- cosign's legacy layout: a ``sha256-<hex>.sig`` layer whose annotations carry
  the signing certificate (``dev.sigstore.cosign/certificate``), its chain and
  the Rekor entry with its signed entry timestamp (``dev.sigstore.cosign/bundle``).
  They are turned into a Sigstore bundle. That layout never carries a Merkle
  inclusion proof, so the signed entry timestamp is its transparency-log proof,
  as in ``cosign verify`` offline; everything else (chain to a Fulcio CA of the
  trusted root at the log's time, embedded SCT, certificate profile, identity,
  signature, the log entry naming this signature and payload) is
  sigstore-python's ``Verifier.verify_artifact``. Attestations in cosign's
  legacy ``sha256-<hex>.att`` layers (DSSE envelopes with the same annotations,
  logged as ``intoto`` 0.0.2 or ``dsse`` 0.0.1 entries) are verified the same
  way with ``verify_legacy_attestation``.
- Sigstore bundles (v0.1 to v0.3) attached as OCI referrers. A message
  signature must be over the image manifest digest; a DSSE envelope must hold
  an in-toto statement whose subject is the image (predicate type
  ``https://sigstore.dev/cosign/sign/v1`` for signatures, the policy's for
  attestations).

The certificate identity is checked by the policy objects of
``signatures/identity.py``; that the root trusted the Fulcio CA and log keys
at the signing time (sigstore-python does not check it) by ``cawindow.py``.

Sans-I/O: callers hand over bytes they fetched; nothing here opens a socket.
Every failure is returned as a reason, never raised.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import Encoding
from pydantic import ValidationError
from sigstore import dsse
from sigstore.errors import Error as SigstoreError
from sigstore.errors import VerificationError
from sigstore.hashes import Hashed
from sigstore.models import Bundle, InvalidBundle
from sigstore.verify.policy import VerificationPolicy
from sigstore_models import intoto as intoto_v1
from sigstore_models.bundle import v1 as bundle_v1
from sigstore_models.common import v1 as common_v1
from sigstore_models.rekor import v1 as rekor_v1

from webhook.core.untrusted import NestedTooDeep, json_value, literal
from webhook.core.x509read import CERTIFICATE_ERRORS, load_der, load_pem, readable
from webhook.policy.model import Keyless
from webhook.signatures.cawindow import window_problem
from webhook.signatures.cosign import (
    IN_TOTO_PAYLOAD_TYPE,
    STATEMENT_TYPES,
    statement_subject_matches,
)
from webhook.signatures.identity import identity_policy
from webhook.signatures.tlog import (
    BUNDLE_ANNOTATION,
    PromiseEntry,
    intoto_body_problem,
    parse_cosign_entry,
)
from webhook.trust.trustroot import TrustRoot

CERTIFICATE_ANNOTATION = "dev.sigstore.cosign/certificate"
CHAIN_ANNOTATION = "dev.sigstore.cosign/chain"
#: The predicate type cosign gives the in-toto statement of a DSSE image signature.
COSIGN_SIGN_PREDICATE = "https://sigstore.dev/cosign/sign/v1"
#: Media types (and referrer artifact types) of Sigstore bundles.
BUNDLE_MEDIA_TYPES = frozenset(
    {
        "application/vnd.dev.sigstore.bundle.v0.3+json",
        "application/vnd.dev.sigstore.bundle+json;version=0.3",
        "application/vnd.dev.sigstore.bundle+json;version=0.2",
        "application/vnd.dev.sigstore.bundle+json;version=0.1",
    }
)


@dataclass(frozen=True, slots=True)
class KeylessResult:
    """What one keyless verification concluded: ``payload`` when ``ok``, else ``reason``.

    ``certificate`` is the signing certificate of a signature that verified:
    who signed (``signers.certificate_signer``). A message-signature bundle
    has no payload (it signs the bare digest) and an empty ``payload_type``.
    """

    ok: bool
    reason: str = ""
    payload: bytes = b""
    payload_type: str = ""
    certificate: x509.Certificate | None = field(default=None, compare=False)


#: What sigstore-python's verifier raises: its refusals, and a certificate it cannot read.
_REFUSED: tuple[type[Exception], ...] = (SigstoreError, *CERTIFICATE_ERRORS)
#: What assembling a bundle from cosign's annotations raises for hostile input.
_MALFORMED: tuple[type[Exception], ...] = (TypeError, binascii.Error, *_REFUSED)
#: What parsing a Sigstore bundle raises for hostile input.
_BUNDLE_ERRORS: tuple[type[Exception], ...] = (ValidationError, KeyError, TypeError, *_REFUSED)


def _failed(reason: str) -> KeylessResult:
    return KeylessResult(False, reason)


_NO_TIME = (
    "the bundle has neither a signed entry timestamp (Rekor v1) nor an RFC 3161 timestamp "
    "that a timestamp authority of the trusted root verifies (a Rekor v2 entry needs one)"
)
#: sigstore-python messages that say more with a word of explanation.
_EXPLAINED = (
    (
        "cert is not valid at validation time",
        "the signing certificate was not valid when the transparency log recorded the "
        "signature (signed after the certificate expired, or before it was issued)",
    ),
    (
        "failed to build timestamp certificate chain",
        "the certificate does not chain to a Fulcio CA of the trusted root",
    ),
    ("not enough sources of verified time", _NO_TIME),
    ("must contain an inclusion promise or signed timestamp", _NO_TIME),
    (
        "Integrated time only supported",
        "a Rekor v2 entry with a signed entry timestamp is not a form sigstore-python verifies",
    ),
    (
        "Unsupported DSSE log entry type",
        "sigstore-python does not verify this kind of log entry for a certificate-signed "
        "envelope (Rekor v2 dsse 0.0.2 entries are not supported; hashedrekord 0.0.2 are)",
    ),
)


def sigstore_reason(exc: BaseException) -> str:
    """sigstore-python's message, on one line and trimmed, explained where it is terse."""
    lines = str(exc).strip().splitlines()
    text = (" ".join(line.strip() for line in lines) or type(exc).__name__)[:400]
    for needle, explanation in _EXPLAINED:
        if needle in text:
            return f"{explanation}: {text}"
    return text


def verify_legacy(
    root: TrustRoot,
    keyless: Keyless,
    *,
    annotations: Mapping[str, Any],
    signature_b64: object,
    payload: bytes,
) -> KeylessResult:
    """Verify one cosign ``.sig`` layer signed with a Fulcio certificate.

    ``payload`` is the layer's simple signing payload; the caller checks what
    it says (digest, annotations) once this returns ``ok``.
    """
    parts = _legacy_parts(annotations, "signature")
    if isinstance(parts, str):
        return _failed(parts)
    cert, entry = parts
    try:
        signature = base64.b64decode(str(signature_b64), validate=True)
        bundle = _bundle(cert, entry, signature=signature)
    except _MALFORMED as exc:
        return _failed(f"malformed keyless signature: {sigstore_reason(exc)}")
    try:
        root.verifier.verify_artifact(payload, bundle, identity_policy(keyless))
    except _REFUSED as exc:
        return _failed(sigstore_reason(exc))
    if (retired := _retired(root, bundle)) is not None:
        return retired
    return KeylessResult(True, payload=payload, certificate=cert)


def _retired(root: TrustRoot, bundle: Bundle) -> KeylessResult | None:
    """A failure when the root did not trust the CA or a log key then (``cawindow``)."""
    problem = window_problem(root, bundle)
    if problem is None:
        return None
    return _failed(f"{problem}; sign the image again under the root's current CA and log keys")


def verify_legacy_attestation(
    root: TrustRoot,
    keyless: Keyless,
    *,
    annotations: Mapping[str, Any],
    envelope: bytes,
    image_digest: str,
    predicate_type: str,
) -> KeylessResult:
    """Verify one cosign ``.att`` layer (``cosign attest`` with a Fulcio certificate).

    ``envelope`` is the layer: DSSE envelope JSON whose Rekor entry (``intoto``
    0.0.2, or ``dsse`` 0.0.1) is in the layer's annotations. Certificate chain,
    SCT, identity, signed entry timestamp and DSSE signature are checked by
    sigstore-python, the entry body against this envelope, and the statement
    as for bundles (``predicate_type``, subject ``image_digest``).
    """
    parts = _legacy_parts(annotations, "attestation")
    if isinstance(parts, str):
        return _failed(parts)
    cert, entry = parts
    try:
        dsse_envelope = intoto_v1.Envelope.model_validate_json(envelope)
        bundle = _bundle(cert, entry, envelope=dsse_envelope)
    except _MALFORMED as exc:
        return _failed(f"malformed keyless attestation: {sigstore_reason(exc)}")
    policy = identity_policy(keyless)
    kind = (entry.kind_version.kind, entry.kind_version.version)
    try:
        if kind == ("intoto", "0.0.2"):
            payload_type, payload = _verify_intoto(root, bundle, policy)
            problem = intoto_body_problem(
                bytes(entry.canonicalized_body),
                envelope=envelope,
                payload=payload,
                signature=bytes(dsse_envelope.signatures[0].sig),
                cert=cert,
            )
            if problem is not None:
                return _failed(problem)
        else:
            payload_type, payload = root.verifier.verify_dsse(bundle, policy)
    except _REFUSED as exc:
        return _failed(sigstore_reason(exc))
    if (retired := _retired(root, bundle)) is not None:
        return retired
    return _statement(payload_type, payload, image_digest, predicate_type, cert)


def _verify_intoto(
    root: TrustRoot, bundle: Bundle, policy: VerificationPolicy
) -> tuple[str, bytes]:
    """sigstore-python's checks of a DSSE bundle whose log entry is cosign's ``intoto`` 0.0.2.

    sigstore-python takes the signing time from the log only for ``dsse`` and
    ``hashedrekord`` 0.0.1 entries, and matches only those bodies. The signing
    time of an intoto entry is bound by its signed entry timestamp just the
    same, and the label is covered by nothing the checks read, so the
    certificate, SCT, identity and SET checks run on the entry labelled
    ``dsse`` 0.0.1; the DSSE signature is checked with the certificate's key,
    and the intoto body by the caller (``tlog.intoto_body_problem``).
    """
    inner = bundle._inner
    material = inner.verification_material
    entry = material.tlog_entries[0]
    relabelled = entry.model_copy(
        update={"kind_version": rekor_v1.KindVersion(kind="dsse", version="0.0.1")}
    )
    timed = _LegacyBundle(
        inner.model_copy(
            update={
                "verification_material": material.model_copy(update={"tlog_entries": [relabelled]})
            }
        )
    )
    root.verifier._verify_common_signing_cert(timed, policy)
    envelope = timed._dsse_envelope
    if envelope is None:
        raise VerificationError("attestation has no DSSE envelope")
    key = timed.signing_certificate.public_key()
    if not isinstance(key, ec.EllipticCurvePublicKey):
        raise VerificationError("the signing certificate's key is not an ECDSA key")
    payload = dsse._verify(key, envelope)
    return envelope._inner.payload_type, payload


def _legacy_parts(
    annotations: Mapping[str, Any], what: str
) -> tuple[x509.Certificate, rekor_v1.TransparencyLogEntry] | str:
    """The certificate and log entry of a legacy keyless layer, or why it has none."""
    pem = annotations.get(CERTIFICATE_ANNOTATION)
    if not isinstance(pem, str):
        return f"{what} has no certificate ({CERTIFICATE_ANNOTATION})"
    entry_text = annotations.get(BUNDLE_ANNOTATION)
    if not isinstance(entry_text, str):
        return f"{what} has no transparency log entry ({BUNDLE_ANNOTATION})"
    try:
        cert = load_pem(pem.encode())
    except CERTIFICATE_ERRORS as exc:
        reason = sigstore_reason(exc)
        return f"the signing certificate of the keyless {what} cannot be read: {reason}"
    try:
        return cert, parse_cosign_entry(entry_text)
    except (ValueError, TypeError, binascii.Error, SigstoreError) as exc:
        return f"malformed keyless {what}: {sigstore_reason(exc)}"


class _LegacyBundle(Bundle):
    """A bundle assembled from cosign annotations, its log entry a PromiseEntry."""

    def _verify(self) -> None:
        material = self._inner.verification_material
        if material.certificate is None or len(material.tlog_entries) != 1:
            raise InvalidBundle("expected one certificate and one log entry")
        try:
            self._signing_certificate = load_der(material.certificate.raw_bytes)
        except CERTIFICATE_ERRORS as exc:
            raise InvalidBundle(f"the signing certificate cannot be read: {exc}") from exc
        self._log_entry = PromiseEntry(material.tlog_entries[0])


def _bundle(
    cert: x509.Certificate,
    entry: rekor_v1.TransparencyLogEntry,
    *,
    signature: bytes | None = None,
    envelope: intoto_v1.Envelope | None = None,
) -> Bundle:
    """A bundle of ``cert``, ``entry`` and a message ``signature`` or a DSSE ``envelope``."""
    inner = bundle_v1.Bundle(
        media_type=Bundle.BundleType.BUNDLE_0_3.value,
        verification_material=bundle_v1.VerificationMaterial(
            certificate=common_v1.X509Certificate(
                raw_bytes=base64.b64encode(cert.public_bytes(Encoding.DER))
            ),
            tlog_entries=[entry],
        ),
        message_signature=None
        if signature is None
        else common_v1.MessageSignature(signature=base64.b64encode(signature)),
        dsse_envelope=envelope,
    )
    return _LegacyBundle(inner)


def parse_bundle(raw: bytes) -> Bundle | str:
    """A Sigstore bundle, or why ``raw`` is not one."""
    try:
        bundle = Bundle.from_json(raw)
        # Read now, so that a hostile certificate is refused here rather than
        # raised from whatever reads its extensions next (the verifier, cawindow).
        readable(bundle.signing_certificate)
    except _BUNDLE_ERRORS as exc:
        return f"malformed Sigstore bundle: {sigstore_reason(exc)}"
    return bundle


def verify_bundle(
    root: TrustRoot,
    keyless: Keyless,
    bundle: Bundle,
    *,
    image_digest: str,
    predicate_type: str = COSIGN_SIGN_PREDICATE,
) -> KeylessResult:
    """Verify a Sigstore bundle about ``image_digest`` (``sha256:<hex>``).

    A message-signature bundle must sign the manifest digest itself. A DSSE
    bundle must hold an in-toto statement of ``predicate_type`` naming the
    digest as a subject; its payload is returned for the caller, who applies
    the policy's other rules to what was signed (``rules.py``).
    """
    policy = identity_policy(keyless)
    algorithm, _, hex_digest = image_digest.partition(":")
    try:
        if bundle._inner.dsse_envelope is None:
            if predicate_type != COSIGN_SIGN_PREDICATE:
                return _failed(
                    "a message-signature bundle signs the bare digest; it is no attestation "
                    f"of predicate type {predicate_type}"
                )
            if algorithm != "sha256":
                return _failed(f"message-signature bundles sign sha256 digests, not {algorithm}")
            hashed = Hashed(
                algorithm=common_v1.HashAlgorithm.SHA2_256, digest=bytes.fromhex(hex_digest)
            )
            root.verifier.verify_artifact(hashed, bundle, policy)
            payload_type, payload = "", b""
        else:
            payload_type, payload = root.verifier.verify_dsse(bundle, policy)
    except _REFUSED as exc:
        reason = sigstore_reason(exc)
        if "message digest mismatch" in reason or "Signature is invalid for input" in reason:
            reason = f"the bundle signs another artifact, not {image_digest} ({reason})"
        return _failed(reason)
    if (retired := _retired(root, bundle)) is not None:
        return retired
    if bundle._inner.dsse_envelope is None:
        return KeylessResult(True, certificate=bundle.signing_certificate)
    return _statement(
        payload_type, payload, image_digest, predicate_type, bundle.signing_certificate
    )


def _statement(
    payload_type: str,
    payload: bytes,
    image_digest: str,
    predicate_type: str,
    certificate: x509.Certificate,
) -> KeylessResult:
    """Accept a verified DSSE payload: an in-toto statement of ``predicate_type`` on the image."""
    problem = statement_payload_problem(payload_type, payload, image_digest, predicate_type)
    if problem is not None:
        return _failed(problem)
    return KeylessResult(True, payload=payload, payload_type=payload_type, certificate=certificate)


def statement_payload_problem(
    payload_type: str, payload: bytes, image_digest: str, predicate_type: str
) -> str | None:
    """Why a verified DSSE payload is not an in-toto statement of ``predicate_type`` on the
    image ``image_digest``, or None."""
    if payload_type != IN_TOTO_PAYLOAD_TYPE:
        return f"signed payload type {literal(payload_type)} is not {IN_TOTO_PAYLOAD_TYPE}"
    try:
        statement = json_value(payload)
    except NestedTooDeep:
        return "signed payload is nested too deeply to read"
    except ValueError:  # not UTF-8, not JSON, or a number of more than 4,300 digits
        return "signed payload is not JSON"
    if not isinstance(statement, dict) or statement.get("_type") not in STATEMENT_TYPES:
        return "signed payload is not an in-toto statement"
    found = statement.get("predicateType")
    if found != predicate_type:
        shown = literal(found) if isinstance(found, str) else "none"
        return f"signed statement has predicate type {shown}, not {predicate_type}"
    if not statement_subject_matches(statement, image_digest):
        return f"signed statement is about another subject, not {image_digest}"
    return None
