"""The Kubernetes API for ``trustgate audit --cluster``: list workloads, nothing else.

The connection is lightkube's (a maintained client, chosen over the official
``kubernetes`` client for its size and import time: docs/design-notes.md).
Credentials are found as kubectl finds them: ``--kubeconfig``, ``$KUBECONFIG``,
the pod's service account, ``~/.kube/config``; any context of a kubeconfig; bearer
tokens, token files (re-read when the server answers 401, as client-go does),
client certificates, and ``exec`` credential plug-ins (EKS, GKE, AKS, OIDC
logins). Lists are read in pages (``limit``/``continue``) so that a large
cluster never arrives in one answer.

Objects are listed as generic resources: the API server's JSON reaches the audit
as it was sent, so no field a model does not know (a new image field) is lost.

The webhook itself never calls the API: this module is for the audit only.
"""

from __future__ import annotations

import base64
import contextlib
import functools
import json
import os
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx2
import msgspec
import yaml
from lightkube import ALL_NS, ApiError, Client, ConfigError, KubeConfig, LoadResourceError
from lightkube.config.kubeconfig import SingleConfig
from lightkube.config.models import NameValue, User
from lightkube.generic_resource import GenericNamespacedResource, create_namespaced_resource

from webhook.core.errors import KubeError
from webhook.core.failures import describe

__all__ = [
    "WORKLOADS",
    "Credentials",
    "KubeClient",
    "Listed",
    "Resource",
    "cluster_workloads",
    "from_kubeconfig",
    "in_cluster",
    "load_credentials",
    "write_reports",
]

SERVICE_ACCOUNT = Path("/var/run/secrets/kubernetes.io/serviceaccount")
DEFAULT_PAGE_SIZE = 500
#: Each call to the API server (connect, each read) is bounded by this.
TIMEOUT_SECONDS = 30.0
#: Long runs say how far they got this often (objects of one resource).
PROGRESS_EVERY = 100
#: The exec plug-in protocol versions; lightkube runs the first two itself.
_EXEC_BETA = "client.authentication.k8s.io/v1beta1"
_EXEC_VERSIONS = ("client.authentication.k8s.io/v1alpha1", _EXEC_BETA)
_EXEC_V1 = "client.authentication.k8s.io/v1"


@dataclass(frozen=True, slots=True)
class Resource:
    """One listable workload resource: its kind, API group/version and plural name."""

    kind: str
    api_version: str
    plural: str

    @property
    def group(self) -> str:
        """The API group; empty for the core group."""
        return self.api_version.rpartition("/")[0]

    @property
    def version(self) -> str:
        """The version within the group (``v1``)."""
        return self.api_version.rpartition("/")[2]


#: Every kind whose pod template the webhook checks, owners before what they own.
WORKLOADS = (
    Resource("Deployment", "apps/v1", "deployments"),
    Resource("StatefulSet", "apps/v1", "statefulsets"),
    Resource("DaemonSet", "apps/v1", "daemonsets"),
    Resource("ReplicaSet", "apps/v1", "replicasets"),
    Resource("ReplicationController", "v1", "replicationcontrollers"),
    Resource("CronJob", "batch/v1", "cronjobs"),
    Resource("Job", "batch/v1", "jobs"),
    Resource("Pod", "v1", "pods"),
)
_LISTED_KINDS = frozenset(r.kind for r in WORKLOADS)


@dataclass(frozen=True, slots=True)
class Credentials:
    """Where the API server is and how to authenticate to it (one kubeconfig context).

    ``source`` says where they were found, for messages: a file and context, or
    the in-cluster service account.
    """

    config: SingleConfig
    source: str

    @property
    def server(self) -> str:
        """The API server's URL."""
        return str(self.config.cluster.server).rstrip("/")


def in_cluster(root: Path | None = None) -> Credentials:
    """The pod's own service account (files under ``root``, default ``SERVICE_ACCOUNT``).

    The token file is re-read when the API server answers 401: projected service
    account tokens are rotated while a pod runs.

    Raises:
        KubeError: not running in a pod, or the service account files are missing.
    """
    if not os.environ.get("KUBERNETES_SERVICE_HOST") or not os.environ.get(
        "KUBERNETES_SERVICE_PORT"
    ):
        raise KubeError("not in a cluster: KUBERNETES_SERVICE_HOST and _PORT are not set")
    root = root or SERVICE_ACCOUNT
    for name in ("token", "ca.crt", "namespace"):
        if not (root / name).is_file():
            raise KubeError(f"in-cluster configuration: {root / name} is missing")
    try:
        config = KubeConfig.from_service_account(service_account=root).get()
    except (ConfigError, OSError) as exc:
        raise KubeError(f"in-cluster configuration: {exc}") from exc
    assert config is not None  # from_service_account always sets its one context
    return Credentials(config, "in-cluster service account")


def _user(user: User, source: str, base: Path) -> User:
    """``user`` as lightkube should run it: paths as kubectl resolves them, exec plug-ins fixed up.

    A relative ``tokenFile``, and a relative exec ``command`` with a slash in it,
    are relative to the kubeconfig's directory (lightkube would take them from the
    working directory). lightkube speaks the v1alpha1 and v1beta1 exec protocol; v1
    differs from v1beta1 only in what the plug-in is told, so a v1 plug-in is run as
    kubectl runs it: with ``KUBERNETES_EXEC_INFO`` naming v1 and a non-interactive
    session (the audit reads no terminal). The token in the plug-in's answer is
    read the same way in all three versions.
    """
    if user.token_file and not Path(user.token_file).is_absolute():
        user = msgspec.structs.replace(user, token_file=str(base / user.token_file))
    plugin = user.exec
    if plugin is None:
        return user
    if "/" in plugin.command and not Path(plugin.command).is_absolute():
        plugin = msgspec.structs.replace(plugin, command=str(base / plugin.command))
    if plugin.apiVersion not in (*_EXEC_VERSIONS, _EXEC_V1):
        raise KubeError(
            f"{source}: exec plug-in {plugin.command!r} speaks {plugin.apiVersion!r}; "
            f"trustgate runs {', '.join((*_EXEC_VERSIONS, _EXEC_V1))}"
        )
    info = {
        "apiVersion": plugin.apiVersion,
        "kind": "ExecCredential",
        "spec": {"interactive": False},
    }
    env = [e for e in plugin.env or [] if e.name != "KUBERNETES_EXEC_INFO"]
    env.append(NameValue("KUBERNETES_EXEC_INFO", json.dumps(info)))
    version = _EXEC_BETA if plugin.apiVersion == _EXEC_V1 else plugin.apiVersion
    return msgspec.structs.replace(
        user, exec=msgspec.structs.replace(plugin, apiVersion=version, env=env)
    )


def from_kubeconfig(path: Path, context: str | None = None) -> Credentials:
    """The cluster and user of ``context`` (default: current-context) in a kubeconfig.

    Paths in the file are relative to it, as kubectl resolves them.

    Raises:
        KubeError: the file is unreadable, not a kubeconfig, names no usable context,
            or its user authenticates in a way trustgate cannot (an ``auth-provider``).
    """
    try:
        document = yaml.safe_load(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise KubeError(f"cannot read kubeconfig {path}: {exc.strerror}") from exc
    except yaml.YAMLError as exc:
        raise KubeError(f"{path}: not valid YAML: {exc}") from exc
    try:
        kubeconfig = KubeConfig.from_dict(document, fname=path)
    except (KeyError, TypeError, AttributeError, msgspec.ValidationError) as exc:
        # A missing list, or a field of the wrong type.
        raise KubeError(f"{path}: not a kubeconfig: {exc!r}") from exc
    name = context or kubeconfig.current_context
    if not name:
        raise KubeError(f"{path}: no current-context; pass --context")
    ctx = kubeconfig.contexts.get(name)
    if ctx is None:
        raise KubeError(f"{path}: no context named {name!r}")
    cluster = kubeconfig.clusters.get(ctx.cluster)
    if cluster is None:
        raise KubeError(f"{path}: context {name!r} names no cluster {ctx.cluster!r}")
    # lightkube defaults a missing server to http://localhost:8080; kubectl refuses.
    if not any(
        isinstance(c, dict)
        and c.get("name") == ctx.cluster
        and (c.get("cluster") or {}).get("server")
        for c in document.get("clusters") or []
    ):
        raise KubeError(f"{path}: cluster {ctx.cluster!r} has no server")
    if ctx.user and ctx.user not in kubeconfig.users:
        raise KubeError(f"{path}: context {name!r} names no user {ctx.user!r}")
    source = f"{path} (context {name})"
    base = path.resolve().parent
    user = kubeconfig.users[ctx.user] if ctx.user else User()
    if user.auth_provider:
        provider = user.auth_provider.get("name", "?")
        raise KubeError(
            f"{path}: user {ctx.user!r} logs in through auth-provider {provider!r}, which "
            "kubectl dropped for gcp and azure in Kubernetes 1.26; use the exec plug-in "
            "that replaces it (gke-gcloud-auth-plugin, kubelogin, aws eks get-token)"
        )
    if bool(user.client_cert or user.client_cert_data) != bool(
        user.client_key or user.client_key_data
    ):
        raise KubeError(f"{path}: user {ctx.user!r} has a client certificate or key alone")
    for field, data in (
        ("certificate-authority-data", cluster.certificate_auth_data),
        ("client-certificate-data", user.client_cert_data),
        ("client-key-data", user.client_key_data),
    ):
        try:
            base64.b64decode(data or "", validate=True)
        except ValueError as exc:
            raise KubeError(f"{path}: {field} is not base64") from exc
    return Credentials(
        SingleConfig(name, ctx, cluster, _user(user, source, base), base / path.name),
        source,
    )


def load_credentials(
    kubeconfig: Path | None, context: str | None, env: Mapping[str, str]
) -> Credentials:
    """Credentials as kubectl finds them, plus the in-cluster service account.

    Order: ``kubeconfig``, then ``$KUBECONFIG`` (its first existing file), then the
    pod's service account when running in a cluster, then ``~/.kube/config``.

    Raises:
        KubeError: none of them is available or usable.
    """
    if kubeconfig is not None:
        return from_kubeconfig(kubeconfig, context)
    for name in env.get("KUBECONFIG", "").split(os.pathsep):
        if name and Path(name).expanduser().is_file():
            return from_kubeconfig(Path(name).expanduser(), context)
    if env.get("KUBERNETES_SERVICE_HOST"):
        return in_cluster()
    home = Path(env.get("HOME", "~")).expanduser() / ".kube" / "config"
    if home.is_file():
        return from_kubeconfig(home, context)
    raise KubeError(
        "no Kubernetes configuration: pass --kubeconfig, set $KUBECONFIG, or run in a pod"
    )


@functools.cache
def _generic(resource: Resource) -> type[GenericNamespacedResource]:
    # The class lightkube lists with: it keeps each object's JSON as sent. Made
    # once per resource: lightkube registers it, and refuses a second class for
    # a core-group kind.
    return create_namespaced_resource(
        resource.group, resource.version, resource.kind, resource.plural
    )


class KubeClient:
    """Reads lists from one API server; use it as a context manager."""

    def __init__(self, credentials: Credentials, *, page_size: int = DEFAULT_PAGE_SIZE) -> None:
        self.credentials = credentials
        self.page_size = page_size
        try:
            self._client = Client(credentials.config, timeout=httpx2.Timeout(TIMEOUT_SECONDS))
        except (ConfigError, OSError, ValueError) as exc:
            # An unreadable CA or client certificate file, or inline data that is not base64.
            raise KubeError(f"{credentials.source}: {exc}") from exc

    def __enter__(self) -> KubeClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Close the connections."""
        self._client.close()

    def list(
        self, resource: Resource, namespace: str | None = None, *, labels: str | None = None
    ) -> Iterator[dict[str, Any]]:
        """Every object of ``resource``, page by page, with ``kind`` and ``apiVersion`` set.

        ``labels`` is a label selector (``key=value,...``).

        Raises:
            KubeError: the API server is unreachable, refuses (401/403), a page
                expires (410) before the list is read, or an exec plug-in fails.
        """
        selector: dict[str, Any] | None = None
        if labels:
            selector = dict(part.split("=", 1) for part in labels.split(","))
        with self._errors(resource, "listing"):
            for item in self._client.list(
                _generic(resource),
                namespace=namespace or ALL_NS,
                chunk_size=self.page_size,
                labels=selector,
            ):
                # List items carry neither field; the webhook would see both.
                yield {**item, "apiVersion": resource.api_version, "kind": resource.kind}

    def apply(self, resource: Resource, obj: Mapping[str, Any]) -> None:
        """Create or update ``obj`` by server-side apply, as field manager ``trustgate``.

        Raises:
            KubeError: as ``list``, or the server rejects the object (422).
        """
        with self._errors(resource, "writing"):
            self._client.apply(_generic(resource)(**obj), field_manager="trustgate", force=True)

    def delete(self, resource: Resource, name: str, namespace: str) -> None:
        """Delete one object; one already gone is no error.

        Raises:
            KubeError: as ``list``.
        """
        try:
            with self._errors(resource, "deleting"):
                self._client.delete(_generic(resource), name, namespace=namespace)
        except KubeError as exc:
            if not isinstance(exc.__cause__, ApiError) or exc.__cause__.status.code != 404:
                raise

    @contextlib.contextmanager
    def _errors(self, resource: Resource, verb: str) -> Iterator[None]:
        """Every failure of a call about ``resource`` as a KubeError that says what to do."""
        try:
            yield
        except ApiError as exc:
            raise KubeError(_refusal(exc, resource, self.credentials, verb)) from exc
        except httpx2.HTTPError as exc:
            raise KubeError(f"cannot reach {self.credentials.server}: {describe(exc)}") from exc
        except ConfigError as exc:
            # An exec plug-in that fails, or a token file that is gone.
            raise KubeError(f"{self.credentials.source}: {exc}") from exc
        except (LoadResourceError, ValueError, msgspec.DecodeError) as exc:
            raise KubeError(
                f"{verb} {resource.plural}: the answer is not understood: {exc}"
            ) from exc


#: The verb of RBAC each kind of call needs.
_RBAC_VERBS = {"listing": "list", "writing": "patch", "deleting": "delete"}


def _refusal(exc: ApiError, resource: Resource, credentials: Credentials, verb: str) -> str:
    message = str(exc.status.message or "")
    status = exc.status.code or exc.response.status_code
    what = f"{verb} {resource.plural}"
    if status == 401:
        return f"{what}: not authenticated ({credentials.source}): {message}"
    if status == 403:
        need = _RBAC_VERBS[verb]
        return f"{what}: forbidden; the identity needs '{need}' on {resource.plural}: {message}"
    if status == 404 and verb != "deleting":
        served = f"{resource.api_version} {resource.plural}"
        return f"{what}: not found (does the API server serve {served}?): {message}"
    if status == 410:
        return f"{what}: the list changed too much while it was read; run again: {message}"
    return f"{what}: HTTP {status}: {message}"


def _controlled_by_listed_kind(obj: Mapping[str, Any]) -> bool:
    metadata = obj.get("metadata") or {}
    for owner in metadata.get("ownerReferences") or []:
        if (
            isinstance(owner, dict)
            and owner.get("controller")
            and owner.get("kind") in (_LISTED_KINDS)
        ):
            return True
    return False


@dataclass(frozen=True, slots=True)
class Listed:
    """One workload object as the API server listed it; ``number`` counts within its kind."""

    number: int
    object: Mapping[str, Any]


def cluster_workloads(
    client: KubeClient,
    *,
    namespace: str | None = None,
    exclude_namespaces: frozenset[str] = frozenset(),
    progress: Callable[[str], None] | None = None,
) -> Iterator[Listed]:
    """Every workload in the cluster (or ``namespace``) as the audit judges it.

    Objects controlled by another listed workload (the ReplicaSets of a Deployment,
    the Pods of a ReplicaSet or Job) are skipped: their images are their owner's,
    and the owner's row says which object to fix. Pods of other controllers and
    bare Pods are kept.

    Raises:
        KubeError: as ``KubeClient.list``.
    """
    for resource in WORKLOADS:
        kept = skipped = 0
        for obj in client.list(resource, namespace):
            metadata = obj.get("metadata") or {}
            if metadata.get("namespace") in exclude_namespaces or _controlled_by_listed_kind(obj):
                skipped += 1
                continue
            if progress is not None and kept and kept % PROGRESS_EVERY == 0:
                progress(f"{resource.plural}: {kept} judged so far")
            kept += 1
            yield Listed(kept, obj)
        if progress is not None:
            note = f", {skipped} owned by another workload or excluded" if skipped else ""
            progress(f"{resource.plural}: {kept} judged{note}")


def write_reports(
    client: KubeClient,
    resource: Resource,
    objects: Sequence[Mapping[str, Any]],
    *,
    labels: Mapping[str, str],
    namespace: str | None = None,
    exclude_namespaces: frozenset[str] = frozenset(),
) -> tuple[int, int]:
    """Apply namespaced policy reports of ``resource``, then delete stale ones.

    A stale report carries ``labels``, lies in the audited scope (``namespace``,
    or every namespace but ``exclude_namespaces``) and was not written by this
    run: its workload is gone, or it is clean now. Returns (written, deleted).

    Raises:
        KubeError: the API server refuses (the identity needs list, patch and
            delete on the reports), does not serve the reports' CRD, or rejects
            a report.
    """
    written = set()
    for obj in objects:
        client.apply(resource, obj)
        written.add((obj["metadata"]["namespace"], obj["metadata"]["name"]))
    selector = ",".join(f"{key}={value}" for key, value in labels.items())
    stale = [
        (o["metadata"]["namespace"], o["metadata"]["name"])
        for o in client.list(resource, namespace, labels=selector)
        if (o["metadata"]["namespace"], o["metadata"]["name"]) not in written
        and o["metadata"]["namespace"] not in exclude_namespaces
    ]
    for ns, name in stale:
        client.delete(resource, name, ns)
    return len(written), len(stale)
