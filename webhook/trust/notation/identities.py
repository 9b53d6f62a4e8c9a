"""trustedIdentities: which signing certificates' subjects a Notation authority accepts.

Per the Notary Project trust-policy specification ("Trusted Identities
Constraints"), an identity is ``*`` (any certificate the trust store vouches
for) or ``x509.subject:`` followed by comma-separated RDNs, e.g.
``x509.subject: C=US, ST=WA, L=Seattle, O=acme-rabbits, CN=builder``. A
signing certificate matches when every attribute of the pattern is in its
subject with an equal value (a partial list of the subject's attributes is
allowed). The rules Notation (notation-go ``internal/pkix``) applies are kept:

- C, ST (or its alias S) and O are required; each attribute type once; no
  multi-valued RDN (``+``) and no hex-encoded value (``=#``);
- ``\\,`` ``\\;`` ``\\\\`` and a leading or trailing ``\\ `` are escapes
  (RFC 4514's other escapes too); unescaped spaces around types and values
  are not part of them;
- ``*`` stands alone, and no two patterns may overlap (one a subset of the
  other), so that a certificate never matches two identities.

Unlike Notation, the certificate's subject is read attribute by attribute
from its DER (``cryptography``), never re-parsed from a string, so a value
holding a comma cannot shift attributes; a subject that holds a pattern's
attribute type twice (two OU) is no match rather than a guess at which one
counts. This RDN grammar is text, not ASN.1; no maintained Python library
parses Notation's spelling (``x509.Name.from_rfc4514_string`` refuses the
space after each comma and ``S``), hence the small parser below.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final

from cryptography import x509
from cryptography.x509.oid import NameOID, ObjectIdentifier

#: The prefix of an X.509 subject identity.
PREFIX: Final = "x509.subject:"
WILDCARD: Final = "*"
#: Attribute type names a pattern may use (dotted OIDs are accepted too).
_TYPES: Final[dict[str, ObjectIdentifier]] = {
    "C": NameOID.COUNTRY_NAME,
    "ST": NameOID.STATE_OR_PROVINCE_NAME,
    "S": NameOID.STATE_OR_PROVINCE_NAME,
    "L": NameOID.LOCALITY_NAME,
    "O": NameOID.ORGANIZATION_NAME,
    "OU": NameOID.ORGANIZATIONAL_UNIT_NAME,
    "CN": NameOID.COMMON_NAME,
    "STREET": NameOID.STREET_ADDRESS,
    "POSTALCODE": NameOID.POSTAL_CODE,
    "SERIALNUMBER": NameOID.SERIAL_NUMBER,
    "DC": NameOID.DOMAIN_COMPONENT,
    "UID": NameOID.USER_ID,
}
_REQUIRED: Final = (
    ("C", NameOID.COUNTRY_NAME),
    ("ST", NameOID.STATE_OR_PROVINCE_NAME),
    ("O", NameOID.ORGANIZATION_NAME),
)
#: Characters RFC 4514 lets a backslash escape.
_ESCAPABLE: Final = frozenset(' "#+,;<=>\\')
#: Patterns longer than this are refused; a real subject is well under 1 KiB.
MAX_PATTERN = 4096


class IdentityError(ValueError):
    """A trustedIdentities entry is malformed; the message says which and how to fix it."""


@dataclass(frozen=True, slots=True)
class SubjectPattern:
    """One ``x509.subject:`` identity: attribute OID -> required value."""

    text: str
    attributes: tuple[tuple[ObjectIdentifier, str], ...]

    def matches(self, subject: x509.Name) -> bool:
        """Whether every attribute of the pattern is in ``subject``, once, with an equal value."""
        for oid, value in self.attributes:
            found = [attribute.value for attribute in subject if attribute.oid == oid]
            if found != [value]:
                return False
        return True


@dataclass(frozen=True, slots=True)
class TrustedIdentities:
    """An authority's trustedIdentities: any certificate, or one of ``patterns``."""

    any: bool
    patterns: tuple[SubjectPattern, ...] = ()

    def match(self, cert: x509.Certificate) -> str | None:
        """The identity ``cert``'s subject matches (``*`` or the pattern's text), or None."""
        if self.any:
            return WILDCARD
        for pattern in self.patterns:
            if pattern.matches(cert.subject):
                return pattern.text
        return None


def parse_identities(values: Sequence[str]) -> TrustedIdentities:
    """The trustedIdentities of a policy, checked as the specification asks.

    Raises IdentityError naming the entry and the rule it breaks.
    """
    if not values:
        raise IdentityError('trustedIdentities is empty; list x509.subject identities or "*"')
    if WILDCARD in values:
        if len(values) > 1:
            raise IdentityError('"*" trusts any identity and cannot be listed with others')
        return TrustedIdentities(any=True)
    patterns = tuple(parse_pattern(value) for value in values)
    for index, first in enumerate(patterns):
        for second in patterns[index + 1 :]:
            if _subset(first, second) or _subset(second, first):
                raise IdentityError(
                    f"trusted identities {first.text!r} and {second.text!r} overlap: "
                    "a certificate could match both; keep the narrower one or tell them apart"
                )
    return TrustedIdentities(any=False, patterns=patterns)


def parse_pattern(text: str) -> SubjectPattern:
    """One ``x509.subject: C=.., ST=.., O=..`` identity. Raises IdentityError."""
    if len(text) > MAX_PATTERN:
        raise IdentityError(f"trusted identity is over {MAX_PATTERN} characters")
    if not text.startswith(PREFIX):
        raise IdentityError(
            f'trusted identity {text!r} is neither "*" nor "{PREFIX} C=.., ST=.., O=.."'
        )
    body = text[len(PREFIX) :]
    if "=#" in body:
        raise IdentityError(f"trusted identity {text!r}: hex-encoded values (=#) are not supported")
    attributes: dict[ObjectIdentifier, str] = {}
    for name, value in _rdns(body, text):
        oid = _oid(name, text)
        if oid in attributes:
            raise IdentityError(f"trusted identity {text!r} names {name} twice")
        attributes[oid] = value
    for name, oid in _REQUIRED:
        if oid not in attributes:
            raise IdentityError(
                f"trusted identity {text!r} has no {name}; it must name C, ST (or S) and O"
            )
    return SubjectPattern(text, tuple(attributes.items()))


def _subset(narrow: SubjectPattern, wide: SubjectPattern) -> bool:
    """Whether every attribute of ``narrow`` is in ``wide``: what matches wide matches narrow."""
    return set(narrow.attributes) <= set(wide.attributes)


def _oid(name: str, text: str) -> ObjectIdentifier:
    upper = name.upper()
    if upper in _TYPES:
        return _TYPES[upper]
    parts = name.split(".")
    if len(parts) > 1 and all(part.isdigit() for part in parts):
        return ObjectIdentifier(name)
    raise IdentityError(
        f"trusted identity {text!r}: unknown attribute type {name!r}; use "
        + ", ".join(sorted(set(_TYPES) - {"S"}))
        + " or a dotted OID"
    )


def _rdns(body: str, text: str) -> list[tuple[str, str]]:
    """``TYPE=value`` pairs of ``body``, split at unescaped commas or semicolons.

    Escapes are resolved; unescaped spaces around a type or a value are dropped.
    """
    pairs: list[tuple[str, str]] = []
    name: str | None = None
    chars: list[tuple[str, bool]] = []  # (character, escaped)
    index = 0
    end = len(body)
    while index <= end:
        char = body[index] if index < end else ","
        if char == "\\" and index < end:
            following = body[index + 1 : index + 2]
            if name is None or not following or following not in _ESCAPABLE:
                raise IdentityError(
                    f"trusted identity {text!r}: a backslash must escape one of "
                    + "".join(sorted(_ESCAPABLE))
                    + " in a value"
                )
            chars.append((following, True))
            index += 2
            continue
        if char in ",;":
            if name is None:
                raise IdentityError(f"trusted identity {text!r}: {_plain(chars)!r} has no =")
            value = _plain(chars)
            if not value:
                raise IdentityError(f"trusted identity {text!r}: {name} has an empty value")
            pairs.append((name, value))
            name, chars = None, []
        elif char == "=" and name is None:
            name = _plain(chars)
            if not name:
                raise IdentityError(f"trusted identity {text!r}: an attribute has no type")
            chars = []
        elif char == "+":
            raise IdentityError(
                f"trusted identity {text!r}: multi-valued RDNs (+) are not supported; "
                "escape a literal + as \\+"
            )
        else:
            chars.append((char, False))
        index += 1
    return pairs


def _plain(chars: list[tuple[str, bool]]) -> str:
    """The characters, less unescaped spaces at either end."""
    start, end = 0, len(chars)
    while start < end and chars[start] == (" ", False):
        start += 1
    while end > start and chars[end - 1] == (" ", False):
        end -= 1
    return "".join(char for char, _ in chars[start:end])
