"""``policies.signature.source: git``: the checked-out commit's SSH signature, and its checkout.

Instead of ``DIR/.trustgate/signature.json``, the signature is the commit's
``gpgsig`` header (``git commit -S`` with ``gpg.format ssh``): an SSHSIG in
namespace ``git`` over the commit object without that header. The commit
names its tree, so the signature covers every file; the worktree must then
hold exactly the commit's files (the subdirectory the policies are read
from), or the set is refused as ``altered`` with each file named, as in
files mode. The files handed to the store are the ones read from the
repository, so the store loads exactly what the signature covers.

The version is the committer time (Unix seconds): part of what was signed,
and rising from one merge to the next, so rollback protection and
``minimumVersion`` work as with a manifest's version.

gitsign (Sigstore keyless) commits are handed to the ``gitsign`` check the
caller gives (``signatures/gitsign.py``, which needs the keyless machinery of
a layer above this one), and refused when there is none.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

from webhook.core.errors import PolicyError
from webhook.policy.signing.allowedsigners import AllowedSigners, admit
from webhook.policy.signing.envelope import TrustedKey
from webhook.policy.signing.gate import PolicySignatureError, Verified
from webhook.policy.signing.gitcheckout import Checkout, read_checkout
from webhook.policy.signing.manifest import build_manifest, compare
from webhook.policy.signing.sshsig import (
    ARMOR_BEGIN,
    SIGNATURE_ALGORITHMS,
    SshSignature,
    load_ssh_public_key,
    parse_ssh_signature,
    ssh_fingerprint,
    verify_ssh_signature,
)
from webhook.policy.signing.tree import read_tree
from webhook.trust.keys import key_fingerprint

__all__ = ["GIT_NAMESPACE", "GitsignCheck", "verify_checkout"]

#: The namespace ``git commit -S`` signs in.
GIT_NAMESPACE = "git"
_GITSIGN_BEGIN = (b"-----BEGIN SIGNED MESSAGE-----", b"-----BEGIN PKCS7-----")
_PGP_BEGIN = b"-----BEGIN PGP SIGNATURE-----"


#: Checks a gitsign-signed commit: the name of the authority that signed it.
GitsignCheck = Callable[[Checkout], str]


def verify_checkout(
    directory: Path,
    keys: Sequence[TrustedKey],
    signers: Sequence[AllowedSigners],
    *,
    gitsign: GitsignCheck | None = None,
) -> Verified:
    """Who signed the commit checked out at ``directory``, if the checkout is that commit.

    Raises:
        PolicySignatureError: the commit is unsigned (``unsigned``), signed by
            no authority or outside an allowed signer's window (``untrusted``),
            its signature does not verify over it (``altered``), or a worktree
            file was added, removed or changed after checkout (``altered``).
        PolicyError: the directory does not exist.
    """
    if not directory.is_dir():
        raise PolicyError(f"{directory} is not a directory")
    checkout = read_checkout(directory)
    authority = _signer(checkout, keys, signers, gitsign)
    _compare(directory, checkout, authority)
    return Verified(
        authority,
        version=int(checkout.committed_at.timestamp()),
        digest=f"git:{checkout.commit}",
        signed_at=checkout.committed_at,
        files=checkout.files,
    )


def _signer(
    checkout: Checkout,
    keys: Sequence[TrustedKey],
    signers: Sequence[AllowedSigners],
    gitsign: GitsignCheck | None,
) -> str:
    commit = checkout.commit
    raw = checkout.signature
    if raw is None:
        raise PolicySignatureError(
            f"commit {commit} is unsigned; sign the commits of the policy branch "
            "(git commit -S with gpg.format ssh) and protect it so only signed merges land",
            reason="unsigned",
        )
    if raw.lstrip().startswith(_GITSIGN_BEGIN):
        if gitsign is None:
            raise PolicySignatureError(
                f"commit {commit} carries a gitsign (Sigstore keyless) signature, and no "
                "keyless authority is configured to check it",
                reason="untrusted",
            )
        return gitsign(checkout)
    if not raw.lstrip().startswith(ARMOR_BEGIN):
        kind = "an OpenPGP" if raw.lstrip().startswith(_PGP_BEGIN) else "an unknown kind of"
        raise PolicySignatureError(
            f"commit {commit} carries {kind} signature; trustgate verifies SSH "
            "signatures (git config gpg.format ssh)",
            reason="untrusted",
        )
    try:
        signature = parse_ssh_signature(raw)
        if signature.algorithm not in SIGNATURE_ALGORITHMS:
            raise PolicyError(
                f"signature algorithm {signature.algorithm} is not accepted; "
                f"use one of {', '.join(SIGNATURE_ALGORITHMS)}"
            )
        if signature.namespace != GIT_NAMESPACE:
            raise PolicyError(
                f"the signature is made for namespace {signature.namespace!r}, not "
                f"{GIT_NAMESPACE!r}: it was not made by git commit -S"
            )
        key = load_ssh_public_key(signature.public_key, source="the signing key")
    except PolicyError as exc:
        raise PolicySignatureError(f"commit {commit}: {exc.message}", reason="invalid") from None
    return _authority(checkout, signature, key_fingerprint(key), keys, signers)


def _authority(
    checkout: Checkout,
    signature: SshSignature,
    fingerprint: str,
    keys: Sequence[TrustedKey],
    signers: Sequence[AllowedSigners],
) -> str:
    commit, printed = checkout.commit, ssh_fingerprint(signature.public_key)
    holders: list[str] = []
    refusals: list[str] = []
    for trusted in keys:
        if key_fingerprint(trusted.key) == fingerprint:
            holders.append(trusted.name)
            if _verifies(signature, trusted, checkout.payload):
                return trusted.name
    for authority in signers:
        admission = admit(
            authority.signers,
            signature.public_key,
            namespace=GIT_NAMESPACE,
            when=checkout.committed_at,
        )
        if admission.signer is None:
            refusals.extend(f"{authority.name}: {why}" for why in admission.refusals)
            continue
        holders.append(authority.name)
        trusted = TrustedKey(authority.name, admission.signer.key)
        if _verifies(signature, trusted, checkout.payload):
            return authority.name
    if holders:
        raise PolicySignatureError(
            f"commit {commit}: the signature does not verify with the key of authority "
            f"{holders[0]!r}: the commit was changed after signing, or the signature was "
            "copied from another commit",
            reason="altered",
        )
    names = ", ".join([k.name for k in keys] + [s.name for s in signers]) or "none"
    why = f" ({'; '.join(refusals)})" if refusals else ""
    raise PolicySignatureError(
        f"commit {commit} is signed by SSH key {printed}, which no authority of "
        f"policies.signature admits{why} (authorities: {names})",
        reason="untrusted",
    )


def _verifies(signature: SshSignature, trusted: TrustedKey, payload: bytes) -> bool:
    return verify_ssh_signature(signature, trusted.key, payload, namespace=GIT_NAMESPACE)


def _compare(directory: Path, checkout: Checkout, authority: str) -> None:
    """Refuse a worktree that differs from the commit, naming each file."""
    try:
        worktree = read_tree(directory)
    except PolicyError as exc:
        raise PolicySignatureError(
            exc.message, reason="altered", file=exc.file and str(directory / exc.file)
        ) from exc
    signed = build_manifest(checkout.files, 1, checkout.committed_at)
    differences = compare(signed, worktree)
    if differences:
        lines = "; ".join(str(d) for d in differences)
        raise PolicySignatureError(
            f"{directory} differs from commit {checkout.commit}, signed by {authority!r}: {lines}",
            reason="altered",
        )
