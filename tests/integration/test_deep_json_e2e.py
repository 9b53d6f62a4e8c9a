"""JSON nested 3,000 levels deep, from a registry, a token endpoint or Pyxis, is a plain
denial naming the host, end to end through `trustgate serve`: no traceback, no crash.

Anyone who can push to a registry can publish such a ``.sig`` manifest (6 kB); the
standard JSON parser raises RecursionError on it, which no ``except ValueError`` catches.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from tests.integration.conftest import Server, serve_config, serving
from tests.integration.test_signatures_e2e import image
from tests.support.cosign import generate_key, public_pem, sign_b64, signature_manifest
from tests.support.cosign import simple_signing_payload as payload_of
from tests.support.pyxis import Pyxis, running_pyxis
from tests.support.registry import OCI_MANIFEST, Registry, push_blob, push_manifest
from webhook.signatures.cosign import signature_tag

pytestmark = pytest.mark.e2e

RELEASE = generate_key("ecdsa-p256")
LEVELS = 3000
DEEP = b'{"x":' * LEVELS + b"1" + b"}" * LEVELS


class DeepTokens(ThreadingHTTPServer):
    """A registry that asks for a Bearer token at its own realm, which answers DEEP."""

    daemon_threads = True

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _TokenHandler)
        self.host = f"127.0.0.1:{self.server_address[1]}"
        threading.Thread(target=self.serve_forever, daemon=True).start()


class _TokenHandler(BaseHTTPRequestHandler):
    server: DeepTokens
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def do_HEAD(self) -> None:
        self.do_GET()

    def do_GET(self) -> None:
        if self.path.startswith("/token"):
            self._answer(200, DEEP, {"Content-Type": "application/json"})
            return
        realm = f'Bearer realm="http://{self.server.host}/token",service="deep"'
        self._answer(401, b"{}", {"WWW-Authenticate": realm})

    def _answer(self, status: int, body: bytes, headers: dict[str, str]) -> None:
        self.send_response(status)
        for name, value in headers.items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)


def policy(name: str, namespace: str, host: str, spec: str) -> str:
    return (
        "apiVersion: trustgate.dev/v1alpha1\nkind: ImagePolicy\n"
        f"metadata: {{name: {name}}}\nspec:\n  mode: enforce\n"
        f'  match: {{namespaces: ["{namespace}-*"]}}\n  registries: ["{host}/**"]\n{spec}'
    )


SIGNED = "  signatures:\n    authorities:\n      - {name: release, key: {file: keys/release.pub}}\n"
FRESH = "  freshness: {minimumGrade: B, sources: [pyxis]}\n"


@pytest.fixture(scope="module")
def pyxis() -> Iterator[Pyxis]:
    with running_pyxis() as double:
        yield double


@pytest.fixture(scope="module")
def tokens() -> Iterator[DeepTokens]:
    server = DeepTokens()
    yield server
    server.shutdown()
    server.server_close()


@pytest.fixture(scope="module")
def server(
    registry: Registry, pyxis: Pyxis, tokens: DeepTokens, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Server]:
    files = {
        "keys/release.pub": public_pem(RELEASE),
        "policies.yaml": "---\n".join(
            [
                policy("signed", "sig", registry.host, SIGNED),
                policy("tokens", "tok", tokens.host, SIGNED),
                policy("fresh", "fresh", registry.host, FRESH),
            ]
        ),
    }
    extra = f"freshness: {{pyxis: {{url: '{pyxis.url}', timeoutSeconds: 2}}}}\n"
    config = serve_config(registry.host, tokens.host, deadline=4, extra=extra)
    with serving(tmp_path_factory.mktemp("deep"), files, config) as running:
        yield running


def plain_denial(server: Server, ref: str, namespace: str, *named: str) -> str:
    response = server.decide(ref, namespace=namespace)
    assert response["allowed"] is False, response
    assert response["status"]["code"] == 403, response
    message: str = response["status"]["message"]
    for text in named:
        assert text in message, message
    assert "nests too deeply" in message, message
    log = server.log_text()
    assert "Traceback" not in log and "RecursionError" not in log, log[-3000:]
    return message


def test_a_sig_manifest_nested_3000_levels_is_a_plain_denial(
    registry: Registry, server: Server
) -> None:
    ref, digest = image(registry, "acme/deep-sig", b"deep-sig")
    body = payload_of(f"{registry.host}/acme/deep-sig", digest)
    manifest, blobs = signature_manifest([(body, sign_b64(RELEASE, body))])
    for blob in blobs.values():
        push_blob(registry, "acme/deep-sig", blob)
    deep = json.dumps(manifest).encode()[:-1] + b',"x":' + DEEP + b"}"
    push_manifest(registry, "acme/deep-sig", signature_tag(digest), deep, OCI_MANIFEST)
    plain_denial(server, ref, "sig-web", registry.host, "manifest")


def test_a_token_answer_nested_3000_levels_is_a_plain_denial(
    tokens: DeepTokens, server: Server
) -> None:
    ref = f"{tokens.host}/acme/app@sha256:{'ab' * 32}"
    plain_denial(server, ref, "tok-web", tokens.host, "token endpoint")


def test_a_pyxis_answer_nested_3000_levels_is_a_plain_denial(
    registry: Registry, pyxis: Pyxis, server: Server
) -> None:
    ref, digest = image(registry, "acme/deep-pyxis", b"deep-pyxis")
    pyxis.failures[digest] = "deep"
    plain_denial(server, ref, "fresh-web", pyxis.url)
