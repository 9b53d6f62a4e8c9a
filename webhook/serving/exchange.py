"""One buffered request and its answer, in a pool thread of the worker (``serving.worker``).

The event loop has received the request whole and framed it
(``webhook.serving.framing``); here gunicorn's parser reads it again, from those bytes
only, never from the socket, so a request whose framing the two would read
differently cannot make a thread wait on a client. The answer goes out in one
write (:class:`OneWriteResponse`).

Two pieces are gunicorn's own code with one change each, copied from gunicorn
27.0.1 (the range pyproject.toml allows is ``>=27,<28``); gunicorn has no hook
for either:

- :func:`serve` is ``gthread.ThreadWorker.handle_request``, passing
  :class:`OneWriteResponse` to ``wsgi.create`` (which takes a response class,
  but ``handle_request`` does not pass one) and without the
  ``wsgi.file_wrapper``/``sendfile`` branch, which a webhook never takes.
- :class:`OneWriteResponse` overrides ``wsgi.Response.send_headers``,
  ``close`` and ``sendfile``, and the body write.

The parser is gunicorn's ``RequestParser`` given an iterable source (a
documented case of ``gunicorn.http.get_parser``) instead of the socket.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from gunicorn import http, util
from gunicorn.http import wsgi

__all__ = ["OneWriteResponse", "buffered_parser", "serve"]


def buffered_parser(cfg: Any, request: bytes, client: Any) -> Any:
    """gunicorn's parser over exactly ``request``: at its end, the parser sees end of input.

    A body the framing did not foresee therefore reads as empty or short (and
    the app refuses it), never as a wait for more bytes from the client.
    """
    return http.get_parser(cfg, (request,), client)


def unread_bytes(parser: Any) -> bytes:
    """What the parser holds but did not read as part of its request (empty when they agree)."""
    return bytes(parser.unreader.take_buffered())


class OneWriteResponse(wsgi.Response):  # type: ignore[misc]
    """gunicorn's response, with the head held back and sent with the first body bytes.

    gunicorn writes the head and then each body chunk: over TLS that is a record,
    an encryption and a system call per write, and the client wakes for a head
    it cannot use without the body. A webhook's answer is one small body, so
    holding the head makes the whole response one write.

    Its methods follow gunicorn 27.0.1's ``wsgi.Response``: ``send_headers``
    words the head as gunicorn's does, and ``_emit_body`` is the seam that
    version gives subclasses for framing the body.
    """

    _head = b""
    headers_sent: bool

    def send_headers(self) -> None:
        """Prepare the head (as gunicorn words it); the next write sends it."""
        if self.headers_sent:
            return
        lines = self.default_headers()
        lines.extend(f"{name}: {value}\r\n" for name, value in self.headers)
        self._head = "".join((*lines, "\r\n")).encode("latin-1")
        self.headers_sent = True

    def _emit_body(self, data: bytes) -> None:
        if self.chunked:
            data = b"%X\r\n%s\r\n" % (len(data), data)
        self._send(data)

    def close(self) -> None:
        """Send what is held: the head of a response without body bytes, the last chunk."""
        if not self.headers_sent:
            self.send_headers()
        self._send(b"0\r\n\r\n" if self.chunked else b"")

    def sendfile(self, respiter: Any) -> bool:
        """Never: a file goes through ``write`` like any body, its head with its first bytes."""
        return False

    def _send(self, data: bytes) -> None:
        head, self._head = self._head, b""
        if head or data:
            self.sock.sendall(head + data if head else data)


def serve(worker: Any, req: Any, conn: Any) -> bool:
    """gthread's ``handle_request`` (gunicorn 27.0.1), answering through :class:`OneWriteResponse`.

    Returns whether the connection may carry another request.

    Raises:
        OSError: writing to the client failed or timed out.
        StopIteration: the app failed after its response began; the connection is closed.
    """
    environ: dict[str, Any] = {}
    resp = None
    try:
        worker.cfg.pre_request(worker, req)
        request_start = datetime.now()
        resp, environ = wsgi.create(
            req, conn.sock, conn.client, conn.server, worker.cfg, OneWriteResponse
        )
        environ["wsgi.multithread"] = True
        worker.nr += 1
        if worker.nr >= worker.max_requests:
            if worker.alive:
                worker.log.info("Autorestarting worker after current request.")
                worker.alive = False
            resp.force_close()
        if (
            not worker.alive
            or not worker.cfg.keepalive
            or len(worker.keepalived_conns) >= worker.max_keepalived
        ):
            resp.force_close()
        respiter = worker.wsgi(environ, resp.start_response)
        try:
            for item in respiter:
                resp.write(item)
            resp.close()
        finally:
            worker.log.access(resp, req, environ, datetime.now() - request_start)
            if hasattr(respiter, "close"):
                respiter.close()
        if resp.should_close():
            worker.log.debug("Closing connection.")
            return False
    except OSError:
        raise
    except (Exception, SystemExit):
        if resp and resp.headers_sent:
            # The response has begun (or is held): the connection cannot carry
            # another answer. A timeout abort is SystemExit.
            worker.log.exception("Error handling request")
            util.close_graceful(conn.sock)
            raise StopIteration() from None
        raise
    finally:
        try:
            worker.cfg.post_request(worker, req, environ, resp)
        except Exception:
            worker.log.exception("Exception in post_request hook")
    return True
