"""The ``registries:`` section of trustgate.yaml: how to reach each registry host.

Each entry gives a host's TLS (``insecure``, ``ca``) and trustgate's own login
there: ``username`` and ``password``, or ``credentials``, a file holding a
Docker ``config.json`` or the content of a ``kubernetes.io/dockerconfigjson``
Secret (the same JSON, mounted from the Secret).

That file is read by ``webhook.credentials.dockerconfig`` and its entry for the
host found by ``webhook.credentials.keyring``, the parser and the matching that
pull secrets use, so that one login file means the same thing wherever
trustgate reads it, and the same as on the node that pulls with it. Only
``auths`` entries are read: a login a credential helper holds (``credsStore``,
``credHelpers``) is not, as trustgate runs no helper. Errors name the file and
the key at fault, never a password or ``auth`` value.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any, Final

from webhook.core.errors import ConfigError
from webhook.credentials.dockerconfig import (
    MAX_CONTENT_BYTES,
    DockerConfig,
    DockerConfigError,
    parse_dockerconfigjson,
    shown_key,
)
from webhook.credentials.keyring import Keyring, parse_key
from webhook.registry.client import RegistrySettings

_REGISTRY_KEYS: Final = frozenset({"insecure", "ca", "username", "password", "credentials"})
#: Keys named in a "no entry" error; a file may hold up to 256.
_LISTED_KEYS: Final = 8


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
        username, password = entry.get("username"), entry.get("password")
        credentials = entry.get("credentials")
        if credentials is not None:
            if username is not None or password is not None:
                raise ConfigError(
                    f"registries.{host}: give either credentials or username/password, not both"
                )
            if not isinstance(credentials, str) or not credentials:
                raise ConfigError(f"registries.{host}.credentials must be a file path")
            username, password = docker_credentials(Path(credentials), host)
        settings[host.lower()] = RegistrySettings(
            insecure=entry.get("insecure", False),
            ca=Path(ca) if ca is not None else None,
            username=username,
            password=password,
        )
    return settings


def docker_credentials(path: Path, host: str) -> tuple[str, str]:
    """``(username, password)`` for ``host`` from a Docker ``config.json`` or dockerconfigjson.

    The entry is read as the kubelet reads a pull secret's: ``auth`` (base64 of
    ``user:password``) wins over ``username`` and ``password``; ``identitytoken``
    is not used. Its key is ``host``, ``https://host``, a URL such as
    ``https://host/v1/``, or a glob such as ``*.example.com``; Docker Hub's keys
    (``https://index.docker.io/v1/``, as ``docker login`` writes it) serve
    ``docker.io``. A key with a repository path (``quay.io/team``) covers only
    part of the host, so it does not count. When several keys apply, the most
    specific comes first (the keyring's order).

    Raises:
        ConfigError: the file is missing, unreadable or too large, is not such JSON,
            holds an entry the kubelet could not read either, or gives no login for ``host``.
    """
    where = f"registries.{host}.credentials: {path}"
    config = _read(path, where)
    found = Keyring([config]).for_host(host)
    if found:
        return found[0].username, found[0].password
    for skipped in config.skipped:
        try:
            covers = parse_key(skipped.key).covers_host(host)
        except ValueError:
            continue
        if covers:
            raise ConfigError(
                f"{where}: the entry for {shown_key(skipped.key)} gives no login: "
                f"{skipped.reason}. docker login leaves an entry so when a credential store "
                "(credsStore, credHelpers) holds the login, and trustgate reads no store: "
                "give the entry auth, or username and password"
            )
    keys = [entry.key for entry in config.entries] + [item.key for item in config.skipped]
    listed = ", ".join(shown_key(key) for key in keys[:_LISTED_KEYS]) or "none"
    if len(keys) > _LISTED_KEYS:
        listed += f" and {len(keys) - _LISTED_KEYS} more"
    raise ConfigError(
        f"{where} has no entry for {host} (it has: {listed}); the key of an entry for the "
        f"whole host is {host} or https://{host}, without a repository path"
    )


def _read(path: Path, where: str) -> DockerConfig:
    """The parsed file, at most ``MAX_CONTENT_BYTES`` of it read."""
    try:
        with path.open("rb") as file:
            content = file.read(MAX_CONTENT_BYTES + 1)
    except FileNotFoundError:
        raise ConfigError(f"{where} does not exist") from None
    except OSError as exc:
        raise ConfigError(f"{where} cannot be read: {exc.strerror or exc}") from None
    if len(content) > MAX_CONTENT_BYTES:
        raise ConfigError(
            f"{where} is over {MAX_CONTENT_BYTES:,} bytes; a login file for a few "
            "registries is a few kB"
        )
    try:
        return parse_dockerconfigjson(content, source=where)
    except DockerConfigError as exc:
        raise ConfigError(exc.message) from None
