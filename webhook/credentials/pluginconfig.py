"""A kubelet ``CredentialProviderConfig``, read and checked as the kubelet reads it.

So that a cluster's own credential provider plug-ins (ecr-credential-provider,
auth-provider-gcp, acr-credential-provider) work here unchanged, the file is
the kubelet's (https://kubernetes.io/docs/reference/config-api/kubelet-config.v1/),
read with the kubelet's rules (pkg/credentialprovider/plugin/config.go):

- ``kind: CredentialProviderConfig``, ``apiVersion: kubelet.config.k8s.io/v1``
  (or ``v1beta1``, the same shape); a path that is a directory means its
  ``*.json``, ``*.yaml`` and ``*.yml`` files in name order, merged;
- at least one provider, each with a ``name`` unique across them and usable
  as a file name in ``binDir`` (no ``/``, no space, not ``.`` or ``..``),
  ``matchImages`` (at least one registry pattern), ``defaultCacheDuration``
  (a Go duration such as ``12h``, not negative), ``apiVersion``
  ``credentialprovider.kubelet.k8s.io/v1`` (or ``v1beta1``), and optional
  ``args`` and ``env`` (``[{name, value}]``);
- a field the kubelet does not know is an error (it decodes strictly).

Refused although the kubelet takes it: ``tokenAttributes`` (a plug-in that
wants the pod's service account token), since trustgate has no such token
to pass. Every error is a ConfigError naming the file and the field.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

import yaml

from webhook.core.errors import ConfigError
from webhook.core.untrusted import quoted, shown
from webhook.core.yamltags import check_timestamps

from .matching import Patterns, parse_patterns

CONFIG_API_VERSIONS: Final = ("kubelet.config.k8s.io/v1", "kubelet.config.k8s.io/v1beta1")
PLUGIN_API_VERSIONS: Final = (
    "credentialprovider.kubelet.k8s.io/v1",
    "credentialprovider.kubelet.k8s.io/v1beta1",
)
#: A configuration of a few providers is a few kB.
MAX_FILE_BYTES: Final = 1024 * 1024
_SUFFIXES: Final = (".json", ".yaml", ".yml")
_TOP: Final = frozenset({"apiVersion", "kind", "providers"})
_PROVIDER: Final = frozenset(
    {"name", "matchImages", "defaultCacheDuration", "apiVersion", "args", "env", "tokenAttributes"}
)
_UNITS: Final[Mapping[str, float]] = {
    "ns": 1e-9,
    "us": 1e-6,
    "µs": 1e-6,  # Go accepts both micro signs
    "μs": 1e-6,
    "ms": 1e-3,
    "s": 1.0,
    "m": 60.0,
    "h": 3600.0,
}
_DURATION_PART: Final = re.compile(r"(\d+\.?\d*|\.\d+)(ns|us|µs|μs|ms|s|m|h)")

try:
    from yaml import CSafeLoader as _SafeLoader
except ImportError:  # PyYAML built without libyaml
    from yaml import SafeLoader as _SafeLoader  # type: ignore[assignment]


@dataclass(frozen=True, slots=True)
class PluginProvider:
    """One provider of the file: a plug-in, the images it serves, how to run it."""

    name: str
    match_images: Patterns
    #: Seconds; 0 caches nothing.
    default_cache_duration: float
    api_version: str
    args: tuple[str, ...] = ()
    env: tuple[tuple[str, str], ...] = ()


def read_config(path: Path) -> tuple[PluginProvider, ...]:
    """The providers of the CredentialProviderConfig at ``path`` (a file or a directory of them).

    Raises:
        ConfigError: unreadable, not YAML or JSON, or not a valid configuration;
            the message names the file and the field.
    """
    files = _files(path)
    providers: list[PluginProvider] = []
    for file in files:
        for index, entry in enumerate(_providers(_load(file), file)):
            provider = _provider(entry, f"{file}: field providers[{index}]")
            if any(p.name == provider.name for p in providers):
                raise ConfigError(
                    f"{file}: field providers[{index}].name: {quoted(provider.name)} is "
                    f"given twice; each provider needs a name of its own"
                )
            providers.append(provider)
    return tuple(providers)


def parse_duration(text: str) -> float:
    """A Go duration (``1h30m``, ``90s``, ``0``) in seconds, as Go's ``time.ParseDuration``.

    Raises:
        ValueError: ``text`` is not one.
    """
    body = text[1:] if text[:1] in "+-" else text
    sign = -1.0 if text.startswith("-") else 1.0
    if body == "0":
        return 0.0
    position, total = 0, 0.0
    while position < len(body):
        match = _DURATION_PART.match(body, position)
        if match is None:
            break
        total += float(match.group(1)) * _UNITS[match.group(2)]
        position = match.end()
    if not body or position != len(body):
        raise ValueError(f"{quoted(text)} is not a duration such as 12h, 30m or 90s")
    return sign * total


def _files(path: Path) -> list[Path]:
    try:
        if path.is_dir():
            files = sorted(p for p in path.iterdir() if p.suffix in _SUFFIXES and not p.is_dir())
            if not files:
                raise ConfigError(
                    f"{path}: holds no *.json, *.yaml or *.yml CredentialProviderConfig file"
                )
            return files
    except OSError as exc:
        raise ConfigError(f"{path}: cannot be read ({exc.strerror})") from None
    return [path]


def _load(file: Path) -> Any:
    try:
        with file.open("rb") as handle:
            data = handle.read(MAX_FILE_BYTES + 1)
    except OSError as exc:
        raise ConfigError(
            f"{file}: cannot read the kubelet credential provider configuration ({exc.strerror})"
        ) from None
    if len(data) > MAX_FILE_BYTES:
        raise ConfigError(f"{file}: larger than {MAX_FILE_BYTES} bytes")
    try:
        return yaml.load(data, Loader=_Loader)  # a safe loader
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        raise ConfigError(f"{file}: not valid YAML or JSON{where}: {exc.problem}") from None
    except (yaml.YAMLError, ValueError, RecursionError):
        raise ConfigError(f"{file}: not valid YAML or JSON") from None


def _providers(document: Any, file: Path) -> list[Any]:
    if not isinstance(document, dict):
        raise ConfigError(f"{file}: not a CredentialProviderConfig (a mapping with providers)")
    _known(document, _TOP, f"{file}: field ")
    if document.get("kind") != "CredentialProviderConfig":
        raise ConfigError(f"{file}: field kind: must be CredentialProviderConfig")
    if document.get("apiVersion") not in CONFIG_API_VERSIONS:
        raise ConfigError(
            f"{file}: field apiVersion: must be one of {', '.join(CONFIG_API_VERSIONS)}"
        )
    providers = document.get("providers")
    if not isinstance(providers, list) or not providers:
        raise ConfigError(f"{file}: field providers: at least one provider is required")
    return providers


def _provider(entry: Any, where: str) -> PluginProvider:
    if not isinstance(entry, dict):
        raise ConfigError(f"{where}: must be a mapping")
    _known(entry, _PROVIDER, f"{where}.")
    if "tokenAttributes" in entry:
        raise ConfigError(
            f"{where}.tokenAttributes: trustgate has no pod service account token to pass "
            f"to a plug-in; configure a provider that uses the node's or its own identity"
        )
    name = _name(entry.get("name"), f"{where}.name")
    images = entry.get("matchImages")
    if not isinstance(images, list) or not images or not all(isinstance(i, str) for i in images):
        raise ConfigError(f"{where}.matchImages: at least one image pattern (a string) is required")
    patterns = parse_patterns(images, f"{where}.matchImages")
    duration = entry.get("defaultCacheDuration")
    if not isinstance(duration, str):
        raise ConfigError(f"{where}.defaultCacheDuration: required, a duration such as 12h")
    try:
        seconds = parse_duration(duration)
    except ValueError as exc:
        raise ConfigError(f"{where}.defaultCacheDuration: {exc}") from None
    if seconds < 0:
        raise ConfigError(f"{where}.defaultCacheDuration: must not be negative")
    version = entry.get("apiVersion")
    if version not in PLUGIN_API_VERSIONS:
        raise ConfigError(f"{where}.apiVersion: must be one of {', '.join(PLUGIN_API_VERSIONS)}")
    args = entry.get("args") or []
    if not isinstance(args, list) or not all(isinstance(a, str) for a in args):
        raise ConfigError(f"{where}.args: must be a list of strings")
    return PluginProvider(
        name, patterns, seconds, version, tuple(args), _env(entry.get("env"), f"{where}.env")
    )


def _name(name: Any, where: str) -> str:
    if not isinstance(name, str) or not name:
        raise ConfigError(f"{where}: required, the plug-in's file name in binDir")
    separators = {"/", os.sep, os.altsep or "/"}
    bad = any(s in name for s in separators) or " " in name or "\0" in name or name in (".", "..")
    if bad:
        raise ConfigError(
            f"{where}: {quoted(name)} must be a plain file name in binDir "
            f"(no path separator, no space, not . or ..)"
        )
    return name


def _env(env: Any, where: str) -> tuple[tuple[str, str], ...]:
    if env is None:
        return ()
    if not isinstance(env, list):
        raise ConfigError(f"{where}: must be a list of {{name, value}}")
    pairs = []
    for index, item in enumerate(env):
        ok = isinstance(item, dict) and set(item) <= {"name", "value"}
        name, value = (item.get("name"), item.get("value")) if ok else (None, None)
        if not (isinstance(name, str) and name and "=" not in name and isinstance(value, str)):
            raise ConfigError(f"{where}[{index}]: must be {{name: NAME, value: VALUE}}, strings")
        pairs.append((name, value))
    return tuple(pairs)


def _known(mapping: dict[Any, Any], fields: frozenset[str], where: str) -> None:
    unknown = sorted(str(key) for key in mapping if key not in fields)
    if unknown:
        raise ConfigError(
            f"{where}{shown(unknown[0], 64)}: unknown field (the kubelet refuses it too)"
        )


class _Loader(_SafeLoader):
    """The safe loader, refusing a key given twice (the kubelet's strict decoding does)."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: set[str] = set()
        for key_node, _ in node.value:
            if isinstance(key_node, yaml.ScalarNode):
                if key_node.value in seen:
                    problem = f"the key {key_node.value!r} is given twice"
                    raise yaml.constructor.ConstructorError(
                        None, None, problem, key_node.start_mark
                    )
                seen.add(key_node.value)
        return super().construct_mapping(node, deep=deep)


check_timestamps(_Loader)
