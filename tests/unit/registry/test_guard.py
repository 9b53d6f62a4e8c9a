"""The guarded session reads the proxies of the environment once per host, not per call."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import ClassVar

import pytest
import requests

from webhook.registry import guard


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
    guard._environment.cache_clear()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    guard._environment.cache_clear()
    server.shutdown()
    server.server_close()


def test_calls_go_through_the_environments_proxy(
    proxy: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HTTP_PROXY", proxy)
    session = guard.guarded_session()
    for _ in range(3):
        answer = session.get("http://registry.invalid:5000/v2/", timeout=5)
        assert answer.status_code == 200
    assert _Proxy.seen == ["http://registry.invalid:5000/v2/"] * 3


def test_no_proxy_is_honoured(proxy: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HTTP_PROXY", proxy)
    monkeypatch.setenv("NO_PROXY", "registry.invalid")
    with pytest.raises(requests.exceptions.ConnectionError):
        guard.guarded_session().get("http://registry.invalid:5000/v2/", timeout=5)
    assert _Proxy.seen == []


def test_netrc_credentials_are_never_sent(
    proxy: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    # Credentials come from trustgate's configuration only, never from a file in $HOME.
    (tmp_path / ".netrc").write_text("machine registry.invalid login alice password secret\n")
    monkeypatch.setenv("NETRC", str(tmp_path / ".netrc"))
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.setenv("HTTP_PROXY", proxy)
    answer = guard.guarded_session().get("http://registry.invalid:5000/v2/", timeout=5)
    assert "Authorization" not in answer.request.headers


def test_cookies_are_never_kept_nor_sent(proxy: str, monkeypatch: pytest.MonkeyPatch) -> None:
    # A thread's session serves every review: a cookie one registry set must not follow
    # the next call, and a registry setting many must not grow a jar.
    monkeypatch.setenv("HTTP_PROXY", proxy)
    session = guard.guarded_session()
    for _ in range(3):
        session.get("http://registry.invalid:5000/v2/", timeout=5)
    assert [h.get("Cookie") for h in _Proxy.headers_seen] == [None, None, None]
    assert len(session.cookies) == 0
    assert _Proxy.headers_seen[0]["User-Agent"].startswith("trustgate/")
