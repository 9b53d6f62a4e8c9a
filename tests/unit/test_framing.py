"""webhook.framing: where a request ends, fed whole, byte by byte, or hostile."""

from __future__ import annotations

import pytest

from webhook.framing import FramingError, RequestFramer

HEAD = b"POST /validate HTTP/1.1\r\nHost: x\r\n"


def end_of(data: bytes, max_head: int = 1024, max_body: int = 100) -> int | None:
    return RequestFramer(max_head, max_body).feed(data)


def end_fed_bytewise(data: bytes, max_head: int = 1024, max_body: int = 100) -> int | None:
    """Feed one more byte at a time, as a trickling client sends them."""
    framer = RequestFramer(max_head, max_body)
    for n in range(1, len(data) + 1):
        end = framer.feed(data[:n])
        if end is not None:
            return end
    return None


@pytest.mark.parametrize("feed", [end_of, end_fed_bytewise])
@pytest.mark.parametrize(
    "request_bytes",
    [
        b"GET / HTTP/1.1\r\n\r\n",
        HEAD + b"Content-Length: 5\r\n\r\nhello",
        HEAD + b"content-length:  5 \r\n\r\nhello",
        HEAD + b"Content-Length: 0\r\n\r\n",
        HEAD + b"Transfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
        HEAD + b"Transfer-Encoding: gzip, chunked\r\n\r\n3;x=y\r\nabc\r\n0\r\nT: 1\r\n\r\n",
        # Framings gunicorn refuses from the head alone: nothing more is awaited.
        HEAD + b"Content-Length: 5\r\nContent-Length: 6\r\n\r\n",
        HEAD + b"Content-Length: -5\r\n\r\n",
        HEAD + b"Transfer-Encoding: gzip\r\n\r\n",
    ],
)
def test_complete_requests(feed: object, request_bytes: bytes) -> None:
    assert callable(feed)
    assert feed(request_bytes) == len(request_bytes)
    # Whatever follows (a pipelined request) is not part of it.
    assert end_of(request_bytes + b"GET / HTTP/1.1\r\n\r\n") == len(request_bytes)


@pytest.mark.parametrize(
    "partial",
    [
        b"",
        b"POST /validate HT",
        HEAD,
        HEAD + b"Content-Length: 5\r\n\r\nhell",
        HEAD + b"Transfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n",
        HEAD + b"Transfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n",
        HEAD + b"Transfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\nT: 1\r\n",
    ],
)
def test_incomplete_requests_wait_for_more(partial: bytes) -> None:
    assert end_of(partial) is None
    assert end_fed_bytewise(partial) is None


@pytest.mark.parametrize(
    ("data", "status", "message"),
    [
        (b"GET / HTTP/1.1\r\nX: " + b"a" * 2000, 431, "head is longer than 1024 bytes"),
        (b"GET / HTTP/1.1\r\nX: " + b"a" * 1100 + b"\r\n\r\n", 431, "longer than 1024"),
        (HEAD + b"Content-Length: 101\r\n\r\n", 413, "the body is larger than 100 bytes"),
        (HEAD + b"Content-Length: 99999999999999999999\r\n\r\n", 413, "larger than 100"),
        (HEAD + b"Transfer-Encoding: chunked\r\n\r\n65\r\n", 413, "larger than 100"),
        (HEAD + b"Transfer-Encoding: chunked\r\n\r\n0x5\r\n", 400, "invalid chunk size"),
        (HEAD + b"Transfer-Encoding: chunked\r\n\r\n-5\r\n", 400, "invalid chunk size"),
        (HEAD + b"Transfer-Encoding: chunked\r\n\r\n" + b"0" * 1100, 400, "too long"),
    ],
)
def test_refused_before_the_rest_arrives(data: bytes, status: int, message: str) -> None:
    with pytest.raises(FramingError, match=message) as refused:
        end_of(data)
    assert refused.value.status == status


def test_many_small_chunks_cost_linear_work() -> None:
    """A body of 20,000 one-byte chunks, fed as it trickles in, is scanned once."""
    body = b"1\r\nx\r\n" * 20_000 + b"0\r\n\r\n"
    data = HEAD + b"Transfer-Encoding: chunked\r\n\r\n" + body
    framer = RequestFramer(1024, 100_000)
    for n in range(len(HEAD), len(data), 6):
        assert framer.feed(data[:n]) is None
    assert framer.feed(data) == len(data)


@pytest.mark.parametrize(
    ("head", "expected"),
    [
        (HEAD + b"Expect: 100-continue\r\nContent-Length: 5\r\n\r\n", True),
        (HEAD + b"expect:  100-Continue \r\nTransfer-Encoding: chunked\r\n\r\n", True),
        (b"POST / HTTP/1.0\r\nExpect: 100-continue\r\nContent-Length: 5\r\n\r\n", False),
        (HEAD + b"Content-Length: 5\r\n\r\n", False),
    ],
)
def test_100_continue_is_awaited_only_before_the_body(head: bytes, expected: bool) -> None:
    framer = RequestFramer(1024, 100)
    assert framer.feed(head) is None
    assert framer.awaits_continue(head) is expected
    assert framer.awaits_continue(head + b"h") is False
