"""Git mode: the checked-out commit's SSH signature, made by real git and ssh-keygen.

Each test builds a repository, signs commits with ``git commit -S``
(``gpg.format ssh``), checks them out the way git-sync v4 does (a worktree
per commit, a link to it) and verifies the link.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime
from pathlib import Path

import pytest

from tests.support.gitsigning import (
    WHEN,
    check_out,
    commit,
    forge,
    git,
    public_line,
    raw_commit,
    source_repo,
    ssh_key,
    sync,
)
from tests.support.policysigning import FILES
from webhook.policy.signing.allowedsigners import AllowedSigners, parse_allowed_signers
from webhook.policy.signing.envelope import TrustedKey
from webhook.policy.signing.gate import PolicySignatureError
from webhook.policy.signing.gitverify import verify_checkout
from webhook.policy.signing.sshsig import load_ssh_public_key, ssh_key_blob
from webhook.signatures.gitsign import git_verifier


def _trusted(key: Path, name: str = "policy-team") -> TrustedKey:
    _, blob = ssh_key_blob(public_line(key), source="test")
    return TrustedKey(name, load_ssh_public_key(blob, source="test"))


def _signers(key: Path, options: str = "", name: str = "maintainers") -> AllowedSigners:
    line = f"alice@example.com {options} {public_line(key)}".replace("  ", " ")
    return AllowedSigners(name, "allowed_signers", parse_allowed_signers(line, source="test"))


@pytest.fixture(scope="module")
def keys(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    home = tmp_path_factory.mktemp("keys")
    return {
        "ed25519": ssh_key(home, "ed25519"),
        "other": ssh_key(home, "other"),
        "ecdsa-256": ssh_key(home, "ecdsa256", "ecdsa", 256),
        "ecdsa-384": ssh_key(home, "ecdsa384", "ecdsa", 384),
        "rsa": ssh_key(home, "rsa", "rsa", 3072),
    }


def _signed(tmp_path: Path, key: Path | None, files: dict[str, str] = FILES) -> tuple[Path, str]:
    repo = source_repo(tmp_path)
    commit_id = commit(repo, files, key=key)
    return sync(repo, tmp_path), commit_id


def _refusal(directory: Path, keys: list[TrustedKey], signers: list[AllowedSigners]) -> str:
    with pytest.raises(PolicySignatureError) as caught:
        verify_checkout(directory, keys, signers)
    return f"{caught.value.reason}: {caught.value}"


def test_a_signed_checkout_verifies_with_the_commits_files(
    tmp_path: Path, keys: dict[str, Path]
) -> None:
    link, commit_id = _signed(tmp_path, keys["ed25519"])
    verified = git_verifier(_Config([_trusted(keys["ed25519"])], []))(link)
    assert verified.authority == "policy-team"
    assert verified.digest == f"git:{commit_id}"
    assert verified.version == WHEN
    assert verified.signed_at == datetime.fromtimestamp(WHEN, UTC)
    assert verified.files == {name: text.encode() for name, text in FILES.items()}


@pytest.mark.parametrize("kind", ["ed25519", "ecdsa-256", "ecdsa-384", "rsa"])
def test_each_key_kind_verifies_through_allowed_signers(
    tmp_path: Path, keys: dict[str, Path], kind: str
) -> None:
    link, _ = _signed(tmp_path, keys[kind])
    signers = [_signers(keys["other"], name="others"), _signers(keys[kind])]
    assert verify_checkout(link, [], signers).authority == "maintainers"


def test_a_subdirectory_of_the_checkout_is_compared_alone(
    tmp_path: Path, keys: dict[str, Path]
) -> None:
    files = {f"policies/{name}": text for name, text in FILES.items()} | {"README.md": "hi\n"}
    link, _ = _signed(tmp_path, keys["ed25519"], files)
    verified = verify_checkout(link / "policies", [_trusted(keys["ed25519"])], [])
    assert set(verified.files or ()) == set(FILES)
    (link / "README.md").write_text("outside the policy directory\n")
    assert verify_checkout(link / "policies", [_trusted(keys["ed25519"])], []).files
    (link / "policies" / "policy.yaml").write_text("# weakened\n")
    refusal = _refusal(link / "policies", [_trusted(keys["ed25519"])], [])
    assert refusal.startswith("altered:") and "policy.yaml: changed" in refusal


def test_an_unsigned_commit_is_refused(tmp_path: Path, keys: dict[str, Path]) -> None:
    link, commit_id = _signed(tmp_path, None)
    refusal = _refusal(link, [_trusted(keys["ed25519"])], [])
    assert refusal.startswith("unsigned:") and f"commit {commit_id} is unsigned" in refusal


def test_an_unlisted_key_is_refused_by_its_fingerprint(
    tmp_path: Path, keys: dict[str, Path]
) -> None:
    link, _ = _signed(tmp_path, keys["other"])
    refusal = _refusal(link, [_trusted(keys["ed25519"])], [_signers(keys["rsa"])])
    assert refusal.startswith("untrusted:")
    assert "signed by SSH key SHA256:" in refusal
    assert "(authorities: policy-team, maintainers)" in refusal


def test_a_signature_copied_from_another_commit_is_refused(
    tmp_path: Path, keys: dict[str, Path]
) -> None:
    repo = source_repo(tmp_path)
    good = commit(repo, FILES, key=keys["ed25519"])
    weak = commit(repo, {"policy.yaml": "# nothing enforced\n"}, key=None, when=WHEN + 60)
    sync(repo, tmp_path, good)
    sync(repo, tmp_path, weak)
    signature = raw_commit(tmp_path, good).split(b"\ngpgsig ", 1)[1].split(b"\n\n", 1)[0]
    header, message = raw_commit(tmp_path, weak).split(b"\n\n", 1)
    forged = forge(tmp_path, header + b"\ngpgsig " + signature + b"\n\n" + message)
    refusal = _refusal(check_out(tmp_path, forged), [_trusted(keys["ed25519"])], [])
    assert refusal.startswith("altered:") and "copied from another commit" in refusal


@pytest.mark.parametrize(
    ("old", "new"),
    [(b"\n\npolicies\n", b"\n\npolicies, reviewed\n"), (b"committer Policy", b"committer Mallory")],
)
def test_a_commit_changed_after_signing_is_refused(
    tmp_path: Path, keys: dict[str, Path], old: bytes, new: bytes
) -> None:
    _link, commit_id = _signed(tmp_path, keys["ed25519"])
    raw = raw_commit(tmp_path, commit_id)
    assert old in raw
    forged = forge(tmp_path, raw.replace(old, new, 1))
    refusal = _refusal(check_out(tmp_path, forged), [_trusted(keys["ed25519"])], [])
    assert refusal.startswith("altered:") and "changed after signing" in refusal


def test_a_tree_swapped_after_signing_is_refused(tmp_path: Path, keys: dict[str, Path]) -> None:
    repo = source_repo(tmp_path)
    good = commit(repo, FILES, key=keys["ed25519"])
    weak = commit(repo, {"policy.yaml": "# nothing enforced\n"}, key=None)
    sync(repo, tmp_path, weak)
    sync(repo, tmp_path, good)
    weak_tree = raw_commit(tmp_path, weak).split(b"\n", 1)[0]
    raw = raw_commit(tmp_path, good)
    forged = forge(tmp_path, weak_tree + b"\n" + raw.split(b"\n", 1)[1])
    refusal = _refusal(check_out(tmp_path, forged), [_trusted(keys["ed25519"])], [])
    assert refusal.startswith("altered:")


@pytest.mark.parametrize("change", ["changed", "added", "removed"])
def test_a_worktree_file_touched_after_checkout_is_named(
    tmp_path: Path, keys: dict[str, Path], change: str
) -> None:
    link, _ = _signed(tmp_path, keys["ed25519"])
    if change == "changed":
        (link / "exception.yaml").write_text("# widened\n")
        name = "exception.yaml"
    elif change == "added":
        (link / "waiver.yaml").write_text("kind: ImagePolicyException\n")
        name = "waiver.yaml"
    else:
        (link / "tests.yaml").unlink()
        name = "tests.yaml"
    refusal = _refusal(link, [_trusted(keys["ed25519"])], [])
    assert refusal.startswith("altered:") and f"{name}: {change} after signing" in refusal


@pytest.mark.parametrize(
    ("options", "why"),
    [
        ('valid-before="20261231Z"', "was valid before 2026-12-31T00:00:00Z only"),
        ('valid-after="202701160000Z"', "is valid after 2027-01-16T00:00:00Z only"),
        ('namespaces="file"', 'allows namespaces="file", not git'),
        ('namespaces="*,!git"', 'allows namespaces="*,!git", not git'),
    ],
)
def test_an_allowed_signer_outside_its_options_is_refused(
    tmp_path: Path, keys: dict[str, Path], options: str, why: str
) -> None:
    link, _ = _signed(tmp_path, keys["ed25519"])
    refusal = _refusal(link, [], [_signers(keys["ed25519"], options)])
    assert refusal.startswith("untrusted:") and why in refusal


def test_an_allowed_signer_within_its_options_verifies(
    tmp_path: Path, keys: dict[str, Path]
) -> None:
    link, _ = _signed(tmp_path, keys["ed25519"])
    options = 'namespaces="file,git",valid-after="20270101",valid-before="20270201Z"'
    assert verify_checkout(link, [], [_signers(keys["ed25519"], options)]).version == WHEN


def test_a_gitsign_or_openpgp_signature_is_refused_with_what_to_do(
    tmp_path: Path, keys: dict[str, Path]
) -> None:
    _link, commit_id = _signed(tmp_path, None)
    header, message = raw_commit(tmp_path, commit_id).split(b"\n\n", 1)
    for armor, said in [(b"SIGNED MESSAGE", "gitsign"), (b"PGP SIGNATURE", "OpenPGP")]:
        signature = b"-----BEGIN " + armor + b"-----\n AAAA\n -----END " + armor + b"-----"
        forged = forge(tmp_path, header + b"\ngpgsig " + signature + b"\n\n" + message)
        refusal = _refusal(check_out(tmp_path, forged), [_trusted(keys["ed25519"])], [])
        assert refusal.startswith("untrusted:") and said in refusal


def test_a_directory_outside_git_is_unsigned(tmp_path: Path, keys: dict[str, Path]) -> None:
    directory = tmp_path / "plain"
    directory.mkdir()
    refusal = _refusal(directory, [_trusted(keys["ed25519"])], [])
    assert refusal.startswith("unsigned:") and "not in a Git checkout" in refusal


def test_a_symbolic_link_in_the_commit_is_refused(tmp_path: Path, keys: dict[str, Path]) -> None:
    repo = source_repo(tmp_path)
    commit_id = commit(repo, FILES, key=keys["ed25519"], links={"alias.yaml": "policy.yaml"})
    link = sync(repo, tmp_path, commit_id)
    refusal = _refusal(link, [_trusted(keys["ed25519"])], [])
    assert "regular files only" in refusal


def test_a_huge_blob_is_refused_before_it_is_read(tmp_path: Path, keys: dict[str, Path]) -> None:
    repo = source_repo(tmp_path)
    commit_id = commit(repo, {"huge.yaml": bytes(80 * 1024 * 1024)}, key=keys["ed25519"])
    link = sync(repo, tmp_path, commit_id, checkout=False)
    started = time.monotonic()
    refusal = _refusal(link, [_trusted(keys["ed25519"])], [])
    assert "more than 10000 files or 64 MiB" in refusal
    assert time.monotonic() - started < 2


def test_a_tree_of_too_many_entries_is_refused(tmp_path: Path, keys: dict[str, Path]) -> None:
    repo = source_repo(tmp_path)
    commit(repo, {"a.yaml": "x\n"}, key=None)
    blob = git(repo, "rev-parse", "HEAD:a.yaml")
    listing = "".join(f"100644 blob {blob}\tp{n:05}.yaml\n" for n in range(10_001))
    tree = git(repo, "mktree", stdin=listing.encode())
    signing = ["-c", "gpg.format=ssh", "-c", f"user.signingkey={keys['ed25519']}"]
    signed = git(repo, *signing, "commit-tree", "-S", "-m", "many", tree)
    link = sync(repo, tmp_path, signed, checkout=False)
    refusal = _refusal(link, [_trusted(keys["ed25519"])], [])
    assert refusal.startswith("invalid:") and "more than 10000 files" in refusal


def test_a_huge_commit_object_is_refused(tmp_path: Path, keys: dict[str, Path]) -> None:
    _link, commit_id = _signed(tmp_path, keys["ed25519"])
    raw = raw_commit(tmp_path, commit_id)
    forged = forge(tmp_path, raw + b"x" * (2 * 1024 * 1024))
    refusal = _refusal(check_out(tmp_path, forged), [_trusted(keys["ed25519"])], [])
    assert refusal.startswith("invalid:") and "not a commit of at most 1048576 bytes" in refusal


class _Config:
    def __init__(self, keys: list[TrustedKey], signers: list[AllowedSigners]) -> None:
        self.authorities, self.allowed_signers = keys, signers


def test_directories_nested_too_deep_are_refused(tmp_path: Path, keys: dict[str, Path]) -> None:
    deep = "/".join(["d"] * 70) + "/policy.yaml"
    link, _ = _signed(tmp_path, keys["ed25519"], {deep: FILES["policy.yaml"]})
    refusal = _refusal(link, [_trusted(keys["ed25519"])], [])
    assert refusal.startswith("invalid:") and "nested deeper than 64" in refusal
