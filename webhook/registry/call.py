"""One call to a registry: credentials, retries, redirects and a bounded body.

``RegistryClient`` decides what to fetch and how to check it; this module is
how one request reaches the registry and comes back. It is separate because
its rules hold for every request alike and are the security- and
breaker-sensitive part: credentials and tokens go to the configured registry
only (a redirect target never gets them, and a 401 is answered only when the
registry itself sent it); a transient failure is retried within the review's
deadline; and every failure is classified for the host's breaker, a
``HostFailure`` when the host failed while the review had time, a ``CallCut``
when the review's deadline ended the call.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlencode, urljoin, urlsplit

import urllib3

from webhook.core.deadline import BudgetExceeded, Deadline
from webhook.core.errors import UpstreamError
from webhook.core.failures import describe
from webhook.core.reference import ImageRef
from webhook.core.scope import Login
from webhook.core.sources import LoginSource
from webhook.registry.auth import (
    Authenticator,
    basic_authorization,
    bearer_challenge,
)
from webhook.registry.logins import Logins, kind_of, source_of, token_key_of
from webhook.registry.network import CallCut, HostFailure, Network
from webhook.registry.transport import Answer, cut_by_deadline, timed_out_waiting

_RETRYABLE = frozenset({429, 502, 503, 504})
_REDIRECTS = frozenset({301, 302, 303, 307, 308})
_MAX_REDIRECTS = 3
_BACKOFF = 0.2
_RETRY_AFTER_MAX = 2.0
_CHUNK = 64 * 1024
#: Refusals (and sources that gave no login) after which a call gives up.
MAX_REFUSALS = 8


class NotFound(UpstreamError):
    """The registry answered 404: the manifest, blob or repository does not exist."""


class _Transient(HostFailure):
    """A connection failure or timeout that a retry may cure."""


class _Refused(UpstreamError):
    """The registry or its token service refused one login: the next one is tried."""


@dataclass(frozen=True, slots=True)
class RegistrySettings:
    """How to reach one registry host (``host[:port]``, as in image references)."""

    insecure: bool = False
    ca: Path | None = None
    username: str | None = None
    password: str | None = field(default=None, repr=False)

    def login(self, host: str) -> Login | None:
        """The configured login for ``host``, when both username and password are set."""
        if self.username is None or self.password is None:
            return None
        return Login(self.username, self.password, f"registries.{host}", "config")


@dataclass(frozen=True, slots=True)
class Target:
    """Where one call goes: the image's registry, how to reach it, and its API base URL.

    It names the image in every error it makes, so that a failure says which
    image's registry failed.
    """

    ref: ImageRef
    settings: RegistrySettings
    base: str

    @property
    def host(self) -> str:
        """The registry host as the image reference names it (``host[:port]``)."""
        return self.ref.domain

    def error(self, message: str, kind: type[UpstreamError] = UpstreamError) -> UpstreamError:
        """An error of ``kind`` about this target's image."""
        return kind(message, image=str(self.ref))

    def remaining(self, deadline: Deadline) -> float:
        """The seconds ``deadline`` leaves; raises CallCut when none are left."""
        remaining = deadline.remaining()
        if remaining <= 0:
            raise self.error(_late(deadline, self.host), CallCut)
        return remaining


class Caller:
    """Makes the calls of one RegistryClient; thread-safe.

    ``timeout`` is each call's own timeout, ``retries`` how often a transient
    failure, 429 or 502-504 is retried, and ``max_token_bytes`` bounds a token
    endpoint's answer. Holds the client's Bearer token cache.
    """

    def __init__(
        self,
        network: Network,
        *,
        timeout: float,
        retries: int,
        max_token_bytes: int,
        sources: Sequence[LoginSource] = (),
    ) -> None:
        self._network = network
        self._logins = Logins(sources, self._network.event)
        self._timeout = timeout
        self._retries = retries
        self._max_token_bytes = max_token_bytes
        self._auth = Authenticator()

    def request(
        self, target: Target, method: str, path: str, deadline: Deadline, *, accept: str
    ) -> Answer:
        """Send with a login the registry accepts, retries and redirects; the body is left unread.

        The logins are tried in order (``_logins``) until the registry accepts
        one; the one it accepted is tried first next time, and its source is
        recorded in ``deadline.logins``. Returns any answer but 401/403/429/5xx,
        which raise UpstreamError; when every login is refused, the error
        names each source tried and why.
        """
        tried: list[str] = []
        configured = target.settings.login(target.host)
        for login in self._logins.candidates(target.host, target.ref, configured, deadline, tried):
            if len(tried) >= MAX_REFUSALS:
                # A workload naming many wrong secrets must not make trustgate hammer
                # the registry (and trip its rate limit for everyone) on each review.
                tried.append(f"no more: at most {MAX_REFUSALS} logins are tried per call")
                break
            try:
                response = self._attempt(target, login, method, path, deadline, accept)
            except _Refused as exc:
                tried.append(f"{source_of(login)} ({exc.message})")
                self._network.event(f"auth_failed:{kind_of(login)}", target.host)
                continue
            self._logins.accepted(target.host, target.ref, deadline, login)
            return response
        untried = deadline.scope.problems if deadline.scope is not None else ()
        raise target.error(
            f"authentication to {target.host} failed for {target.ref.path}; "
            f"tried: {'; '.join(tried)}" + (f"; not tried: {'; '.join(untried)}" if untried else "")
        )

    def _attempt(
        self,
        target: Target,
        login: Login | None,
        method: str,
        path: str,
        deadline: Deadline,
        accept: str,
    ) -> Answer:
        """The request made with ``login`` (None: anonymously), retried and redirected.

        Raises _Refused when the registry (or its token service) refuses the login.
        """
        token_key = token_key_of(login, deadline)
        authorization = self._auth.header(target.host, target.ref.path, token_key, login)
        authenticated = False
        attempt = 0
        while True:
            headers = {"Accept": accept}
            if authorization:
                headers["Authorization"] = authorization
            try:
                response = self._send(target, method, target.base + path, headers, deadline)
            except _Transient as exc:
                if attempt < self._retries and _pause(deadline, None, attempt):
                    attempt += 1
                    continue
                raise target.error(exc.message, HostFailure) from None
            except CallCut as exc:
                if attempt == 0:
                    raise
                # The host failed on its own before the deadline cut its retry short:
                # the breaker counts that failure.
                raise target.error(exc.message, HostFailure) from None
            status = response.status
            answered_by = urlsplit(response.url).netloc.lower()
            if status == 401 and answered_by != urlsplit(target.base).netloc:
                # A redirect target asking for credentials: they belong to the
                # registry alone, so neither they nor a token go anywhere else.
                response.close()
                raise target.error(
                    f"{target.host} redirected to {answered_by}, which asked for credentials; "
                    f"credentials and tokens for {target.host} are sent to it alone"
                )
            if status == 401 and not authenticated:
                response.close()
                self._auth.forget(target.host, target.ref.path, token_key)
                challenge = response.headers.get("WWW-Authenticate", "")
                authorization = self._token(target, login, token_key, challenge, deadline)
                authenticated = True
                continue
            if status in _RETRYABLE and attempt < self._retries:
                response.close()
                if _pause(deadline, response.headers.get("Retry-After"), attempt):
                    attempt += 1
                    continue
            if status == 429:
                response.close()
                raise target.error(f"rate limited by {target.host}")
            if status >= 500:
                response.close()
                raise target.error(
                    f"{target.host} answered {status} {response.reason}", HostFailure
                )
            if status in (401, 403):
                response.close()
                self._auth.forget(target.host, target.ref.path, token_key)
                raise _Refused(f"{status} {response.reason}")
            return response

    def _token(
        self,
        target: Target,
        login: Login | None,
        token_key: str,
        header: str,
        deadline: Deadline,
    ) -> str:
        """Answer a 401 challenge with a Bearer token; raises UpstreamError, _Refused."""
        try:
            challenge = bearer_challenge(header)
        except UpstreamError as exc:
            raise target.error(f"{target.host}: {exc.message}") from None
        if challenge is None:
            # Basic auth: the login was sent and refused, or none was sent.
            raise _Refused("refused" if login is not None else "credentials required")
        realm = urlsplit(challenge.realm)
        if realm.scheme not in ("http", "https") or not realm.netloc:
            raise target.error(f"{target.host} named an unusable token realm {challenge.realm!r}")
        private = realm.scheme == "https" or target.settings.insecure
        credentials = (
            basic_authorization(login.username, login.password)
            if private and login is not None
            else None
        )

        def fetch(url: str, query: Mapping[str, str], headers: Mapping[str, str]) -> bytes:
            full = url + ("&" if "?" in url else "?") + urlencode(query)
            sent = {"Accept": "application/json", **headers}
            try:
                response = self._send(target, "GET", full, sent, deadline)
            except _Transient as exc:
                # The registry's own token service failing: its breaker counts it.
                raise target.error(
                    f"token endpoint {realm.netloc}: {exc.message}", HostFailure
                ) from None
            if response.status in (401, 403):
                response.close()
                raise _Refused(f"token endpoint {realm.netloc} answered {response.status}")
            if not response.ok:
                response.close()
                kind = HostFailure if response.status >= 500 else UpstreamError
                raise target.error(
                    f"token endpoint {realm.netloc} answered {response.status} "
                    f"{response.reason} for {target.host}",
                    kind,
                )
            return self.read(target, response, self._max_token_bytes, deadline, "token")

        try:
            return self._auth.fetch_token(
                target.host, target.ref.path, token_key, challenge, fetch, credentials=credentials
            )
        except _Refused:
            raise
        except UpstreamError as exc:
            # A cut or a failure stays one, so that the breaker counts it rightly.
            kind = type(exc) if isinstance(exc, HostFailure | CallCut) else UpstreamError
            raise target.error(f"{target.host}: {exc.message}", kind) from None

    def _send(
        self,
        target: Target,
        method: str,
        url: str,
        headers: dict[str, str],
        deadline: Deadline,
    ) -> Answer:
        """One request, following up to three redirects by hand.

        Authorization is dropped on a redirect to another host, plain HTTP is
        refused unless the registry is insecure, and the registry's CA applies
        only to the first host. Raises _Transient for connection failures and
        timeouts, UpstreamError for TLS failures and bad redirects.
        """
        origin = urlsplit(url).netloc.lower()
        headers = {**headers, "Accept-Encoding": "identity"}
        for _ in range(_MAX_REDIRECTS + 1):
            remaining = target.remaining(deadline)
            limit = min(self._timeout, remaining)
            netloc = urlsplit(url).netloc.lower()
            ca = target.settings.ca
            try:
                response = self._network.transport.request(
                    method,
                    url,
                    headers,
                    timeout=limit,
                    ca=str(ca) if ca is not None and netloc == origin else None,
                )
            except (urllib3.exceptions.HTTPError, OSError) as exc:
                if cut_by_deadline(exc, deadline.remaining(), limit, self._timeout):
                    self._network.event("deadline_exceeded", netloc)
                    raise target.error(_late(deadline, netloc), CallCut) from None
                if isinstance(exc, urllib3.exceptions.SSLError):
                    raise target.error(
                        f"TLS with {netloc} failed: {describe(exc)}", HostFailure
                    ) from None
                if timed_out_waiting(exc):
                    raise _Transient(f"{netloc} timed out") from None
                raise _Transient(f"cannot reach {netloc}: {describe(exc)}") from None
            if response.status not in _REDIRECTS:
                return response
            response.close()
            location = response.headers.get("Location")
            if not location:
                raise target.error(f"{netloc} answered {response.status} without a Location")
            url = urljoin(url, location)
            parts = urlsplit(url)
            if parts.scheme != "https" and not (
                parts.scheme == "http" and target.settings.insecure
            ):
                raise target.error(
                    f"{netloc} redirected to a {parts.scheme} URL; HTTPS is required"
                )
            if parts.netloc.lower() != netloc:
                headers.pop("Authorization", None)
            if response.status == 303 and method != "HEAD":
                method = "GET"
        raise target.error(f"{target.host} redirected more than {_MAX_REDIRECTS} times")

    def expect_ok(self, target: Target, response: Answer, what: str) -> None:
        """Return when ``response`` is ok (below 400); else close it and raise NotFound
        for a 404, UpstreamError for any other status."""
        if response.ok:
            return
        response.close()
        if response.status == 404:
            raise target.error(f"{what} not found in {target.host}/{target.ref.path}", NotFound)
        raise target.error(f"{target.host} answered {response.status} for {what}")

    def read(
        self,
        target: Target,
        response: Answer,
        limit: int,
        deadline: Deadline,
        what: str,
    ) -> bytes:
        """The body, at most ``limit`` bytes, read before the deadline; raises UpstreamError."""
        too_large = f"{what} from {target.host} is larger than {limit} bytes"
        chunks: list[bytes] = []
        total = 0
        raw = response.raw
        limited = self._timeout
        try:
            length = response.headers.get("Content-Length", "")
            if length.isdigit() and int(length) > limit:
                raise target.error(too_large)
            while True:
                remaining = target.remaining(deadline)
                sock = getattr(raw.connection, "sock", None)
                if sock is not None:
                    limited = min(self._timeout, remaining)
                    sock.settimeout(limited)
                chunk = raw.read1(_CHUNK, decode_content=False)
                if not chunk:
                    break
                total += len(chunk)
                if total > limit:
                    raise target.error(too_large)
                deadline.charge(target.host, len(chunk))
                chunks.append(chunk)
            raw.drain_conn()
        except BudgetExceeded as exc:
            self._network.event("budget_exceeded", target.host)
            raise target.error(exc.message) from None
        except (urllib3.exceptions.HTTPError, OSError) as exc:
            if cut_by_deadline(exc, deadline.remaining(), limited, self._timeout):
                self._network.event("deadline_exceeded", target.host)
                late = _late(deadline, target.host, f"sending the {what}")
                raise target.error(late, CallCut) from None
            if timed_out_waiting(exc):
                raise target.error(
                    f"{target.host} timed out sending the {what}", HostFailure
                ) from None
            raise target.error(
                f"reading the {what} from {target.host} failed: {describe(exc)}", HostFailure
            ) from None
        finally:
            if raw.connection is not None:
                response.close()
        return b"".join(chunks)


def _late(deadline: Deadline, host: str, doing: str = "answering") -> str:
    return (
        f"{host} timed out: it was still {doing} when the review's deadline "
        f"of {deadline.seconds:g} s passed"
    )


def _pause(deadline: Deadline, retry_after: str | None, attempt: int) -> bool:
    """Sleep before a retry; False when the wait would not fit the deadline or is asked too long."""
    delay = _BACKOFF * 2**attempt
    if retry_after is not None and retry_after.strip().isdigit():
        delay = float(retry_after.strip())
        if delay > _RETRY_AFTER_MAX:
            return False
    if delay >= deadline.remaining():
        return False
    time.sleep(delay)
    return True
