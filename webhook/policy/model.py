"""The compiled, immutable form of policies.

YAML spellings stop at the loader: everything past it works with these frozen
dataclasses, which are safe to share between request threads and to swap
atomically on reload.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import TYPE_CHECKING, Literal

from webhook.core.reference import ImageRef
from webhook.policy.cel import Condition
from webhook.policy.globs import Glob, any_match

if TYPE_CHECKING:
    from webhook.trust.notation.identities import TrustedIdentities
    from webhook.trust.notation.levels import Level
    from webhook.trust.notation.truststore import TrustStore
    from webhook.trust.trustroot import TrustRoot

Mode = Literal["enforce", "audit"]
NoMatch = Literal["deny", "warn", "allow"]
OnUnknown = Literal["deny", "warn", "allow"]
Grade = Literal["A", "B", "C", "D", "E", "F"]
#: When a Notation authority verifies a timestamp countersignature (``verifyTimestamp``).
VerifyTimestamp = Literal["always", "afterCertExpiry"]
#: Distinct (namespace, repository) pairs whose covering exceptions a set remembers.
_COVERING_MEMO = 4096


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
class NotationRef:
    """A Notation (Notary Project) authority: trust store, trusted identities and level.

    Everything is read and checked when the policy loads, so verification
    opens no files: ``store`` holds the certificates of the ``ca``,
    ``signingAuthority`` and ``tsa`` stores, ``identities`` the parsed
    ``trustedIdentities`` and ``level`` the verification level with its
    ``override`` applied. ``files`` are the store files read (absolute paths,
    watched like key files) and ``store_digest`` fingerprints the
    certificates by kind: it is part of equality and ``repr``, so a store
    whose content changed never meets a cached outcome of the old one.
    """

    store: TrustStore = field(compare=False, repr=False)
    identities: TrustedIdentities
    level: Level
    verify_timestamp: VerifyTimestamp = "always"
    files: tuple[str, ...] = ()
    store_digest: str = ""


@dataclass(frozen=True, slots=True)
class Authority:
    """One signer a policy trusts: a key, a keyless identity or a Notation trust store.

    Exactly one of ``key``, ``keyless`` and ``notation`` is set.
    """

    name: str
    key: KeyRef | None = None
    keyless: Keyless | None = None
    notation: NotationRef | None = None


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
class BreakGlass:
    """``spec.breakGlass``: who may bypass this enforce policy with the annotation.

    Off unless ``allowed``. With neither ``groups`` nor ``users``, every user
    may break glass; otherwise only a user named in ``users`` or belonging to
    one of ``groups`` (both compared exactly with the request's ``userInfo``).
    """

    allowed: bool = False
    groups: frozenset[str] = frozenset()
    users: frozenset[str] = frozenset()

    def permits(self, user: str, groups: frozenset[str]) -> bool:
        """Whether ``user`` (member of ``groups``) may break glass here."""
        if not self.allowed:
            return False
        if not self.groups and not self.users:
            return True
        return user in self.users or bool(self.groups & groups)


@dataclass(frozen=True, slots=True)
class Policy:
    """One ImagePolicy document, compiled."""

    name: str
    mode: Mode
    match: Match
    registries: tuple[Glob, ...]
    require_digest: bool = False
    #: ``/mutate`` pins the digest this policy's checks verified (``spec.pinDigest``).
    pin_digest: bool = False
    signatures: Signatures | None = None
    freshness: Freshness | None = None
    attestations: tuple[Attestation, ...] = ()
    source: str = field(default="", compare=False)
    break_glass: BreakGlass = BreakGlass()

    def applies(self, namespace: str, kind: str, image: ImageRef) -> bool:
        """Whether this policy governs ``image`` in a ``kind`` request in ``namespace``."""
        return self.match.applies_to(namespace, kind) and self.match.governs(image)


@dataclass(frozen=True, slots=True)
class PolicyException:
    """One ImagePolicyException document, compiled: a dated waiver kept in Git.

    It covers an image in a namespace when both globs match (images on the
    normalised repository, as policies match). ``policies`` names the enforce
    policies it waives; None waives every policy and the ``defaults.noMatch``
    denial too. ``expires`` is the last day it applies: it stops at
    ``ends_at``, midnight UTC at the end of that day.
    """

    name: str
    namespaces: tuple[Glob, ...]
    images: tuple[Glob, ...]
    policies: frozenset[str] | None
    reason: str
    expires: date
    ends_at: datetime
    owner: str = ""
    source: str = field(default="", compare=False)

    def active(self, now: datetime) -> bool:
        """Whether the exception still applies at ``now`` (timezone-aware)."""
        return now < self.ends_at

    def covers(self, namespace: str, image: ImageRef) -> bool:
        """Whether ``image`` in ``namespace`` is within the exception's reach."""
        return self.reaches(namespace, image.repository)

    def reaches(self, namespace: str, repository: str) -> bool:
        """Whether ``repository`` (normalised) in ``namespace`` is within its reach."""
        return any_match(self.namespaces, namespace) and any_match(self.images, repository)

    def waives(self, policy: str | None) -> bool:
        """Whether it waives ``policy`` (None: the defaults.noMatch denial)."""
        if self.policies is None:
            return True
        return policy is not None and policy in self.policies


@dataclass(frozen=True, slots=True)
class PolicySet:
    """Every policy of one directory, in a stable order (by name).

    ``files`` are the other files the policies read (key files, trusted roots,
    Notation trust stores), which the store watches along with the directory.
    ``exceptions`` are the ImagePolicyException documents, expired ones
    included: expiry is judged against the clock at each review, never at load.
    """

    policies: tuple[Policy, ...] = ()
    fingerprint: str = ""
    files: tuple[str, ...] = ()
    exceptions: tuple[PolicyException, ...] = ()
    _covering: Callable[[str, str], tuple[PolicyException, ...]] = field(
        init=False, repr=False, compare=False, hash=False
    )

    def __post_init__(self) -> None:
        # The same few (namespace, repository) pairs come back on every deploy;
        # a memo per set keeps a long exception list off the denial path.
        memo = functools.lru_cache(maxsize=_COVERING_MEMO)(self._scan)
        object.__setattr__(self, "_covering", memo)

    def _scan(self, namespace: str, repository: str) -> tuple[PolicyException, ...]:
        return tuple(e for e in self.exceptions if e.reaches(namespace, repository))

    def covering(self, namespace: str, image: ImageRef) -> tuple[PolicyException, ...]:
        """The exceptions, expired or not, whose namespaces and images cover ``image``."""
        if not self.exceptions:
            return ()
        return self._covering(namespace, image.repository)

    def matching(self, namespace: str, kind: str, image: ImageRef) -> tuple[Policy, ...]:
        """The policies that govern ``image`` in this request; all of them must pass."""
        return tuple(p for p in self.policies if p.applies(namespace, kind, image))

    def __len__(self) -> int:
        return len(self.policies)

    def __iter__(self) -> Iterator[Policy]:
        return iter(self.policies)
