"""Wiring: the engine with its registry client, caches and checks, from the config.

The server and every CLI command build their engine here, so ``trustgate
check`` and ``trustgate audit`` decide exactly as the webhook does, registry
calls and all.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from webhook.cache import Caches, CacheSettings, Observer
from webhook.checks import Services, build_checks
from webhook.config import Config
from webhook.engine import Engine
from webhook.errors import ConfigError
from webhook.policy.model import PolicySet
from webhook.registry import RegistryClient, RegistrySettings
from webhook.registry.resolver import CachedResolver

_REGISTRY_KEYS = frozenset({"insecure", "ca", "username", "password"})


def registry_settings(raw: Mapping[str, Any]) -> dict[str, RegistrySettings]:
    """``registries:`` of trustgate.yaml as settings per ``host[:port]``.

    Raises:
        ConfigError: naming the registry and the field that is wrong.
    """
    settings = {}
    for host, entry in raw.items():
        if not isinstance(entry, Mapping):
            raise ConfigError(f"registries.{host} must be a mapping")
        unknown = set(entry) - _REGISTRY_KEYS
        if unknown:
            raise ConfigError(
                f"registries.{host}: unknown field {sorted(unknown)[0]!r} "
                f"(known: {', '.join(sorted(_REGISTRY_KEYS))})"
            )
        if not isinstance(entry.get("insecure", False), bool):
            raise ConfigError(f"registries.{host}.insecure must be true or false")
        ca = entry.get("ca")
        if ca is not None and not Path(ca).is_file():
            raise ConfigError(f"registries.{host}.ca: {ca} is not a readable file")
        settings[host.lower()] = RegistrySettings(
            insecure=entry.get("insecure", False),
            ca=Path(ca) if ca is not None else None,
            username=entry.get("username"),
            password=entry.get("password"),
        )
    return settings


def build_engine(
    policies: Callable[[], PolicySet], config: Config, observer: Observer | None = None
) -> Engine:
    """The engine for ``config``, with network checks backed by a registry client.

    Raises:
        ConfigError: the registries section is invalid.
    """
    caches = Caches(CacheSettings.from_config(config.cache), observer)
    client = RegistryClient(registry_settings(config.registries))
    return Engine(
        policies,
        no_match=config.no_match,
        checks=build_checks(Services(client, caches)),
        resolver=CachedResolver(client, caches.digests),
        deadline_seconds=config.deadline_seconds,
    )
