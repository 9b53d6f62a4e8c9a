"""A response leaves the worker in one write: head and body together, as gunicorn words them."""

from __future__ import annotations

import pytest
from gunicorn.config import Config
from gunicorn.http import wsgi
from gunicorn.http.parser import RequestParser

from webhook.serving.exchange import OneWriteResponse


class Recorder:
    """A socket's sending side that keeps every ``sendall``."""

    def __init__(self) -> None:
        self.writes: list[bytes] = []

    def sendall(self, data: bytes) -> None:
        self.writes.append(bytes(data))


def parsed(method: str, version: str = "1.1") -> object:
    head = f"{method} /validate HTTP/{version}\r\nHost: trustgate\r\nContent-Length: 0\r\n\r\n"
    return next(RequestParser(Config(), [head.encode()], ("127.0.0.1", 40000)))


def respond(
    response_class: type[wsgi.Response],
    method: str,
    status: str,
    headers: list[tuple[str, str]],
    chunks: list[bytes],
) -> list[bytes]:
    sock = Recorder()
    resp = response_class(parsed(method), sock, Config())
    resp.start_response(status, headers)
    for chunk in chunks:
        resp.write(chunk)
    resp.close()
    return sock.writes


def undated(data: bytes) -> bytes:
    """The bytes without the Date header, which changes with the second."""
    return b"".join(
        line for line in data.splitlines(keepends=True) if not line.startswith(b"Date:")
    )


def test_an_answer_with_a_length_is_one_write_of_the_bytes_gunicorn_sends_in_two() -> None:
    body = b'{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview"}'
    headers = [("Content-Type", "application/json"), ("Content-Length", str(len(body)))]
    ours = respond(OneWriteResponse, "POST", "200 OK", headers, [body])
    theirs = respond(wsgi.Response, "POST", "200 OK", headers, [body])
    assert len(theirs) == 2  # what this replaces: the head, then the body
    assert len(ours) == 1
    assert ours[0].startswith(b"HTTP/1.1 200 OK\r\n")
    assert ours[0].endswith(b"\r\n\r\n" + body)
    assert undated(ours[0]) == undated(b"".join(theirs))


def test_a_body_in_pieces_sends_the_head_with_the_first_and_frames_the_chunks() -> None:
    chunks = [b'{"a":', b"1}"]
    headers = [("Content-Type", "application/json")]  # no length: chunked in HTTP/1.1
    ours = respond(OneWriteResponse, "POST", "200 OK", headers, chunks)
    theirs = respond(wsgi.Response, "POST", "200 OK", headers, chunks)
    assert len(ours) == 3  # head + first chunk, second chunk, last chunk
    assert b"Transfer-Encoding: chunked" in ours[0]
    assert ours[0].endswith(b'\r\n\r\n5\r\n{"a":\r\n')
    assert ours[1:] == [b"2\r\n1}\r\n", b"0\r\n\r\n"]
    assert undated(b"".join(ours)) == undated(b"".join(theirs))


@pytest.mark.parametrize(
    ("method", "status"), [("HEAD", "200 OK"), ("POST", "204 No Content"), ("POST", "200 OK")]
)
def test_a_response_without_body_bytes_still_sends_its_head_once(method: str, status: str) -> None:
    headers = [("Content-Length", "0")] if status != "204 No Content" else []
    ours = respond(OneWriteResponse, method, status, headers, [])
    theirs = respond(wsgi.Response, method, status, headers, [])
    assert len(ours) == 1
    assert ours[0].endswith(b"\r\n\r\n")
    assert undated(ours[0]) == undated(b"".join(theirs))


def test_body_bytes_past_the_announced_length_are_not_sent() -> None:
    headers = [("Content-Length", "2")]
    (sent,) = respond(OneWriteResponse, "POST", "200 OK", headers, [b"{}", b"extra"])
    assert sent.endswith(b"\r\n\r\n{}")


def test_http_1_0_gets_a_plain_body_and_a_close() -> None:
    sock = Recorder()
    resp = OneWriteResponse(parsed("POST", "1.0"), sock, Config())
    resp.start_response("200 OK", [("Content-Type", "application/json")])
    resp.write(b"{}")
    resp.close()
    (sent,) = sock.writes
    assert sent.startswith(b"HTTP/1.0 200 OK\r\n")
    assert b"Connection: close" in sent
    assert b"chunked" not in sent
    assert sent.endswith(b"\r\n\r\n{}")
