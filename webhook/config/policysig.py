"""``policies.signature`` of trustgate.yaml: who may sign the policy directory.

Separate from the rest of the configuration because it reads key files and
names the authorities ``trustgate policy verify`` and ``policy lint`` check a
directory's signature against. The grammar is the image policies' one: a
``key``, or a ``keyless`` identity read by the image policies' own parser
(``policy/authorities.compile_keyless``), its relative ``trustedRoot`` paths
resolved against the configuration file's directory.

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
          - name: ci
            keyless:
              issuer: https://token.actions.githubusercontent.com
              subject: https://github.com/acme/policies/.github/workflows/sign.yml@refs/heads/main
          - name: maintainers                              # source git only:
            key: {allowedSigners: /etc/trustgate/allowed_signers}   # ssh-keygen's format

A key file (or ``pem``) may hold an OpenSSH public key (``ssh-ed25519 AAAA...``)
as well as a PEM one.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from webhook.core.errors import ConfigError, PolicyError
from webhook.policy.authorities import compile_keyless
from webhook.policy.origin import Origin
from webhook.policy.schema import policy_schema
from webhook.policy.signing.allowedsigners import AllowedSigners, load_allowed_signers
from webhook.policy.signing.envelope import SetAuthority, TrustedKey
from webhook.policy.signing.sshsig import load_ssh_public_key, ssh_key_blob
from webhook.signatures.policyset import KeylessAuthority
from webhook.trust.keys import PublicKey, key_fingerprint, load_public_key

__all__ = [
    "POLICY_SIGNATURE_SCHEMA",
    "PolicySignatureConfig",
    "RollbackConfig",
    "parse_policy_signature",
]


def _keyless_schema() -> dict[str, Any]:
    """The image policies' ``keyless`` schema, its trustedRoot relative to trustgate.yaml."""
    keyless: dict[str, Any] = copy.deepcopy(
        policy_schema()["$defs"]["authority"]["properties"]["keyless"]
    )
    # Helm reads draft-07 and the chart schema takes the keywords both drafts share:
    # "at least one extension" said with those.
    extensions = keyless["properties"]["extensions"]
    if extensions.pop("minProperties", 0):
        extensions["anyOf"] = [{"required": [name]} for name in extensions["properties"]]
    root = keyless["properties"]["trustedRoot"]
    root["description"] = root["description"].replace(
        "relative to the directory of the policy file",
        "relative to the directory of trustgate.yaml",
    )
    return keyless


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
                    "keyless": _keyless_schema(),
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

    authorities: tuple[SetAuthority, ...]
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
    """``policies.signature`` (schema-checked), its key files and trusted roots read now.

    ``source`` is the configuration file: relative ``keyless.trustedRoot``
    paths resolve against its directory. None when the section is absent.

    Raises:
        ConfigError: a key file cannot be read or holds no accepted public key,
            a keyless identity is invalid (a regular expression, a trusted
            root), two authorities share a name, a key or an identity.
    """
    if raw is None:
        return None
    authorities: list[SetAuthority] = []
    signers: list[AllowedSigners] = []
    for number, entry in enumerate(raw["authorities"]):
        field = f"{source}: field policies.signature.authorities[{number}]"
        if entry["name"] in {a.name for a in authorities} | {s.name for s in signers}:
            raise ConfigError(f"{field}.name: {entry['name']!r} is already used")
        if "keyless" in entry:
            authorities.append(_keyless(entry, number, source, authorities))
        elif "allowedSigners" in entry["key"]:
            signers.append(_allowed_signers(entry, field, raw.get("source", "files")))
        else:
            authorities.append(_key(entry, field, authorities))
    return PolicySignatureConfig(
        tuple(authorities),
        bool(raw.get("required", False)),
        source=str(raw.get("source", "files")),
        minimum_version=int(raw.get("minimumVersion", 0)),
        rollback=_rollback(raw.get("rollback")),
        allowed_signers=tuple(signers),
    )


def _key(entry: Mapping[str, Any], field: str, others: list[SetAuthority]) -> TrustedKey:
    pem, where = _pem(entry["key"], field)
    try:
        key = _public_key(pem, where)
    except PolicyError as exc:
        raise ConfigError(f"{field}.key: {exc.message}") from None
    for other in others:
        if isinstance(other, TrustedKey) and key_fingerprint(other.key) == key_fingerprint(key):
            raise ConfigError(f"{field}.key: the same key as authority {other.name!r}")
    return TrustedKey(entry["name"], key)


def _keyless(
    entry: Mapping[str, Any], number: int, source: str, others: list[SetAuthority]
) -> KeylessAuthority:
    """A keyless authority, parsed as image policies parse theirs."""
    where = f"policies.signature.authorities[{number}].keyless"
    try:
        keyless = compile_keyless(entry["keyless"], Origin(Path(source), 0), where)
    except PolicyError as exc:
        raise ConfigError(f"{source}: field {exc.field or where}: {exc.message}") from None
    for other in others:
        if isinstance(other, KeylessAuthority) and other.keyless == keyless:
            raise ConfigError(
                f"{source}: field {where}: the same identity and trusted root as "
                f"authority {other.name!r}"
            )
    return KeylessAuthority(entry["name"], keyless)


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
