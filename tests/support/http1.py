"""Generated HTTP/1.1 requests, valid and hostile, and h11's answer to them: the framing oracle.

A generated request knows whether it has a shape that trustgate refuses on
purpose although h11 accepts it (``strict``): obsolete folding, a repeated or
listed Content-Length, Transfer-Encoding with Content-Length or on HTTP/1.0, a
bare LF, loose chunk extensions. For everything else, where a request ends, or
that it is refused, is what h11 says.
"""

from __future__ import annotations

from dataclasses import dataclass

import h11
from hypothesis import strategies as st

#: Ends every generated stream: pipelined behind the generated requests, and closes the connection.
SENTINEL = b"GET /healthz HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n"
_EXTRA_FIELDS = [
    b"Accept: */*",
    b"X-Trace: a  b",
    b"Content-Type: application/json",
    b"User-Agent: t/1",
    b"X-Empty:",
    b"x-tabs:\ta\t",
]


@dataclass(frozen=True)
class Generated:
    """One generated request: its bytes, and whether trustgate refuses it where h11 does not."""

    data: bytes
    strict: bool
    http10: bool


def h11_end(data: bytes) -> int | str | None:
    """Where h11 says the first request in ``data`` ends; ``None`` if incomplete, "refused"."""
    conn = h11.Connection(h11.SERVER, max_incomplete_event_size=64 * 1024)
    conn.receive_data(data)
    try:
        while (event := conn.next_event()) is not h11.NEED_DATA:
            if isinstance(event, h11.EndOfMessage):
                return len(data) - len(conn.trailing_data[0])
    except h11.ProtocolError:
        return "refused"
    return None


def expected_end(request: Generated, following: bytes = SENTINEL) -> int | str | None:
    """The oracle: h11's answer for ``request`` (with ``following`` pipelined), or "refused"."""
    answer = h11_end(request.data + following)
    if answer == "refused" or (request.strict and answer is not None):
        return "refused"
    return answer


_FRAMINGS = {
    # name: (strict, how the head frames the body)
    "none": False,
    "length": False,
    "length-padded": False,
    "length-repeated": True,
    "length-list": True,
    "length-conflict": False,
    "length-bad": False,
    "chunked": False,
    "chunked-upper": False,
    "chunked-and-length": True,
    "length-and-chunked": True,
    "te-gzip-chunked": False,
    "te-identity-then-chunked": False,
    "te-gzip-then-chunked": False,
    "te-chunked-twice": False,
    "te-chunked-chunked": False,
    "te-gzip": False,
}
_EXTENSIONS = [
    (b"", False),
    (b";a=b", False),
    (b';a="q r\\""', False),
    (b";a;b=1", False),
    (b";a b", True),  # h11 takes anything after ";"
    (b" ;a", False),  # h11 refuses whitespace before ";"
    (b" ", True),  # h11 allows trailing whitespace
]
#: Head corruptions: a field line to add, and whether h11 accepts what trustgate refuses.
_CORRUPTIONS: dict[str, tuple[bytes, bool] | None] = {
    "fold": None,
    "bare-lf": None,
    "no-host": None,
    "leading-crlf": None,
    "bare-cr": (b"X-Cr: a\rb", False),
    "colon": (b"X-Sp : a", False),
    "nul": (b"X-Nul: a\x00b", False),
    "vertical-tab": (b"X-Vt: a\x0bb", False),
    "control": (b"X-Ctl: a\x01b", True),  # h11 takes controls other than whitespace
    "second-host": (b"Host: other", False),
    "name": (b"X(a): b", False),
}
_AFTER_DATA = [b"\r\n"] * 6 + [b"XX", b"\n", b"", b"\r"]


@st.composite
def requests(draw: st.DrawFn) -> Generated:
    """One request, valid or hostile in framing, head or chunked body."""
    http10 = draw(st.integers(0, 5)) == 0
    method = draw(st.sampled_from([b"GET", b"POST"]))
    lines = [b"%s /healthz HTTP/1.%s" % (method, b"0" if http10 else b"1"), b"Host: localhost"]
    lines += draw(st.lists(st.sampled_from(_EXTRA_FIELDS), max_size=3, unique=True))
    framing = draw(st.sampled_from(sorted(_FRAMINGS)))
    strict = _FRAMINGS[framing]
    body = draw(st.binary(max_size=24))
    size = b"%d" % len(body)
    encoded = body
    if framing.startswith("length") and "chunked" not in framing:
        lines += {
            "length": [b"Content-Length: " + size],
            "length-padded": [b"Content-Length:  " + size + b" "],
            "length-repeated": [b"Content-Length: " + size] * 2,
            "length-list": [b"Content-Length: " + size + b", " + size],
            "length-conflict": [b"Content-Length: " + size, b"Content-Length: 1" + size],
            "length-bad": [b"Content-Length: " + draw(st.sampled_from([b"+", b"-", b"0x"])) + size],
        }[framing]
    elif framing != "none":
        lines += {
            "chunked": [b"Transfer-Encoding: chunked"],
            "chunked-upper": [b"transfer-encoding: Chunked"],
            "chunked-and-length": [b"Transfer-Encoding: chunked", b"Content-Length: " + size],
            "length-and-chunked": [b"Content-Length: 0", b"Transfer-Encoding: chunked"],
            "te-gzip-chunked": [b"Transfer-Encoding: gzip, chunked"],
            "te-identity-then-chunked": [
                b"Transfer-Encoding: identity",
                b"Transfer-Encoding: chunked",
            ],
            "te-gzip-then-chunked": [b"Transfer-Encoding: gzip", b"Transfer-Encoding: chunked"],
            "te-chunked-twice": [b"Transfer-Encoding: chunked"] * 2,
            "te-chunked-chunked": [b"Transfer-Encoding: chunked, chunked"],
            "te-gzip": [b"Transfer-Encoding: gzip"],
        }[framing]
        encoded, loose = draw(chunked_bodies(body))
        strict = strict or loose
        strict = strict or http10  # Transfer-Encoding on HTTP/1.0
    else:
        encoded = b""
    corruption = draw(st.sampled_from(["none"] * 8 + sorted(_CORRUPTIONS)))
    if corruption == "fold":
        lines.insert(draw(st.integers(2, len(lines))), b"X-Fold: a\r\n b")
        strict = True
    elif corruption == "no-host":
        lines.remove(b"Host: localhost")
    elif (added := _CORRUPTIONS.get(corruption)) is not None:
        lines.append(added[0])
        strict = strict or added[1]
    order = draw(st.permutations(lines[1:]))
    head = b"\r\n".join([lines[0], *order]) + b"\r\n\r\n"
    if corruption == "leading-crlf":
        head = b"\r\n" + head
    if corruption == "bare-lf":
        head = head.replace(b"\r\n", b"\n", draw(st.integers(1, 2)))
        strict = True
    return Generated(head + encoded, strict, http10)


@st.composite
def chunked_bodies(draw: st.DrawFn, body: bytes) -> tuple[bytes, bool]:
    """``body`` as chunks with extensions, trailers and sometimes a bad CRLF; whether loose."""
    out: list[bytes] = []
    loose = False
    rest = body
    while rest:
        take = draw(st.integers(1, len(rest)))
        data, rest = rest[:take], rest[take:]
        ext, ext_loose = draw(st.sampled_from(_EXTENSIONS))
        loose = loose or ext_loose
        digits = draw(st.sampled_from([b"%x", b"%X", b"0%x"])) % len(data)
        out.append(digits + ext + b"\r\n" + data + draw(st.sampled_from(_AFTER_DATA)))
    ext, ext_loose = draw(st.sampled_from(_EXTENSIONS))
    loose = loose or ext_loose
    trailers = draw(st.sampled_from([b"", b"", b"X-T: 1\r\n", b"X-T: 1\r\n 2\r\n"]))
    loose = loose or trailers.endswith(b" 2\r\n")
    out.append(b"0" + ext + b"\r\n" + trailers + b"\r\n")
    return b"".join(out), loose
