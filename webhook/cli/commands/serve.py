"""``trustgate serve``: run the admission webhook under gunicorn.

Separate because it is the one long-running command: it alone starts the
server, so the server and Flask are imported only when it runs.
"""

from __future__ import annotations

import argparse
import errno
import socket
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING

from webhook.cli.common import EXIT_OK, policy_directory, whole
from webhook.cli.usage import about
from webhook.config import Config
from webhook.core.errors import TrustgateError
from webhook.core.observability import configure_logging, get_logger
from webhook.policy.loader import load_directory
from webhook.serving.cpus import MAX_AUTO_WORKERS, WorkerCount, auto_workers

if TYPE_CHECKING:
    from webhook.serving.registrar import Target

_log = get_logger("cli")


def _workers(text: str) -> int | str:
    """``--workers``: ``auto`` or a whole number of at least 1."""
    value = "auto" if text == "auto" else whole(text, 1)
    if value is None:
        raise argparse.ArgumentTypeError(
            f"must be auto or a whole number of at least 1, got {text!r}"
        )
    return value


def _millicores(text: str) -> int:
    """``--cpu-request``: millicores, as the Downward API gives them with ``divisor: 1m``."""
    value = whole(text, 0)
    if value is None:
        raise argparse.ArgumentTypeError(f"must be a whole number of millicores, got {text!r}")
    return value


def add_serve(
    commands: argparse._SubParsersAction[argparse.ArgumentParser],
    common: argparse.ArgumentParser,
    env: Mapping[str, str],
) -> None:
    """Add ``serve``; ``env`` gives the default of --cpu-request."""
    serve = commands.add_parser(
        "serve",
        parents=[common],
        **about(
            "run the admission webhook (gunicorn over TLS)",
            "trustgate serve --policies policies --cert certs/tls.crt --key certs/tls.key",
            "stopped cleanly (SIGTERM)",
        ),
    )
    serve.set_defaults(handler=_serve)
    serve.add_argument("--cert", type=Path, help="TLS certificate (PEM)")
    serve.add_argument("--key", type=Path, help="TLS private key (PEM)")
    serve.add_argument("--host", default="0.0.0.0", help="address to listen on")
    serve.add_argument("--port", type=int, default=8443)
    serve.add_argument(
        "--workers",
        type=_workers,
        default="auto",
        metavar="N|auto",
        help="worker processes; auto (the default) starts one per CPU this process may use "
        "(the cgroup CPU limit, else --cpu-request, else the CPU affinity), 1 to "
        f"{MAX_AUTO_WORKERS}",
    )
    serve.add_argument(
        "--cpu-request",
        type=_millicores,
        default=env.get("TRUSTGATE_CPU_REQUEST_MILLICORES") or None,
        metavar="MILLICORES",
        help="the pod's CPU request, which --workers auto counts when there is no CPU limit "
        "(default: $TRUSTGATE_CPU_REQUEST_MILLICORES, which the chart sets)",
    )
    serve.add_argument("--threads", type=int, default=16, help="threads per worker")
    serve.add_argument(
        "--client-timeout",
        type=float,
        default=10.0,
        metavar="SECONDS",
        help="time a client has to send a complete request (TLS handshake, head and body) "
        "from connecting, or from the first byte of its next request on a kept-alive "
        "connection; also bounds each write of a response (default 10)",
    )
    serve.add_argument(
        "--max-connections",
        type=int,
        default=4096,
        metavar="N",
        help="open connections per worker; at this many, the oldest that has not sent a "
        "complete request is closed for a new one (default 4096)",
    )
    serve.add_argument(
        "--metrics-port",
        type=int,
        default=None,
        metavar="PORT",
        help="serve GET /metrics on this port alone (same address and TLS), and answer 404 "
        "for /metrics on --port (default: /metrics on --port)",
    )
    serve.add_argument(
        "--insecure-http", action="store_true", help="serve plain HTTP (local testing only)"
    )
    serve.add_argument(
        "--register",
        type=Path,
        default=None,
        metavar="FILE",
        help="once this server answers /readyz over TLS, write the webhooks FILE describes "
        "(the JSON the chart renders) into their webhook configurations through the "
        "Kubernetes API, and keep them there; a webhook without caBundle gets ca.crt "
        'beside --cert (docs/install.md, "Install, upgrade, rollback, uninstall")',
    )


def _serve(args: argparse.Namespace, config: Config) -> int:
    from flask import Flask

    from webhook.serving.app import Settings, create_app
    from webhook.serving.server import ServeOptions, serve

    if not args.insecure_http and (args.cert is None or args.key is None):
        raise TrustgateError("--cert and --key are required (or --insecure-http for local tests)")
    directory = policy_directory(args)  # a wrong --policies is the operator's to fix
    if config.policy_signature is None:
        load_directory(directory)  # fail fast, before any worker starts
    else:
        # No fail-fast load: a set that is unsigned or refused now leaves the pod
        # running but not ready, and it loads as soon as a valid one appears.
        # What the operator must fix in the configuration (a rollback ConfigMap
        # with no way to the API server) still stops it here.
        from webhook.services import build_mark_store, build_set_verifier

        build_set_verifier(config)
        build_mark_store(config)
    if config.credentials.pull_secrets:
        from webhook.services import kube_credentials

        kube_credentials(config)  # as fast: every worker would fail to start without it
    target = _registration_target(args, config)
    _check_free(args.host, args.port, "--port N (make run: PORT=N)")
    if args.metrics_port is not None:
        _check_free(args.host, args.metrics_port, "--metrics-port N")
    settings = Settings(policies=args.policies, config=config)
    options = ServeOptions(
        host=args.host,
        port=args.port,
        certfile=None if args.insecure_http else args.cert,
        keyfile=None if args.insecure_http else args.key,
        workers=_worker_count(args),
        threads=args.threads,
        max_body_bytes=config.max_request_bytes,
        client_timeout=args.client_timeout,
        max_connections=args.max_connections,
        metrics_port=args.metrics_port,
    )

    def worker_app() -> Flask:
        # Called in each worker after the fork: the log writer thread starts there.
        configure_logging(config.log_format, config.log_level, background=True)
        return create_app(settings)

    if target is not None:
        from webhook.serving.registrar import start_registrar

        start_registrar(target)
    serve(worker_app, options)
    return EXIT_OK


def _check_free(host: str, port: int, flag: str) -> None:
    """Refuse a port that another process listens on, naming the flag that sets it.

    gunicorn would retry for five seconds and then say only "Can't connect to";
    this says which setting to change. The probe binds as gunicorn does
    (SO_REUSEADDR), so a port whose last connections are closing is not refused.
    """
    if not 0 < port < 65536:
        return  # the server refuses it with its own message
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError as exc:
            if exc.errno == errno.EADDRINUSE:
                raise TrustgateError(
                    f"port {port} on {host} is in use by another process: stop that "
                    f"process, or choose another port with {flag}"
                ) from None
            raise TrustgateError(
                f"cannot listen on {host} port {port}: {exc.strerror}; choose another "
                f"address or port with --host and {flag}"
            ) from None


def _registration_target(args: argparse.Namespace, config: Config) -> Target | None:
    """``--register``: what to register, checked now so that a bad file fails at start-up."""
    if args.register is None:
        return None
    from webhook.kube.registration import load_registration
    from webhook.serving.registrar import Target

    if args.insecure_http:
        raise TrustgateError("--register needs TLS: the API server calls webhooks over HTTPS")
    target = Target(
        registration=args.register,
        ca_file=args.cert.parent / "ca.crt",
        host={"0.0.0.0": "127.0.0.1", "::": "::1", "": "127.0.0.1"}.get(args.host, args.host),
        port=args.port,
        kubeconfig=config.kubernetes.kubeconfig,
        context=config.kubernetes.context,
    )
    load_registration(target.registration, target.ca_file)
    return target


def _worker_count(args: argparse.Namespace) -> int:
    """``--workers``, with ``auto`` resolved from the CPUs available; logged either way."""
    if args.workers == "auto":
        count = auto_workers(request_millicores=args.cpu_request)
    else:
        count = WorkerCount(args.workers, "set by --workers")
    _log.info("%s", count)
    return count.workers
