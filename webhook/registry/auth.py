"""Registry authentication: Basic credentials and the Bearer token flow.

A registry that wants a token answers 401 with a challenge such as
``Bearer realm="https://auth.example.com/token",service="registry",scope="..."``.
The client asks the realm for a pull token for one repository and retries.
Tokens are cached per (host, scope) until shortly before they expire; the
cache belongs to one ``Authenticator`` and so to one client.
"""

from __future__ import annotations

import base64
import json
import re
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import NamedTuple

from cachetools import TLRUCache

from webhook.core.errors import UpstreamError
from webhook.core.scope import Login
from webhook.core.untrusted import json_value

DEFAULT_EXPIRES_IN = 60.0
_MAX_LIFETIME = 3600.0
_MARGIN = 30.0

_TOKEN = r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+"
_SCHEME = re.compile(rf"[\s,]*({_TOKEN})(?=\s|,|$)\s*")
# Unquoted values are tokens in RFC 9110; registries also send bare URLs, so any run
# without whitespace, commas or quotes is accepted.
_PARAM = re.compile(rf'\s*({_TOKEN})\s*=\s*([^\s,"]+|"(?:[^"\\]|\\.)*")\s*(?:,|$)')
_ESCAPE = re.compile(r"\\(.)")

TokenFetcher = Callable[[str, Mapping[str, str], Mapping[str, str]], bytes]
"""``fetch(url, query, headers) -> body``: GETs a token endpoint, raising UpstreamError."""


@dataclass(frozen=True, slots=True)
class Challenge:
    """One ``WWW-Authenticate`` challenge: a lowercase scheme and its parameters.

    Parameter names are lowercase; values are unquoted and unescaped.
    """

    scheme: str
    params: Mapping[str, str]


@dataclass(frozen=True, slots=True)
class BearerChallenge:
    """What a Bearer challenge asks for: where to get a token, and for what."""

    realm: str
    service: str | None = None
    scope: str | None = None


def parse_challenges(header: str) -> list[Challenge]:
    """Parse a ``WWW-Authenticate`` header into its challenges, in order.

    Quoted values may contain commas, spaces and backslash escapes. Raises
    UpstreamError when the header does not follow the auth-param grammar.
    """
    challenges: list[Challenge] = []
    pos = 0
    while header[pos:].strip(" \t,"):
        scheme = _SCHEME.match(header, pos)
        if scheme is None:
            raise UpstreamError(f"malformed WWW-Authenticate header {header[:200]!r}")
        pos = scheme.end()
        params: dict[str, str] = {}
        while (param := _PARAM.match(header, pos)) is not None:
            value = param.group(2)
            if value.startswith('"'):
                value = _ESCAPE.sub(r"\1", value[1:-1])
            params[param.group(1).lower()] = value
            pos = param.end()
        challenges.append(Challenge(scheme.group(1).lower(), params))
    return challenges


def bearer_challenge(header: str) -> BearerChallenge | None:
    """The Bearer challenge in ``header``, or None when it offers no Bearer scheme.

    Raises UpstreamError when the header is malformed or the Bearer challenge
    has no realm.
    """
    for challenge in parse_challenges(header):
        if challenge.scheme != "bearer":
            continue
        realm = challenge.params.get("realm")
        if not realm:
            raise UpstreamError("Bearer challenge has no realm")
        return BearerChallenge(
            realm, challenge.params.get("service"), challenge.params.get("scope")
        )
    return None


def basic_authorization(username: str | None, password: str | None) -> str | None:
    """The ``Authorization`` value for Basic credentials, None without a username."""
    if username is None:
        return None
    pair = f"{username}:{password or ''}".encode()
    return "Basic " + base64.b64encode(pair).decode("ascii")


def pull_scope(repository: str) -> str:
    """The token scope that allows pulling ``repository`` (a path, without host)."""
    return f"repository:{repository}:pull"


def parse_token(body: bytes) -> tuple[str, float]:
    """``(token, expires_in)`` from a token endpoint's JSON answer.

    Takes ``token``, else ``access_token``; ``expires_in`` defaults to 60 s.
    Raises UpstreamError when the body is not JSON or carries no token.
    """
    try:
        data = json_value(body)
    except json.JSONDecodeError as exc:
        raise UpstreamError(f"token endpoint answered a body that is not JSON: {exc.msg}") from None
    if not isinstance(data, dict):
        raise UpstreamError("token endpoint answered JSON that is not an object")
    token = data.get("token") or data.get("access_token")
    if not isinstance(token, str) or not token:
        raise UpstreamError("token endpoint answered no token")
    expires_in = data.get("expires_in")
    if isinstance(expires_in, bool) or not isinstance(expires_in, int | float) or expires_in <= 0:
        expires_in = DEFAULT_EXPIRES_IN
    return token, float(expires_in)


class _Cached(NamedTuple):
    header: str
    lifetime: float


def _time_to_use(_key: object, value: _Cached, now: float) -> float:
    return now + value.lifetime


class Authenticator:
    """Authorization headers for one registry client, with a Bearer token cache."""

    def __init__(self, *, maxsize: int = 1024, timer: Callable[[], float] = time.monotonic):
        self._tokens: TLRUCache[tuple[str, str, str], _Cached] = TLRUCache(
            maxsize, ttu=_time_to_use, timer=timer
        )
        self._lock = threading.Lock()

    def header(self, host: str, repository: str, key: str, login: Login | None) -> str | None:
        """The header to send first: a cached token, else ``login`` as Basic, else None.

        ``key`` is what tokens fetched with the login are cached by (see
        ``registry.logins.token_key_of``): a token is reused only with its own login.
        """
        with self._lock:
            cached = self._tokens.get((host, pull_scope(repository), key))
        if cached is not None:
            return cached.header
        if login is None:
            return None
        return basic_authorization(login.username, login.password)

    def forget(self, host: str, repository: str, key: str) -> None:
        """Drop the token of ``key`` for ``repository`` on ``host``: the registry refused it."""
        with self._lock:
            self._tokens.pop((host, pull_scope(repository), key), None)

    def fetch_token(
        self,
        host: str,
        repository: str,
        key: str,
        challenge: BearerChallenge,
        fetch: TokenFetcher,
        *,
        credentials: str | None,
    ) -> str:
        """Get a pull token from the challenge's realm, cache it, and return the header.

        ``credentials`` is a Basic ``Authorization`` value sent to the realm, or
        None to ask anonymously. Raises UpstreamError when the realm fails or
        answers without a token.
        """
        scope = pull_scope(repository)
        query = {"scope": scope}
        if challenge.service:
            query["service"] = challenge.service
        headers = {"Authorization": credentials} if credentials else {}
        token, expires_in = parse_token(fetch(challenge.realm, query, headers))
        header = f"Bearer {token}"
        lifetime = min(expires_in, _MAX_LIFETIME) - min(_MARGIN, expires_in / 4)
        if lifetime > 0:
            with self._lock:
                self._tokens[(host, scope, key)] = _Cached(header, lifetime)
        return header
