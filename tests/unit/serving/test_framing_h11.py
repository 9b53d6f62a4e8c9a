"""webhook.serving.framing against h11 and gunicorn's parser, on generated valid and hostile
requests.

h11 is the oracle for where a request ends or that it is refused (with the
shapes trustgate refuses on purpose, see tests/support/http1.py). What the
framer accepts, gunicorn's parser must read to exactly the same end from the
buffered bytes alone: that is what the worker hands it.
"""

from __future__ import annotations

from gunicorn.config import Config
from gunicorn.http.parser import RequestParser
from hypothesis import example, given, settings

from tests.support.http1 import SENTINEL, Generated, expected_end, requests
from webhook.serving.framing import FramingError, RequestFramer

MAX_HEAD = 64 * 1024
MAX_BODY = 1024 * 1024


def framed(stream: bytes, *, bytewise: bool) -> int | str | None:
    framer = RequestFramer(MAX_HEAD, MAX_BODY)
    try:
        if not bytewise:
            return framer.feed(stream)
        for n in range(1, len(stream) + 1):
            if (end := framer.feed(stream[:n])) is not None:
                return end
        return None
    except FramingError as refused:
        assert refused.status == 400, refused
        return "refused"


def gunicorn_reads(request: bytes) -> bytes:
    """The body gunicorn's parser reads from exactly these bytes; it must use them all."""
    parser = RequestParser(Config(), [request], ("127.0.0.1", 1))
    body = next(parser).body.read()
    assert parser.unreader.read() == b"", "gunicorn left bytes of the request unread"
    return bytes(body)


@settings(max_examples=600, deadline=None)
@given(requests())
@example(Generated(b"POST /healthz HTTP/1.1\r\nHost: localhost\r\n\r\n", False, False))
@example(  # the desync of issue 17: judged complete at the head, read chunked by gunicorn
    Generated(
        b"POST /healthz HTTP/1.1\r\nHost: localhost\r\nTransfer-Encoding: identity\r\n"
        b"Transfer-Encoding: chunked\r\n\r\n1\r\nx\r\n0\r\n\r\n",
        False,
        False,
    )
)
def test_the_framer_ends_where_h11_does(request: Generated) -> None:
    stream = request.data + SENTINEL
    expected = expected_end(request)
    assert framed(stream, bytewise=False) == expected
    assert framed(stream, bytewise=True) == expected
    if isinstance(expected, int):
        assert expected == len(request.data), "the generator meant another end"
        gunicorn_reads(stream[:expected])
