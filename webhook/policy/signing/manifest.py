"""The canonical manifest of a policy directory: each file's path and SHA-256, a version, a time.

Pure: file contents in, a ``Manifest`` and its exact bytes out. The bytes are
sorted-key compact JSON, so one directory signed twice with the same version
and time gives the same bytes, and a verifier compares what was signed, not a
re-serialisation of it.
"""

from __future__ import annotations

import hashlib
import json
import posixpath
import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from webhook.core.errors import PolicyError
from webhook.core.untrusted import unique_keys

__all__ = [
    "MANIFEST_KIND",
    "Difference",
    "Manifest",
    "build_manifest",
    "check_path",
    "compare",
    "manifest_bytes",
    "parse_manifest",
]

#: What the ``kind`` field of every manifest says, so a signature over other JSON never passes.
MANIFEST_KIND = "trustgate.dev/PolicyManifest/v1"
_SHA256 = re.compile(r"^[0-9a-f]{64}$")
_TIME = "%Y-%m-%dT%H:%M:%SZ"
#: Highest version: a signed 64-bit integer, which every mark store reads back
#: (a ConfigMap's decimal string included); a larger one would be written and
#: then refused at every later read, so that no set could load again.
MAX_VERSION = 2**63 - 1


@dataclass(frozen=True, slots=True)
class Manifest:
    """What a signature covers: ``files`` maps each relative path to its content's SHA-256."""

    files: Mapping[str, str]
    version: int
    signed_at: datetime


@dataclass(frozen=True, slots=True)
class Difference:
    """One way a directory differs from its manifest: ``added``, ``removed`` or ``changed``."""

    path: str
    change: str

    def __str__(self) -> str:
        return {
            "added": f"{self.path}: added after signing (not in the signed manifest)",
            "removed": f"{self.path}: removed after signing (in the signed manifest, not here)",
            "changed": f"{self.path}: changed after signing (its SHA-256 differs)",
        }[self.change]


def check_path(path: str) -> str:
    """``path`` if it is a normalized relative POSIX path inside the directory.

    Raises:
        PolicyError: for an absolute path, ``.`` or ``..`` parts, empty parts,
            a backslash or a control character.
    """
    parts = path.split("/")
    bad = (
        not path
        or path.startswith("/")
        or posixpath.normpath(path) != path
        or any(part in ("", ".", "..") for part in parts)
        or "\\" in path
        or any(ord(char) < 0x20 or ord(char) == 0x7F for char in path)
    )
    if bad:
        raise PolicyError(f"{path!r} is not a normalized relative path inside the directory")
    return path


def build_manifest(files: Mapping[str, bytes], version: int, signed_at: datetime) -> Manifest:
    """The manifest of ``files`` (relative path -> content).

    Raises:
        PolicyError: a path is not normalized and relative, or ``version`` is below 1.
    """
    if not 1 <= version <= MAX_VERSION:
        raise PolicyError(
            f"the version must be a whole number from 1 to {MAX_VERSION} (got {version})"
        )
    digests = {check_path(path): hashlib.sha256(data).hexdigest() for path, data in files.items()}
    moment = signed_at.astimezone(UTC).replace(microsecond=0)
    return Manifest(dict(sorted(digests.items())), version, moment)


def manifest_bytes(manifest: Manifest) -> bytes:
    """The canonical bytes of ``manifest``: sorted-key compact ASCII JSON."""
    document = {
        "kind": MANIFEST_KIND,
        "version": manifest.version,
        "signedAt": manifest.signed_at.astimezone(UTC).strftime(_TIME),
        "files": [
            {"path": path, "sha256": manifest.files[path]} for path in sorted(manifest.files)
        ],
    }
    return json.dumps(document, sort_keys=True, separators=(",", ":")).encode("ascii")


def parse_manifest(data: bytes) -> Manifest:
    """The manifest that ``data`` (canonical bytes, already authenticated) holds.

    Raises:
        PolicyError: the bytes are not a manifest of this kind.
    """
    try:
        # Each key once: another reader of the signed bytes must not see other values.
        document = json.loads(data, object_pairs_hook=unique_keys)
        files = _files(document["files"])
        version = document["version"]
        signed_at = datetime.strptime(document["signedAt"], _TIME).replace(tzinfo=UTC)
        if (
            document["kind"] != MANIFEST_KIND
            or type(version) is not int
            or not 1 <= version <= MAX_VERSION
        ):
            raise ValueError("not a policy manifest")
    except (ValueError, KeyError, TypeError) as exc:
        raise PolicyError(f"the signed manifest is not a {MANIFEST_KIND} document") from exc
    return Manifest(files, version, signed_at)


def _files(entries: Any) -> dict[str, str]:
    files: dict[str, str] = {}
    for entry in entries:
        path, digest = check_path(entry["path"]), entry["sha256"]
        if path in files or not isinstance(digest, str) or not _SHA256.match(digest):
            raise ValueError(f"bad entry for {path}")
        files[path] = digest
    return files


def compare(manifest: Manifest, files: Mapping[str, bytes]) -> list[Difference]:
    """How ``files`` differ from ``manifest``, by path; empty when they match.

    A renamed file shows as one path removed and one added.
    """
    differences = []
    for path in sorted(set(manifest.files) | set(files)):
        if path not in files:
            differences.append(Difference(path, "removed"))
        elif path not in manifest.files:
            differences.append(Difference(path, "added"))
        elif hashlib.sha256(files[path]).hexdigest() != manifest.files[path]:
            differences.append(Difference(path, "changed"))
    return differences
