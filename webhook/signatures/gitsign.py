"""gitsign (Sigstore keyless) commit signatures, verified offline as keyless images are.

gitsign signs a commit with a short-lived Fulcio certificate and writes a
detached CMS SignedData (PEM ``SIGNED MESSAGE``) into the ``gpgsig`` header:
signed attributes (content type, signing time, and the SHA-256 of the commit
without that header), an ECDSA signature over them, the certificate, and in
gitsign's offline Rekor mode (``gitsign.rekorMode offline``) the log entry of
that signature with its inclusion proof, as an unsigned attribute.

The log entry is a hashedrekord over the DER signed attributes, so the CMS
signer is a Sigstore message signature with that DER as its artifact. It is
turned into a Sigstore bundle (as gitsign's own ``compat.SignerInfoToBundle``
does, the entry's body rebuilt from the signature and certificate) and
sigstore-python's ``Verifier.verify_artifact`` checks everything an image's
keyless signature must pass: chain to a Fulcio CA of the authority's trusted
root at the log's time, embedded SCT, the identity (``identity.py``), the
inclusion proof and signed checkpoint, and the signature; ``cawindow.py`` adds
that the CA was still trusted by the root at the log's time. Both run in
``policyset.KeylessAuthority.admit``, the check a signature file's bundle
passes too, so the two keyless forms cannot drift apart.

A commit signed in gitsign's online mode carries no log proof: its entry
could only be searched for in Rekor at each reload. Image keyless signatures
require an offline proof, so these commits are refused with what to change.
"""

from __future__ import annotations

import base64
import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import rfc8785
from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding
from pyasn1.codec.der import decoder as der_decoder
from pyasn1.codec.der import encoder as der_encoder
from pyasn1.error import PyAsn1Error
from pyasn1.type import univ
from pyasn1_modules import rfc5652
from sigstore.errors import Error as SigstoreError
from sigstore.hashes import Hashed
from sigstore.models import Bundle
from sigstore_models.common import v1 as common_v1

from webhook.core.x509read import CERTIFICATE_ERRORS, readable
from webhook.policy.signing.allowedsigners import AllowedSigners
from webhook.policy.signing.envelope import SetAuthority, TrustedKey, Vouch
from webhook.policy.signing.gate import PolicySignatureError, SetVerifier, Verified
from webhook.policy.signing.gitcheckout import Checkout
from webhook.policy.signing.gitverify import verify_checkout
from webhook.signatures.keyless import sigstore_reason as _reason
from webhook.signatures.policyset import KeylessAuthority
from webhook.signatures.tlogproto import entry_json

__all__ = ["GitAuthorities", "GitsignAuthority", "git_verifier", "verify_gitsign"]

PEM_BEGIN = b"-----BEGIN SIGNED MESSAGE-----"
PEM_END = b"-----END SIGNED MESSAGE-----"
#: What reading a hostile CMS signature may raise.
_UNREADABLE: tuple[type[Exception], ...] = (PyAsn1Error, KeyError, IndexError, *CERTIFICATE_ERRORS)
#: Largest gitsign signature read: a certificate and a log proof are about 3 KiB.
MAX_SIGNATURE_BYTES = 64 * 1024
_TLOG_ENTRY = univ.ObjectIdentifier("1.3.6.1.4.1.57264.3.1")
_MESSAGE_DIGEST = univ.ObjectIdentifier("1.2.840.113549.1.9.4")
_CONTENT_TYPE = univ.ObjectIdentifier("1.2.840.113549.1.9.3")
_SHA256 = univ.ObjectIdentifier("2.16.840.1.101.3.4.2.1")
_BUNDLE_V03 = "application/vnd.dev.sigstore.bundle.v0.3+json"


#: A keyless authority of ``policies.signature``, checking gitsign commits as signature files.
GitsignAuthority = KeylessAuthority


@dataclass(frozen=True, slots=True)
class _Signer:
    """The one signer of a gitsign signature: what was signed, with what, and its log entry."""

    artifact: bytes  # the DER signed attributes: what the signature and the log entry cover
    signature: bytes
    certificate: x509.Certificate
    entry: dict[str, Any] | None


def _fail(commit: str, message: str, reason: str = "invalid") -> PolicySignatureError:
    return PolicySignatureError(f"commit {commit}: {message}", reason=reason)


def verify_gitsign(checkout: Checkout, authorities: Sequence[GitsignAuthority]) -> str:
    """The name of the keyless authority whose identity signed ``checkout``'s commit.

    Raises:
        PolicySignatureError: the signature cannot be read or does not sign
            this commit (``invalid``, ``altered``), carries no log proof or
            matches no authority (``untrusted``).
    """
    commit = checkout.commit
    if not authorities:
        raise _fail(
            commit,
            "signed with gitsign (Sigstore keyless), but policies.signature lists no keyless "
            "authority",
            "untrusted",
        )
    signer = _signer(commit, checkout.signature or b"", checkout.payload)
    if signer.entry is None:
        raise _fail(
            commit,
            "the gitsign signature carries no transparency-log proof (gitsign's online Rekor "
            "mode); trustgate verifies offline and requires the proof, as for keyless image "
            "signatures: sign with git config gitsign.rekorMode offline",
            "untrusted",
        )
    bundle = _bundle(commit, signer)
    hashed = Hashed(
        algorithm=common_v1.HashAlgorithm.SHA2_256,
        digest=hashlib.sha256(signer.artifact).digest(),
    )
    reasons = []
    for authority in authorities:
        if authority.keyless.root is None:
            reasons.append(f"{authority.name}: no trusted root loaded")
            continue
        answer = authority.admit(hashed, bundle, what="the commit")
        if isinstance(answer, Vouch):
            return authority.name
        reasons.append(f"{authority.name}: {answer.message}")
    raise _fail(
        commit,
        "no keyless authority admits the gitsign signature: " + "; ".join(reasons),
        "untrusted",
    )


def _signer(commit: str, armored: bytes, payload: bytes) -> _Signer:
    """The single signer of the CMS signature ``armored``, checked to sign ``payload``."""
    try:
        if len(armored) > MAX_SIGNATURE_BYTES:
            raise ValueError(f"larger than {MAX_SIGNATURE_BYTES} bytes")
        text = armored.strip()
        if not (text.startswith(PEM_BEGIN) and text.endswith(PEM_END)):
            raise ValueError("not a PEM SIGNED MESSAGE")
        der = base64.b64decode(
            b"".join(text[len(PEM_BEGIN) : -len(PEM_END)].split()), validate=True
        )
        info, rest = der_decoder.decode(der, asn1Spec=rfc5652.ContentInfo())
        if rest or info["contentType"] != rfc5652.id_signedData:
            raise ValueError("not a CMS SignedData")
        data, rest = der_decoder.decode(info["content"], asn1Spec=rfc5652.SignedData())
        if rest or len(data["signerInfos"]) != 1:
            raise ValueError("not one signer")
        if data["encapContentInfo"]["eContent"].isValue:
            raise ValueError("the signature is not detached")
        signer = data["signerInfos"][0]
        if signer["digestAlgorithm"]["algorithm"] != _SHA256:
            raise ValueError("the digest algorithm is not SHA-256")
        attributes = _attributes(signer["signedAttrs"])
        artifact = b"\x31" + der_encoder.encode(signer["signedAttrs"])[1:]  # [0] IMPLICIT -> SET
        certificate = _certificate(data, signer)
        entry = _entry(signer)
    except _UNREADABLE as exc:
        raise _fail(commit, f"the gitsign signature cannot be read ({exc})") from None
    if attributes.get(_CONTENT_TYPE) != der_encoder.encode(rfc5652.id_data):
        raise _fail(commit, "the gitsign signature does not sign data content")
    expected = der_encoder.encode(univ.OctetString(hashlib.sha256(payload).digest()))
    if attributes.get(_MESSAGE_DIGEST) != expected:
        raise _fail(
            commit,
            "the gitsign signature signs other content: the commit was changed after signing, "
            "or the signature was copied from another commit",
            "altered",
        )
    return _Signer(artifact, bytes(signer["signature"]), certificate, entry)


def _attributes(signed: Any) -> dict[univ.ObjectIdentifier, bytes]:
    """Each signed attribute's single value, DER; an attribute given twice is refused."""
    found: dict[univ.ObjectIdentifier, bytes] = {}
    for attribute in signed:
        kind = attribute["attrType"]
        if kind in found or len(attribute["attrValues"]) != 1:
            raise ValueError("a signed attribute is repeated or has several values")
        found[kind] = der_encoder.encode(attribute["attrValues"][0])
    if _MESSAGE_DIGEST not in found:
        raise ValueError("no message digest among the signed attributes")
    return found


def _certificate(data: Any, signer: Any) -> x509.Certificate:
    """The certificate the signer names (issuer and serial number) among those carried."""
    sid = signer["sid"]["issuerAndSerialNumber"]
    issuer, serial = der_encoder.encode(sid["issuer"]), int(sid["serialNumber"])
    for choice in data["certificates"]:
        certificate = x509.load_der_x509_certificate(der_encoder.encode(choice["certificate"]))
        if certificate.serial_number == serial and certificate.issuer.public_bytes() == issuer:
            return readable(certificate)  # parsed here, where a malformed one is caught
    raise ValueError("the signing certificate is not in the signature")


def _entry(signer: Any) -> dict[str, Any] | None:
    """The log entry of the unsigned attributes (its body still to rebuild), or None."""
    unsigned = signer["unsignedAttrs"]
    entries = [a for a in unsigned if a["attrType"] == _TLOG_ENTRY] if unsigned.isValue else []
    if not entries:
        return None
    if len(entries) != 1 or len(entries[0]["attrValues"]) != 1:
        raise ValueError("several transparency-log entries")
    value, rest = der_decoder.decode(entries[0]["attrValues"][0], asn1Spec=univ.OctetString())
    if rest:
        raise ValueError("trailing bytes after the log entry")
    return entry_json(bytes(value))


def _bundle(commit: str, signer: _Signer) -> Bundle:
    """The Sigstore bundle of ``signer``, its log entry's body rebuilt as Rekor stored it."""
    pem = signer.certificate.public_bytes(Encoding.PEM)
    body = rfc8785.dumps(
        {
            "apiVersion": "0.0.1",
            "kind": "hashedrekord",
            "spec": {
                "data": {
                    "hash": {
                        "algorithm": "sha256",
                        "value": hashlib.sha256(signer.artifact).hexdigest(),
                    }
                },
                "signature": {
                    "content": base64.b64encode(signer.signature).decode(),
                    "publicKey": {"content": base64.b64encode(pem).decode()},
                },
            },
        }
    )
    entry = {**(signer.entry or {}), "canonicalizedBody": base64.b64encode(body).decode()}
    document = {
        "mediaType": _BUNDLE_V03,
        "verificationMaterial": {
            "certificate": {
                "rawBytes": base64.b64encode(signer.certificate.public_bytes(Encoding.DER)).decode()
            },
            "tlogEntries": [entry],
        },
        "messageSignature": {
            "messageDigest": {
                "algorithm": "SHA2_256",
                "digest": base64.b64encode(hashlib.sha256(signer.artifact).digest()).decode(),
            },
            "signature": base64.b64encode(signer.signature).decode(),
        },
    }
    try:
        return Bundle.from_json(json.dumps(document))
    except (SigstoreError, ValueError) as exc:
        raise _fail(commit, f"the gitsign log entry is not usable: {_reason(exc)}") from None


class GitAuthorities(Protocol):
    """What ``git_verifier`` reads of ``policies.signature`` (a ``PolicySignatureConfig``)."""

    @property
    def authorities(self) -> Sequence[SetAuthority]: ...

    @property
    def allowed_signers(self) -> Sequence[AllowedSigners]: ...


def git_verifier(
    signature_config: GitAuthorities, keyless: Sequence[GitsignAuthority] = ()
) -> SetVerifier:
    """The ``SetVerifier`` of ``source: git``: SSH-signed commits, gitsign ones for ``keyless``.

    The configuration's key authorities check SSH signatures; its keyless ones
    (``policyset.KeylessAuthority``) join ``keyless`` for gitsign signatures.
    """
    keys = tuple(a for a in signature_config.authorities if isinstance(a, TrustedKey))
    signers = tuple(signature_config.allowed_signers)
    configured = (a for a in signature_config.authorities if isinstance(a, KeylessAuthority))
    gitsign = (*keyless, *configured)

    def verifier(directory: Path) -> Verified:
        return verify_checkout(
            directory, keys, signers, gitsign=lambda checkout: verify_gitsign(checkout, gitsign)
        )

    return verifier
