"""A stand-in Kubernetes API server for ``trustgate audit --cluster`` tests.

It answers the list endpoints of the workload resources over HTTPS, the way
kube-apiserver does: ``GET /api/v1/pods``, ``/apis/apps/v1/namespaces/NS/deployments``
and so on, paginated with ``limit`` and an opaque ``continue`` token, items without
``kind``/``apiVersion``, and ``Status`` objects for 401/403/410. A request is
authenticated by a bearer token or by a client certificate signed by ``client_ca``.

Objects are shaped as a real API server returns them (uid, resourceVersion,
managedFields, ownerReferences, status), built from ``tests.support.kube``.
"""

from __future__ import annotations

import base64
import datetime
import json
import re
import ssl
import sys
import threading
import uuid
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import jsonschema
import yaml
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from tests.support.kube import RESOURCES, pod_spec
from webhook.core import certs

_PATH = re.compile(
    r"^/(?:api/v1|apis/(?P<group>[a-z.]+)/v1)(?:/namespaces/(?P<namespace>[^/]+))?/(?P<plural>[a-z]+)$"
)
_CUSTOM = re.compile(
    r"^/apis/(?P<group>[a-z0-9.-]+\.[a-z]+)/(?P<version>v[0-9a-z]+)"
    r"(?:/namespaces/(?P<namespace>[^/]+))?/(?P<plural>[a-z]+)(?:/(?P<name>[^/]+))?$"
)
_CRD_DIR = Path(__file__).parents[1] / "data" / "policyreport"
_SECRET = re.compile(r"^/api/v1/namespaces/(?P<namespace>[^/]+)/secrets/(?P<name>[^/]+)$")
#: Discovery of the core group, as much of it as Helm's ``lookup`` asks for.
_CORE_RESOURCES = {
    "kind": "APIResourceList",
    "groupVersion": "v1",
    "resources": [
        {
            "name": plural,
            "singularName": plural[:-1],
            "namespaced": True,
            "kind": kind,
            "verbs": ["get", "list"],
        }
        for kind, plural in (("Pod", "pods"), ("Secret", "secrets"))
    ],
}
#: The exec credential plug-in protocol kubeconfigs written by cloud CLIs name.
EXEC_V1BETA1 = "client.authentication.k8s.io/v1beta1"
_KIND_OF = {plural: kind for kind, (_, _, plural) in RESOURCES.items()}


def _status(code: int, reason: str, message: str) -> dict[str, Any]:
    return {
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Failure",
        "message": message,
        "reason": reason,
        "code": code,
    }


def stored(
    kind: str,
    name: str,
    namespace: str,
    *images: str,
    owner: tuple[str, str] | None = None,
) -> dict[str, Any]:
    """An object as a list returns it: no kind/apiVersion, server-set metadata."""
    spec = pod_spec(*images)
    metadata: dict[str, Any] = {
        "name": name,
        "namespace": namespace,
        "uid": str(uuid.uuid4()),
        "resourceVersion": "48213",
        "generation": 1,
        "creationTimestamp": "2026-10-02T08:14:03Z",
        "labels": {"app": name},
        "managedFields": [
            {
                "manager": "kubectl-client-side-apply",
                "operation": "Update",
                "apiVersion": "apps/v1",
                "time": "2026-10-02T08:14:03Z",
                "fieldsType": "FieldsV1",
                "fieldsV1": {"f:metadata": {"f:labels": {".": {}, "f:app": {}}}},
            }
        ],
    }
    if owner is not None:
        metadata["ownerReferences"] = [
            {
                "apiVersion": "apps/v1",
                "kind": owner[0],
                "name": owner[1],
                "uid": str(uuid.uuid4()),
                "controller": True,
                "blockOwnerDeletion": True,
            }
        ]
    template = {"metadata": {"labels": {"app": name}}, "spec": spec}
    body: dict[str, Any]
    if kind == "Pod":
        body = {"spec": spec, "status": {"phase": "Running", "qosClass": "Burstable"}}
    elif kind == "CronJob":
        body = {
            "spec": {"schedule": "0 * * * *", "jobTemplate": {"spec": {"template": template}}},
            "status": {},
        }
    elif kind == "Job":
        body = {"spec": {"template": template, "backoffLimit": 6}, "status": {"succeeded": 1}}
    else:
        body = {
            "spec": {
                "replicas": 2,
                "selector": {"matchLabels": {"app": name}},
                "template": template,
            },
            "status": {"replicas": 2, "readyReplicas": 2, "observedGeneration": 1},
        }
    return {"metadata": metadata, **body}


@dataclass
class Request:
    path: str
    query: dict[str, str]
    authorization: str | None
    client_cert: bool
    method: str = "GET"
    content_type: str | None = None


@dataclass(frozen=True)
class CustomResource:
    """A kind a CustomResourceDefinition adds, with the schema the API server enforces."""

    kind: str
    namespaced: bool
    schema: dict[str, Any]


def _crds() -> dict[tuple[str, str, str], CustomResource]:
    """The policy report CRDs under tests/data, as an API server with them installed serves."""
    served = {}
    for path in sorted(_CRD_DIR.glob("*/*.yaml")):
        crd = yaml.safe_load(path.read_text())
        spec = crd["spec"]
        for version in spec["versions"]:
            if version.get("served"):
                served[(spec["group"], version["name"], spec["names"]["plural"])] = CustomResource(
                    spec["names"]["kind"],
                    spec["scope"] == "Namespaced",
                    version["schema"]["openAPIV3Schema"],
                )
    return served


def strict(schema: Any) -> Any:
    """``schema`` refusing fields it does not define.

    kube-apiserver prunes such fields silently; the stand-in refuses them instead,
    so that a test sees what a real server would drop.
    """
    if isinstance(schema, list):
        return [strict(item) for item in schema]
    if not isinstance(schema, dict):
        return schema
    out = {key: strict(value) for key, value in schema.items()}
    if (
        "properties" in schema
        and "additionalProperties" not in schema
        and not schema.get("x-kubernetes-preserve-unknown-fields")
    ):
        out["additionalProperties"] = False
    return out


def _schema_errors(schema: dict[str, Any], obj: dict[str, Any]) -> list[str]:
    """What a structural schema refuses in ``obj``, as kube-apiserver words it (field: reason)."""
    validator = jsonschema.Draft4Validator(strict(schema))
    return [
        f"{'.'.join(str(p) for p in error.absolute_path) or '<root>'}: {error.message}"
        for error in validator.iter_errors(obj)
    ]


@dataclass
class ApiServer:
    """A running stand-in; ``objects`` maps a plural (``deployments``) to stored objects."""

    url: str
    ca: Path
    client_ca_cert: Path
    client_ca_key: ec.EllipticCurvePrivateKey
    token: str
    objects: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    forbidden: set[str] = field(default_factory=set)
    requests: list[Request] = field(default_factory=list)
    expire_continue: bool = False
    #: Secrets answered by ``GET /api/v1/namespaces/NS/secrets/NAME`` (Helm's ``lookup``).
    secrets: dict[tuple[str, str], dict[str, Any]] = field(default_factory=dict)
    #: Custom resources (policy reports), by (plural, namespace, name).
    custom: dict[tuple[str, str, str], dict[str, Any]] = field(default_factory=dict)
    #: The installed CRDs: (group, version, plural) -> kind and schema; clear it to
    #: play a cluster without them.
    crds: dict[tuple[str, str, str], CustomResource] = field(default_factory=_crds)
    server: ThreadingHTTPServer | None = None

    def client_certificate(self, directory: Path, user: str = "alice") -> tuple[Path, Path]:
        """A client certificate for ``user`` signed by the client CA: (cert, key) files."""
        key = ec.generate_private_key(ec.SECP256R1())
        issuer = x509.load_pem_x509_certificate(self.client_ca_cert.read_bytes())
        now = datetime.datetime.now(datetime.UTC)
        cert = (
            x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, user)]))
            .issuer_name(issuer.subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(hours=1))
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH]), False)
            .sign(self.client_ca_key, hashes.SHA256())
        )
        cert_path, key_path = directory / f"{user}.crt", directory / f"{user}.key"
        cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
        key_path.write_bytes(
            key.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            )
        )
        return cert_path, key_path

    def stop(self) -> None:
        if self.server is not None:
            self.server.shutdown()
            self.server.server_close()


def _client_ca(directory: Path) -> tuple[Path, ec.EllipticCurvePrivateKey]:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "kubernetes client ca")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    path = directory / "client-ca.crt"
    path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    return path, key


def start_api_server(tmp: Path, token: str = "sa-token-1") -> ApiServer:
    """Start the stand-in on 127.0.0.1 on a free port, TLS with a fresh CA."""
    paths = certs.generate(
        tmp / "serving", service="kubernetes", namespace="default", extra_sans=["127.0.0.1"]
    )
    client_ca, client_key = _client_ca(tmp)
    api = ApiServer("", paths.ca, client_ca, client_key, token)

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, format: str, *args: Any) -> None:
            pass

        def _send(self, code: int, body: dict[str, Any]) -> None:
            data = json.dumps(body).encode()
            self.send_response(code)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def _authenticated(self) -> tuple[str, dict[str, str]] | None:
            """Record the request; answer 401 and return None unless it is authenticated."""
            url = urlsplit(self.path)
            query = {k: v[0] for k, v in parse_qs(url.query).items()}
            authorization = self.headers.get("Authorization")
            has_cert = bool(self.connection.getpeercert())  # type: ignore[attr-defined]
            api.requests.append(
                Request(
                    url.path,
                    query,
                    authorization,
                    has_cert,
                    self.command,
                    self.headers.get("Content-Type"),
                )
            )
            if authorization != f"Bearer {api.token}" and not has_cert:
                self._send(401, _status(401, "Unauthorized", "Unauthorized"))
                return None
            return url.path, query

        def _custom(self, path: str) -> tuple[CustomResource, re.Match[str]] | None:
            match = _CUSTOM.match(path)
            if match is None:
                return None
            crd = api.crds.get((match["group"], match["version"], match["plural"]))
            if crd is None or (crd.namespaced != bool(match["namespace"]) and match["name"]):
                return None
            return crd, match

        def _forbidden(self, plural: str, verb: str) -> bool:
            if plural not in api.forbidden:
                return False
            message = (
                f'{plural} is forbidden: User "system:serviceaccount:trustgate:audit" '
                f'cannot {verb} resource "{plural}"'
            )
            self._send(403, _status(403, "Forbidden", message))
            return True

        def _list_custom(self, match: re.Match[str], query: dict[str, str]) -> None:
            wanted = dict(p.split("=", 1) for p in query.get("labelSelector", "").split(",") if p)
            items = [
                obj
                for (plural, namespace, _), obj in sorted(api.custom.items())
                if plural == match["plural"]
                and match["namespace"] in (None, namespace)
                and wanted.items() <= (obj["metadata"].get("labels") or {}).items()
            ]
            listed = [
                {k: v for k, v in o.items() if k not in ("apiVersion", "kind")} for o in items
            ]
            kind = api.crds[(match["group"], match["version"], match["plural"])].kind
            self._send(
                200,
                {"kind": f"{kind}List", "apiVersion": f"{match['group']}/{match['version']}",
                 "metadata": {"resourceVersion": "50001"}, "items": listed},
            )  # fmt: skip

        def do_PATCH(self) -> None:
            """Server-side apply of a custom resource, checked against its CRD's schema."""
            request = self._authenticated()
            if request is None:
                return
            path, query = request
            length = int(self.headers.get("Content-Length", "0"))
            body = self.rfile.read(length)
            found = self._custom(path)
            if found is None or not found[1]["name"]:
                self._send(404, _status(404, "NotFound", "the server could not find it"))
                return
            crd, match = found
            if self._forbidden(match["plural"], "patch"):
                return
            if self.headers.get("Content-Type") != "application/apply-patch+yaml":
                self._send(415, _status(415, "UnsupportedMediaType", "apply patches only"))
                return
            if not query.get("fieldManager"):
                message = "PatchOptions.meta.k8s.io is invalid: fieldManager: Required value"
                self._send(422, _status(422, "Invalid", message))
                return
            obj = yaml.safe_load(body)
            group_version = f"{match['group']}/{match['version']}"
            metadata = obj.get("metadata") or {} if isinstance(obj, dict) else {}
            problems = _schema_errors(crd.schema, obj)
            if obj.get("apiVersion") != group_version or obj.get("kind") != crd.kind:
                problems.append(f"apiVersion/kind: must be {group_version} {crd.kind}")
            if metadata.get("name") != match["name"]:
                problems.append("metadata.name: must match the name in the URL")
            if metadata.get("namespace", match["namespace"]) != match["namespace"]:
                problems.append("metadata.namespace: must match the namespace in the URL")
            if problems:
                message = f'{crd.kind}.{match["group"]} "{match["name"]}" is invalid: ' + (
                    ", ".join(problems)
                )
                self._send(422, _status(422, "Invalid", message))
                return
            key = (match["plural"], match["namespace"] or "", match["name"])
            created = key not in api.custom
            stored_metadata = {
                **metadata,
                "namespace": match["namespace"],
                "uid": api.custom[key]["metadata"]["uid"] if not created else str(uuid.uuid4()),
                "resourceVersion": str(50000 + len(api.requests)),
                "managedFields": [
                    {"manager": query["fieldManager"], "operation": "Apply",
                     "apiVersion": group_version, "fieldsType": "FieldsV1"}
                ],
            }  # fmt: skip
            api.custom[key] = {**obj, "metadata": stored_metadata}
            self._send(201 if created else 200, api.custom[key])

        def do_DELETE(self) -> None:
            request = self._authenticated()
            if request is None:
                return
            found = self._custom(request[0])
            if found is None or not found[1]["name"]:
                self._send(404, _status(404, "NotFound", "the server could not find it"))
                return
            _, match = found
            if self._forbidden(match["plural"], "delete"):
                return
            key = (match["plural"], match["namespace"] or "", match["name"])
            if api.custom.pop(key, None) is None:
                message = f'{match["plural"]}.{match["group"]} "{match["name"]}" not found'
                self._send(404, _status(404, "NotFound", message))
                return
            details = {"name": match["name"], "kind": match["plural"]}
            self._send(
                200, {"kind": "Status", "apiVersion": "v1", "status": "Success", "details": details}
            )

        def do_GET(self) -> None:
            request = self._authenticated()
            if request is None:
                return
            path, query = request
            url = urlsplit(self.path)
            custom = self._custom(path)
            if custom is not None and not custom[1]["name"]:
                if not self._forbidden(custom[1]["plural"], "list"):
                    self._list_custom(custom[1], query)
                return
            if url.path == "/api/v1":
                self._send(200, _CORE_RESOURCES)
                return
            secret = _SECRET.match(url.path)
            if secret is not None:
                found = api.secrets.get((secret["namespace"], secret["name"]))
                if found is None:
                    message = f'secrets "{secret["name"]}" not found'
                    self._send(404, _status(404, "NotFound", message))
                else:
                    self._send(200, {"kind": "Secret", "apiVersion": "v1", **found})
                return
            match = _PATH.match(url.path)
            if match is None or match["plural"] not in _KIND_OF:
                self._send(404, _status(404, "NotFound", "the server could not find it"))
                return
            plural, namespace = match["plural"], match["namespace"]
            if plural in api.forbidden:
                message = (
                    f'{plural} is forbidden: User "system:serviceaccount:trustgate:audit" '
                    f'cannot list resource "{plural}" at the cluster scope'
                )
                self._send(403, _status(403, "Forbidden", message))
                return
            items = [
                o
                for o in api.objects.get(plural, [])
                if namespace is None or o["metadata"]["namespace"] == namespace
            ]
            start = 0
            if "continue" in query:
                if api.expire_continue:
                    message = "The provided continue parameter is too old"
                    self._send(410, _status(410, "Expired", message))
                    return
                start = int(base64.b64decode(query["continue"]).decode())
            limit = int(query.get("limit", "0")) or len(items) or 1
            page = items[start : start + limit]
            metadata: dict[str, Any] = {"resourceVersion": "48999"}
            if start + limit < len(items):
                metadata["continue"] = base64.b64encode(str(start + limit).encode()).decode()
                metadata["remainingItemCount"] = len(items) - start - limit
            kind = _KIND_OF[plural]
            group = RESOURCES[kind][0]
            api_version = f"{group}/v1" if group else "v1"
            self._send(
                200,
                {"kind": f"{kind}List", "apiVersion": api_version, "metadata": metadata,
                 "items": page},
            )  # fmt: skip

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(paths.cert, paths.key)
    context.load_verify_locations(client_ca)
    context.verify_mode = ssl.CERT_OPTIONAL
    server.socket = context.wrap_socket(server.socket, server_side=True)
    api.server = server
    api.url = f"https://127.0.0.1:{server.server_address[1]}"
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return api


def exec_plugin(
    directory: Path, token_file: Path, *, api_version: str = EXEC_V1BETA1, fail: bool = False
) -> Path:
    """An exec credential plug-in, as EKS, GKE and AKS logins install them: a small script.

    It answers an ExecCredential carrying the token in ``token_file`` (read at each
    run, so a test can rotate it), and appends a JSON line to ``<script>.calls`` per
    run with its arguments and the environment it was given. With ``fail`` it
    exits 1 after a message on standard error, as a plug-in whose login expired.
    """
    script = directory / ("failing-login" if fail else "cloud-login")
    script.write_text(
        f"#!{sys.executable}\n"
        "import json, os, sys\n"
        "with open(__file__ + '.calls', 'a') as log:\n"
        "    seen = ('KUBERNETES_EXEC_INFO', 'CLOUD_PROFILE')\n"
        "    env = {k: v for k, v in os.environ.items() if k in seen}\n"
        "    log.write(json.dumps({'argv': sys.argv[1:], 'env': env}) + '\\n')\n"
        + (
            "sys.stderr.write('error: the SSO session has expired; run: cloud login\\n')\n"
            "sys.exit(1)\n"
            if fail
            else ""
        )
        + f"token = open({str(token_file)!r}).read().strip()\n"
        "print(json.dumps({'kind': 'ExecCredential', "
        f"'apiVersion': {api_version!r}, "
        "'status': {'token': token, 'expirationTimestamp': '2099-01-01T00:00:00Z'}}))\n"
    )
    script.chmod(0o755)
    return script


def plugin_calls(script: Path) -> list[dict[str, Any]]:
    """What each run of an ``exec_plugin`` script was given."""
    log = Path(str(script) + ".calls")
    if not log.exists():
        return []
    return [json.loads(line) for line in log.read_text().splitlines()]


def kubeconfig(
    path: Path,
    api: ApiServer,
    *,
    token: str | None = None,
    client: tuple[Path, Path] | None = None,
    inline_ca: bool = True,
    context: str = "audit",
    exec_user: dict[str, Any] | None = None,
    others: dict[str, str] | None = None,
) -> Path:
    """A kubeconfig for ``api`` as kubectl writes it.

    ``exec_user`` is the user's ``exec`` section (an exec credential plug-in);
    ``others`` adds a context per entry, context name -> bearer token, beside
    ``context``, which stays the current one.
    """
    cluster: dict[str, Any] = {"server": api.url}
    if inline_ca:
        cluster["certificate-authority-data"] = base64.b64encode(api.ca.read_bytes()).decode()
    else:
        cluster["certificate-authority"] = str(api.ca)
    user: dict[str, Any] = {}
    if token is not None:
        user["token"] = token
    if client is not None:
        user["client-certificate"] = client[0].name
        user["client-key"] = client[1].name
    if exec_user is not None:
        user["exec"] = exec_user
    users = [{"name": "auditor", "user": user}]
    contexts = [{"name": context, "context": {"cluster": "test", "user": "auditor"}}]
    for name, other_token in (others or {}).items():
        users.append({"name": f"{name}-user", "user": {"token": other_token}})
        contexts.append(
            {"name": name, "context": {"cluster": "test", "user": f"{name}-user", "namespace": "x"}}
        )
    document = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": "test", "cluster": cluster}],
        "users": users,
        "contexts": contexts,
        "current-context": context,
        "preferences": {},
    }
    path.write_text(json.dumps(document))
    return path
