"""gitsign commit signatures: a real one from Sigstore's public good instance, and ones made
with the test Sigstore instance, checked out by real git as git-sync does."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest

from tests.support.gitsign import gitsign_signature, with_signature
from tests.support.gitsigning import check_out, commit, forge, raw_commit, source_repo, sync
from tests.support.policysigning import FILES
from tests.support.sigstore_instance import Identity, SigstoreInstance
from webhook.policy.model import Keyless
from webhook.policy.signing.gate import PolicySignatureError
from webhook.policy.signing.gitcheckout import Checkout
from webhook.signatures.gitsign import GitsignAuthority, git_verifier, verify_gitsign
from webhook.trust.trustroot import TrustRoot, load_trusted_root

DATA = Path(__file__).resolve().parents[2] / "data" / "gitsign"
MAINTAINER = Identity("maintainer@example.com", "https://accounts.google.com")
ISSUER = MAINTAINER.issuer


class _NoKeys:
    authorities: tuple[()] = ()
    allowed_signers: tuple[()] = ()


def _authority(root: TrustRoot, subject: str = MAINTAINER.subject) -> GitsignAuthority:
    return GitsignAuthority("maintainers", Keyless(issuer=ISSUER, subject=subject, root=root))


def _real_commit() -> Checkout:
    """gitsign's own test commit (sigstore/gitsign, internal/rekor/oid/testdata, Apache-2.0):
    signed in 2023 on Sigstore's public instance, with its log entry and inclusion proof."""
    signature: list[bytes] = []
    payload: list[bytes] = []
    inside = False
    for line in (DATA / "commit.txt").read_bytes().split(b"\n"):
        if line.startswith(b"gpgsig "):
            signature.append(line[len(b"gpgsig ") :])
            inside = True
        elif inside and line.startswith(b" "):
            signature.append(line[1:])
        else:
            inside = False
            payload.append(line)
    when = datetime.fromtimestamp(1681496842, UTC)
    return Checkout("c0ffee", b"\n".join(signature), b"\n".join(payload), when, {})


@pytest.fixture(scope="module")
def production() -> TrustRoot:
    return load_trusted_root("production", Path("."))


def test_a_real_gitsign_commit_verifies_offline_with_the_production_root(
    production: TrustRoot,
) -> None:
    authority = GitsignAuthority(
        "chainguard", Keyless(issuer=ISSUER, subject="billy@chainguard.dev", root=production)
    )
    assert verify_gitsign(_real_commit(), [authority]) == "chainguard"


def test_the_real_commit_changed_after_signing_is_refused(production: TrustRoot) -> None:
    real = _real_commit()
    authority = GitsignAuthority(
        "chainguard", Keyless(issuer=ISSUER, subject="billy@chainguard.dev", root=production)
    )
    changed = Checkout(
        real.commit, real.signature, real.payload.replace(b"asdf", b"asdg"), real.committed_at, {}
    )
    with pytest.raises(PolicySignatureError) as caught:
        verify_gitsign(changed, [authority])
    assert caught.value.reason == "altered" and "changed after signing" in str(caught.value)


def test_the_real_commit_is_refused_for_another_identity(production: TrustRoot) -> None:
    with pytest.raises(PolicySignatureError) as caught:
        verify_gitsign(_real_commit(), [_authority(production)])
    assert caught.value.reason == "untrusted"
    assert "subject 'billy@chainguard.dev' does not match" in str(caught.value)


def _gitsigned(
    tmp_path: Path, instance: SigstoreInstance, identity: Identity = MAINTAINER, **options: bool
) -> tuple[Path, str]:
    """A git-sync checkout of a commit of ``FILES`` signed as gitsign signs it."""
    repo = source_repo(tmp_path)
    unsigned = commit(repo, FILES, key=None)
    sync(repo, tmp_path, unsigned)
    raw = raw_commit(tmp_path, unsigned)
    signature = gitsign_signature(instance, identity, raw, **options)
    signed = forge(tmp_path, with_signature(raw, signature))
    return check_out(tmp_path, signed), signed


def _refusal(link: Path, authorities: list[GitsignAuthority]) -> PolicySignatureError:
    with pytest.raises(PolicySignatureError) as caught:
        git_verifier(_NoKeys(), authorities)(link)
    return caught.value


def test_a_gitsigned_checkout_verifies(
    tmp_path: Path, instance: SigstoreInstance, root: TrustRoot
) -> None:
    link, commit_id = _gitsigned(tmp_path, instance)
    verified = git_verifier(_NoKeys(), [_authority(root)])(link)
    assert (verified.authority, verified.digest) == ("maintainers", f"git:{commit_id}")
    assert verified.files == {name: text.encode() for name, text in FILES.items()}
    (link / "policy.yaml").write_text("# weakened\n")
    refusal = _refusal(link, [_authority(root)])
    assert refusal.reason == "altered" and "policy.yaml: changed" in str(refusal)


def test_a_certificate_of_another_identity_is_refused(
    tmp_path: Path, instance: SigstoreInstance, root: TrustRoot
) -> None:
    stranger = Identity("mallory@evil.test", ISSUER)
    link, _ = _gitsigned(tmp_path, instance, stranger)
    refusal = _refusal(link, [_authority(root)])
    assert refusal.reason == "untrusted" and "mallory@evil.test" in str(refusal)


def test_a_gitsign_refusal_says_which_identity_the_authority_accepts(
    tmp_path: Path, instance: SigstoreInstance, root: TrustRoot
) -> None:
    """The same keyless check as a signature file's bundle: its words name the wanted identity."""
    link, _ = _gitsigned(tmp_path, instance, Identity("mallory@evil.test", ISSUER))
    refusal = _refusal(link, [_authority(root)])
    assert refusal.reason == "untrusted"
    assert f"maintainers: accepts identity {MAINTAINER.subject} (issuer {ISSUER}" in str(refusal)


def test_a_certificate_of_another_ca_is_refused(tmp_path: Path, root: TrustRoot) -> None:
    link, _ = _gitsigned(tmp_path, SigstoreInstance("elsewhere"))
    refusal = _refusal(link, [_authority(root)])
    assert refusal.reason == "untrusted"
    assert "does not chain to a Fulcio CA of the trusted root" in str(refusal)


def test_a_commit_without_a_log_proof_is_refused_with_what_to_do(
    tmp_path: Path, instance: SigstoreInstance, root: TrustRoot
) -> None:
    link, _ = _gitsigned(tmp_path, instance, logged=False)
    refusal = _refusal(link, [_authority(root)])
    assert refusal.reason == "untrusted" and "gitsign.rekorMode offline" in str(refusal)


def test_a_signature_copied_onto_another_commit_is_refused(
    tmp_path: Path, instance: SigstoreInstance, root: TrustRoot
) -> None:
    _link, signed = _gitsigned(tmp_path, instance)
    raw = raw_commit(tmp_path, signed)
    forged = forge(tmp_path, raw.replace(b"\n\npolicies\n", b"\n\nweakened policies\n"))
    refusal = _refusal(check_out(tmp_path, forged), [_authority(root)])
    assert refusal.reason == "altered" and "copied from another commit" in str(refusal)


def test_without_keyless_authorities_a_gitsign_commit_is_untrusted(
    tmp_path: Path, instance: SigstoreInstance
) -> None:
    link, _ = _gitsigned(tmp_path, instance)
    refusal = _refusal(link, [])
    assert refusal.reason == "untrusted" and "lists no keyless authority" in str(refusal)


@pytest.mark.parametrize(
    "armored",
    [
        b"-----BEGIN SIGNED MESSAGE-----\n!!\n-----END SIGNED MESSAGE-----",
        b"-----BEGIN SIGNED MESSAGE-----\nMAA=\n-----END SIGNED MESSAGE-----",
        b"-----BEGIN SIGNED MESSAGE-----\n" + b"A" * 70_000 + b"\n-----END SIGNED MESSAGE-----",
    ],
)
def test_unreadable_gitsign_signatures_are_invalid(armored: bytes, root: TrustRoot) -> None:
    checkout = Checkout("c0ffee", armored, b"tree x\n", datetime.now(UTC), {})
    with pytest.raises(PolicySignatureError) as caught:
        verify_gitsign(checkout, [_authority(root)])
    assert caught.value.reason == "invalid" and "cannot be read" in str(caught.value)


def test_keyless_authorities_of_the_configuration_check_gitsign_commits(
    tmp_path: Path, instance: SigstoreInstance
) -> None:
    """policies.signature with source git: its keyless authorities are gitsign's signers."""
    from webhook.config import parse_config

    link, _ = _gitsigned(tmp_path, instance)
    (tmp_path / "root.json").write_text(instance.trusted_root_json())
    keyless = {"issuer": ISSUER, "subject": MAINTAINER.subject, "trustedRoot": "root.json"}
    raw = {"source": "git", "authorities": [{"name": "maintainers", "keyless": keyless}]}
    config = parse_config({"policies": {"signature": raw}}, source=str(tmp_path / "t.yaml"))
    assert config.policy_signature is not None
    assert git_verifier(config.policy_signature)(link).authority == "maintainers"
    keyless["subject"] = "someone@example.com"
    config = parse_config({"policies": {"signature": raw}}, source=str(tmp_path / "t.yaml"))
    assert config.policy_signature is not None
    with pytest.raises(PolicySignatureError) as caught:
        git_verifier(config.policy_signature)(link)
    assert caught.value.reason == "untrusted"
