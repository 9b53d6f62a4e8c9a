"""The authorities of a policy section: keys, keyless identities, Notation trust stores.

Each is read and checked when the policies load (key files parsed, trusted
roots loaded, regular expressions compiled, Notation stores read through
``notation``), so the request path opens no files; two authorities of one
list that are one signer are refused, as a threshold counts signers. Every
mistake is a PolicyError naming the file, document and field; those of
several authorities are reported together.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

from webhook.core.errors import PolicyError, PolicyErrors
from webhook.policy.model import Authority, Keyless, KeyRef
from webhook.policy.notation import compile_notation
from webhook.policy.origin import Origin
from webhook.trust.keys import key_fingerprint, load_public_key
from webhook.trust.notation.truststore import fingerprint as certificate_fingerprint
from webhook.trust.trustroot import PRODUCTION


def compile_authorities(
    entries: Sequence[Mapping[str, Any]], origin: Origin, where: str, *, signatures: bool = False
) -> tuple[Authority, ...]:
    """The authorities of ``where``, each read and checked now.

    ``signatures``: whether ``where`` is ``spec.signatures``, the only section
    whose keys may require a log entry (``tlog``) and that may hold Notation
    authorities (attestations signed with Notation are not read yet).

    Raises:
        PolicyError: naming the field of the mistake; PolicyErrors listing each
            when several authorities have one.
    """
    authorities = []
    errors: list[PolicyError] = []
    names: dict[str, int] = {}
    for number, raw in enumerate(entries):
        field = f"{where}.authorities[{number}]"
        name = raw["name"]
        if name in names:
            message = f"authority name {name!r} is already used by authorities[{names[name]}]"
            errors.append(origin.error(message, f"{field}.name"))
            continue
        names[name] = number
        try:
            authorities.append(_authority(raw, origin, field, signatures))
        except PolicyErrors as exc:
            errors.extend(exc.errors)
        except PolicyError as exc:
            errors.append(exc)
    if errors:
        raise errors[0] if len(errors) == 1 else PolicyErrors(errors)
    _check_distinct(authorities, origin, where)
    return tuple(authorities)


def _authority(raw: Mapping[str, Any], origin: Origin, field: str, signatures: bool) -> Authority:
    key = raw.get("key")
    keyless = raw.get("keyless")
    notation = raw.get("notation")
    if key is not None and "tlog" in key and not signatures:
        message = "tlog is supported for spec.signatures authorities only"
        raise origin.error(message, f"{field}.key.tlog")
    if notation is not None and not signatures:
        message = (
            "notation authorities verify image signatures (spec.signatures) only; "
            "attestations and reports signed with Notation are not read yet"
        )
        raise origin.error(message, f"{field}.notation")
    return Authority(
        name=raw["name"],
        key=None if key is None else _key(key, origin, f"{field}.key"),
        keyless=None if keyless is None else _keyless(keyless, origin, f"{field}.keyless"),
        notation=None
        if notation is None
        else compile_notation(notation, origin, f"{field}.notation"),
    )


def _check_distinct(authorities: Sequence[Authority], origin: Origin, where: str) -> None:
    """Refuse two authorities of one list that are one signer: the same key or identity.

    A threshold counts distinct signers, so a second name for a key adds
    nothing; it is a copy-paste mistake or an attempt to meet a threshold with
    one signature. Keys are compared as keys (their SubjectPublicKeyInfo), not
    as text, keyless identities by issuer, subject and extensions, whatever
    the trusted root, and Notation authorities by the certificates that anchor
    a signing chain (ca and signingAuthority, as certificates) and their
    trusted identities, whatever the level or the TSA store.
    """
    seen: dict[object, tuple[int, str]] = {}
    for number, authority in enumerate(authorities):
        if authority.key is not None and authority.key.pem is not None:
            key = load_public_key(authority.key.pem, source=authority.name)
            fingerprint = key_fingerprint(key)
            same: object = ("key", fingerprint)
            what = f"the same key ({fingerprint[:19]}...)"
            part = "key"
        elif authority.keyless is not None:
            k = authority.keyless
            same = ("keyless", k.issuer, k.issuer_regexp, k.subject, k.subject_regexp, k.extensions)
            what = "the same keyless identity"
            part = "keyless"
        elif authority.notation is not None and not authority.notation.level.skipped:
            n = authority.notation
            anchors = (*n.store.ca, *n.store.signing_authority)
            roots = frozenset(certificate_fingerprint(cert) for cert in anchors)
            same = ("notation", roots, n.identities.any, frozenset(n.identities.patterns))
            what = "the same Notation trust store and trusted identities"
            part = "notation"
        else:
            continue
        if same in seen:
            first, name = seen[same]
            message = (
                f"authority {authority.name!r} holds {what} as authority {name!r} "
                f"(authorities[{first}]); one signer counts once toward a threshold, so "
                "list each key or identity once"
            )
            raise origin.error(message, f"{where}.authorities[{number}].{part}")
        seen[same] = (number, authority.name)


def _key(key: Mapping[str, Any], origin: Origin, field: str) -> KeyRef:
    """The key, read and checked now, with its log's root: the request path opens no files."""
    if "pem" in key:
        _check_key(key["pem"], "inline key", origin, f"{field}.pem")
        return _logged(KeyRef(pem=key["pem"]), key, origin, field)
    # Relative to the policy file as it is named, not to where its symlink
    # points: a ConfigMap's timestamped directory vanishes at the next update.
    path = Path(os.path.abspath(origin.file.parent / key["file"]))
    try:
        text = path.read_text(encoding="ascii")
    except IsADirectoryError as exc:
        raise origin.error(f"key file {path} is a directory", f"{field}.file") from exc
    except OSError as exc:
        message = f"cannot read key file {path}: {exc.strerror}"
        raise origin.error(message, f"{field}.file") from exc
    except UnicodeDecodeError as exc:
        raise origin.error(f"key file {path} is not a PEM file", f"{field}.file") from exc
    _check_key(text, f"key file {path}", origin, f"{field}.file")
    return _logged(KeyRef(pem=text, file=str(path)), key, origin, field)


def _logged(ref: KeyRef, key: Mapping[str, Any], origin: Origin, field: str) -> KeyRef:
    """``ref`` with ``tlog: required`` and its trusted root, loaded now, when asked for."""
    if key.get("tlog") != "required":
        if "trustedRoot" in key:
            message = "only applies with tlog: required (it is the root that verifies log entries)"
            raise origin.error(message, f"{field}.trustedRoot")
        return ref
    try:
        root = origin.root(key.get("trustedRoot", PRODUCTION))
    except PolicyError as exc:
        raise origin.error(exc.message, f"{field}.trustedRoot") from exc
    return replace(
        ref, tlog_required=True, trusted_root=root.name, root_digest=root.digest, root=root
    )


def _check_key(pem: str, source: str, origin: Origin, field: str) -> None:
    try:
        load_public_key(pem, source=source)
    except PolicyError as exc:
        raise origin.error(exc.message, field) from exc


def compile_keyless(keyless: Mapping[str, Any], origin: Origin, field: str) -> Keyless:
    """A ``keyless`` identity of the image policies' grammar, for another section that uses it.

    ``policies.signature`` of trustgate.yaml names its keyless signers so; a
    mistake is a PolicyError at ``field`` of ``origin``, whose directory
    relative ``trustedRoot`` paths resolve against.
    """
    return _keyless(keyless, origin, field)


def _keyless(keyless: Mapping[str, Any], origin: Origin, field: str) -> Keyless:
    """The identity, with its regexes compiled and its trusted root loaded now."""
    for name in ("issuerRegExp", "subjectRegExp"):
        if name in keyless:
            try:
                re.compile(keyless[name])
            except re.error as exc:
                message = f"is not a valid regular expression: {exc}"
                raise origin.error(message, f"{field}.{name}") from exc
    try:
        root = origin.root(keyless.get("trustedRoot", PRODUCTION))
    except PolicyError as exc:
        raise origin.error(exc.message, f"{field}.trustedRoot") from exc
    return Keyless(
        issuer=keyless.get("issuer"),
        issuer_regexp=keyless.get("issuerRegExp"),
        subject=keyless.get("subject"),
        subject_regexp=keyless.get("subjectRegExp"),
        trusted_root=root.name,
        extensions=tuple(sorted(keyless.get("extensions", {}).items())),
        root_digest=root.digest,
        root=root,
    )


#: The vulnerability report predicate type the attestation source reads by default.
