"""trustgate's webhooks written into its own webhook configurations, which Helm creates empty.

The chart decides every field of every webhook (service, path, rules, selectors,
failurePolicy, timeout) and renders them into a file the pod mounts
(``registration.json``); the webhook configurations themselves are rendered with no
``webhooks`` field, so that installing the chart enforces nothing. This module reads
that file, fills in ``caBundle`` from the serving CA where the file gives none, and
makes each named configuration's ``webhooks`` exactly what the file says.

It never creates or deletes a configuration: Helm owns those objects, so
``helm uninstall`` removes them with everything written into them, and a pod that
outlives them cannot bring them back (nor is it allowed to: the chart's RBAC grants
``get`` and ``patch`` on these two names only).

Separate from the loop that decides *when* to register (``serving/registrar.py``:
only while this server answers ``/readyz``), because this is API access alone: one
pass, no waiting, every failure a ``KubeError`` or ``ConfigError`` that says what
to do.
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography import x509

from webhook.core.errors import ConfigError, KubeError
from webhook.core.untrusted import unique_keys
from webhook.kube.client import KubeClient, Resource, refusal_status

__all__ = [
    "CONFIGURATIONS",
    "Configuration",
    "Endpoint",
    "Registration",
    "load_registration",
    "register",
]

_GROUP = "admissionregistration.k8s.io/v1"
#: The kinds a registration may name, and how the API serves them (cluster-scoped).
CONFIGURATIONS = {
    kind: Resource(kind, _GROUP, plural, namespaced=False)
    for kind, plural in (
        ("ValidatingWebhookConfiguration", "validatingwebhookconfigurations"),
        ("MutatingWebhookConfiguration", "mutatingwebhookconfigurations"),
    )
}


@dataclass(frozen=True, slots=True)
class Endpoint:
    """How the API server reaches and trusts one webhook: the Service's name and the CA.

    ``host`` is the name the API server checks the certificate against
    (``<service>.<namespace>.svc``); ``ca_pem`` is the decoded caBundle.
    """

    host: str
    ca_pem: bytes


@dataclass(frozen=True, slots=True)
class Configuration:
    """One webhook configuration and the webhooks it must hold, as JSON for the API."""

    kind: str
    name: str
    webhooks: tuple[Mapping[str, Any], ...]

    @property
    def resource(self) -> Resource:
        """How the API serves this configuration's kind."""
        return CONFIGURATIONS[self.kind]


@dataclass(frozen=True, slots=True)
class Registration:
    """What to register: every configuration, each webhook with its caBundle filled in."""

    configurations: tuple[Configuration, ...]
    endpoints: frozenset[Endpoint]

    def describe(self) -> str:
        """The webhooks and where they go, for log lines."""
        return "; ".join(
            f"{c.kind} {c.name}: {', '.join(str(w['name']) for w in c.webhooks)}"
            for c in self.configurations
        )


def load_registration(path: Path, ca_file: Path | None) -> Registration:
    """The registration file at ``path``, checked, with caBundle from ``ca_file`` where absent.

    Only what registration relies on is checked here (kinds, names, the Service each
    webhook calls, the CA); the API server checks the rest of each webhook when it
    is written, and refuses it with a message that names the field.

    Raises:
        ConfigError: the file is unreadable or not such a document, or a webhook has
            no caBundle and ``ca_file`` is missing or holds no PEM certificate.
    """
    try:
        document = json.loads(path.read_text(encoding="utf-8"), object_pairs_hook=unique_keys)
    except OSError as exc:
        raise ConfigError(f"cannot read the registration file {path}: {exc.strerror}") from exc
    except ValueError as exc:
        raise ConfigError(f"{path}: not a registration (JSON): {exc}") from exc
    configurations = _field(document, "configurations", list, path)
    if not configurations:
        raise ConfigError(f"{path}: configurations is empty: nothing to register")
    ca_bundle: str | None = None
    loaded: list[Configuration] = []
    endpoints: set[Endpoint] = set()
    seen: set[tuple[str, str]] = set()
    for number, item in enumerate(configurations):
        where = f"{path}: configurations[{number}]"
        kind = _field(item, "kind", str, where)
        if kind not in CONFIGURATIONS:
            raise ConfigError(f"{where}.kind: must be one of {', '.join(CONFIGURATIONS)}")
        name = _field(item, "name", str, where)
        if not name or (kind, name) in seen:
            raise ConfigError(f"{where}.name: must be given, once per kind: {name!r}")
        seen.add((kind, name))
        webhooks = []
        for hook in _webhooks(item, where):
            client = dict(hook["clientConfig"])
            if "caBundle" not in client:
                ca_bundle = ca_bundle or _ca_file_bundle(ca_file, path)
                client["caBundle"] = ca_bundle
            service = client["service"]
            host = f"{service['name']}.{service['namespace']}.svc"
            endpoints.add(Endpoint(host, _decode_bundle(client["caBundle"], where)))
            webhooks.append({**hook, "clientConfig": client})
        loaded.append(Configuration(kind, name, tuple(webhooks)))
    return Registration(tuple(loaded), frozenset(endpoints))


def register(client: KubeClient, registration: Registration) -> list[str]:
    """Make each configuration's webhooks those of ``registration``; returns what changed.

    A configuration already holding them (fields the API server defaulted aside) is
    left alone, so a pass that changes nothing writes nothing. A write names the
    version it read, so a configuration changed meanwhile is refused (409): it is read
    and written once more, which settles the race of replicas registering together.
    One configuration the API server refuses does not keep the others from being
    written; an API server that cannot be reached ends the pass, so a pass costs at
    most one call's timeout when it hangs.

    Raises:
        KubeError: for every configuration that could not be written: it is missing
            (the chart creates it), the API server refuses (401, 403, 409, 422) or
            cannot be reached within the client's timeout.
    """
    changed, failed = [], []
    for configuration in registration.configurations:
        what = f"{configuration.kind} {configuration.name}"
        try:
            if _write(client, configuration):
                changed.append(what)
        except KubeError as exc:
            failed.append(f"{what}: {exc}{_hint(exc)}")
            if refusal_status(exc) is None:
                break
    if failed:
        done = f" (registered in {', '.join(changed)})" if changed else ""
        raise KubeError("; ".join(failed) + done)
    return changed


def _write(client: KubeClient, configuration: Configuration) -> bool:
    """Write one configuration's webhooks unless it holds them; whether it wrote."""
    for attempt in range(2):
        live = client.get(configuration.resource, configuration.name)
        if _holds(live.get("webhooks") or [], configuration.webhooks):
            return False
        patch = {
            "metadata": {"resourceVersion": live["metadata"]["resourceVersion"]},
            "webhooks": list(configuration.webhooks),
        }
        try:
            client.merge_patch(configuration.resource, configuration.name, patch)
        except KubeError as exc:
            if refusal_status(exc) != 409 or attempt:
                raise
            continue
        return True
    raise AssertionError("unreachable")  # pragma: no cover


def _hint(exc: KubeError) -> str:
    status = refusal_status(exc)
    if status == 404:
        return (
            "; the chart creates it empty and trustgate only fills it in: install or "
            "upgrade the chart (trustgate never creates it, so helm uninstall stays final)"
        )
    if status == 403:
        return (
            "; the pod's service account needs get and patch on this object by name "
            "(the chart's ClusterRole <release>-register grants them)"
        )
    return ""


def _holds(live: Any, wanted: Sequence[Mapping[str, Any]]) -> bool:
    """Whether the webhooks ``live`` are ``wanted``: the same list, each with every field
    ``wanted`` sets set alike (the API server adds defaults, which are no difference)."""
    return isinstance(live, list) and len(live) == len(wanted) and all(map(_covers, live, wanted))


def _covers(live: Any, wanted: Any) -> bool:
    if isinstance(wanted, Mapping):
        return isinstance(live, Mapping) and all(
            key in live and _covers(live[key], value) for key, value in wanted.items()
        )
    if isinstance(wanted, list):
        return (
            isinstance(live, list) and len(live) == len(wanted) and all(map(_covers, live, wanted))
        )
    return bool(live == wanted)


def _webhooks(item: Any, where: str) -> list[Mapping[str, Any]]:
    hooks = _field(item, "webhooks", list, where)
    if not hooks:
        raise ConfigError(f"{where}.webhooks: is empty; leave the configuration out instead")
    names: set[str] = set()
    for number, hook in enumerate(hooks):
        at = f"{where}.webhooks[{number}]"
        name = _field(hook, "name", str, at)
        if name in names:
            raise ConfigError(f"{at}.name: {name!r} is given twice")
        names.add(name)
        client = _field(hook, "clientConfig", dict, at)
        if "url" in client:
            raise ConfigError(
                f"{at}.clientConfig: names a url; trustgate registers a Service only "
                "(the name its readiness check and the API server both verify)"
            )
        service = _field(client, "service", dict, f"{at}.clientConfig")
        for key in ("name", "namespace", "path"):
            if not _field(service, key, str, f"{at}.clientConfig.service"):
                raise ConfigError(f"{at}.clientConfig.service.{key}: is empty")
        if "caBundle" in client and not isinstance(client["caBundle"], str):
            raise ConfigError(f"{at}.clientConfig.caBundle: must be base64 text")
    return list(hooks)


def _field(parent: Any, key: str, kind: type, where: object) -> Any:
    if not isinstance(parent, dict):
        raise ConfigError(f"{where}: must be an object")
    value = parent.get(key)
    if not isinstance(value, kind):
        raise ConfigError(f"{where}: {key} must be {_KIND_NAMES[kind]}, not {value!r}")
    return value


_KIND_NAMES: dict[type, str] = {list: "a list", dict: "an object", str: "a string"}


def _ca_file_bundle(ca_file: Path | None, path: Path) -> str:
    """caBundle (base64 PEM) from the serving CA file, checked to hold certificates."""
    if ca_file is None:
        raise ConfigError(
            f"{path}: a webhook has no caBundle, and there is no CA file to take it from "
            "(ca.crt beside --cert)"
        )
    try:
        pem = ca_file.read_bytes()
    except OSError as exc:
        raise ConfigError(
            f"{path}: a webhook has no caBundle, and {ca_file} cannot be read: {exc.strerror}; "
            "mount the CA (ca.crt of the TLS Secret) or give caBundle in the file"
        ) from exc
    try:
        x509.load_pem_x509_certificates(pem)
    except ValueError as exc:
        raise ConfigError(f"{ca_file}: holds no PEM certificate for caBundle: {exc}") from exc
    return base64.b64encode(pem).decode()


def _decode_bundle(bundle: str, where: str) -> bytes:
    """The PEM of a caBundle, checked to hold at least one certificate."""
    try:
        pem = base64.b64decode(bundle, validate=True)
        x509.load_pem_x509_certificates(pem)
    except (binascii.Error, ValueError) as exc:
        raise ConfigError(f"{where}: caBundle is not base64 of PEM certificates: {exc}") from exc
    return pem
