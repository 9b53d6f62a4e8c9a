"""RegistryClient against a small local HTTP registry whose answers each test scripts."""

from __future__ import annotations

import datetime
import hashlib
import ipaddress
import json
import ssl
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from webhook.core.deadline import Deadline
from webhook.core.errors import UpstreamError
from webhook.core.reference import ImageRef
from webhook.registry.client import (
    MANIFEST_ACCEPT,
    OCI_INDEX,
    OCI_MANIFEST,
    NotFound,
    RegistryClient,
    RegistrySettings,
)
from webhook.registry.network import Network, NetworkLimits

REPO = "acme/app"


@dataclass
class Request:
    """What the fake registry received."""

    method: str
    path: str
    headers: dict[str, str]
    client_port: int


@dataclass
class Reply:
    """What the fake registry sends: ``chunks`` are sent chunked, with ``pause`` between them."""

    status: int = 200
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes = b""
    chunks: Iterable[bytes] | None = None
    delay: float = 0.0
    pause: float = 0.0


Responder = Callable[[Request], Reply]


class FakeRegistry:
    """A ThreadingHTTPServer on 127.0.0.1:0 answering from ``routes`` ("METHOD /path").

    With ``tls`` it speaks HTTPS with that server context.
    """

    def __init__(self, tls: ssl.SSLContext | None = None) -> None:
        self.routes: dict[str, Reply | Responder] = {}
        self.requests: list[Request] = []
        self.written = 0
        registry = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: object) -> None:
                pass

            def do_GET(self) -> None:
                registry._answer(self)

            do_HEAD = do_GET

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.scheme = "http"
        if tls is not None:
            self.server.socket = tls.wrap_socket(self.server.socket, server_side=True)
            self.scheme = "https"
        self.thread = threading.Thread(
            target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )
        self.thread.start()

    @property
    def host(self) -> str:
        """``127.0.0.1:PORT``, as an image reference spells the registry."""
        return f"127.0.0.1:{self.server.server_address[1]}"

    @property
    def url(self) -> str:
        """The server's base URL."""
        return f"{self.scheme}://{self.host}"

    def ref(self, tag: str | None = "1.0", digest: str | None = None) -> ImageRef:
        """An image reference on this registry."""
        return ImageRef(self.host, REPO, tag, digest)

    def hits(self, method: str, path: str) -> list[Request]:
        """The requests received for ``method path`` (path without query)."""
        return [r for r in self.requests if r.method == method and r.path.split("?")[0] == path]

    def close(self) -> None:
        """Stop serving."""
        self.server.shutdown()
        self.server.server_close()

    def _answer(self, handler: BaseHTTPRequestHandler) -> None:
        headers = dict(handler.headers.items())
        request = Request(handler.command, handler.path, headers, handler.client_address[1])
        self.requests.append(request)
        route = self.routes.get(f"{request.method} {request.path}")
        if route is None:
            route = self.routes.get(f"{request.method} {request.path.split('?')[0]}")
        if route is None:
            reply = Reply(404, body=b'{"errors":[{"code":"NAME_UNKNOWN"}]}')
        elif isinstance(route, Reply):
            reply = route
        else:
            reply = route(request)
        time.sleep(reply.delay)
        try:
            handler.send_response(reply.status)
            for name, value in reply.headers.items():
                handler.send_header(name, value)
            if reply.chunks is not None:
                handler.send_header("Transfer-Encoding", "chunked")
            elif "Content-Length" not in reply.headers:
                handler.send_header("Content-Length", str(len(reply.body)))
            handler.end_headers()
            if request.method == "HEAD":
                return
            if reply.chunks is None:
                handler.wfile.write(reply.body)
                self.written += len(reply.body)
                return
            for chunk in reply.chunks:
                handler.wfile.write(b"%x\r\n%s\r\n" % (len(chunk), chunk))
                handler.wfile.flush()
                self.written += len(chunk)
                time.sleep(reply.pause)
            handler.wfile.write(b"0\r\n\r\n")
        except OSError:
            handler.close_connection = True


@pytest.fixture
def registry() -> Iterator[FakeRegistry]:
    """A fresh fake registry per test."""
    server = FakeRegistry()
    yield server
    server.close()


def make_client(registry: FakeRegistry, **kwargs: object) -> RegistryClient:
    """A client that may speak plain HTTP to ``registry``; keyword arguments go to settings."""
    settings = RegistrySettings(insecure=True, **kwargs)  # type: ignore[arg-type]
    return RegistryClient({registry.host: settings}, timeout=2.0)


def manifest_body(**extra: object) -> bytes:
    """A small OCI image manifest."""
    data = {"schemaVersion": 2, "mediaType": OCI_MANIFEST, "layers": [], **extra}
    return json.dumps(data).encode()


def sha256(body: bytes) -> str:
    """The sha256 digest of ``body``."""
    return "sha256:" + hashlib.sha256(body).hexdigest()


MANIFEST = manifest_body()
DIGEST = sha256(MANIFEST)
TAG_PATH = f"/v2/{REPO}/manifests/1.0"
DIGEST_PATH = f"/v2/{REPO}/manifests/{DIGEST}"


def test_resolve_tag_with_head(registry: FakeRegistry) -> None:
    registry.routes[f"HEAD {TAG_PATH}"] = Reply(headers={"Docker-Content-Digest": DIGEST})
    assert make_client(registry).resolve(registry.ref(), Deadline(5)) == DIGEST
    (head,) = registry.requests
    assert head.method == "HEAD"
    assert set(head.headers["Accept"].split(", ")) == set(MANIFEST_ACCEPT.split(", "))
    assert len(MANIFEST_ACCEPT.split(", ")) == 4


def test_resolve_digest_reference_needs_no_request(registry: FakeRegistry) -> None:
    ref = registry.ref(tag=None, digest=DIGEST)
    assert make_client(registry).resolve(ref, Deadline(5)) == DIGEST
    assert registry.requests == []


def test_resolve_falls_back_to_get_when_head_is_refused(registry: FakeRegistry) -> None:
    registry.routes[f"HEAD {TAG_PATH}"] = Reply(405)
    registry.routes[f"GET {TAG_PATH}"] = Reply(body=MANIFEST)
    assert make_client(registry).resolve(registry.ref(), Deadline(5)) == DIGEST
    assert [r.method for r in registry.requests] == ["HEAD", "GET"]
    assert len({r.client_port for r in registry.requests}) == 1, "connection not reused"


def test_resolve_missing_tag_is_not_found(registry: FakeRegistry) -> None:
    with pytest.raises(NotFound, match=r"tag 1\.0 not found"):
        make_client(registry).resolve(registry.ref(), Deadline(5))


def test_manifest_by_digest(registry: FakeRegistry) -> None:
    registry.routes[f"GET {DIGEST_PATH}"] = Reply(body=MANIFEST)
    manifest = make_client(registry).manifest(registry.ref(), DIGEST, Deadline(5))
    assert (manifest.digest, manifest.media_type, manifest.body) == (DIGEST, OCI_MANIFEST, MANIFEST)
    assert manifest.data["schemaVersion"] == 2


def test_manifest_digest_mismatch_is_rejected(registry: FakeRegistry) -> None:
    registry.routes[f"GET {DIGEST_PATH}"] = Reply(body=manifest_body(annotations={"x": "y"}))
    with pytest.raises(UpstreamError, match="does not match its digest"):
        make_client(registry).manifest(registry.ref(), DIGEST, Deadline(5))


#: A manifest, an index or a referrers page nested 3,000 levels deep: 6 kB anyone may push.
DEEP = b'{"schemaVersion":2,"x":' + b"[" * 3000 + b"]" * 3000 + b"}"


@pytest.mark.parametrize("what", ["manifest", "referrers"])
def test_json_nested_3000_levels_is_an_upstream_error_naming_the_host(
    registry: FakeRegistry, what: str
) -> None:
    client = make_client(registry)
    digest = sha256(DEEP)
    expected = rf"{what}.* from {registry.host} is not JSON: "
    with pytest.raises(UpstreamError, match=expected + "it nests too deeply"):
        if what == "referrers":
            path = f"/v2/{REPO}/referrers/{DIGEST}"
            registry.routes[f"GET {path}"] = Reply(body=DEEP, headers={"Content-Type": OCI_INDEX})
            client.referrers(registry.ref(), DIGEST, Deadline(5))
        else:
            registry.routes[f"GET /v2/{REPO}/manifests/{digest}"] = Reply(body=DEEP)
            client.manifest(registry.ref(), digest, Deadline(5))


def test_calls_take_the_networks_call_timeout_unless_given_one() -> None:
    network = Network(NetworkLimits(call_seconds=1.5))
    assert RegistryClient(network=network)._timeout == 1.5
    assert RegistryClient(network=network, timeout=3.0)._timeout == 3.0


def test_manifest_by_tag_is_checked_against_the_digest_header(registry: FakeRegistry) -> None:
    other = sha256(b"something else")
    registry.routes[f"GET {TAG_PATH}"] = Reply(
        body=MANIFEST, headers={"Docker-Content-Digest": other}
    )
    with pytest.raises(UpstreamError, match=f"does not match its digest {other}"):
        make_client(registry).manifest(registry.ref(), "1.0", Deadline(5))


def test_missing_manifest_is_not_found(registry: FakeRegistry) -> None:
    with pytest.raises(NotFound, match="not found"):
        make_client(registry).manifest(registry.ref(), DIGEST, Deadline(5))


def test_reference_must_be_a_tag_or_digest(registry: FakeRegistry) -> None:
    with pytest.raises(UpstreamError, match="neither a tag nor"):
        make_client(registry).manifest(registry.ref(), "../../etc", Deadline(5))
    assert registry.requests == []


def endless(size: int = 64 * 1024, total: int = 64 * 1024 * 1024) -> Iterator[bytes]:
    """``total`` bytes of ``size``-byte chunks."""
    for _ in range(total // size):
        yield b"x" * size


@pytest.mark.parametrize("announced", [True, False], ids=["content-length", "chunked"])
def test_oversized_manifest_is_rejected_without_reading_it(
    registry: FakeRegistry, announced: bool
) -> None:
    total = 64 * 1024 * 1024
    if announced:
        reply = Reply(headers={"Content-Length": str(total)}, body=b"x" * total)
    else:
        reply = Reply(chunks=endless(total=total))
    registry.routes[f"GET {DIGEST_PATH}"] = reply
    client = RegistryClient(
        {registry.host: RegistrySettings(insecure=True)}, max_manifest_bytes=1024
    )
    with pytest.raises(UpstreamError, match=f"manifest from {registry.host} is larger than 1024"):
        client.manifest(registry.ref(), DIGEST, Deadline(5))
    time.sleep(0.2)
    assert registry.written < total / 4


def test_retries_after_429(registry: FakeRegistry) -> None:
    replies = iter([Reply(429, headers={"Retry-After": "0"})])

    def answer(_: Request) -> Reply:
        return next(replies, Reply(headers={"Docker-Content-Digest": DIGEST}))

    registry.routes[f"HEAD {TAG_PATH}"] = answer
    assert make_client(registry).resolve(registry.ref(), Deadline(5)) == DIGEST
    assert len(registry.hits("HEAD", TAG_PATH)) == 2


def test_always_429_is_rate_limited_not_not_found(registry: FakeRegistry) -> None:
    registry.routes[f"HEAD {TAG_PATH}"] = Reply(429)
    started = time.monotonic()
    with pytest.raises(UpstreamError, match=f"rate limited by {registry.host}") as caught:
        make_client(registry).resolve(registry.ref(), Deadline(5))
    assert not isinstance(caught.value, NotFound)
    assert len(registry.hits("HEAD", TAG_PATH)) == 3
    assert time.monotonic() - started < 2


def test_always_503_names_the_status(registry: FakeRegistry) -> None:
    registry.routes[f"GET {DIGEST_PATH}"] = Reply(503)
    with pytest.raises(UpstreamError, match=f"{registry.host} answered 503"):
        make_client(registry).manifest(registry.ref(), DIGEST, Deadline(5))
    assert len(registry.requests) == 3


def test_long_retry_after_is_not_waited_for(registry: FakeRegistry) -> None:
    registry.routes[f"HEAD {TAG_PATH}"] = Reply(429, headers={"Retry-After": "120"})
    with pytest.raises(UpstreamError, match="rate limited"):
        make_client(registry).resolve(registry.ref(), Deadline(5))
    assert len(registry.requests) == 1


def test_retries_stop_at_the_deadline(registry: FakeRegistry) -> None:
    registry.routes[f"HEAD {TAG_PATH}"] = Reply(503)
    client = RegistryClient({registry.host: RegistrySettings(insecure=True)}, retries=10)
    started = time.monotonic()
    with pytest.raises(UpstreamError, match="answered 503"):
        client.resolve(registry.ref(), Deadline(1))
    assert time.monotonic() - started < 1.5


def test_server_sleeping_past_the_deadline_times_out(registry: FakeRegistry) -> None:
    registry.routes[f"HEAD {TAG_PATH}"] = Reply(delay=4, headers={"Docker-Content-Digest": DIGEST})
    started = time.monotonic()
    with pytest.raises(UpstreamError, match=f"{registry.host}.*timed out"):
        make_client(registry).resolve(registry.ref(), Deadline(1))
    assert time.monotonic() - started < 2


def test_body_trickling_past_the_deadline_times_out(registry: FakeRegistry) -> None:
    registry.routes[f"GET {DIGEST_PATH}"] = Reply(chunks=endless(size=1, total=100), pause=0.1)
    started = time.monotonic()
    with pytest.raises(UpstreamError, match=f"{registry.host} timed out"):
        make_client(registry).manifest(registry.ref(), DIGEST, Deadline(1))
    assert time.monotonic() - started < 2


def test_spent_deadline_sends_nothing(registry: FakeRegistry) -> None:
    with pytest.raises(UpstreamError, match="timed out"):
        make_client(registry).resolve(registry.ref(), Deadline(0))
    assert registry.requests == []


def test_plain_http_is_refused_unless_insecure(registry: FakeRegistry) -> None:
    client = RegistryClient(timeout=2.0)
    with pytest.raises(UpstreamError, match="TLS"):
        client.resolve(registry.ref(), Deadline(5))
    assert registry.requests == []


BLOB = b'{"payload": "signature"}'
BLOB_DIGEST = sha256(BLOB)
BLOB_PATH = f"/v2/{REPO}/blobs/{BLOB_DIGEST}"


def test_blob_is_verified(registry: FakeRegistry) -> None:
    registry.routes[f"GET {BLOB_PATH}"] = Reply(body=BLOB)
    client = make_client(registry)
    assert client.blob(registry.ref(), BLOB_DIGEST, Deadline(5)) == BLOB
    registry.routes[f"GET {BLOB_PATH}"] = Reply(body=BLOB + b" ")
    with pytest.raises(UpstreamError, match=r"blob from .* does not match"):
        client.blob(registry.ref(), BLOB_DIGEST, Deadline(5))
    with pytest.raises(UpstreamError, match="larger than 4 bytes"):
        client.blob(registry.ref(), BLOB_DIGEST, Deadline(5), max_bytes=4)


def test_basic_credentials_are_sent(registry: FakeRegistry) -> None:
    registry.routes[f"GET {BLOB_PATH}"] = Reply(body=BLOB)
    client = make_client(registry, username="alice", password="s3cret")
    client.blob(registry.ref(), BLOB_DIGEST, Deadline(5))
    (request,) = registry.requests
    assert request.headers["Authorization"] == "Basic YWxpY2U6czNjcmV0"


def test_redirect_to_another_host_drops_authorization(registry: FakeRegistry) -> None:
    storage = FakeRegistry()
    try:
        storage.routes["GET /blob-data"] = Reply(body=BLOB)
        registry.routes[f"GET {BLOB_PATH}"] = Reply(307, {"Location": f"{storage.url}/blob-data"})
        client = make_client(registry, username="alice", password="s3cret")
        assert client.blob(registry.ref(), BLOB_DIGEST, Deadline(5)) == BLOB
        assert "Authorization" in registry.requests[0].headers
        (fetched,) = storage.requests
        assert "Authorization" not in fetched.headers
    finally:
        storage.close()


def test_redirect_on_the_same_host_keeps_authorization(registry: FakeRegistry) -> None:
    registry.routes["GET /elsewhere"] = Reply(body=BLOB)
    registry.routes[f"GET {BLOB_PATH}"] = Reply(302, {"Location": "/elsewhere"})
    client = make_client(registry, username="alice", password="s3cret")
    assert client.blob(registry.ref(), BLOB_DIGEST, Deadline(5)) == BLOB
    assert all("Authorization" in r.headers for r in registry.requests)


def test_redirect_loops_are_cut(registry: FakeRegistry) -> None:
    registry.routes[f"GET {BLOB_PATH}"] = Reply(302, {"Location": BLOB_PATH})
    with pytest.raises(UpstreamError, match="redirected more than 3 times"):
        make_client(registry).blob(registry.ref(), BLOB_DIGEST, Deadline(5))
    assert len(registry.requests) == 4


SIG = "application/vnd.dev.sigstore.bundle.v0.3+json"
SBOM = "application/spdx+json"
REFERRERS = [
    {"mediaType": OCI_MANIFEST, "digest": sha256(b"a"), "size": 1, "artifactType": SIG},
    {"mediaType": OCI_MANIFEST, "digest": sha256(b"b"), "size": 1, "artifactType": SBOM},
]


def index_body(manifests: list[dict[str, object]]) -> bytes:
    """An OCI image index of ``manifests``."""
    return json.dumps({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": manifests}).encode()


def test_referrers_api(registry: FakeRegistry) -> None:
    path = f"/v2/{REPO}/referrers/{DIGEST}"
    registry.routes[f"GET {path}"] = Reply(body=index_body(REFERRERS))
    client = make_client(registry)
    assert client.referrers(registry.ref(), DIGEST, Deadline(5)) == REFERRERS
    assert client.referrers(registry.ref(), DIGEST, Deadline(5), artifact_type=SIG) == [
        REFERRERS[0]
    ]
    assert registry.requests[-1].path.endswith(
        "?artifactType=application%2Fvnd.dev.sigstore.bundle.v0.3%2Bjson"
    )
    assert registry.requests[-1].headers["Accept"] == OCI_INDEX


def test_referrers_api_pages(registry: FakeRegistry) -> None:
    path = f"/v2/{REPO}/referrers/{DIGEST}"
    registry.routes[f"GET {path}"] = Reply(
        headers={"Link": f'<{path}?page=2>; rel="next"'}, body=index_body(REFERRERS[:1])
    )
    registry.routes[f"GET {path}?page=2"] = Reply(body=index_body(REFERRERS[1:]))
    assert make_client(registry).referrers(registry.ref(), DIGEST, Deadline(5)) == REFERRERS


def test_referrers_fall_back_to_the_tag_schema(registry: FakeRegistry) -> None:
    tag = DIGEST.replace(":", "-")
    registry.routes[f"GET /v2/{REPO}/manifests/{tag}"] = Reply(body=index_body(REFERRERS))
    client = make_client(registry)
    found = client.referrers(registry.ref(), DIGEST, Deadline(5), artifact_type=SBOM)
    assert found == [REFERRERS[1]]
    assert [r.path for r in registry.requests] == [
        f"/v2/{REPO}/referrers/{DIGEST}?artifactType=application%2Fspdx%2Bjson",
        f"/v2/{REPO}/manifests/{tag}",
    ]


def test_no_referrers_anywhere_is_empty(registry: FakeRegistry) -> None:
    assert make_client(registry).referrers(registry.ref(), DIGEST, Deadline(5)) == []
    assert len(registry.requests) == 2


@pytest.fixture(scope="module")
def tls_files(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A self-signed certificate for 127.0.0.1 and its key, as PEM files."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "fake registry")])
    now = datetime.datetime.now(datetime.UTC)
    public = key.public_key()
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(public)
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(hours=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(public), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(public), critical=False)
        .add_extension(
            x509.KeyUsage(True, False, False, False, False, True, False, False, False),
            critical=True,
        )
        .sign(key, hashes.SHA256())
    )
    directory = tmp_path_factory.mktemp("tls")
    cert_file, key_file = directory / "cert.pem", directory / "key.pem"
    cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return cert_file, key_file


@pytest.fixture
def tls_registry(tls_files: tuple[Path, Path]) -> Iterator[FakeRegistry]:
    """A fake registry speaking HTTPS with the self-signed certificate."""
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(*tls_files)
    server = FakeRegistry(tls=context)
    yield server
    server.close()


def test_registry_ca_is_trusted(tls_registry: FakeRegistry, tls_files: tuple[Path, Path]) -> None:
    tls_registry.routes[f"HEAD {TAG_PATH}"] = Reply(headers={"Docker-Content-Digest": DIGEST})
    client = RegistryClient({tls_registry.host: RegistrySettings(ca=tls_files[0])})
    assert client.resolve(tls_registry.ref(), Deadline(5)) == DIGEST


def test_unknown_ca_is_refused(tls_registry: FakeRegistry) -> None:
    with pytest.raises(UpstreamError, match=f"TLS with {tls_registry.host} failed"):
        RegistryClient().resolve(tls_registry.ref(), Deadline(5))
    assert tls_registry.requests == []


def test_redirect_to_plain_http_is_refused(
    tls_registry: FakeRegistry, registry: FakeRegistry, tls_files: tuple[Path, Path]
) -> None:
    registry.routes["GET /blob-data"] = Reply(body=BLOB)
    tls_registry.routes[f"GET {BLOB_PATH}"] = Reply(307, {"Location": f"{registry.url}/blob-data"})
    client = RegistryClient({tls_registry.host: RegistrySettings(ca=tls_files[0])})
    with pytest.raises(UpstreamError, match="redirected to a http URL; HTTPS is required"):
        client.blob(tls_registry.ref(), BLOB_DIGEST, Deadline(5))
    assert registry.requests == []


def test_threads_share_a_client(registry: FakeRegistry) -> None:
    registry.routes[f"GET {DIGEST_PATH}"] = Reply(body=MANIFEST)
    client = make_client(registry)
    results: list[str] = []

    def fetch() -> None:
        results.append(client.manifest(registry.ref(), DIGEST, Deadline(5)).digest)

    threads = [threading.Thread(target=fetch) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(10)
    assert results == [DIGEST] * 8


def test_connection_errors_are_retried_then_named() -> None:
    gone = FakeRegistry()
    gone.close()
    client = RegistryClient({gone.host: RegistrySettings(insecure=True)}, retries=2)
    started = time.monotonic()
    with pytest.raises(UpstreamError, match=f"cannot reach {gone.host}"):
        client.resolve(gone.ref(), Deadline(5))
    assert 0.2 + 0.4 <= time.monotonic() - started < 2


def test_referrers_fall_back_only_on_a_404_of_the_api_path(registry: FakeRegistry) -> None:
    path = f"/v2/{REPO}/referrers/{DIGEST}"
    tag = DIGEST.replace(":", "-")
    registry.routes[f"GET /v2/{REPO}/manifests/{tag}"] = Reply(body=index_body(REFERRERS))
    registry.routes[f"GET {path}"] = Reply(status=500)
    client = make_client(registry)
    with pytest.raises(UpstreamError, match="answered 500"):
        client.referrers(registry.ref(), DIGEST, Deadline(5))
    # A redirect to a path that is missing is no sign of a registry without the API.
    registry.routes[f"GET {path}"] = Reply(status=307, headers={"Location": "/elsewhere"})
    with pytest.raises(UpstreamError, match="not found"):
        client.referrers(registry.ref(), DIGEST, Deadline(5))
    assert not registry.hits("GET", f"/v2/{REPO}/manifests/{tag}")


def test_referrers_404_on_a_later_page_is_an_error(registry: FakeRegistry) -> None:
    path = f"/v2/{REPO}/referrers/{DIGEST}"
    registry.routes[f"GET {path}"] = Reply(
        headers={"Link": f'<{path}?page=2>; rel="next"'}, body=index_body(REFERRERS[:1])
    )
    registry.routes[f"GET {path}?page=2"] = Reply(status=404)
    with pytest.raises(UpstreamError, match="not found"):
        make_client(registry).referrers(registry.ref(), DIGEST, Deadline(5))
    assert not registry.hits("GET", f"/v2/{REPO}/manifests/{DIGEST.replace(':', '-')}")


def test_endless_referrers_pages_are_an_error(registry: FakeRegistry) -> None:
    path = f"/v2/{REPO}/referrers/{DIGEST}"

    def page(request: Request) -> Reply:
        number = len(registry.hits("GET", path))
        return Reply(
            headers={"Link": f'<{path}?page={number + 1}>; rel="next"'},
            body=index_body(REFERRERS[:1]),
        )

    registry.routes[f"GET {path}"] = page
    for number in range(2, 40):
        registry.routes[f"GET {path}?page={number}"] = page
    with pytest.raises(UpstreamError, match="over more than 16 pages"):
        make_client(registry).referrers(registry.ref(), DIGEST, Deadline(5))
    assert len(registry.hits("GET", path)) == 16
