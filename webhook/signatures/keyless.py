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
  sigstore-python's ``Verifier.verify_artifact``.
- Sigstore bundles (v0.1 to v0.3) attached as OCI referrers. A message
  signature must be over the image manifest digest; a DSSE envelope must hold
  an in-toto statement whose subject is the image (predicate type
  ``https://sigstore.dev/cosign/sign/v1`` for signatures, the policy's for
  attestations).

The certificate identity is checked by sigstore-python policy objects
(``AllOf`` of issuer, subject and extension policies). Issuer and subject
regexes match the whole value (``re.fullmatch``), never a part of it.

Sans-I/O: callers hand over bytes they fetched; nothing here opens a socket.
Every failure is returned as a reason, never raised.
"""

from __future__ import annotations

import base64
import binascii
import functools
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from cryptography import x509
from cryptography.hazmat import asn1
from cryptography.x509.oid import ObjectIdentifier
from pydantic import ValidationError
from sigstore.errors import Error as SigstoreError
from sigstore.errors import VerificationError
from sigstore.hashes import Hashed
from sigstore.models import Bundle, InvalidBundle
from sigstore.verify import policy as sigstore_policy
from sigstore.verify.policy import VerificationPolicy
from sigstore_models.bundle import v1 as bundle_v1
from sigstore_models.common import v1 as common_v1
from sigstore_models.rekor import v1 as rekor_v1

from webhook.policy.model import Keyless
from webhook.signatures.tlog import BUNDLE_ANNOTATION, PromiseEntry, parse_cosign_entry
from webhook.signatures.trustroot import TrustRoot

CERTIFICATE_ANNOTATION = "dev.sigstore.cosign/certificate"
CHAIN_ANNOTATION = "dev.sigstore.cosign/chain"
#: The predicate type cosign gives the in-toto statement of a DSSE image signature.
COSIGN_SIGN_PREDICATE = "https://sigstore.dev/cosign/sign/v1"
IN_TOTO_PAYLOAD_TYPE = "application/vnd.in-toto+json"
#: Media types (and referrer artifact types) of Sigstore bundles.
BUNDLE_MEDIA_TYPES = frozenset(
    {
        "application/vnd.dev.sigstore.bundle.v0.3+json",
        "application/vnd.dev.sigstore.bundle+json;version=0.3",
        "application/vnd.dev.sigstore.bundle+json;version=0.2",
        "application/vnd.dev.sigstore.bundle+json;version=0.1",
    }
)

_ISSUER_V1 = ObjectIdentifier("1.3.6.1.4.1.57264.1.1")
_ISSUER_V2 = ObjectIdentifier("1.3.6.1.4.1.57264.1.8")
_OTHERNAME = ObjectIdentifier("1.3.6.1.4.1.57264.1.7")
_SHOWN_MAX = 160

#: Policy spelling of each extension -> the sigstore-python policy that checks it.
EXTENSION_POLICIES: Mapping[str, type[Any]] = {
    "githubWorkflowTrigger": sigstore_policy.GitHubWorkflowTrigger,
    "githubWorkflowSha": sigstore_policy.GitHubWorkflowSHA,
    "githubWorkflowName": sigstore_policy.GitHubWorkflowName,
    "githubWorkflowRepository": sigstore_policy.GitHubWorkflowRepository,
    "githubWorkflowRef": sigstore_policy.GitHubWorkflowRef,
    "buildSignerURI": sigstore_policy.OIDCBuildSignerURI,
    "runnerEnvironment": sigstore_policy.OIDCRunnerEnvironment,
    "sourceRepositoryURI": sigstore_policy.OIDCSourceRepositoryURI,
    "sourceRepositoryDigest": sigstore_policy.OIDCSourceRepositoryDigest,
    "sourceRepositoryRef": sigstore_policy.OIDCSourceRepositoryRef,
}


def _shown(text: str) -> str:
    if text.isascii() and text.isprintable() and len(text) <= _SHOWN_MAX:
        return repr(text)
    return json.dumps(text[:_SHOWN_MAX])


class IssuerPolicy:
    """The certificate's OIDC issuer equals ``exact`` or fully matches ``pattern``.

    Fulcio writes the issuer twice: as a DER UTF8String (OID ...57264.1.8) and,
    for older clients, as raw bytes (...57264.1.1). The DER one is read when
    present, as cosign does; otherwise the legacy one.
    """

    def __init__(self, *, exact: str | None = None, pattern: str | None = None) -> None:
        self._exact = exact
        self._pattern = None if pattern is None else re.compile(pattern)

    def verify(self, cert: x509.Certificate) -> None:
        """Raise VerificationError unless the issuer matches."""
        issuer = certificate_issuer(cert)
        if issuer is None:
            raise VerificationError("certificate names no OIDC issuer")
        if self._pattern is not None:
            if self._pattern.fullmatch(issuer) is None:
                expected = f"the whole of /{self._pattern.pattern}/"
                raise VerificationError(f"issuer {_shown(issuer)} does not match {expected}")
        elif issuer != self._exact:
            raise VerificationError(f"issuer {_shown(issuer)} is not {self._exact!r}")


class SubjectPolicy:
    """One subject alternative name equals ``exact`` or fully matches ``pattern``."""

    def __init__(self, *, exact: str | None = None, pattern: str | None = None) -> None:
        self._exact = exact
        self._pattern = None if pattern is None else re.compile(pattern)

    def verify(self, cert: x509.Certificate) -> None:
        """Raise VerificationError unless a SAN (e-mail, URI, Sigstore other name) matches."""
        names = certificate_identities(cert)
        if self._pattern is not None:
            if any(self._pattern.fullmatch(name) for name in names):
                return
            expected = f"the whole of /{self._pattern.pattern}/"
        elif self._exact in names:
            return
        else:
            expected = repr(self._exact)
        got = ", ".join(_shown(name) for name in names[:4]) or "no identity"
        raise VerificationError(f"subject {got} does not match {expected}")


def certificate_issuer(cert: x509.Certificate) -> str | None:
    """The OIDC issuer Fulcio recorded in ``cert``, or None."""
    extensions = cert.extensions
    try:
        value = extensions.get_extension_for_oid(_ISSUER_V2).value
        return str(asn1.decode_der(str, value.value))  # type: ignore[attr-defined]
    except x509.ExtensionNotFound:
        pass
    except ValueError:
        return None
    try:
        raw = extensions.get_extension_for_oid(_ISSUER_V1).value
        return bytes(raw.value).decode("utf-8")  # type: ignore[attr-defined]
    except (x509.ExtensionNotFound, UnicodeDecodeError):
        return None


def certificate_identities(cert: x509.Certificate) -> list[str]:
    """The identities of ``cert``'s SAN: e-mail addresses, URIs and Sigstore other names."""
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return []
    names: list[str] = list(san.get_values_for_type(x509.RFC822Name))
    names += san.get_values_for_type(x509.UniformResourceIdentifier)
    for other in san.get_values_for_type(x509.OtherName):
        if other.type_id == _OTHERNAME:
            try:
                names.append(str(asn1.decode_der(str, other.value)))
            except ValueError:
                continue
    return names


@functools.lru_cache(maxsize=256)
def identity_policy(keyless: Keyless) -> VerificationPolicy:
    """The sigstore-python policy for ``keyless``: issuer, subject and each extension (AllOf)."""
    children: list[VerificationPolicy] = [
        IssuerPolicy(exact=keyless.issuer, pattern=keyless.issuer_regexp),
        SubjectPolicy(exact=keyless.subject, pattern=keyless.subject_regexp),
    ]
    for name, value in keyless.extensions:
        children.append(EXTENSION_POLICIES[name](value))
    return sigstore_policy.AllOf(children)


@dataclass(frozen=True, slots=True)
class KeylessResult:
    """What one keyless verification concluded: ``payload`` when ``ok``, else ``reason``."""

    ok: bool
    reason: str = ""
    payload: bytes = b""
    payload_type: str = ""


def _failed(reason: str) -> KeylessResult:
    return KeylessResult(False, reason)


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
)


def _reason(exc: BaseException) -> str:
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
    pem = annotations.get(CERTIFICATE_ANNOTATION)
    if not isinstance(pem, str):
        return _failed(f"signature has no certificate ({CERTIFICATE_ANNOTATION})")
    entry_text = annotations.get(BUNDLE_ANNOTATION)
    if not isinstance(entry_text, str):
        return _failed(f"signature has no transparency log entry ({BUNDLE_ANNOTATION})")
    try:
        cert = x509.load_pem_x509_certificate(pem.encode())
        signature = base64.b64decode(str(signature_b64), validate=True)
        entry = parse_cosign_entry(entry_text)
        bundle = _bundle(cert, signature, entry)
    except (ValueError, TypeError, binascii.Error, SigstoreError) as exc:
        return _failed(f"malformed keyless signature: {_reason(exc)}")
    try:
        root.verifier.verify_artifact(payload, bundle, identity_policy(keyless))
    except (SigstoreError, ValueError) as exc:
        return _failed(_reason(exc))
    return KeylessResult(True, payload=payload)


class _LegacyBundle(Bundle):
    """A bundle assembled from cosign annotations, its log entry a PromiseEntry."""

    def _verify(self) -> None:
        material = self._inner.verification_material
        if material.certificate is None or len(material.tlog_entries) != 1:
            raise InvalidBundle("expected one certificate and one log entry")
        self._signing_certificate = x509.load_der_x509_certificate(material.certificate.raw_bytes)
        self._log_entry = PromiseEntry(material.tlog_entries[0])


def _bundle(
    cert: x509.Certificate, signature: bytes, entry: rekor_v1.TransparencyLogEntry
) -> Bundle:
    from cryptography.hazmat.primitives.serialization import Encoding

    inner = bundle_v1.Bundle(
        media_type=Bundle.BundleType.BUNDLE_0_3.value,
        verification_material=bundle_v1.VerificationMaterial(
            certificate=common_v1.X509Certificate(
                raw_bytes=base64.b64encode(cert.public_bytes(Encoding.DER))
            ),
            tlog_entries=[entry],
        ),
        message_signature=common_v1.MessageSignature(signature=base64.b64encode(signature)),
    )
    return _LegacyBundle(inner)


def parse_bundle(raw: bytes) -> Bundle | str:
    """A Sigstore bundle, or why ``raw`` is not one."""
    try:
        return Bundle.from_json(raw)
    except (SigstoreError, ValueError, ValidationError, KeyError, TypeError) as exc:
        return f"malformed Sigstore bundle: {_reason(exc)}"


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
    digest as a subject; its payload is returned for the caller.
    """
    policy = identity_policy(keyless)
    algorithm, _, hex_digest = image_digest.partition(":")
    try:
        if bundle._inner.dsse_envelope is None:
            if algorithm != "sha256":
                return _failed(f"message-signature bundles sign sha256 digests, not {algorithm}")
            hashed = Hashed(
                algorithm=common_v1.HashAlgorithm.SHA2_256, digest=bytes.fromhex(hex_digest)
            )
            root.verifier.verify_artifact(hashed, bundle, policy)
            return KeylessResult(True)
        payload_type, payload = root.verifier.verify_dsse(bundle, policy)
    except (SigstoreError, ValueError) as exc:
        reason = _reason(exc)
        if "message digest mismatch" in reason or "Signature is invalid for input" in reason:
            reason = f"the bundle signs another artifact, not {image_digest} ({reason})"
        return _failed(reason)
    if payload_type != IN_TOTO_PAYLOAD_TYPE:
        return _failed(f"signed payload type {_shown(payload_type)} is not {IN_TOTO_PAYLOAD_TYPE}")
    try:
        statement = json.loads(payload)
    except (UnicodeDecodeError, json.JSONDecodeError):
        return _failed("signed payload is not JSON")
    if not isinstance(statement, dict):
        return _failed("signed payload is not an in-toto statement")
    found = statement.get("predicateType")
    if found != predicate_type:
        shown = _shown(found) if isinstance(found, str) else "none"
        return _failed(f"signed statement has predicate type {shown}, not {predicate_type}")
    if not _names_subject(statement, algorithm, hex_digest):
        return _failed(f"signed statement is about another subject, not {image_digest}")
    return KeylessResult(True, payload=payload, payload_type=payload_type)


def _names_subject(statement: Mapping[str, Any], algorithm: str, hex_digest: str) -> bool:
    subjects = statement.get("subject")
    if not isinstance(subjects, list):
        return False
    for subject in subjects:
        digests = subject.get("digest") if isinstance(subject, dict) else None
        if isinstance(digests, dict) and digests.get(algorithm) == hex_digest:
            return True
    return False
