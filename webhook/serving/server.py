"""The gunicorn application behind ``trustgate serve``: TLS, workers and shutdown.

gunicorn runs in-process: :func:`serve` hands it an app factory, which each
worker calls after the fork (``preload_app`` stays off), so every worker owns its
app, caches and threads. Workers are gunicorn's ``gthread`` with the client side
moved into the event loop (:mod:`webhook.serving.worker`): a webhook spends its time
waiting on registries, which threads overlap, and no thread waits on a client,
so slow or idle connections cannot take the threads reviews need.

TLS is configured here rather than by gunicorn's defaults. gunicorn's gthread
worker asks the ``ssl_context`` hook for a context on every new connection;
:class:`_ReloadingTLSContext` answers with a cached context and rebuilds it when
the certificate or key file changes, so a renewed certificate (a rotated
Kubernetes Secret, a new ``trustgate certs generate``) is served without a
restart. Connections already open keep the certificate they started with.

With a metrics port (``--metrics-port``) gunicorn listens on a second port and
the same workers serve it, with the same TLS and the same slow-client
protection: that port answers ``GET /metrics`` and nothing else, and the
webhook port then answers 404 for ``/metrics`` (:class:`_MetricsListener`). A
NetworkPolicy can so open the webhook port to the API server and the metrics
port to Prometheus alone. A listener of the workers rather than a server in the
master: the master forks workers whenever one exits, which a thread of its own
could deadlock (a lock held at the fork), and several workers already add their
metrics up through shared files, so any worker's answer is the pod's.
"""

from __future__ import annotations

import gc
import os
import re
import resource
import shutil
import ssl
import tempfile
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from cryptography import x509
from gunicorn.app.base import BaseApplication

from webhook.config import DEFAULT_MAX_BODY_BYTES
from webhook.core.errors import ConfigError
from webhook.core.observability import get_logger
from webhook.serving.metrics import forget_process, note_certificate_expiry, share_metrics
from webhook.serving.worker import worker_class

if TYPE_CHECKING:
    import flask

__all__ = ["ServeOptions", "serve"]

_log = get_logger("server")

#: What identifies one version of a file: a rename changes the inode, a write the
#: size, mtime or ctime (ctime even when ``cp -p`` or ``touch`` restores the mtime).
_FileStamp = tuple[int, int, int, int, int]


@dataclass(frozen=True, slots=True)
class ServeOptions:
    """How to serve: address, TLS files, worker model and timeouts (seconds).

    ``certfile`` and ``keyfile`` go together; with neither the server speaks plain
    HTTP, which kube-apiserver refuses, so that is for tests and benchmarks only.
    ``max_body_bytes`` is the app's body limit: the worker refuses a larger
    announced body before reading it (the app checks again). ``client_timeout``
    is how long a client has to send a complete request (TLS handshake, head and
    body) from connecting, or from the first byte of its next request on a
    kept-alive connection; it also bounds each write of a response.
    ``max_connections`` is per worker; at that many, the oldest connection that
    has not sent a complete request is closed for a new one.
    """

    host: str = "0.0.0.0"
    port: int = 8443
    certfile: Path | None = None
    keyfile: Path | None = None
    workers: int = 1
    threads: int = 16
    timeout: int = 30
    graceful_timeout: int = 20
    #: Above the 90 s idle timeout of Go HTTP clients such as kube-apiserver, so the
    #: client, not the server, closes an idle connection and no POST races a close.
    keepalive: int = 120
    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES
    client_timeout: float = 10.0
    max_connections: int = 4096
    access_log: bool = False
    #: A port of its own for ``GET /metrics``; None serves it on ``port`` as well.
    metrics_port: int | None = None


def serve(app_factory: Callable[[], flask.Flask], options: ServeOptions) -> None:
    """Serve the app that ``app_factory`` builds until gunicorn is told to stop.

    Call it from the main thread: gunicorn's master installs signal handlers.
    On SIGTERM the master stops accepting connections and gives workers
    ``graceful_timeout`` seconds to finish the requests in flight, then exits.
    With more than one worker, the workers share their metrics through files in
    a private temporary directory, which the master removes when it exits.

    Raises:
        ConfigError: the options are inconsistent, or the certificate or key
            cannot be read or do not form a usable pair.
        SystemExit: how gunicorn ends every process it runs, with status 0 after
            SIGTERM; worker processes leave this function the same way.
    """
    _check(options)
    _raise_open_files_limit()
    tls: _ReloadingTLSContext | None = None
    if options.certfile is not None and options.keyfile is not None:
        tls = _ReloadingTLSContext(options.certfile, options.keyfile)
    else:
        _log.warning(
            "serving plain HTTP on %s:%d without TLS; kube-apiserver requires HTTPS, "
            "so use this only for tests and benchmarks",
            options.host,
            options.port,
        )
    settings = _gunicorn_settings(options, tls)
    if options.metrics_port is not None:
        app_factory = _with_metrics_listener(app_factory, options.metrics_port)
        _log.info(
            "serving GET /metrics on port %d only; port %d serves reviews and health",
            options.metrics_port,
            options.port,
        )
    if options.workers == 1:
        _Application(app_factory, settings).run()
        return
    master = os.getpid()
    directory = Path(tempfile.mkdtemp(prefix="trustgate-metrics-"))
    share_metrics(directory)
    try:
        _Application(app_factory, settings | {"child_exit": _worker_exited}).run()
    finally:
        # Workers leave through here too (gunicorn ends them with SystemExit).
        if os.getpid() == master:
            shutil.rmtree(directory, ignore_errors=True)


def _check(options: ServeOptions) -> None:
    if (options.certfile is None) != (options.keyfile is None):
        raise ConfigError("TLS needs both a certificate file and a key file, or neither")
    if not 0 < options.port < 65536:
        raise ConfigError(f"port must be between 1 and 65535, got {options.port}")
    if options.metrics_port is not None:
        if not 0 < options.metrics_port < 65536:
            raise ConfigError(
                f"the metrics port must be between 1 and 65535, got {options.metrics_port}"
            )
        if options.metrics_port == options.port:
            raise ConfigError(
                f"the metrics port must differ from the webhook port ({options.port}), "
                "or be left out to serve /metrics on the webhook port"
            )
    if options.workers < 1 or options.threads < 1:
        raise ConfigError(
            f"workers and threads must be at least 1, got {options.workers} and {options.threads}"
        )
    if not options.client_timeout > 0:
        raise ConfigError(f"the client timeout must be positive, got {options.client_timeout}")
    if options.max_connections <= options.threads:
        raise ConfigError(
            f"max connections ({options.max_connections}) must be more than the threads "
            f"({options.threads})"
        )
    if options.max_body_bytes < 1:
        raise ConfigError(f"the body limit must be positive, got {options.max_body_bytes}")
    for path in (options.certfile, options.keyfile):
        if path is None:
            continue
        try:
            with path.open("rb"):
                pass
        except OSError as exc:
            raise ConfigError(f"cannot read {path}: {exc.strerror}") from exc


def _gunicorn_settings(options: ServeOptions, tls: _ReloadingTLSContext | None) -> dict[str, Any]:
    host = f"[{options.host}]" if ":" in options.host else options.host
    bind = [f"{host}:{options.port}"]
    if options.metrics_port is not None:
        bind.append(f"{host}:{options.metrics_port}")
    settings: dict[str, Any] = {
        "bind": bind,
        "post_worker_init": _worker_loaded,
        "worker_class": worker_class(
            options.client_timeout, options.max_body_bytes, options.workers
        ),
        "worker_connections": options.max_connections,
        "workers": options.workers,
        "threads": options.threads,
        "timeout": options.timeout,
        "graceful_timeout": options.graceful_timeout,
        "keepalive": options.keepalive,
        "preload_app": False,
        "accesslog": "-" if options.access_log else None,
        "errorlog": "-",
        "proc_name": "trustgate",
        # gunicorn 25.1+ listens on ~/.gunicorn/gunicorn.ctl by default; a second
        # server on the same machine would take it over. Nothing here uses it.
        "control_socket_disable": True,
    }
    if tls is not None:
        settings |= {
            # gunicorn needs both to wrap connections; the hook decides what is served.
            "certfile": str(tls.certfile),
            "keyfile": str(tls.keyfile),
            "ssl_context": tls,
        }
    return settings


def _with_metrics_listener(
    app_factory: Callable[[], flask.Flask], metrics_port: int
) -> Callable[[], flask.Flask]:
    """``app_factory``, its app's requests split between the webhook and the metrics port."""

    def build() -> flask.Flask:
        app = app_factory()
        # Outermost, ahead of the review path that answers /validate below Flask.
        app.wsgi_app = _MetricsListener(app.wsgi_app, metrics_port)  # type: ignore[method-assign]
        return app

    return build


#: The one path the metrics port serves, and the one the webhook port then refuses.
_METRICS_PATH = "/metrics"
_NOT_FOUND = b'{"error":"Not Found"}'
_SLASHES = re.compile("/{2,}")


class _MetricsListener:
    """WSGI middleware: ``/metrics`` on the metrics port only, and only ``/metrics`` there.

    gunicorn puts the port of the listener that accepted the connection in
    ``SERVER_PORT`` (from the socket, not from the client's Host header), so a
    client cannot reach one port's paths through the other. What is let through
    goes to the app unchanged, which answers a method other than GET with 405.
    """

    def __init__(self, app: Callable[..., Any], metrics_port: int) -> None:
        self._app = app
        self._metrics_port = str(metrics_port)

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Any:
        path = environ.get("PATH_INFO", "")
        if environ.get("SERVER_PORT") == self._metrics_port:
            allowed = path == _METRICS_PATH
        else:
            # werkzeug routes //metrics to /metrics (it merges slashes): so does this.
            allowed = _SLASHES.sub("/", path).rstrip("/") != _METRICS_PATH
        if allowed:
            return self._app(environ, start_response)
        start_response(
            "404 NOT FOUND",
            [("Content-Type", "application/json"), ("Content-Length", str(len(_NOT_FOUND)))],
        )
        return [_NOT_FOUND]


def _worker_loaded(worker: Any) -> None:
    """gunicorn's post_worker_init hook: the app just loaded is left out of garbage collection.

    A full collection walks every object the collector tracks, and after
    start-up that is all of Flask, sigstore, cryptography and the policies:
    measured, 40 to 65 ms per collection. Under load, objects that outlive a
    young collection (those of reviews in flight) add up to one every few
    seconds in each worker, a pause every review in flight waits out.
    ``gc.freeze`` moves what exists now to a generation collections skip, so
    they walk only what came after; what start-up made lives as long as the
    worker anyway.
    """
    gc.collect()
    gc.freeze()
    _log.info("worker %d ready", os.getpid(), extra={"pid": os.getpid()})


def _worker_exited(arbiter: object, worker: Any) -> None:
    """gunicorn's child_exit hook: the exited worker's live gauges stop counting."""
    forget_process(worker.pid)


def _raise_open_files_limit() -> None:
    """Raise the soft limit on open files to the hard one: each connection takes one."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = hard if hard != resource.RLIM_INFINITY else 1 << 20
    if soft != resource.RLIM_INFINITY and soft < target:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
        except (ValueError, OSError) as exc:
            _log.warning("cannot raise the open files limit from %d to %d: %s", soft, target, exc)


class _Application(BaseApplication):  # type: ignore[misc]
    """gunicorn's view of trustgate: settings from a dict, the app from a factory."""

    def __init__(self, app_factory: Callable[[], flask.Flask], settings: dict[str, Any]) -> None:
        self._app_factory = app_factory
        self._settings = settings
        super().__init__()

    def load_config(self) -> None:
        for name, value in self._settings.items():
            self.cfg.set(name, value)

    def load(self) -> flask.Flask:
        return self._app_factory()


class _ReloadingTLSContext:
    """gunicorn's ``ssl_context`` hook: TLS 1.2 or later with a certificate that follows its files.

    The context is built once and reused while neither file changes (two ``stat``
    calls per new connection). When one changes, the next connection rebuilds it;
    if the files do not load (say the certificate was replaced before the key),
    the previous context stays in use and the new files are tried again when they
    change next.
    """

    def __init__(self, certfile: Path, keyfile: Path) -> None:
        """Load the pair once, so that a bad pair fails before gunicorn starts.

        Raises:
            ConfigError: the files are not a PEM certificate and its private key.
        """
        self.certfile = certfile
        self.keyfile = keyfile
        self._lock = threading.Lock()
        self._failed: tuple[_FileStamp, _FileStamp] | None = None
        stamp = self._stamp()
        try:
            context = self._load()
        except (OSError, ssl.SSLError) as exc:
            raise ConfigError(
                f"{certfile} and {keyfile} are not a PEM certificate and its private key: {exc}"
            ) from exc
        self._current = (stamp, context)

    def __call__(self, config: object, default_factory: object) -> ssl.SSLContext:
        """The context for a new connection (gunicorn passes its config and default factory)."""
        try:
            stamp = self._stamp()
        except OSError:
            # Mid-replacement, or gone: keep what works and look again next time.
            return self._current[1]
        current = self._current
        if stamp == current[0] or stamp == self._failed:
            return current[1]
        with self._lock:
            if stamp in (self._current[0], self._failed):
                return self._current[1]
            try:
                context = self._load()
            except (OSError, ssl.SSLError) as exc:
                self._failed = stamp
                _log.warning(
                    "keeping the previous TLS certificate: %s and %s do not load: %s",
                    self.certfile,
                    self.keyfile,
                    exc,
                )
                return self._current[1]
            self._current = (stamp, context)
            _log.info("serving the TLS certificate in %s (pid %d)", self.certfile, os.getpid())
            return context

    def _stamp(self) -> tuple[_FileStamp, _FileStamp]:
        return _file_stamp(self.certfile), _file_stamp(self.keyfile)

    def _load(self) -> ssl.SSLContext:
        # No ALPN, so HTTP/1.1 only: gunicorn's default factory, bypassed here, is
        # what would offer h2 if http_protocols asked for it.
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.minimum_version = ssl.TLSVersion.TLSv1_2
        context.options |= ssl.OP_NO_RENEGOTIATION
        context.load_cert_chain(self.certfile, self.keyfile)
        _note_expiry(self.certfile)
        return context


def _note_expiry(certfile: Path) -> None:
    """Publish the served certificate's notAfter (the expiry metric and its alert read it)."""
    try:
        cert = x509.load_pem_x509_certificate(certfile.read_bytes())
    except (OSError, ValueError) as exc:
        # Replaced again since it loaded: the next load notes the new one.
        _log.warning("cannot read the expiry of %s: %s", certfile, exc)
        return
    note_certificate_expiry(cert.not_valid_after_utc.timestamp())


def _file_stamp(path: Path) -> _FileStamp:
    st = os.stat(path)
    return st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns
