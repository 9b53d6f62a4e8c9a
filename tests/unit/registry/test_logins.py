"""Which logins a registry call tries, in what order, and what stays in one namespace.

Against a real docker-registry behind a token service (``token_registry``), which knows one
user; every token it hands out is logged with the user who asked for it.
"""

from __future__ import annotations

from collections.abc import Sequence

import pytest

from tests.support.pullcluster import pull_secret
from tests.support.registry import Registry, default_layer, push_image
from tests.unit.registry.test_client import FakeRegistry, Reply
from webhook.core.deadline import Deadline
from webhook.core.errors import UpstreamError
from webhook.core.reference import ImageRef, parse_reference
from webhook.core.scope import Login, PullIdentity, Scope
from webhook.credentials.pullsecrets import PullSecrets
from webhook.registry.client import RegistryClient, RegistrySettings

REPO = "acme/private"


def scope(namespace: str, *logins: Login, problems: tuple[str, ...] = ()) -> Scope:
    return Scope(
        key=f"{namespace}:test" if logins else None,
        label=f"namespace {namespace}",
        lookup=lambda image: logins,
        problems=problems,
    )


def secret(registry: Registry, name: str, namespace: str, *, right: bool = True) -> Login:
    assert registry.username is not None and registry.password is not None
    password = registry.password if right else "not-" + registry.password
    return Login(registry.username, password, f"pull secret {namespace}/{name}", "pullSecret")


class Source:
    """A LoginSource that gives ``logins`` for ``host`` (or fails with ``error``)."""

    kind = "ecr"

    def __init__(self, host: str, logins: Sequence[Login] = (), error: str | None = None):
        self.name = "ecr"
        self.host = host
        self.given = logins
        self.error = error
        self.asked = 0

    def matches(self, host: str) -> bool:
        return host == self.host

    def logins(self, image: ImageRef, deadline: Deadline) -> Sequence[Login]:
        self.asked += 1
        if self.error is not None:
            raise UpstreamError(self.error)
        return self.given


@pytest.fixture(scope="module")
def image(token_registry: Registry) -> ImageRef:
    push_image(token_registry, REPO, tag="v1", layers=[default_layer(content=b"private")])
    return parse_reference(f"{token_registry.host}/{REPO}:v1")


def client(registry: Registry, *sources: Source) -> RegistryClient:
    return RegistryClient({registry.host: RegistrySettings(insecure=True)}, sources=sources)


def users(registry: Registry, since: int) -> list[str | None]:
    tokens = registry.token_server
    assert tokens is not None
    return [entry["user"] for entry in tokens.log[since:]]


def log_length(registry: Registry) -> int:
    assert registry.token_server is not None
    return len(registry.token_server.log)


def test_a_wrong_secret_before_the_right_one_still_works(
    token_registry: Registry, image: ImageRef
) -> None:
    registry = client(token_registry)
    team = scope(
        "team-a",
        secret(token_registry, "stale", "team-a", right=False),
        secret(token_registry, "regcred", "team-a"),
    )
    deadline = Deadline(10, scope=team)
    assert registry.resolve(image, deadline).startswith("sha256:")
    assert deadline.logins[image.repository] == "pull secret team-a/regcred"
    # The next review tries the accepted login first: no refusal, no new token.
    before = log_length(token_registry)
    again = Deadline(10, scope=team)
    registry.resolve(image, again)
    assert again.logins[image.repository] == "pull secret team-a/regcred"
    assert log_length(token_registry) == before


def test_another_namespace_never_uses_what_one_namespace_fetched(
    token_registry: Registry, image: ImageRef
) -> None:
    registry = client(token_registry)
    team_a = Deadline(10, scope=scope("team-a", secret(token_registry, "regcred", "team-a")))
    registry.resolve(image, team_a)
    before = log_length(token_registry)
    with pytest.raises(UpstreamError) as denied:
        registry.resolve(image, Deadline(10, scope=scope("team-b")))
    assert str(denied.value).endswith(
        f"authentication to {token_registry.host} failed for {REPO}; "
        "tried: anonymous (401 Unauthorized)"
    )
    # Team B asked anonymously: team A's token was not sent on its behalf.
    assert users(token_registry, before) == [None]
    with pytest.raises(UpstreamError, match="tried: anonymous"):
        registry.resolve(image, Deadline(10))


def test_the_same_secret_in_another_namespace_fetches_its_own_token(
    token_registry: Registry, image: ImageRef
) -> None:
    registry = client(token_registry)
    registry.resolve(image, Deadline(10, scope=scope("team-a", secret(token_registry, "r", "a"))))
    before = log_length(token_registry)
    registry.resolve(image, Deadline(10, scope=scope("team-c", secret(token_registry, "r", "c"))))
    assert users(token_registry, before) == [token_registry.username]


def test_every_source_tried_is_named_and_no_secret_is(
    token_registry: Registry, image: ImageRef
) -> None:
    broken = Source(token_registry.host, error="the identity endpoint timed out")
    registry = client(token_registry, broken)
    wrong = secret(token_registry, "stale", "team-a", right=False)
    team = scope("team-a", wrong, problems=("pull secret team-a/gone does not exist",))
    with pytest.raises(UpstreamError) as denied:
        registry.resolve(image, Deadline(10, scope=team))
    message = str(denied.value)
    assert message.endswith(
        f"authentication to {token_registry.host} failed for {REPO}; tried: "
        "pull secret team-a/stale (token endpoint "
        f"{token_registry.token_server.host} answered 401); "  # type: ignore[union-attr]
        "ecr (no login: the identity endpoint timed out); anonymous (401 Unauthorized); "
        "not tried: pull secret team-a/gone does not exist"
    )
    assert wrong.password not in message


def test_pull_secrets_come_before_sources_and_sources_before_anonymous(
    token_registry: Registry, image: ImageRef
) -> None:
    assert token_registry.username is not None and token_registry.password is not None
    cloud = Source(
        token_registry.host, [Login(token_registry.username, token_registry.password, "ecr", "ecr")]
    )
    registry = client(token_registry, cloud)
    team = Deadline(10, scope=scope("team-a", secret(token_registry, "regcred", "team-a")))
    registry.resolve(image, team)
    assert team.logins[image.repository] == "pull secret team-a/regcred"
    assert cloud.asked == 0, "a source was asked although a pull secret was accepted"
    plain = Deadline(10)
    registry.resolve(image, plain)
    assert plain.logins[image.repository] == "ecr"
    assert cloud.asked == 1


def test_a_source_for_another_host_is_never_asked(
    token_registry: Registry, image: ImageRef
) -> None:
    elsewhere = Source("registry.example.com", [Login("u", "p", "ecr", "ecr")])
    with pytest.raises(UpstreamError, match="tried: anonymous"):
        client(token_registry, elsewhere).resolve(image, Deadline(10))
    assert elsewhere.asked == 0


def keyring_scope(namespace: str, auths: dict[str, tuple[str, str]]) -> Scope:
    """The scope a pull secret holding ``auths`` makes, through the real keyring."""
    secret = pull_secret(namespace, "regcred", auths)
    store = {("Secret", namespace, "regcred"): secret}

    class Store:
        def secret(self, ns: str, name: str, deadline: Deadline) -> object:
            return store.get(("Secret", ns, name))

        def service_account(self, ns: str, name: str, deadline: Deadline) -> object:
            return None

    found = PullSecrets(Store()).scope(PullIdentity(namespace, ("regcred",)), Deadline(5))  # type: ignore[arg-type]
    assert found is not None
    return found


def test_a_pull_secret_reaches_only_the_registry_its_key_names() -> None:
    elsewhere = FakeRegistry()
    try:
        elsewhere.routes[f"HEAD /v2/{REPO}/manifests/v1"] = Reply(
            401, {"WWW-Authenticate": 'Basic realm="r"'}
        )
        # Keys a person could mistake for this host: a prefix, another port, a wildcard one
        # label too deep, the right host under another scheme of writing.
        host, port = elsewhere.host.split(":")
        team = keyring_scope(
            "team-a",
            {
                f"{host}.evil.example": ("a", "secret-1"),
                f"{host}:{int(port) + 1}": ("b", "secret-2"),
                f"*.{host}": ("c", "secret-3"),
                f"{elsewhere.host}/other-team": ("d", "secret-4"),
            },
        )
        image = parse_reference(f"{elsewhere.host}/{REPO}:v1")
        client = RegistryClient({elsewhere.host: RegistrySettings(insecure=True)})
        with pytest.raises(UpstreamError, match="tried: anonymous"):
            client.resolve(image, Deadline(5, scope=team))
        sent = [r.headers.get("Authorization") for r in elsewhere.requests]
        assert sent and all(value is None for value in sent), sent
    finally:
        elsewhere.close()


def test_a_pull_secret_is_not_sent_on_to_a_redirect_target() -> None:
    front = FakeRegistry()
    target = FakeRegistry()
    try:
        path = f"/v2/{REPO}/manifests/v1"
        front.routes[f"HEAD {path}"] = Reply(307, {"Location": f"{target.url}{path}"})
        target.routes[f"HEAD {path}"] = Reply(401, {"WWW-Authenticate": 'Basic realm="t"'})
        team = keyring_scope("team-a", {front.host: ("robot", "front-secret")})
        image = parse_reference(f"{front.host}/{REPO}:v1")
        client = RegistryClient({front.host: RegistrySettings(insecure=True)})
        with pytest.raises(UpstreamError):
            client.resolve(image, Deadline(5, scope=team))
        assert any(r.headers.get("Authorization") for r in front.requests)
        assert not any(r.headers.get("Authorization") for r in target.requests), target.requests
    finally:
        front.close()
        target.close()


def test_a_workload_naming_many_wrong_secrets_gets_a_bounded_number_of_tries(
    token_registry: Registry, image: ImageRef
) -> None:
    wrong = [secret(token_registry, f"s{i}", "team-x", right=False) for i in range(20)]
    wrong = [Login(w.username, f"{w.password}-{i}", w.source, w.kind) for i, w in enumerate(wrong)]
    before = log_length(token_registry)
    with pytest.raises(UpstreamError) as denied:
        client(token_registry).resolve(image, Deadline(10, scope=scope("team-x", *wrong)))
    assert str(denied.value).count("pull secret team-x/") == 8
    assert "no more: at most 8 logins are tried per call" in str(denied.value)
    assert log_length(token_registry) - before <= 8
