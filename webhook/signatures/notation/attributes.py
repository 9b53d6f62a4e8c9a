"""What both envelope formats carry, checked alike: signed and unsigned attributes.

``jws`` and ``cose`` each decode their own encoding into ``SignedAttributes``
and ``UnsignedAttributes``; ``assemble`` then applies the rules of the Notary
Project signature specification that do not depend on the encoding ("Signed
Attributes", "Unsigned Attributes", and the JWS and COSE envelope documents):

- ``crit`` lists ``io.cncf.notary.signingScheme``, and also
  ``io.cncf.notary.authenticSigningTime`` and ``io.cncf.notary.expiry`` when
  they are present; every name it lists is one trustgate processes and is
  present. An unknown critical attribute is a refusal: a signer marks an
  attribute critical precisely so that a verifier that does not understand it
  fails. The verification plugin attributes are known but need a Notation
  plugin, which trustgate does not run, so they are refused too ("Guidelines
  for implementations": fail when the plugin's logic cannot be performed);
- the signing scheme decides the signing time: ``notary.x509`` has
  ``signingTime`` and no ``authenticSigningTime``, ``notary.x509.signingAuthority``
  the reverse; an expiry is after the signing time;
- the content type is the Notation payload's;
- the chain is at most MAX_CHAIN DER certificates, the signing certificate
  first; its key decides the algorithm, which the header must name; the
  signature verifies; then, and only then, the payload is read.

Whether the chain is trusted, the times and revocation are for ``trust``.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Final

from cryptography import x509

from webhook.core.untrusted import literal, shown
from webhook.core.x509read import CERTIFICATE_ERRORS, load_der
from webhook.signatures.notation import algorithms
from webhook.signatures.notation.model import (
    PAYLOAD_TYPE,
    SIGNING_AUTHORITY,
    X509,
    Envelope,
    NotationError,
)
from webhook.signatures.notation.payload import parse_payload

#: A chain longer than this is refused (signing certificate, intermediates, root).
MAX_CHAIN: Final = 10
#: An extended attribute's value is kept as at most this many characters of text.
MAX_EXTENDED_TEXT: Final = 1024

SIGNING_SCHEME: Final = "io.cncf.notary.signingScheme"
SIGNING_TIME: Final = "io.cncf.notary.signingTime"
AUTHENTIC_SIGNING_TIME: Final = "io.cncf.notary.authenticSigningTime"
EXPIRY: Final = "io.cncf.notary.expiry"
VERIFICATION_PLUGIN: Final = "io.cncf.notary.verificationPlugin"
VERIFICATION_PLUGIN_MIN_VERSION: Final = "io.cncf.notary.verificationPluginMinVersion"
#: The unsigned attributes, by their JWS and COSE names.
TIMESTAMP: Final = "io.cncf.notary.timestampSignature"
SIGNING_AGENT: Final = "io.cncf.notary.signingAgent"
#: The signed attributes the specification defines by name (both formats).
NOTARY_SIGNED: Final = frozenset({SIGNING_SCHEME, SIGNING_TIME, AUTHENTIC_SIGNING_TIME, EXPIRY})
#: What a critical header may name: the attributes trustgate processes.
_PROCESSED: Final = NOTARY_SIGNED
_PLUGIN: Final = frozenset({VERIFICATION_PLUGIN, VERIFICATION_PLUGIN_MIN_VERSION})
#: The Notary attributes that only mean something when signed: both formats refuse
#: them in the unprotected header (a forger's way to pass an unsigned value off as signed).
PROTECTED_ONLY: Final = NOTARY_SIGNED | _PLUGIN


@dataclass(frozen=True, slots=True)
class SignedAttributes:
    """The protected header of either format, decoded but not yet checked.

    ``critical`` is ``None`` when the header has no ``crit``. ``extended``
    holds the protected headers beyond the specified ones, by name (a COSE
    integer label as its decimal text).
    """

    algorithm: algorithms.Algorithm
    content_type: str
    critical: tuple[str, ...] | None
    signing_scheme: str
    signing_time: datetime | None = None
    authentic_signing_time: datetime | None = None
    expiry: datetime | None = None
    extended: Mapping[str, object] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class UnsignedAttributes:
    """The unprotected header of either format: the chain as DER, signing certificate
    first; the RFC 3161 token, if any; the signing agent."""

    chain: Sequence[bytes]
    timestamp: bytes | None = None
    signing_agent: str = ""


def assemble(
    media_type: str,
    signed: SignedAttributes,
    unsigned: UnsignedAttributes,
    *,
    signature: bytes,
    signing_input: bytes,
    payload: bytes,
) -> Envelope:
    """The Envelope, once the rules above hold and the signature verifies.

    ``signing_input`` is what the signature covers in the envelope's format
    (the JWS signing input, the COSE Sig_structure).

    Raises:
        NotationError: a rule is broken or the signature does not verify.
    """
    check_signed(signed)
    chain = read_chain(unsigned.chain)
    if not signature:
        raise NotationError("the envelope's signature is empty")
    algorithms.check_fit(signed.algorithm, chain[0])
    algorithms.verify(signed.algorithm, chain[0], signature, signing_input)
    return Envelope(
        media_type=media_type,
        target=parse_payload(payload),
        signing_scheme=signed.signing_scheme,
        signature_algorithm=signed.algorithm.name,
        chain=chain,
        signature=signature,
        signing_time=signed.signing_time,
        authentic_signing_time=signed.authentic_signing_time,
        expiry=signed.expiry,
        timestamp=unsigned.timestamp,
        signing_agent=unsigned.signing_agent,
        extended=tuple(
            (name, text(value), name in (signed.critical or ()))
            for name, value in sorted(signed.extended.items())
        ),
    )


def check_signed(signed: SignedAttributes) -> None:
    """Apply the specification's rules on signed attributes (module docstring).

    Raises:
        NotationError: naming the attribute and the rule.
    """
    if signed.content_type != PAYLOAD_TYPE:
        raise NotationError(
            f"the content type is {shown(signed.content_type, 80)}, not the Notation "
            f"payload's {PAYLOAD_TYPE}"
        )
    _check_scheme(signed)
    _check_critical(signed)
    if signed.expiry is not None:
        signed_at = signed.signing_time or signed.authentic_signing_time
        if signed_at is not None and signed.expiry <= signed_at:
            raise NotationError(
                f"the expiry {signed.expiry.isoformat()} is not after the signing time "
                f"{signed_at.isoformat()}"
            )


def _check_scheme(signed: SignedAttributes) -> None:
    scheme = signed.signing_scheme
    if scheme == X509:
        required, forbidden = SIGNING_TIME, AUTHENTIC_SIGNING_TIME
        has_required = signed.signing_time is not None
        has_forbidden = signed.authentic_signing_time is not None
    elif scheme == SIGNING_AUTHORITY:
        required, forbidden = AUTHENTIC_SIGNING_TIME, SIGNING_TIME
        has_required = signed.authentic_signing_time is not None
        has_forbidden = signed.signing_time is not None
    else:
        raise NotationError(
            f"the signing scheme is {shown(scheme, 64)}; trustgate knows {X509} and "
            f"{SIGNING_AUTHORITY}"
        )
    if not has_required:
        raise NotationError(f"the {scheme} signing scheme requires {required}, which is missing")
    if has_forbidden:
        raise NotationError(f"the {scheme} signing scheme does not allow {forbidden}")


def _check_critical(signed: SignedAttributes) -> None:
    critical = signed.critical
    if not critical:
        raise NotationError(
            f"the protected header has no crit list; it must list at least {SIGNING_SCHEME}"
        )
    present = {SIGNING_SCHEME, *signed.extended}
    present.update(
        name
        for name, value in (
            (SIGNING_TIME, signed.signing_time),
            (AUTHENTIC_SIGNING_TIME, signed.authentic_signing_time),
            (EXPIRY, signed.expiry),
        )
        if value is not None
    )
    seen: set[str] = set()
    for name in critical:
        if name in seen:
            raise NotationError(f"crit names {shown(name, 80)} twice")
        seen.add(name)
        if name in _PLUGIN:
            plugin = signed.extended.get(VERIFICATION_PLUGIN)
            which = f" {shown(plugin, 80)}" if isinstance(plugin, str) else ""
            raise NotationError(
                f"the signature marks {name} critical: it must be verified by the Notation "
                f"verification plugin{which}, which trustgate does not run; sign without a "
                f"verification plugin, or verify such signatures with notation itself"
            )
        if name not in _PROCESSED:
            raise NotationError(
                f"crit names {shown(name, 80)}, which trustgate does not know how to "
                f"process; an unknown critical header is refused (trustgate processes "
                f"{', '.join(sorted(_PROCESSED))})"
            )
        if name not in present:
            raise NotationError(
                f"crit names {name}, which the protected header does not have; crit may "
                f"only name headers that are present"
            )
    must = {SIGNING_SCHEME}
    if signed.expiry is not None:
        must.add(EXPIRY)
    if signed.signing_scheme == SIGNING_AUTHORITY:
        must.add(AUTHENTIC_SIGNING_TIME)
    missing = sorted(must - seen)
    if missing:
        raise NotationError(
            f"{', '.join(missing)} must be listed in crit, and is not: a verifier that "
            f"ignored it would still accept the signature"
        )


def read_chain(ders: Sequence[bytes]) -> tuple[x509.Certificate, ...]:
    """The chain's certificates, signing certificate first; not verified here.

    Raises:
        NotationError: the chain is empty, longer than MAX_CHAIN, or holds
            something other than a DER X.509 certificate.
    """
    if not ders:
        raise NotationError("the envelope carries no certificate chain (x5c / x5chain)")
    if len(ders) > MAX_CHAIN:
        raise NotationError(
            f"the certificate chain has {len(ders)} certificates, over the limit of {MAX_CHAIN}"
        )
    chain = []
    for index, der in enumerate(ders, 1):
        try:
            chain.append(load_der(der))
        except CERTIFICATE_ERRORS as exc:
            raise NotationError(
                f"certificate {index} of the chain is not a DER X.509 certificate "
                f"cryptography can read: {literal(str(exc))}"
            ) from None
    return tuple(chain)


def text(value: object) -> str:
    """An extended attribute's value as text: a string as it is, anything else as
    compact JSON (byte strings as base64), cut at MAX_EXTENDED_TEXT characters."""
    if isinstance(value, str):
        return value[:MAX_EXTENDED_TEXT]
    try:
        rendered = json.dumps(value, separators=(",", ":"), default=_json_default)
    except RecursionError:  # a JSON value nested nearly as deep as the parser allows
        return "(nested too deeply to show)"
    return rendered[:MAX_EXTENDED_TEXT]


def _json_default(value: object) -> object:
    if isinstance(value, (bytes, bytearray)):
        return base64.b64encode(value).decode("ascii")
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, (tuple, frozenset)):
        return list(value)
    return repr(value)[:MAX_EXTENDED_TEXT]
