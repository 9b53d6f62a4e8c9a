"""The baseline: a Flask app on the same server stack that admits everything.

It still reads the body and echoes the uid, as any correct webhook must, so the
ratio to it measures what trustgate's decision costs and nothing else.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from flask import Flask, Response, request

from webhook.server import ServeOptions, serve


def create_minimal_app() -> Flask:
    """An admission webhook that allows every request."""
    app = Flask("minimal")

    @app.post("/validate")
    def validate() -> Response:
        body = json.loads(request.get_data())
        answer = {
            "apiVersion": "admission.k8s.io/v1",
            "kind": "AdmissionReview",
            "response": {"uid": body["request"]["uid"], "allowed": True},
        }
        return Response(json.dumps(answer), mimetype="application/json")

    @app.get("/healthz")
    def healthz() -> Response:
        return Response('{"status":"ok"}', mimetype="application/json")

    return app


def main() -> None:
    """Serve the minimal app with the options trustgate serve would use."""
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--cert", type=Path, required=True)
    parser.add_argument("--key", type=Path, required=True)
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--threads", type=int, default=16)
    args = parser.parse_args()
    options = ServeOptions(
        host="127.0.0.1",
        port=args.port,
        certfile=args.cert,
        keyfile=args.key,
        workers=args.workers,
        threads=args.threads,
    )
    serve(create_minimal_app, options)


if __name__ == "__main__":
    main()
