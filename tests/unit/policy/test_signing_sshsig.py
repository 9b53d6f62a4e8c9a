"""SSHSIG reading and checking, against signatures ``ssh-keygen -Y sign`` makes."""

from __future__ import annotations

import base64
import hashlib
import subprocess
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa

from tests.support.gitsigning import public_line, ssh_key
from webhook.core.errors import PolicyError
from webhook.policy.signing.sshsig import (
    SIGNATURE_ALGORITHMS,
    SshSignature,
    load_ssh_public_key,
    parse_ssh_signature,
    ssh_fingerprint,
    ssh_key_blob,
    verify_ssh_signature,
)
from webhook.trust.keys import PublicKey

MESSAGE = b"tree 4b825dc642cb6eb9a060e54bf8d69288fbee4904\n\npolicies\n"


@pytest.fixture(scope="module")
def keys(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    home = tmp_path_factory.mktemp("sshsig")
    return {
        "ssh-ed25519": ssh_key(home, "ed"),
        "ecdsa-sha2-nistp256": ssh_key(home, "p256", "ecdsa", 256),
        "ecdsa-sha2-nistp384": ssh_key(home, "p384", "ecdsa", 384),
        "ecdsa-sha2-nistp521": ssh_key(home, "p521", "ecdsa", 521),
        "rsa-sha2-512": ssh_key(home, "rsa", "rsa", 2048),
    }


def _sign(key: Path, message: bytes, namespace: str = "git", hashalg: str = "sha512") -> bytes:
    target = key.parent / f"message-{key.name}-{namespace}-{hashalg}-{len(message)}"
    Path(f"{target}.sig").unlink(missing_ok=True)
    target.write_bytes(message)
    subprocess.run(
        ["ssh-keygen", "-q", "-Y", "sign", "-f", str(key), "-n", namespace, "-O",
         f"hashalg={hashalg}", str(target)],
        check=True, timeout=60, capture_output=True,
    )  # fmt: skip
    return Path(f"{target}.sig").read_bytes()


def _key(key: Path) -> tuple[bytes, PublicKey]:
    _, blob = ssh_key_blob(public_line(key), source="test")
    return blob, load_ssh_public_key(blob, source="test")


@pytest.mark.parametrize("algorithm", (*SIGNATURE_ALGORITHMS[:4], "rsa-sha2-512"))
@pytest.mark.parametrize("hashalg", ["sha256", "sha512"])
def test_ssh_keygen_signatures_verify(keys: dict[str, Path], algorithm: str, hashalg: str) -> None:
    key = keys[algorithm]
    signature = parse_ssh_signature(_sign(key, MESSAGE, hashalg=hashalg))
    blob, public = _key(key)
    assert (signature.algorithm, signature.hash_algorithm) == (algorithm, hashalg)
    assert signature.public_key == blob and signature.namespace == "git"
    assert verify_ssh_signature(signature, public, MESSAGE, namespace="git")
    assert not verify_ssh_signature(signature, public, MESSAGE + b" ", namespace="git")


def test_another_namespace_or_key_does_not_verify(keys: dict[str, Path]) -> None:
    signature = parse_ssh_signature(_sign(keys["ssh-ed25519"], MESSAGE, namespace="file"))
    _, public = _key(keys["ssh-ed25519"])
    _, other = _key(keys["ecdsa-sha2-nistp256"])
    assert verify_ssh_signature(signature, public, MESSAGE, namespace="file")
    assert not verify_ssh_signature(signature, public, MESSAGE, namespace="git")
    assert not verify_ssh_signature(signature, other, MESSAGE, namespace="file")


def test_rsa_sha2_256_verifies_and_ssh_rsa_sha1_does_not() -> None:
    private = rsa.generate_private_key(65537, 2048)
    line = private.public_key().public_bytes(
        serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH
    )
    blob = base64.b64decode(line.split()[1])
    public = load_ssh_public_key(blob, source="test")

    def signed(algorithm: str, digest: hashes.HashAlgorithm) -> SshSignature:
        preamble = (
            b"SSHSIG" + _s(b"git") + _s(b"") + _s(b"sha512")
            + _s(hashlib.sha512(MESSAGE).digest())
        )  # fmt: skip
        return SshSignature(
            blob,
            "git",
            b"",
            "sha512",
            algorithm,
            private.sign(preamble, padding.PKCS1v15(), digest),
        )

    assert verify_ssh_signature(
        signed("rsa-sha2-256", hashes.SHA256()), public, MESSAGE, namespace="git"
    )
    sha1 = signed("ssh-rsa", hashes.SHA1())
    assert "ssh-rsa" not in SIGNATURE_ALGORITHMS
    assert not verify_ssh_signature(sha1, public, MESSAGE, namespace="git")


def _s(data: bytes) -> bytes:
    return len(data).to_bytes(4, "big") + data


@pytest.mark.parametrize(
    "armored",
    [
        b"",
        b"-----BEGIN SSH SIGNATURE-----\n!!!\n-----END SSH SIGNATURE-----",
        b"-----BEGIN SSH SIGNATURE-----\n" + base64.b64encode(b"SSHSIG\0\0\0\2")
        + b"\n-----END SSH SIGNATURE-----",
        b"-----BEGIN SSH SIGNATURE-----\n" + base64.b64encode(b"SSHSIG\0\0\0\1\xff\xff\xff\xff")
        + b"\n-----END SSH SIGNATURE-----",
        b"-----BEGIN SSH SIGNATURE-----\n" + b"A" * 20_000 + b"\n-----END SSH SIGNATURE-----",
    ],
)  # fmt: skip
def test_unreadable_signatures_are_refused(armored: bytes) -> None:
    with pytest.raises(PolicyError):
        parse_ssh_signature(armored)


def test_trailing_bytes_after_the_blob_are_refused(keys: dict[str, Path]) -> None:
    armored = _sign(keys["ssh-ed25519"], MESSAGE)
    body = b"".join(armored.strip().splitlines()[1:-1])
    padded = base64.b64encode(base64.b64decode(body) + b"\0")
    with pytest.raises(PolicyError, match="trailing bytes"):
        parse_ssh_signature(
            b"-----BEGIN SSH SIGNATURE-----\n" + padded + b"\n-----END SSH SIGNATURE-----"
        )


def test_fingerprints_match_ssh_keygen(keys: dict[str, Path]) -> None:
    for key in keys.values():
        blob, _ = _key(key)
        printed = subprocess.run(
            ["ssh-keygen", "-l", "-f", f"{key}.pub"], check=True, capture_output=True, timeout=60
        ).stdout.decode()
        assert ssh_fingerprint(blob) == printed.split()[1]


@pytest.mark.parametrize(
    ("line", "says"),
    [
        ("ssh-dss AAAAB3NzaC1kc3M=", "key type 'ssh-dss' not accepted"),
        ("sk-ssh-ed25519@openssh.com AAAA", "security-key (sk-) keys not accepted"),
        ("ssh-ed25519-cert-v01@openssh.com AAAA", "SSH certificates are not read"),
        ("ssh-ed25519 not-base64!", "not valid base64"),
        ("ssh-ed25519 " + base64.b64encode(_s(b"ssh-rsa")).decode(), "says it is 'ssh-rsa'"),
        ("ssh-ed25519", "expected an OpenSSH public key"),
    ],
)
def test_refused_public_key_lines(line: str, says: str) -> None:
    with pytest.raises(PolicyError) as caught:
        ssh_key_blob(line, source="key file k.pub")
    assert says in str(caught.value) and str(caught.value).startswith("key file k.pub: ")


def test_a_small_rsa_key_is_refused() -> None:
    small = rsa.generate_private_key(65537, 1024).public_key()
    line = small.public_bytes(serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH)
    with pytest.raises(PolicyError, match="2048-4096"):
        load_ssh_public_key(base64.b64decode(line.split()[1]), source="test")
