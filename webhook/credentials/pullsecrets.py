"""The pull secrets of one workload, read from a store and turned into a review's ``Scope``.

The kubelet pulls a pod's images with the pod's ``imagePullSecrets``; the
ServiceAccount admission plug-in adds those of the pod's service account. So
that trustgate authenticates with what the node will pull with, a review uses
the workload's own secrets in the order written, then its service account's,
each secret once (the first place it is named wins), matched to images by the
``Keyring``.

``PullSecrets`` is the ``webhook.core.sources.ScopeReader`` of pull secrets;
``PullIdentity`` (``webhook.core.scope``) is re-exported here. Reading Secrets
is the store's job (a watched cache in ``serve``, direct reads
in a one-shot ``review``): ``SecretStore`` is the shape both have, so this
module needs no Kubernetes client. What it adds is the part every caller must
get the same:

- one namespace's secrets never serve another's review: the store is asked in
  the identity's namespace only, and the scope's ``key`` (which partitions
  every cache of what a login fetched) starts with the namespace;
- a secret that is named but not usable (missing, of another type, unreadable,
  dropped by the store) is a line in ``Scope.problems`` for the denial to
  show, never its content;
- building a scope is memoised by the identity and the versions of the objects
  it was built from, so a warm review costs a few dictionary lookups, and a
  rotated secret (a new ``resourceVersion``) is read afresh.
"""

from __future__ import annotations

import hashlib
import json
import re
import threading
from collections.abc import Hashable, Mapping, Sequence
from typing import Any, Final, Protocol

from cachetools import LRUCache

from webhook.core.deadline import Deadline
from webhook.core.reference import ImageRef
from webhook.core.scope import Login, PullIdentity, Scope
from webhook.core.untrusted import quoted

from .dockerconfig import DATA_KEYS, DockerConfig, DockerConfigError, from_secret, shown_key
from .keyring import Keyring

__all__ = [
    "DROPPED",
    "MAX_SECRETS",
    "PullIdentity",
    "PullSecrets",
    "SecretStore",
]

#: The key a store sets on an object it saw but would not keep (too large, over its
#: bounds), with the reason as value: the object then carries only its metadata and
#: ``type``. A denial can then say why the secret was not tried rather than "missing".
DROPPED: Final = "trustgate/dropped"
#: Secret names used per workload; a pod names a handful. Past this the rest are
#: reported, not read: each costs a lookup and, when it changes, a parse.
MAX_SECRETS: Final = 128
#: Built scopes remembered: one per distinct (namespace, secrets, service account).
DEFAULT_MAX_SCOPES: Final = 1024
#: A namespace is a DNS label; a Secret or ServiceAccount name a DNS subdomain.
_LABEL: Final = re.compile(r"[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?")
_SUBDOMAIN: Final = re.compile(r"[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?")
_TYPES: Final = " or ".join(DATA_KEYS)


class SecretStore(Protocol):
    """Where Secrets and ServiceAccounts are read from, as the API server's JSON objects.

    Both methods answer None for an object that does not exist (a store that
    reads only pull secret types answers None for a Secret of another type),
    and may answer an object carrying ``DROPPED`` for one seen but not kept.
    """

    def secret(self, namespace: str, name: str, deadline: Deadline) -> Mapping[str, Any] | None:
        """The Secret ``namespace/name``, or None.

        Raises:
            UpstreamError: the store cannot answer within ``deadline`` (the
                message says why and what to do, never a secret).
        """
        ...

    def service_account(
        self, namespace: str, name: str, deadline: Deadline
    ) -> Mapping[str, Any] | None:
        """The ServiceAccount ``namespace/name``, or None.

        Raises:
            UpstreamError: as ``secret``.
        """
        ...


class PullSecrets:
    """Builds the ``Scope`` of a workload's pull secrets from a ``SecretStore``.

    ``namespaces`` limits the namespaces whose secrets are used (None: all);
    a review in another namespace gets no scope and reads nothing. Safe to
    share between threads.
    """

    def __init__(
        self,
        store: SecretStore,
        namespaces: tuple[str, ...] | None = None,
        *,
        max_scopes: int = DEFAULT_MAX_SCOPES,
    ) -> None:
        self.store = store
        self.namespaces = None if namespaces is None else frozenset(namespaces)
        self._built: LRUCache[Hashable, Scope] = LRUCache(maxsize=max_scopes)
        self._lock = threading.Lock()
        self._max_scopes = max_scopes
        #: identity -> (the store's generation, the scope built then).
        self._current: dict[PullIdentity, tuple[int, Scope | None]] = {}

    def scope(self, identity: PullIdentity, deadline: Deadline) -> Scope | None:
        """The pull secrets ``identity`` may authenticate with, or None outside ``namespaces``.

        A scope whose secrets yield no login has ``key`` None (it shares
        trustgate's own cache partition) and says why in ``problems``.

        Raises:
            UpstreamError: the store could not answer within ``deadline``.
        """
        namespace = identity.namespace
        if self.namespaces is not None and namespace not in self.namespaces:
            return None
        # A watched store says when nothing changed since a scope was built: then that
        # scope is still the answer, and a warm review reads no object at all.
        generation = getattr(self.store, "generation", None)
        if generation is not None:
            kept = self._current.get(identity)
            if kept is not None and kept[0] == generation:
                return kept[1]
        built = self._scope(identity, deadline)
        if generation is not None:
            if len(self._current) >= self._max_scopes:
                self._current.clear()
            self._current[identity] = (generation, built)
        return built

    def _scope(self, identity: PullIdentity, deadline: Deadline) -> Scope | None:
        namespace = identity.namespace
        if not _LABEL.fullmatch(namespace):
            return _empty(identity, (f"namespace {quoted(namespace, 64)} is not a valid name",))
        problems: list[str] = []
        account = self._account(identity, deadline, problems)
        names = _ordered(identity.secrets, _account_secrets(account), namespace, problems)
        secrets = [(name, self.store.secret(namespace, name, deadline)) for name in names]
        memo = _memo_key(identity, account, secrets, problems)
        if memo is not None:
            with self._lock:
                found = self._built.get(memo)
            if found is not None:
                return found
        built = _build(identity, secrets, problems)
        if memo is not None:
            with self._lock:
                self._built[memo] = built
        return built

    def _account(
        self, identity: PullIdentity, deadline: Deadline, problems: list[str]
    ) -> Mapping[str, Any] | None:
        name = identity.service_account or "default"
        where = f"service account {identity.namespace}/{_shown(name)}"
        if not _SUBDOMAIN.fullmatch(name):
            problems.append(f"{where}: not a valid name; its pull secrets were not used")
            return None
        account = self.store.service_account(identity.namespace, name, deadline)
        if account is None:
            problems.append(f"{where}: not found; only the workload's own pull secrets were used")
        elif account.get(DROPPED):
            problems.append(f"{where}: not read: {account[DROPPED]}")
            return None
        return account


def _account_secrets(account: Mapping[str, Any] | None) -> list[str]:
    """The names in a ServiceAccount's ``imagePullSecrets``, as written."""
    listed = (account or {}).get("imagePullSecrets")
    if not isinstance(listed, list):
        return []
    return [item["name"] for item in listed if isinstance(item, dict) and item.get("name")]


def _ordered(
    own: Sequence[str], account: Sequence[str], namespace: str, problems: list[str]
) -> list[str]:
    """The workload's secrets then its account's, each once, valid names only, bounded."""
    names: list[str] = []
    for name in (*own, *account):
        if not isinstance(name, str) or name in names:
            continue
        if not _SUBDOMAIN.fullmatch(name):
            problems.append(f"pull secret {namespace}/{_shown(name)}: not a valid name")
            continue
        names.append(name)
    if len(names) > MAX_SECRETS:
        problems.append(
            f"{len(names) - MAX_SECRETS} pull secrets past the first {MAX_SECRETS} were not used"
        )
    return names[:MAX_SECRETS]


def _version(obj: Mapping[str, Any] | None) -> tuple[str, str] | bool | None:
    """What identifies this state of an object: uid and resourceVersion; False if unknown."""
    if obj is None:
        return None
    metadata = obj.get("metadata") or {}
    version = metadata.get("resourceVersion")
    if not isinstance(version, str) or not version:
        return False
    return str(metadata.get("uid") or ""), version


def _memo_key(
    identity: PullIdentity,
    account: Mapping[str, Any] | None,
    secrets: Sequence[tuple[str, Mapping[str, Any] | None]],
    problems: Sequence[str],
) -> Hashable | None:
    """The key a built scope is remembered by; None when an object's version is unknown."""
    versions = [_version(account), *(_version(obj) for _, obj in secrets)]
    if any(version is False for version in versions):
        return None
    return identity, tuple(versions), tuple(problems)


def _empty(identity: PullIdentity, problems: tuple[str, ...]) -> Scope:
    return Scope(None, _label(identity), lambda image: (), problems)


def _label(identity: PullIdentity) -> str:
    return f"namespace {identity.namespace}, service account {_shown(identity.service_account)}"


def _shown(name: str) -> str:
    """A name as it is when valid, else quoted and cut (it came from the request)."""
    return name if _SUBDOMAIN.fullmatch(name) else quoted(name, 64)


def _build(
    identity: PullIdentity,
    secrets: Sequence[tuple[str, Mapping[str, Any] | None]],
    problems: Sequence[str],
) -> Scope:
    """The scope of ``secrets`` (in order), with every reason one was not usable."""
    namespace = identity.namespace
    found: list[str] = list(problems)
    configs: list[DockerConfig] = []
    for name, obj in secrets:
        config = _config(namespace, name, obj, found)
        if config is not None:
            configs.append(config)
            found.extend(
                f"{config.source}: key {shown_key(item.key)}: {item.reason}"
                for item in config.skipped
            )
    keyring = Keyring(configs)
    found.extend(keyring.describe_ignored())
    if not len(keyring):
        return _empty(identity, tuple(found))

    def lookup(image: ImageRef) -> Sequence[Login]:
        return [
            Login(credential.username, credential.password, credential.source, "pullSecret")
            for credential in keyring.lookup(image)
        ]

    return Scope(f"{namespace}/{_digest(configs)}", _label(identity), lookup, tuple(found))


def _config(
    namespace: str, name: str, obj: Mapping[str, Any] | None, problems: list[str]
) -> DockerConfig | None:
    """The parsed content of one named secret, or None with the reason in ``problems``."""
    source = f"pull secret {namespace}/{name}"
    if obj is None:
        problems.append(f"{source}: no Secret of type {_TYPES} by that name")
        return None
    if obj.get(DROPPED):
        problems.append(f"{source}: not read: {obj[DROPPED]}")
        return None
    secret_type = obj.get("type")
    if not isinstance(secret_type, str) or secret_type not in DATA_KEYS:
        shown = quoted(secret_type, 64) if isinstance(secret_type, str) else "no type"
        problems.append(f"{source}: of type {shown}, not {_TYPES}; the kubelet does not use it")
        return None
    data = obj.get("data")
    try:
        return from_secret(secret_type, data if isinstance(data, dict) else None, source=source)
    except DockerConfigError as exc:
        problems.append(str(exc))
        return None


def _digest(configs: Sequence[DockerConfig]) -> str:
    """A digest of the usable credentials in order: a rotated secret gets a new one."""
    material = [
        [config.source, [[e.key, e.username, e.password] for e in config.entries]]
        for config in configs
    ]
    encoded = json.dumps(material, ensure_ascii=False, separators=(",", ":")).encode()
    return hashlib.sha256(encoded).hexdigest()[:32]
