"""Where the API server is and how to authenticate to it, found as kubectl finds them.

``--kubeconfig``, ``$KUBECONFIG``, the pod's service account, ``~/.kube/config``;
any context of a kubeconfig; bearer tokens, token files (re-read when the server
answers 401, as client-go does), client certificates, and ``exec`` credential
plug-ins (EKS, GKE, AKS, OIDC logins).

Separate from the client because finding and checking credentials is pure file
and environment reading with its own failure messages: it opens no connection,
and every caller of the API (the audit, reports, pull secrets, registration)
starts from the same ``Credentials``.
"""

from __future__ import annotations

import base64
import difflib
import json
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import msgspec
import yaml
from lightkube import ConfigError, KubeConfig
from lightkube.config.kubeconfig import SingleConfig
from lightkube.config.models import NameValue, User

from webhook.core.errors import KubeError

__all__ = ["SERVICE_ACCOUNT", "Credentials", "from_kubeconfig", "in_cluster", "load_credentials"]

SERVICE_ACCOUNT = Path("/var/run/secrets/kubernetes.io/serviceaccount")
#: The exec plug-in protocol versions; lightkube runs the first two itself.
_EXEC_BETA = "client.authentication.k8s.io/v1beta1"
_EXEC_VERSIONS = ("client.authentication.k8s.io/v1alpha1", _EXEC_BETA)
_EXEC_V1 = "client.authentication.k8s.io/v1"


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
        raise KubeError(f"{path}: no context named {name!r}; {_contexts(kubeconfig, name)}")
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


def _contexts(kubeconfig: KubeConfig, name: str) -> str:
    """The contexts that exist, the closest to ``name`` first: what to pass to --context."""
    names = sorted(kubeconfig.contexts)
    if not names:
        return "it defines no contexts"
    close = difflib.get_close_matches(name, names, n=1)
    listed = f"its contexts: {', '.join(names)}"
    if kubeconfig.current_context in names:
        listed += f" (current-context: {kubeconfig.current_context})"
    return f"did you mean --context {close[0]}? {listed}" if close else f"pass one of {listed}"


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
