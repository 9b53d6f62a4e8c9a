"""A policy directory with one file of each kind, and keys to sign it with."""

from __future__ import annotations

from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519

from tests.support.kube import policy_yaml
from webhook.policy.signing.gate import Mark, MarkError

EXCEPTION = """\
apiVersion: trustgate.dev/v1alpha1
kind: ImagePolicyException
metadata:
  name: vendor
spec:
  namespaces: ["prod-*"]
  images: ["quay.io/vendor/**"]
  policies: ["production"]
  reason: "the vendor signs from Q3 on"
  owner: team-billing
  expires: 2999-12-31
"""

TESTS = """\
apiVersion: trustgate.dev/v1alpha1
kind: ImagePolicyTest
metadata: {name: cases}
spec:
  cases:
    - name: an allowed registry
      namespace: prod-web
      image: quay.io/acme/api:1
      expect: allowed
"""

#: The file of each kind, by name.
FILES = {"policy.yaml": policy_yaml(), "exception.yaml": EXCEPTION, "tests.yaml": TESTS}


def policy_dir(root: Path) -> Path:
    """A policy directory under ``root`` holding ``FILES``."""
    directory = root / "policies"
    directory.mkdir()
    for name, text in FILES.items():
        (directory / name).write_text(text)
    return directory


def private_pem(key: ec.EllipticCurvePrivateKey | ed25519.Ed25519PrivateKey) -> bytes:
    """``key`` as an unencrypted PKCS#8 PEM."""
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def public_pem(key: ec.EllipticCurvePrivateKey | ed25519.Ed25519PrivateKey) -> bytes:
    """The PEM public key of ``key``."""
    return key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )


#: A policy that reads a key file beside it (``keys/signer.pub``), for namespaces no test
#: reviews: its key file is one more file kind a signature covers.
KEYED_POLICY = """\
apiVersion: trustgate.dev/v1alpha1
kind: ImagePolicy
metadata: {name: keyed}
spec:
  match: {namespaces: ["signed-*"]}
  registries: ["quay.io/acme/**"]
  signatures:
    authorities:
      - name: release
        key: {file: keys/signer.pub}
"""


def signed_set(
    directory: Path,
    key: ec.EllipticCurvePrivateKey | ed25519.Ed25519PrivateKey,
    version: int,
    files: dict[str, str] | None = None,
) -> Path:
    """``directory`` (made) holding ``files`` (default: ``FILES`` and a keyed policy), signed."""
    from datetime import UTC, datetime

    from webhook.policy.signing.envelope import sign_directory

    directory.mkdir(parents=True)
    release = ec.generate_private_key(ec.SECP256R1())
    default = {**FILES, "keyed.yaml": KEYED_POLICY, "keys/signer.pub": public_pem(release).decode()}
    for name, text in (default if files is None else files).items():
        (directory / name).parent.mkdir(parents=True, exist_ok=True)
        (directory / name).write_text(text)
    sign_directory(
        directory, private_pem(key), source="test key", version=version, now=datetime.now(UTC)
    )
    return directory


class MemoryMarks:
    """A high-water-mark store in memory, which a test can make fail to read or write.

    The persisted stores (a file, a ConfigMap) are tested on their own; this
    one lets the policy store's handling of their failures be tested.
    """

    where = "memory"

    def __init__(self, mark: Mark | None = None) -> None:
        self.mark = mark
        self.read_error: str | None = None
        self.write_error: str | None = None
        self.writes = 0

    def read(self) -> Mark | None:
        if self.read_error:
            raise MarkError(self.read_error)
        return self.mark

    def advance(self, mark: Mark) -> None:
        self.writes += 1
        if self.write_error:
            raise MarkError(self.write_error)
        if self.mark is None or mark.version > self.mark.version:
            self.mark = mark
