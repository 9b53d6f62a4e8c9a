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
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Mapping
from pathlib import Path

from webhook.core.errors import PolicyError
from webhook.policy.loader import load_directory
from webhook.policy.model import PolicySet
from webhook.policy.signing.manifest import check_path
from webhook.trust.trustroot import TrustRoots

__all__ = ["load_verified"]


def load_verified(
    directory: Path, files: Mapping[str, bytes], roots: TrustRoots | None = None
) -> PolicySet:
    """The policy set of ``files`` (relative path: content), named as files of ``directory``.

    Raises:
        PolicyError: the set does not compile (naming files of ``directory``),
            or the private copy cannot be written.
    """
    try:
        base = tempfile.mkdtemp(prefix="trustgate-policies-")
    except OSError as exc:
        raise _unwritable(exc) from exc
    try:
        copy = Path(base, "set")
        _write(copy, files)
        return load_directory(copy, roots, shown_as=directory)
    finally:
        shutil.rmtree(base, ignore_errors=True)


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
