"""Where an HTTP/1.1 request ends in the bytes received so far, without I/O.

The server's event loop buffers each request whole before a thread serves it
(see ``webhook.serving.worker``), and the thread's parser reads only those bytes. So the
framer decides where a request ends, and it refuses, rather than guesses, every
framing two HTTP implementations could read differently (RFC 9112 section 6,
"request smuggling"). A request is refused with 400 when it has:

- a Transfer-Encoding other than exactly ``chunked`` (no other coding, no list),
  Transfer-Encoding on more than one line, or on an HTTP/1.0 request;
- Transfer-Encoding and Content-Length together;
- Content-Length on more than one line (even with equal values), or one that is
  not a plain decimal number;
- no Host field in an HTTP/1.1 request, or more than one;
- obsolete line folding (a field line that starts with a space or tab), a bare
  CR or a bare LF anywhere in the head or the trailers, or a request line or
  field line that is not RFC 9112 grammar;
- a chunk-size line that is not hex digits and well-formed extensions, or a
  chunk whose data is not followed by CRLF.

Everything it accepts, h11 (a strict HTTP/1.1 state machine) accepts with the
same end, and so does gunicorn's parser: tests/unit/serving/test_framing_h11.py checks both
with generated requests. It is stricter than h11 where h11 is lenient (folding,
repeated equal Content-Length, bare LF, Transfer-Encoding with Content-Length,
whitespace in chunk extensions), because gunicorn and any proxy in front may be
lenient in other ways.

:class:`RequestFramer` remembers how far it has scanned, so a request that
arrives a byte at a time costs linear work, not quadratic. h11 itself was
measured as the framer (bench/framing.py, AdmissionReview requests of 1.8 and
18 KB): 6 to 11 times the CPU per request (60 to 130 microseconds against 9 to
14), spent in the one event-loop thread all of a worker's connections share.
So h11 is the tests' oracle, not the server's framer.
"""

from __future__ import annotations

import re

from webhook.core.errors import TrustgateError

__all__ = ["FramingError", "RequestFramer"]

#: The longest chunk-size line (size, extensions) accepted in a chunked body.
_MAX_CHUNK_LINE = 1024
_TOKEN = rb"[-!#$%&'*+.^_`|~0-9A-Za-z]+"
_QUOTED = rb'"(?:[\t \x21\x23-\x5b\x5d-\x7e\x80-\xff]|\\[\t \x21-\x7e\x80-\xff])*"'
_REQUEST_LINE = re.compile(rb"%s [\x21-\x7e]+ HTTP/1\.([01])" % _TOKEN)
_FIELD_LINE = re.compile(
    rb"(%s):[ \t]*((?:[\x21-\x7e\x80-\xff]+(?:[ \t]+[\x21-\x7e\x80-\xff]+)*)?)[ \t]*" % _TOKEN
)
_EXTENSION = rb"[ \t]*;[ \t]*%s(?:[ \t]*=[ \t]*(?:%s|%s))?" % (_TOKEN, _TOKEN, _QUOTED)
# The first ";" follows the size directly: h11 refuses whitespace before it.
_CHUNK_LINE = re.compile(rb"([0-9A-Fa-f]{1,20})(?:(?=;)(?:%s)+)?" % _EXTENSION)
#: More digits than this in a Content-Length is past any body limit.
_MAX_LENGTH_DIGITS = 18


class FramingError(TrustgateError):
    """A request refused before it is complete: the status to answer and why."""

    def __init__(self, status: int, reason: str) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason


def _bad_break(buf: bytes | bytearray, start: int, end: int) -> FramingError | None:
    """The 400 for a bare CR or LF, or a line starting with whitespace, in ``buf[start:end]``.

    A CR at ``end`` may still get its LF. Counting is many times faster than a
    regular expression with look-behind, and the loop runs it on every read.
    """
    if 0 < start < len(buf) and buf[start] == 0x0A:
        start -= 1  # an LF whose CR is just before the range
    seg = bytes(buf[start:end])
    if seg.endswith(b"\r"):
        seg = seg[:-1]
    crlf = seg.count(b"\r\n")
    if seg.count(b"\r") != crlf or seg.count(b"\n") != crlf:
        return _malformed(b"\r", "line break")
    if b"\r\n " in seg or b"\r\n\t" in seg:
        return _malformed(b" ", "line break")
    return None


def _malformed(line: bytes, what: str) -> FramingError:
    """The 400 for a line of the head or trailers that is not HTTP/1.1 grammar."""
    if b"\r" in line or b"\n" in line:
        return FramingError(400, "the request has a bare CR or LF (lines end with CRLF)")
    if line[:1] in (b" ", b"\t"):
        return FramingError(400, "obsolete line folding is refused (a line starts with whitespace)")
    shown = line[:60].decode("latin-1")
    return FramingError(400, f"the request has an invalid {what}: {shown!r}")


class RequestFramer:
    """Finds the end of one request in a growing buffer.

    Call :meth:`feed` with the whole buffer each time bytes arrive; it answers
    the offset just past the request once the request is complete, ``None``
    while more is needed, and raises :class:`FramingError` as soon as the
    framing is ambiguous or malformed, or the head or the body is too large to
    be worth receiving.
    """

    def __init__(self, max_head: int, max_body: int) -> None:
        self._max_head = max_head
        self._max_body = max_body
        self._scanned = 0  # head bytes searched for the empty line so far
        self._body_start = -1
        self._length = -1  # Content-Length, or -1 for a chunked body
        self._pos = 0  # chunked: where the next chunk-size or trailer line starts
        self._decoded = 0  # chunked: body bytes seen so far
        self._trailers = False  # chunked: the last chunk is in, trailers follow
        self._trailer_start = 0
        #: The head asks for "100 Continue" before the body is sent (HTTP/1.1 only).
        self.expects_continue = False

    def awaits_continue(self, buf: bytes | bytearray) -> bool:
        """Whether the client waits for "100 Continue": its head asked and no body came yet."""
        return self.expects_continue and len(buf) == self._body_start

    def feed(self, buf: bytes | bytearray) -> int | None:
        """The offset just past the request in ``buf``, or ``None`` if it is not complete.

        Raises:
            FramingError: the head is longer than allowed (431), or the body
                announces or reaches more than the allowed size (413), or the
                request's framing is refused (400, see the module doc).
        """
        if self._body_start < 0 and not self._find_head(buf):
            return None
        if self._length >= 0:
            end = self._body_start + self._length
            return end if len(buf) >= end else None
        return self._chunked_end(buf)

    def _find_head(self, buf: bytes | bytearray) -> bool:
        start = max(0, self._scanned - 3)
        end = buf.find(b"\r\n\r\n", start)
        # A bad line break is refused as soon as it arrives, not at the end of the head.
        bad = _bad_break(buf, start, len(buf) if end < 0 else end + 2)
        if bad is not None:
            raise bad
        if end < 0:
            self._scanned = len(buf)
            if len(buf) > self._max_head:
                raise FramingError(431, f"the request head is longer than {self._max_head} bytes")
            return False
        if end + 4 > self._max_head:
            raise FramingError(431, f"the request head is longer than {self._max_head} bytes")
        self._body_start = self._pos = end + 4
        self._length = self._body_length(bytes(buf[:end]))
        return True

    def _body_length(self, head: bytes) -> int:
        """Content-Length, or -1 for chunked; refuses every other framing.

        Raises:
            FramingError: see :meth:`feed`.
        """
        request_line, *lines = head.split(b"\r\n")
        request = _REQUEST_LINE.fullmatch(request_line)
        if request is None:
            raise _malformed(request_line, "request line")
        http11 = request[1] == b"1"
        codings: list[bytes] = []
        lengths: list[bytes] = []
        hosts = 0
        for line in lines:
            field = _FIELD_LINE.fullmatch(line)
            if field is None:
                raise _malformed(line, "header field")
            name, value = field[1].lower(), field[2]
            if name == b"transfer-encoding":
                codings.append(value)
            elif name == b"content-length":
                lengths.append(value)
            elif name == b"host":
                hosts += 1
            elif name == b"expect":
                self.expects_continue = http11 and value.lower() == b"100-continue"
        if hosts > 1 or (http11 and not hosts):
            raise FramingError(400, "an HTTP/1.1 request has exactly one Host field (RFC 9112 3.2)")
        if codings:
            return self._chunked(codings, lengths, http11)
        if not lengths:
            return 0
        if len(lengths) > 1:
            raise FramingError(400, "Content-Length is given more than once")
        value = lengths[0]
        if not value.isdigit():
            shown = value[:30].decode("latin-1")
            raise FramingError(400, f"Content-Length is not a decimal number: {shown!r}")
        if len(value) > _MAX_LENGTH_DIGITS or int(value) > self._max_body:
            raise FramingError(413, f"the body is larger than {self._max_body} bytes")
        return int(value)

    @staticmethod
    def _chunked(codings: list[bytes], lengths: list[bytes], http11: bool) -> int:
        if len(codings) > 1:
            raise FramingError(400, "Transfer-Encoding is given more than once")
        if codings[0].lower() != b"chunked":
            shown = codings[0][:30].decode("latin-1")
            raise FramingError(
                400, f"Transfer-Encoding must be chunked alone, not {shown!r} (RFC 9112 6.1)"
            )
        if lengths:
            raise FramingError(400, "Transfer-Encoding and Content-Length are both given")
        if not http11:
            raise FramingError(400, "Transfer-Encoding is not allowed in an HTTP/1.0 request")
        return -1

    def _chunked_end(self, buf: bytes | bytearray) -> int | None:
        while not self._trailers:
            line_end = buf.find(b"\r\n", self._pos, self._pos + _MAX_CHUNK_LINE + 2)
            if line_end < 0:
                if len(buf) - self._pos > _MAX_CHUNK_LINE:
                    raise FramingError(400, "a chunk-size line of the body is too long")
                if _bad_break(buf, self._pos, len(buf)) is not None:
                    raise FramingError(400, "the chunked body has an invalid chunk-size line")
                return None
            chunk = _CHUNK_LINE.fullmatch(buf, self._pos, line_end)
            if chunk is None:
                raise FramingError(400, "the chunked body has an invalid chunk-size line")
            size = int(chunk[1], 16)
            if self._decoded + size > self._max_body:
                raise FramingError(413, f"the body is larger than {self._max_body} bytes")
            if size == 0:
                self._trailers = True
                self._pos = self._trailer_start = self._scanned = line_end + 2
                break
            data_end = line_end + 2 + size + 2
            # The CRLF after the data is checked as soon as its bytes arrive.
            after = buf[data_end - 2 : data_end]
            if after != b"\r\n"[: len(after)]:
                raise FramingError(400, "a chunk's data is not followed by CRLF")
            if len(buf) < data_end:
                return None
            self._decoded += size
            self._pos = data_end
        return self._trailers_end(buf)

    def _trailers_end(self, buf: bytes | bytearray) -> int | None:
        """Trailer field lines, if any, end at an empty line; each is checked as it arrives."""
        while True:
            line_end = buf.find(b"\r\n", max(self._pos, self._scanned - 1))
            if (len(buf) if line_end < 0 else line_end) - self._trailer_start > self._max_head:
                raise FramingError(431, f"the trailers are longer than {self._max_head} bytes")
            if line_end < 0:
                bad = _bad_break(buf, max(self._pos, self._scanned - 1), len(buf))
                if bad is not None:
                    raise bad
                if buf[self._pos : self._pos + 1] in (b" ", b"\t"):
                    raise _malformed(b" ", "trailer field")
                self._scanned = len(buf)
                return None
            if line_end == self._pos:
                return line_end + 2
            line = bytes(buf[self._pos : line_end])
            if _FIELD_LINE.fullmatch(line) is None:
                raise _malformed(line, "trailer field")
            self._pos = self._scanned = line_end + 2
