"""The transport sends a request as given: the proxy read once per host, no state kept."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import ClassVar

import pytest
import urllib3

from webhook.registry import transport
from webhook.registry.transport import Transport


class _Proxy(BaseHTTPRequestHandler):
    seen: ClassVar[list[str]] = []
    headers_seen: ClassVar[list[dict[str, str]]] = []

    def do_GET(self) -> None:
        self.seen.append(self.path)  # absolute-form when asked as a proxy
        self.headers_seen.append(dict(self.headers))
        self.send_response(200)
        self.send_header("Set-Cookie", f"tenant{len(self.seen)}=secret; Path=/")
        self.send_header("Content-Length", "2")
        self.end_headers()
        self.wfile.write(b"ok")

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def proxy(monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Proxy)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    _Proxy.seen = []
    _Proxy.headers_seen = []
    for name in ("HTTP_PROXY", "http_proxy", "NO_PROXY", "no_proxy", "ALL_PROXY", "all_proxy"):
        monkeypatch.delenv(name, raising=False)
    transport.environment.cache_clear()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    transport.environment.cache_clear()
    server.shutdown()
    server.server_close()


def test_calls_go_through_the_environments_proxy(
    proxy: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HTTP_PROXY", proxy)
    sender = Transport()
    for _ in range(3):
        answer = sender.request("GET", "http://registry.invalid:5000/v2/", {}, timeout=5)
        assert answer.status == 200
        assert answer.raw.read() == b"ok"
    assert _Proxy.seen == ["http://registry.invalid:5000/v2/"] * 3


def test_no_proxy_is_honoured(proxy: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HTTP_PROXY", proxy)
    monkeypatch.setenv("NO_PROXY", "registry.invalid")
    with pytest.raises(urllib3.exceptions.NameResolutionError):
        Transport().request("GET", "http://registry.invalid:5000/v2/", {}, timeout=5)
    assert _Proxy.seen == []


def test_netrc_credentials_are_never_sent(
    proxy: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    # Credentials come from trustgate's configuration only, never from a file in $HOME.
    (tmp_path / ".netrc").write_text("machine registry.invalid login alice password secret\n")
    monkeypatch.setenv("NETRC", str(tmp_path / ".netrc"))
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.setenv("HTTP_PROXY", proxy)
    Transport().request("GET", "http://registry.invalid:5000/v2/", {}, timeout=5)
    assert "Authorization" not in _Proxy.headers_seen[0]


def test_cookies_are_never_kept_nor_sent(proxy: str, monkeypatch: pytest.MonkeyPatch) -> None:
    # One transport serves every review: a cookie one registry set must not follow
    # the next call, and nothing keeps what a registry sets.
    monkeypatch.setenv("HTTP_PROXY", proxy)
    sender = Transport()
    for _ in range(3):
        sender.request("GET", "http://registry.invalid:5000/v2/", {}, timeout=5).drain()
    assert [h.get("Cookie") for h in _Proxy.headers_seen] == [None, None, None]
    assert _Proxy.headers_seen[0]["User-Agent"].startswith("trustgate/")


def test_proxy_credentials_go_to_the_proxy_only(
    proxy: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HTTP_PROXY", proxy.replace("http://", "http://alice:s3cret@"))
    Transport().request("GET", "http://registry.invalid:5000/v2/", {}, timeout=5).drain()
    sent = {name.lower(): value for name, value in _Proxy.headers_seen[0].items()}
    assert sent["proxy-authorization"] == "Basic YWxpY2U6czNjcmV0"
    assert "authorization" not in sent


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        (
            '<https://r.example/v2/a/referrers/x?n=2>; rel="next"',
            "https://r.example/v2/a/referrers/x?n=2",
        ),
        (
            '</v2/a/referrers/x?last=b>; rel="prev", </v2/a/referrers/x?last=c>; rel=next',
            "/v2/a/referrers/x?last=c",
        ),
        ('</v2/a/referrers/x?last=b>; rel="prev"', None),
        ("", None),
    ],
)
def test_next_link(
    header: str, expected: str | None, proxy: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HTTP_PROXY", proxy)
    answer = Transport().request("GET", "http://registry.invalid:5000/v2/", {}, timeout=5)
    answer.drain()
    answer.headers["Link"] = header
    assert answer.next_link() == expected


_READ_TIMEOUT = urllib3.exceptions.ReadTimeoutError(None, "/v2/", "read timed out")  # type: ignore[arg-type]
_REFUSED = urllib3.exceptions.NewConnectionError(None, "refused")  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("exc", "remaining", "waited", "own", "cut"),
    [
        # No time left: whatever failed, the review's deadline ended the call.
        (_REFUSED, 0.0, 5.0, 5.0, True),
        (_READ_TIMEOUT, 0.0, 5.0, 5.0, True),
        # A wait shortened by the deadline ran out: the deadline, not the host.
        (_READ_TIMEOUT, 0.1, 2.0, 5.0, True),
        # The host's own timeout ran out while the review had time: the host.
        (_READ_TIMEOUT, 3.0, 5.0, 5.0, False),
        (TimeoutError(), 3.0, 5.0, 5.0, False),
        # A refused connection is not a wait, even under a shortened timeout.
        (_REFUSED, 0.1, 2.0, 5.0, False),
        (ConnectionResetError(), 0.1, 2.0, 5.0, False),
    ],
)
def test_cut_by_deadline(
    exc: BaseException, remaining: float, waited: float, own: float, cut: bool
) -> None:
    assert transport.cut_by_deadline(exc, remaining, waited, own) is cut
