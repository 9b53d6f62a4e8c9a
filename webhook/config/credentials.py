"""``credentials`` and ``kubernetes`` of trustgate.yaml: where registry logins come from.

Separate from the rest of the configuration because these two sections go
together (pull secrets are read through the Kubernetes API) and form one
feature with its own schema, settings and checks across fields.

.. code-block:: yaml

    kubernetes:
      kubeconfig: /etc/trustgate/kubeconfig   # absent: in-cluster credentials
    credentials:
      pullSecrets: true                       # the pod's and its service account's
      namespaces: [team-a, team-b]            # absent: every namespace
      providers:                              # trustgate's own cloud identities
        - type: ecr                           # ecr | gcp | acr
          registries: ["*.dkr.ecr.*.amazonaws.com"]   # default: the provider's hosts
      kubeletPlugins:
        config: /etc/trustgate/credential-providers.yaml   # CredentialProviderConfig
        binDir: /usr/libexec/trustgate/credential-providers
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

from webhook.core.errors import ConfigError

__all__ = [
    "CREDENTIALS_SCHEMA",
    "DEFAULT_REGISTRIES",
    "KUBERNETES_SCHEMA",
    "CredentialsConfig",
    "KubernetesConfig",
    "PluginsConfig",
    "ProviderConfig",
    "parse_credentials",
    "parse_kubernetes",
]

#: The registry host patterns each provider serves unless ``registries`` says otherwise,
#: written as kubelet ``matchImages`` (one ``*`` matches within one host label).
DEFAULT_REGISTRIES: Final[Mapping[str, tuple[str, ...]]] = {
    "ecr": (
        "*.dkr.ecr.*.amazonaws.com",
        "*.dkr.ecr.*.amazonaws.com.cn",
        "*.dkr.ecr-fips.*.amazonaws.com",
        "*.dkr.ecr.*.c2s.ic.gov",
        "*.dkr.ecr.*.sc2s.sgov.gov",
        "public.ecr.aws",
    ),
    "gcp": ("*-docker.pkg.dev", "gcr.io", "*.gcr.io"),
    "acr": ("*.azurecr.io", "*.azurecr.cn", "*.azurecr.us"),
}

_PATTERNS: dict[str, Any] = {
    "type": "array",
    "minItems": 1,
    "maxItems": 64,
    "items": {"type": "string", "minLength": 1, "maxLength": 253},
    "description": "Registry host patterns this provider serves, as the kubelet's "
    "matchImages: one '*' matches within one host label.",
}

KUBERNETES_SCHEMA: dict[str, Any] = {
    "type": "object",
    "additionalProperties": False,
    "description": "How to reach the Kubernetes API server (pull secrets, audit --cluster, "
    "registration).",
    "properties": {
        "kubeconfig": {
            "type": "string",
            "minLength": 1,
            "description": "A kubeconfig file; absent: the pod's in-cluster credentials.",
        },
        "context": {
            "type": "string",
            "minLength": 1,
            "description": "The kubeconfig context (default: its current-context).",
        },
    },
}

CREDENTIALS_SCHEMA: dict[str, Any] = {
    "type": "object",
    "additionalProperties": False,
    "description": "Where registry logins come from besides registries.<host>: the "
    "workload's pull secrets, then cloud identities and kubelet plug-ins, then anonymous.",
    "properties": {
        "pullSecrets": {
            "type": "boolean",
            "description": "Authenticate with the pod's imagePullSecrets, then its service "
            "account's (needs permission to read Secrets and ServiceAccounts).",
        },
        "namespaces": {
            "type": "array",
            "items": {"type": "string", "minLength": 1, "maxLength": 63},
            "uniqueItems": True,
            "description": "Read pull secrets only in these namespaces (one Role each); "
            "absent: every namespace (a ClusterRole).",
        },
        "providers": {
            "type": "array",
            "maxItems": 16,
            "items": {
                "type": "object",
                "additionalProperties": False,
                "required": ["type"],
                "properties": {
                    "type": {"enum": sorted(DEFAULT_REGISTRIES)},
                    "registries": _PATTERNS,
                    "clientId": {
                        "type": "string",
                        "minLength": 1,
                        "description": "acr: the managed identity's client ID "
                        "(default: AZURE_CLIENT_ID).",
                    },
                },
            },
            "description": "trustgate's own cloud identities, each for its registries.",
        },
        "kubeletPlugins": {
            "type": "object",
            "additionalProperties": False,
            "required": ["config", "binDir"],
            "properties": {
                "config": {
                    "type": "string",
                    "minLength": 1,
                    "description": "A CredentialProviderConfig file, as the kubelet's.",
                },
                "binDir": {
                    "type": "string",
                    "minLength": 1,
                    "description": "The directory holding the plug-ins it names.",
                },
            },
        },
    },
}


@dataclass(frozen=True, slots=True)
class KubernetesConfig:
    """``kubernetes``: a kubeconfig and context, or None for in-cluster credentials."""

    kubeconfig: Path | None = None
    context: str | None = None


@dataclass(frozen=True, slots=True)
class ProviderConfig:
    """One ``credentials.providers`` entry: a cloud identity and the registries it serves."""

    type: str
    registries: tuple[str, ...]
    client_id: str | None = None


@dataclass(frozen=True, slots=True)
class PluginsConfig:
    """``credentials.kubeletPlugins``: a CredentialProviderConfig and its binaries."""

    config: Path
    bin_dir: Path


@dataclass(frozen=True, slots=True)
class CredentialsConfig:
    """``credentials``: pull secrets (and where), cloud identities and kubelet plug-ins."""

    pull_secrets: bool = False
    #: None: every namespace.
    namespaces: tuple[str, ...] | None = None
    providers: tuple[ProviderConfig, ...] = ()
    plugins: PluginsConfig | None = None


def parse_kubernetes(raw: Mapping[str, Any]) -> KubernetesConfig:
    """``kubernetes`` (schema-checked) as settings."""
    kubeconfig = raw.get("kubeconfig")
    return KubernetesConfig(
        kubeconfig=Path(kubeconfig) if kubeconfig is not None else None,
        context=raw.get("context"),
    )


def parse_credentials(raw: Mapping[str, Any], source: str) -> CredentialsConfig:
    """``credentials`` (schema-checked) as settings.

    Raises:
        ConfigError: two providers of one type, or ``namespaces`` without ``pullSecrets``.
    """
    providers: list[ProviderConfig] = []
    for entry in raw.get("providers", ()):
        kind = entry["type"]
        if any(p.type == kind for p in providers):
            raise ConfigError(
                f"{source}: field credentials.providers: {kind} is listed twice; "
                f"list its registries in one entry"
            )
        registries = tuple(entry.get("registries", DEFAULT_REGISTRIES[kind]))
        providers.append(ProviderConfig(kind, registries, entry.get("clientId")))
    namespaces = raw.get("namespaces")
    pull_secrets = bool(raw.get("pullSecrets", False))
    if namespaces is not None and not pull_secrets:
        raise ConfigError(
            f"{source}: field credentials.namespaces: it limits where pull secrets are "
            f"read, but credentials.pullSecrets is not true"
        )
    plugins = raw.get("kubeletPlugins")
    return CredentialsConfig(
        pull_secrets=pull_secrets,
        namespaces=tuple(namespaces) if namespaces is not None else None,
        providers=tuple(providers),
        plugins=(
            PluginsConfig(Path(plugins["config"]), Path(plugins["binDir"]))
            if plugins is not None
            else None
        ),
    )
