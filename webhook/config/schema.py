"""What ``trustgate.yaml`` may say: its JSON Schema and the bounds written into it.

Separate from the settings and their parsing because it is the longest part
(every field, its limits and its description) and changes only when a field is
added, while what the program reads from a valid file lives in ``model``.
"""

from __future__ import annotations

from typing import Any

from webhook.config.credentials import CREDENTIALS_SCHEMA, KUBERNETES_SCHEMA
from webhook.config.model import DEFAULT_MAX_IMAGES, MAX_DEADLINE_SECONDS
from webhook.config.policysig import POLICY_SIGNATURE_SCHEMA

__all__ = ["MAX_CONDITION_PROCESSES", "SCHEMA"]

#: Most condition evaluator processes per worker; each holds an interpreter (~20 MB resident).
MAX_CONDITION_PROCESSES = 16

_TTL: dict[str, Any] = {"type": "number", "exclusiveMinimum": 0}
_SIZE: dict[str, Any] = {"type": "integer", "minimum": 1, "description": "Most entries kept."}

#: One entry of ``registries``. ``config.registries.registry_settings`` reads it and checks the
#: files it names; the shape is here so that every reader of the schema (the server at
#: start-up, ``policy lint --config``, the chart's values.schema.json) refuses a typo alike.
_REGISTRY: dict[str, Any] = {
    "type": "object",
    "additionalProperties": False,
    "properties": {
        "insecure": {"type": "boolean", "description": "Plain HTTP; only for local registries."},
        "ca": {
            "type": "string",
            "minLength": 1,
            "description": "File holding an extra CA for this registry's HTTPS certificate.",
        },
        "username": {"description": "Basic credentials (or credentials: a file)."},
        "password": {"description": "The password of username."},
        "credentials": {
            "type": "string",
            "minLength": 1,
            "description": "A Docker config.json (or dockerconfigjson Secret) holding the "
            "credentials of this registry; not with username or password.",
        },
    },
    "allOf": [
        {"not": {"required": ["credentials", "username"]}},
        {"not": {"required": ["credentials", "password"]}},
    ],
}

SCHEMA: dict[str, Any] = {
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
                "signature": POLICY_SIGNATURE_SCHEMA,
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
        "credentials": CREDENTIALS_SCHEMA,
        "kubernetes": KUBERNETES_SCHEMA,
        "registries": {
            "type": "object",
            "description": "Per-registry settings, by host[:port] as written in image references.",
            "additionalProperties": _REGISTRY,
        },
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
