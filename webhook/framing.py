"""Where an HTTP/1.1 request ends in the bytes received so far, without I/O.

The server's event loop buffers each request whole before a thread serves it
(see ``webhook.worker``), so it must know when a request is complete: the head
ends at the first empty line, and the body is as long as ``Content-Length``
says or runs to the last chunk of a chunked body. It needs nothing else from the
head: gunicorn's parser reads the buffered request again and applies its own
rules, so a malformed head is passed on whole and refused there with a 400.

:class:`RequestFramer` remembers how far it has scanned, so a request that
arrives a byte at a time costs linear work, not quadratic.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["FramingError", "RequestFramer"]

#: The longest chunk-size line (size, extensions) accepted in a chunked body.
_MAX_CHUNK_LINE = 1024
_HEX_DIGITS = b"0123456789abcdefABCDEF"


@dataclass(frozen=True, slots=True)
class FramingError(Exception):
    """A request refused before it is complete: the status to answer and why."""

    status: int
    reason: str

    def __str__(self) -> str:
        return self.reason


class RequestFramer:
    """Finds the end of one request in a growing buffer.

    Call :meth:`feed` with the whole buffer each time bytes arrive; it answers
    the offset just past the request once the request is complete, ``None``
    while more is needed, and raises :class:`FramingError` as soon as the head
    or the body is too large to be worth receiving.
    """

    def __init__(self, max_head: int, max_body: int) -> None:
        self._max_head = max_head
        self._max_body = max_body
        self._scanned = 0  # head bytes searched for the empty line so far
        self._body_start = -1
        self._length = -1  # Content-Length, or -1 for a chunked body
        self._pos = 0  # chunked: where the next chunk-size line starts
        self._decoded = 0  # chunked: body bytes seen so far
        self._trailers = False  # chunked: the last chunk is in, trailers follow
        #: The head asks for "100 Continue" before the body is sent (HTTP/1.1 only).
        self.expects_continue = False

    def awaits_continue(self, buf: bytes | bytearray) -> bool:
        """Whether the client waits for "100 Continue": its head asked and no body came yet."""
        return self.expects_continue and len(buf) == self._body_start

    def feed(self, buf: bytes | bytearray) -> int | None:
        """The offset just past the request in ``buf``, or ``None`` if it is not complete.

        Raises:
            FramingError: the head is longer than allowed (431), or the body
                announces or reaches more than the allowed size (413), or a
                chunked body cannot be framed (400).
        """
        if self._body_start < 0 and not self._find_head(buf):
            return None
        if self._length >= 0:
            end = self._body_start + self._length
            return end if len(buf) >= end else None
        return self._chunked_end(buf)

    def _find_head(self, buf: bytes | bytearray) -> bool:
        end = buf.find(b"\r\n\r\n", max(0, self._scanned - 3))
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
        """Content-Length, -1 for chunked, 0 when gunicorn will refuse the framing anyway."""
        lengths: set[bytes] = set()
        chunked = False
        request_line, *fields = head.split(b"\r\n")
        for line in fields:
            name, _, value = line.partition(b":")
            name = name.strip().lower()
            if name == b"expect":
                self.expects_continue = request_line.endswith(b" HTTP/1.1") and (
                    value.strip().lower() == b"100-continue"
                )
            elif name == b"content-length":
                lengths.add(value.strip())
            elif name == b"transfer-encoding":
                chunked = value.split(b",")[-1].strip().lower() == b"chunked"
                if not chunked:
                    return 0  # a coding gunicorn does not serve: it answers 501 from the head
        if chunked:
            return -1
        if not lengths:
            return 0
        if len(lengths) != 1 or not (value := lengths.pop()).isdigit():
            return 0  # gunicorn answers 400 from the head
        length = int(value)
        if length > self._max_body:
            raise FramingError(413, f"the body is larger than {self._max_body} bytes")
        return length

    def _chunked_end(self, buf: bytes | bytearray) -> int | None:
        while not self._trailers:
            line_end = buf.find(b"\r\n", self._pos, self._pos + _MAX_CHUNK_LINE + 2)
            if line_end < 0:
                if len(buf) - self._pos > _MAX_CHUNK_LINE:
                    raise FramingError(400, "a chunk-size line of the body is too long")
                return None
            size_text = bytes(buf[self._pos : line_end]).split(b";")[0].strip()
            if not size_text or size_text.strip(_HEX_DIGITS):
                raise FramingError(400, "the chunked body has an invalid chunk size")
            size = int(size_text, 16)
            if size == 0:
                self._trailers = True
                self._pos = line_end + 2
                break
            if self._decoded + size > self._max_body:
                raise FramingError(413, f"the body is larger than {self._max_body} bytes")
            data_end = line_end + 2 + size + 2
            if len(buf) < data_end:
                return None
            self._decoded += size
            self._pos = data_end
        # Trailer fields, if any, end at an empty line.
        if buf[self._pos : self._pos + 2] == b"\r\n":
            return self._pos + 2
        end = buf.find(b"\r\n\r\n", self._pos)
        if end < 0:
            if len(buf) - self._pos > self._max_head:
                raise FramingError(431, f"the trailers are longer than {self._max_head} bytes")
            return None
        return end + 4
