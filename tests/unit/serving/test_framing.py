"""webhook.serving.framing: where a request ends, fed whole, byte by byte, or hostile."""

from __future__ import annotations

import pytest

from webhook.serving.framing import FramingError, RequestFramer

HEAD = b"POST /validate HTTP/1.1\r\nHost: x\r\n"
CHUNKED = HEAD + b"Transfer-Encoding: chunked\r\n\r\n"


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
        b"GET / HTTP/1.1\r\nHost: x\r\n\r\n",
        b"GET / HTTP/1.0\r\n\r\n",
        HEAD + b"Content-Length: 5\r\n\r\nhello",
        HEAD + b"content-length:  5 \r\n\r\nhello",
        HEAD + b"Content-Length: 0\r\n\r\n",
        HEAD + b"Content-Length: 005\r\n\r\nhello",
        CHUNKED + b"5\r\nhello\r\n0\r\n\r\n",
        HEAD + b"transfer-encoding:  Chunked \r\n\r\n5\r\nhello\r\n0\r\n\r\n",
        CHUNKED + b"3;x=y\r\nabc\r\n0\r\nT: 1\r\n\r\n",
        CHUNKED + b'3;x = "a \\" b";flag ; y=z\r\nabc\r\n0;last\r\nT: 1\r\nU:\r\n\r\n',
    ],
)
def test_complete_requests(feed: object, request_bytes: bytes) -> None:
    assert callable(feed)
    assert feed(request_bytes) == len(request_bytes)
    # Whatever follows (a pipelined request) is not part of it.
    assert end_of(request_bytes + b"GET / HTTP/1.1\r\nHost: x\r\n\r\n") == len(request_bytes)


@pytest.mark.parametrize(
    "partial",
    [
        b"",
        b"POST /validate HT",
        HEAD,
        HEAD + b"X: a\r",
        HEAD + b"Content-Length: 5\r\n\r\nhell",
        CHUNKED + b"5\r\nhello\r",
        CHUNKED + b"5\r\nhello\r\n",
        CHUNKED + b"5\r\nhello\r\n0\r\n",
        CHUNKED + b"5\r\nhello\r\n0\r\nT: 1\r\n",
        CHUNKED + b"5\r\nhello\r\n0\r\nT: 1\r",
    ],
)
def test_incomplete_requests_wait_for_more(partial: bytes) -> None:
    assert end_of(partial) is None
    assert end_fed_bytewise(partial) is None


REFUSED = [
    (b"GET / HTTP/1.1\r\nX: " + b"a" * 2000, 431, "head is longer than 1024 bytes"),
    (b"GET / HTTP/1.1\r\nX: " + b"a" * 1100 + b"\r\n\r\n", 431, "longer than 1024"),
    (HEAD + b"Content-Length: 101\r\n\r\n", 413, "the body is larger than 100 bytes"),
    (HEAD + b"Content-Length: 99999999999999999999\r\n\r\n", 413, "larger than 100"),
    (CHUNKED + b"65\r\n", 413, "larger than 100"),
    (CHUNKED + b"0x5\r\n", 400, "invalid chunk-size line"),
    (CHUNKED + b"-5\r\n", 400, "invalid chunk-size line"),
    (CHUNKED + b"0" * 1100, 400, "too long"),
    # Transfer-Encoding other than one "chunked" (RFC 9112 6.1, 6.3).
    (HEAD + b"Transfer-Encoding: gzip, chunked\r\n\r\n", 400, "chunked alone, not 'gzip, chunked'"),
    (HEAD + b"Transfer-Encoding: gzip\r\n\r\n", 400, "chunked alone"),
    (HEAD + b"Transfer-Encoding: identity\r\n\r\n", 400, "chunked alone"),
    (HEAD + b"Transfer-Encoding: chunked, chunked\r\n\r\n", 400, "chunked alone"),
    (HEAD + b"Transfer-Encoding: identity\r\nTransfer-Encoding: chunked\r\n\r\n", 400, "more than"),
    (HEAD + b"Transfer-Encoding: gzip\r\nTransfer-Encoding: chunked\r\n\r\n", 400, "more than"),
    (HEAD + b"Transfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n", 400, "more than"),
    (HEAD + b"Transfer-Encoding: chunked\r\nContent-Length: 5\r\n\r\n", 400, "both given"),
    (HEAD + b"Content-Length: 0\r\nTransfer-Encoding: chunked\r\n\r\n", 400, "both given"),
    (b"POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n", 400, "not allowed in an HTTP/1.0"),
    # Content-Length repeated or not a number.
    (HEAD + b"Content-Length: 5\r\nContent-Length: 5\r\n\r\n", 400, "more than once"),
    (HEAD + b"Content-Length: 5\r\nContent-Length: 6\r\n\r\n", 400, "more than once"),
    (HEAD + b"Content-Length: 5, 5\r\n\r\n", 400, "not a decimal number: '5, 5'"),
    (HEAD + b"Content-Length: -5\r\n\r\n", 400, "not a decimal number"),
    (HEAD + b"Content-Length: +5\r\n\r\n", 400, "not a decimal number"),
    (HEAD + b"Content-Length: 0x5\r\n\r\n", 400, "not a decimal number"),
    (HEAD + b"Content-Length:\r\n\r\n", 400, "not a decimal number"),
    # Line folding, bare CR, bare LF: refused as soon as they arrive.
    (HEAD + b"X: a\r\n b\r\n", 400, "obsolete line folding"),
    (HEAD + b"X: a\r\n\tb", 400, "obsolete line folding"),
    (b"POST / HTTP/1.1\r\n Host: x\r\n", 400, "obsolete line folding"),
    (HEAD + b"X: a\rb", 400, "bare CR or LF"),
    (HEAD + b"X: a\nY: b", 400, "bare CR or LF"),
    (b"GET / HTTP/1.1\nHost: x\n\n", 400, "bare CR or LF"),
    (b"GET / HTTP/1.1\r\r\n", 400, "bare CR or LF"),
    (CHUNKED + b"0\r\nT: a\rb", 400, "bare CR or LF"),
    (CHUNKED + b"0\r\nT: 1\r\n  more\r\n", 400, "obsolete line folding"),
    (CHUNKED + b"0\r\nT: 1\n", 400, "bare CR or LF"),
    # Request line and field lines outside the grammar.
    (b"GET / HTTP/1.1 \r\nHost: x\r\n\r\n", 400, "invalid request line"),
    (b"GET  / HTTP/1.1\r\nHost: x\r\n\r\n", 400, "invalid request line"),
    (b"GET / HTTP/2.0\r\nHost: x\r\n\r\n", 400, "invalid request line"),
    (b"\r\nGET / HTTP/1.1\r\nHost: x\r\n\r\n", 400, "invalid request line"),
    (HEAD + b"X : a\r\n\r\n", 400, "invalid header field: 'X : a'"),
    (HEAD + b"X: a\x00b\r\n\r\n", 400, "invalid header field"),
    (HEAD + b"no colon\r\n\r\n", 400, "invalid header field"),
    (CHUNKED + b"0\r\nbad trailer\r\n\r\n", 400, "invalid trailer field"),
    (b"GET / HTTP/1.1\r\n\r\n", 400, "exactly one Host"),
    (HEAD + b"Host: y\r\n\r\n", 400, "exactly one Host"),
    # Chunk lines and the CRLF after a chunk's data.
    (CHUNKED + b"5 \r\n", 400, "invalid chunk-size line"),
    (CHUNKED + b"5 ;x\r\n", 400, "invalid chunk-size line"),
    (CHUNKED + b"5;x y\r\n", 400, "invalid chunk-size line"),
    (CHUNKED + b"5;x=\r\n", 400, "invalid chunk-size line"),
    (CHUNKED + b"5;x\rx\r\n", 400, "invalid chunk-size line"),
    (CHUNKED + b"\r\n", 400, "invalid chunk-size line"),
    (CHUNKED + b"5\r\nhelloXX", 400, "not followed by CRLF"),
    (CHUNKED + b"5\r\nhelloX", 400, "not followed by CRLF"),
    (CHUNKED + b"5\r\nhello\rX", 400, "not followed by CRLF"),
    (CHUNKED + b"5\r\nhello\n0\r\n\r\n", 400, "not followed by CRLF"),
    (CHUNKED + b"5\r\nhello0\r\n\r\n", 400, "not followed by CRLF"),
]


@pytest.mark.parametrize("feed", [end_of, end_fed_bytewise])
@pytest.mark.parametrize(("data", "status", "message"), REFUSED)
def test_refused_before_the_rest_arrives(
    feed: object, data: bytes, status: int, message: str
) -> None:
    assert callable(feed)
    with pytest.raises(FramingError, match=message) as refused:
        feed(data)
    assert refused.value.status == status


def test_many_small_chunks_cost_linear_work() -> None:
    """A body of 20,000 one-byte chunks, fed as it trickles in, is scanned once."""
    body = b"1\r\nx\r\n" * 20_000 + b"0\r\n\r\n"
    data = CHUNKED + body
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


def test_a_trickled_long_trailer_is_framed() -> None:
    """A 60,000-byte trailer line fed a byte at a time, within the head limit."""
    data = CHUNKED + b"0\r\nX: " + b"a" * 60_000 + b"\r\n\r\n"
    framer = RequestFramer(64 * 1024, 100)
    start = len(CHUNKED) + 3
    for n in range(start, len(data)):
        assert framer.feed(data[:n]) is None
    assert framer.feed(data) == len(data)


def test_pipelined_bytes_do_not_count_against_the_trailers() -> None:
    data = CHUNKED + b"0\r\nT: 1\r\n\r\n"
    assert end_of(data + b"GET / HTTP/1.1\r\nHost: x\r\nX: " + b"a" * 2000) == len(data)
