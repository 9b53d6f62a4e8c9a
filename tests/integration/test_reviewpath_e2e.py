"""POST /validate and /mutate below Flask (webhook.serving.reviewpath), through the real server.

The review paths skip Flask's routing, so what Flask did for them must still
hold: the query string the API server adds plays no part, other paths and
methods are Flask's (404, 405 with Allow), the body limit answers 413 however
the body is framed, and bodies are read with orjson yet mean what the standard
library read (NaN, lone surrogates, a byte order mark are reviews, not 400s).
"""

from __future__ import annotations

import http.client
import json
import socket
import ssl
import time
import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from tests.integration.conftest import Server, e2e_policies, start_server, stop_server
from tests.support.kube import pod_spec, review, workload

pytestmark = pytest.mark.e2e

LIMIT = 64 * 1024
GOOD = "quay.io/acme/api:1.0"
BAD = "docker.io/library/nginx:1.27"
TOO_LARGE = {"error": f"the body is larger than {LIMIT} bytes"}


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    tmp = tmp_path_factory.mktemp("reviewpath")
    config = f"policies: {{reloadIntervalSeconds: 0}}\nmaxRequestBytes: {LIMIT}\n"
    running = start_server(tmp, e2e_policies(tmp), config)
    yield running
    stop_server(running)


def body_of(image: str, uid: str | None = None) -> dict[str, Any]:
    return review(workload("Deployment", pod_spec(image)), uid=uid)


def send(
    server: Server,
    method: str,
    path: str,
    body: bytes = b"",
    headers: dict[str, str] | None = None,
    *,
    raw_body: bytes | None = None,
) -> tuple[int, http.client.HTTPMessage, bytes]:
    """One request on a new TLS connection; ``raw_body`` goes out as it is (chunked framing)."""
    port = int(server.url.rsplit(":", 1)[1])
    context = ssl.create_default_context(cafile=str(server.ca))
    with (
        socket.create_connection(("127.0.0.1", port), timeout=10) as plain,
        context.wrap_socket(plain, server_hostname="localhost") as sock,
    ):
        fields = {"Host": "localhost", "Content-Type": "application/json", **(headers or {})}
        if raw_body is None:
            fields["Content-Length"] = str(len(body))
        head = f"{method} {path} HTTP/1.1\r\n"
        head += "".join(f"{name}: {value}\r\n" for name, value in fields.items()) + "\r\n"
        sock.sendall(head.encode() + (body if raw_body is None else raw_body))
        response = http.client.HTTPResponse(sock)  # type: ignore[arg-type]
        response.begin()
        return response.status, response.headers, response.read()


def answer(server: Server, path: str, body: bytes, **kwargs: Any) -> dict[str, Any]:
    """The AdmissionResponse to ``body`` posted to ``path``; it must be a 200."""
    status, _, data = send(server, "POST", path, body, **kwargs)
    assert status == 200, data
    response: dict[str, Any] = json.loads(data)["response"]
    return response


def chunked(data: bytes, size: int = 4096) -> bytes:
    pieces = [data[i : i + size] for i in range(0, len(data), size)]
    return b"".join(b"%X\r\n%s\r\n" % (len(p), p) for p in pieces) + b"0\r\n\r\n"


def decision(response: dict[str, Any]) -> tuple[Any, ...]:
    """What a response decides, without its uid."""
    return response["allowed"], response.get("status"), response.get("warnings")


def test_the_query_string_plays_no_part(server: Server) -> None:
    for image, allowed in ((GOOD, True), (BAD, False)):
        plain = answer(server, "/validate", json.dumps(body_of(image)).encode())
        uid = str(uuid.uuid4())
        queried = answer(server, "/validate?timeout=10s", json.dumps(body_of(image, uid)).encode())
        assert queried["uid"] == uid
        assert queried["allowed"] is allowed
        assert decision(queried) == decision(plain)
    weird = answer(server, "/validate?timeout=10s&x=%00&&=", json.dumps(body_of(BAD)).encode())
    assert weird["allowed"] is False


@pytest.mark.parametrize("path", ["/validate/", "/Validate", "/VALIDATE", "/mutate/", "/validat"])
def test_near_miss_paths_are_not_reviews(server: Server, path: str) -> None:
    status, _, data = send(server, "POST", path, json.dumps(body_of(GOOD)).encode())
    assert status == 404, data
    assert "response" not in json.loads(data)


@pytest.mark.parametrize("path", ["/validate", "/mutate", "/validate?timeout=10s"])
@pytest.mark.parametrize("method", ["GET", "PUT", "DELETE", "PATCH"])
def test_other_methods_get_405_naming_post(server: Server, method: str, path: str) -> None:
    status, headers, data = send(server, method, path, json.dumps(body_of(GOOD)).encode())
    assert status == 405, data
    allowed = {m.strip() for m in headers["Allow"].split(",")}
    assert "POST" in allowed and method not in allowed
    assert "response" not in json.loads(data)


@pytest.mark.parametrize("path", ["/validate", "/mutate"])
def test_a_body_at_the_limit_is_answered_and_one_byte_more_is_413(
    server: Server, path: str
) -> None:
    text = json.dumps(body_of(GOOD)).encode()
    padded = text[:-1] + b" " * (LIMIT - len(text)) + b"}"
    assert len(padded) == LIMIT
    assert answer(server, path, padded)["allowed"] is True
    status, _, data = send(server, "POST", path, padded + b" ")
    assert status == 413
    assert json.loads(data) == TOO_LARGE
    assert answer(server, path, text)["allowed"] is True  # the server answers on


@pytest.mark.parametrize("path", ["/validate", "/mutate"])
def test_a_chunked_body_under_the_limit_is_answered(server: Server, path: str) -> None:
    body = json.dumps(body_of(BAD if path == "/validate" else GOOD)).encode()
    response = answer(
        server, path, b"", headers={"Transfer-Encoding": "chunked"}, raw_body=chunked(body, 97)
    )
    assert response["allowed"] is (path == "/mutate")


@pytest.mark.parametrize("path", ["/validate", "/mutate"])
def test_a_chunked_body_over_the_limit_is_413(server: Server, path: str) -> None:
    text = json.dumps(body_of(GOOD)).encode()
    padded = text[:-1] + b" " * (LIMIT + 1 - len(text)) + b"}"
    status, _, data = send(
        server,
        "POST",
        path,
        headers={"Transfer-Encoding": "chunked"},
        raw_body=chunked(padded),
    )
    assert status == 413
    assert json.loads(data) == TOO_LARGE
    assert answer(server, path, text)["allowed"] is True


@pytest.mark.parametrize("path", ["/validate", "/mutate"])
@pytest.mark.parametrize("data", [b"not json", b"", b"{", b'{"a": 1} {"b": 2}', b"\xff\xfe\x00"])
def test_a_body_that_is_not_json_is_400(server: Server, path: str, data: bytes) -> None:
    status, _, body = send(server, "POST", path, data)
    assert status == 400
    assert json.loads(body) == {"error": "the body is not valid JSON"}


@pytest.mark.parametrize("path", ["/validate", "/mutate"])
def test_json_that_is_not_a_review_is_400_naming_the_field(server: Server, path: str) -> None:
    body = body_of(GOOD)
    body["request"]["uid"] = 7
    status, _, data = send(server, "POST", path, json.dumps(body).encode())
    assert status == 400
    error = json.loads(data)["error"]
    assert error.startswith("not an AdmissionReview trustgate can answer")
    assert "request.uid" in error


def spliced(image: str, value: str) -> bytes:
    """A review of ``image`` whose pod spec holds ``value`` (raw JSON text) in an extra field."""
    text = json.dumps(body_of(image))
    anchor = '"restartPolicy": "Always"'
    assert anchor in text
    return text.replace(anchor, f'"x-odd": {value}, {anchor}').encode()


def with_annotation(image: str, escaped: str) -> bytes:
    """A review of ``image`` whose Deployment carries an annotation of raw JSON string text."""
    body = body_of(image)
    body["request"]["object"]["metadata"]["annotations"] = {"note": "PLACEHOLDER"}
    return json.dumps(body).replace('"PLACEHOLDER"', f'"{escaped}"').encode()


ODD_BUT_READ_BEFORE = {
    "NaN": lambda image: spliced(image, "NaN"),
    "Infinity": lambda image: spliced(image, "[Infinity, -Infinity]"),
    "lone surrogate": lambda image: with_annotation(image, "\\ud800"),
    "lone low surrogate": lambda image: with_annotation(image, "x\\udfffy"),
    "byte order mark": lambda image: b"\xef\xbb\xbf" + json.dumps(body_of(image)).encode(),
    "UTF-16": lambda image: json.dumps(body_of(image)).encode("utf-16"),
    "integer past 64 bits": lambda image: spliced(image, str(2**70)),
}


@pytest.mark.parametrize("case", sorted(ODD_BUT_READ_BEFORE))
def test_bodies_orjson_refuses_are_reviews_as_before(server: Server, case: str) -> None:
    """The standard library read these; they must still get a decision, and the same one."""
    make = ODD_BUT_READ_BEFORE[case]
    for image, allowed in ((GOOD, True), (BAD, False)):
        body = make(image)
        json.loads(body)  # what the server read before: a review
        odd = answer(server, "/validate", body)
        plain = answer(server, "/validate", json.dumps(body_of(image)).encode())
        assert odd["allowed"] is allowed, odd
        assert decision(odd) == decision(plain)
    assert answer(server, "/mutate", make(GOOD))["allowed"] is True


def nested(depth: int) -> str:
    return "[" * depth + "]" * depth


@pytest.mark.parametrize("depth", [900, 2000, 30000])
@pytest.mark.parametrize("path", ["/validate", "/mutate"])
def test_deep_nesting_is_a_denial_or_400_never_a_500_or_a_hang(
    server: Server, path: str, depth: int
) -> None:
    started = time.monotonic()
    status, _, data = send(server, "POST", path, spliced(BAD, nested(depth)))
    assert time.monotonic() - started < 5
    assert status in (200, 400), data
    if status == 200:
        assert json.loads(data)["response"]["allowed"] is (path == "/mutate")
    else:
        assert "error" in json.loads(data)
    assert answer(server, "/validate", json.dumps(body_of(GOOD)).encode())["allowed"] is True
