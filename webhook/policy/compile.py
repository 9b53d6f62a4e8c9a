"""Policy documents compiled into ``Policy`` and ``PolicyException`` objects.

A document of kind ``ImagePolicy`` is checked against the schema, then
compiled: globs parsed, key files and trusted roots read, regular expressions
and CEL conditions compiled, so the request path opens no files. Documents of
kind ``ImagePolicyTest`` belong to the test-case runner and are skipped here
once their apiVersion is checked; ``ImagePolicyException`` documents are
compiled by ``exceptions``. Every mistake is a ``PolicyError`` naming the
file, document and field.
"""

from __future__ import annotations

import math
import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, cast

from webhook.core.errors import PolicyError, PolicyErrors
from webhook.policy.cel import Condition, ConditionError, compile_condition
from webhook.policy.exceptions import KIND as EXCEPTION_KIND
from webhook.policy.exceptions import compile_exception
from webhook.policy.globs import Glob, repository_glob_problem
from webhook.policy.model import (
    Attestation,
    Authority,
    BreakGlass,
    Freshness,
    Grade,
    Keyless,
    KeyRef,
    Match,
    Mode,
    OnUnknown,
    Policy,
    PolicyException,
    Signatures,
)
from webhook.policy.schema import validate_document
from webhook.trust.keys import key_fingerprint, load_public_key
from webhook.trust.trustroot import (
    PRODUCTION,
    TrustRoot,
    TrustRoots,
    load_trusted_root,
)

API_VERSION = "trustgate.dev/v1alpha1"
#: Files of this media type in the policy directory are trusted roots, not policies.
TRUSTED_ROOT_MEDIA_TYPE = "application/vnd.dev.sigstore.trustedroot"
POLICY_KIND = "ImagePolicy"
TEST_KIND = "ImagePolicyTest"


@dataclass(frozen=True, slots=True)
class Origin:
    """Where a document comes from: its file, its index there, and the roots to load."""

    file: Path
    document: int
    roots: TrustRoots | None = None

    def root(self, spec: str) -> TrustRoot:
        """The trusted root ``spec`` names, relative to this file; raises PolicyError."""
        if self.roots is None:
            return load_trusted_root(spec, self.file.parent)
        return self.roots.load(spec, self.file.parent)

    def error(self, message: str, field: str | None = None) -> PolicyError:
        """A PolicyError at ``field`` of this document."""
        return PolicyError(message, file=str(self.file), document=self.document, field=field)


def _is_trusted_root(document: Mapping[str, Any]) -> bool:
    media_type = document.get("mediaType")
    return isinstance(media_type, str) and media_type.startswith(TRUSTED_ROOT_MEDIA_TYPE)


def compile_document(document: Any, origin: Origin) -> Policy | PolicyException | None:
    """``document`` compiled; None for an ImagePolicyTest or a Sigstore trusted root.

    Raises:
        PolicyError: naming the file, document and field of the mistake; PolicyErrors
            listing each when the schema or the repository globs find several.
    """
    if not isinstance(document, dict):
        raise origin.error(f"a document must be a mapping, not {type(document).__name__}")
    api_version = document.get("apiVersion")
    if api_version is None and _is_trusted_root(document):
        # A Sigstore trusted root kept beside the policies (a ConfigMap has no
        # subdirectories); it is read, and checked, by the policies naming it.
        return None
    if api_version is None:
        raise origin.error("is required", "apiVersion")
    if api_version != API_VERSION:
        raise origin.error(f"must be {API_VERSION} (got {api_version!r})", "apiVersion")
    kind = document.get("kind")
    if kind == TEST_KIND:
        return None
    if kind is None:
        raise origin.error("is required", "kind")
    if kind == EXCEPTION_KIND:
        return compile_exception(document, file=str(origin.file), index=origin.document)
    if kind != POLICY_KIND:
        kinds = f"{POLICY_KIND}, {EXCEPTION_KIND} or {TEST_KIND}"
        raise origin.error(f"must be {kinds} (got {kind!r})", "kind")
    validate_document(document, file=str(origin.file), document=origin.document)
    return _compile(document, origin)


def _compile(document: Mapping[str, Any], origin: Origin) -> Policy:
    spec = document["spec"]
    _check_repository_globs(spec, origin)
    signatures = spec.get("signatures")
    freshness = spec.get("freshness")
    return Policy(
        name=document["metadata"]["name"],
        mode=cast(Mode, spec.get("mode", "enforce")),
        match=_match(spec.get("match", {})),
        registries=_globs(spec["registries"]),
        require_digest=spec.get("requireDigest", False),
        pin_digest=_pin_digest(spec, origin),
        signatures=None if signatures is None else _signatures(signatures, origin),
        freshness=None if freshness is None else _freshness(freshness, spec, origin),
        attestations=tuple(
            _attestation(entry, origin, f"spec.attestations[{number}]")
            for number, entry in enumerate(spec.get("attestations", []))
        ),
        source=str(origin.file),
        break_glass=_break_glass(spec.get("breakGlass")),
    )


def _break_glass(section: Mapping[str, Any] | None) -> BreakGlass:
    if section is None:
        return BreakGlass()
    return BreakGlass(
        allowed=section["allowed"],
        groups=frozenset(section.get("groups", [])),
        users=frozenset(section.get("users", [])),
    )


def _pin_digest(spec: Mapping[str, Any], origin: Origin) -> bool:
    """``spec.pinDigest``: on by default when a check verifies the digest.

    Only signatures, attestations and freshness grades are bound to a digest;
    a policy without them has no verified digest to pin, so asking for it is
    refused rather than silently ignored.
    """
    verifies = any(spec.get(key) for key in ("signatures", "attestations", "freshness"))
    pin = spec.get("pinDigest")
    if pin is None:
        return verifies
    if pin and not verifies:
        raise origin.error(
            "needs a check that verifies the digest (signatures, attestations or "
            "freshness): this policy has none, so there is no verified digest to pin",
            "spec.pinDigest",
        )
    return bool(pin)


def _check_repository_globs(spec: Mapping[str, Any], origin: Origin) -> None:
    """Refuse repository globs that can never match (a scheme, a tag, a character class): all
    of them at once (PolicyErrors), so that lint shows each."""
    images = spec.get("match", {}).get("images", [])
    fields = (("spec.registries", spec["registries"]), ("spec.match.images", images))
    errors = [
        origin.error(problem, f"{where}[{number}]")
        for where, patterns in fields
        for number, pattern in enumerate(patterns)
        if (problem := repository_glob_problem(pattern)) is not None
    ]
    if errors:
        raise errors[0] if len(errors) == 1 else PolicyErrors(errors)


def _globs(patterns: Sequence[str]) -> tuple[Glob, ...]:
    return tuple(Glob(pattern) for pattern in patterns)


def _match(match: Mapping[str, Any]) -> Match:
    return Match(
        namespaces=_globs(match.get("namespaces", ["*"])),
        exclude_namespaces=_globs(match.get("excludeNamespaces", [])),
        kinds=frozenset(match.get("kinds", [])),
        images=_globs(match.get("images", ["**"])),
    )


def _signatures(section: Mapping[str, Any], origin: Origin) -> Signatures:
    where = "spec.signatures"
    authorities = _authorities(section["authorities"], origin, where, tlog=True)
    threshold = _threshold(section, len(authorities), origin, where)
    return Signatures(
        threshold=threshold,
        authorities=authorities,
        annotations=tuple(sorted(section.get("annotations", {}).items())),
        match_reference=section.get("matchReference", False),
        per_platform=section.get("perPlatform", False),
    )


def _attestation(entry: Mapping[str, Any], origin: Origin, where: str) -> Attestation:
    authorities = _authorities(entry["authorities"], origin, where)
    return Attestation(
        predicate_type=entry["predicateType"],
        authorities=authorities,
        threshold=_threshold(entry, len(authorities), origin, where),
        conditions=tuple(
            _condition(text, origin, f"{where}.conditions[{number}]")
            for number, text in enumerate(entry.get("conditions", []))
        ),
    )


def _condition(text: str, origin: Origin, field: str) -> Condition:
    """``text`` compiled; a PolicyError names the field, line and column of the mistake."""
    try:
        return compile_condition(text)
    except ConditionError as exc:
        raise origin.error(f"the CEL expression does not compile: {exc}", field) from None


def _authorities(
    entries: Sequence[Mapping[str, Any]], origin: Origin, where: str, *, tlog: bool = False
) -> tuple[Authority, ...]:
    """The authorities of ``where``; ``tlog``: whether keys may require a log entry."""
    authorities = []
    names: dict[str, int] = {}
    for number, raw in enumerate(entries):
        field = f"{where}.authorities[{number}]"
        name = raw["name"]
        if name in names:
            message = f"authority name {name!r} is already used by authorities[{names[name]}]"
            raise origin.error(message, f"{field}.name")
        names[name] = number
        key = raw.get("key")
        keyless = raw.get("keyless")
        if key is not None and "tlog" in key and not tlog:
            message = "tlog is supported for spec.signatures authorities only"
            raise origin.error(message, f"{field}.key.tlog")
        authorities.append(
            Authority(
                name=name,
                key=None if key is None else _key(key, origin, f"{field}.key"),
                keyless=None if keyless is None else _keyless(keyless, origin, f"{field}.keyless"),
            )
        )
    _check_distinct(authorities, origin, where)
    return tuple(authorities)


def _check_distinct(authorities: Sequence[Authority], origin: Origin, where: str) -> None:
    """Refuse two authorities of one list that are one signer: the same key or identity.

    A threshold counts distinct signers, so a second name for a key adds
    nothing; it is a copy-paste mistake or an attempt to meet a threshold with
    one signature. Keys are compared as keys (their SubjectPublicKeyInfo), not
    as text, and keyless identities by issuer, subject and extensions, whatever
    the trusted root.
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


def _threshold(section: Mapping[str, Any], count: int, origin: Origin, where: str) -> int:
    threshold: int = section.get("threshold", 1)
    if threshold > count:
        message = f"is {threshold}, more than the {count} authorities listed"
        raise origin.error(message, f"{where}.threshold")
    return threshold


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
_REPORT_TYPES = ("https://cosign.sigstore.dev/attestation/vuln/v1",)


def _freshness(section: Mapping[str, Any], spec: Mapping[str, Any], origin: Origin) -> Freshness:
    """``spec.freshness``; a source is a name or ``{attestation: {authorities: [...]}}``."""
    max_age = section.get("maxReportAge")
    names: list[str] = []
    authorities: tuple[Authority, ...] = ()
    types: tuple[str, ...] = _REPORT_TYPES
    explicit: tuple[str, ...] = ()
    for number, source in enumerate(section.get("sources", ["pyxis"])):
        where = f"spec.freshness.sources[{number}]"
        name = source if isinstance(source, str) else next(iter(source))
        if name in names:
            raise origin.error(f"source {name} is listed twice", where)
        names.append(name)
        if isinstance(source, Mapping):
            entry = source["attestation"]
            authorities = _authorities(entry["authorities"], origin, f"{where}.attestation")
            types = tuple(entry.get("predicateTypes", _REPORT_TYPES))
            explicit = tuple(entry.get("predicateTypes", ()))
        elif name == "attestation":
            attested = {a["predicateType"] for a in spec.get("attestations", [])}
            if not attested & set(types):
                raise origin.error(
                    "the attestation source needs authorities: write "
                    "{attestation: {authorities: [...]}}, or require a vulnerability report "
                    f"({types[0]}) in spec.attestations",
                    where,
                )
    return Freshness(
        minimum_grade=cast(Grade, section["minimumGrade"]),
        sources=tuple(names),
        on_unknown=cast(OnUnknown, section.get("onUnknown", "deny")),
        max_report_age_days=None if max_age is None else _days(max_age),
        warn_before_days=section.get("warnBeforeDays"),
        report_authorities=authorities,
        report_types=explicit,
    )


def _days(duration: str) -> int:
    """``7d`` as 7 and ``36h`` as 2: hours round up to whole days."""
    number, unit = int(duration[:-1]), duration[-1]
    return number if unit == "d" else math.ceil(number / 24)
