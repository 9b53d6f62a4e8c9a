"""gitsign-shaped commit signatures made in Python, with the test Sigstore instance.

What gitsign writes in offline Rekor mode: a detached CMS SignedData (PEM
``SIGNED MESSAGE``) over the commit, signed with a Fulcio certificate, whose
signer carries the Rekor log entry of that signature (protobuf
``TransparencyLogEntry`` without its body) as unsigned attribute
1.3.6.1.4.1.57264.3.1. cryptography's ``PKCS7SignatureBuilder`` makes the CMS;
pyasn1 adds the attribute; ``SigstoreInstance`` issues and logs.
"""

from __future__ import annotations

import base64
import hashlib

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import pkcs7
from pyasn1.codec.der import decoder, encoder
from pyasn1.type import univ
from pyasn1_modules import rfc5652

from tests.support.sigstore_instance import (
    Identity,
    LogEntry,
    SigstoreInstance,
    hashedrekord_body,
)

TLOG_ENTRY = univ.ObjectIdentifier("1.3.6.1.4.1.57264.3.1")


def _varint(value: int) -> bytes:
    out = bytearray()
    while True:
        byte, value = value & 0x7F, value >> 7
        out.append(byte | (0x80 if value else 0))
        if not value:
            return bytes(out)


def _field(number: int, value: int | bytes) -> bytes:
    if isinstance(value, int):
        return _varint(number << 3) + _varint(value)
    return _varint(number << 3 | 2) + _varint(len(value)) + value


def entry_proto(entry: LogEntry) -> bytes:
    """``entry`` as gitsign stores it: a serialized ``TransparencyLogEntry``, body left out."""
    proof = (
        _field(1, entry.index)
        + _field(2, entry.root_hash)
        + _field(3, entry.tree_size)
        + b"".join(_field(4, h) for h in entry.hashes)
        + _field(5, _field(1, entry.checkpoint.encode()))
    )
    return (
        _field(1, entry.index)
        + _field(2, _field(1, entry.log_id))
        + _field(3, _field(1, b"hashedrekord") + _field(2, b"0.0.1"))
        + _field(4, entry.integrated_time)
        + _field(5, _field(1, entry.set_signature))
        + _field(6, proof)
    )


def _signed_attributes(signer: rfc5652.SignerInfo) -> bytes:
    """What the CMS signature (and the log entry) covers: the signed attributes as a DER SET."""
    return b"\x31" + encoder.encode(signer["signedAttrs"])[1:]


def gitsign_signature(
    instance: SigstoreInstance,
    identity: Identity,
    payload: bytes,
    *,
    logged: bool = True,
    cert: tuple[x509.Certificate, ec.EllipticCurvePrivateKey] | None = None,
) -> bytes:
    """The PEM gitsign writes into ``gpgsig`` for commit ``payload``; ``logged``: with its entry."""
    certificate, key = cert or instance.ca.issue(identity)
    der = (
        pkcs7.PKCS7SignatureBuilder()
        .set_data(payload)
        .add_signer(certificate, key, hashes.SHA256())
        .sign(
            serialization.Encoding.DER,
            [
                pkcs7.PKCS7Options.DetachedSignature,
                pkcs7.PKCS7Options.NoCapabilities,
                pkcs7.PKCS7Options.Binary,  # as gitsign: the bytes, no CRLF conversion
            ],
        )
    )
    info, _ = decoder.decode(der, asn1Spec=rfc5652.ContentInfo())
    data, _ = decoder.decode(info["content"], asn1Spec=rfc5652.SignedData())
    signer = data["signerInfos"][0]
    if logged:
        artifact = _signed_attributes(signer)
        signature = bytes(signer["signature"])
        digest = hashlib.sha256(artifact).hexdigest()
        entry = instance.tlog.append(hashedrekord_body(certificate, signature, digest))
        attribute = rfc5652.Attribute()
        attribute["attrType"] = TLOG_ENTRY
        attribute["attrValues"].append(univ.OctetString(entry_proto(entry)))
        unsigned = signer["unsignedAttrs"].clone()
        unsigned.append(attribute)
        signer["unsignedAttrs"] = unsigned
    info["content"] = encoder.encode(data)
    body = base64.encodebytes(encoder.encode(info)).decode().replace("\n", "\n")
    return f"-----BEGIN SIGNED MESSAGE-----\n{body}-----END SIGNED MESSAGE-----".encode()


def with_signature(raw_commit: bytes, armored: bytes) -> bytes:
    """``raw_commit`` with a ``gpgsig`` header holding ``armored``, where git puts it."""
    header, message = raw_commit.split(b"\n\n", 1)
    folded = armored.strip().replace(b"\n", b"\n ")
    return header + b"\ngpgsig " + folded + b"\n\n" + message
