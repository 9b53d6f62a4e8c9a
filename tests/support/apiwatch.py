"""A watch as kube-apiserver streams it, for the stand-in of tests/support/apistore.py.

``GET .../secrets?watch=1&resourceVersion=N``: a 200 answer with chunked transfer
encoding, then one JSON object per line, ``{"type": ADDED|MODIFIED|DELETED|BOOKMARK|ERROR,
"object": ...}``, as each change after version N happens, until ``timeoutSeconds``:

- without a ``resourceVersion`` (or ``0``), the objects as they are first, as ADDED;
- a version the store has compacted away: one ERROR event carrying a 410 ``Expired``
  Status, as the watch cache sends it (the client must list again);
- ``allowWatchBookmarks=true``: a BOOKMARK with the current version every
  ``store.bookmark_seconds``, carrying only ``kind``, ``apiVersion`` and the version;
- ``store.expire_watches()`` ends every open watch with the same 410 ERROR event;
- the label and field selectors of lists apply, RBAC's ``watch`` verb is checked
  (403 Status), and a field selector the API server does not index is a 400.
"""

from __future__ import annotations

import json
import time
from http.server import BaseHTTPRequestHandler
from typing import Any

from tests.support.apistore import KINDS, Call, Store, group_version, status
from tests.support.apistore_requests import _forbidden, route, selects, unsupported_fields

#: What the stand-in waits at most between looks at the store (a change wakes it sooner).
_TICK = 0.2


def stream_watch(store: Store, handler: BaseHTTPRequestHandler, call: Call) -> None:
    """Answer the watch ``call`` on ``handler``'s connection until it ends."""
    found = route(call.path)
    refusal = _refusal(store, call, found)
    if refusal is not None or found is None:
        code, body = refusal or (404, status(404, "NotFound", "the server could not find it"))
        call.answer = code
        data = json.dumps(body).encode()
        handler.send_response(code)
        handler.send_header("Content-Type", "application/json")
        handler.send_header("Content-Length", str(len(data)))
        handler.end_headers()
        handler.wfile.write(data)
        return
    call.answer = 200
    handler.protocol_version = "HTTP/1.1"  # chunked; the connection still closes after
    handler.send_response(200)
    handler.send_header("Content-Type", "application/json")
    handler.send_header("Transfer-Encoding", "chunked")
    handler.end_headers()
    try:
        _events(store, handler, call, found)
        handler.wfile.write(b"0\r\n\r\n")
        handler.wfile.flush()
    except OSError:
        pass  # the client went away


def _refusal(
    store: Store, call: Call, found: tuple[str, str, str, str] | None
) -> tuple[int, dict[str, Any]] | None:
    if found is None:
        return None
    group, plural, namespace, _ = found
    if not store.allowed(call.user or "", "watch", group, plural, "", namespace):
        return 403, _forbidden(store, call.user or "", "watch", group, plural, namespace, "")
    unsupported = unsupported_fields(plural, call.query)
    if unsupported:
        return 400, status(400, "BadRequest", unsupported)
    return None


def _send(store: Store, handler: BaseHTTPRequestHandler, event: dict[str, Any]) -> None:
    line = json.dumps(event).encode() + b"\n"
    chunk = f"{len(line):x}\r\n".encode() + line + b"\r\n"
    if not store.drip:
        handler.wfile.write(chunk)
        handler.wfile.flush()
        return
    for byte in chunk:
        handler.wfile.write(bytes([byte]))
        handler.wfile.flush()
        time.sleep(store.drip)


def _expired(since: int, now: int) -> dict[str, Any]:
    message = f"too old resource version: {since} ({now})"
    return {"type": "ERROR", "object": status(410, "Expired", message)}


def _events(
    store: Store, handler: BaseHTTPRequestHandler, call: Call, found: tuple[str, str, str, str]
) -> None:
    group, plural, namespace, _ = found
    query = call.query
    end = time.monotonic() + float(query.get("timeoutSeconds") or 3600)
    bookmarks = query.get("allowWatchBookmarks") == "true"
    kind = KINDS[(group, plural)][0]

    def matches(key: tuple[str, str, str, str], obj: dict[str, Any]) -> bool:
        return key[:2] == (group, plural) and namespace in ("", key[2]) and selects(obj, query)

    since = query.get("resourceVersion") or "0"
    pending: list[dict[str, Any]] = []
    with store.changed:
        expiries = store.expiries
        if since != "0" and int(since) < store.compacted:
            pending.append(_expired(int(since), store.version))
            position = -1
        elif since == "0":
            for key, obj in sorted(store.objects.items()):
                if matches(key, obj):
                    pending.append({"type": "ADDED", "object": obj})
            position = store.version
        else:
            position = int(since)
    marked = time.monotonic()
    while position >= 0:
        for event in pending:
            _send(store, handler, event)
        pending = []
        with store.changed:
            fresh = [e for e in store.events if e[0] > position]
            if not fresh and store.expiries == expiries and not store.stopping:
                store.changed.wait(_TICK)
                fresh = [e for e in store.events if e[0] > position]
            for version, change, key, obj in fresh:
                if matches(key, obj):
                    pending.append({"type": change, "object": obj})
                position = max(position, version)
            position = max(position, store.version)
            if store.expiries != expiries:
                pending.append(_expired(position, store.version))
                position = -1
            elif bookmarks and time.monotonic() - marked >= store.bookmark_seconds:
                metadata = {"resourceVersion": str(position)}
                bookmark = {"kind": kind, "apiVersion": group_version(group), "metadata": metadata}
                pending.append({"type": "BOOKMARK", "object": bookmark})
                marked = time.monotonic()
            if store.stopping or time.monotonic() > end:
                break
    for event in pending:
        _send(store, handler, event)
