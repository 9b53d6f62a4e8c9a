"""Reading ``trustgate.yaml``: schema-check the document, then build a frozen ``Config``.

Separate from the schema and the dataclasses: it is the one place where YAML
spellings (``perHostConcurrency``) become settings (``concurrency``), and where
rules that span fields (a cost limit below the deadline) are checked.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from types import MappingProxyType
from typing import Any, cast

from jsonschema import Draft202012Validator
from jsonschema.exceptions import best_match

from webhook.config.credentials import parse_credentials, parse_kubernetes
from webhook.config.model import (
    DEFAULT_DEADLINE_SECONDS,
    DEFAULT_MAX_BODY_BYTES,
    DEFAULT_MAX_IMAGES,
    DEFAULT_REVIEW_THREADS,
    DEFAULT_TUF_URL,
    ConditionsConfig,
    Config,
    NetworkConfig,
    SigstoreConfig,
)
from webhook.config.policysig import parse_policy_signature
from webhook.config.schema import SCHEMA
from webhook.core.errors import ConfigError, PolicyError
from webhook.core.redaction import schema_message
from webhook.policy.documents import load_yaml
from webhook.policy.model import NoMatch
from webhook.registry.network import NetworkLimits
from webhook.signatures.conditions import COST_SECONDS, PROCESSES

__all__ = ["load_config", "parse_config"]

#: ``network`` keys of trustgate.yaml -> NetworkLimits fields.
_NETWORK_LIMITS = {
    "perHostConcurrency": "concurrency",
    "perHostQueueSeconds": "queue_seconds",
    "breakerFailures": "failure_threshold",
    "breakerOpenSeconds": "open_seconds",
    "reviewBudgetBytes": "review_budget_bytes",
    "callTimeoutSeconds": "call_seconds",
}


def parse_config(data: Any, *, source: str = "<config>") -> Config:
    """Validate a parsed configuration document and build a ``Config``.

    Raises:
        ConfigError: naming the source and the offending field.
    """
    if data is None:
        return Config()
    if not isinstance(data, dict):
        raise ConfigError(f"{source}: the configuration must be a mapping")
    error = best_match(Draft202012Validator(SCHEMA).iter_errors(data))
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
        credentials=parse_credentials(data.get("credentials", {}), source),
        kubernetes=parse_kubernetes(data.get("kubernetes", {})),
        policy_signature=parse_policy_signature(policies.get("signature"), source),
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
