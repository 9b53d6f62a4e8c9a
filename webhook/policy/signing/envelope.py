"""Sign a policy directory's manifest, and check a signed directory against its authorities.

The signature file, ``DIR/.trustgate/signature.json``, holds the manifest's
exact bytes (as a JSON string) and one signature over them:

- ``key``: a fingerprint and a signature made the way ``cosign sign-blob
  --key`` makes one: ECDSA with SHA-256 (DER), RSA PKCS#1 v1.5 with SHA-256,
  or pure Ed25519;
- ``bundle``: a Sigstore bundle (v0.3) of a message signature over the
  manifest bytes, made with a Fulcio certificate and logged in Rekor, as
  sigstore-python's ``sign_artifact`` and ``cosign sign-blob --bundle`` make
  one. ``signatures/policyset.py`` writes and checks those: this layer may not
  import Sigstore's verification, so it only names the protocol
  (``SetAuthority``) every authority follows.

Either way ``cosign verify-blob`` can check the manifest too, once extracted.
Checking needs no network: one authority must vouch for the signature, and
the directory must hold exactly the files the manifest names, with the same
content.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, Protocol

from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, padding, rsa

from webhook.core.errors import PolicyError
from webhook.core.untrusted import json_value, shown, unique_keys
from webhook.policy.signing.gate import PolicySignatureError, Verified
from webhook.policy.signing.manifest import (
    Manifest,
    build_manifest,
    compare,
    manifest_bytes,
    parse_manifest,
)
from webhook.policy.signing.tree import SIGNATURE_DIR, NotRegularFile, read_regular, read_tree
from webhook.trust.keys import PublicKey, key_fingerprint, load_public_key, verify

__all__ = [
    "SIGNATURE_FILE",
    "Checked",
    "PolicySignatureError",
    "Refusal",
    "SetAuthority",
    "TrustedKey",
    "Vouch",
    "check_directory",
    "previous_version",
    "sign_directory",
    "verify_directory",
    "write_signature",
]

#: The signature file, relative to the policy directory.
SIGNATURE_FILE = f"{SIGNATURE_DIR}/signature.json"
#: Largest signature file read: a manifest of MAX_FILES entries is about 1 MiB.
MAX_SIGNATURE_BYTES = 8 * 1024 * 1024
#: The fields of a signature file that carry the signature: exactly one is present.
SIGNATURE_KINDS = ("key", "bundle")


@dataclass(frozen=True, slots=True)
class Vouch:
    """An authority's yes, and who signed in words (``key SHA256:...``, or an identity)."""

    signer: str


@dataclass(frozen=True, slots=True)
class Refusal:
    """An authority's no: ``reason`` (untrusted, altered or invalid) and why, in words.

    ``signer`` says who the signature names, when the authority could read
    it: a key's fingerprint, or a certificate's identity and issuer.
    """

    reason: str
    message: str
    signer: str = ""


class SetAuthority(Protocol):
    """An authority of ``policies.signature``: a key, or a keyless identity."""

    @property
    def name(self) -> str:
        """The authority's name in the configuration."""
        ...

    def vouch(self, document: Mapping[str, Any], manifest: bytes) -> Vouch | Refusal:
        """Whether the signature ``document`` (the signature file) vouches for ``manifest``.

        Never raises for what the document holds: a malformed signature is a
        Refusal whose reason is ``invalid``.
        """
        ...


@dataclass(frozen=True, slots=True)
class TrustedKey:
    """An authority of ``policies.signature``: its name and public key."""

    name: str
    key: PublicKey

    def vouch(self, document: Mapping[str, Any], manifest: bytes) -> Vouch | Refusal:
        """Whether ``document``'s ``key`` signature verifies over ``manifest`` with this key."""
        mine = key_fingerprint(self.key)
        raw = document.get("key")
        if raw is None:
            return Refusal(
                "untrusted",
                f"a key ({mine}), and the set is signed keylessly",
            )
        try:
            fingerprint = raw["fingerprint"]
            signature = base64.b64decode(raw["signature"], validate=True)
            if not isinstance(fingerprint, str):
                raise TypeError("fingerprint")
        except (KeyError, TypeError, ValueError, binascii.Error):
            return Refusal(
                "invalid",
                "not a trustgate policy signature (its key needs a fingerprint and a base64 "
                "signature); sign the directory again with trustgate policy sign",
            )
        signer = f"key {shown(fingerprint, 80)}"
        if verify(self.key, signature, manifest):
            return Vouch(f"key {mine}")
        if fingerprint == mine:
            return Refusal(
                "altered",
                f"the signature does not verify with the key of authority {self.name!r}: "
                "the manifest or the signature was altered after signing",
                signer,
            )
        return Refusal("untrusted", f"another key ({mine})", signer)


@dataclass(frozen=True, slots=True)
class Checked:
    """A verified directory, and who signed it in words (for ``policy verify`` and ``lint``)."""

    verified: Verified
    signer: str


def _signature_path(directory: Path) -> Path:
    return directory / SIGNATURE_FILE


def _load_private_key(
    pem: bytes, source: str
) -> ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey | ed25519.Ed25519PrivateKey:
    try:
        key = serialization.load_pem_private_key(pem, password=None)
    except TypeError:
        raise PolicyError(
            f"{source}: the private key is encrypted; decrypt it first "
            "(openssl pkey -in KEY -out PLAIN), encrypted keys are not read yet"
        ) from None
    except (ValueError, UnsupportedAlgorithm):
        raise PolicyError(
            f"{source}: not a PEM private key (PKCS#8 or EC PRIVATE KEY); cosign's "
            "encrypted key format is not read"
        ) from None
    if not isinstance(
        key, ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey | ed25519.Ed25519PrivateKey
    ):
        raise PolicyError(f"{source}: use an ECDSA, RSA or Ed25519 private key")
    public = key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    load_public_key(public, source=source)  # the same kinds and sizes a verifier accepts
    return key


def _sign(
    key: ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey | ed25519.Ed25519PrivateKey, data: bytes
) -> bytes:
    if isinstance(key, ec.EllipticCurvePrivateKey):
        return key.sign(data, ec.ECDSA(hashes.SHA256()))
    if isinstance(key, rsa.RSAPrivateKey):
        return key.sign(data, padding.PKCS1v15(), hashes.SHA256())
    return key.sign(data)


def previous_version(directory: Path) -> int:
    """The version of the signature already in ``directory`` (unverified), 0 when there is none.

    Raises:
        PolicyError: a signature file is there but cannot be read.
    """
    path = _signature_path(directory)
    if not path.exists():
        return 0
    manifest, _ = _read_signature(path)
    return parse_manifest(manifest).version


def sign_directory(
    directory: Path, private_key_pem: bytes, *, source: str, version: int, now: datetime
) -> Manifest:
    """Write ``DIR/.trustgate/signature.json`` over the manifest of ``directory``, with a key.

    ``source`` names the key in messages (its file); the key is never echoed.

    Raises:
        PolicyError: the key or the directory cannot be read, or the signature not written.
    """
    key = _load_private_key(private_key_pem, source)

    def signed(data: bytes) -> tuple[str, Any]:
        value = {
            "fingerprint": key_fingerprint(key.public_key()),
            "signature": base64.b64encode(_sign(key, data)).decode("ascii"),
        }
        return "key", value

    return write_signature(directory, signed, version=version, now=now)


def write_signature(
    directory: Path,
    sign: Callable[[bytes], tuple[str, Any]],
    *,
    version: int,
    now: datetime,
) -> Manifest:
    """Build the manifest of ``directory``, have ``sign`` sign its bytes, write the file.

    ``sign`` returns the signature's field (one of ``SIGNATURE_KINDS``) and its
    JSON value; it may raise PolicyError, and nothing is written then.

    Raises:
        PolicyError: the directory cannot be read, or the signature not made or written.
    """
    manifest = build_manifest(read_tree(directory), version, now)
    data = manifest_bytes(manifest)
    kind, value = sign(data)
    if kind not in SIGNATURE_KINDS:
        raise ValueError(f"unknown signature kind {kind!r}")
    document = {"manifest": data.decode("ascii"), kind: value}
    path = _signature_path(directory)
    try:
        path.parent.mkdir(exist_ok=True)
        temporary = path.with_suffix(".tmp")
        temporary.write_text(json.dumps(document, indent=2, sort_keys=True) + "\n", "utf-8")
        temporary.replace(path)
    except OSError as exc:
        raise PolicyError(f"cannot write {path}: {exc.strerror}") from exc
    return manifest


def _read_signature(path: Path) -> tuple[bytes, dict[str, Any]]:
    """The manifest bytes and the whole document of signature file ``path``."""
    try:
        # A FIFO swapped in after the caller's is_file() is refused, not waited on.
        raw = read_regular(path, MAX_SIGNATURE_BYTES)
    except NotRegularFile:
        raise PolicySignatureError(
            "is not a regular file; sign the directory again with trustgate policy sign",
            reason="invalid",
            file=str(path),
        ) from None
    except OSError as exc:
        raise PolicySignatureError(
            f"cannot read the signature: {exc.strerror}", reason="invalid", file=str(path)
        ) from exc
    try:
        if len(raw) > MAX_SIGNATURE_BYTES:
            raise ValueError("too large")
        document = json_value(raw, object_pairs_hook=unique_keys)
        if not isinstance(document, dict):
            raise TypeError("not an object")
        manifest = document["manifest"].encode("ascii")
        if sum(kind in document for kind in SIGNATURE_KINDS) != 1:
            raise KeyError("one of key and bundle")
    except (ValueError, KeyError, TypeError, AttributeError) as exc:
        message = (
            "not a trustgate policy signature; sign the directory again with trustgate policy sign"
        )
        raise PolicySignatureError(message, reason="invalid", file=str(path)) from exc
    return manifest, document


def verify_directory(directory: Path, authorities: Sequence[SetAuthority]) -> Verified:
    """Check that one of ``authorities`` signed ``directory`` exactly as it is now.

    Raises:
        PolicySignatureError: the directory is unsigned, the signature is not
            one of the authorities', or a file was added, removed, renamed or
            changed since signing (each named), or a link leads out of it.
        PolicyError: the directory does not exist.
    """
    return check_directory(directory, authorities).verified


def check_directory(directory: Path, authorities: Sequence[SetAuthority]) -> Checked:
    """As ``verify_directory``, with who signed in words (a key, or an identity and issuer).

    Raises:
        PolicySignatureError: as ``verify_directory``.
        PolicyError: the directory does not exist.
    """
    if not directory.is_dir():
        raise PolicyError(f"{directory} is not a directory")
    path = _signature_path(directory)
    if not path.is_file():
        raise PolicySignatureError(
            f"{directory} is unsigned: there is no {SIGNATURE_FILE}; "
            f"sign it with trustgate policy sign {directory} --key KEY (or --keyless)",
            reason="unsigned",
        )
    data, document = _read_signature(path)
    refusals: list[tuple[str, Refusal]] = []
    for authority in authorities:
        answer = authority.vouch(document, data)
        if isinstance(answer, Vouch):
            return _matching(directory, data, authority.name, answer.signer)
        refusals.append((authority.name, answer))
    raise _refused(refusals, document, path)


def _refused(
    refusals: Sequence[tuple[str, Refusal]], document: Mapping[str, Any], path: Path
) -> PolicySignatureError:
    """Why no authority vouched: the worst reason (altered, invalid, untrusted) and each one's."""
    for reason in ("altered", "invalid"):
        worst = [r for _, r in refusals if r.reason == reason]
        if worst:
            break
    else:
        reason = "untrusted"
    if reason == "altered":
        return PolicySignatureError(worst[0].message, reason=reason, file=str(path))
    names = ", ".join(name for name, _ in refusals) or "none"
    signer = next((r.signer for _, r in refusals if r.signer), "")
    if not signer:
        signer = "a key" if "key" in document else "a keyless certificate"
    why = "; ".join(f"{name!r}: {r.message}" for name, r in refusals)
    if reason == "invalid":
        message = f"the signature cannot be checked ({why})"
    else:
        message = (
            f"signed by {signer}, which is not an authority of policies.signature "
            f"(authorities: {names})"
        )
        if why:
            message += f": {why}"
    return PolicySignatureError(message, reason=reason, file=str(path))


def _matching(directory: Path, data: bytes, authority: str, signer: str) -> Checked:
    """The check that the directory holds exactly what ``authority`` signed."""
    try:
        manifest = parse_manifest(data)
        files = read_tree(directory)
    except PolicyError as exc:
        raise PolicySignatureError(
            exc.message, reason="altered", file=exc.file and str(directory / exc.file)
        ) from exc
    differences = compare(manifest, files)
    if differences:
        lines = "; ".join(str(d) for d in differences)
        raise PolicySignatureError(
            f"{directory} differs from what {authority!r} signed "
            f"(version {manifest.version}): {lines}",
            reason="altered",
        )
    verified = Verified(
        authority=authority,
        version=manifest.version,
        digest="sha256:" + hashlib.sha256(data).hexdigest(),
        signed_at=manifest.signed_at,
        files=files,
    )
    return Checked(verified, signer)
