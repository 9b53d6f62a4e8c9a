"""A ``notation:`` authority compiled: trust stores read, identities parsed, level set, now.

The grammar (``$defs/notationAuthority`` of the schema) follows a Notary
Project trust policy statement, one per authority, with the stores named
by kind instead of by ``ca:name`` reference::

    notation:
      trustStore: certs/ca.pem              # ca: a file, {pem: ...}, or a list of them
      signingAuthorityStore: certs/sa.pem   # notary.x509.signingAuthority roots
      tsaStore: certs/tsa.pem               # RFC 3161 timestamp authority roots
      trustedIdentities: ["x509.subject: C=US, ST=WA, O=wabbit-networks.io"]
      level: strict                         # strict | permissive | audit | skip
      override: {revocation: skip}          # a custom level
      verifyTimestamp: always               # or afterCertExpiry

Files are read through ``webhook.trust.notation`` (below ``policy`` in the
layers, as ``webhook.trust.keys`` is for cosign keys), relative to the
policy file as it is named, like key files. Every mistake of one authority is
reported, each a PolicyError naming the file, document and field, so that
``policy lint`` shows them all in one run. Level ``skip`` verifies nothing:
Notation refuses a skip statement that names stores or identities, and so
does this, so that nobody mistakes a switched-off authority for a checked one.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Final, cast

from cryptography import x509

from webhook.core.errors import PolicyError, PolicyErrors
from webhook.policy.model import NotationRef, VerifyTimestamp
from webhook.policy.origin import Origin
from webhook.trust.notation.identities import (
    WILDCARD,
    IdentityError,
    TrustedIdentities,
    parse_identities,
    parse_pattern,
)
from webhook.trust.notation.levels import Level, level
from webhook.trust.notation.truststore import (
    MAX_CERTIFICATES,
    TrustStore,
    fingerprint,
    load_store,
)

#: The store fields of the grammar, with the ``load_store`` keyword of each kind.
STORES: Final = (
    ("trustStore", "ca"),
    ("signingAuthorityStore", "signing_authority"),
    ("tsaStore", "tsa"),
)
#: What level skip, which verifies nothing, must not be given.
_VERIFYING: Final = (
    "trustStore",
    "signingAuthorityStore",
    "tsaStore",
    "trustedIdentities",
    "verifyTimestamp",
)
_INLINE: Final = "inline PEM"


def compile_notation(section: Mapping[str, Any], origin: Origin, field: str) -> NotationRef:
    """The ``notation`` authority at ``field``, its stores read now.

    Raises:
        PolicyError: naming the field of the one mistake; PolicyErrors listing
            each when there are several.
    """
    errors: list[PolicyError] = []
    # The level's mistakes come after the stores' and identities', as written.
    level_errors: list[PolicyError] = []
    chosen = _level(section, origin, field, level_errors)
    if section.get("level") == "skip":
        given = [name for name in _VERIFYING if name in section]
        if given:
            them = "it" if len(given) == 1 else "them"
            message = (
                f"level skip verifies nothing, so it takes no {', '.join(given)}; remove "
                f"{them}, or choose level strict, permissive or audit"
            )
            errors.append(origin.error(message, f"{field}.{given[0]}"))
        _raise([*errors, *level_errors])
        assert chosen is not None  # a mistake in level or override was raised
        return NotationRef(TrustStore(), TrustedIdentities(any=False), chosen)
    loaded: dict[str, tuple[x509.Certificate, ...]] = {}
    origins: list[str] = []
    for name, kind in STORES:
        if name in section:
            certs = _store(section[name], kind, origin, f"{field}.{name}", origins, errors)
            loaded[kind] = certs
    if "trustStore" not in section and "signingAuthorityStore" not in section:
        message = (
            "needs trustStore (CA or self-signed certificates, for notary.x509 signatures) "
            "or signingAuthorityStore (for notary.x509.signingAuthority signatures)"
        )
        errors.append(origin.error(message, field))
    identities = _identities(section.get("trustedIdentities"), origin, field, errors)
    errors.extend(level_errors)
    if "verifyTimestamp" in section and "tsaStore" not in section:
        message = (
            "only applies with tsaStore: without a trusted timestamp authority the "
            "certificate chain must be valid when the signature is verified"
        )
        errors.append(origin.error(message, f"{field}.verifyTimestamp"))
    _raise(errors)
    assert chosen is not None and identities is not None  # each error above was raised
    store = TrustStore(
        ca=loaded.get("ca", ()),
        signing_authority=loaded.get("signing_authority", ()),
        tsa=loaded.get("tsa", ()),
        origins=tuple(origins),
    )
    return NotationRef(
        store,
        identities,
        chosen,
        verify_timestamp=cast(VerifyTimestamp, section.get("verifyTimestamp", "always")),
        files=tuple(dict.fromkeys(o for o in origins if o != _INLINE)),
        store_digest=store_digest(store),
    )


def store_digest(store: TrustStore) -> str:
    """SHA-256 over the store's certificates by kind: what a cached outcome depends on."""
    digest = hashlib.sha256()
    for kind, certs in (("ca", store.ca), ("sa", store.signing_authority), ("tsa", store.tsa)):
        for cert in certs:
            digest.update(f"{kind} {fingerprint(cert)}\n".encode())
    return "sha256:" + digest.hexdigest()


def _raise(errors: Sequence[PolicyError]) -> None:
    if errors:
        raise errors[0] if len(errors) == 1 else PolicyErrors(errors)


def _level(
    section: Mapping[str, Any], origin: Origin, field: str, errors: list[PolicyError]
) -> Level | None:
    """``level`` (default strict) with ``override`` applied; None after a mistake.

    Each override entry is tried alone first, so that a mistake names its key.
    """
    name = section.get("level", "strict")
    try:
        named = level(name)
    except ValueError as exc:
        errors.append(origin.error(str(exc), f"{field}.level"))
        return None
    override: Mapping[str, str] = section.get("override") or {}
    if not override:
        return named
    if named.skipped:
        message = "level skip verifies nothing and cannot be customised"
        errors.append(origin.error(message, f"{field}.override"))
        return None
    wrong = False
    for key, value in override.items():
        try:
            level(name, {key: value})
        except ValueError as exc:
            errors.append(origin.error(str(exc), f"{field}.override.{key}"))
            wrong = True
    return None if wrong else level(name, override)


def _store(
    value: Any,
    kind: str,
    origin: Origin,
    field: str,
    origins: list[str],
    errors: list[PolicyError],
) -> tuple[x509.Certificate, ...]:
    """The certificates of one store field: a file, ``{pem: ...}``, or a list of them."""
    single = isinstance(value, str | Mapping)
    entries: list[str | Mapping[str, str]] = [value] if single else list(value)
    # Relative to the policy file as it is named, not to where its symlink
    # points: a ConfigMap's timestamped directory vanishes at the next update.
    base = Path(os.path.abspath(origin.file.parent))
    found: list[x509.Certificate] = []
    for number, entry in enumerate(entries):
        where = field if single else f"{field}[{number}]"
        text = entry if isinstance(entry, str) else entry["pem"]
        if not isinstance(entry, str):
            where += ".pem"
        try:
            part = load_store(base=base, **{kind: text})
        except PolicyError as exc:
            errors.append(origin.error(exc.message, where))
            continue
        origins.extend(part.origins)
        for cert in (*part.ca, *part.signing_authority, *part.tsa):
            if cert not in found:
                found.append(cert)
    if len(found) > MAX_CERTIFICATES:
        errors.append(origin.error(f"holds over {MAX_CERTIFICATES} certificates", field))
    return tuple(found)


def _identities(
    values: Sequence[str] | None, origin: Origin, field: str, errors: list[PolicyError]
) -> TrustedIdentities | None:
    """``trustedIdentities`` parsed; each malformed entry is an error at its index."""
    where = f"{field}.trustedIdentities"
    if values is None:
        message = (
            'is required: the x509.subject identities to trust ("x509.subject: C=.., ST=.., '
            'O=.."), or ["*"] for any certificate the trust store vouches for'
        )
        errors.append(origin.error(message, where))
        return None
    broken = False
    for number, value in enumerate(values):
        if value == WILDCARD:
            continue
        try:
            parse_pattern(value)
        except IdentityError as exc:
            errors.append(origin.error(str(exc), f"{where}[{number}]"))
            broken = True
    if broken:
        return None
    try:
        return parse_identities(values)
    except IdentityError as exc:
        errors.append(origin.error(str(exc), where))
        return None
