"""Policies from a directory: read, compile, fingerprint.

``documents`` finds the files and parses them into plain data, ``compile``
turns each document into a ``Policy`` or ``PolicyException``; this module
puts a directory's together into a ``PolicySet`` with a fingerprint of
everything read. An exception naming a policy the directory does not hold
is a mistake.

Mistakes are collected over the whole directory and raised together, so that
``trustgate policy lint`` shows them all at once. Whatever the files hold,
loading raises nothing but ``PolicyError``.
"""

from __future__ import annotations

import dataclasses
import hashlib
from collections.abc import Iterator
from pathlib import Path

from webhook.core.errors import PolicyError, PolicyErrors
from webhook.policy.compile import compile_document
from webhook.policy.documents import iter_documents, parse, policy_files, read
from webhook.policy.exceptions import cross_check
from webhook.policy.model import (
    Keyless,
    KeyRef,
    NotationRef,
    Policy,
    PolicyException,
    PolicySet,
)
from webhook.policy.origin import Origin
from webhook.policy.relocate import Relocation
from webhook.trust.trustroot import EMBEDDED_ROOTS, PRODUCTION, TrustRoots

__all__ = ["PolicyErrors", "iter_documents", "load_copy", "load_directory", "load_file"]


def load_file(path: Path) -> list[Policy]:
    """The policies of one file, compiled.

    Raises:
        PolicyErrors: listing every mistake in the file.
    """
    errors: list[PolicyError] = []
    try:
        data = read(path)
    except PolicyError as exc:
        raise PolicyErrors([exc]) from exc
    found = _policies(_load(path, data, errors))
    _check_unique(found, errors)
    if errors:
        raise PolicyErrors(_in_file_order(errors))
    return [policy for policy, _ in found]


def load_directory(
    path: Path, roots: TrustRoots | None = None, *, shown_as: Path | None = None
) -> PolicySet:
    """Every policy in directory ``path``, compiled into a ``PolicySet``.

    Trusted roots come from ``roots`` when given (a refreshed production root
    then counts in the fingerprint), else from ``load_trusted_root``.
    ``shown_as`` is the directory ``path`` is a copy of (the store loads a
    signed set from a copy of the bytes it verified): the set and the errors
    then name files there, as a load of that directory would.

    The set's fingerprint is a SHA-256 over the name and content of every file
    read, key files, trusted roots and trust stores included, so equal
    fingerprints mean identical policies.

    Raises:
        PolicyErrors: listing every mistake found, or saying that the directory
            does not exist or holds no ImagePolicy document (an empty set would
            send every image to the no-match default).
    """
    if shown_as is None:
        return _load_directory(path, roots, None)
    return load_copy(path, Relocation(path, shown_as), roots)


def load_copy(path: Path, relocation: Relocation, roots: TrustRoots | None = None) -> PolicySet:
    """As ``load_directory(path, roots, shown_as=...)``, with the ``relocation`` it rewrites by.

    The caller reads ``relocation.read_from_real`` afterwards: the files the
    policies read from the real directory rather than from the copy ``path``.
    """
    try:
        return _load_directory(path, roots, relocation)
    except PolicyErrors as exc:
        raise PolicyErrors([relocation.error(error) for error in exc.errors]) from None


def _load_directory(
    path: Path, roots: TrustRoots | None, relocation: Relocation | None
) -> PolicySet:
    errors: list[PolicyError] = []
    loaded: list[tuple[Policy | PolicyException, Origin]] = []
    digest = hashlib.sha256()
    try:
        files = policy_files(path)
    except PolicyError as exc:
        raise PolicyErrors([exc]) from exc
    for file in files:
        try:
            data = read(file)
        except PolicyError as exc:
            errors.append(exc)
            continue
        name = file.name.encode()
        digest.update(len(name).to_bytes(8, "big") + name)
        digest.update(len(data).to_bytes(8, "big") + data)
        loaded.extend(_load(file, data, errors, roots))
    if relocation is not None:
        relocation.note_read(path for item, _ in loaded for path, _ in _references(item))
        loaded = [(relocation.value(item), origin) for item, origin in loaded]
    found = _policies(loaded)
    _check_unique(found, errors)
    exceptions = [
        (item, origin.document) for item, origin in loaded if not isinstance(item, Policy)
    ]
    errors.extend(cross_check(exceptions, (policy for policy, _ in found)))
    if errors:
        raise PolicyErrors(_in_file_order(errors))
    if not found:
        raise PolicyErrors([PolicyError(f"no ImagePolicy documents found in {path}")])
    policies = sorted((policy for policy, _ in found), key=lambda p: p.name)
    references = sorted({ref for policy in policies for ref in _references(policy)})
    for referenced, content in references:
        digest.update(f"{len(referenced)}:{referenced}:{content}".encode())
    if roots is not None and roots.fingerprint:
        digest.update(f"refreshed {PRODUCTION} root:{roots.fingerprint}".encode())
    return PolicySet(
        policies=tuple(policies),
        fingerprint=digest.hexdigest(),
        files=tuple(dict.fromkeys(referenced for referenced, _ in references)),
        exceptions=tuple(sorted((e for e, _ in exceptions), key=lambda e: e.name)),
    )


def _policies(
    loaded: list[tuple[Policy | PolicyException, Origin]],
) -> list[tuple[Policy, Origin]]:
    return [(item, origin) for item, origin in loaded if isinstance(item, Policy)]


def _references(value: object) -> Iterator[tuple[str, str]]:
    """``(path, content)`` of every file a compiled policy read besides itself.

    Key files, trusted roots and Notation trust stores count: editing one must
    reload the policies (keys rotate), so the store watches these paths and the
    set's fingerprint covers their content (the PEM text, the root's digest,
    the digest of the store's certificates).
    """
    if isinstance(value, KeyRef):
        if value.file is not None:
            yield value.file, value.pem or ""
        if value.tlog_required and value.trusted_root not in EMBEDDED_ROOTS:
            yield value.trusted_root, value.root_digest
    elif isinstance(value, Keyless):
        if value.trusted_root not in EMBEDDED_ROOTS:
            yield value.trusted_root, value.root_digest
    elif isinstance(value, NotationRef):
        for file in value.files:
            yield file, value.store_digest
    elif isinstance(value, tuple):
        for item in value:
            yield from _references(item)
    elif dataclasses.is_dataclass(value) and not isinstance(value, type):
        for item in dataclasses.fields(value):
            yield from _references(getattr(value, item.name))


def _in_file_order(errors: list[PolicyError]) -> list[PolicyError]:
    return sorted(errors, key=lambda error: (error.file or "", error.document or 0))


def _load(
    file: Path, data: bytes, errors: list[PolicyError], roots: TrustRoots | None = None
) -> list[tuple[Policy | PolicyException, Origin]]:
    """The policies and exceptions of one file's content; mistakes are appended to ``errors``."""
    found: list[tuple[Policy | PolicyException, Origin]] = []
    try:
        for _, index, document in parse(file, data):
            origin = Origin(file, index, roots)
            try:
                policy = compile_document(document, origin)
            except PolicyErrors as exc:
                errors.extend(exc.errors)
                continue
            except PolicyError as exc:
                errors.append(exc)
                continue
            if policy is not None:
                found.append((policy, origin))
    except PolicyError as exc:
        errors.append(exc)
    return found


def _check_unique(found: list[tuple[Policy, Origin]], errors: list[PolicyError]) -> None:
    first: dict[str, Origin] = {}
    for policy, origin in found:
        earlier = first.setdefault(policy.name, origin)
        if earlier is not origin:
            message = (
                f"policy name {policy.name!r} is already used in "
                f"{earlier.file}, document {earlier.document}"
            )
            errors.append(origin.error(message, "metadata.name"))
