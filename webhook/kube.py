"""A small Kubernetes API client for ``trustgate audit --cluster``: list workloads, nothing else.

Credentials come from inside a pod (the service account's token and CA under
``/var/run/secrets/kubernetes.io/serviceaccount`` and ``KUBERNETES_SERVICE_HOST``/``_PORT``)
or from a kubeconfig (``--kubeconfig``, ``$KUBECONFIG``, ``~/.kube/config``) with a bearer
token or a client certificate. Lists are read in pages (``limit``/``continue``) so a large
cluster never arrives in one answer.

The webhook itself never calls the API: this module is for the audit only.
"""

from __future__ import annotations

import base64
import os
import tempfile
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import requests
import yaml

from webhook.audit import Manifest
from webhook.errors import KubeError
from webhook.failures import describe

__all__ = [
    "WORKLOADS",
    "Credentials",
    "KubeClient",
    "Resource",
    "cluster_manifests",
    "load_credentials",
]

SERVICE_ACCOUNT = Path("/var/run/secrets/kubernetes.io/serviceaccount")
DEFAULT_PAGE_SIZE = 500
TIMEOUT_SECONDS = 30.0
#: Long runs say how far they got this often (objects of one resource).
PROGRESS_EVERY = 100


@dataclass(frozen=True, slots=True)
class Resource:
    """One listable workload resource: its kind, API group/version and plural name."""

    kind: str
    api_version: str
    plural: str

    def path(self, namespace: str | None) -> str:
        """The list URL path, cluster-wide or in ``namespace``."""
        prefix = "/api/v1" if self.api_version == "v1" else f"/apis/{self.api_version}"
        if namespace:
            return f"{prefix}/namespaces/{namespace}/{self.plural}"
        return f"{prefix}/{self.plural}"


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
    """Where the API server is and how to authenticate to it.

    ``token_file`` is re-read for every request: projected service account tokens
    are rotated while a pod runs. ``verify`` is a CA bundle path, or ``False``
    for a kubeconfig that says ``insecure-skip-tls-verify``.
    """

    server: str
    verify: str | bool = True
    token: str | None = None
    token_file: Path | None = None
    client_cert: tuple[str, str] | None = None
    source: str = ""
    #: Temporary files holding inline PEM data, removed by ``KubeClient.close``.
    temporary: tuple[Path, ...] = field(default=(), compare=False)

    def bearer(self) -> str | None:
        """The bearer token to send, if any.

        Raises:
            KubeError: the token file cannot be read.
        """
        if self.token_file is not None:
            try:
                return self.token_file.read_text(encoding="utf-8").strip()
            except OSError as exc:
                raise KubeError(f"cannot read token {self.token_file}: {exc.strerror}") from exc
        return self.token


def in_cluster(env: Mapping[str, str], root: Path | None = None) -> Credentials:
    """The pod's own service account (files under ``root``, default ``SERVICE_ACCOUNT``).

    Raises:
        KubeError: not running in a pod, or the service account files are missing.
    """
    host, port = env.get("KUBERNETES_SERVICE_HOST"), env.get("KUBERNETES_SERVICE_PORT")
    if not host or not port:
        raise KubeError("not in a cluster: KUBERNETES_SERVICE_HOST and _PORT are not set")
    root = root or SERVICE_ACCOUNT
    token, ca = root / "token", root / "ca.crt"
    for path in (token, ca):
        if not path.is_file():
            raise KubeError(f"in-cluster configuration: {path} is missing")
    host = f"[{host}]" if ":" in host else host
    return Credentials(
        server=f"https://{host}:{port}",
        verify=str(ca),
        token_file=token,
        source="in-cluster service account",
    )


def _named(entries: Any, name: str, what: str, source: Path) -> dict[str, Any]:
    for entry in entries or []:
        if isinstance(entry, dict) and entry.get("name") == name:
            value = entry.get(what)
            return value if isinstance(value, dict) else {}
    raise KubeError(f"{source}: no {what} named {name!r}")


def _pem(
    section: Mapping[str, Any], key: str, base: Path, temporary: list[Path], source: Path
) -> str | None:
    """A file path for ``key`` (a path) or ``key-data`` (inline base64 PEM)."""
    data = section.get(f"{key}-data")
    if data:
        try:
            content = base64.b64decode(str(data), validate=True)
        except ValueError as exc:
            raise KubeError(f"{source}: {key}-data is not base64") from exc
        handle, name = tempfile.mkstemp(prefix="trustgate-kube-", suffix=".pem")
        with os.fdopen(handle, "wb") as out:
            out.write(content)
        temporary.append(Path(name))
        return name
    path = section.get(key)
    if path:
        return str(base / Path(str(path)).expanduser())
    return None


def from_kubeconfig(path: Path, context: str | None = None) -> Credentials:
    """The cluster and user of ``context`` (default: current-context) in a kubeconfig.

    Supports bearer tokens (``token``, ``tokenFile``) and client certificates, with
    paths relative to the file as kubectl resolves them. ``exec`` and
    ``auth-provider`` plug-ins are not run.

    Raises:
        KubeError: the file is unreadable, not a kubeconfig, or names no usable context.
    """
    try:
        document = yaml.safe_load(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise KubeError(f"cannot read kubeconfig {path}: {exc.strerror}") from exc
    except yaml.YAMLError as exc:
        raise KubeError(f"{path}: not valid YAML: {exc}") from exc
    if not isinstance(document, dict):
        raise KubeError(f"{path}: not a kubeconfig")
    name = context or document.get("current-context")
    if not name:
        raise KubeError(f"{path}: no current-context; pass --context")
    ctx = _named(document.get("contexts"), str(name), "context", path)
    cluster = _named(document.get("clusters"), str(ctx.get("cluster")), "cluster", path)
    user = _named(document.get("users"), str(ctx["user"]), "user", path) if ctx.get("user") else {}
    server = cluster.get("server")
    if not server:
        raise KubeError(f"{path}: cluster {ctx.get('cluster')!r} has no server")
    if "exec" in user or "auth-provider" in user:
        raise KubeError(
            f"{path}: user {ctx.get('user')!r} authenticates through a plug-in, which "
            "trustgate does not run; use a token or a client certificate"
        )
    base = path.resolve().parent
    temporary: list[Path] = []
    verify: str | bool = True
    if cluster.get("insecure-skip-tls-verify"):
        verify = False
    else:
        verify = _pem(cluster, "certificate-authority", base, temporary, path) or True
    cert = _pem(user, "client-certificate", base, temporary, path)
    key = _pem(user, "client-key", base, temporary, path)
    if (cert is None) != (key is None):
        raise KubeError(f"{path}: user {ctx.get('user')!r} has a client certificate or key alone")
    token_file = user.get("tokenFile")
    return Credentials(
        server=str(server).rstrip("/"),
        verify=verify,
        token=str(user["token"]) if user.get("token") else None,
        token_file=base / str(token_file) if token_file else None,
        client_cert=(cert, key) if cert is not None and key is not None else None,
        source=f"{path} (context {name})",
        temporary=tuple(temporary),
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
        return in_cluster(env)
    home = Path(env.get("HOME", "~")).expanduser() / ".kube" / "config"
    if home.is_file():
        return from_kubeconfig(home, context)
    raise KubeError(
        "no Kubernetes configuration: pass --kubeconfig, set $KUBECONFIG, or run in a pod"
    )


class KubeClient:
    """Reads lists from one API server; use it as a context manager."""

    def __init__(self, credentials: Credentials, *, page_size: int = DEFAULT_PAGE_SIZE) -> None:
        self.credentials = credentials
        self.page_size = page_size
        self._session = requests.Session()
        if credentials.client_cert is not None:
            self._session.cert = credentials.client_cert
        self._session.headers["Accept"] = "application/json"
        self._session.headers["User-Agent"] = "trustgate-audit"

    def __enter__(self) -> KubeClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Close connections and remove temporary PEM files."""
        self._session.close()
        for path in self.credentials.temporary:
            path.unlink(missing_ok=True)

    def list(self, resource: Resource, namespace: str | None = None) -> Iterator[dict[str, Any]]:
        """Every object of ``resource``, page by page, with ``kind`` and ``apiVersion`` set.

        Raises:
            KubeError: the API server is unreachable, refuses (401/403), or a page
                expires (410) before the list is read.
        """
        url = self.credentials.server + resource.path(namespace)
        token: str | None = None
        while True:
            params = {"limit": str(self.page_size)}
            if token:
                params["continue"] = token
            page = self._get(url, params, resource)
            for item in page.get("items") or []:
                if isinstance(item, dict):
                    # List items carry neither field; the webhook would see both.
                    yield {"apiVersion": resource.api_version, "kind": resource.kind, **item}
            token = (page.get("metadata") or {}).get("continue")
            if not token:
                return

    def _get(self, url: str, params: dict[str, str], resource: Resource) -> dict[str, Any]:
        headers = {}
        bearer = self.credentials.bearer()
        if bearer:
            headers["Authorization"] = f"Bearer {bearer}"
        try:
            # verify per request: a session's own would lose to $REQUESTS_CA_BUNDLE.
            response = self._session.get(
                url,
                params=params,
                headers=headers,
                timeout=TIMEOUT_SECONDS,
                verify=self.credentials.verify,
            )
        except requests.RequestException as exc:
            raise KubeError(f"cannot reach {self.credentials.server}: {describe(exc)}") from exc
        if response.status_code != 200:
            raise KubeError(_refusal(response, resource, self.credentials))
        try:
            body = response.json()
        except ValueError as exc:
            raise KubeError(f"{url}: the answer is not JSON") from exc
        if not isinstance(body, dict):
            raise KubeError(f"{url}: the answer is not a list")
        return body


def _refusal(response: requests.Response, resource: Resource, credentials: Credentials) -> str:
    try:
        message = str(response.json().get("message", ""))
    except (ValueError, AttributeError):
        message = response.text[:200]
    status = response.status_code
    what = f"listing {resource.plural}"
    if status == 401:
        return f"{what}: not authenticated ({credentials.source}): {message}"
    if status == 403:
        return f"{what}: forbidden; the identity needs 'list' on {resource.plural}: {message}"
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


def cluster_manifests(
    client: KubeClient,
    *,
    namespace: str | None = None,
    exclude_namespaces: frozenset[str] = frozenset(),
    progress: Callable[[str], None] | None = None,
) -> Iterator[Manifest]:
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
            yield Manifest(source="cluster", document=kept, object=obj)
        if progress is not None:
            note = f", {skipped} owned by another workload or excluded" if skipped else ""
            progress(f"{resource.plural}: {kept} judged{note}")
