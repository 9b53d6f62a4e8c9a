"""What a Notation signature envelope says, once parsed: the shared model.

Separate from the parsers (JWS, COSE) and from trust and revocation so that
each of them, written and tested apart, agrees on one shape. Pure data.
Field names follow the Notary Project signature specification
(specs/signature-specification.md, "Signature Envelope" and "Signed
Attributes").
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Final

from cryptography import x509

from webhook.core.errors import CheckFailed
from webhook.trust.notation.truststore import SIGNING_AUTHORITY as SIGNING_AUTHORITY
from webhook.trust.notation.truststore import X509 as X509

#: The artifact type of a Notation signature among an image's referrers.
ARTIFACT_TYPE: Final = "application/vnd.cncf.notary.signature"
#: The media types of the two envelopes (the signature manifest's layer).
JWS: Final = "application/jose+json"
COSE: Final = "application/cose"
#: How messages name each envelope format.
FORMAT_NAMES: Final = {JWS: "JWS", COSE: "COSE"}
#: The media type of the signed payload.
PAYLOAD_TYPE: Final = "application/vnd.cncf.notary.payload.v1+json"
#: An envelope larger than this is neither fetched (discovery, by its declared size)
#: nor parsed (envelope); real ones, a chain of three certificates and a timestamp
#: token, are 5 to 15 kB.
MAX_ENVELOPE_BYTES: Final = 256 * 1024


class NotationError(CheckFailed):
    """A Notation signature does not verify: the message says which step failed and why.

    It never holds key material; certificates are named by their subject.
    """


@dataclass(frozen=True, slots=True)
class TargetDescriptor:
    """The OCI descriptor the payload signs: it must match the image admitted."""

    media_type: str
    digest: str
    size: int
    annotations: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True, slots=True)
class Envelope:
    """One parsed envelope whose integrity was checked.

    ``signature`` is the signature value: what a timestamp countersignature
    covers. ``chain`` is the certificate chain as the envelope carries it,
    signing certificate first. ``signing_time`` is
    ``io.cncf.notary.signingTime`` (``notary.x509``) and
    ``authentic_signing_time`` ``io.cncf.notary.authenticSigningTime``
    (``notary.x509.signingAuthority``). ``timestamp`` is the DER
    TimeStampToken of the unsigned attributes, if any. ``extended`` are
    signed attributes beyond the specified ones (name, value as text),
    critical or not.
    """

    media_type: str
    target: TargetDescriptor
    signing_scheme: str
    signature_algorithm: str
    chain: tuple[x509.Certificate, ...] = field(repr=False)
    signature: bytes = field(repr=False)
    signing_time: datetime | None = None
    authentic_signing_time: datetime | None = None
    expiry: datetime | None = None
    timestamp: bytes | None = field(default=None, repr=False)
    signing_agent: str = ""
    extended: tuple[tuple[str, str, bool], ...] = ()
