"""Wiring: the engine with its registry client, caches and checks, from the config.

The server and every CLI command build their engine here, so ``trustgate
check`` and ``trustgate audit`` decide exactly as the webhook does, registry
calls and all. This is the one module that knows every check implementation
(``FACTORIES``); the checks themselves know only the protocol in ``checks.py``.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from webhook.cache.local import Caches, CacheSettings, Observer
from webhook.cache.shared import SharedCache, SharedObserver, SharedSettings
from webhook.checks import Check, Unavailable, offline_checks
from webhook.config import Config
from webhook.config.credentials import ProviderConfig
from webhook.config.registries import registry_settings
from webhook.core.errors import ConfigError, TrustgateError
from webhook.core.offline import deferred
from webhook.core.sources import LoginSource, ScopeReader
from webhook.credentials.pullsecrets import PullSecrets
from webhook.engine import Engine
from webhook.freshness.check import FreshnessCheck
from webhook.freshness.grader import Grader
from webhook.freshness.grades import Fix, Window
from webhook.freshness.sources import FreshnessSettings, FreshnessSources, GradeReport, Unknown
from webhook.policy.model import PolicySet
from webhook.policy.signing.gate import MarkStore, SetVerifier
from webhook.policy.signing.verifier import FileVerifier
from webhook.registry.client import RegistryClient
from webhook.registry.network import Network, NetworkObserver
from webhook.registry.resolver import CachedResolver
from webhook.signatures.attestations import AttestationCheck, AttestationOutcome
from webhook.signatures.check import SignatureCheck, SignatureOutcome
from webhook.signatures.conditions import Evaluator, OverrunObserver
from webhook.signatures.notation.revocation import RevocationChecker

if TYPE_CHECKING:
    from webhook.kube.credentials import Credentials
    from webhook.kube.secretwatch import WatchedSecretStore

_DAY = 86400.0
#: What the shared cache may hold besides strings and tuples: the outcomes of
#: signatures, attestations and freshness. Anything else stays local.
SHARED_TYPES: tuple[type, ...] = (
    SignatureOutcome,
    AttestationOutcome,
    GradeReport,
    Unknown,
    Window,
    Fix,
)


@dataclass(frozen=True, slots=True)
class Services:
    """What checks that need the network share: the registry client, the caches,
    the freshness grade sources (Pyxis client, grades file), the processes
    that evaluate attestation conditions and the revocation checker of
    Notation certificates (OCSP and CRL, through the registry client's
    ``Network``: its per-host limits and breakers)."""

    client: RegistryClient
    caches: Caches
    freshness: FreshnessSources | None = None
    conditions: Evaluator = field(default_factory=Evaluator)
    revocation: RevocationChecker | None = None


def _signatures(services: Services | None) -> Check:
    if services is None:
        return Unavailable("signatures")
    return SignatureCheck(services.client, services.caches, revocation=services.revocation)


def _attestations(services: Services | None) -> Check:
    if services is None:
        return Unavailable("attestations")
    return AttestationCheck(services.client, services.caches, services.conditions)


def _freshness(services: Services | None) -> Check:
    if services is None or services.freshness is None:
        return Unavailable("freshness")
    attestations = AttestationCheck(services.client, services.caches, services.conditions)
    return FreshnessCheck(services.freshness, services.caches, attestations)


#: Name -> factory of the checks that need services. A check whose backend is
#: missing (any of them when no services are given) denies.
FACTORIES: dict[str, Callable[[Services | None], Check]] = {
    "signatures": _signatures,
    "attestations": _attestations,
    "freshness": _freshness,
}


def build_checks(services: Services | None = None) -> dict[str, Check]:
    """Instantiate every check once: the offline ones and those of ``FACTORIES``."""
    checks = offline_checks()
    checks.update((name, factory(services)) for name, factory in FACTORIES.items())
    return checks


def build_sources(config: Config) -> list[LoginSource]:
    """trustgate's own login sources: ``credentials.providers`` and ``kubeletPlugins``.

    Each provider's library is imported only when it is configured.

    Raises:
        ConfigError: a provider's library is not installed, or the plug-in
            configuration cannot be read.
    """
    sources: list[LoginSource] = []
    credentials = config.credentials
    for provider in credentials.providers:
        sources.append(_provider(provider))
    if credentials.plugins is not None:
        from webhook.credentials.plugins import plugin_sources

        sources.extend(plugin_sources(credentials.plugins.config, credentials.plugins.bin_dir))
    return sources


def _provider(provider: ProviderConfig) -> LoginSource:
    """The login source of one ``credentials.providers`` entry; its library loads here."""
    if provider.type == "ecr":
        from webhook.credentials.ecr import EcrSource

        return EcrSource(provider.registries)
    if provider.type == "gcp":
        from webhook.credentials.gcp import GcpSource

        return GcpSource(provider.registries)
    if provider.type == "acr":
        from webhook.credentials.acr import AcrSource

        return AcrSource(provider.registries, client_id=provider.client_id)
    raise ConfigError(f"credentials.providers: unknown type {provider.type!r}")


def watched_pull_secrets(config: Config) -> tuple[PullSecrets, WatchedSecretStore] | None:
    """What ``serve`` reads pull secrets with: a reader over a watched store.

    None when ``credentials.pullSecrets`` is off. The store starts in the
    process that first uses it (or calls ``start()``); its ``synced`` and
    ``status()`` feed ``/readyz``.

    Raises:
        ConfigError: no way to reach the API server is configured.
    """
    if not config.credentials.pull_secrets:
        return None
    from webhook.kube.secretwatch import WatchedSecretStore

    namespaces = config.credentials.namespaces
    store = WatchedSecretStore(kube_credentials(config), namespaces=namespaces)
    return PullSecrets(store, namespaces), store


def oneshot_pull_secrets(
    config: Config, *, kubeconfig: Path | None = None, context: str | None = None
) -> PullSecrets | None:
    """What one-shot commands read pull secrets with: the API server as it is now.

    ``review``, ``check`` and ``audit --cluster`` decide with the secrets as
    they are, not with a cache that may lag. ``kubeconfig`` and ``context``
    (command-line flags) come before the configuration's. None when
    ``credentials.pullSecrets`` is off.

    Raises:
        ConfigError: no way to reach the API server is configured.
    """
    if not config.credentials.pull_secrets:
        return None
    from webhook.kube.secretreads import OneShotSecretStore

    namespaces = config.credentials.namespaces
    store = OneShotSecretStore(kube_credentials(config, kubeconfig, context), namespaces=namespaces)
    return PullSecrets(store, namespaces)


def kube_credentials(
    config: Config, kubeconfig: Path | None = None, context: str | None = None
) -> Credentials:
    """How to reach the API server: flags, then ``kubernetes:``, then in-cluster or $KUBECONFIG."""
    from webhook.kube.credentials import load_credentials

    try:
        return load_credentials(
            kubeconfig or config.kubernetes.kubeconfig,
            context or config.kubernetes.context,
            os.environ,
        )
    except TrustgateError as exc:
        raise ConfigError(
            f"credentials.pullSecrets reads Secrets through the Kubernetes API: {exc.message}"
        ) from None


def build_mark_store(config: Config) -> MarkStore | None:
    """Where ``policies.signature.rollback`` keeps the highest policy-set version loaded
    (a file, or a ConfigMap of the pod's namespace); None when it is not configured.

    Raises:
        ConfigError: a ConfigMap is named but the API server cannot be reached.
    """
    signature = config.policy_signature
    rollback = signature.rollback if signature is not None else None
    if rollback is None:
        return None
    from webhook.policy.signing.marks import FileMark, RemoteMark

    if rollback.file is not None:
        return FileMark(rollback.file)
    assert rollback.config_map is not None  # the schema requires file or configMap
    from webhook.kube.credentials import load_credentials
    from webhook.kube.policymark import ConfigMapMark

    try:
        credentials = load_credentials(
            config.kubernetes.kubeconfig, config.kubernetes.context, os.environ
        )
        return RemoteMark(ConfigMapMark(credentials, rollback.config_map, rollback.namespace))
    except TrustgateError as exc:
        raise ConfigError(
            "policies.signature.rollback.configMap keeps the policy version in a ConfigMap, "
            f"through the Kubernetes API: {exc.message}"
        ) from None


def build_network(config: Config, observer: NetworkObserver | None = None) -> Network:
    """Per-host limits and breakers shared by every outbound call of one engine."""
    return Network(
        config.network.limits,
        observer,
    )


def build_evaluator(config: Config, observer: OverrunObserver | None = None) -> Evaluator:
    """The condition evaluator of ``config.conditions``; ``observer`` hears each overrun."""
    return Evaluator(
        cost_seconds=config.conditions.cost_seconds,
        processes=config.conditions.processes,
        observer=observer,
    )


def build_caches(
    config: Config,
    observer: Observer | None = None,
    shared_observer: SharedObserver | None = None,
    *,
    shared: bool = False,
) -> Caches:
    """The caches of ``config``; with ``shared``, backed by ``cache.shared`` when it is set.

    Only the server shares: CLI commands keep their caches to themselves.

    Raises:
        ConfigError: cache.gradeTTL is a day or more, or the shared tier's key or
            password file cannot be read.
    """
    settings = CacheSettings.from_config(config.cache)
    if not 0 < settings.grade_ttl < _DAY:
        # Pyxis recomputes grades daily; an older answer could miss a new advisory.
        raise ConfigError(f"cache.gradeTTL must be between 0 and {_DAY} seconds (under a day)")
    tier = None
    raw = config.cache.get("shared")
    if shared and raw is not None:
        tier = SharedCache(SharedSettings.from_config(raw), SHARED_TYPES, shared_observer)
    # An offline pass counts its lookups only if it finishes (see webhook.core.offline).
    return Caches(settings, deferred(observer), tier)


def build_engine(
    policies: Callable[[], PolicySet],
    config: Config,
    observer: Observer | None = None,
    network_observer: NetworkObserver | None = None,
    replace: Mapping[str, Check] | None = None,
    *,
    caches: Caches | None = None,
    overrun_observer: OverrunObserver | None = None,
    pull_secrets: ScopeReader | None = None,
) -> Engine:
    """The engine for ``config``, with network checks backed by a registry client.

    ``observer`` counts cache lookups; ``network_observer`` sees breaker, limit,
    deadline and budget events per host; ``overrun_observer`` sees condition
    evaluations cut. ``pull_secrets`` reads the pull secrets of a workload
    (``credentials.pullSecrets``: a watched cache for the server, the API
    server as it is now for one-shot commands). ``replace`` swaps checks by name
    (``policy test`` supplies attestations this way). ``caches`` defaults to local
    caches (``build_caches``).

    Raises:
        ConfigError: the registries section is invalid, the grades file cannot be
            read, or cache.gradeTTL is a day or more.
    """
    if caches is None:
        caches = build_caches(config, observer)
    network = build_network(config, network_observer)
    client = RegistryClient(
        registry_settings(config.registries), network=network, sources=build_sources(config)
    )
    freshness = FreshnessSources(FreshnessSettings.from_config(config.freshness), network)
    services = Services(
        client,
        caches,
        freshness,
        build_evaluator(config, overrun_observer),
        RevocationChecker(network=network, observer=deferred(observer)),
    )
    replace = replace or {}
    if "attestations" not in replace and any(
        entry.conditions for p in policies().policies for entry in p.attestations
    ):
        services.conditions.prestart()
    return Engine(
        policies,
        no_match=config.no_match,
        checks={**build_checks(services), **replace},
        resolver=CachedResolver(client, caches.digests),
        deadline_seconds=config.deadline_seconds,
        max_workers=config.network.review_threads,
        budget_bytes=config.network.limits.review_budget_bytes,
        on_event=network_observer,
        max_images=config.max_images,
        pull_secrets=pull_secrets,
    )


def build_grader(config: Config) -> Grader:
    """What ``trustgate grade`` uses: the freshness check and tag resolution of ``build_engine``.

    Raises:
        ConfigError: as build_engine.
    """
    caches = build_caches(config)
    network = build_network(config)
    client = RegistryClient(
        registry_settings(config.registries), network=network, sources=build_sources(config)
    )
    sources = FreshnessSources(FreshnessSettings.from_config(config.freshness), network)
    attestations = AttestationCheck(client, caches, build_evaluator(config))
    check = FreshnessCheck(sources, caches, attestations)
    return Grader(check, CachedResolver(client, caches.digests), config.deadline_seconds)


def build_set_verifier(config: Config) -> SetVerifier | None:
    """Who may sign the policy directory the server loads; None without ``policies.signature``.

    ``source: files`` checks ``DIR/.trustgate/signature.json``; ``source: git``
    the signature of the commit checked out (SSH, or gitsign).
    """
    wanted = config.policy_signature
    if wanted is None:
        return None
    if wanted.source == "git":
        # Imported here: libgit2 (pygit2) costs every other command ~45 ms to load.
        from webhook.signatures.gitsign import git_verifier

        return git_verifier(wanted)
    return FileVerifier(wanted.authorities)
