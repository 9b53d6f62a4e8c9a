"""Registry credentials and tokens reach the configured registry only, whatever redirects
and challenges say. Two fake servers on 127.0.0.1 (different ports, so different hosts):
the registry the credentials are configured for, and a hostile one it redirects to;
each records every request it receives, headers and all."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.unit.registry.test_client import (
    BLOB,
    BLOB_DIGEST,
    BLOB_PATH,
    DIGEST,
    TAG_PATH,
    FakeRegistry,
    Reply,
    Request,
    make_client,
)
from webhook.core.deadline import Deadline
from webhook.core.errors import UpstreamError

PASSWORD = "s3cret-password"
BASIC = "Basic YWxpY2U6czNjcmV0LXBhc3N3b3Jk"  # alice:s3cret-password


@pytest.fixture
def registry() -> Iterator[FakeRegistry]:
    server = FakeRegistry()
    yield server
    server.close()


@pytest.fixture
def hostile() -> Iterator[FakeRegistry]:
    """Answers 401 to everything, naming its own /token as the realm; the realm hands out tokens."""
    server = FakeRegistry()

    def challenge(request: Request) -> Reply:
        realm = f'Bearer realm="{server.url}/token",service="evil"'
        return Reply(401, {"WWW-Authenticate": realm})

    for path in (TAG_PATH, BLOB_PATH, "/anything"):
        server.routes[f"HEAD {path}"] = challenge
        server.routes[f"GET {path}"] = challenge
    server.routes["GET /token"] = Reply(body=b'{"token": "evil-token"}')
    yield server
    server.close()


def leaked(server: FakeRegistry) -> list[str]:
    """Every credential-bearing header that reached ``server``."""
    return [
        f"{r.method} {r.path}: {value}"
        for r in server.requests
        for name, value in r.headers.items()
        if name.lower() == "authorization" or PASSWORD in value or "tok" in value.lower()
    ]


def test_a_redirect_target_asking_for_credentials_gets_none(
    registry: FakeRegistry, hostile: FakeRegistry
) -> None:
    registry.routes[f"HEAD {TAG_PATH}"] = Reply(307, {"Location": f"{hostile.url}{TAG_PATH}"})
    client = make_client(registry, username="alice", password=PASSWORD)
    with pytest.raises(
        UpstreamError,
        match=rf"{registry.host} redirected to {hostile.host}, which asked for credentials",
    ):
        client.resolve(registry.ref(), Deadline(5))
    assert registry.requests[0].headers["Authorization"] == BASIC  # the registry got them
    assert hostile.hits("HEAD", TAG_PATH)  # the redirect was followed, without them
    assert not hostile.hits("GET", "/token")  # its realm was never asked
    assert leaked(hostile) == []


def test_the_registry_token_never_follows_a_redirect(
    registry: FakeRegistry, hostile: FakeRegistry
) -> None:
    def blob(request: Request) -> Reply:
        if request.headers.get("Authorization") == "Bearer good-token":
            return Reply(307, {"Location": f"{hostile.url}/anything"})
        return Reply(401, {"WWW-Authenticate": f'Bearer realm="{registry.url}/token"'})

    registry.routes[f"GET {BLOB_PATH}"] = blob
    registry.routes["GET /token"] = Reply(body=b'{"token": "good-token"}')
    client = make_client(registry, username="alice", password=PASSWORD)
    with pytest.raises(UpstreamError, match="which asked for credentials"):
        client.blob(registry.ref(), BLOB_DIGEST, Deadline(5))
    (token_request,) = registry.hits("GET", "/token")
    assert token_request.headers["Authorization"] == BASIC
    assert len(hostile.hits("GET", "/anything")) == 1  # asked once, refused at once
    assert leaked(hostile) == []


def test_a_realm_that_redirects_elsewhere_gets_no_credentials(
    registry: FakeRegistry, hostile: FakeRegistry
) -> None:
    registry.routes[f"HEAD {TAG_PATH}"] = Reply(
        401, {"WWW-Authenticate": f'Bearer realm="{registry.url}/token"'}
    )
    registry.routes["GET /token"] = Reply(307, {"Location": f"{hostile.url}/token"})
    client = make_client(registry, username="alice", password=PASSWORD)
    with pytest.raises(UpstreamError):
        client.resolve(registry.ref(), Deadline(5))
    assert hostile.hits("GET", "/token")
    assert leaked(hostile) == []


def test_a_redirect_target_that_serves_the_blob_gets_nothing(
    registry: FakeRegistry, hostile: FakeRegistry
) -> None:
    hostile.routes["GET /storage"] = Reply(body=BLOB)
    registry.routes[f"GET {BLOB_PATH}"] = Reply(307, {"Location": f"{hostile.url}/storage"})
    client = make_client(registry, username="alice", password=PASSWORD)
    assert client.blob(registry.ref(), BLOB_DIGEST, Deadline(5)) == BLOB
    assert leaked(hostile) == []
    assert DIGEST  # the tag path stays untouched
