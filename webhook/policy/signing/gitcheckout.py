"""The Git commit a policy directory is checked out from, read from the repository, bounded.

git-sync (v4, ``--root /git --link policies``) keeps the repository in its
root and checks each commit out into a worktree; ``/git/policies`` is a link
to that worktree, whose ``.git`` file points into the repository. The policy
directory may be the worktree or a directory inside it.

Read with libgit2 (pygit2), chosen over dulwich by measuring: both read a
2,000-file checkout in the same ~35 ms (reading the worktree dominates), but
only libgit2 reads an object's size without inflating it
(``Odb.read_header``: 0.1 ms and no memory for a 512 MiB blob, loose or
packed), so an oversized commit, tree or blob is refused before it costs
memory; dulwich inflates an object to learn its size. Only the checked-out
commit and its tree are read: no history walk. libgit2 runs no hooks and no
configured commands, so its check that the repository belongs to this user
is switched off: git-sync writes as its own user, which is not trustgate's.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path, PurePosixPath

import pygit2
from pygit2.enums import FileMode, ObjectType, Option, RepositoryOpenFlag

from webhook.core.errors import PolicyError
from webhook.policy.signing.gate import PolicySignatureError
from webhook.policy.signing.gitfiles import check_repository
from webhook.policy.signing.manifest import check_path
from webhook.policy.signing.tree import MAX_FILES, MAX_TOTAL_BYTES, SIGNATURE_DIR

__all__ = ["MAX_COMMIT_BYTES", "MAX_TREE_BYTES", "Checkout", "read_checkout"]

#: Largest commit object read (a signed one is a few KiB; gitsign's, with its certificate, ~5).
MAX_COMMIT_BYTES = 1024 * 1024
#: Largest tree object read: MAX_FILES entries of long names fit in 4 MiB.
MAX_TREE_BYTES = 8 * 1024 * 1024
#: Deepest directory nesting read, and most parent directories searched for ``.git``.
MAX_DEPTH = 64


@dataclass(frozen=True, slots=True)
class Checkout:
    """The checked-out commit: its id, signature, signed bytes, time, and files."""

    commit: str
    signature: bytes | None  # the gpgsig header's value, None when unsigned
    payload: bytes  # the commit object without its gpgsig header: what was signed
    committed_at: datetime  # the committer time
    files: dict[str, bytes]  # the commit's files under the policy directory, from the store


def _refuse(message: str, reason: str = "invalid") -> PolicySignatureError:
    return PolicySignatureError(message, reason=reason)


def _worktree_root(directory: Path) -> tuple[Path, str]:
    """The checkout holding ``directory`` (its ``.git`` beside it), and the path inside."""
    try:
        resolved = directory.resolve(strict=True)
    except OSError as exc:
        raise PolicyError(f"cannot read policy directory {directory}: {exc.strerror}") from exc
    except RuntimeError:  # Python 3.11 reports a link loop so
        raise PolicyError(f"{directory} is a loop of symbolic links") from None
    for depth, candidate in enumerate((resolved, *resolved.parents)):
        if depth > MAX_DEPTH:
            break
        if (candidate / ".git").exists():
            return candidate, resolved.relative_to(candidate).as_posix()
    raise _refuse(
        f"{directory} is not in a Git checkout (no .git beside it or above it); with "
        "policies.signature.source git, point the policies at git-sync's link",
        "unsigned",
    )


def read_checkout(directory: Path) -> Checkout:
    """The commit checked out where ``directory`` is, and its files under ``directory``.

    Raises:
        PolicySignatureError: not a checkout (``unsigned``); the repository,
            commit or tree cannot be read, is too large, or holds a symbolic
            link, a submodule or a name that is not a plain path (``invalid``).
        PolicyError: the directory does not exist.
    """
    root, inside = _worktree_root(directory)
    check_repository(root)  # no FIFO for libgit2 to block the whole process on
    pygit2.option(Option.SET_OWNER_VALIDATION, 0)
    # libgit2's default, made explicit: an object whose content does not hash to
    # its name (rewritten in place, or served by objects/info/alternates) is an
    # error, never content the commit's signature would seem to cover.
    pygit2.option(Option.ENABLE_STRICT_HASH_VERIFICATION, 1)
    try:
        repository = pygit2.Repository(str(root), RepositoryOpenFlag.NO_SEARCH)
        commit_id = repository.head.target
        kind, size = repository.odb.read_header(commit_id)
    except (pygit2.GitError, KeyError, ValueError) as exc:
        raise _refuse(f"cannot read the checked-out commit of {root}: {exc}") from None
    if kind != ObjectType.COMMIT or size > MAX_COMMIT_BYTES:
        raise _refuse(f"HEAD of {root} is not a commit of at most {MAX_COMMIT_BYTES} bytes")
    try:
        commit = repository[commit_id]
        assert isinstance(commit, pygit2.Commit)
        signature, payload = commit.gpg_signature
        committed_at = datetime.fromtimestamp(commit.commit_time, UTC)
        files = _Reader(repository).files(_subtree(repository, commit.tree_id, inside))
        raw = payload if payload is not None else commit.read_raw()
    except (pygit2.GitError, ValueError, OverflowError, OSError) as exc:
        # A damaged or forged object (a size that lies, a time past year 9999):
        # a refusal with its reason, not a failure of the reader.
        raise _refuse(
            f"cannot read commit {commit_id} of {root}: {exc}; if git-sync wrote it, "
            "the repository is damaged: delete its volume so that it clones again"
        ) from None
    return Checkout(str(commit_id), signature, raw, committed_at, files)


def _subtree(repository: pygit2.Repository, tree_id: pygit2.Oid, inside: str) -> pygit2.Oid:
    """The tree at relative path ``inside`` of tree ``tree_id`` (``.``: the tree itself)."""
    for part in PurePosixPath(inside).parts if inside != "." else ():
        tree = _Reader(repository).tree(tree_id, part)
        entry = next((e for e in tree if e.raw_name == part.encode()), None)
        if entry is None or entry.filemode != FileMode.TREE:
            raise _refuse(
                f"the checked-out commit has no directory {inside}: the checkout was changed",
                "altered",
            )
        tree_id = entry.id
    return tree_id


class _Reader:
    """Reads trees and blobs, each size checked before the object is inflated."""

    def __init__(self, repository: pygit2.Repository) -> None:
        self.repository = repository
        self.total = 0
        self.found: dict[str, bytes] = {}

    def _header(self, oid: pygit2.Oid, path: str) -> tuple[ObjectType, int]:
        try:
            kind, size = self.repository.odb.read_header(oid)
        except (pygit2.GitError, KeyError) as exc:
            raise _refuse(f"{path}: cannot read object {oid} of the commit: {exc}") from None
        return ObjectType(kind), size

    def tree(self, oid: pygit2.Oid, path: str) -> pygit2.Tree:
        kind, size = self._header(oid, path)
        if kind != ObjectType.TREE or size > MAX_TREE_BYTES:
            raise _refuse(f"{path}: not a tree of at most {MAX_TREE_BYTES} bytes in the commit")
        tree = self.repository[oid]
        assert isinstance(tree, pygit2.Tree)
        return tree

    def files(self, tree_id: pygit2.Oid) -> dict[str, bytes]:
        self._walk(tree_id, "", 0)
        return self.found

    def _walk(self, tree_id: pygit2.Oid, prefix: str, depth: int) -> None:
        if depth > MAX_DEPTH:
            raise _refuse(f"{prefix}: directories nested deeper than {MAX_DEPTH}")
        for entry in self.tree(tree_id, prefix or "."):
            raw = entry.raw_name or b""
            path = prefix + _name(raw, prefix)
            if raw.startswith(b"..") or raw == b".git":
                continue
            if not prefix and raw == SIGNATURE_DIR.encode():
                continue  # as read_tree skips it, so both sides compare alike
            if entry.filemode == FileMode.TREE:
                self._walk(entry.id, path + "/", depth + 1)
            elif entry.filemode in (FileMode.BLOB, FileMode.BLOB_EXECUTABLE):
                self._blob(entry.id, path)
            else:
                what = "a symbolic link" if entry.filemode == FileMode.LINK else "a submodule"
                raise _refuse(
                    f"{path}: is {what} in the commit; a signed policy directory holds "
                    "regular files only"
                )

    def _blob(self, oid: pygit2.Oid, path: str) -> None:
        kind, size = self._header(oid, path)
        self.total += size
        if len(self.found) >= MAX_FILES or self.total > MAX_TOTAL_BYTES:
            raise _refuse(
                f"the commit's policy directory holds more than {MAX_FILES} files or "
                f"{MAX_TOTAL_BYTES // (1024 * 1024)} MiB; is it the policy directory?"
            )
        if kind != ObjectType.BLOB:
            raise _refuse(f"{path}: not a file in the commit")
        _, data = self.repository.odb.read(oid)
        self.found[path] = data


def _name(raw: bytes, prefix: str) -> str:
    try:
        name = raw.decode("utf-8")
        if "/" in name:
            raise PolicyError("a slash in a tree entry")
        return check_path(name)
    except (UnicodeDecodeError, PolicyError):
        shown = raw.decode("utf-8", "replace")
        raise _refuse(f"{prefix}{shown}: not a plain UTF-8 file name in the commit") from None
