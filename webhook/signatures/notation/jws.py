"""The JWS envelope (``application/jose+json``): Notary Project signature-envelope-jws.md.

A Notation JWS is the flattened JWS JSON serialization (RFC 7515 section
7.2.2) with exactly four members: ``payload``, ``protected`` (base64url of the
protected header's JSON), ``header`` (the unprotected header) and
``signature``. The signature covers the ASCII bytes
``BASE64URL(protected) '.' BASE64URL(payload)`` exactly as the envelope
spells them, so they are never re-encoded here.

Read strictly: JSON that names a key twice (in the envelope or in either
header) is refused, as RFC 7515 section 4 allows, since two readers could take
different values; base64url admits no padding or other characters (as Go's
``RawURLEncoding`` that Notation uses), and the certificates and the timestamp
token are padded standard base64 (RFC 7515 section 4.1.6). A name in both
headers, or a protected-only name (``alg``, ``crit``, the signed attributes) in
the unprotected header, is refused: that is how a forger would try to pass an
unsigned value off as signed. Unknown unprotected names are ignored, as RFC
7515 asks and Notation does.

Times are RFC 3339 date-times (``io.cncf.notary.signingTime`` etc.), kept in UTC.
"""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any, Final

from webhook.core.untrusted import shown
from webhook.signatures.notation import algorithms
from webhook.signatures.notation.attributes import (
    AUTHENTIC_SIGNING_TIME,
    EXPIRY,
    MAX_CHAIN,
    NOTARY_SIGNED,
    PROTECTED_ONLY,
    SIGNING_AGENT,
    SIGNING_SCHEME,
    SIGNING_TIME,
    TIMESTAMP,
    SignedAttributes,
    UnsignedAttributes,
    assemble,
)
from webhook.signatures.notation.model import JWS, Envelope, NotationError
from webhook.signatures.notation.payload import strict_json

_MEMBERS: Final = ("payload", "protected", "header", "signature")
#: Protected header names the specification reads, beyond the Notary attributes.
_REGISTERED: Final = frozenset({"alg", "cty", "crit"})
#: Names that only mean something when signed.
_PROTECTED_ONLY: Final = _REGISTERED | PROTECTED_ONLY
_BASE64URL: Final = re.compile(r"[A-Za-z0-9_-]*")
_BASE64: Final = re.compile(r"(?:[A-Za-z0-9+/]{4})*(?:[A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=)?")
_RFC3339: Final = re.compile(
    r"(\d{4}-\d{2}-\d{2})[Tt](\d{2}:\d{2}:\d{2})(?:\.(\d{1,9}))?([Zz]|[+-]\d{2}:\d{2})"
)


def parse(blob: bytes) -> Envelope:
    """The Envelope of a Notation JWS, once its integrity is checked.

    Raises:
        NotationError: the envelope breaks a rule of the specification or its
            signature does not verify (the message says which).
    """
    document = strict_json(blob, "the envelope")
    if not isinstance(document, dict):
        raise NotationError("the envelope is not a JSON object")
    if "signatures" in document:
        raise NotationError(
            "the envelope uses the general JWS JSON serialization; Notation signs with the "
            "flattened one (one signature: payload, protected, header, signature)"
        )
    unknown = sorted(set(document) - set(_MEMBERS))
    if unknown:
        names = ", ".join(shown(name, 40) for name in unknown[:5])
        raise NotationError(
            f"the envelope has members {names}; a Notation JWS has only {', '.join(_MEMBERS)}"
        )
    for member in _MEMBERS:
        expected = dict if member == "header" else str
        if not isinstance(document.get(member), expected):
            kind = "an object" if expected is dict else "a string"
            raise NotationError(f"the envelope's {member} is missing or not {kind}")
    protected_text: str = document["protected"]
    payload_text: str = document["payload"]
    protected = strict_json(_base64url(protected_text, "protected header"), "the protected header")
    if not isinstance(protected, dict):
        raise NotationError("the protected header is not a JSON object")
    payload = _base64url(payload_text, "payload")
    unprotected: dict[str, Any] = document["header"]
    _check_disjoint(protected, unprotected)
    return assemble(
        JWS,
        _signed(protected),
        _unsigned(unprotected),
        signature=_base64url(document["signature"], "signature"),
        # Both parts are base64url, so ASCII: the bytes the signer signed.
        signing_input=f"{protected_text}.{payload_text}".encode("ascii"),
        payload=payload,
    )


def _check_disjoint(protected: Mapping[str, Any], unprotected: Mapping[str, Any]) -> None:
    both = sorted(set(protected) & set(unprotected))
    if both:
        raise NotationError(
            f"{shown(both[0], 80)} is in both the protected and the unprotected header; "
            f"RFC 7515 requires them to be disjoint"
        )
    moved = sorted(set(unprotected) & _PROTECTED_ONLY)
    if moved:
        raise NotationError(
            f"{moved[0]} is in the unprotected header, where it is not signed; it is only "
            f"accepted in the protected header"
        )


def _signed(protected: Mapping[str, Any]) -> SignedAttributes:
    if "alg" not in protected:
        raise NotationError("the protected header has no alg")
    if not isinstance(protected["alg"], str):
        raise NotationError("the protected header's alg is not a string")
    algorithm = algorithms.named(protected["alg"], "the protected header's alg")
    content_type = protected.get("cty")
    if not isinstance(content_type, str):
        raise NotationError("the protected header has no cty (content type) string")
    critical = protected.get("crit")
    if critical is not None and (
        not isinstance(critical, list) or not all(isinstance(name, str) for name in critical)
    ):
        raise NotationError("the protected header's crit is not a list of header names")
    scheme = protected.get(SIGNING_SCHEME)
    if not isinstance(scheme, str):
        raise NotationError(f"the protected header has no {SIGNING_SCHEME} string")
    return SignedAttributes(
        algorithm=algorithm,
        content_type=content_type,
        critical=None if critical is None else tuple(critical),
        signing_scheme=scheme,
        signing_time=_time(protected, SIGNING_TIME),
        authentic_signing_time=_time(protected, AUTHENTIC_SIGNING_TIME),
        expiry=_time(protected, EXPIRY),
        extended={
            name: value
            for name, value in protected.items()
            if name not in _REGISTERED and name not in NOTARY_SIGNED
        },
    )


def _time(protected: Mapping[str, Any], name: str) -> datetime | None:
    """An RFC 3339 date-time header, in UTC; None when absent."""
    if name not in protected:
        return None
    value = protected[name]
    match = _RFC3339.fullmatch(value) if isinstance(value, str) else None
    if match is None:
        raise NotationError(
            f"{name} is {shown(value, 64) if isinstance(value, str) else type(value).__name__}, "
            f"not an RFC 3339 date-time such as 2024-06-18T07:21:07Z"
        )
    day, clock, fraction, offset = match.groups()
    micro = f".{(fraction or '')[:6]:0<6}"
    zone = "+00:00" if offset in ("Z", "z") else offset
    try:
        return datetime.fromisoformat(f"{day}T{clock}{micro}{zone}").astimezone(UTC)
    except (ValueError, OverflowError):
        raise NotationError(f"{name} is {shown(value, 64)}, not a valid date-time") from None


def _unsigned(header: Mapping[str, Any]) -> UnsignedAttributes:
    chain = header.get("x5c")
    if not isinstance(chain, list) or not all(isinstance(item, str) for item in chain):
        raise NotationError(
            "the unprotected header has no x5c list of base64 certificates (the signing "
            "certificate and its chain)"
        )
    if len(chain) > MAX_CHAIN:
        raise NotationError(
            f"the certificate chain has {len(chain)} certificates, over the limit of {MAX_CHAIN}"
        )
    certificates = [_base64(item, f"x5c[{index}]") for index, item in enumerate(chain)]
    timestamp = header.get(TIMESTAMP)
    if timestamp is not None and not isinstance(timestamp, str):
        raise NotationError(f"{TIMESTAMP} is not a base64 string")
    agent = header.get(SIGNING_AGENT)
    return UnsignedAttributes(
        chain=certificates,
        timestamp=None if timestamp is None else _base64(timestamp, TIMESTAMP),
        # Informational only: the specification forbids failing on its content.
        signing_agent=agent if isinstance(agent, str) else "",
    )


def _base64url(text: str, what: str) -> bytes:
    """Unpadded base64url (RFC 7515 section 2), strictly."""
    if not _BASE64URL.fullmatch(text) or len(text) % 4 == 1:
        raise NotationError(f"the envelope's {what} is not unpadded base64url")
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _base64(text: str, what: str) -> bytes:
    """Padded standard base64 (RFC 4648 section 4), strictly."""
    if not _BASE64.fullmatch(text):
        raise NotationError(f"{what} is not standard base64")
    try:
        return base64.b64decode(text, validate=True)
    except binascii.Error:
        raise NotationError(f"{what} is not standard base64") from None
