"""ReviewPath in front of the Flask app: the same answers as Flask's own routes.

``create_app`` puts :class:`webhook.serving.reviewpath.ReviewPath` in front of Flask's
``wsgi_app``, and keeps the Flask routes for everything else. Here every body
goes both ways (through ReviewPath, and to the Flask app behind it directly)
and must get the same status and bytes; plus what the server's worker never
lets reach the app (a chunked body past the limit), and the start-up hook
that freezes a worker's objects.
"""

from __future__ import annotations

import gc
import io
import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from werkzeug.test import Client, EnvironBuilder

from tests.support.kube import pod_spec, policy_yaml, review, workload
from webhook.config import Config
from webhook.serving import server
from webhook.serving.app import Settings, create_app
from webhook.serving.reviewpath import ReviewPath

LIMIT = 64 * 1024
GOOD = "quay.io/acme/api:1.0"
BAD = "docker.io/library/nginx:1.27"


@pytest.fixture
def app(tmp_path: Path) -> Iterator[Flask]:
    (tmp_path / "prod.yaml").write_text(policy_yaml())
    config = Config(max_request_bytes=LIMIT)
    app = create_app(Settings(policies=tmp_path, config=config, reload=False))
    yield app
    app.extensions["trustgate"].store.stop()


def call(wsgi: Callable[..., Any], method: str, path: str, body: bytes) -> tuple[int, bytes]:
    response = Client(wsgi).open(
        path, method=method, data=body, headers={"Content-Type": "application/json"}
    )
    return response.status_code, response.get_data()


def both_ways(app: Flask, method: str, path: str, body: bytes) -> tuple[int, bytes]:
    """The answer through ReviewPath, once it is checked equal to Flask's own route's."""
    front = app.wsgi_app
    assert isinstance(front, ReviewPath)
    through = call(front, method, path, body)
    assert call(front.app, method, path, body) == through
    return through


def good_review() -> bytes:
    return json.dumps(review(workload("Deployment", pod_spec(GOOD)), uid="u-1")).encode()


def test_create_app_serves_the_review_paths_below_flask(app: Flask) -> None:
    front = app.wsgi_app
    assert isinstance(front, ReviewPath)
    assert set(front.routes) == {"/validate", "/mutate"}
    assert front.max_content_length == LIMIT


@pytest.mark.parametrize("path", ["/validate", "/mutate", "/validate?timeout=10s"])
@pytest.mark.parametrize(
    "body",
    [
        good_review(),
        json.dumps(review(workload("Pod", pod_spec(BAD)), uid="u-2")).encode(),
        b"{not json",
        b"",
        b"[1, 2]",
        b'{"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "request": 3}',
        b"[" * 5000 + b"]" * 5000,
        b" " * (LIMIT + 1),
        b"\xef\xbb\xbf" + good_review(),
        good_review().replace(b'"restartPolicy"', b'"x": NaN, "restartPolicy"'),
    ],
    ids=["good", "bad", "not-json", "empty", "array", "not-review", "deep", "large", "bom", "nan"],
)
def test_review_path_answers_as_the_flask_route(app: Flask, path: str, body: bytes) -> None:
    status, data = both_ways(app, "POST", path, body)
    assert status in (200, 400, 413)
    json.loads(data)


@pytest.mark.parametrize("method", ["GET", "PUT", "DELETE", "PATCH", "HEAD"])
def test_other_methods_reach_flask_and_name_post(app: Flask, method: str) -> None:
    response = Client(app.wsgi_app).open("/validate", method=method, data=good_review())
    assert response.status_code == 405
    assert "POST" in {m.strip() for m in response.headers["Allow"].split(",")}


def unsized(app: Flask, path: str, body: bytes) -> tuple[str, bytes]:
    """``body`` posted without a Content-Length, as a chunked body reaches the app."""
    environ = EnvironBuilder(
        path=path, method="POST", content_type="application/json"
    ).get_environ()
    environ.pop("CONTENT_LENGTH", None)
    environ["wsgi.input"] = io.BytesIO(body)
    environ["wsgi.input_terminated"] = True  # as gunicorn sets it
    captured: list[str] = []
    chunks = app.wsgi_app(environ, lambda status, headers, *_: captured.append(status))
    return captured[0], b"".join(chunks)


def padded(size: int) -> bytes:
    """A review that still parses when cut anywhere past the review: padded with spaces."""
    text = good_review()
    return text + b" " * (size - len(text))


@pytest.mark.parametrize("path", ["/validate", "/mutate"])
@pytest.mark.parametrize("size", [LIMIT + 1, 2 * LIMIT])
def test_a_body_past_the_limit_without_a_length_is_413(app: Flask, path: str, size: int) -> None:
    """werkzeug stops reading such a body at the limit; what it read would parse."""
    status, data = unsized(app, path, padded(size))
    assert status.startswith("413")
    assert json.loads(data) == {"error": f"the body is larger than {LIMIT} bytes"}


@pytest.mark.parametrize("path", ["/validate", "/mutate"])
@pytest.mark.parametrize("size", [len(good_review()), LIMIT - 1, LIMIT])
def test_a_body_up_to_the_limit_without_a_length_is_answered(
    app: Flask, path: str, size: int
) -> None:
    status, data = unsized(app, path, padded(size))
    assert status.startswith("200")
    assert json.loads(data)["response"] == {"uid": "u-1", "allowed": True}


@pytest.fixture
def unfrozen() -> Iterator[None]:
    gc.unfreeze()
    yield
    gc.unfreeze()


def test_each_worker_freezes_what_start_up_made(unfrozen: None) -> None:
    assert server._gunicorn_settings(server.ServeOptions(), None)["post_worker_init"] is (
        server._worker_loaded
    )
    made_at_start_up = [object() for _ in range(10)]
    assert gc.get_freeze_count() == 0
    server._worker_loaded(None)
    assert gc.get_freeze_count() > 0
    # Frozen objects are out of the generations collections walk.
    tracked = {id(o) for o in gc.get_objects()}
    assert id(made_at_start_up) not in tracked
    assert gc.is_tracked(made_at_start_up)
