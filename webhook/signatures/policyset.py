"""Keyless authorities of ``policies.signature``: a policy set signed with a Fulcio certificate.

The signature file (``policy/signing/envelope.py``) holds, under ``bundle``,
a Sigstore bundle (v0.3) of a message signature over the manifest's exact
bytes, as ``trustgate policy sign --keyless``, sigstore-python's
``sign_artifact`` and ``cosign sign-blob --bundle`` make one. It is checked
offline, as keyless image signatures are (``keyless.py``): sigstore-python's
``Verifier.verify_artifact`` against the authority's trusted root (chain to a
Fulcio CA, SCT, transparency-log entry with its inclusion proof and signed
entry timestamp, the entry naming this signature and manifest), with the
identity policy of ``identity.py``.

One check is added: the Fulcio CA that issued the certificate must have been
trusted by the root when the set was signed. sigstore-python builds the chain
from every CA the root ever listed and ignores a CA's ``validFor.end``, so a
root that retired a CA would still accept what was signed under it after the
retirement; cosign refuses that, and so does this module (``cawindow.py``).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from cryptography import x509
from sigstore.errors import Error as SigstoreError
from sigstore.errors import VerificationError
from sigstore.hashes import Hashed
from sigstore.models import Bundle

from webhook.core.untrusted import literal
from webhook.core.x509read import CERTIFICATE_ERRORS
from webhook.policy.model import Keyless
from webhook.policy.signing.envelope import Refusal, Vouch
from webhook.signatures.cawindow import window_problem
from webhook.signatures.identity import (
    certificate_identities,
    certificate_issuer,
    identity_policy,
)
from webhook.signatures.keyless import parse_bundle, sigstore_reason
from webhook.trust.trustroot import TrustRoot

__all__ = [
    "BUNDLE_V03",
    "MAX_BUNDLE_BYTES",
    "KeylessAuthority",
    "certificate_signer",
    "read_bundle",
]

#: The bundle media types a policy-set signature may carry (v0.3, both spellings).
BUNDLE_V03 = frozenset(
    {
        "application/vnd.dev.sigstore.bundle.v0.3+json",
        "application/vnd.dev.sigstore.bundle+json;version=0.3",
    }
)
#: Largest bundle read; a real one (certificate, log entry, proof) is 5 to 10 KiB.
MAX_BUNDLE_BYTES = 256 * 1024

_REFUSED: tuple[type[Exception], ...] = (SigstoreError, *CERTIFICATE_ERRORS)
_ALTERED = ("message digest mismatch", "Signature is invalid for input")
#: A chain that fails only because of the log's time says nothing of the CA: invalid.
_BAD_TIME = ("not valid at validation time",)
_UNTRUSTED = ("failed to build timestamp certificate chain",)


@dataclass(frozen=True, slots=True)
class KeylessAuthority:
    """An authority whose signers are Fulcio certificates of one identity, under one root."""

    name: str
    keyless: Keyless

    @property
    def root(self) -> TrustRoot:
        """The trusted root loaded with the configuration."""
        if self.keyless.root is None:
            raise ValueError(f"authority {self.name!r} has no trusted root loaded")
        return self.keyless.root

    def wants(self) -> str:
        """The identity this authority accepts, in words."""
        k = self.keyless
        subject = k.subject if k.subject is not None else f"/{k.subject_regexp}/"
        issuer = k.issuer if k.issuer is not None else f"/{k.issuer_regexp}/"
        extras = "".join(f", {name} {value}" for name, value in k.extensions)
        return f"identity {subject} (issuer {issuer}{extras}; root {k.trusted_root})"

    def vouch(self, document: Mapping[str, Any], manifest: bytes) -> Vouch | Refusal:
        """Whether ``document``'s ``bundle`` signs ``manifest`` as this identity, root and CA."""
        raw = document.get("bundle")
        if raw is None:
            return Refusal("untrusted", f"keyless ({self.wants()}), and the set is key-signed")
        bundle = read_bundle(raw)
        if isinstance(bundle, str):
            return Refusal("invalid", bundle)
        return self.admit(manifest, bundle, what="the set")

    def admit(self, artifact: bytes | Hashed, bundle: Bundle, *, what: str) -> Vouch | Refusal:
        """Whether ``bundle`` signs ``artifact`` as this identity, under this root and its CA then.

        The one keyless check of every policy-set form: a signature file's
        bundle (``vouch``) and a gitsign commit (``gitsign.py``), so both
        apply the same identity, log proof and CA window. ``what`` names what
        to sign again when the root has retired the CA or a log key.
        """
        cert = bundle.signing_certificate
        signer = certificate_signer(cert)
        policy = identity_policy(self.keyless)
        try:
            policy.verify(cert)
        except VerificationError as exc:
            message = f"accepts {self.wants()}: {sigstore_reason(exc)}"
            return Refusal("untrusted", message, signer)
        try:
            self.root.verifier.verify_artifact(artifact, bundle, policy)
        except _REFUSED as exc:
            return _refusal(exc, self.keyless.trusted_root, signer)
        problem = window_problem(self.root, bundle)
        if problem is not None:
            return Refusal(
                "untrusted",
                f"{problem}; sign {what} again under the root's current CA and log keys",
                signer,
            )
        return Vouch(signer)


def _refusal(exc: BaseException, root: str, signer: str) -> Refusal:
    """sigstore-python's no, sorted into altered, untrusted and invalid."""
    reason = sigstore_reason(exc)
    if any(needle in reason for needle in _ALTERED):
        return Refusal(
            "altered",
            f"the bundle signs other bytes than this manifest: the manifest or the "
            f"signature was altered after signing ({reason})",
            signer,
        )
    if any(needle in reason for needle in _UNTRUSTED) and not any(
        needle in reason for needle in _BAD_TIME
    ):
        return Refusal(
            "untrusted",
            f"the certificate does not chain to a Fulcio CA of trusted root {root}: {reason}",
            signer,
        )
    return Refusal("invalid", f"the keyless signature does not verify: {reason}", signer)


def read_bundle(raw: object) -> Bundle | str:
    """The Sigstore bundle of a signature file's ``bundle`` field, or why it is not one."""
    if not isinstance(raw, dict):
        return "the bundle is not a JSON object"
    text = json.dumps(raw)
    if len(text) > MAX_BUNDLE_BYTES:
        return f"the bundle is over {MAX_BUNDLE_BYTES // 1024} KiB; a real one is a few KiB"
    media_type = raw.get("mediaType")
    if not isinstance(media_type, str) or media_type not in BUNDLE_V03:  # {} is unhashable
        shown = literal(media_type) if isinstance(media_type, str) else "none"
        return f"the bundle's media type is {shown}, not a Sigstore bundle v0.3"
    bundle = parse_bundle(text.encode("utf-8"))
    if isinstance(bundle, str):
        return bundle
    if bundle._inner.message_signature is None:
        return "the bundle holds no message signature (a DSSE envelope signs no manifest)"
    return bundle


def certificate_signer(cert: x509.Certificate) -> str:
    """Who a Fulcio certificate names: ``identity ... (issuer ...)``, quoted where unusual."""
    names = certificate_identities(cert)
    identity = ", ".join(literal(name) for name in names[:2]) or "no identity"
    issuer = certificate_issuer(cert)
    return f"identity {identity} (issuer {literal(issuer) if issuer else 'none'})"
