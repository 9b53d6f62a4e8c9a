"""Real Git repositories with SSH-signed commits, checked out the way git-sync v4 does.

``git`` and ``ssh-keygen`` (Debian's git and openssh-client, installed by
``make test-deps``) make the keys, the signatures and the commits: the
verifier is tested against what the tools really write, not against a copy
of the format made by the code under test.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Mapping
from pathlib import Path

#: The committer time of commits made without one (2027-01-15T08:00:00Z).
WHEN = 1_800_000_000
_ENV = {
    "GIT_CONFIG_NOSYSTEM": "1",
    "GIT_CONFIG_GLOBAL": os.devnull,
    "GIT_AUTHOR_NAME": "Policy Team",
    "GIT_AUTHOR_EMAIL": "policy@example.com",
    "GIT_COMMITTER_NAME": "Policy Team",
    "GIT_COMMITTER_EMAIL": "policy@example.com",
}


def git(cwd: Path, *args: str, when: int = WHEN, stdin: bytes | None = None) -> str:
    """Run ``git args`` in ``cwd`` with a clean configuration; its standard output."""
    env = {**os.environ, **_ENV, "GIT_COMMITTER_DATE": f"{when} +0000"}
    env["GIT_AUTHOR_DATE"] = env["GIT_COMMITTER_DATE"]
    done = subprocess.run(
        ["git", *args], cwd=cwd, env=env, input=stdin, capture_output=True, check=True, timeout=120
    )
    return done.stdout.decode().strip()


def ssh_key(directory: Path, name: str, kind: str = "ed25519", bits: int | None = None) -> Path:
    """A new unencrypted SSH key pair ``directory/name`` (+ ``.pub``); the private key's path."""
    path = directory / name
    size = ["-b", str(bits)] if bits else []
    subprocess.run(
        ["ssh-keygen", "-q", "-t", kind, *size, "-N", "", "-C", name, "-f", str(path)],
        check=True,
        timeout=60,
    )
    return path


def public_line(key: Path) -> str:
    """The OpenSSH public key line of private key ``key`` (``ssh-ed25519 AAAA... name``)."""
    return Path(f"{key}.pub").read_text().strip()


def source_repo(root: Path) -> Path:
    """An empty repository ``root/src`` to commit policies into."""
    repo = root / "src"
    repo.mkdir()
    git(repo, "init", "-q", "-b", "main")
    return repo


def commit(
    repo: Path,
    files: Mapping[str, str | bytes],
    *,
    key: Path | None,
    when: int = WHEN,
    message: str = "policies",
    links: Mapping[str, str] | None = None,
) -> str:
    """Replace the tree of ``repo`` with ``files`` (and symbolic ``links``) and commit it.

    The commit is SSH-signed by ``key``, unsigned when it is None.
    """
    for path in repo.iterdir():
        if path.name != ".git":
            subprocess.run(["rm", "-rf", str(path)], check=True, timeout=60)
    for name, content in files.items():
        target = repo / name
        target.parent.mkdir(parents=True, exist_ok=True)
        data = content.encode() if isinstance(content, str) else content
        target.write_bytes(data)
    for name, points_to in (links or {}).items():
        (repo / name).symlink_to(points_to)
    git(repo, "add", "-A")
    signing = ["-c", "gpg.format=ssh", "-c", f"user.signingkey={key}"] if key else []
    sign = ["-S"] if key else []
    git(repo, *signing, "commit", "-q", "--allow-empty", *sign, "-m", message, when=when)
    return git(repo, "rev-parse", "HEAD")


def sync(
    repo: Path, root: Path, revision: str = "HEAD", link: str = "policies", checkout: bool = True
) -> Path:
    """Check ``revision`` of ``repo`` out as git-sync v4 does; the link (``root/git/policies``).

    The root is a repository of its own; each commit is a worktree under
    ``.worktrees/<commit>`` whose ``.git`` file points into the root's ``.git``;
    the link is swapped to the new worktree.
    """
    top = root / "git"
    if not (top / ".git").exists():
        top.mkdir(exist_ok=True)
        git(top, "init", "-q")
    git(top, "fetch", "-q", str(repo), revision)
    return check_out(root, git(top, "rev-parse", "FETCH_HEAD"), link, checkout)


def check_out(root: Path, commit_id: str, link: str = "policies", checkout: bool = True) -> Path:
    """Check commit ``commit_id`` of git-sync's repository out and point the link at it."""
    top = root / "git"
    worktree = top / ".worktrees" / commit_id
    if not worktree.exists():
        files = [] if checkout else ["--no-checkout"]
        git(top, "worktree", "add", "-q", "--detach", *files, str(worktree), commit_id)
    temporary = top / f".{link}.new"
    temporary.unlink(missing_ok=True)
    temporary.symlink_to(Path(".worktrees") / commit_id)
    temporary.replace(top / link)
    return top / link


def forge(root: Path, raw: bytes) -> str:
    """Write commit object ``raw`` into git-sync's repository under ``root``; its id.

    What an attacker with write access to the repository (or the branch) can
    do: any bytes, including a signature header copied from another commit.
    """
    return git(
        root / "git", "hash-object", "-t", "commit", "-w", "--literally", "--stdin", stdin=raw
    )


def raw_commit(root: Path, revision: str) -> bytes:
    """The raw bytes of commit ``revision`` in git-sync's repository under ``root``."""
    done = subprocess.run(
        ["git", "cat-file", "commit", revision],
        cwd=root / "git",
        env={**os.environ, **_ENV},
        capture_output=True,
        check=True,
        timeout=60,
    )
    return done.stdout
