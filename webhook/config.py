"""The global configuration file (``trustgate.yaml``).

It holds what is not a policy: the default for images no policy governs, the
review deadline, reload cadence, and the sections later checks read (registries,
freshness, caches). It is read once, at start-up, into a frozen ``Config``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any, cast

from jsonschema import Draft202012Validator
from jsonschema.exceptions import best_match

from webhook.core.errors import ConfigError, PolicyError
from webhook.core.redaction import schema_message
from webhook.policy.documents import load_yaml
from webhook.policy.model import NoMatch
from webhook.registry.network import NetworkLimits
from webhook.signatures.conditions import COST_SECONDS, PROCESSES

#: Kubernetes caps a webhook's timeoutSeconds at 30 and defaults it to 10; the
#: review must finish well inside it so the answer is ours, not the API server's.
DEFAULT_DEADLINE_SECONDS = 8.0
MAX_DEADLINE_SECONDS = 29.0
DEFAULT_MAX_BODY_BYTES = 4 * 1024 * 1024
#: admission.maxImages: real Pods name a few dozen images at most (containers,
#: init and ephemeral containers, image volumes); 200 leaves a wide margin while
#: bounding what one review can cost (each image is checked and logged).
DEFAULT_MAX_IMAGES = 200
#: Most condition evaluator processes per worker; each holds an interpreter (~20 MB resident).
MAX_CONDITION_PROCESSES = 16

_TTL: dict[str, Any] = {"type": "number", "exclusiveMinimum": 0}
_SIZE: dict[str, Any] = {"type": "integer", "minimum": 1, "description": "Most entries kept."}

_SCHEMA: dict[str, Any] = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "type": "object",
    "additionalProperties": False,
    "properties": {
        "defaults": {
            "type": "object",
            "additionalProperties": False,
            "properties": {
                "noMatch": {
                    "enum": ["deny", "warn", "allow"],
                    "description": "What happens to an image no policy governs.",
                },
            },
        },
        "deadlineSeconds": {
            "type": "number",
            "exclusiveMinimum": 0,
            "maximum": MAX_DEADLINE_SECONDS,
            "description": "Time budget of one review; keep it below the webhook's timeoutSeconds.",
        },
        "admission": {
            "type": "object",
            "additionalProperties": False,
            "properties": {
                "maxImages": {
                    "type": "integer",
                    "minimum": 1,
                    "description": "Most distinct images one review may name; a review naming "
                    "more is denied before any image is checked (default "
                    f"{DEFAULT_MAX_IMAGES}: a real Pod names a few dozen at most).",
                },
                "recheckUnchangedImages": {
                    "type": "boolean",
                    "description": "Judge again an UPDATE whose images are all unchanged from "
                    "the stored object, and any update of an object being deleted (default "
                    "false: such updates admit nothing new).",
                },
            },
        },
        "maxRequestBytes": {
            "type": "integer",
            "minimum": 1024,
            "description": "Largest AdmissionReview body accepted; larger ones get HTTP 413.",
        },
        "policies": {
            "type": "object",
            "additionalProperties": False,
            "properties": {
                "reloadIntervalSeconds": {
                    "type": "number",
                    "minimum": 0,
                    "description": "How often the policy directory is checked; 0 disables reload.",
                },
            },
        },
        "log": {
            "type": "object",
            "additionalProperties": False,
            "properties": {
                "format": {"enum": ["json", "text"]},
                "level": {"enum": ["debug", "info", "warning", "error"]},
            },
        },
        "registries": {"type": "object", "description": "Per-registry settings."},
        "network": {
            "type": "object",
            "description": "Limits on the outbound calls of reviews (registries, token "
            "services, Pyxis), per worker process.",
            "additionalProperties": False,
            "properties": {
                "perHostConcurrency": {
                    "type": "integer",
                    "minimum": 1,
                    "maximum": 1024,
                    "description": "Calls in flight to one host at once; keep it below the "
                    "server's threads so a slow host cannot hold them all.",
                },
                "perHostQueueSeconds": {
                    "type": "number",
                    "minimum": 0,
                    "maximum": MAX_DEADLINE_SECONDS,
                    "description": "A call waits in line for a slot of a busy host, up "
                    "to its review's deadline, while the host's calls finish; once every "
                    "call in flight has run longer than this and none has finished for as "
                    "long, the host is slow and further calls are refused at once.",
                },
                "breakerFailures": {
                    "type": "integer",
                    "minimum": 1,
                    "description": "Consecutive failures of a host itself (refused or reset "
                    "connections, TLS failures, 5xx answers, timeouts within "
                    "callTimeoutSeconds) that open its circuit breaker; calls cut off by "
                    "their review's deadline do not count.",
                },
                "callTimeoutSeconds": {
                    "type": "number",
                    "exclusiveMinimum": 0,
                    "maximum": MAX_DEADLINE_SECONDS,
                    "description": "A registry call's own timeout; keep it below "
                    "deadlineSeconds so that a hanging registry is counted by its breaker.",
                },
                "breakerOpenSeconds": {
                    "type": "number",
                    "exclusiveMinimum": 0,
                    "maximum": 3600,
                    "description": "How long an open breaker refuses calls before one probe.",
                },
                "reviewBudgetBytes": {
                    "type": "integer",
                    "minimum": 65536,
                    "description": "Bytes all the responses of one review may bring in together.",
                },
                "reviewThreads": {
                    "type": "integer",
                    "minimum": 1,
                    "maximum": 1024,
                    "description": "Threads per worker process that run the checks of reviews.",
                },
            },
        },
        "conditions": {
            "type": "object",
            "description": "How the CEL conditions of attestations are evaluated: in child "
            "processes of each worker, each evaluation within a cost limit.",
            "additionalProperties": False,
            "properties": {
                "costSeconds": {
                    "type": "number",
                    "exclusiveMinimum": 0,
                    "maximum": MAX_DEADLINE_SECONDS,
                    "description": "Wall-clock seconds all conditions of one statement may "
                    "take; below deadlineSeconds.",
                },
                "processes": {
                    "type": "integer",
                    "minimum": 1,
                    "maximum": MAX_CONDITION_PROCESSES,
                    "description": "Evaluator processes per worker: conditions evaluated at "
                    "once; one more waits for a free process.",
                },
            },
        },
        "freshness": {
            "type": "object",
            "description": "Freshness grade sources: Pyxis and the grades file.",
            "additionalProperties": False,
            "properties": {
                "pyxis": {
                    "type": "object",
                    "additionalProperties": False,
                    "properties": {
                        "url": {
                            "type": "string",
                            "pattern": "^https?://",
                            "description": "Pyxis API base URL (a mirror, or a test server).",
                        },
                        "apiKey": {"type": "string", "minLength": 1},
                        "apiKeyFile": {"type": "string", "minLength": 1},
                        "timeoutSeconds": {
                            "type": "number",
                            "exclusiveMinimum": 0,
                            "maximum": MAX_DEADLINE_SECONDS,
                            "description": "Longest wait for one Pyxis answer (the review's "
                            "deadline still applies).",
                        },
                    },
                    "not": {"required": ["apiKey", "apiKeyFile"]},
                },
                "static": {
                    "type": "object",
                    "additionalProperties": False,
                    "properties": {"file": {"type": "string", "minLength": 1}},
                },
            },
        },
        "cache": {
            "type": "object",
            "description": "Sizes (entries) and lifetimes (seconds) of the caches, and the "
            "optional shared tier behind them.",
            "additionalProperties": False,
            "properties": {
                "digestTTL": {**_TTL, "description": "How long a tag's digest is kept."},
                "digestSize": _SIZE,
                "verifiedTTL": {**_TTL, "description": "How long a passed verification is kept."},
                "verifiedSize": _SIZE,
                "failureTTL": {
                    **_TTL,
                    "description": "How long a failed verification or failing grade source is "
                    "kept (shared for at most 60 s).",
                },
                "failureSize": _SIZE,
                "gradeTTL": {
                    "type": "number",
                    "exclusiveMinimum": 0,
                    "exclusiveMaximum": 86400,
                    "description": "How long a freshness answer is kept; under a day, as Pyxis "
                    "recomputes grades daily.",
                },
                "gradeSize": _SIZE,
                "shared": {
                    "type": "object",
                    "description": "A Redis (or Valkey) every worker of every replica shares "
                    "verified outcomes through.",
                    "additionalProperties": False,
                    "required": ["url", "keyFile"],
                    "properties": {
                        "url": {
                            "type": "string",
                            "pattern": "^(redis|rediss|unix)://",
                            "description": "redis://host:port/db, rediss:// for TLS.",
                        },
                        "keyFile": {
                            "type": "string",
                            "minLength": 1,
                            "description": "File holding the key (32 bytes or more) that "
                            "authenticates every shared entry; only the webhook may read it.",
                        },
                        "passwordFile": {
                            "type": "string",
                            "minLength": 1,
                            "description": "File holding the Redis password (AUTH).",
                        },
                        "timeoutMilliseconds": {
                            "type": "number",
                            "exclusiveMinimum": 0,
                            "maximum": 250,
                            "description": "Budget of one Redis call (connect, write and read "
                            "together); a review waits out at most 3 before Redis is skipped.",
                        },
                        "retrySeconds": {
                            "type": "number",
                            "exclusiveMinimum": 0,
                            "maximum": 3600,
                            "description": "How long Redis is skipped after failing calls "
                            "before one call probes it again.",
                        },
                        "waitMilliseconds": {
                            "type": "number",
                            "minimum": 0,
                            "maximum": 10000,
                            "description": "How long a review waits for another worker or "
                            "replica that is verifying the same image (at most half of what "
                            "its deadline has left) before verifying it itself; 0: never wait.",
                        },
                    },
                },
            },
        },
        "sigstore": {
            "type": "object",
            "description": "The production Sigstore trusted root, optionally refreshed at start.",
            "additionalProperties": False,
            "properties": {
                "refreshTrustedRoot": {
                    "type": "boolean",
                    "description": "Fetch the current production root from Sigstore's TUF "
                    "repository in the background at start-up; on failure keep the shipped one.",
                },
                "refreshTimeoutSeconds": {
                    "type": "number",
                    "exclusiveMinimum": 0,
                    "maximum": 300,
                    "description": "How long the refresh may take before it is given up.",
                },
                "tufUrl": {
                    "type": "string",
                    "pattern": "^https?://",
                    "description": "The TUF repository (a mirror of Sigstore's production one).",
                },
            },
        },
    },
}

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


#: ``network`` keys of trustgate.yaml -> NetworkLimits fields.
_NETWORK_LIMITS = {
    "perHostConcurrency": "concurrency",
    "perHostQueueSeconds": "queue_seconds",
    "breakerFailures": "failure_threshold",
    "breakerOpenSeconds": "open_seconds",
    "reviewBudgetBytes": "review_budget_bytes",
    "callTimeoutSeconds": "call_seconds",
}


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


def parse_config(data: Any, *, source: str = "<config>") -> Config:
    """Validate a parsed configuration document and build a ``Config``.

    Raises:
        ConfigError: naming the source and the offending field.
    """
    if data is None:
        return Config()
    if not isinstance(data, dict):
        raise ConfigError(f"{source}: the configuration must be a mapping")
    error = best_match(Draft202012Validator(_SCHEMA).iter_errors(data))
    if error is not None:
        where = ".".join(str(p) for p in error.absolute_path) or "(top level)"
        raise ConfigError(f"{source}: field {where}: {schema_message(error)}")
    defaults = data.get("defaults", {})
    policies = data.get("policies", {})
    log = data.get("log", {})
    sigstore = data.get("sigstore", {})
    network = data.get("network", {})
    admission = data.get("admission", {})
    deadline = float(data.get("deadlineSeconds", DEFAULT_DEADLINE_SECONDS))
    return Config(
        no_match=cast(NoMatch, defaults.get("noMatch", "deny")),
        deadline_seconds=deadline,
        max_request_bytes=int(data.get("maxRequestBytes", DEFAULT_MAX_BODY_BYTES)),
        reload_interval_seconds=float(policies.get("reloadIntervalSeconds", 2.0)),
        log_format=str(log.get("format", "json")),
        log_level=str(log.get("level", "info")),
        registries=MappingProxyType(dict(data.get("registries", {}))),
        freshness=MappingProxyType(dict(data.get("freshness", {}))),
        cache=MappingProxyType(dict(data.get("cache", {}))),
        recheck_unchanged_images=bool(admission.get("recheckUnchangedImages", False)),
        max_images=int(admission.get("maxImages", DEFAULT_MAX_IMAGES)),
        sigstore=SigstoreConfig(
            refresh_trusted_root=bool(sigstore.get("refreshTrustedRoot", False)),
            refresh_timeout_seconds=float(sigstore.get("refreshTimeoutSeconds", 10.0)),
            tuf_url=str(sigstore.get("tufUrl", DEFAULT_TUF_URL)),
        ),
        network=NetworkConfig(
            NetworkLimits(
                **{attr: network[key] for key, attr in _NETWORK_LIMITS.items() if key in network}
            ),
            review_threads=int(network.get("reviewThreads", DEFAULT_REVIEW_THREADS)),
        ),
        conditions=_conditions(data.get("conditions", {}), deadline, source),
    )


def _conditions(raw: Mapping[str, Any], deadline: float, source: str) -> ConditionsConfig:
    """``conditions`` (schema-checked): a cost limit must leave the review time to decide.

    Only a cost limit that is set is refused; the default one is cut to what a shorter
    deadline leaves, as every evaluation is.

    Raises:
        ConfigError: conditions.costSeconds is not below deadlineSeconds.
    """
    cost = float(raw.get("costSeconds", COST_SECONDS))
    if "costSeconds" in raw and cost >= deadline:
        raise ConfigError(
            f"{source}: field conditions.costSeconds: {cost:g} s must be below "
            f"deadlineSeconds ({deadline:g} s), which bounds the whole review"
        )
    return ConditionsConfig(cost, int(raw.get("processes", PROCESSES)))


def load_config(path: Path | None) -> Config:
    """Read the configuration file at ``path``; ``None`` gives the defaults.

    Raises:
        ConfigError: when the file cannot be read or is invalid.
    """
    if path is None:
        return Config()
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"cannot read configuration file {path}: {exc.strerror}") from exc
    try:
        data = load_yaml(text, str(path))
    except PolicyError as exc:
        raise ConfigError(str(exc)) from None
    return parse_config(data, source=str(path))
