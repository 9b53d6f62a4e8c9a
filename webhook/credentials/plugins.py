"""Logins from kubelet credential provider plug-ins, run and cached as the kubelet runs them.

A cluster that pulls from a cloud registry often does it through a kubelet
credential provider plug-in (ecr-credential-provider, auth-provider-gcp,
acr-credential-provider). trustgate runs the same binaries with the same
configuration (``pluginconfig``) and the same protocol
(https://kubernetes.io/docs/reference/config-api/kubelet-credentialprovider.v1/),
following the kubelet's pkg/credentialprovider/plugin/plugin.go:

P1. A plug-in runs only for an image its ``matchImages`` cover, with
    ``{"apiVersion", "kind": "CredentialProviderRequest", "image"}`` on stdin,
    where ``image`` is the repository (``registry/path``, no tag or digest),
    the environment of trustgate plus the provider's ``env``, and ``args``.
P2. Its stdout must be a ``CredentialProviderResponse`` of the provider's
    ``apiVersion``, with no field the kubelet does not know. Any other answer,
    or a non-zero exit, is a failure.
P3. ``auth`` maps registry keys to ``{username, password}``; the keys are
    matched to the image with the kubelet's keyring rules (``keyring``), most
    specific first.
P4. The answer is cached under the image, its registry or one global key
    (``cacheKeyType`` Image, Registry, Global) for ``cacheDuration`` (absent:
    the provider's ``defaultCacheDuration``; zero: not cached). A lookup tries
    the image's key, then its registry's, then the global one.
P5. Concurrent lookups of one image share one run.

Where trustgate differs: a run happens in a worker thread, killed after the
kubelet's own minute (``PLUGIN_SECONDS``), and a review waits for it only
within its deadline, so a slow plug-in costs one review its time and its
answer serves the next; stdout is capped; a failed run is not repeated for
the same image for ``RETRY_AFTER`` seconds (a failing plug-in is not started
once per review). Errors never quote the plug-in's stdout, which may hold
credentials.
"""

from __future__ import annotations

import json
import os
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

from cachetools import TLRUCache

from webhook.core.errors import ConfigError, UpstreamError
from webhook.core.redaction import hide_tokens
from webhook.core.scope import Login
from webhook.core.untrusted import json_value, quoted, unique_keys

from .dockerconfig import DockerConfig, DockerConfigEntry
from .keyring import Keyring
from .pluginconfig import PluginProvider, parse_duration, read_config
from .pluginexec import run

if TYPE_CHECKING:
    from webhook.core.deadline import Deadline
    from webhook.core.reference import ImageRef

#: The kubelet's limit on one run of a plug-in.
PLUGIN_SECONDS: Final = 60.0
#: An answer with credentials for a few registries is a few kB.
MAX_RESPONSE_BYTES: Final = 256 * 1024
#: Registry keys in one answer.
MAX_AUTH_ENTRIES: Final = 256
#: Cached answers per plug-in (Image keys add one per repository).
MAX_CACHED: Final = 4096
#: A failed run is answered from memory for this long before the plug-in runs again.
RETRY_AFTER: Final = 5.0
#: Runs started or waiting at once: past this, a lookup fails at once rather than queue a
#: run that would start after its review gave up (a flood of distinct image names).
MAX_PENDING: Final = 16
_THREADS: Final = 2
_RESPONSE: Final = frozenset({"apiVersion", "kind", "cacheKeyType", "cacheDuration", "auth"})
_CACHE_KEY_TYPES: Final = ("Image", "Registry", "Global")


class PluginError(UpstreamError):
    """A plug-in failed, timed out, or answered something that is not a valid response."""


@dataclass(frozen=True, slots=True)
class Response:
    """A plug-in's answer: how to cache it, for how long (None: the default), its credentials."""

    cache_key_type: str
    cache_duration: float | None
    entries: tuple[DockerConfigEntry, ...]


@dataclass(frozen=True, slots=True)
class _Cached:
    keyring: Keyring
    expires_at: float


def plugin_sources(config: Path, bin_dir: Path) -> list[PluginSource]:
    """A source per provider of the CredentialProviderConfig ``config``, binaries in ``bin_dir``.

    Raises:
        ConfigError: the configuration is invalid, or ``bin_dir`` lacks a plug-in
            or it is not an executable file.
    """
    if not bin_dir.is_dir():
        raise ConfigError(f"credentials.kubeletPlugins.binDir: {bin_dir} is not a directory")
    sources = []
    for provider in read_config(config):
        binary = bin_dir / provider.name
        if not (binary.is_file() and os.access(binary, os.X_OK)):
            raise ConfigError(
                f"{config}: provider {quoted(provider.name)}: {binary} is not an executable "
                f"file (the plug-in's name is its file name in binDir)"
            )
        sources.append(PluginSource(provider, bin_dir))
    return sources


class PluginSource:
    """A ``core.scope.LoginSource`` that asks one kubelet credential provider plug-in (P1-P5)."""

    kind = "plugin"

    def __init__(
        self,
        provider: PluginProvider,
        bin_dir: Path,
        *,
        seconds: float = PLUGIN_SECONDS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.provider = provider
        self.name = f"plugin {provider.name}"
        self._argv = (str(bin_dir / provider.name), *provider.args)
        self._env = {**os.environ, **dict(provider.env)}
        self._seconds = seconds
        self._clock = clock
        self._cache: TLRUCache[tuple[str, str], _Cached] = TLRUCache(
            MAX_CACHED, ttu=lambda _key, value, _now: value.expires_at, timer=clock
        )
        self._running: dict[str, Future[Keyring]] = {}
        self._failed: TLRUCache[str, tuple[float, PluginError]] = TLRUCache(
            MAX_CACHED, ttu=lambda _key, value, _now: value[0], timer=clock
        )
        self._lock = threading.Lock()
        self._pool: ThreadPoolExecutor | None = None
        self._pid = 0

    def matches(self, host: str) -> bool:
        """Whether some ``matchImages`` pattern names ``host`` (its path is checked per image)."""
        return self.provider.match_images.matches_host(host)

    def logins(self, image: ImageRef, deadline: Deadline) -> Sequence[Login]:
        """The plug-in's logins for ``image``: cached, or from a run waited on within ``deadline``.

        Raises:
            PluginError: the run failed, or did not end before the deadline.
        """
        if not self.provider.match_images.matches_image(image):
            return ()
        keyring = self._keyring(image, deadline)
        return tuple(
            Login(found.username, found.password, self.name, self.kind)
            for found in keyring.lookup(image)
        )

    def _keyring(self, image: ImageRef, deadline: Deadline) -> Keyring:
        repository = image.repository
        with self._lock:
            for key in _cache_keys(image):
                cached = self._cache.get(key)
                if cached is not None:
                    return cached.keyring
            failed = self._failed.get(repository)
            if failed is not None:
                raise failed[1]
            future = self._running.get(repository)
            if future is None:
                if len(self._running) >= MAX_PENDING:
                    raise PluginError(
                        f"{self.name}: {MAX_PENDING} runs are already under way; "
                        f"this image's waits for one of them to end"
                    )
                future = self._executor().submit(self._run, image)
                self._running[repository] = future
        try:
            return future.result(timeout=deadline.remaining())
        except FutureTimeout:
            raise PluginError(
                f"{self.name}: still running when the review's deadline passed "
                f"(it may take up to {self._seconds:g}s; its answer serves the next review)"
            ) from None

    def _run(self, image: ImageRef) -> Keyring:
        repository = image.repository
        error: PluginError | None = None
        try:
            keyring = self._ask(image)
        except PluginError as exc:
            error = exc
        except Exception as exc:  # a fault here must still end the flight and be remembered
            error = PluginError(f"{self.name}: failed ({type(exc).__name__})")
        with self._lock:
            self._running.pop(repository, None)
            if error is None:
                self._failed.pop(repository, None)
            else:
                self._failed[repository] = (self._clock() + RETRY_AFTER, error)
        if error is not None:
            raise error
        return keyring

    def _ask(self, image: ImageRef) -> Keyring:
        """Run the plug-in for ``image``, cache its answer (P4) and return it as a keyring."""
        request = {
            "apiVersion": self.provider.api_version,
            "kind": "CredentialProviderRequest",
            "image": image.repository,
        }
        try:
            finished = run(
                self._argv,
                json.dumps(request).encode(),
                self._env,
                seconds=self._seconds,
                max_stdout=MAX_RESPONSE_BYTES,
            )
        except UpstreamError as exc:
            raise PluginError(f"{self.name}: {hide_tokens(exc.message)}") from None
        answer = parse_response(finished.stdout, self.provider.api_version, self.name)
        keyring = Keyring([DockerConfig(self.name, answer.entries)])
        duration = answer.cache_duration
        if duration is None:
            duration = self.provider.default_cache_duration
        if duration > 0:
            key = {
                "Image": ("Image", image.repository),
                "Registry": ("Registry", image.domain),
                "Global": ("Global", ""),
            }[answer.cache_key_type]
            with self._lock:
                self._cache[key] = _Cached(keyring, self._clock() + duration)
        return keyring

    def _executor(self) -> ThreadPoolExecutor:
        # A forked worker must not share its parent's threads (they do not exist there).
        if self._pool is None or self._pid != os.getpid():
            self._pool = ThreadPoolExecutor(_THREADS, thread_name_prefix=self.name)
            self._pid = os.getpid()
            self._running.clear()
        return self._pool


def parse_response(data: bytes, api_version: str, source: str) -> Response:
    """A plug-in's stdout as a ``CredentialProviderResponse`` of ``api_version`` (P2, P3).

    Raises:
        PluginError: it is not one; the message names what is wrong, never a value
            that could be a credential.
    """
    try:
        document = json_value(data, object_pairs_hook=unique_keys)
    except ValueError:
        raise PluginError(f"{source}: answered something that is not JSON on stdout") from None
    if not isinstance(document, dict):
        raise PluginError(f"{source}: answered JSON that is not a CredentialProviderResponse")
    version = document.get("apiVersion")
    if version != api_version:
        raise PluginError(
            f"{source}: answered apiVersion {_shown(version)}, but its provider's apiVersion "
            f"is {api_version}: the plug-in and the configuration must agree"
        )
    if document.get("kind") != "CredentialProviderResponse":
        raise PluginError(
            f"{source}: answered kind {_shown(document.get('kind'))}, "
            f"not CredentialProviderResponse"
        )
    unknown = sorted(set(document) - _RESPONSE)
    if unknown:
        raise PluginError(f"{source}: answered an unknown field {_shown(unknown[0])}")
    key_type = document.get("cacheKeyType")
    if key_type not in _CACHE_KEY_TYPES:
        raise PluginError(
            f"{source}: answered cacheKeyType {_shown(key_type)}, not Image, Registry or Global"
        )
    return Response(
        key_type, _duration(document.get("cacheDuration"), source), _auth(document, source)
    )


def _duration(value: Any, source: str) -> float | None:
    if value is None:
        return None
    try:
        if not isinstance(value, str):
            raise ValueError("not a string")
        return max(0.0, parse_duration(value))
    except ValueError:
        raise PluginError(
            f"{source}: answered a cacheDuration that is not a duration such as 5m"
        ) from None


def _auth(document: dict[str, Any], source: str) -> tuple[DockerConfigEntry, ...]:
    auth = document.get("auth")
    if auth is None:
        return ()
    if not isinstance(auth, dict) or len(auth) > MAX_AUTH_ENTRIES:
        raise PluginError(
            f"{source}: answered an auth that is not a map of at most {MAX_AUTH_ENTRIES} "
            f"registry keys to {{username, password}}"
        )
    entries = []
    for key, value in auth.items():
        fields = value if isinstance(value, dict) else None
        username = fields.get("username", "") if fields is not None else None
        password = fields.get("password", "") if fields is not None else None
        valid = (
            fields is not None
            and set(fields) <= {"username", "password"}
            and isinstance(username, str)
            and isinstance(password, str)
        )
        if not valid:
            raise PluginError(
                f"{source}: answered an auth entry that is not {{username, password}} "
                f"(both strings, nothing else)"
            )
        assert isinstance(username, str) and isinstance(password, str)
        entries.append(DockerConfigEntry(str(key), username, password))
    return tuple(entries)


def _cache_keys(image: ImageRef) -> tuple[tuple[str, str], ...]:
    """The keys a lookup tries, in the kubelet's order (P4)."""
    return (("Image", image.repository), ("Registry", image.domain), ("Global", ""))


def _shown(value: Any) -> str:
    """A field's value in a message: a short string quoted, anything else by its type."""
    if isinstance(value, str):
        return quoted(hide_tokens(value), 64)
    return "(absent)" if value is None else f"(a JSON {type(value).__name__})"
