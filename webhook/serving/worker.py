"""gunicorn's gthread worker, with the event loop rather than a thread waiting on clients.

The stock gthread worker hands a connection to a pool thread as soon as it is
accepted; the thread does the TLS handshake and reads the request head with no
time limit. A few clients that send one byte and stop hold every thread, and a
thousand idle connections fill ``worker_connections`` so that nothing new is
accepted. Any pod in the cluster can connect to the webhook, so both matter.

Here the event loop does all the waiting, without blocking: the TLS handshake,
the request head and the body (as long as the head says, up to the body limit)
go into a buffer, and only a complete request goes to a pool thread, whose
gunicorn parser reads exactly that request's bytes and never the socket
(``webhook.serving.exchange``). A thread never waits for a client to send. The rules a
client meets:

- A connection must deliver a complete request within ``client_timeout``
  seconds of being accepted (handshake, head and body together), or of the
  first byte of its next request when kept alive; past that it is closed, with
  a 408 if it had sent part of a request.
- Kept-alive connections wait in the loop between requests and close after
  ``keepalive`` idle seconds.
- At capacity, the oldest connection that has not sent a complete request is
  closed to make room: the listener never stops accepting for slow clients.
- A request whose framing two HTTP parsers could read differently (repeated or
  combined Transfer-Encoding and Content-Length, folding, bare CR or LF, a
  malformed chunk) is refused with 400 and the connection closed, as soon as
  the offending bytes arrive (``webhook.serving.framing``).
- A body announced larger than the limit is refused (413) before it is read;
  so is a head past 64 KiB (431). All buffers of a worker share a budget, and
  the oldest incomplete requests are dropped when it runs out.
- A response goes out in one write: head and body together (one TLS record,
  one system call for a webhook's answer), not the head first as gunicorn does.
- A pool thread's writes time out after ``client_timeout``, so a client that
  never reads cannot keep a thread, and closing a connection (draining what
  the client still sends, as RFC 9112 asks) happens in the loop, never in a
  blocking call.

On gunicorn 27.0.1's ``ThreadWorker`` (pyproject.toml allows ``>=27,<28``), it
uses as they are the pool, poller and method queue, ``set_accept_enabled``,
``enqueue_req``, ``_keepalive_after``, the signal handlers and ``handle_error``.
It overrides the seams gthread's loop calls (``accept``; ``handle`` in a pool
thread, ``finish_request`` back in the loop): gthread's own hand the socket to
a thread that reads it, what this worker exists not to do, so none can be
called through ``super()``. It replaces ``run``, which has no seam for reading
in the loop. ``handle_request`` is copied (``webhook.serving.exchange`` says why).
The connections, their byte budget and the ways they close are in
``webhook.serving.connections``; what the closings count, in ``connstats``.
"""

from __future__ import annotations

import contextlib
import errno
import resource
import selectors
import socket
import ssl
import time
from concurrent.futures import Future
from functools import partial
from typing import Any

import prometheus_client
from gunicorn import http, util
from gunicorn import sock as gunicorn_sock
from gunicorn.workers.gthread import STOP_KEEPALIVE_LINGER, ThreadWorker

from webhook.core.observability import get_logger
from webhook.serving.balance import AcceptBalance
from webhook.serving.connections import RECV_BYTES, Conn, Connections
from webhook.serving.connstats import ConnectionStats
from webhook.serving.exchange import buffered_parser, serve, unread_bytes
from webhook.serving.framing import FramingError, RequestFramer

__all__ = ["TrustgateWorker", "worker_class"]

_log = get_logger("worker")

#: The longest request head (request line and header fields) accepted.
MAX_HEAD_BYTES = 64 * 1024
# One connection is accepted per readiness event of the listener: every
# worker wakes when a connection arrives and the first to call accept() gets
# it, so a worker busy serving is slower to take the next one. Accepting a
# burst at once gave one worker all of a client pool's connections (the API
# server's, or a benchmark's) while the others idled; ``balance`` evens out
# what is left to chance.
#: How often deadlines are checked, and so how late a connection may close.
_SWEEP_INTERVAL = 0.25
#: How long a worker holding more connections than a sibling looks away from the listener.
_DEFER_SECONDS = 0.002
#: How long accepting pauses when every connection is busy and none can be closed.
_ACCEPT_PAUSE = 0.1
#: File descriptors left for the app (registry connections, files, logs).
_FD_RESERVE = 256


class TrustgateWorker(ThreadWorker):  # type: ignore[misc]
    """gthread with the handshake and request reads in the event loop (see the module doc).

    gthread's own connection bookkeeping (``nr_conns``, ``keepalived_conns``,
    ``pending_conns``) stays unused: :class:`Connections` keeps the count.
    """

    client_timeout: float = 10.0
    max_body_bytes: int = 4 * 1024 * 1024
    balance: AcceptBalance | None = None
    alive: bool
    #: Made when the loop starts, with the poller that ``init_process`` made.
    _conns: Connections
    _stats: ConnectionStats

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._capacity = int(self.worker_connections)
        self._paused_until = 0.0
        self._next_sweep = 0.0

    def init_process(self) -> None:
        """Size the capacity to the descriptors this process may open, then run."""
        soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
        if soft != resource.RLIM_INFINITY:
            self._capacity = max(16, min(self._capacity, soft - _FD_RESERVE))
        super().init_process()

    # The loop -------------------------------------------------------------

    def run(self) -> None:
        """Serve until told to stop, then finish what is in flight within the graceful timeout."""
        self._stats = ConnectionStats(self.client_timeout, self._capacity)
        self._conns = Connections(
            self.poller,
            self._stats,
            client_timeout=self.client_timeout,
            largest_request=self.max_body_bytes + MAX_HEAD_BYTES,
        )
        self._attach_metrics()
        self.poller.register(
            self.method_queue.fileno(), selectors.EVENT_READ, self.method_queue.run_callbacks
        )
        balance = self.balance
        if balance is not None and not balance.join():
            balance = None
        while self.alive:
            self.notify()
            now = time.monotonic()
            paused = now < self._paused_until
            self.set_accept_enabled(not paused)
            if balance is not None:
                balance.publish(self._conns.open)
            wait = min(_SWEEP_INTERVAL, self._paused_until - now) if paused else _SWEEP_INTERVAL
            self.wait_for_and_dispatch_events(timeout=wait)
            if not self.is_parent_alive():
                break
            self._sweep()
        self._stop()

    def _attach_metrics(self) -> None:
        """Count closed connections in the app's metrics registry, when the app has one."""
        state = getattr(self.wsgi, "extensions", {}).get("trustgate")
        registry = getattr(getattr(state, "metrics", None), "registry", None)
        if isinstance(registry, prometheus_client.CollectorRegistry):
            self._stats.attach(registry)

    def _stop(self) -> None:
        self.set_accept_enabled(False)
        if self.balance is not None:
            self.balance.leave()
        # Idle connections get a moment for a request already on its way (it is
        # answered with "Connection: close"); partial requests keep their deadline.
        self._conns.cap_idle(time.monotonic() + STOP_KEEPALIVE_LINGER)
        give_up = time.monotonic() + self.cfg.graceful_timeout
        while self._conns.open > 0 and time.monotonic() < give_up:
            self.notify()
            self.wait_for_and_dispatch_events(timeout=_SWEEP_INTERVAL)
            self._sweep()
        self._conns.drop_all()
        # As gthread's run ends (gunicorn 27.0.1).
        self.tpool.shutdown(wait=False)
        self.poller.close()
        self.method_queue.close()
        for listener in self.sockets:
            listener.close()

    def _sweep(self) -> None:
        now = time.monotonic()
        if now < self._next_sweep:
            return
        self._next_sweep = now + _SWEEP_INTERVAL
        self._conns.expire(now)
        self._stats.observe(now, self._conns.waiting, self._conns.busy)

    def accept(self, listener: socket.socket) -> None:
        """Accept one connection; at capacity, make room by closing the oldest waiting.

        With several workers, a worker holding more connections than a sibling
        leaves the connection to it for a moment (see ``balance``).
        """
        if self.balance is not None and not self.balance.should_accept(self._conns.open):
            self._paused_until = time.monotonic() + _DEFER_SECONDS
            self.set_accept_enabled(False)
            return
        if self._conns.open >= self._capacity and not self._conns.evict_oldest():
            self._pause_accepting()
            return
        try:
            client, address = listener.accept()
        except (BlockingIOError, InterruptedError):
            return  # a sibling took it
        except OSError as exc:
            if exc.errno in (errno.ECONNABORTED, errno.EPROTO):
                return  # the client left; the listener says when the next one waits
            if exc.errno in (errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM):
                if not self._conns.evict_oldest():
                    self._pause_accepting()
                return
            raise
        self._open(client, address, listener.getsockname())

    def _pause_accepting(self) -> None:
        self._paused_until = time.monotonic() + _ACCEPT_PAUSE
        self.set_accept_enabled(False)

    def _open(self, client: socket.socket, address: Any, server: Any) -> None:
        client.setblocking(False)
        sock: socket.socket = client
        if self.cfg.is_ssl:
            # gunicorn's sock.ssl_wrap_socket, but never handshaking here: the
            # loop does it as the client's bytes arrive.
            try:
                sock = gunicorn_sock.ssl_context(self.cfg).wrap_socket(
                    client,
                    server_side=True,
                    do_handshake_on_connect=False,
                    suppress_ragged_eofs=self.cfg.suppress_ragged_eofs,
                )
            except (OSError, ValueError):  # the client left already
                util.close(client)
                return
        conn = Conn(self.cfg, sock, address, server, self._framer())
        conn.callback = partial(self._on_event, conn)
        conn.expires = time.monotonic() + self.client_timeout
        self._conns.add(conn)

    def _framer(self) -> RequestFramer:
        return RequestFramer(MAX_HEAD_BYTES, self.max_body_bytes)

    def _on_event(self, conn: Conn, _fileobj: object) -> None:
        if conn.closing:
            self._conns.drain(conn)
        else:
            self._progress(conn)

    # Receiving a request --------------------------------------------------

    def _progress(self, conn: Conn) -> None:
        """Advance the handshake and the request as far as the bytes received allow."""
        try:
            if not conn.handshaken:
                conn.sock.do_handshake()
                conn.handshaken = True
            end = self._receive(conn)
        except ssl.SSLWantReadError:
            self._conns.listen(conn, selectors.EVENT_READ)
        except ssl.SSLWantWriteError:
            self._conns.listen(conn, selectors.EVENT_WRITE)
        except FramingError as exc:
            self._stats.count("refused")
            self._conns.refuse(conn, exc.status, exc.reason)
        except (OSError, ValueError):  # a failed handshake, a reset, an early close
            self._conns.drop(conn)
        else:
            if end is not None:
                self._dispatch(conn, end)
            else:
                self._conns.listen(conn, selectors.EVENT_READ)

    def _receive(self, conn: Conn) -> int | None:
        """Read until the request is complete (its end) or the socket has no more now (None).

        Raises:
            ConnectionResetError: the client closed before its request was complete.
        """
        while (end := conn.framer.feed(conn.buf)) is None:
            if not conn.continued and conn.framer.awaits_continue(conn.buf):
                # As gunicorn would, but from here: the body is awaited here.
                conn.continued = True
                with contextlib.suppress(OSError, ValueError):
                    conn.sock.send(b"HTTP/1.1 100 Continue\r\n\r\n")
            try:
                data = conn.sock.recv(RECV_BYTES)
            except BlockingIOError:
                return None
            if not data:
                raise ConnectionResetError("closed before the request was complete")
            if conn.kept:
                # The next request starts: it has the same time as a first one.
                conn.kept = False
                conn.expires = time.monotonic() + self.client_timeout
            self._conns.received(conn, data)
        return end

    def _dispatch(self, conn: Conn, end: int) -> None:
        """Hand a complete request to a pool thread: its parser gets exactly the request's bytes."""
        conn.parser = buffered_parser(self.cfg, self._conns.take(conn, end), conn.client)
        self.enqueue_req(conn)

    # In a pool thread, then back in the loop ------------------------------

    def handle(self, conn: Conn) -> bool:
        """Serve the buffered request in a pool thread; whether to keep the connection.

        gthread's ``handle`` (gunicorn 27.0.1) without what the loop has done
        already: waiting for data, the TLS handshake, HTTP/2 negotiation.
        ``super().handle`` cannot serve instead: it makes the socket blocking
        with no timeout (a client that never reads would keep the thread), and
        it logs a write timeout, this worker's everyday way to shed a stuck
        client, as a socket error with its traceback.
        """
        req = None
        try:
            # Blocking with a timeout: the parser reads the buffered request,
            # never the socket, so only writes can wait on the client.
            conn.sock.settimeout(self.client_timeout)
            req = next(conn.parser)
            if not req:
                return False
            if conn.continued:
                req._expected_100_continue = False  # the loop answered it already
            return bool(self._keepalive_after(conn, self.handle_request(req, conn)))
        except (StopIteration, http.errors.NoMoreData):
            return False
        except OSError as exc:  # a timeout, a reset, a TLS error: the client is gone or stuck
            self.log.debug("closing the connection from %s: %s", conn.client, exc)
            return False
        except Exception as exc:  # gunicorn's parse errors: it answers 400 and the like
            self.handle_error(req, conn.sock, conn.client, exc)
            return False

    def handle_request(self, req: Any, conn: Conn) -> bool:
        """gthread's ``handle_request``, answering in one write (see ``serving.exchange``)."""
        return serve(self, req, conn)

    def finish_request(self, conn: Conn, fs: Future[Any]) -> None:
        """Back in the loop after a request: wait for the next one, or close."""
        try:
            keep = bool(fs.result()) if not fs.cancelled() else False
        except Exception:
            keep = False
        if not keep:
            self._conns.close_gracefully(conn)
            return
        unread = unread_bytes(conn.parser)
        if unread:
            # The framing and gunicorn's parser disagree on where the request
            # ended (module doc of webhook.serving.framing): the connection cannot go on.
            _log.warning(
                "closing a connection whose request gunicorn read %d bytes short of its framing",
                len(unread),
            )
            self._conns.close_gracefully(conn)
            return
        conn.sock.setblocking(False)
        conn.framer = self._framer()
        conn.continued = False
        now = time.monotonic()
        conn.kept = not conn.buf
        if conn.kept:
            conn.expires = now + self.cfg.keepalive
            if not self.alive:
                conn.expires = min(conn.expires, now + STOP_KEEPALIVE_LINGER)
        else:
            conn.expires = now + self.client_timeout
        self._conns.wait(conn)
        # TLS may hold decrypted bytes the poller cannot see: read now.
        self._progress(conn)


def worker_class(
    client_timeout: float, max_body_bytes: int, workers: int = 1
) -> type[TrustgateWorker]:
    """A worker class with these limits, for gunicorn's ``worker_class`` setting.

    gunicorn builds workers from a class and its own settings only, so the
    limits it has no setting for travel as class attributes. With several
    ``workers``, the class carries the shared memory in which they balance
    connections (see ``balance``): made here, in the master, before the fork.
    """
    balance = AcceptBalance(slots=2 * workers + 2) if workers > 1 else None
    return type(
        "TrustgateWorker",
        (TrustgateWorker,),
        {
            "__module__": __name__,
            "client_timeout": float(client_timeout),
            "max_body_bytes": int(max_body_bytes),
            "balance": balance,
        },
    )
