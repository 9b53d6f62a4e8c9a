"""A tiny app for testing webhook.serving.server alone: ``python -m tests.integration.tinyapp``.

``/healthz`` reports which process built the app and which serves the request;
``/slow`` holds a request open (touching a marker file once it has started) so
that tests can stop the server with a request in flight.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from flask import Flask, Response, jsonify, request

from webhook.core.errors import TrustgateError
from webhook.serving.server import ServeOptions, serve


def create_tiny_app() -> Flask:
    """An app that remembers the pid of the process that built it."""
    built_in = os.getpid()
    app = Flask("tiny")

    @app.get("/healthz")
    def healthz() -> Response:
        return jsonify(built_in=built_in, pid=os.getpid(), ppid=os.getppid())

    @app.get("/slow")
    def slow() -> Response:
        Path(request.args["started"]).touch()
        time.sleep(float(request.args["seconds"]))
        return jsonify(done=True)

    return app


def main(argv: Sequence[str] | None = None) -> int:
    """Serve the tiny app; exit 2 with the message when the options are refused."""
    parser = argparse.ArgumentParser()
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--cert", type=Path)
    parser.add_argument("--key", type=Path)
    parser.add_argument("--workers", type=int, default=1)
    args = parser.parse_args(argv)
    options = ServeOptions(
        host=args.host,
        port=args.port,
        certfile=args.cert,
        keyfile=args.key,
        workers=args.workers,
        threads=4,
        graceful_timeout=10,
    )
    try:
        serve(create_tiny_app, options)
    except TrustgateError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
