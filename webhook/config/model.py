"""The frozen settings the program reads from ``trustgate.yaml``, and their defaults.

Separate from the schema and the parser so that the services, the server and
the CLI depend on plain dataclasses, not on how the file is written or checked.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

from webhook.config.credentials import CredentialsConfig, KubernetesConfig
from webhook.config.policysig import PolicySignatureConfig
from webhook.policy.model import NoMatch
from webhook.registry.network import NetworkLimits
from webhook.signatures.conditions import COST_SECONDS, PROCESSES

__all__ = [
    "DEFAULT_DEADLINE_SECONDS",
    "DEFAULT_MAX_BODY_BYTES",
    "DEFAULT_MAX_IMAGES",
    "DEFAULT_REVIEW_THREADS",
    "DEFAULT_TUF_URL",
    "MAX_DEADLINE_SECONDS",
    "ConditionsConfig",
    "Config",
    "NetworkConfig",
    "SigstoreConfig",
]

#: Kubernetes caps a webhook's timeoutSeconds at 30 and defaults it to 10; the
#: review must finish well inside it so the answer is ours, not the API server's.
DEFAULT_DEADLINE_SECONDS = 8.0
MAX_DEADLINE_SECONDS = 29.0
DEFAULT_MAX_BODY_BYTES = 4 * 1024 * 1024
#: admission.maxImages: real Pods name a few dozen images at most (containers,
#: init and ephemeral containers, image volumes); 200 leaves a wide margin while
#: bounding what one review can cost (each image is checked and logged).
DEFAULT_MAX_IMAGES = 200

#: Sigstore's production TUF repository, where a refresh fetches trusted_root.json.
DEFAULT_TUF_URL = "https://tuf-repo-cdn.sigstore.dev"


@dataclass(frozen=True, slots=True)
class SigstoreConfig:
    """``sigstore``: whether, where from and how long to refresh the production root."""

    refresh_trusted_root: bool = False
    refresh_timeout_seconds: float = 10.0
    tuf_url: str = DEFAULT_TUF_URL


@dataclass(frozen=True, slots=True)
class ConditionsConfig:
    """``conditions``: the cost limit of one evaluation and the evaluator processes."""

    cost_seconds: float = COST_SECONDS
    processes: int = PROCESSES


#: Threads per worker that run the checks of reviews (network.reviewThreads).
DEFAULT_REVIEW_THREADS = 32


@dataclass(frozen=True, slots=True)
class NetworkConfig:
    """``network``: per-host limits, breakers and the byte budget, and the threads of reviews."""

    limits: NetworkLimits = field(default_factory=NetworkLimits)
    review_threads: int = DEFAULT_REVIEW_THREADS


@dataclass(frozen=True, slots=True)
class Config:
    """Settings that apply to every policy."""

    no_match: NoMatch = "deny"
    deadline_seconds: float = DEFAULT_DEADLINE_SECONDS
    max_request_bytes: int = DEFAULT_MAX_BODY_BYTES
    reload_interval_seconds: float = 2.0
    log_format: str = "json"
    log_level: str = "info"
    registries: Mapping[str, Any] = field(default_factory=lambda: MappingProxyType({}))
    freshness: Mapping[str, Any] = field(default_factory=lambda: MappingProxyType({}))
    cache: Mapping[str, Any] = field(default_factory=lambda: MappingProxyType({}))
    sigstore: SigstoreConfig = field(default_factory=SigstoreConfig)
    recheck_unchanged_images: bool = False
    #: admission.maxImages: most distinct images one review may name.
    max_images: int = DEFAULT_MAX_IMAGES
    network: NetworkConfig = field(default_factory=NetworkConfig)
    conditions: ConditionsConfig = field(default_factory=ConditionsConfig)
    credentials: CredentialsConfig = field(default_factory=CredentialsConfig)
    kubernetes: KubernetesConfig = field(default_factory=KubernetesConfig)
    #: policies.signature: who may sign the policy directory; None when not configured.
    policy_signature: PolicySignatureConfig | None = None
