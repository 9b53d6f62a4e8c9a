"""A stand-in Kubernetes API server that stores objects of the kinds the chart renders.

Enough of kube-apiserver for Helm 4 (its Go SDK, in-process) to install, upgrade, roll
back and uninstall the chart, and for ``trustgate serve --register`` to register its
webhooks under the RBAC the chart's own ClusterRole grants:

- discovery (``/api``, ``/apis``, ``/api/v1``, ``/apis/G/V``) and an OpenAPI v3 index
  saying that every kind takes ``fieldValidation``, so Helm lets the server validate;
- GET, list (label selectors), POST, PATCH (server-side apply and JSON merge patch, with
  the ``resourceVersion`` precondition) and DELETE, answered with the server's metadata
  (uid, resourceVersion, creationTimestamp, managedFields) and ``Status`` objects for
  401, 403, 404, 409, 415 and 422 worded as the API server words them;
- the defaults the API server fills into webhooks, and a strict check of each object
  written against Kubernetes' own schema (kubernetes-validate), refused with 422.

Bearer tokens: ``admin`` may do anything (Helm); a token in ``service_accounts`` acts as
that ServiceAccount, authorized by the ClusterRoles bound to it in the store and by the
Roles (or ClusterRoles) a RoleBinding binds to it in a namespace, verbs and resourceNames
as RBAC reads them.

Watches: with ``live_watch`` set, a watch streams, chunked, the changes after its
``resourceVersion`` as they happen (tests/support/apiwatch.py: bookmarks, 410 Expired,
``timeoutSeconds``); without it, as before, a watch answers what ``sendInitialEvents``
asks for and ends a second later. ``drip`` sends a ServiceAccount's answers a byte at a
time. Helm keeps its releases in memory
(``storage_driver="memory"``): it writes release Secrets in protobuf, not read here.

Server-side apply is reduced to what matters here: each manager's last applied object is
kept; an apply drops the fields that manager applied before and no longer does, then
sets what it applies (maps merged, lists replaced). A field no apply named, such as
webhooks written by merge patch, is never touched by an apply.
"""

from __future__ import annotations

import copy
import datetime
import json
import ssl
import threading
import time
import uuid
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import kubernetes_validate
import yaml

from webhook.core import certs

ADMIN = "admin"
_RBAC = "rbac.authorization.k8s.io"
KIND_TABLE = [  # (group, kind, plural, namespaced); every group at version v1 except autoscaling
    ("", "ConfigMap", "configmaps", True),
    ("", "Secret", "secrets", True),
    ("", "Service", "services", True),
    ("", "ServiceAccount", "serviceaccounts", True),
    ("", "Namespace", "namespaces", False),
    ("apps", "Deployment", "deployments", True),
    ("apps", "StatefulSet", "statefulsets", True),
    ("apps", "DaemonSet", "daemonsets", True),
    ("apps", "ReplicaSet", "replicasets", True),
    ("", "ReplicationController", "replicationcontrollers", True),
    ("", "Pod", "pods", True),
    ("batch", "Job", "jobs", True),
    ("batch", "CronJob", "cronjobs", True),
    ("policy", "PodDisruptionBudget", "poddisruptionbudgets", True),
    ("networking.k8s.io", "NetworkPolicy", "networkpolicies", True),
    ("autoscaling", "HorizontalPodAutoscaler", "horizontalpodautoscalers", True),
    ("rbac.authorization.k8s.io", "ClusterRole", "clusterroles", False),
    ("rbac.authorization.k8s.io", "ClusterRoleBinding", "clusterrolebindings", False),
    ("rbac.authorization.k8s.io", "Role", "roles", True),
    ("rbac.authorization.k8s.io", "RoleBinding", "rolebindings", True),
    *(
        ("admissionregistration.k8s.io", kind, kind.lower() + "s", False)
        for kind in (
            "ValidatingWebhookConfiguration",
            "MutatingWebhookConfiguration",
            "ValidatingAdmissionPolicy",
            "ValidatingAdmissionPolicyBinding",
        )
    ),
]
_VERSION = {"autoscaling": "v2"}
KINDS = {(g, p): (k, n) for g, k, p, n in KIND_TABLE}


def group_version(group: str) -> str:
    version = _VERSION.get(group, "v1")
    return f"{group}/{version}" if group else version


def status(code: int, reason: str, message: str, **details: Any) -> dict[str, Any]:
    """A ``Status`` object as the API server answers a failed request."""
    body = {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure"}
    return {**body, "message": message, "reason": reason, "code": code, "details": details}


@dataclass
class Call:
    """One request as the stand-in saw it; ``body`` is the parsed object sent, if any."""

    method: str
    path: str
    query: dict[str, str]
    content_type: str | None
    user: str | None
    body: Any = None
    answer: int = 0


@dataclass
class Store:
    """A running stand-in. ``objects`` maps (group, plural, namespace, name) to objects."""

    url: str = ""
    ca: Path = Path()
    objects: dict[tuple[str, str, str, str], dict[str, Any]] = field(default_factory=dict)
    #: token -> (namespace, name) of the ServiceAccount it stands for.
    service_accounts: dict[str, tuple[str, str]] = field(default_factory=dict)
    calls: list[Call] = field(default_factory=list)
    #: Called with each authorized write before it is looked at (to check what held at
    #: that moment, or to change the object under it).
    on_write: Any = None
    #: While set, every request of a ServiceAccount waits, unanswered, until it is cleared.
    hanging: threading.Event = field(default_factory=threading.Event)
    applied: dict[tuple[tuple[str, str, str, str], str], Any] = field(default_factory=dict)
    version: int = 1000
    lock: threading.RLock = field(default_factory=threading.RLock)
    server: ThreadingHTTPServer | None = None
    #: Watches stream changes as they happen (tests/support/apiwatch.py).
    live_watch: bool = False
    #: Every change as (resourceVersion, type, (group, plural, namespace, name), object).
    events: list[tuple[int, str, tuple[str, str, str, str], dict[str, Any]]] = field(
        default_factory=list
    )
    #: A watch from a resourceVersion below this is answered 410 Expired.
    compacted: int = 0
    #: Bumped by ``expire_watches``: open watches end with a 410 Expired ERROR event.
    expiries: int = 0
    #: Seconds between BOOKMARK events on watches that allow them.
    bookmark_seconds: float = 1.0
    #: When above zero, a ServiceAccount's answers are sent a byte per ``drip`` seconds.
    drip: float = 0.0
    stopping: bool = False

    def __post_init__(self) -> None:
        self.changed = threading.Condition(self.lock)

    def get(self, group: str, plural: str, name: str, namespace: str = "") -> dict[str, Any]:
        return self.objects[(group, plural, namespace, name)]

    def named(self, kind: str) -> dict[str, dict[str, Any]]:
        """Every stored object of ``kind``, by name."""
        return {k[3]: o for k, o in self.objects.items() if o.get("kind") == kind}

    def put(self, obj: dict[str, Any], manager: str = "helm") -> dict[str, Any]:
        """Store ``obj`` as an administrator's write would, unchecked; returns it as stored."""
        group = obj["apiVersion"].rpartition("/")[0]
        plural = next(p for (g, p), (k, _) in KINDS.items() if (g, k) == (group, obj["kind"]))
        metadata = obj["metadata"]
        key = (group, plural, metadata.get("namespace", ""), metadata["name"])
        stored = copy.deepcopy(obj)
        with self.lock:
            old = self.objects.get(key)
            self.stamp(stored, old, manager, "Apply", obj)
            self.objects[key] = stored
            self.record("MODIFIED" if old else "ADDED", key, stored)
        return stored

    def remove(self, group: str, plural: str, name: str, namespace: str = "") -> None:
        """Delete an object as an administrator would: watches see it DELETED."""
        key = (group, plural, namespace, name)
        with self.lock:
            obj = self.objects.pop(key)
            self.version += 1
            obj["metadata"]["resourceVersion"] = str(self.version)
            self.record("DELETED", key, obj)

    def record(self, kind: str, key: tuple[str, str, str, str], obj: dict[str, Any]) -> None:
        """Log a change for watches (at the object's resourceVersion) and wake them."""
        with self.changed:
            version = int(obj["metadata"]["resourceVersion"])
            self.events.append((version, kind, key, copy.deepcopy(obj)))
            self.changed.notify_all()

    def compact(self) -> None:
        """Forget the history: a watch from any version before now is answered 410."""
        with self.changed:
            self.compacted = self.version
            self.events.clear()

    def expire_watches(self) -> None:
        """End every open watch with a 410 Expired ERROR event, as a lagging watch cache does."""
        with self.changed:
            self.expiries += 1
            self.changed.notify_all()

    def kubeconfig(self, path: Path, token: str) -> Path:
        """A kubeconfig whose user holds ``token``."""
        cluster = {"server": self.url, "certificate-authority": str(self.ca)}
        document = {
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [{"name": "stand-in", "cluster": cluster}],
            "users": [{"name": "user", "user": {"token": token}}],
            "contexts": [{"name": "ctx", "context": {"cluster": "stand-in", "user": "user"}}],
            "current-context": "ctx",
        }
        path.write_text(json.dumps(document))
        return path

    def stop(self) -> None:
        self.hanging.clear()
        with self.changed:
            self.stopping = True
            self.changed.notify_all()
        if self.server is not None:
            self.server.shutdown()
            self.server.server_close()

    # --- what the API server does --------------------------------------------------

    def allowed(
        self, user: str, verb: str, group: str, plural: str, name: str, namespace: str = ""
    ) -> bool:
        """Whether ``user`` may ``verb`` the object: by the ClusterRoles bound to it, or in
        ``namespace`` by what a RoleBinding there binds to it."""
        if user == ADMIN:
            return True
        account_namespace, account = self.service_accounts[user]
        subject = {"kind": "ServiceAccount", "name": account, "namespace": account_namespace}
        cluster_roles = self.named("ClusterRole")
        roles = []
        for binding in self.named("ClusterRoleBinding").values():
            if subject in binding.get("subjects", []):
                roles.append(cluster_roles.get(binding["roleRef"]["name"], {}))
        for (g, p, ns, _), binding in self.objects.items():
            if (g, p, ns) != (_RBAC, "rolebindings", namespace) or not namespace:
                continue
            if subject in binding.get("subjects", []):
                ref = binding["roleRef"]
                if ref["kind"] == "ClusterRole":
                    roles.append(cluster_roles.get(ref["name"], {}))
                else:
                    roles.append(self.objects.get((_RBAC, "roles", namespace, ref["name"]), {}))
        return any(
            _grants(rule, verb, group, plural, name)
            for role in roles
            for rule in role.get("rules", [])
        )

    def stamp(
        self, obj: dict[str, Any], old: dict[str, Any] | None, manager: str, how: str, sent: Any
    ) -> None:
        """Set what the API server sets on a write; ``sent`` is the body the manager sent."""
        self.version += 1
        metadata = obj.setdefault("metadata", {})
        now = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        kept = (old or {}).get("metadata", {})
        metadata["uid"] = kept.get("uid") or str(uuid.uuid4())
        metadata["creationTimestamp"] = kept.get("creationTimestamp") or now
        metadata["resourceVersion"] = str(self.version)
        managers = [m for m in kept.get("managedFields", []) if m["manager"] != manager]
        entry = {"manager": manager, "operation": how, "apiVersion": obj["apiVersion"], "time": now}
        fields = {"fieldsType": "FieldsV1", "fieldsV1": _fields(sent)}
        metadata["managedFields"] = [*managers, {**entry, **fields}]
        _default(obj)


def _grants(rule: dict[str, Any], verb: str, group: str, plural: str, name: str) -> bool:
    names = rule.get("resourceNames")
    return bool(
        {verb, "*"} & set(rule.get("verbs", []))
        and {group, "*"} & set(rule.get("apiGroups", []))
        and {plural, "*"} & set(rule.get("resources", []))
        and (not names or name in names)
    )


def _fields(sent: Any) -> dict[str, Any]:
    """FieldsV1 of what a manager sent: ``f:<key>`` per field, lists whole."""
    if not isinstance(sent, dict):
        return {}
    skip = ("apiVersion", "kind", "resourceVersion")
    return {f"f:{k}": _fields(v) for k, v in sent.items() if k not in skip}


def _default(obj: dict[str, Any]) -> None:
    """The defaults the API server fills into the webhooks of a webhook configuration."""
    if not obj["kind"].endswith("WebhookConfiguration"):
        return
    for hook in obj.get("webhooks") or []:
        for key, value in (
            ("failurePolicy", "Fail"),
            ("matchPolicy", "Equivalent"),
            ("namespaceSelector", {}),
            ("objectSelector", {}),
            ("timeoutSeconds", 10),
        ):
            hook.setdefault(key, value)
        if obj["kind"].startswith("Mutating"):
            hook.setdefault("reinvocationPolicy", "Never")
        if "service" in hook.get("clientConfig", {}):
            hook["clientConfig"]["service"].setdefault("port", 443)
        for rule in hook.get("rules") or []:
            rule.setdefault("scope", "*")


def start_store(tmp: Path) -> Store:
    """Start the stand-in on 127.0.0.1 on a free port, TLS with a fresh CA."""
    paths = certs.generate(
        tmp / "apistore", service="kubernetes", namespace="default", extra_sans=["127.0.0.1"]
    )
    store = Store(ca=paths.ca)
    server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(store))
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(paths.cert, paths.key)
    server.socket = context.wrap_socket(server.socket, server_side=True)
    server.daemon_threads = True
    store.server = server
    store.url = f"https://127.0.0.1:{server.server_address[1]}"
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return store


def _handler(store: Store) -> type[BaseHTTPRequestHandler]:
    from tests.support.apistore_requests import answer, watch_events
    from tests.support.apiwatch import stream_watch

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, format: str, *args: Any) -> None:
            pass

        def _any(self) -> None:
            url = urlsplit(self.path)
            query = {k: v[0] for k, v in parse_qs(url.query).items()}
            length = int(self.headers.get("Content-Length") or 0)
            raw = self.rfile.read(length) if length else b""
            content_type = self.headers.get("Content-Type")
            token = (self.headers.get("Authorization") or "").removeprefix("Bearer ")
            user = token if token == ADMIN or token in store.service_accounts else None
            body = yaml.safe_load(raw) if raw and content_type != "application/json" else None
            if raw and content_type == "application/json":
                body = json.loads(raw)
            call = Call(self.command, url.path, query, content_type, user, body)
            store.calls.append(call)
            if user not in (None, ADMIN) and store.hanging.is_set():
                # Hold the request unanswered until the hang ends, then drop it.
                while store.hanging.is_set():
                    time.sleep(0.05)
                call.answer = -1
                return
            watch = call.method == "GET" and query.get("watch") in ("1", "true") and user
            if watch and store.live_watch and query.get("sendInitialEvents") != "true":
                stream_watch(store, self, call)
                return
            if watch:
                # The objects as they are (when asked for), then a second of no change and
                # the end of the stream: clients watch again, which polls each second.
                with store.lock:
                    events = watch_events(store, call)
                call.answer = 200
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.end_headers()
                for event in events:
                    self.wfile.write(json.dumps(event).encode() + b"\n")
                self.wfile.flush()
                time.sleep(1)
                return
            code, body = answer(store, call)
            call.answer = code
            data = json.dumps(body).encode()
            self.send_response(code)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.write(data, user)

        def write(self, data: bytes, user: str | None) -> None:
            """Send ``data``; a byte per ``store.drip`` seconds to a ServiceAccount."""
            if not store.drip or user in (None, ADMIN):
                self.wfile.write(data)
                return
            try:
                for byte in data:
                    self.wfile.write(bytes([byte]))
                    self.wfile.flush()
                    time.sleep(store.drip)
            except OSError:
                pass  # the client gave up

        do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = _any

    return Handler


def validate(obj: dict[str, Any]) -> list[str]:
    """What Kubernetes' schema refuses in ``obj`` (strict: unknown fields too)."""
    try:
        kubernetes_validate.validate(obj, kubernetes_validate.latest_version(), strict=True)
    except kubernetes_validate.ValidationError as exc:
        where = ".".join(str(p) for p in exc.absolute_path) or "<root>"
        return [f"{where}: {exc.message}"]
    return []
