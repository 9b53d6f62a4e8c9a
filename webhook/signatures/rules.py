"""The rules of ``spec.signatures``, as each form a signature comes in must meet them.

A signature counts only when what it signed meets every rule of the policy,
whatever form it takes:

- the image digest: a simple signing payload (``.sig`` layer) names it in
  ``critical.image.docker-manifest-digest``; an in-toto statement (DSSE bundle)
  in the digest of a ``subject`` entry; a message-signature bundle signs it.
- ``annotations``: the payload's ``optional``; the ``annotations`` of that
  subject entry (where ``cosign sign -a`` puts them in a DSSE bundle); a
  message-signature bundle cannot carry any.
- ``matchReference``: the payload's ``critical.identity.docker-reference``;
  the ``name`` of that subject entry; a message-signature bundle names no
  repository.

A Notation signature meets them in ``notation.verifier``: ``annotations`` in
its signed descriptor's annotations; it names no repository, so it never
counts under ``matchReference``.

A form that cannot carry a rule the policy sets never counts under that rule:
a message-signature bundle signs a bare digest, so it counts for no policy
with ``annotations`` or ``matchReference``. In a statement, the digest, the
name and the annotations must all be those of one subject entry: a statement
cannot borrow the name of one subject and the digest of another.

Sans-I/O and pure: parsed payloads in, a reason (or None) out.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from webhook.core.errors import ImageReferenceError
from webhook.core.reference import parse_reference
from webhook.core.untrusted import shown


def annotations_problem(found: Mapping[str, Any], required: Mapping[str, str]) -> str | None:
    """Why ``found`` lacks a ``required`` annotation (name and exact string value), or None."""
    for name, wanted in required.items():
        value = found.get(name)
        if value is None:
            return f"missing annotation {name}={wanted}"
        if value != wanted:
            got = shown(value) if isinstance(value, str) else "a non-string value"
            return f"annotation {name}={got}, not {name}={wanted}"
    return None


def reference_problem(signed: str, repository: str) -> str | None:
    """Why a signature naming ``signed`` is not for ``repository``, or None.

    Tags, digests and Docker Hub spellings aside, both must name one repository;
    an empty or unparsable name never matches.
    """
    if same_repository(signed, repository):
        return None
    if not signed:
        return f"signed for no repository, not {repository}"
    return f"signed for repository {shown(signed)}, not {repository}"


def same_repository(signed: str, expected: str) -> bool:
    """Whether two references name one repository, ignoring tags and digests."""
    try:
        return parse_reference(signed).repository == parse_reference(expected).repository
    except ImageReferenceError:
        return False


def message_signature_problem(
    *, required_annotations: Mapping[str, str], check_reference: bool
) -> str | None:
    """Why a message-signature bundle (a signature over the bare digest) cannot count, or None."""
    if required_annotations:
        wanted = ", ".join(f"{name}={value}" for name, value in required_annotations.items())
        return (
            f"a message-signature bundle carries no annotations, and the policy requires {wanted}"
        )
    if check_reference:
        return "a message-signature bundle names no repository, and the policy sets matchReference"
    return None


def statement_problem(
    statement: Mapping[str, Any],
    *,
    image_digest: str,
    repository: str,
    required_annotations: Mapping[str, str],
    check_reference: bool,
) -> str | None:
    """Why no ``subject`` entry of an in-toto statement meets the rules for the image, or None.

    One entry must name ``image_digest`` and, as the policy asks, ``repository``
    (its ``name``) and each required annotation (its ``annotations``). The
    reason is that of the first entry naming the digest.
    """
    first: str | None = None
    for subject in _subjects_of(statement, image_digest):
        name = subject.get("name")
        named = name if isinstance(name, str) else ""
        annotations = subject.get("annotations")
        problem = annotations_problem(
            annotations if isinstance(annotations, dict) else {}, required_annotations
        )
        if check_reference and not same_repository(named, repository):
            problem = f"names repository {shown(named) if named else 'none'}, not {repository}"
        if problem is None:
            return None
        first = first or f"signed statement {problem}"
    return first or f"signed statement is about another subject, not {image_digest}"


def statement_subject_matches(statement: Mapping[str, Any], digest: str) -> bool:
    """Whether an in-toto statement names ``digest`` (``alg:hex``) among its subjects."""
    return bool(_subjects_of(statement, digest))


def _subjects_of(statement: Mapping[str, Any], digest: str) -> list[Mapping[str, Any]]:
    """The subject entries of ``statement`` whose digest of ``digest``'s algorithm is it."""
    algorithm, _, expected = digest.partition(":")
    subjects = statement.get("subject")
    if not expected or not isinstance(subjects, list):
        return []
    found: list[Mapping[str, Any]] = []
    for subject in subjects:
        if not isinstance(subject, dict):
            continue
        digests = subject.get("digest")
        if isinstance(digests, dict) and digests.get(algorithm) == expected:
            found.append(subject)
    return found
