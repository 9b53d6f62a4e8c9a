"""``policies.signature`` of trustgate.yaml: who may sign the policy directory.

Separate from the rest of the configuration because it reads key files and
names the authorities ``trustgate policy verify`` and ``policy lint`` check a
directory's signature against. The grammar is the image policies' one; only
``key`` authorities are read so far.

.. code-block:: yaml

    policies:
      signature:
        required: true             # refuse (server) / fail (lint) an unsigned or altered set
        source: files              # or git: the signature of the checked-out commit
        minimumVersion: 0          # no set older than this version loads
        rollback:                  # where the highest version loaded survives restarts
          configMap: {name: trustgate-policy-version}   # or file: /var/lib/trustgate/mark
        authorities:
          - name: policy-team
            key: {file: /etc/trustgate/policy-signing.pub}   # or {pem: "-----BEGIN..."}
          - name: maintainers                              # source git only:
            key: {allowedSigners: /etc/trustgate/allowed_signers}   # ssh-keygen's format

A key file (or ``pem``) may hold an OpenSSH public key (``ssh-ed25519 AAAA...``)
as well as a PEM one.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from webhook.core.errors import ConfigError, PolicyError
from webhook.policy.signing.allowedsigners import AllowedSigners, load_allowed_signers
from webhook.policy.signing.envelope import TrustedKey
from webhook.policy.signing.sshsig import load_ssh_public_key, ssh_key_blob
from webhook.trust.keys import PublicKey, key_fingerprint, load_public_key

__all__ = [
    "POLICY_SIGNATURE_SCHEMA",
    "PolicySignatureConfig",
    "RollbackConfig",
    "parse_policy_signature",
]

POLICY_SIGNATURE_SCHEMA: dict[str, Any] = {
    "type": "object",
    "additionalProperties": False,
    "description": "Who may sign the policy directory (trustgate policy sign / verify).",
    "required": ["authorities"],
    "properties": {
        "required": {
            "type": "boolean",
            "description": "Whether an unsigned, altered or replayed policy set is refused "
            "(the server keeps its last good set; policy lint fails). False: loaded, "
            "with a warning, a metric and a /readyz note (audit).",
        },
        "source": {
            "enum": ["files", "git"],
            "description": "What carries the signature: files (DIR/.trustgate/signature.json, "
            "written by trustgate policy sign) or git (the signature of the commit git-sync "
            "checked out).",
        },
        "minimumVersion": {
            "type": "integer",
            "minimum": 0,
            "description": "No policy set of a lower version loads (with source git: a "
            "committer time in Unix seconds).",
        },
        "rollback": {
            "type": "object",
            "additionalProperties": False,
            "description": "Where the highest version loaded is kept, so that an older signed "
            "set is refused after a restart too.",
            "properties": {
                "file": {"type": "string", "minLength": 1},
                "configMap": {
                    "type": "object",
                    "additionalProperties": False,
                    "required": ["name"],
                    "properties": {
                        "name": {"type": "string", "minLength": 1},
                        "namespace": {"type": "string", "minLength": 1},
                    },
                },
            },
            "oneOf": [{"required": ["file"]}, {"required": ["configMap"]}],
        },
        "authorities": {
            "type": "array",
            "minItems": 1,
            "items": {
                "type": "object",
                "additionalProperties": False,
                "required": ["name"],
                "properties": {
                    "name": {"type": "string", "minLength": 1},
                    "key": {
                        "type": "object",
                        "additionalProperties": False,
                        "properties": {
                            "file": {"type": "string", "minLength": 1},
                            "pem": {"type": "string", "minLength": 1},
                            "allowedSigners": {"type": "string", "minLength": 1},
                        },
                        "oneOf": [
                            {"required": ["file"]},
                            {"required": ["pem"]},
                            {"required": ["allowedSigners"]},
                        ],
                    },
                    "keyless": {"type": "object"},
                },
                "oneOf": [{"required": ["key"]}, {"required": ["keyless"]}],
            },
        },
    },
}


@dataclass(frozen=True, slots=True)
class RollbackConfig:
    """``policies.signature.rollback``: a file, or a ConfigMap (default: the pod's namespace)."""

    file: Path | None = None
    config_map: str | None = None
    namespace: str | None = None


@dataclass(frozen=True, slots=True)
class PolicySignatureConfig:
    """``policies.signature``: the trusted signers, and whether a valid signature is required."""

    authorities: tuple[TrustedKey, ...]
    required: bool = False
    #: "files" (DIR/.trustgate/signature.json) or "git" (the checked-out commit's signature).
    source: str = "files"
    minimum_version: int = 0
    rollback: RollbackConfig | None = None
    #: ``key: {allowedSigners: FILE}`` authorities (source git only), read when loaded.
    allowed_signers: tuple[AllowedSigners, ...] = ()


def parse_policy_signature(
    raw: Mapping[str, Any] | None, source: str
) -> PolicySignatureConfig | None:
    """``policies.signature`` (schema-checked), its key files read now; None when absent.

    Raises:
        ConfigError: a key file cannot be read or holds no accepted public key,
            two authorities share a name or a key, or an authority is keyless.
    """
    if raw is None:
        return None
    authorities: list[TrustedKey] = []
    signers: list[AllowedSigners] = []
    for number, entry in enumerate(raw["authorities"]):
        field = f"{source}: field policies.signature.authorities[{number}]"
        if "keyless" in entry:
            raise ConfigError(
                f"{field}.keyless: keyless policy signing is not supported yet; "
                "use a key authority (key: {{file: ...}})"
            )
        if entry["name"] in {a.name for a in authorities} | {s.name for s in signers}:
            raise ConfigError(f"{field}.name: {entry['name']!r} is already used")
        if "allowedSigners" in entry["key"]:
            signers.append(_allowed_signers(entry, field, raw.get("source", "files")))
            continue
        pem, where = _pem(entry["key"], field)
        try:
            key = _public_key(pem, where)
        except PolicyError as exc:
            raise ConfigError(f"{field}.key: {exc.message}") from None
        for other in authorities:
            if key_fingerprint(other.key) == key_fingerprint(key):
                raise ConfigError(f"{field}.key: the same key as authority {other.name!r}")
        authorities.append(TrustedKey(entry["name"], key))
    return PolicySignatureConfig(
        tuple(authorities),
        bool(raw.get("required", False)),
        source=str(raw.get("source", "files")),
        minimum_version=int(raw.get("minimumVersion", 0)),
        rollback=_rollback(raw.get("rollback")),
        allowed_signers=tuple(signers),
    )


def _public_key(data: bytes, where: str) -> PublicKey:
    """A PEM public key, or an OpenSSH one (``ssh-ed25519 AAAA... comment``)."""
    text = data.decode("utf-8", "replace").strip()
    if text.startswith(("ssh-", "ecdsa-sha2-", "sk-")):
        _, blob = ssh_key_blob(text, source=where)
        return load_ssh_public_key(blob, source=where)
    return load_public_key(data, source=where)


def _allowed_signers(entry: Mapping[str, Any], field: str, source: str) -> AllowedSigners:
    if source != "git":
        raise ConfigError(
            f"{field}.key.allowedSigners: allowed-signers files name the signers of Git "
            "commits; use them with policies.signature.source git"
        )
    try:
        return load_allowed_signers(Path(entry["key"]["allowedSigners"]), entry["name"])
    except PolicyError as exc:
        raise ConfigError(f"{field}.key.allowedSigners: {exc.message}") from None


def _rollback(raw: Mapping[str, Any] | None) -> RollbackConfig | None:
    if raw is None:
        return None
    if "file" in raw:
        return RollbackConfig(file=Path(raw["file"]))
    config_map = raw["configMap"]
    return RollbackConfig(config_map=config_map["name"], namespace=config_map.get("namespace"))


def _pem(key: Mapping[str, Any], field: str) -> tuple[bytes, str]:
    if "pem" in key:
        return str(key["pem"]).encode(), "inline key"
    path = Path(key["file"])
    try:
        return path.read_bytes(), f"key file {path}"
    except OSError as exc:
        raise ConfigError(f"{field}.key.file: cannot read {path}: {exc.strerror}") from None
