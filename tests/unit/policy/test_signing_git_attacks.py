"""Hostile Git checkouts: git-sync's repository, forged commits and signatures.

The attacker can push to the branch git-sync follows, or write to git-sync's
volume, but holds no authority's key. Each case must end in a refusal that
names the problem: never a commit nobody signed (or content other than the
signed commit's), never a hang of the reader or a crash.
"""

from __future__ import annotations

import base64
import os
import re
import subprocess
import sys
import zlib
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
from tests.support.kube import policy_yaml
from tests.support.policysigning import FILES, MemoryMarks
from tests.unit.signatures.test_gitsign import _real_commit
from webhook.policy.model import Keyless
from webhook.policy.signedset import SignedSets
from webhook.policy.signing.envelope import TrustedKey
from webhook.policy.signing.gate import PolicySignatureError, Verified
from webhook.policy.signing.gitcheckout import Checkout
from webhook.policy.signing.gitverify import verify_checkout
from webhook.policy.signing.sshsig import load_ssh_public_key, ssh_key_blob
from webhook.signatures.gitsign import PEM_BEGIN, PEM_END, GitsignAuthority, verify_gitsign
from webhook.trust.trustroot import load_trusted_root

# Git mode: libgit2 opens files with the GIL held, so a FIFO there would stop the
# whole process; each case runs in a child process, killed if it hangs.

_GIT_CASE = """
import os, sys
from pathlib import Path
from tests.support.gitsigning import commit, public_line, source_repo, ssh_key, sync
from tests.support.policysigning import FILES
from webhook.policy.signing.envelope import TrustedKey
from webhook.policy.signing.gate import PolicySignatureError
from webhook.policy.signing.gitverify import verify_checkout
from webhook.policy.signing.sshsig import load_ssh_public_key, ssh_key_blob

root, case = Path(sys.argv[1]), sys.argv[2]
key = ssh_key(root, "team")
_, blob = ssh_key_blob(public_line(key), source="test")
team = TrustedKey("team", load_ssh_public_key(blob, source="test"))
repo = source_repo(root)
commit_id = commit(repo, FILES, key=key)
link = sync(repo, root)
worktree = Path(os.path.realpath(link))
gitdir = Path((worktree / ".git").read_text().split(":", 1)[1].strip())
common = root / "git" / ".git"
target = {
    "worktree .git file": worktree / ".git",
    "HEAD": gitdir / "HEAD",
    "commondir": gitdir / "commondir",
    "config": common / "config",
    "loose commit object": common / "objects" / commit_id[:2] / commit_id[2:],
    "alternates": common / "objects" / "info" / "alternates",
    "packed-refs": common / "packed-refs",
}[case]
target.parent.mkdir(parents=True, exist_ok=True)
if target.exists():
    target.unlink()
os.mkfifo(target)
try:
    verify_checkout(link, [team], [])
    print("LOADED")
except PolicySignatureError as exc:
    print(f"REFUSED {exc.reason}: {exc}")
"""


@pytest.mark.parametrize(
    "case",
    [
        "worktree .git file",
        "HEAD",
        "commondir",
        "config",
        "loose commit object",
        "alternates",
        "packed-refs",
    ],
)
def test_a_fifo_in_git_syncs_repository_is_refused_not_blocked_on(
    tmp_path: Path, case: str
) -> None:
    root = Path(__file__).resolve().parents[3]
    done = subprocess.run(
        [sys.executable, "-c", _GIT_CASE, str(tmp_path), case],
        cwd=root,
        env={**os.environ, "PYTHONPATH": str(root)},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.startswith("REFUSED invalid: "), done.stdout
    assert "is a FIFO" in done.stdout and "clones again" in done.stdout


# Git mode, in process: forged objects and commits that cannot hang the reader.


@pytest.fixture(scope="module")
def ssh_team(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, TrustedKey]:
    key = ssh_key(tmp_path_factory.mktemp("ssh"), "team")
    _, blob = ssh_key_blob(public_line(key), source="test")
    return key, TrustedKey("team", load_ssh_public_key(blob, source="test"))


def _git_refusal(link: Path, team: TrustedKey) -> PolicySignatureError:
    with pytest.raises(PolicySignatureError) as caught:
        verify_checkout(link, [team], [])
    return caught.value


def _with_signature(raw: bytes, armored: bytes) -> bytes:
    header, message = raw.split(b"\n\n", 1)
    folded = armored.strip().replace(b"\n", b"\n ")
    return header + b"\ngpgsig " + folded + b"\n\n" + message


@pytest.mark.parametrize("when", [99_999_999_999_999, 9_999_999_999_999_999_999, -99_999_999_999])
def test_a_forged_commit_time_out_of_range_is_refused_not_a_crash(
    tmp_path: Path, ssh_team: tuple[Path, TrustedKey], when: int
) -> None:
    repo = source_repo(tmp_path)
    good = commit(repo, FILES, key=ssh_team[0])
    sync(repo, tmp_path, good)
    raw = raw_commit(tmp_path, good)
    forged = re.sub(rb"(committer [^\n]*> )\d+", rb"\g<1>" + str(when).encode(), raw, count=1)
    error = _git_refusal(check_out(tmp_path, forge(tmp_path, forged)), ssh_team[1])
    assert error.reason == "invalid" and "cannot read commit" in error.message


def test_a_loose_object_whose_size_lies_is_refused_not_a_crash(
    tmp_path: Path, ssh_team: tuple[Path, TrustedKey]
) -> None:
    repo = source_repo(tmp_path)
    good = commit(repo, FILES, key=ssh_team[0])
    link = sync(repo, tmp_path, good)
    blob = git(tmp_path / "git", "rev-parse", f"{good}:policy.yaml")
    loose = tmp_path / "git" / ".git" / "objects" / blob[:2] / blob[2:]
    body = zlib.decompress(loose.read_bytes()).split(b"\0", 1)[1]
    squeeze = zlib.compressobj()
    data = squeeze.compress(b"blob %d\0" % len(body) + body)
    data += squeeze.compress(b"\0" * (64 << 20)) + squeeze.flush()  # 64 MiB more than it says
    loose.chmod(0o644)
    loose.write_bytes(data)
    error = _git_refusal(link, ssh_team[1])
    assert error.reason == "invalid" and "delete its volume" in error.message


def test_a_second_gpgsig_header_is_refused(
    tmp_path: Path, ssh_team: tuple[Path, TrustedKey]
) -> None:
    repo = source_repo(tmp_path)
    good = commit(repo, FILES, key=ssh_team[0])
    sync(repo, tmp_path, good)
    raw = raw_commit(tmp_path, good)
    signature = raw.split(b"\ngpgsig ", 1)[1].split(b"\n\n", 1)[0]
    header, message = raw.split(b"\n\n", 1)
    doubled = header + b"\ngpgsig " + signature + b"\n\n" + message
    error = _git_refusal(check_out(tmp_path, forge(tmp_path, doubled)), ssh_team[1])
    assert error.reason == "altered"


def test_a_signature_made_in_another_namespace_is_refused(
    tmp_path: Path, ssh_team: tuple[Path, TrustedKey]
) -> None:
    # What ssh-keygen -Y sign -n file makes of the very bytes of an unsigned commit:
    # a signature for another purpose, which must not pass as a commit signature.
    repo = source_repo(tmp_path)
    plain = commit(repo, FILES, key=None)
    sync(repo, tmp_path, plain)
    raw = raw_commit(tmp_path, plain)
    armored = subprocess.run(
        ["ssh-keygen", "-q", "-Y", "sign", "-n", "file", "-f", str(ssh_team[0])],
        input=raw,
        capture_output=True,
        check=True,
        timeout=60,
    ).stdout
    forged = forge(tmp_path, _with_signature(raw, armored))
    error = _git_refusal(check_out(tmp_path, forged), ssh_team[1])
    assert error.reason == "invalid" and "namespace 'file'" in error.message


def test_a_signed_tree_holding_dot_dot_is_refused(
    tmp_path: Path, ssh_team: tuple[Path, TrustedKey]
) -> None:
    repo = source_repo(tmp_path)
    good = commit(repo, FILES, key=ssh_team[0])
    sync(repo, tmp_path, good)
    top = tmp_path / "git"
    blob = bytes.fromhex(git(top, "rev-parse", f"{good}:policy.yaml"))
    tree = b"100644 ..\0" + blob + b"100644 policy.yaml\0" + blob
    tree_id = git(top, "hash-object", "-t", "tree", "-w", "--literally", "--stdin", stdin=tree)
    signing = ["-c", "gpg.format=ssh", "-c", f"user.signingkey={ssh_team[0]}"]
    forged = git(top, *signing, "commit-tree", "-S", "-m", "dots", tree_id)
    link = check_out(tmp_path, forged, checkout=False)
    error = _git_refusal(link, ssh_team[1])
    assert error.reason == "invalid" and "not a plain UTF-8 file name" in error.message


def test_a_replace_ref_does_not_change_the_commit_read(
    tmp_path: Path, ssh_team: tuple[Path, TrustedKey]
) -> None:
    repo = source_repo(tmp_path)
    good = commit(repo, FILES, key=ssh_team[0])
    weak = commit(repo, {**FILES, "policy.yaml": "# nothing\n"}, key=None, when=WHEN + 60)
    link = sync(repo, tmp_path, good)
    git(tmp_path / "git", "fetch", "-q", str(repo), weak)
    git(tmp_path / "git", "replace", good, weak)
    (tmp_path / "git" / ".git" / "info").mkdir(exist_ok=True)
    (tmp_path / "git" / ".git" / "info" / "grafts").write_text(f"{good}\n")
    (tmp_path / "git" / ".git" / "shallow").write_text(f"{good}\n")
    verified = verify_checkout(link, [ssh_team[1]], [])
    assert verified.digest == f"git:{good}"
    assert verified.files["policy.yaml"] == FILES["policy.yaml"].encode()


def test_a_gitsign_signature_whose_certificate_cannot_be_read_is_invalid() -> None:
    real = _real_commit()
    text = real.signature.strip()
    der = base64.b64decode(b"".join(text[len(PEM_BEGIN) : -len(PEM_END)].split()))
    hostile = der.replace(b"\xa0\x03\x02\x01\x02", b"\xa0\x03\x02\x01\x5e", 1)
    assert hostile != der
    armored = PEM_BEGIN + b"\n" + base64.b64encode(hostile) + b"\n" + PEM_END
    checkout = Checkout(real.commit, armored, real.payload, real.committed_at, {})
    production = load_trusted_root("production", Path("."))
    keyless = Keyless(
        issuer="https://accounts.google.com", subject="billy@chainguard.dev", root=production
    )
    with pytest.raises(PolicySignatureError) as caught:
        verify_gitsign(checkout, [GitsignAuthority("chainguard", keyless)])
    assert caught.value.reason == "invalid"
    assert "not a valid X509 version" in caught.value.message


def test_an_ssh_signature_naming_a_compressed_ec_point_is_invalid_not_a_crash(
    tmp_path: Path,
) -> None:
    # cryptography answers a compressed point with NotImplementedError; anyone who
    # can push can write such a gpgsig header onto an unsigned commit.
    key = ssh_key(tmp_path, "ecdsa", "ecdsa", 256)
    repo = source_repo(tmp_path)
    good = commit(repo, FILES, key=key)
    sync(repo, tmp_path, good)
    raw = raw_commit(tmp_path, good)
    armored = raw.split(b"\ngpgsig ", 1)[1].split(b"\n\n", 1)[0].replace(b"\n ", b"\n")
    body = base64.b64decode(b"".join(armored.strip().split(b"\n")[1:-1]))
    point = body.index(b"\x00\x00\x00\x41\x04") + 4  # the key's uncompressed point, 65 bytes
    hostile = body[:point] + b"\x02" + body[point + 1 :]
    lines = [
        b"-----BEGIN SSH SIGNATURE-----",
        base64.b64encode(hostile),
        b"-----END SSH SIGNATURE-----",
    ]
    header, message = raw.split(b"\ngpgsig ", 1)[0], raw.split(b"\n\n", 1)[1]
    forged = _with_signature(header + b"\n\n" + message, b"\n".join(lines))
    _, blob = ssh_key_blob(public_line(key), source="test")
    team = TrustedKey("team", load_ssh_public_key(blob, source="test"))
    error = _git_refusal(check_out(tmp_path, forge(tmp_path, forged)), team)
    assert error.reason == "invalid" and "not an accepted SSH public key" in error.message


@pytest.mark.parametrize("where", ["rewritten in place", "served by objects/info/alternates"])
def test_a_blob_whose_content_does_not_hash_to_its_name_is_refused(
    tmp_path: Path, ssh_team: tuple[Path, TrustedKey], where: str
) -> None:
    # The signed commit names the blob by its hash; a weaker policy put under that
    # name (and into the worktree, so that the two agree) must not load.
    repo = source_repo(tmp_path)
    good = commit(repo, FILES, key=ssh_team[0])
    link = sync(repo, tmp_path, good)
    blob = git(tmp_path / "git", "rev-parse", f"{good}:policy.yaml")
    objects = tmp_path / "git" / ".git" / "objects"
    weak = policy_yaml(registries='["**"]').encode()
    forged = zlib.compress(b"blob %d\0" % len(weak) + weak)
    loose = objects / blob[:2] / blob[2:]
    if where == "rewritten in place":
        loose.chmod(0o644)
        loose.write_bytes(forged)
    else:
        other = tmp_path / "elsewhere" / "objects"
        (other / blob[:2]).mkdir(parents=True)
        (other / blob[:2] / blob[2:]).write_bytes(forged)
        loose.unlink()
        (objects / "info").mkdir(exist_ok=True)
        (objects / "info" / "alternates").write_text(f"{other}\n")
    (link / "policy.yaml").write_bytes(weak)
    error = _git_refusal(link, ssh_team[1])
    assert error.reason == "invalid" and "object hash mismatch" in error.message


def test_a_git_file_pointed_at_an_older_signed_commit_is_a_replay(
    tmp_path: Path, ssh_team: tuple[Path, TrustedKey]
) -> None:
    # The worktree's .git file redirected to the git directory of another
    # checkout: whatever commit it names is read and verified, so only a commit an
    # authority signed can load, and an older one is refused by the mark.
    repo = source_repo(tmp_path)
    older = commit(repo, FILES, key=ssh_team[0], message="older")
    newer = commit(repo, FILES, key=ssh_team[0], when=WHEN + 60, message="newer")
    sync(repo, tmp_path, older)
    link = sync(repo, tmp_path, newer)
    worktrees = tmp_path / "git" / ".worktrees"

    def verifier(directory: Path) -> Verified:
        return verify_checkout(directory, [ssh_team[1]], [])

    sets = SignedSets(verifier, MemoryMarks(), required=True)
    sets.advance(sets.admit(link))
    (worktrees / newer / ".git").write_text((worktrees / older / ".git").read_text())
    assert verifier(link).digest == f"git:{older}"  # the redirect is followed...
    with pytest.raises(PolicySignatureError) as caught:
        sets.admit(link)  # ...and refused
    assert caught.value.reason == "replayed"
    assert f"older than version {WHEN + 60}" in caught.value.message
