"""Load a policy set from exactly the bytes its signature was checked against.

Verifying a directory and then loading it reads it twice; whoever can write
to it (the ConfigMap's editors, the branch git-sync follows) could swap a file
in between, and the store would enforce bytes nobody signed. So the verified
content (``Verified.files``) is written to a private directory (``mkdtemp``:
mode 0700, owned by this process, a fresh random name) and the set is
compiled from there; then the copy is deleted. Policies read their key files,
trusted roots and trust stores when they compile (the request path opens no
file), so nothing reads the copy later. Paths in the set and in errors are
rewritten to the real directory (``policy/relocate.py``).

A file a policy names outside the directory (a key file by absolute path, or
by enough ``../`` to leave it) is read from there, and no signature covers
it: whoever can write it could swap the key that admits images, and the store
would even reload on the change. ``uncovered`` says so, and the store refuses
such a set (``unsigned``) as it refuses an unsigned one. So is a file named
by an absolute path into the directory itself: signed, but read from the
directory when the policies compile rather than from the verified copy, so it
could be swapped in between (``load_verified`` refuses it).
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Mapping
from pathlib import Path

from webhook.core.errors import PolicyError
from webhook.policy.loader import load_copy
from webhook.policy.model import PolicySet
from webhook.policy.relocate import Relocation
from webhook.policy.signing.gate import PolicySignatureError
from webhook.policy.signing.manifest import check_path
from webhook.trust.trustroot import TrustRoots

__all__ = ["load_verified", "uncovered"]


def load_verified(
    directory: Path, files: Mapping[str, bytes], roots: TrustRoots | None = None
) -> PolicySet:
    """The policy set of ``files`` (relative path: content), named as files of ``directory``.

    Raises:
        PolicyError: the set does not compile (naming files of ``directory``),
            or the private copy cannot be written.
        PolicySignatureError: ``unsigned``: the policies name a file by an
            absolute path into ``directory``, which compiling reads from
            there, unverified, rather than from ``files``.
    """
    try:
        base = tempfile.mkdtemp(prefix="trustgate-policies-")
    except OSError as exc:
        raise _unwritable(exc) from exc
    try:
        copy = Path(base, "set")
        _write(copy, files)
        relocation = Relocation(copy, directory)
        policy_set = load_copy(copy, relocation, roots)
    finally:
        shutil.rmtree(base, ignore_errors=True)
    if relocation.read_from_real:
        raise PolicySignatureError(
            f"the policies name {', '.join(relocation.read_from_real)} by an absolute path "
            f"into {directory}: such a file is read again from the directory when the "
            "policies compile, not from the bytes the signature was checked against, so "
            "it could be swapped in between; name it by a path relative to the policy "
            "that uses it",
            reason="unsigned",
        )
    return policy_set


def uncovered(policy_set: PolicySet, directory: Path) -> PolicySignatureError | None:
    """Why ``policy_set`` (loaded from a signed ``directory``) is not all signed, or None.

    Its policies read files (key files, trusted roots, trust stores) outside
    ``directory``, which its signature does not cover.
    """
    top = os.path.normpath(os.path.abspath(directory))
    outside = [
        file
        for file in policy_set.files
        if not os.path.normpath(os.path.abspath(file)).startswith(top + os.sep)
    ]
    if not outside:
        return None
    return PolicySignatureError(
        f"the policies read {', '.join(sorted(outside))}, outside the signed directory "
        f"{directory}, so no signature covers what they trust: copy each file into the "
        "directory, name it by a path inside it, and sign the set again",
        reason="unsigned",
    )


def _write(copy: Path, files: Mapping[str, bytes]) -> None:
    try:
        copy.mkdir(mode=0o700)
        for relative, data in files.items():
            target = copy / check_path(relative)
            target.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
            # O_EXCL and O_NOFOLLOW: a name is written once, never through a link.
            flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW
            with os.fdopen(os.open(target, flags, 0o600), "wb") as handle:
                handle.write(data)
    except OSError as exc:
        raise _unwritable(exc) from exc


def _unwritable(exc: OSError) -> PolicyError:
    return PolicyError(
        f"cannot write the private copy of the verified policies in "
        f"{tempfile.gettempdir()}: {exc.strerror}; give the pod a writable /tmp "
        "(an emptyDir) or set TMPDIR"
    )
