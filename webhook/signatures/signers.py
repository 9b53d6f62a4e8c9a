"""Who made a verified signature, and how many distinct signers a set of authorities found.

A threshold counts signers, not authority names. Two authorities holding the
same key, or two keyless identities whose patterns both match one certificate,
are satisfied by one signature; counting both would let one signer meet
``threshold: 2`` alone.

Each verified signature becomes a ``Signer``: a set of tokens naming the key
that made it (the SHA-256 of its SubjectPublicKeyInfo) and, for a Fulcio
certificate, each identity the certificate was issued to (OIDC issuer and
subject alternative name). Signers sharing any token are one signer: the same
key, whether an authority holds it as a key file or a certificate certifies it,
or the same identity, whatever certificate it signed with. ``count_distinct``
then matches authorities to distinct signers (a maximum bipartite matching),
so each signer counts for at most one authority however the policy lists them.

Sans-I/O and pure: certificates and keys in, names out.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from cryptography import x509

from webhook.core.untrusted import literal
from webhook.signatures.identity import certificate_identities, certificate_issuer
from webhook.trust.keys import key_fingerprint


@dataclass(frozen=True, slots=True)
class Signer:
    """What identifies the maker of one verified signature.

    ``tokens`` are compared (two signers sharing one are the same signer);
    ``label`` names the signer in messages.
    """

    tokens: frozenset[str]
    label: str


def key_signer(key: object) -> Signer:
    """The signer behind a signature that verified with ``key``."""
    fingerprint = key_fingerprint(key)
    return Signer(frozenset({f"key {fingerprint}"}), f"key {fingerprint[:19]}")


def certificate_signer(cert: x509.Certificate) -> Signer:
    """The signer behind a signature made with ``cert``: its key and each identity it names."""
    issuer = certificate_issuer(cert) or ""
    names = certificate_identities(cert)
    tokens = {f"key {key_fingerprint(cert.public_key())}"}
    tokens.update(f"identity {issuer}\n{name}" for name in names)
    shown = literal(names[0]) if names else "a certificate without identity"
    return Signer(frozenset(tokens), f"identity {shown}")


@dataclass(frozen=True, slots=True)
class Count:
    """Which authorities count toward a threshold, and why the others that verified do not."""

    counted: tuple[str, ...]
    uncounted: tuple[tuple[str, str], ...]  # (authority, reason)
    #: The label of the signer each counted authority was counted for, in ``counted`` order.
    signed_by: tuple[str, ...] = ()

    def failures(
        self, names: Sequence[str], failed: Sequence[tuple[str, str]]
    ) -> tuple[tuple[str, str], ...]:
        """Every authority that does not count, uncounted or ``failed``, in ``names`` order."""
        reasons = dict(self.uncounted) | dict(failed)
        return tuple((name, reasons[name]) for name in names if name in reasons)


def count_distinct(found: Sequence[tuple[str, Sequence[Signer]]]) -> Count:
    """The largest set of authorities that distinct signers satisfy.

    ``found`` lists, in policy order, each authority that verified and the
    signers of the signatures that verified for it. Signers sharing a token
    are merged first; then each merged signer is given to at most one
    authority, as many authorities as possible being served (Kuhn's augmenting
    paths: authorities and signatures are few, bounded by the layer and bundle
    caps). An authority left out is reported with the authority its signer
    counted for.
    """
    groups = _groups(signer for _, signers in found for signer in signers)
    options = [
        (name, sorted({groups[token] for signer in signers for token in signer.tokens}))
        for name, signers in found
    ]
    owner: dict[int, int] = {}  # group -> index into options
    for index in range(len(options)):
        _augment(index, options, owner, set())
    served = {authority: group for group, authority in owner.items()}
    counted = tuple(options[i][0] for i in sorted(served))
    labels = _labels(found, groups)
    signed_by = tuple(labels[served[i]] for i in sorted(served))
    uncounted = []
    for index, (name, choices) in enumerate(options):
        if index in served:
            continue
        group = choices[0]
        other = options[owner[group]][0] if group in owner else "another authority"
        uncounted.append((name, f"verified, but by {labels[group]}, already counted for {other}"))
    return Count(counted, tuple(uncounted), signed_by)


def _groups(signers: Iterable[Signer]) -> dict[str, int]:
    """Token -> group number, tokens of one signer (transitively) in one group."""
    parent: dict[str, str] = {}

    def root(token: str) -> str:
        while parent[token] != token:
            parent[token] = parent[parent[token]]
            token = parent[token]
        return token

    for signer in signers:
        tokens = sorted(signer.tokens)
        for token in tokens:
            parent.setdefault(token, token)
        for token in tokens[1:]:
            parent[root(token)] = root(tokens[0])
    numbers: dict[str, int] = {}
    return {token: numbers.setdefault(root(token), len(numbers)) for token in sorted(parent)}


def _augment(
    index: int, options: list[tuple[str, list[int]]], owner: dict[int, int], seen: set[int]
) -> bool:
    """Give authority ``index`` a signer group, moving earlier ones along if need be."""
    for group in options[index][1]:
        if group in seen:
            continue
        seen.add(group)
        if group not in owner or _augment(owner[group], options, owner, seen):
            owner[group] = index
            return True
    return False


def _labels(
    found: Sequence[tuple[str, Sequence[Signer]]], groups: dict[str, int]
) -> dict[int, str]:
    labels: dict[int, str] = {}
    for _, signers in found:
        for signer in signers:
            labels.setdefault(groups[next(iter(sorted(signer.tokens)))], signer.label)
    return labels
