"""The baselines: webhooks on the same server stack that admit everything.

Each still reads the body and echoes the uid, as any correct webhook must.
The default is a bare Flask app (the view and Flask's request machinery);
``--lean`` answers the same view through ``webhook.serving.reviewpath.ReviewPath``,
below Flask's request machinery, as trustgate serves its reviews: the ratio to
it measures what trustgate's decision costs and nothing else.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from flask import Flask, Response, request
from werkzeug.wrappers import Request

from webhook.serving.reviewpath import ReviewPath
from webhook.serving.server import ServeOptions, serve


def _allow(req: Request) -> Response:
    body = json.loads(req.get_data())
    answer = {
        "apiVersion": "admission.k8s.io/v1",
        "kind": "AdmissionReview",
        "response": {"uid": body["request"]["uid"], "allowed": True},
    }
    return Response(json.dumps(answer), mimetype="application/json")


def create_minimal_app(*, lean: bool = False) -> Flask:
    """An admission webhook that allows every request (``lean``: below Flask's machinery)."""
    app = Flask("minimal")
    app.add_url_rule("/validate", "validate", lambda: _allow(request), methods=["POST"])
    if lean:
        app.wsgi_app = ReviewPath(  # type: ignore[method-assign]
            app.wsgi_app, {"/validate": _allow}, max_content_length=4 * 1024 * 1024
        )

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
    parser.add_argument("--lean", action="store_true", help="serve below Flask's machinery")
    args = parser.parse_args()
    options = ServeOptions(
        host="127.0.0.1",
        port=args.port,
        certfile=args.cert,
        keyfile=args.key,
        workers=args.workers,
        threads=args.threads,
    )
    serve(lambda: create_minimal_app(lean=args.lean), options)


if __name__ == "__main__":
    main()
