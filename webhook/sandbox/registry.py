"""A real OCI registry (CNCF distribution) on 127.0.0.1, and helpers that push small images.

``start_registry`` runs Debian's ``docker-registry`` on 127.0.0.1 on a free port, optionally
with TLS (a test CA), htpasswd basic auth, or Bearer token auth backed by a token server.
``push_blob``, ``push_manifest``, ``push_image`` and ``push_index`` speak the OCI distribution
API over plain ``requests``; against a token registry ``Registry.request`` answers the 401
challenge with a pull+push token for the repository, as ``docker push`` does.

``make demo`` and the tests share this module; the webhook itself never imports it.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import os
import re
import secrets
import shutil
import socket
import subprocess
import tarfile
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import urlsplit

import requests
import yaml

from webhook.core import certs

REGISTRY_BINARY = "docker-registry"
READY_DEADLINE = 20.0
STOP_DEADLINE = 10.0
TIMEOUT = 10.0

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
OCI_LAYER = "application/vnd.oci.image.layer.v1.tar"
OCI_LAYER_GZIP = "application/vnd.oci.image.layer.v1.tar+gzip"
DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
DOCKER_CONFIG = "application/vnd.docker.container.image.v1+json"
DOCKER_LAYER_GZIP = "application/vnd.docker.image.rootfs.diff.tar.gzip"

# manifest media type -> (config media type, uncompressed layer type, gzip layer type)
_IMAGE_TYPES = {
    OCI_MANIFEST: (OCI_CONFIG, OCI_LAYER, OCI_LAYER_GZIP),
    DOCKER_MANIFEST: (DOCKER_CONFIG, DOCKER_LAYER_GZIP, DOCKER_LAYER_GZIP),
}
_GZIP_MAGIC = b"\x1f\x8b"
_REPOSITORY_PATH = re.compile(r"/v2/(.+?)/(?:manifests|blobs|tags|referrers)/")
_CHALLENGE_PARAM = re.compile(r'(\w+)="([^"]*)"')


class TokenServer(Protocol):
    """What a registry needs of a Bearer token server (tests/support/tokenserver.py runs one)."""

    realm: str
    service: str
    issuer: str
    cert: Path

    def stop(self) -> None:
        """Stop serving tokens."""


@dataclass
class Registry:
    """A running registry: where it listens, how to reach it, and where it keeps its files."""

    url: str
    host: str
    process: subprocess.Popen[bytes]
    root: Path
    log: Path
    ca: Path | None = None
    username: str | None = None
    password: str | None = None
    token_server: TokenServer | None = None
    _tokens: dict[str, str] = field(default_factory=dict)

    def request(self, method: str, path_or_url: str, **kwargs: Any) -> requests.Response:
        """Send one request with this registry's credentials and CA; a bare path is relative.

        A token registry gets a cached Bearer token for the path's repository; on a 401 with a
        Bearer challenge a new pull+push token is fetched once and the request is retried.
        """
        url = path_or_url if "://" in path_or_url else f"{self.url}{path_or_url}"
        kwargs.setdefault("verify", str(self.ca) if self.ca else True)
        kwargs.setdefault("timeout", TIMEOUT)
        if self.token_server is None:
            if self.username is not None and self.password is not None:
                kwargs.setdefault("auth", (self.username, self.password))
            return requests.request(method, url, **kwargs)
        if kwargs.get("auth", True) is None:  # explicitly anonymous
            return requests.request(method, url, **kwargs)
        match = _REPOSITORY_PATH.match(urlsplit(url).path)
        repository = match.group(1) if match else ""
        headers = dict(kwargs.pop("headers", None) or {})
        if repository in self._tokens:
            headers["Authorization"] = f"Bearer {self._tokens[repository]}"
        response = requests.request(method, url, headers=headers, **kwargs)
        challenge = response.headers.get("WWW-Authenticate", "")
        if response.status_code != 401 or not challenge.lower().startswith("bearer "):
            return response
        params = dict(_CHALLENGE_PARAM.findall(challenge))
        scope = f"repository:{repository}:pull,push" if repository else params.get("scope")
        token = self._token(params["realm"], params.get("service"), scope)
        if repository:
            self._tokens[repository] = token
        headers["Authorization"] = f"Bearer {token}"
        return requests.request(method, url, headers=headers, **kwargs)

    def _token(self, realm: str, service: str | None, scope: str | None) -> str:
        query = {k: v for k, v in (("service", service), ("scope", scope)) if v}
        auth = (self.username, self.password) if self.username and self.password else None
        response = requests.get(realm, params=query, auth=auth, timeout=TIMEOUT)
        if response.status_code != 200:
            raise RuntimeError(f"token endpoint answered {response.status_code}: {response.text}")
        token: str = response.json()["token"]
        return token

    def requests_seen(self, path_part: str = "/v2/") -> list[str]:
        """Access-log lines (``start_registry(access_log=True)``) of requests to ``path_part``."""
        return [
            line
            for line in self.log_text().splitlines()
            if '"GET ' in line or '"HEAD ' in line
            if path_part in line
        ]

    def log_text(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""

    def stop(self) -> int:
        """Terminate the registry and wait for it; kill it if it does not exit in time."""
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=STOP_DEADLINE)
            except subprocess.TimeoutExpired:
                self.process.kill()
        if self.token_server is not None:
            self.token_server.stop()
        return self.process.wait()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def digest_of(data: bytes) -> str:
    return f"sha256:{hashlib.sha256(data).hexdigest()}"


def start_registry(
    tmp: Path,
    *,
    tls: bool = False,
    htpasswd: tuple[str, str] | None = None,
    token_server: TokenServer | None = None,
    token_user: tuple[str, str] | None = None,
    access_log: bool = False,
) -> Registry:
    """Start ``docker-registry serve`` with its files under ``tmp`` and wait until /v2/ answers.

    With ``token_server`` the registry accepts only Bearer tokens that server signs, and
    ``Registry.request`` fetches them as ``token_user`` (a ``(user, password)`` it knows).
    With ``access_log`` the registry writes a line per request to its log, which
    ``Registry.requests_seen`` counts.

    Raises:
        RuntimeError: the binary is missing, or the registry exits or does not answer within
            ``READY_DEADLINE`` seconds (the message carries its log).
    """
    binary = shutil.which(REGISTRY_BINARY)
    if binary is None:
        raise RuntimeError(f"{REGISTRY_BINARY} is not installed (`make test-deps` installs it)")
    tmp.mkdir(parents=True, exist_ok=True)
    root = tmp / "storage"
    root.mkdir(exist_ok=True)
    port = free_port()
    host = f"127.0.0.1:{port}"
    config: dict[str, Any] = {
        "version": 0.1,
        "log": {"level": "warn", "accesslog": {"disabled": not access_log}},
        "storage": {
            "filesystem": {"rootdirectory": str(root)},
            "delete": {"enabled": True},
            "maintenance": {"uploadpurging": {"enabled": False}},
        },
        "http": {"addr": host, "secret": secrets.token_hex(16)},
    }
    ca: Path | None = None
    if tls:
        paths = certs.generate(
            tmp / "certs",
            service="registry",
            namespace="test",
            extra_sans=["127.0.0.1", "localhost"],
        )
        ca = paths.ca
        config["http"]["tls"] = {"certificate": str(paths.cert), "key": str(paths.key)}
    if htpasswd is not None:
        user, password = htpasswd
        import bcrypt  # a test dependency: only the tests run registries with htpasswd

        hashed = bcrypt.hashpw(password.encode(), bcrypt.gensalt(rounds=4, prefix=b"2a"))
        htpasswd_file = tmp / "htpasswd"
        htpasswd_file.write_text(f"{user}:{hashed.decode()}\n")
        config["auth"] = {"htpasswd": {"realm": "trustgate-test", "path": str(htpasswd_file)}}
    if token_server is not None:
        if htpasswd is not None:
            raise ValueError("a registry takes htpasswd or token auth, not both")
        config["auth"] = {
            "token": {
                "realm": token_server.realm,
                "service": token_server.service,
                "issuer": token_server.issuer,
                "rootcertbundle": str(token_server.cert),
            }
        }
    config_file = tmp / "config.yml"
    config_file.write_text(yaml.safe_dump(config, sort_keys=False))
    log = tmp / "registry.log"
    env = {k: v for k, v in os.environ.items() if not k.startswith("REGISTRY_")}
    with log.open("wb") as out:
        process = subprocess.Popen(
            [binary, "serve", str(config_file)],
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env=env,
        )
    registry = Registry(
        url=f"{'https' if tls else 'http'}://{host}",
        host=host,
        process=process,
        root=root,
        log=log,
        ca=ca,
        username=(htpasswd or token_user or (None, None))[0],
        password=(htpasswd or token_user or (None, None))[1],
        token_server=token_server,
    )
    ready = {200, 401} if htpasswd or token_server else {200}
    deadline = time.monotonic() + READY_DEADLINE
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(
                f"{REGISTRY_BINARY} exited with {process.returncode}:\n{registry.log_text()}"
            )
        try:
            if registry.request("GET", "/v2/", auth=None, timeout=1).status_code in ready:
                return registry
        except requests.RequestException:
            pass
        time.sleep(0.05)
    registry.stop()
    raise RuntimeError(
        f"{REGISTRY_BINARY} did not answer /v2/ within {READY_DEADLINE}s:\n{registry.log_text()}"
    )


def _check(response: requests.Response, expected: int, what: str) -> requests.Response:
    if response.status_code != expected:
        raise RuntimeError(
            f"{what}: expected HTTP {expected}, got {response.status_code}: {response.text[:500]}"
        )
    return response


def push_blob(registry: Registry, repository: str, data: bytes) -> str:
    """Upload ``data`` as a blob (monolithic POST then PUT) unless it exists; return its digest."""
    digest = digest_of(data)
    if registry.request("HEAD", f"/v2/{repository}/blobs/{digest}").status_code == 200:
        return digest
    started = _check(
        registry.request("POST", f"/v2/{repository}/blobs/uploads/"), 202, "blob upload start"
    )
    location = requests.compat.urljoin(registry.url + "/", started.headers["Location"])
    _check(
        registry.request(
            "PUT",
            location,
            params={"digest": digest},
            data=data,
            headers={"Content-Type": "application/octet-stream"},
        ),
        201,
        f"blob upload {digest}",
    )
    return digest


def push_manifest(
    registry: Registry, repository: str, reference: str, body: bytes, media_type: str
) -> str:
    """PUT ``body`` as a manifest under ``reference`` (a tag or digest); return its digest.

    Raises:
        RuntimeError: the registry refuses the manifest or reports a different digest.
    """
    digest = digest_of(body)
    response = _check(
        registry.request(
            "PUT",
            f"/v2/{repository}/manifests/{reference}",
            data=body,
            headers={"Content-Type": media_type},
        ),
        201,
        f"manifest {repository}:{reference}",
    )
    reported = response.headers.get("Docker-Content-Digest", digest)
    if reported != digest:
        raise RuntimeError(f"registry reported digest {reported} for a manifest of {digest}")
    return digest


def push_artifact(
    registry: Registry,
    repository: str,
    tag: str,
    manifest: Mapping[str, Any],
    blobs: Mapping[str, bytes],
) -> str:
    """Push ``blobs``, then ``manifest`` under ``tag`` (a cosign ``.sig`` or ``.att`` tag, say).

    Returns the manifest's digest.
    """
    for blob in blobs.values():
        push_blob(registry, repository, blob)
    body = json.dumps(manifest).encode()
    return push_manifest(registry, repository, tag, body, manifest.get("mediaType", OCI_MANIFEST))


def default_layer(name: str = "hello.txt", content: bytes = b"hello from trustgate\n") -> bytes:
    """A reproducible gzip-compressed tar holding one file."""
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w", format=tarfile.PAX_FORMAT) as tar:
        info = tarfile.TarInfo(name)
        info.size = len(content)
        info.mode = 0o644
        tar.addfile(info, io.BytesIO(content))
    return gzip.compress(raw.getvalue(), mtime=0)


def _canonical(document: Mapping[str, Any]) -> bytes:
    return json.dumps(document, separators=(",", ":"), sort_keys=True).encode()


def push_image(
    registry: Registry,
    repository: str,
    *,
    tag: str | None = "latest",
    layers: Sequence[bytes] | None = None,
    config: Mapping[str, Any] | None = None,
    media_type: str = OCI_MANIFEST,
) -> str:
    """Push layers, a config and an image manifest; tag it (or push by digest when ``tag`` is
    None) and return the manifest digest.

    Layers starting with the gzip magic are typed as compressed tars, others as plain tars. The
    default config is a linux/amd64 image config whose diff_ids match the layers.
    """
    config_type, plain_type, gzip_type = _IMAGE_TYPES[media_type]
    layers = [default_layer()] if layers is None else list(layers)
    descriptors = []
    diff_ids = []
    for layer in layers:
        compressed = layer.startswith(_GZIP_MAGIC)
        descriptors.append(
            {
                "mediaType": gzip_type if compressed else plain_type,
                "digest": push_blob(registry, repository, layer),
                "size": len(layer),
            }
        )
        diff_ids.append(digest_of(gzip.decompress(layer) if compressed else layer))
    if config is None:
        config = {
            "architecture": "amd64",
            "os": "linux",
            "config": {},
            "rootfs": {"type": "layers", "diff_ids": diff_ids},
        }
    config_blob = _canonical(config)
    manifest = {
        "schemaVersion": 2,
        "mediaType": media_type,
        "config": {
            "mediaType": config_type,
            "digest": push_blob(registry, repository, config_blob),
            "size": len(config_blob),
        },
        "layers": descriptors,
    }
    body = _canonical(manifest)
    return push_manifest(registry, repository, tag or digest_of(body), body, media_type)


def push_index(
    registry: Registry,
    repository: str,
    manifests: Sequence[tuple[str, Mapping[str, Any]]],
    tag: str | None = "latest",
) -> str:
    """Push an OCI image index over manifests already in ``repository``; return its digest.

    ``manifests`` holds ``(digest, platform)`` pairs, e.g. ``("sha256:..", {"architecture":
    "arm64", "os": "linux"})``; each manifest's media type and size are read from the registry.
    """
    entries = []
    for digest, platform in manifests:
        head = _check(
            registry.request(
                "HEAD",
                f"/v2/{repository}/manifests/{digest}",
                headers={"Accept": f"{OCI_MANIFEST}, {DOCKER_MANIFEST}"},
            ),
            200,
            f"manifest {repository}@{digest}",
        )
        entries.append(
            {
                "mediaType": head.headers["Content-Type"],
                "digest": digest,
                "size": int(head.headers["Content-Length"]),
                "platform": dict(platform),
            }
        )
    body = _canonical({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": entries})
    return push_manifest(registry, repository, tag or digest_of(body), body, OCI_INDEX)
