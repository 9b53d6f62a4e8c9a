"""Registry authentication end to end: `trustgate serve` against registries that want credentials.

Each registry is configured twice: as ``127.0.0.1:PORT`` with what it needs (credentials from a
``kubernetes.io/dockerconfigjson`` file, or the test CA) and as ``localhost:PORT`` without it,
so one server shows both the admission and the denial.
"""

from __future__ import annotations

import base64
import json
import threading
from collections.abc import Iterator, Mapping
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
import requests

from tests.integration.conftest import Server, small_image, start_server, stop_server
from tests.support.cosign import generate_key, public_pem, push_signature
from tests.support.kube import policy_yaml
from tests.support.registry import (
    OCI_MANIFEST,
    Registry,
)
from tests.support.tokenserver import TokenServer

pytestmark = pytest.mark.e2e

RELEASE = generate_key("ecdsa-p256")
REDIRECT_USER = ("alice", "redirect-secret")


def port_of(registry_host: str) -> str:
    return registry_host.rpartition(":")[2]


class Recorded(BaseHTTPRequestHandler):
    """Records every request's method, path and headers in ``server.seen``."""

    server: _Recording

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def record(self) -> None:
        with self.server.lock:
            self.server.seen.append((self.command, self.path, dict(self.headers)))

    def answer(self, status: int, headers: Mapping[str, str], body: bytes = b"") -> None:
        self.send_response(status)
        for name, value in headers.items():
            self.send_header(name, value)
        if "Content-Length" not in headers:
            self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)


class _Recording(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, handler: type[Recorded], target: str) -> None:
        super().__init__(("127.0.0.1", 0), handler)
        self.target = target
        self.lock = threading.Lock()
        self.seen: list[tuple[str, str, dict[str, str]]] = []
        self.host = f"127.0.0.1:{self.server_address[1]}"

    def start(self) -> _Recording:
        threading.Thread(target=self.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        self.shutdown()
        self.server_close()


class Proxy(Recorded):
    """Answers from the registry at ``server.target`` (a URL): a blob store on another host."""

    def do_GET(self) -> None:
        self.record()
        upstream = requests.request(
            self.command,
            self.server.target + self.path,
            headers={"Accept": self.headers.get("Accept", "*/*")},
            timeout=10,
        )
        kept = ("Content-Type", "Content-Length", "Docker-Content-Digest")
        self.answer(
            upstream.status_code,
            {k: upstream.headers[k] for k in kept if k in upstream.headers},
            upstream.content,
        )

    do_HEAD = do_GET


class Redirector(Recorded):
    """A registry front that wants Basic credentials, then redirects every request to
    ``server.target`` (``host:port``) with the same path."""

    def do_GET(self) -> None:
        self.record()
        expected = "Basic " + base64.b64encode(":".join(REDIRECT_USER).encode()).decode()
        if self.headers.get("Authorization") != expected:
            self.answer(401, {"WWW-Authenticate": 'Basic realm="redirector"'})
            return
        self.answer(307, {"Location": f"http://{self.server.target}{self.path}"})

    do_HEAD = do_GET


@pytest.fixture(scope="module")
def store(registry: Registry) -> Iterator[_Recording]:
    server = _Recording(Proxy, registry.url).start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def redirector(store: _Recording) -> Iterator[_Recording]:
    server = _Recording(Redirector, store.host).start()
    yield server
    server.stop()


def auth_entry(user: str, password: str) -> dict[str, str]:
    return {"auth": base64.b64encode(f"{user}:{password}".encode()).decode()}


@pytest.fixture(scope="module")
def auth_server(
    auth_registry: Registry,
    token_registry: Registry,
    tls_registry: Registry,
    redirector: _Recording,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Server]:
    tmp = tmp_path_factory.mktemp("registry-auth")
    policies = tmp / "policies"
    (policies / "keys").mkdir(parents=True)
    (policies / "keys" / "release.pub").write_text(public_pem(RELEASE))
    hosts = [
        f"{name}:{port_of(r.host)}"
        for r in (auth_registry, token_registry, tls_registry)
        for name in ("127.0.0.1", "localhost")
    ] + [redirector.host]
    allowed = ", ".join(f'"{host}/**"' for host in hosts)
    (policies / "signed.yaml").write_text(
        "apiVersion: trustgate.dev/v1alpha1\nkind: ImagePolicy\n"
        "metadata: {name: signed}\nspec:\n  mode: enforce\n"
        '  match: {namespaces: ["prod-*"]}\n'
        f"  registries: [{allowed}]\n"
        "  signatures:\n    threshold: 1\n    authorities:\n"
        "      - name: release\n        key: {file: keys/release.pub}\n"
    )  # fmt: skip
    # What a mounted kubernetes.io/dockerconfigjson Secret holds, with three key spellings.
    assert token_registry.username is not None and token_registry.password is not None
    assert auth_registry.username is not None and auth_registry.password is not None
    secret = tmp / ".dockerconfigjson"
    secret.write_text(json.dumps({"auths": {
        f"http://{auth_registry.host}": auth_entry(auth_registry.username, auth_registry.password),
        token_registry.host: {"username": token_registry.username,
                              "password": token_registry.password},
        f"https://{redirector.host}/v1/": auth_entry(*REDIRECT_USER),
    }}))  # fmt: skip
    config = (
        "deadlineSeconds: 10\n"
        "policies: {reloadIntervalSeconds: 0}\n"
        "registries:\n"
        f'  "{auth_registry.host}": {{insecure: true, credentials: "{secret}"}}\n'
        f'  "localhost:{port_of(auth_registry.host)}": {{insecure: true}}\n'
        f'  "{token_registry.host}": {{insecure: true, credentials: "{secret}"}}\n'
        f'  "localhost:{port_of(token_registry.host)}": {{insecure: true}}\n'
        f'  "{tls_registry.host}": {{ca: "{tls_registry.ca}"}}\n'
        f'  "{redirector.host}": {{insecure: true, credentials: "{secret}"}}\n'
    )
    server = start_server(tmp, policies, config)
    yield server
    assert stop_server(server) == 0


def signed_image(registry: Registry, repository: str, *, name_host: str | None = None) -> str:
    """Push and sign an image; return its tag reference under ``name_host`` (default: the
    registry's own host), which is also the repository the signature names."""
    host = name_host or registry.host
    _, digest = small_image(registry, repository)
    push_signature(registry, repository, digest, RELEASE, reference=f"{host}/{repository}")
    return f"{host}/{repository}:v1"


def denial(server: Server, image: str) -> str:
    message = server.denial(image)
    assert message.startswith(f'image {image} denied by policy "signed": ')
    assert "no signature found" not in message
    return message


def test_htpasswd_registry_with_credentials_file_admits(
    auth_registry: Registry, auth_server: Server
) -> None:
    image = signed_image(auth_registry, "acme/basic")
    assert auth_server.decide(image)["allowed"] is True


def test_htpasswd_registry_without_credentials_denies(
    auth_registry: Registry, auth_server: Server
) -> None:
    host = f"localhost:{port_of(auth_registry.host)}"
    image = signed_image(auth_registry, "acme/basic-anon", name_host=host)
    message = denial(auth_server, image)
    assert f"authentication to {host} failed for acme/basic-anon; tried: anonymous" in message
    assert "(credentials required)" in message


def test_token_registry_admits_and_reuses_its_token(
    token_registry: Registry, auth_server: Server
) -> None:
    tokens = token_registry.token_server
    assert tokens is not None
    image = signed_image(token_registry, "acme/token")
    before = tokens.served
    assert auth_server.decide(image)["allowed"] is True
    first = tokens.served
    assert first > before, "the registry was reached without a token"
    assert tokens.log[-1]["user"] == token_registry.username
    assert tokens.log[-1]["scopes"] == ["repository:acme/token:pull"]
    assert auth_server.decide(image)["allowed"] is True
    assert tokens.served == first, "the second review fetched a new token"


def test_token_registry_without_credentials_denies(
    token_registry: Registry, auth_server: Server
) -> None:
    host = f"localhost:{port_of(token_registry.host)}"
    image = signed_image(token_registry, "acme/token-anon", name_host=host)
    message = denial(auth_server, image)
    assert (
        f"authentication to {host} failed for acme/token-anon; "
        f"tried: anonymous (401 Unauthorized)" in message
    )


def test_tls_registry_with_its_ca_admits(tls_registry: Registry, auth_server: Server) -> None:
    image = signed_image(tls_registry, "acme/tls")
    assert auth_server.decide(image)["allowed"] is True


def test_tls_registry_without_its_ca_denies(tls_registry: Registry, auth_server: Server) -> None:
    host = f"localhost:{port_of(tls_registry.host)}"
    image = signed_image(tls_registry, "acme/tls-untrusted", name_host=host)
    message = denial(auth_server, image)
    assert f"TLS with {host} failed" in message
    assert "its TLS certificate is not trusted (unable to get local issuer certificate)" in message


def test_redirect_to_another_host_does_not_carry_credentials(
    registry: Registry, redirector: _Recording, store: _Recording, auth_server: Server
) -> None:
    image = signed_image(registry, "acme/redirected", name_host=redirector.host)
    assert auth_server.decide(image)["allowed"] is True
    fronted = [seen for seen in redirector.seen if "/acme/redirected/" in seen[1]]
    stored = [seen for seen in store.seen if "/acme/redirected/" in seen[1]]
    assert fronted, "the redirector was never asked"
    assert all("Authorization" in headers for _, _, headers in fronted)
    assert {method for method, _, _ in stored} >= {"HEAD", "GET"}
    leaked = [(m, p) for m, p, headers in stored if "Authorization" in headers]
    assert leaked == []


def test_credentials_file_errors_stop_the_server_from_starting(
    tmp_path: Path,
) -> None:
    secret = tmp_path / "config.json"
    secret.write_text(json.dumps({"auths": {"other.example": auth_entry("u", "p")}}))
    config = f'registries: {{"registry.example:5000": {{credentials: "{secret}"}}}}\n'
    policies = tmp_path / "policies"
    policies.mkdir()
    (policies / "p.yaml").write_text(policy_yaml())
    with pytest.raises(pytest.fail.Exception, match=r"has no entry for registry\.example:5000"):
        start_server(tmp_path, policies, config)


def test_token_registry_checks_the_token_signature(
    token_registry: Registry, tmp_path: Path
) -> None:
    signed_image(token_registry, "acme/forged")
    tokens = token_registry.token_server
    assert tokens is not None
    access = [{"type": "repository", "name": "acme/forged", "actions": ["pull"]}]
    forger = TokenServer(tmp_path, {}, service=tokens.service, issuer=tokens.issuer)
    url = f"{token_registry.url}/v2/acme/forged/manifests/v1"
    for minted, status in ((tokens.token("x", access, tokens.service), 200),
                           (forger.token("x", access, tokens.service), 401),
                           (tokens.token("x", [], tokens.service), 401)):  # fmt: skip
        headers = {"Authorization": f"Bearer {minted}", "Accept": OCI_MANIFEST}
        assert requests.get(url, headers=headers, timeout=10).status_code == status
    forger.stop()
