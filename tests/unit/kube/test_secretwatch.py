"""webhook.kube.secretwatch: pull secrets listed and watched, served from memory.

Against the stand-in API server of tests/support/apistore.py with live watches: chunked
JSON lines, bookmarks, 410 Expired, RBAC by Role per namespace, and hanging or dripping
answers on demand.
"""

from __future__ import annotations

import base64
import json
import logging
import os
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.support.apistore import Store, start_store
from tests.support.pullcluster import (
    grant_cluster,
    grant_namespaces,
    kubeconfig,
    pull_secret,
    reset,
    service_account,
)
from webhook.core.deadline import Deadline
from webhook.core.errors import UpstreamError
from webhook.core.reference import parse_reference
from webhook.credentials.pullsecrets import DROPPED, PullIdentity, PullSecrets
from webhook.kube.credentials import from_kubeconfig
from webhook.kube.pullobjects import Bounds
from webhook.kube.secretwatch import WatchedSecretStore

SECRET_PATHS = ("/api/v1/secrets", "/api/v1/serviceaccounts")


@pytest.fixture(scope="module")
def apiserver(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Store]:
    store = start_store(tmp_path_factory.mktemp("apistore"))
    yield store
    store.stop()


@pytest.fixture
def cluster(apiserver: Store) -> Iterator[Store]:
    """Two teams' pull secrets and accounts, readable cluster-wide by trustgate."""
    store = reset(apiserver)
    grant_cluster(store)
    for namespace, user in (("team-a", "alice"), ("team-b", "bob")):
        store.put(pull_secret(namespace, "regcred", {"quay.io": (user, f"pw-{user}")}))
        store.put(service_account(namespace, "default"))
    store.put(service_account("team-a", "builder", "regcred"))
    yield store
    store.hanging.clear()
    store.drip = 0.0


@pytest.fixture
def make(cluster: Store, tmp_path: Path) -> Iterator[Callable[..., WatchedSecretStore]]:
    made: list[WatchedSecretStore] = []

    def build(**kw: Any) -> WatchedSecretStore:
        kw.setdefault("timeout", 2.0)
        kw.setdefault("watch_seconds", 30.0)
        store = WatchedSecretStore(from_kubeconfig(kubeconfig(cluster, tmp_path)), **kw)
        made.append(store)
        return store

    yield build
    for store in made:
        store.close()


def eventually(check: Callable[[], bool], seconds: float = 5.0) -> float:
    """Seconds until ``check()`` held; fails after ``seconds``."""
    start = time.monotonic()
    while not check():
        assert time.monotonic() - start < seconds, "not within the watch delay"
        time.sleep(0.02)
    return time.monotonic() - start


def password(obj: Any) -> str | None:
    if obj is None or DROPPED in obj:
        return None
    document = json.loads(base64.b64decode(obj["data"][".dockerconfigjson"]))
    (entry,) = document["auths"].values()
    return base64.b64decode(entry["auth"]).decode().partition(":")[2]


# --- serving from memory ---------------------------------------------------------------


def test_lists_and_watches_then_every_lookup_is_answered_from_memory(
    cluster: Store, make: Callable[..., WatchedSecretStore]
) -> None:
    store = make()
    secret = store.secret("team-a", "regcred", Deadline(5))
    assert password(secret) == "pw-alice"
    assert secret is not None and set(secret) == {"metadata", "type", "data"}  # no annotation
    account = store.service_account("team-a", "builder", Deadline(5))
    assert account is not None and account["imagePullSecrets"] == [{"name": "regcred"}]
    assert store.secret("team-a", "nope", Deadline(5)) is None
    assert store.synced
    eventually(lambda: store.calls.snapshot()["watch"] == 3 and len(cluster.calls) == 6)
    before = store.calls.snapshot()
    seen = len(cluster.calls)
    pull = PullSecrets(store)
    for i in range(1000):
        identity = PullIdentity(("team-a", "team-b")[i % 2], ("regcred",), "default")
        scope = pull.scope(identity, Deadline(5))
        assert scope is not None and scope.key is not None
    assert store.calls.snapshot() == before == {"list": 3, "watch": 3, "get": 0}
    assert len(cluster.calls) == seen
    lists = [c for c in cluster.calls if c.query.get("watch") is None]
    assert sorted(c.query.get("fieldSelector", "") for c in lists) == [
        "",
        "type=kubernetes.io/dockercfg",
        "type=kubernetes.io/dockerconfigjson",
    ]
    watches = [c for c in cluster.calls if c.query.get("watch") == "1"]
    assert all(c.query["allowWatchBookmarks"] == "true" for c in watches)
    assert all(c.query["resourceVersion"] and c.query["timeoutSeconds"] for c in watches)


def test_added_rotated_and_deleted_secrets_take_effect_within_the_watch_delay(
    cluster: Store, make: Callable[..., WatchedSecretStore]
) -> None:
    store = make()
    assert store.secret("team-a", "later", Deadline(5)) is None
    cluster.put(pull_secret("team-a", "later", {"quay.io": ("carol", "pw-carol")}))
    added = eventually(lambda: password(store.secret("team-a", "later", Deadline(1))) == "pw-carol")
    cluster.put(pull_secret("team-a", "regcred", {"quay.io": ("alice", "pw-rotated")}))
    rotated = eventually(
        lambda: password(store.secret("team-a", "regcred", Deadline(1))) == "pw-rotated"
    )
    cluster.remove("", "secrets", "regcred", "team-a")
    deleted = eventually(lambda: store.secret("team-a", "regcred", Deadline(1)) is None)
    assert max(added, rotated, deleted) < 1.0
    assert store.calls.snapshot()["list"] == 3  # all through the watch


def test_a_rotated_secret_gives_a_new_scope_key_and_login(
    cluster: Store, make: Callable[..., WatchedSecretStore]
) -> None:
    pull = PullSecrets(make())
    identity = PullIdentity("team-a", ("regcred",))
    first = pull.scope(identity, Deadline(5))
    cluster.put(pull_secret("team-a", "regcred", {"quay.io": ("alice", "pw-rotated")}))

    def rotated() -> bool:
        scope = pull.scope(identity, Deadline(1))
        logins = scope.lookup(parse_reference("quay.io/a/b")) if scope else []
        return [login.password for login in logins] == ["pw-rotated"]

    eventually(rotated)
    second = pull.scope(identity, Deadline(1))
    assert first is not None and second is not None and first.key != second.key


def test_an_expired_watch_lists_again_and_drops_what_was_deleted_meanwhile(
    cluster: Store, make: Callable[..., WatchedSecretStore]
) -> None:
    store = make()
    assert store.secret("team-b", "regcred", Deadline(5)) is not None
    eventually(lambda: store.calls.snapshot()["watch"] == 3)
    with cluster.lock:  # deleted while nobody watched, and the history compacted away
        del cluster.objects[("", "secrets", "team-b", "regcred")]
        cluster.version += 1
        cluster.compact()
    cluster.expire_watches()
    eventually(lambda: store.secret("team-b", "regcred", Deadline(1)) is None)
    assert store.calls.snapshot()["list"] >= 4
    assert store.synced


def test_a_watch_reopened_from_a_compacted_version_lists_again(
    cluster: Store, make: Callable[..., WatchedSecretStore]
) -> None:
    store = make(watch_seconds=0.5)  # watches end every 0.5-1 s and are opened again
    assert store.secret("team-a", "regcred", Deadline(5)) is not None
    with cluster.lock:
        del cluster.objects[("", "secrets", "team-a", "regcred")]
        cluster.version += 1
        cluster.compact()
    eventually(lambda: store.secret("team-a", "regcred", Deadline(1)) is None)
    assert store.calls.snapshot()["list"] >= 4


def test_bookmarks_move_the_version_a_watch_resumes_from(
    cluster: Store, make: Callable[..., WatchedSecretStore]
) -> None:
    store = make(watch_seconds=0.5)
    assert store.secret("team-a", "regcred", Deadline(5)) is not None
    for i in range(3):  # changes the watches of secrets do not select
        cluster.put(service_account("team-c", f"sa-{i}"))
    version = cluster.version
    time.sleep(0.5)  # a bookmark

    def resumed() -> bool:
        watches = [
            c
            for c in cluster.calls
            if c.query.get("fieldSelector", "").startswith("type") and c.query.get("watch") == "1"
        ]
        return any(int(c.query["resourceVersion"]) >= version for c in watches)

    eventually(resumed)


# --- a slow, hanging or refusing API server -----------------------------------------


def test_before_the_first_list_a_lookup_waits_only_what_the_deadline_leaves(
    cluster: Store, make: Callable[..., WatchedSecretStore]
) -> None:
    cluster.hanging.set()
    store = make()
    start = time.monotonic()
    with pytest.raises(UpstreamError, match="pull secrets are not yet read from the API server"):
        store.secret("team-a", "regcred", Deadline(0.5))
    assert time.monotonic() - start < 0.7
    assert not store.synced
    assert any("not read yet" in line for line in store.status())
    cluster.hanging.clear()  # the lists are retried, and then answered
    eventually(lambda: store.synced, seconds=10)
    assert password(store.secret("team-a", "regcred", Deadline(1))) == "pw-alice"


def test_a_dripping_api_server_never_holds_a_lookup_past_its_deadline(
    cluster: Store, make: Callable[..., WatchedSecretStore]
) -> None:
    cluster.drip = 0.05
    store = make()
    start = time.monotonic()
    with pytest.raises(UpstreamError, match="not yet read"):
        store.service_account("team-a", "builder", Deadline(0.5))
    assert time.monotonic() - start < 0.7


def test_once_read_lookups_never_wait_on_a_hanging_api_server(
    cluster: Store, make: Callable[..., WatchedSecretStore]
) -> None:
    store = make(watch_seconds=0.5)
    assert store.secret("team-a", "regcred", Deadline(5)) is not None
    eventually(lambda: store.synced)
    cluster.hanging.set()  # watches opened from now on hang
    time.sleep(1.5)
    start = time.monotonic()
    for _ in range(100):
        assert password(store.secret("team-a", "regcred", Deadline(0.01))) == "pw-alice"
    assert time.monotonic() - start < 0.25
    assert store.synced


def test_a_namespace_the_identity_may_not_read_fails_within_the_deadline_and_says_why(
    cluster: Store, make: Callable[..., WatchedSecretStore], caplog: pytest.LogCaptureFixture
) -> None:
    reset(cluster)
    grant_namespaces(cluster, "team-a")
    cluster.put(pull_secret("team-a", "regcred", {"quay.io": ("alice", "pw-alice")}))
    store = make(namespaces=("team-a", "team-x"))
    assert password(store.secret("team-a", "regcred", Deadline(5))) == "pw-alice"
    with pytest.raises(UpstreamError) as raised:
        store.secret("team-x", "regcred", Deadline(0.5))
    message = str(raised.value)
    assert "not yet read" in message
    assert "forbidden; trustgate's identity needs 'list' here" in message
    assert 'cannot list resource "secrets" in API group "" in the namespace "team-x"' in message
    assert not store.synced
    assert any("team-x" in line and "forbidden" in line for line in store.status())
    assert "forbidden" in caplog.text
    start = time.monotonic()  # the failure is known now: later reviews do not wait for it
    with pytest.raises(UpstreamError, match="forbidden"):
        store.secret("team-x", "regcred", Deadline(5))
    assert time.monotonic() - start < 0.1


def test_a_store_limited_to_namespaces_never_lists_across_the_cluster(
    cluster: Store, make: Callable[..., WatchedSecretStore]
) -> None:
    reset(cluster)
    grant_namespaces(cluster, "team-a", "team-b")
    for namespace in ("team-a", "team-b", "team-c"):
        cluster.put(pull_secret(namespace, "regcred", {"quay.io": ("u", "pw-u")}))
    store = make(namespaces=("team-a", "team-b"))
    assert store.secret("team-b", "regcred", Deadline(5)) is not None
    assert store.secret("team-c", "regcred", Deadline(5)) is None
    eventually(lambda: store.synced)
    paths = {call.path for call in cluster.calls}
    assert paths == {
        f"/api/v1/namespaces/{ns}/{plural}"
        for ns in ("team-a", "team-b")
        for plural in ("secrets", "serviceaccounts")
    }
    assert all(call.answer == 200 for call in cluster.calls)


def test_cluster_wide_without_a_cluster_role_is_refused_and_reported(
    cluster: Store, make: Callable[..., WatchedSecretStore]
) -> None:
    reset(cluster)
    grant_namespaces(cluster, "team-a")
    store = make()
    start = time.monotonic()
    with pytest.raises(UpstreamError, match="at the cluster scope"):
        store.secret("team-a", "regcred", Deadline(5))
    assert time.monotonic() - start < 1.0  # as soon as the first list is refused


# --- bounds ------------------------------------------------------------------------------


def test_an_oversized_secret_is_dropped_with_a_reason_not_kept(
    cluster: Store, make: Callable[..., WatchedSecretStore], caplog: pytest.LogCaptureFixture
) -> None:
    huge = base64.b64encode(b"x" * (700 * 1024)).decode()
    cluster.put(pull_secret("team-a", "listed-huge", data={".dockerconfigjson": huge}))
    store = make()
    marker = store.secret("team-a", "listed-huge", Deadline(5))
    assert marker is not None and "data" not in marker
    assert "data is 955,736 bytes; trustgate keeps pull secrets of at most" in marker[DROPPED]
    cluster.put(pull_secret("team-a", "watched-huge", data={".dockerconfigjson": huge}))
    eventually(lambda: store.secret("team-a", "watched-huge", Deadline(1)) is not None)
    assert DROPPED in (store.secret("team-a", "watched-huge", Deadline(1)) or {})
    assert "team-a/listed-huge not kept" in caplog.text
    eventually(lambda: "team-a/watched-huge not kept" in caplog.text)
    assert any("2 not kept" in line for line in store.status())
    scope = PullSecrets(store).scope(PullIdentity("team-a", ("watched-huge",)), Deadline(1))
    assert scope is not None and "not read: its .dockerconfigjson data" in scope.problems[0]


def test_one_namespace_cannot_fill_what_the_others_need(
    cluster: Store, make: Callable[..., WatchedSecretStore]
) -> None:
    for i in range(5):
        cluster.put(pull_secret("team-a", f"flood-{i}", {"quay.io": ("u", "pw-flood")}))
    store = make(bounds=Bounds(per_namespace=3))
    assert store.secret("team-b", "regcred", Deadline(5)) is not None
    kept = [store.secret("team-a", f"flood-{i}", Deadline(1)) for i in range(5)]
    markers = [obj for obj in kept if obj is not None and DROPPED in obj]
    assert len(markers) == 2  # listed in name order: three floods kept, then no room
    regcred = store.secret("team-a", "regcred", Deadline(1))
    assert regcred is not None and DROPPED in regcred
    assert (
        "namespace team-a holds more than trustgate keeps (3 per namespace" in (markers[0][DROPPED])
    )


def test_a_list_too_large_for_one_page_is_read_in_smaller_pages(
    cluster: Store, make: Callable[..., WatchedSecretStore]
) -> None:
    for i in range(12):
        padding = {f"quay.io/pad{j}": ("u", "p" * 900) for j in range(8)}
        cluster.put(pull_secret("team-a", f"big-{i}", {"quay.io": ("u", f"pw-{i}"), **padding}))
    store = make(bounds=Bounds(page_size=10, page_bytes=64 * 1024))
    assert password(store.secret("team-b", "regcred", Deadline(5))) == "pw-bob"
    assert store.secret("team-a", "big-11", Deadline(5)) is not None
    limits = [
        c.query.get("limit")
        for c in cluster.calls
        if c.query.get("fieldSelector") == "type=kubernetes.io/dockerconfigjson"
        and c.query.get("watch") is None
    ]
    assert limits[0] == "10" and "2" in limits


# --- credentials stay where they belong ---------------------------------------------------


def test_one_namespaces_secret_never_authenticates_another(
    cluster: Store, make: Callable[..., WatchedSecretStore]
) -> None:
    cluster.put(pull_secret("team-a", "only-a", {"quay.io": ("alice", "pw-only-a")}))
    pull = PullSecrets(make())
    image = parse_reference("quay.io/team/app")
    b = pull.scope(PullIdentity("team-b", ("only-a", "regcred"), "builder"), Deadline(5))
    assert b is not None
    assert [login.password for login in b.lookup(image)] == ["pw-bob"]
    assert "pull secret team-b/only-a: no Secret" in "\n".join(b.problems)
    c = pull.scope(PullIdentity("team-c", ("regcred",)), Deadline(5))
    assert c is not None and c.key is None and list(c.lookup(image)) == []


def test_no_password_in_any_error_log_line_status_or_repr(
    cluster: Store, make: Callable[..., WatchedSecretStore], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    reset(cluster)
    grant_namespaces(cluster, "team-a")
    cluster.put(pull_secret("team-a", "regcred", {"quay.io": ("alice", "pw-alice")}))
    bad = base64.b64encode(b'{"auths": {"quay.io": {"auth": "pw-secret-in-bad-json').decode()
    cluster.put(pull_secret("team-a", "bad", data={".dockerconfigjson": bad}))
    huge = {f"quay.io/{i}": ("u", "pw-secret-huge-" + "x" * 4000) for i in range(120)}
    cluster.put(pull_secret("team-a", "huge", huge))
    store = make(namespaces=("team-a", "team-forbidden"))
    pull = PullSecrets(store)
    scope = pull.scope(PullIdentity("team-a", ("bad", "huge", "regcred")), Deadline(5))
    with pytest.raises(UpstreamError) as raised:
        pull.scope(PullIdentity("team-forbidden", ("regcred",)), Deadline(0.3))
    assert scope is not None
    texts = [
        caplog.text,
        str(raised.value),
        repr(store),
        *store.status(),
        *scope.problems,
        repr(scope),
        repr(scope.lookup(parse_reference("quay.io/x"))),
    ]
    for text in texts:
        assert "pw-" not in text


def test_started_in_the_process_that_uses_it_as_gunicorn_workers_do(
    cluster: Store, make: Callable[..., WatchedSecretStore]
) -> None:
    store = make()
    assert store.secret("team-a", "regcred", Deadline(5)) is not None  # running in the parent
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: the parent's threads are not here; the store starts afresh
        try:
            found = password(store.secret("team-b", "regcred", Deadline(5)))
            eventually(lambda: store.synced)
            os.write(write, f"{found} {store.synced}".encode())
        finally:
            os._exit(0)
    os.close(write)
    answer = os.read(read, 100).decode()
    os.waitpid(pid, 0)
    assert answer == "pw-bob True"
    assert store.calls.snapshot()["list"] == 3  # the parent's own, unchanged
