"""POST /validate and /mutate, answered below Flask's request machinery.

Every review the API server sends is a POST to one of two fixed paths with a
JSON body, and its answer is JSON. Flask's per-request work (application and
request contexts, signals, URL matching, before/after hooks, response
processing) costs more than trustgate's decision on an allowlist-only policy:
measured in-process, a Flask view that reads and answers a review takes
61 us, the same with werkzeug's Request and Response alone 26 us. So these
two paths are served from werkzeug's Request and the view's Response, in
front of the Flask app, which keeps every other path and method (health,
metrics, 404, 405) and its error handlers.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import Any

from werkzeug.wrappers import Request, Response

__all__ = ["ReviewPath"]

Handler = Callable[[Request], Response]
WSGIApp = Callable[[dict[str, Any], Callable[..., Any]], Iterable[bytes]]


class ReviewPath:
    """A WSGI app: ``routes`` for POST requests to their paths, the rest to ``app``.

    The handlers read the body through a werkzeug Request limited to
    ``max_content_length`` bytes (past it, ``get_data`` raises
    RequestEntityTooLarge, as under Flask); the query string (the API server
    adds ``?timeout=10s``) plays no part, as in Flask's routing.
    """

    def __init__(
        self, app: WSGIApp, routes: Mapping[str, Handler], *, max_content_length: int
    ) -> None:
        self.app = app
        self.routes = dict(routes)
        self.max_content_length = max_content_length

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Any:
        if environ.get("REQUEST_METHOD") == "POST":
            handler = self.routes.get(environ.get("PATH_INFO", ""))
            if handler is not None:
                request = Request(environ)
                request.max_content_length = self.max_content_length
                return handler(request)(environ, start_response)
        return self.app(environ, start_response)
