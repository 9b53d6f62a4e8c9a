"""The compiled, immutable form of policies.

YAML spellings stop at the loader: everything past it works with these frozen
dataclasses, which are safe to share between request threads and to swap
atomically on reload.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Literal

from webhook.policy.cel import Condition
from webhook.policy.globs import Glob, any_match
from webhook.reference import ImageRef

if TYPE_CHECKING:
    from webhook.signatures.trustroot import TrustRoot

Mode = Literal["enforce", "audit"]
NoMatch = Literal["deny", "warn", "allow"]
OnUnknown = Literal["deny", "warn", "allow"]
Grade = Literal["A", "B", "C", "D", "E", "F"]


@dataclass(frozen=True, slots=True)
class Match:
    """Which requests and images a policy governs.

    An empty ``kinds`` means every kind. Namespace and image globs must match;
    an excluded namespace wins over an included one.
    """

    namespaces: tuple[Glob, ...] = (Glob("*"),)
    exclude_namespaces: tuple[Glob, ...] = ()
    kinds: frozenset[str] = frozenset()
    images: tuple[Glob, ...] = (Glob("**"),)

    def applies_to(self, namespace: str, kind: str) -> bool:
        """Whether a request for ``kind`` in ``namespace`` falls under the policy."""
        if self.kinds and kind not in self.kinds:
            return False
        if any_match(self.exclude_namespaces, namespace):
            return False
        return any_match(self.namespaces, namespace)

    def governs(self, image: ImageRef) -> bool:
        """Whether the policy governs ``image`` (matched on its repository)."""
        return any_match(self.images, image.repository)


@dataclass(frozen=True, slots=True)
class KeyRef:
    """A public key given inline (``pem``) or as a file path (``file``).

    With ``tlog_required`` a signature counts only with a transparency-log
    entry of ``root`` (loaded when the policy loaded, named by
    ``trusted_root`` and fingerprinted by ``root_digest``, as for Keyless).
    """

    pem: str | None = None
    file: str | None = None
    tlog_required: bool = False
    trusted_root: str = ""
    root_digest: str = field(default="", compare=False)
    root: TrustRoot | None = field(default=None, compare=False, repr=False)


@dataclass(frozen=True, slots=True)
class Keyless:
    """A keyless (Fulcio certificate) identity, pinned to one Sigstore trusted root.

    Issuer and subject match exactly, or by a regular expression that must
    match the whole value (``re.fullmatch``): ``acme`` never matches
    ``acme-evil``. ``extensions`` pins certificate extensions by their policy
    name (``githubWorkflowRepository``, ...) to exact values. ``root`` is the
    trusted root loaded when the policy loaded (never at admission);
    ``trusted_root`` names it and ``root_digest`` fingerprints its content, so
    a changed root never reuses a cached outcome.
    """

    issuer: str | None = None
    issuer_regexp: str | None = None
    subject: str | None = None
    subject_regexp: str | None = None
    trusted_root: str = "production"
    extensions: tuple[tuple[str, str], ...] = ()
    root_digest: str = field(default="", compare=False)
    root: TrustRoot | None = field(default=None, compare=False, repr=False)


@dataclass(frozen=True, slots=True)
class Authority:
    """One signer a policy trusts: a key or a keyless identity."""

    name: str
    key: KeyRef | None = None
    keyless: Keyless | None = None


@dataclass(frozen=True, slots=True)
class Signatures:
    """``spec.signatures``: at least ``threshold`` distinct authorities must verify.

    A signature counts only if its payload carries every ``annotations`` pair
    (name, value) and, with ``match_reference``, names the image's repository.
    With ``per_platform``, each platform image of an index must be signed too.
    """

    threshold: int
    authorities: tuple[Authority, ...]
    annotations: tuple[tuple[str, str], ...] = ()
    match_reference: bool = False
    per_platform: bool = False


@dataclass(frozen=True, slots=True)
class Attestation:
    """One ``spec.attestations`` entry: ``threshold`` authorities attested ``predicate_type``
    in statements for which every one of ``conditions`` holds."""

    predicate_type: str
    authorities: tuple[Authority, ...]
    threshold: int = 1
    conditions: tuple[Condition, ...] = ()


@dataclass(frozen=True, slots=True)
class Freshness:
    """``spec.freshness``: the minimum Container Health Index grade.

    ``sources`` are tried in order (pyxis, attestation, static). The
    attestation source trusts vulnerability reports of ``report_types`` signed
    by ``report_authorities`` (its own ``{attestation: {authorities}}`` entry)
    or, when it names none, those the policy's ``spec.attestations`` verified.
    """

    minimum_grade: Grade
    sources: tuple[str, ...] = ("pyxis",)
    on_unknown: OnUnknown = "deny"
    max_report_age_days: int | None = None
    warn_before_days: int | None = None
    report_authorities: tuple[Authority, ...] = ()
    report_types: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class Policy:
    """One ImagePolicy document, compiled."""

    name: str
    mode: Mode
    match: Match
    registries: tuple[Glob, ...]
    require_digest: bool = False
    signatures: Signatures | None = None
    freshness: Freshness | None = None
    attestations: tuple[Attestation, ...] = ()
    source: str = field(default="", compare=False)

    def applies(self, namespace: str, kind: str, image: ImageRef) -> bool:
        """Whether this policy governs ``image`` in a ``kind`` request in ``namespace``."""
        return self.match.applies_to(namespace, kind) and self.match.governs(image)


@dataclass(frozen=True, slots=True)
class PolicySet:
    """Every policy of one directory, in a stable order (by name).

    ``files`` are the other files the policies read (key files, trusted roots),
    which the store watches along with the directory.
    """

    policies: tuple[Policy, ...] = ()
    fingerprint: str = ""
    files: tuple[str, ...] = ()

    def matching(self, namespace: str, kind: str, image: ImageRef) -> tuple[Policy, ...]:
        """The policies that govern ``image`` in this request; all of them must pass."""
        return tuple(p for p in self.policies if p.applies(namespace, kind, image))

    def __len__(self) -> int:
        return len(self.policies)

    def __iter__(self) -> Iterator[Policy]:
        return iter(self.policies)
