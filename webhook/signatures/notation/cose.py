"""The COSE envelope (``application/cose``): Notary Project signature-envelope-cose.md.

A Notation COSE envelope is a COSE_Sign1_Tagged message (RFC 9052 section
4.2): tag 18 around ``[protected, unprotected, payload, signature]``. The
protected header is a byte string wrapping a CBOR map, and the signature
covers those exact bytes inside the Sig_structure
``["Signature1", protected, h'', payload]`` (section 4.4). So the protected
header is used as received, never re-encoded; one that is not a byte string
(stripped, or replaced by a map), is empty, or whose attributes appear in the
unprotected map (moved) is refused with a message saying so. Labels: ``alg``
1, ``crit`` 2, content type 3, ``x5chain`` 33 (RFC 9360; the specification
allows it in either header), and the Notary attributes by name; times are tag-1
epoch date/times (RFC 8949 section 3.4.2), as Notation writes them.

Library: cbor2 with cryptography, over pycose. Measured here (Python 3.11,
2 cores shared; fixture ``coseWithTimestamp.sig`` of notation-go, 7,362 bytes,
RSA 2048 PS256 with a timestamp token; best of 7 cold imports, mean of 200
verifications):

=====================  ==================  ============================
                       cbor2 6.3 + crypto  pycose 1.1.0 (+ cbor2 5.9)
=====================  ==================  ============================
import, over crypto    +0.9 ms             +38.5 ms
parse + verify         59-78 us            138-146 us
CBOR decode alone      2.0 us              3.7 us (cbor2 5.9)
installed              1 package, 1.4 MB   7 packages, ~7.4 MB (attrs,
                       (no dependencies)   ecdsa, certvalidator, oscrypto,
                                           asn1crypto, six, cbor2)
last release           6.3.0, 2026         1.1.0, December 2023
=====================  ==================  ============================

trustgate's whole ``parse_envelope`` of that fixture, every rule included:
about 120 us. pycose does not decode anything with cbor2 6 (which returns a tag's array as
a tuple; pycose answers "Bytes cannot be decoded as COSE message"), so it would
hold cbor2 below 6, which cannot refuse duplicate map keys. Nor would it save
work: the Notation rules (critical headers, key and algorithm, header
placement) are trustgate's either way, and its verify wants a COSE key built
from the certificate. The verification itself is ``algorithms.verify``, shared
with JWS; ``cbor`` holds the strict decoding.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any, Final

import cbor2

from webhook.core.untrusted import shown
from webhook.signatures.notation import algorithms, cbor
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
from webhook.signatures.notation.model import COSE, Envelope, NotationError

ALG: Final = 1
CRIT: Final = 2
CONTENT_TYPE: Final = 3
X5CHAIN: Final = 33
_LABELS: Final = {
    ALG: "alg (label 1)",
    CRIT: "crit (label 2)",
    CONTENT_TYPE: "content type (label 3)",
}
#: Labels that only mean something when signed.
_PROTECTED_ONLY: Final = frozenset({ALG, CRIT, CONTENT_TYPE}) | PROTECTED_ONLY
_NOT_EXTENDED: Final = frozenset({ALG, CRIT, CONTENT_TYPE, X5CHAIN, *NOTARY_SIGNED})


def parse(blob: bytes) -> Envelope:
    """The Envelope of a Notation COSE_Sign1 message, once its integrity is checked.

    Raises:
        NotationError: the message breaks a rule of the specification or its
            signature does not verify (the message says which).
    """
    message = cbor.decode(blob, "the envelope")
    if not isinstance(message, cbor.Sign1):
        raise NotationError("the envelope is not a COSE_Sign1_Tagged message (CBOR tag 18)")
    items = message.items
    if not isinstance(items, (list, tuple)) or len(items) != 4:
        raise NotationError(
            "the COSE_Sign1 message is not an array of four items (protected, unprotected, "
            "payload, signature)"
        )
    body_protected, unprotected, payload, signature = items
    if not isinstance(unprotected, dict):
        raise NotationError("the COSE_Sign1 unprotected header is not a map")
    _check_not_moved(unprotected)
    protected = _protected(body_protected)
    both = [label for label in protected if label in unprotected]
    if both:
        raise NotationError(
            f"{_name(both[0])} is in both the protected and the unprotected header; RFC 9052 "
            f"forbids a header parameter in both"
        )
    if not isinstance(payload, bytes):
        raise NotationError(
            "the COSE_Sign1 payload is not a byte string (a detached payload is not a "
            "Notation signature)"
        )
    if not isinstance(signature, bytes):
        raise NotationError("the COSE_Sign1 signature is not a byte string")
    signed_bytes = cbor2.dumps(["Signature1", body_protected, b"", payload])
    return assemble(
        COSE,
        _signed(protected),
        _unsigned(protected, unprotected),
        signature=signature,
        signing_input=signed_bytes,
        payload=payload,
    )


def _check_not_moved(unprotected: Mapping[Any, Any]) -> None:
    moved = [label for label in unprotected if label in _PROTECTED_ONLY]
    if moved:
        raise NotationError(
            f"{_name(moved[0])} is in the unprotected header, where it is not signed; it is "
            f"only accepted in the protected header (a protected header moved to the "
            f"unprotected one is refused)"
        )


def _protected(body: object) -> dict[Any, Any]:
    if not isinstance(body, bytes):
        raise NotationError(
            "the COSE_Sign1 protected header is not a byte string: COSE signs the protected "
            "header as the exact bytes of a CBOR map (RFC 9052 section 3), and a message "
            "whose protected header was stripped or replaced is refused"
        )
    if not body:
        raise NotationError(
            "the COSE_Sign1 protected header is empty (stripped): alg, crit, content type "
            f"and {SIGNING_SCHEME} must be signed in it"
        )
    protected = cbor.decode(body, "the protected header")
    if not isinstance(protected, dict):
        raise NotationError("the COSE_Sign1 protected header does not wrap a CBOR map")
    return protected


def _signed(protected: Mapping[Any, Any]) -> SignedAttributes:
    if ALG not in protected:
        raise NotationError("the protected header has no alg (label 1)")
    alg = protected[ALG]
    if not isinstance(alg, int) or isinstance(alg, bool):
        raise NotationError("the protected header's alg (label 1) is not an integer identifier")
    algorithm = algorithms.named(
        algorithms.COSE_ALGORITHMS.get(alg, alg), "the protected header's alg (label 1)"
    )
    content_type = protected.get(CONTENT_TYPE)
    if not isinstance(content_type, str):
        raise NotationError("the protected header has no content type (label 3) text string")
    scheme = protected.get(SIGNING_SCHEME)
    if not isinstance(scheme, str):
        raise NotationError(f"the protected header has no {SIGNING_SCHEME} text string")
    return SignedAttributes(
        algorithm=algorithm,
        content_type=content_type,
        critical=_critical(protected.get(CRIT)),
        signing_scheme=scheme,
        signing_time=_time(protected, SIGNING_TIME),
        authentic_signing_time=_time(protected, AUTHENTIC_SIGNING_TIME),
        expiry=_time(protected, EXPIRY),
        extended={
            label if isinstance(label, str) else str(label): value
            for label, value in protected.items()
            if label not in _NOT_EXTENDED
        },
    )


def _critical(value: object) -> tuple[str, ...] | None:
    if value is None:
        return None
    if not isinstance(value, (list, tuple)) or not all(
        isinstance(label, (int, str)) and not isinstance(label, bool) for label in value
    ):
        raise NotationError("the protected header's crit (label 2) is not a list of labels")
    for label in value:
        if isinstance(label, int):
            raise NotationError(
                f"crit names label {label}, which trustgate does not know how to process; "
                f"an unknown critical header is refused"
            )
    return tuple(value)


def _time(protected: Mapping[Any, Any], name: str) -> datetime | None:
    """A tag-1 epoch date/time header, in UTC; None when absent."""
    if name not in protected:
        return None
    value = protected[name]
    seconds = value.seconds if isinstance(value, cbor.Epoch) else None
    if (
        isinstance(seconds, bool)
        or not isinstance(seconds, (int, float))
        or (isinstance(seconds, float) and not math.isfinite(seconds))
    ):
        raise NotationError(
            f"{name} is not an epoch date/time (CBOR tag 1 around a number of seconds)"
        )
    try:
        return datetime.fromtimestamp(seconds, UTC)
    except (ValueError, OverflowError, OSError):
        raise NotationError(f"{name} is {seconds!r} seconds, out of any date's range") from None


def _unsigned(protected: Mapping[Any, Any], unprotected: Mapping[Any, Any]) -> UnsignedAttributes:
    chain = unprotected.get(X5CHAIN, protected.get(X5CHAIN))
    if isinstance(chain, bytes):  # RFC 9360: one certificate may stand alone
        chain = [chain]
    if not isinstance(chain, (list, tuple)) or not all(isinstance(der, bytes) for der in chain):
        raise NotationError(
            "the envelope has no x5chain (label 33) of DER certificates (the signing "
            "certificate and its chain)"
        )
    if len(chain) > MAX_CHAIN:
        raise NotationError(
            f"the certificate chain has {len(chain)} certificates, over the limit of {MAX_CHAIN}"
        )
    timestamp = unprotected.get(TIMESTAMP)
    if timestamp is not None and not isinstance(timestamp, bytes):
        raise NotationError(f"{TIMESTAMP} is not a byte string")
    agent = unprotected.get(SIGNING_AGENT)
    return UnsignedAttributes(
        chain=list(chain),
        timestamp=timestamp,
        # Informational only: the specification forbids failing on its content.
        signing_agent=agent if isinstance(agent, str) else "",
    )


def _name(label: object) -> str:
    if isinstance(label, int):
        return _LABELS.get(label, f"label {label}")
    return shown(str(label), 80)
