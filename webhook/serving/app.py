"""The Flask app: routes, body limits, JSON in and out; nothing else.

``create_app`` builds everything a worker needs (policy store, engine, metrics)
so that nothing happens at import time and tests can build apps freely.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson
from flask import Flask, Response, request
from prometheus_client import CONTENT_TYPE_LATEST
from werkzeug.exceptions import HTTPException, RequestEntityTooLarge
from werkzeug.wrappers import Request

from webhook.admission.mutation import mutation_review, unpatched
from webhook.admission.review import Decision, parse_review, review
from webhook.admission.updates import DELETING, UNCHANGED
from webhook.config import Config
from webhook.core.errors import AdmissionReviewError
from webhook.core.observability import get_logger
from webhook.engine import Engine, PolicyResult
from webhook.policy.store import PolicyStore, ReloadStatus
from webhook.services import (
    build_caches,
    build_engine,
    build_mark_store,
    build_set_verifier,
    watched_pull_secrets,
)
from webhook.serving.metrics import Metrics
from webhook.serving.reviewpath import ReviewPath
from webhook.signatures.refresher import RootRefresher
from webhook.trust.trustroot import TrustRoots

log = get_logger("app")


@dataclass(frozen=True, slots=True)
class Settings:
    """What an app is built from; read once by the CLI from flags and files."""

    policies: Path
    config: Config = field(default_factory=Config)
    reload: bool = True


@dataclass(frozen=True, slots=True)
class Runtime:
    """The objects one app owns, kept in ``app.extensions["trustgate"]``."""

    store: PolicyStore
    engine: Engine
    metrics: Metrics


def _json(data: Any, status: int = 200) -> Response:
    return Response(_dumps(data), status=status, mimetype="application/json")


def _dumps(data: Any) -> bytes:
    """Compact JSON, by orjson (a fraction of json.dumps's time on every answer).

    orjson writes non-ASCII text as UTF-8 rather than ``\\u`` escapes: the same
    JSON. What it refuses (integers past 64 bits) goes to the standard library.
    """
    try:
        return orjson.dumps(data)
    except (TypeError, orjson.JSONEncodeError):
        return json.dumps(data, separators=(",", ":")).encode()


def create_app(settings: Settings) -> Flask:
    """Build the webhook app.

    Raises:
        PolicyError: when the policy directory cannot be loaded at start-up and
            no ``policies.signature`` is configured; serving with no policies
            would deny (or admit) everything. With it, the app starts with no
            set, not ready, and denies every review until a valid one loads.
        ConfigError: ``policies.signature`` asks for what is not supported.
    """
    metrics = Metrics()
    signature = settings.config.policy_signature

    def on_reload(status: ReloadStatus) -> None:
        metrics.policies_loaded.set(status.policies)
        metrics.reload_ok.set(0 if status.last_error else 1)
        if status.last_error:
            metrics.reload_failures.inc()
        else:
            metrics.reload_timestamp.set(status.loaded_at)
        if store.signature is not None:
            metrics.observe_signature(store.signature)
        if not interval and store.loaded:
            store.stop()  # reloads are off: polled only until a first valid set loaded

    interval = settings.config.reload_interval_seconds if settings.reload else 0.0
    roots = TrustRoots()
    store = PolicyStore(
        settings.policies,
        interval=interval or 2.0,
        on_reload=on_reload,
        roots=roots,
        verifier=build_set_verifier(settings.config),
        marks=build_mark_store(settings.config),
        required=signature.required if signature is not None else True,
        minimum_version=signature.minimum_version if signature is not None else 0,
        on_refused=lambda exc: metrics.set_refusals.labels(exc.reason).inc(),
        on_mark_error=lambda exc: metrics.mark_write_failures.inc(),
    )
    on_reload(store.status)
    sigstore = settings.config.sigstore
    if sigstore.refresh_trusted_root:
        RootRefresher(
            roots,
            url=sigstore.tuf_url,
            timeout=sigstore.refresh_timeout_seconds,
            on_refresh=store.reload,
        ).start()
    caches = build_caches(settings.config, metrics.observe_cache, metrics, shared=True)
    # A watched cache of pull secrets, started in this (worker) process.
    pulls = watched_pull_secrets(settings.config)
    engine = build_engine(
        lambda: store.current,
        settings.config,
        metrics.observe_cache,
        metrics.observe_network,
        caches=caches,
        overrun_observer=metrics.observe_condition_overrun,
        pull_secrets=pulls[0] if pulls is not None else None,
    )
    if pulls is not None:
        pulls[1].start()
    runtime = Runtime(store, engine, metrics)
    # Polled even with reloads off while no set is loaded: a valid one must load.
    if interval > 0 or not store.loaded:
        store.start()

    recheck = settings.config.recheck_unchanged_images
    limit = settings.config.max_request_bytes
    app = Flask("trustgate")
    app.config["MAX_CONTENT_LENGTH"] = limit
    app.extensions["trustgate"] = runtime

    def validate(req: Request) -> Response:
        started = time.perf_counter()
        body = _body(req, limit)
        if isinstance(body, Response):
            metrics.requests.labels("invalid").inc()
            return body
        if not store.loaded:
            refused = _not_answerable(body)
            metrics.requests.labels("error" if refused is None else "invalid").inc()
            return refused or _json(_denial(body, 503, _missing(store)))
        try:
            answer, decision, _ = review(engine, body, recheck_unchanged_images=recheck)
        except AdmissionReviewError as exc:
            metrics.requests.labels("invalid").inc()
            return _not_a_review(exc)
        except Exception:
            # The boundary: whatever went wrong, answer a denial, never a 500
            # that failurePolicy might turn into an admission.
            log.exception("review failed", extra={"outcome": "error"})
            metrics.requests.labels("error").inc()
            return _json(_internal_denial(body), 200)
        _record(metrics, decision)
        metrics.duration.observe(time.perf_counter() - started)
        return _json(answer)

    def mutate(req: Request) -> Response:
        # Never a denial: the validating webhook decides. Whatever goes wrong
        # here, the object is admitted unchanged and /validate judges it.
        body = _body(req, limit)
        if isinstance(body, Response):
            metrics.mutations.labels("invalid").inc()
            return body
        if not store.loaded:  # /validate denies it; nothing to pin by
            refused = _not_answerable(body)
            metrics.mutations.labels("unchanged" if refused is None else "invalid").inc()
            return refused or _json(unpatched(_uid(body)))
        try:
            answer, mutation, _ = mutation_review(engine, body, recheck_unchanged_images=recheck)
        except AdmissionReviewError as exc:
            metrics.mutations.labels("invalid").inc()
            return _not_a_review(exc)
        except Exception:
            log.exception(
                "mutation failed; answered allowed without a patch", extra={"outcome": "error"}
            )
            metrics.mutations.labels("error").inc()
            return _json(unpatched(_uid(body)))
        metrics.mutations.labels(mutation.label).inc()
        metrics.pinned_images.inc(len(mutation.pins))
        return _json(answer)

    # Served by ReviewPath below Flask; the routes stay for other methods
    # (405) and for anything that calls Flask's own wsgi_app.
    app.add_url_rule("/validate", "validate", lambda: validate(request), methods=["POST"])
    app.add_url_rule("/mutate", "mutate", lambda: mutate(request), methods=["POST"])
    app.wsgi_app = ReviewPath(  # type: ignore[method-assign]
        app.wsgi_app, {"/validate": validate, "/mutate": mutate}, max_content_length=limit
    )

    @app.get("/healthz")
    def healthz() -> Response:
        return _json({"status": "ok"})

    @app.get("/readyz")
    def readyz() -> Response:
        """503 until the pull secrets are read and a policy set is loaded; 200 after.

        Until the pull secrets are first read, reviews that need them would be
        denied for want of a login; without a policy set (none was valid at
        start-up) every review is denied: the pod is not ready (nor registered).
        Once a set is in force, a refused reload does not make the pod unready:
        every replica sees the same refused directory, so 503 would take them
        all out of the Service at once, and the webhook out of service. With
        failurePolicy Fail every deploy would then fail; with Ignore every
        deploy would be admitted unchecked; both while the last good set could
        still be enforcing. So the pod stays ready and enforces that set, and
        the body (``policySignature.lastRefusal``), the metrics, the alert and
        the log say why the newer set is not in force.
        """
        status = store.status
        reasons = []
        if pulls is not None and not pulls[1].synced:
            reasons.append("the pull secrets are not read yet")
        if not store.loaded:
            reasons.append(_missing(store))
        ready = not reasons
        return _json(
            {
                "ready": ready,
                "reason": "; ".join(reasons) or None,
                "policySignature": None if store.signature is None else store.signature.as_json(),
                "pullSecrets": None if pulls is None else pulls[1].status(),
                "policies": status.policies,
                "fingerprint": status.fingerprint,
                "loadedAt": status.loaded_at,
                "lastError": status.last_error,
                "lastErrorAt": status.last_error_at,
                "sharedCache": caches.shared.status() if caches.shared else None,
            },
            200 if ready else 503,
        )

    @app.get("/metrics")
    def metrics_view() -> Response:
        return Response(metrics.render(), mimetype=CONTENT_TYPE_LATEST)

    @app.errorhandler(HTTPException)
    def http_error(exc: HTTPException) -> Response:
        code = exc.code or 500
        if code == 413:
            return _too_large(limit)
        answer = _json({"error": exc.description or exc.name}, code)
        # What the error's own response would carry besides its HTML body: a
        # 405 must name the methods that are allowed (RFC 9110, 15.5.6).
        for name, value in exc.get_headers():
            if name.lower() != "content-type":
                answer.headers[name] = value
        return answer

    return app


def _too_large(limit: int) -> Response:
    return _json({"error": f"the body is larger than {limit} bytes"}, 413)


def _body(req: Request, limit: int) -> Any:
    """The request's JSON body, or the 400 answer for a body that is not JSON.

    ``/validate`` and ``/mutate`` read their AdmissionReview alike. orjson
    reads a review in less than half the standard library's time. What it
    refuses (NaN, lone surrogates, a byte order mark, nesting past 1024
    levels) goes to the standard library, so a body means what it meant
    before; integers past 64 bits, which the API server cannot send, are
    read as floats.
    """
    try:
        data = req.get_data(cache=False)
    except RequestEntityTooLarge:
        return _too_large(limit)
    if len(data) >= limit and req.content_length is None and req.environ["wsgi.input"].read(1):
        # A body without a length (chunked) werkzeug cuts at the limit without
        # a word; what is cut could still parse. The server's worker refuses
        # such a body before the app sees it; this holds without that worker.
        return _too_large(limit)
    try:
        return orjson.loads(data)
    except orjson.JSONDecodeError:
        pass
    try:
        return json.loads(data)
    except ValueError:
        return _json({"error": "the body is not valid JSON"}, 400)
    except RecursionError:
        return _json({"error": "the body nests too deeply to read (over ~1,000 levels)"}, 400)


def _not_a_review(exc: AdmissionReviewError) -> Response:
    return _json({"error": f"not an AdmissionReview trustgate can answer: {exc}"}, 400)


#: The reasons updates.not_new gives, as the not-rechecked metric's labels.
_NOT_RECHECKED = {UNCHANGED: "unchanged", DELETING: "deleting"}


def _record(metrics: Metrics, decision: Decision) -> None:
    tally = metrics.tally
    tally.inc(metrics.requests, (decision.label,))
    reason = decision.audit_annotations.get("not-rechecked")
    if reason in _NOT_RECHECKED:
        tally.inc(metrics.not_rechecked, (_NOT_RECHECKED[reason],))
    # Images of one review mostly share their policy and outcome: one
    # increment per distinct label set, not per image.
    outcomes: dict[tuple[str, ...], int] = {}
    for verdict in decision.verdicts:
        if verdict.no_match is not None:
            tally.inc(metrics.no_match, (verdict.no_match,))
        for result in verdict.policies:
            outcome = (result.policy, result.mode, _outcome(result))
            outcomes[outcome] = outcomes.get(outcome, 0) + 1
    for labels, count in outcomes.items():
        tally.inc(metrics.policy_decisions, labels, count)
    _record_waivers(metrics, decision)


def _outcome(result: PolicyResult) -> str:
    """The failed check's outcome (deny, error), else warn or pass: one pass over the checks."""
    outcome = "pass"
    for check in result.results:
        if check.outcome in ("deny", "error"):
            return check.outcome
        if check.outcome == "warn":
            outcome = "warn"
    return outcome


def _record_waivers(metrics: Metrics, decision: Decision) -> None:
    """Count, once per review, each exception admitted through and each break-glass use."""
    if decision.allowed:
        for name in sorted({w.exception for w in decision.waivers if w.exception}):
            metrics.exception_admissions.labels(name).inc()
    if decision.break_glass is None:
        return
    if decision.ignored or not decision.allowed:
        outcome = "ignored"
    elif any(not w.exception for w in decision.waivers):
        outcome = "honoured"
    else:
        outcome = "unneeded"
    metrics.break_glass.labels(outcome).inc()


def _missing(store: PolicyStore) -> str:
    """Why no policy set is loaded, for the denial and /readyz."""
    reason = store.status.last_error or "the policy directory is being read"
    return f"trustgate has no trusted policy set loaded: {reason}"


def _not_answerable(body: Any) -> Response | None:
    """The 400 for what is not a review, as when a set is loaded; None for a review."""
    try:
        parse_review(body)
    except AdmissionReviewError as exc:
        return _not_a_review(exc)
    return None


def _uid(body: Any) -> str:
    if isinstance(body, dict) and isinstance(body.get("request"), dict):
        return str(body["request"].get("uid", ""))
    return ""


def _internal_denial(body: Any) -> dict[str, Any]:
    message = "trustgate could not evaluate the request (internal error); see the webhook's log"
    return _denial(body, 500, message)


def _denial(body: Any, code: int, message: str) -> dict[str, Any]:
    """A review denied without judging it: no set loaded (503), or an internal error (500)."""
    return {
        "apiVersion": "admission.k8s.io/v1",
        "kind": "AdmissionReview",
        "response": {
            "uid": _uid(body),
            "allowed": False,
            "status": {"code": code, "message": message},
        },
    }
