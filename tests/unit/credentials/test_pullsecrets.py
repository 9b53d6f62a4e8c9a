"""webhook.credentials.pullsecrets: a workload's pull secrets as the scope a review uses.

Over an in-memory SecretStore holding objects as the API server returns them; the
watched and one-shot stores of webhook.kube are tested against the stand-in API server
(tests/unit/kube/test_secretwatch.py, test_secretreads.py).
"""

from __future__ import annotations

import base64
import copy
import json
from collections.abc import Mapping
from typing import Any

import pytest

from tests.support.pullcluster import pull_secret, service_account
from webhook.core.deadline import Deadline
from webhook.core.errors import UpstreamError
from webhook.core.reference import parse_reference
from webhook.core.scope import Scope
from webhook.credentials.dockerconfig import MAX_CONTENT_BYTES
from webhook.credentials.pullsecrets import (
    DROPPED,
    MAX_SECRETS,
    PullIdentity,
    PullSecrets,
)

PASSWORDS = ("pw-a-one", "pw-a-two", "pw-sa", "pw-legacy", "pw-b")


class MemoryStore:
    """Secrets and ServiceAccounts by (namespace, name), with versions as the API sets them."""

    def __init__(self, *objects: dict[str, Any]) -> None:
        self.objects: dict[tuple[str, str, str], dict[str, Any]] = {}
        self.asked: list[tuple[str, str, str]] = []
        self.version = 100
        self.failing: str | None = None
        for obj in objects:
            self.put(obj)

    def put(self, obj: dict[str, Any]) -> None:
        self.version += 1
        stored = copy.deepcopy(obj)
        metadata = stored["metadata"]
        metadata["resourceVersion"] = str(self.version)
        metadata.setdefault("uid", f"uid-{metadata['namespace']}-{metadata['name']}")
        self.objects[(obj["kind"], metadata["namespace"], metadata["name"])] = stored

    def _get(self, kind: str, namespace: str, name: str) -> Mapping[str, Any] | None:
        self.asked.append((kind, namespace, name))
        if self.failing:
            raise UpstreamError(self.failing)
        return self.objects.get((kind, namespace, name))

    def secret(self, namespace: str, name: str, deadline: Deadline) -> Mapping[str, Any] | None:
        return self._get("Secret", namespace, name)

    def service_account(
        self, namespace: str, name: str, deadline: Deadline
    ) -> Mapping[str, Any] | None:
        return self._get("ServiceAccount", namespace, name)


def team_a() -> MemoryStore:
    return MemoryStore(
        pull_secret("team-a", "one", {"quay.io/team-a": ("alice", "pw-a-one")}),
        pull_secret("team-a", "two", {"quay.io": ("bob", "pw-a-two")}),
        pull_secret("team-a", "sa-cred", {"quay.io": ("sa", "pw-sa")}),
        pull_secret(
            "team-a",
            "legacy",
            {"https://index.docker.io/v1/": ("old", "pw-legacy")},
            secret_type="kubernetes.io/dockercfg",
        ),
        service_account("team-a", "default"),
        service_account("team-a", "builder", "sa-cred", "one"),
        pull_secret("team-b", "one", {"quay.io": ("carol", "pw-b")}),
        service_account("team-b", "default"),
    )


def scope_of(store: MemoryStore, identity: PullIdentity, **kw: Any) -> Scope:
    found = PullSecrets(store, **kw).scope(identity, Deadline(5))
    assert found is not None
    return found


def logins(scope: Scope, image: str) -> list[tuple[str, str]]:
    return [(login.username, login.source) for login in scope.lookup(parse_reference(image))]


# --- order ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("identity", "image", "expected"),
    [
        # The pod's secrets in order, then the service account's; the most specific key
        # first across all of them (the kubelet's keyring).
        (
            PullIdentity("team-a", ("two", "one"), "builder"),
            "quay.io/team-a/app",
            [
                ("alice", "pull secret team-a/one"),
                ("bob", "pull secret team-a/two"),
                ("sa", "pull secret team-a/sa-cred"),
            ],
        ),
        (
            PullIdentity("team-a", ("two",), "builder"),
            "quay.io/other/app",
            [("bob", "pull secret team-a/two"), ("sa", "pull secret team-a/sa-cred")],
        ),
        # "one" is named by the pod and by the account: used once, at the pod's place.
        (
            PullIdentity("team-a", ("one", "two"), "builder"),
            "quay.io/team-a/x",
            [
                ("alice", "pull secret team-a/one"),
                ("bob", "pull secret team-a/two"),
                ("sa", "pull secret team-a/sa-cred"),
            ],
        ),
        # dockercfg, with Docker Hub's index key matching docker.io images.
        (PullIdentity("team-a", ("legacy",)), "nginx", [("old", "pull secret team-a/legacy")]),
        (PullIdentity("team-a", ("legacy",)), "quay.io/team-a/app", []),
        # The account's secrets only.
        (
            PullIdentity("team-a", (), "builder"),
            "quay.io/team-a/app",
            [("alice", "pull secret team-a/one"), ("sa", "pull secret team-a/sa-cred")],
        ),
    ],
)
def test_the_pods_secrets_then_its_service_accounts_each_once(
    identity: PullIdentity, image: str, expected: list[tuple[str, str]]
) -> None:
    assert logins(scope_of(team_a(), identity), image) == expected


def test_logins_are_of_kind_pull_secret_and_name_the_secret_not_its_content() -> None:
    scope = scope_of(team_a(), PullIdentity("team-a", ("one",)))
    (login,) = scope.lookup(parse_reference("quay.io/team-a/app"))
    assert (login.kind, login.source, login.password) == (
        "pullSecret",
        "pull secret team-a/one",
        "pw-a-one",
    )
    assert scope.label == "namespace team-a, service account default"
    assert "pw-a-one" not in repr(login) and "pw-a-one" not in repr(scope)


# --- what is not usable ------------------------------------------------------------


def bad_store() -> MemoryStore:
    store = team_a()
    store.put(
        pull_secret(
            "team-a",
            "opaque",
            data={"token": base64.b64encode(b"pw-x").decode()},
            secret_type="Opaque",
        )
    )
    not_json = base64.b64encode(b'{"auths": {"quay.io": {"auth": "pw-broken').decode()
    store.put(pull_secret("team-a", "broken", data={".dockerconfigjson": not_json}))
    bad_auth = base64.b64encode(json.dumps({"auths": {"quay.io": {"auth": "pw-bad!"}}}).encode())
    store.put(pull_secret("team-a", "bad-auth", data={".dockerconfigjson": bad_auth.decode()}))
    store.put(
        pull_secret(
            "team-a", "odd-keys", {"user@quay.io": ("u", "pw-odd"), "quay.io": ("ok", "pw-ok")}
        )
    )
    big = base64.b64encode(b" " * (MAX_CONTENT_BYTES + 1)).decode()
    store.put(pull_secret("team-a", "huge", data={".dockerconfigjson": big}))
    dropped = {
        "kind": "Secret",
        "type": "kubernetes.io/dockerconfigjson",
        "metadata": {"name": "dropped", "namespace": "team-a"},
        DROPPED: "its .dockerconfigjson data is 1,048,576 bytes",
    }
    store.put(dropped)
    return store


def test_every_unusable_secret_is_a_problem_line_and_the_usable_ones_still_work() -> None:
    names = ("missing", "opaque", "broken", "bad-auth", "odd-keys", "huge", "dropped", "one")
    scope = scope_of(bad_store(), PullIdentity("team-a", names, "ghost"))
    assert logins(scope, "quay.io/team-a/app") == [
        ("alice", "pull secret team-a/one"),
        ("ok", "pull secret team-a/odd-keys"),
    ]
    problems = "\n".join(scope.problems)
    for expected in (
        "service account team-a/ghost: not found",
        "pull secret team-a/missing: no Secret of type kubernetes.io/dockerconfigjson or "
        "kubernetes.io/dockercfg by that name",
        'pull secret team-a/opaque: of type "Opaque", not kubernetes.io/dockerconfigjson',
        "pull secret team-a/broken: is not valid JSON",
        'pull secret team-a/bad-auth: the entry for "quay.io": auth is not base64',
        'pull secret team-a/odd-keys: key "(user info hidden)@quay.io": a registry key has '
        "no user info",
        "pull secret team-a/huge:",
        "pull secret team-a/dropped: not read: its .dockerconfigjson data is 1,048,576 bytes",
    ):
        assert expected in problems
    assert len(scope.problems) == 8
    for password in (*PASSWORDS, "pw-x", "pw-broken", "pw-bad", "pw-odd", "pw-ok"):
        assert password not in problems


def test_a_scope_without_a_usable_login_has_no_key() -> None:
    scope = scope_of(bad_store(), PullIdentity("team-a", ("missing", "opaque")))
    assert scope.key is None
    assert logins(scope, "quay.io/team-a/app") == []
    assert len(scope.problems) == 2
    assert scope_of(team_a(), PullIdentity("team-a", ())).key is None


def test_invalid_names_are_problems_and_never_asked_for() -> None:
    store = team_a()
    identity = PullIdentity("team-a", ("../secrets/one", "one", "UPPER"), "../../x")
    scope = scope_of(store, identity)
    assert logins(scope, "quay.io/team-a/a") == [("alice", "pull secret team-a/one")]
    assert [name for _, _, name in store.asked] == ["one"]
    assert len(scope.problems) == 3
    bad_namespace = scope_of(store, PullIdentity("../kube-system", ("one",)))
    assert bad_namespace.key is None and "not a valid name" in bad_namespace.problems[0]


def test_past_the_bound_secrets_are_reported_not_read() -> None:
    store = team_a()
    names = tuple(f"s{i}" for i in range(MAX_SECRETS + 5))
    scope = scope_of(store, PullIdentity("team-a", names))
    assert len(store.asked) == MAX_SECRETS + 1  # the account, then the first MAX_SECRETS
    assert "5 pull secrets past the first 128 were not used" in scope.problems


# --- namespaces ----------------------------------------------------------------------


def test_a_namespace_not_listed_gets_no_scope_and_reads_nothing() -> None:
    store = team_a()
    pull = PullSecrets(store, ("team-b",))
    assert pull.scope(PullIdentity("team-a", ("one",)), Deadline(5)) is None
    assert store.asked == []
    assert pull.scope(PullIdentity("team-b", ("one",)), Deadline(5)) is not None


def test_credentials_of_one_namespace_never_serve_another() -> None:
    store = team_a()
    pull = PullSecrets(store)
    a = pull.scope(PullIdentity("team-a", ("one", "two")), Deadline(5))
    b = pull.scope(PullIdentity("team-b", ("one", "two", "sa-cred")), Deadline(5))
    assert a is not None and b is not None
    assert {login.password for login in b.lookup(parse_reference("quay.io/team-a/x"))} == {"pw-b"}
    assert all(ns == "team-b" for _, ns, _ in store.asked[len(store.asked) - 4 :])
    assert a.key is not None and b.key is not None
    assert a.key.startswith("team-a/") and b.key.startswith("team-b/")
    # The same content in two namespaces still makes two partitions.
    twin = MemoryStore(
        pull_secret("x", "s", {"quay.io": ("u", "p")}),
        pull_secret("y", "s", {"quay.io": ("u", "p")}),
    )
    keys = {scope_of(twin, PullIdentity(ns, ("s",))).key for ns in ("x", "y")}
    assert len(keys) == 2


# --- keys and memoising ---------------------------------------------------------------


def test_a_rotated_secret_gets_a_new_key_and_its_new_login() -> None:
    store = team_a()
    pull = PullSecrets(store)
    identity = PullIdentity("team-a", ("one",))
    first = pull.scope(identity, Deadline(5))
    assert first is pull.scope(identity, Deadline(5))  # warm: remembered
    store.put(pull_secret("team-a", "one", {"quay.io/team-a": ("alice", "pw-rotated")}))
    second = pull.scope(identity, Deadline(5))
    assert first is not None and second is not None
    assert second.key != first.key
    (login,) = second.lookup(parse_reference("quay.io/team-a/app"))
    assert login.password == "pw-rotated"
    # Same content again under a new version: a new object, the same key.
    store.put(pull_secret("team-a", "one", {"quay.io/team-a": ("alice", "pw-rotated")}))
    third = pull.scope(identity, Deadline(5))
    assert third is not second and third is not None and third.key == second.key


def test_a_secret_created_later_or_an_account_changed_is_seen() -> None:
    store = team_a()
    pull = PullSecrets(store)
    identity = PullIdentity("team-a", ("later",), "builder")
    before = pull.scope(identity, Deadline(5))
    store.put(pull_secret("team-a", "later", {"quay.io/team-a": ("new", "pw-new")}))
    after = pull.scope(identity, Deadline(5))
    assert before is not None and after is not None
    assert logins(after, "quay.io/team-a/a")[0] == ("new", "pull secret team-a/later")
    store.put(service_account("team-a", "builder"))
    assert logins(pull.scope(identity, Deadline(5)), "quay.io/team-a/a") == [  # type: ignore[arg-type]
        ("new", "pull secret team-a/later")
    ]


def test_the_memo_is_bounded() -> None:
    store = team_a()
    pull = PullSecrets(store, max_scopes=4)
    first = pull.scope(PullIdentity("team-a", ("one",)), Deadline(5))
    for i in range(3):
        pull.scope(PullIdentity("team-a", (f"s{i}",)), Deadline(5))
    assert pull.scope(PullIdentity("team-a", ("one",)), Deadline(5)) is first
    for i in range(4):
        pull.scope(PullIdentity("team-a", (f"t{i}",)), Deadline(5))
    assert pull.scope(PullIdentity("team-a", ("one",)), Deadline(5)) is not first


def test_objects_without_a_version_are_not_memoised() -> None:
    store = team_a()
    del store.objects[("Secret", "team-a", "one")]["metadata"]["resourceVersion"]
    pull = PullSecrets(store)
    identity = PullIdentity("team-a", ("one",))
    assert pull.scope(identity, Deadline(5)) is not pull.scope(identity, Deadline(5))


def test_a_store_that_cannot_answer_fails_the_scope() -> None:
    store = team_a()
    store.failing = "pull secrets are not yet read from the API server"
    with pytest.raises(UpstreamError, match="not yet read"):
        PullSecrets(store).scope(PullIdentity("team-a", ("one",)), Deadline(5))


class CountingStore(MemoryStore):
    """A store that says when it changed, as the watched store does."""

    @property
    def generation(self) -> int:
        return self.version


def test_a_store_that_did_not_change_is_not_read_again() -> None:
    store = CountingStore(*team_a().objects.values())
    pull = PullSecrets(store)
    identity = PullIdentity("team-a", ("one", "two"), "builder")
    first = pull.scope(identity, Deadline(5))
    asked = len(store.asked)
    assert pull.scope(identity, Deadline(5)) is first
    assert len(store.asked) == asked, "a warm scope read the store"
    store.put(pull_secret("team-a", "two", {"quay.io": ("bob", "pw-rotated")}))
    second = pull.scope(identity, Deadline(5))
    assert second is not None and first is not None and second.key != first.key
    assert len(store.asked) > asked
