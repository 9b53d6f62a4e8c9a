"""Policy documents compiled into ``Policy`` and ``PolicyException`` objects.

A document of kind ``ImagePolicy`` is checked against the schema, then
compiled: globs parsed, CEL conditions compiled and authorities read
(``authorities``: key files, trusted roots, Notation trust stores), so the
request path opens no files. Documents of kind ``ImagePolicyTest`` belong to
the test-case runner and are skipped here once their apiVersion is checked;
``ImagePolicyException`` documents are compiled by ``exceptions``. Every
mistake is a ``PolicyError`` naming the file, document and field.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any, cast

from webhook.core.errors import PolicyErrors
from webhook.policy.authorities import compile_authorities
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
    Match,
    Mode,
    OnUnknown,
    Policy,
    PolicyException,
    Signatures,
)
from webhook.policy.origin import Origin
from webhook.policy.schema import validate_document

API_VERSION = "trustgate.dev/v1alpha1"
#: Files of this media type in the policy directory are trusted roots, not policies.
TRUSTED_ROOT_MEDIA_TYPE = "application/vnd.dev.sigstore.trustedroot"
POLICY_KIND = "ImagePolicy"
TEST_KIND = "ImagePolicyTest"


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
    authorities = compile_authorities(section["authorities"], origin, where, signatures=True)
    threshold = _threshold(section, len(authorities), origin, where)
    return Signatures(
        threshold=threshold,
        authorities=authorities,
        annotations=tuple(sorted(section.get("annotations", {}).items())),
        match_reference=section.get("matchReference", False),
        per_platform=section.get("perPlatform", False),
    )


def _attestation(entry: Mapping[str, Any], origin: Origin, where: str) -> Attestation:
    authorities = compile_authorities(entry["authorities"], origin, where)
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


def _threshold(section: Mapping[str, Any], count: int, origin: Origin, where: str) -> int:
    threshold: int = section.get("threshold", 1)
    if threshold > count:
        message = f"is {threshold}, more than the {count} authorities listed"
        raise origin.error(message, f"{where}.threshold")
    return threshold


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
            authorities = compile_authorities(entry["authorities"], origin, f"{where}.attestation")
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
