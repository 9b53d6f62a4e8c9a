"""``policies.signature`` of trustgate.yaml: who may sign the policy directory.

Separate from the rest of the configuration because it reads key files and
names the authorities ``trustgate policy verify`` and ``policy lint`` check a
directory's signature against. The grammar is the image policies' one; only
``key`` authorities are read so far.

.. code-block:: yaml

    policies:
      signature:
        required: true             # lint fails on an unsigned or altered set
        authorities:
          - name: policy-team
            key: {file: /etc/trustgate/policy-signing.pub}   # or {pem: "-----BEGIN..."}
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from webhook.core.errors import ConfigError, PolicyError
from webhook.policy.signing.envelope import TrustedKey
from webhook.trust.keys import key_fingerprint, load_public_key

__all__ = ["POLICY_SIGNATURE_SCHEMA", "PolicySignatureConfig", "parse_policy_signature"]

POLICY_SIGNATURE_SCHEMA: dict[str, Any] = {
    "type": "object",
    "additionalProperties": False,
    "description": "Who may sign the policy directory (trustgate policy sign / verify).",
    "required": ["authorities"],
    "properties": {
        "required": {
            "type": "boolean",
            "description": "Whether policy lint fails when the signature is missing or invalid.",
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
                        },
                        "oneOf": [{"required": ["file"]}, {"required": ["pem"]}],
                    },
                    "keyless": {"type": "object"},
                },
                "oneOf": [{"required": ["key"]}, {"required": ["keyless"]}],
            },
        },
    },
}


@dataclass(frozen=True, slots=True)
class PolicySignatureConfig:
    """``policies.signature``: the trusted signers, and whether a valid signature is required."""

    authorities: tuple[TrustedKey, ...]
    required: bool = False


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
    for number, entry in enumerate(raw["authorities"]):
        field = f"{source}: field policies.signature.authorities[{number}]"
        if "keyless" in entry:
            raise ConfigError(
                f"{field}.keyless: keyless policy signing is not supported yet; "
                "use a key authority (key: {{file: ...}})"
            )
        pem, where = _pem(entry["key"], field)
        try:
            key = load_public_key(pem, source=where)
        except PolicyError as exc:
            raise ConfigError(f"{field}.key: {exc.message}") from None
        for other in authorities:
            if other.name == entry["name"]:
                raise ConfigError(f"{field}.name: {entry['name']!r} is already used")
            if key_fingerprint(other.key) == key_fingerprint(key):
                raise ConfigError(f"{field}.key: the same key as authority {other.name!r}")
        authorities.append(TrustedKey(entry["name"], key))
    return PolicySignatureConfig(tuple(authorities), bool(raw.get("required", False)))


def _pem(key: Mapping[str, Any], field: str) -> tuple[bytes, str]:
    if "pem" in key:
        return str(key["pem"]).encode(), "inline key"
    path = Path(key["file"])
    try:
        return path.read_bytes(), f"key file {path}"
    except OSError as exc:
        raise ConfigError(f"{field}.key.file: cannot read {path}: {exc.strerror}") from None
