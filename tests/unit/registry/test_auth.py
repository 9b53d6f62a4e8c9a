"""Challenge parsing, the token cache, and the Basic and Bearer flows end to end."""

from __future__ import annotations

import json
from collections.abc import Iterator
from urllib.parse import parse_qs, urlsplit

import pytest

from tests.unit.registry.test_client import (
    DIGEST,
    REPO,
    TAG_PATH,
    FakeRegistry,
    Reply,
    Request,
    make_client,
)
from webhook.core.deadline import Deadline
from webhook.core.errors import UpstreamError
from webhook.core.scope import Login
from webhook.registry.auth import (
    Authenticator,
    BearerChallenge,
    Challenge,
    basic_authorization,
    bearer_challenge,
    parse_challenges,
    parse_token,
)

HUB = (
    'Bearer realm="https://auth.docker.io/token",service="registry.docker.io",'
    'scope="repository:library/nginx:pull"'
)


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        (
            HUB,
            BearerChallenge(
                "https://auth.docker.io/token",
                "registry.docker.io",
                "repository:library/nginx:pull",
            ),
        ),
        (
            'Bearer realm="https://r/token",scope="repository:a/b:pull,push",service="r"',
            BearerChallenge("https://r/token", "r", "repository:a/b:pull,push"),
        ),
        ('Bearer realm="https://r/token"', BearerChallenge("https://r/token")),
        ("Bearer realm=https://r/token,service=r", BearerChallenge("https://r/token", "r")),
        (
            'bearer  Realm = "https://r/token" ,  SERVICE="r"',
            BearerChallenge("https://r/token", "r"),
        ),
        (
            r'Bearer realm="https://r/t",service="a \"quoted\" name"',
            BearerChallenge("https://r/t", 'a "quoted" name'),
        ),
        ('Basic realm="registry"', None),
        (
            'Basic realm="a, b", Bearer realm="https://r/token",service="r"',
            BearerChallenge("https://r/token", "r"),
        ),
        ("", None),
    ],
    ids=[
        "docker-hub",
        "comma-inside-quotes",
        "realm-only",
        "unquoted-values",
        "case-and-spaces",
        "escaped-quotes",
        "basic-only",
        "basic-then-bearer",
        "empty",
    ],
)
def test_bearer_challenge(header: str, expected: BearerChallenge | None) -> None:
    assert bearer_challenge(header) == expected


@pytest.mark.parametrize(
    "header",
    [
        'Bearer service="r",scope="repository:a:pull"',
        'Bearer realm=""',
    ],
    ids=["missing-realm", "empty-realm"],
)
def test_bearer_challenge_without_realm_is_an_error(header: str) -> None:
    with pytest.raises(UpstreamError, match="no realm"):
        bearer_challenge(header)


@pytest.mark.parametrize(
    "header",
    ['Bearer realm="https://r/token', 'Bearer realm="a" service="b"', "Bearer =x", '"Bearer"'],
    ids=["unterminated-quote", "missing-comma", "no-name", "quoted-scheme"],
)
def test_malformed_challenge_is_an_error(header: str) -> None:
    with pytest.raises(UpstreamError, match="malformed WWW-Authenticate"):
        parse_challenges(header)


def test_parse_challenges_keeps_every_scheme() -> None:
    assert parse_challenges('Basic realm="a, b", Bearer realm="c"') == [
        Challenge("basic", {"realm": "a, b"}),
        Challenge("bearer", {"realm": "c"}),
    ]


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        ({"token": "t", "expires_in": 300}, ("t", 300.0)),
        ({"access_token": "a"}, ("a", 60.0)),
        ({"token": "t", "access_token": "a", "expires_in": -5}, ("t", 60.0)),
        ({"token": "t", "expires_in": "soon"}, ("t", 60.0)),
    ],
)
def test_parse_token(body: dict[str, object], expected: tuple[str, float]) -> None:
    assert parse_token(json.dumps(body).encode()) == expected


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (b"<html>", "not JSON"),
        (b"[]", "not an object"),
        (b'{"token": ""}', "no token"),
        (b'{"token":' * 3000 + b'"t"' + b"}" * 3000, "not JSON: it nests too deeply"),
        (b"\xff\xfe\xff", "not JSON: it is not UTF-8"),
    ],
)
def test_parse_token_failures(body: bytes, message: str) -> None:
    with pytest.raises(UpstreamError, match=message):
        parse_token(body)


def test_basic_authorization() -> None:
    assert basic_authorization("alice", "s3cret") == "Basic YWxpY2U6czNjcmV0"
    assert basic_authorization("alice", None) == "Basic YWxpY2U6"
    assert basic_authorization(None, "s3cret") is None


def test_tokens_expire_before_the_registry_says() -> None:
    now = [0.0]
    auth = Authenticator(timer=lambda: now[0])
    challenge = BearerChallenge("https://r/token", "r")
    calls: list[tuple[str, dict[str, str], dict[str, str]]] = []

    def fetch(url: str, query: object, headers: object) -> bytes:
        calls.append((url, dict(query), dict(headers)))  # type: ignore[call-overload]
        return b'{"token": "t1", "expires_in": 60}'

    alice = Login("alice", "pw", "registries.r", "config")
    assert auth.fetch_token("r", "a/b", "", challenge, fetch, credentials=None) == "Bearer t1"
    assert calls == [("https://r/token", {"scope": "repository:a/b:pull", "service": "r"}, {})]
    # A token is reused with its own login only: the anonymous one serves no login.
    assert auth.header("r", "a/b", "", None) == "Bearer t1"
    assert auth.header("r", "a/b", alice.key, alice) == basic_authorization("alice", "pw")
    assert auth.header("r", "other/repo", "", None) is None
    assert auth.header("other-host", "a/b", "", None) is None
    now[0] = 44.0
    assert auth.header("r", "a/b", "", None) == "Bearer t1"
    now[0] = 46.0
    assert auth.header("r", "a/b", "", None) is None


def test_a_token_is_kept_per_login_key() -> None:
    auth = Authenticator()
    challenge = BearerChallenge("https://r/token", "r")

    def fetch(url: str, query: object, headers: object) -> bytes:
        return b'{"token": "for-team-a", "expires_in": 600}'

    auth.fetch_token("r", "a/b", "team-a/k1", challenge, fetch, credentials="Basic x")
    assert auth.header("r", "a/b", "team-a/k1", None) == "Bearer for-team-a"
    assert auth.header("r", "a/b", "team-b/k1", None) is None
    assert auth.header("r", "a/b", "", None) is None
    auth.forget("r", "a/b", "team-a/k1")
    assert auth.header("r", "a/b", "team-a/k1", None) is None


@pytest.fixture
def registry() -> Iterator[FakeRegistry]:
    """A fake registry that wants Bearer tokens, which it hands out at /token."""
    server = FakeRegistry()

    def manifest_head(request: Request) -> Reply:
        if request.headers.get("Authorization") == "Bearer tok":
            return Reply(headers={"Docker-Content-Digest": DIGEST})
        challenge = f'Bearer realm="{server.url}/token",service="fake",scope="ignored,really"'
        return Reply(401, {"WWW-Authenticate": challenge})

    server.routes[f"HEAD {TAG_PATH}"] = manifest_head
    server.routes["GET /token"] = Reply(body=b'{"token": "tok", "expires_in": 300}')
    yield server
    server.close()


def test_bearer_flow_end_to_end(registry: FakeRegistry) -> None:
    client = make_client(registry)
    assert client.resolve(registry.ref(), Deadline(5)) == DIGEST
    (token_request,) = registry.hits("GET", "/token")
    query = parse_qs(urlsplit(token_request.path).query)
    assert query == {"scope": [f"repository:{REPO}:pull"], "service": ["fake"]}
    assert "Authorization" not in token_request.headers
    assert client.resolve(registry.ref(), Deadline(5)) == DIGEST
    assert len(registry.hits("GET", "/token")) == 1
    assert [r.headers.get("Authorization") for r in registry.hits("HEAD", TAG_PATH)] == [
        None,
        "Bearer tok",
        "Bearer tok",
    ]


def test_bearer_flow_sends_basic_credentials_to_the_realm(registry: FakeRegistry) -> None:
    client = make_client(registry, username="alice", password="s3cret")
    assert client.resolve(registry.ref(), Deadline(5)) == DIGEST
    (token_request,) = registry.hits("GET", "/token")
    assert token_request.headers["Authorization"] == "Basic YWxpY2U6czNjcmV0"


def test_rejected_token_is_an_error_not_a_loop(registry: FakeRegistry) -> None:
    registry.routes["GET /token"] = Reply(body=b'{"token": "wrong"}')
    with pytest.raises(
        UpstreamError,
        match=rf"authentication to {registry.host} failed for {REPO}; tried: anonymous \(401",
    ):
        make_client(registry).resolve(registry.ref(), Deadline(5))
    assert len(registry.hits("GET", "/token")) == 1


def test_failing_token_endpoint_is_named(registry: FakeRegistry) -> None:
    registry.routes["GET /token"] = Reply(401)
    with pytest.raises(UpstreamError, match=r"token endpoint 127\.0\.0\.1:[0-9]+ answered 401"):
        make_client(registry).resolve(registry.ref(), Deadline(5))


def test_basic_challenge_without_credentials(registry: FakeRegistry) -> None:
    registry.routes[f"HEAD {TAG_PATH}"] = Reply(401, {"WWW-Authenticate": 'Basic realm="r"'})
    with pytest.raises(UpstreamError, match=r"tried: anonymous \(credentials required\)$"):
        make_client(registry).resolve(registry.ref(), Deadline(5))
    refused = rf"tried: registries\.{registry.host} \(refused\); anonymous \(credentials required"
    with pytest.raises(UpstreamError, match=refused):
        make_client(registry, username="alice", password="x").resolve(registry.ref(), Deadline(5))
