"""webhook.kube.policymark: the rollback high-water mark in a ConfigMap.

Against the stand-in API server of tests/support/apistore.py (real shapes, RBAC by
resourceNames, merge patch with the resourceVersion precondition, 403/404/409 Status
objects), as trustgate's ServiceAccount holding only the Role the chart renders.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.support.apistore import ADMIN, Call, Store, start_store
from tests.support.pullcluster import READER, READER_TOKEN, kubeconfig, reset
from webhook.core.errors import KubeError
from webhook.kube.credentials import from_kubeconfig, in_cluster
from webhook.kube.policymark import ConfigMapMark
from webhook.policy.signing.gate import Mark, MarkError
from webhook.policy.signing.marks import RemoteMark

NAMESPACE, NAME = READER[0], "trustgate-policy-version"
DIGEST = "sha256:" + "ab" * 32
_RBAC = "rbac.authorization.k8s.io/v1"


@pytest.fixture(scope="module")
def apiserver(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Store]:
    store = start_store(tmp_path_factory.mktemp("apistore"))
    yield store
    store.stop()


def empty_config_map(**data: str) -> dict[str, Any]:
    """The ConfigMap as the chart renders it (no data), or holding ``data``."""
    obj: dict[str, Any] = {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": NAME, "namespace": NAMESPACE, "labels": {"app": "trustgate"}},
    }
    if data:
        obj["data"] = data
    return obj


def grant(store: Store, verbs: list[str], names: list[str] | None = None) -> None:
    """A Role on the one ConfigMap, bound to trustgate's ServiceAccount, as the chart does."""
    rule = {"apiGroups": [""], "resources": ["configmaps"], "verbs": verbs}
    rule["resourceNames"] = names or [NAME]
    metadata = {"name": "trustgate-policy-version", "namespace": NAMESPACE}
    store.put({"apiVersion": _RBAC, "kind": "Role", "metadata": metadata, "rules": [rule]})
    subject = {"kind": "ServiceAccount", "name": READER[1], "namespace": NAMESPACE}
    role = {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": metadata["name"]}
    store.put({"apiVersion": _RBAC, "kind": "RoleBinding", "metadata": metadata,
               "roleRef": role, "subjects": [subject]})  # fmt: skip


@pytest.fixture
def cluster(apiserver: Store) -> Iterator[Store]:
    store = reset(apiserver)
    store.service_accounts[READER_TOKEN] = READER
    grant(store, ["get", "update", "patch"])
    store.put(empty_config_map())
    store.calls.clear()
    yield store
    store.hanging.clear()
    store.drip = 0.0
    store.on_write = None


@pytest.fixture
def make(cluster: Store, tmp_path: Path) -> Iterator[Callable[..., ConfigMapMark]]:
    made: list[ConfigMapMark] = []

    def build(**kw: Any) -> ConfigMapMark:
        kw.setdefault("timeout", 2.0)
        kw.setdefault("namespace", NAMESPACE)
        mark = ConfigMapMark(from_kubeconfig(kubeconfig(cluster, tmp_path)), NAME, **kw)
        made.append(mark)
        return mark

    yield build
    for mark in made:
        mark.close()


def data(store: Store) -> dict[str, str]:
    found: dict[str, str] = store.get("", "configmaps", NAME, NAMESPACE).get("data", {})
    return found


def writes(store: Store) -> list[Call]:
    return [c for c in store.calls if c.method != "GET" and c.user != ADMIN]


def test_the_empty_config_map_the_chart_renders_holds_no_mark_yet(
    make: Callable[..., ConfigMapMark],
) -> None:
    assert make().read() is None
    assert RemoteMark(make()).read() is None


def test_advance_writes_the_mark_and_never_lowers_it(
    cluster: Store, make: Callable[..., ConfigMapMark]
) -> None:
    mark = RemoteMark(make())
    mark.advance(Mark(3, DIGEST))
    assert mark.read() == Mark(3, DIGEST)
    stored = data(cluster)
    assert stored["version"] == "3" and stored["digest"] == DIGEST
    assert stored["updatedAt"].endswith("Z")
    (write,) = writes(cluster)
    assert write.method == "PATCH" and write.content_type == "application/merge-patch+json"
    assert write.query["fieldManager"] == "trustgate"
    # The write names the version it read: optimistic concurrency.
    assert write.body["metadata"]["resourceVersion"]
    # The labels Helm rendered are kept.
    assert cluster.get("", "configmaps", NAME, NAMESPACE)["metadata"]["labels"] == {
        "app": "trustgate"
    }

    cluster.calls.clear()
    mark.advance(Mark(2, "sha256:" + "cd" * 32))
    mark.advance(Mark(3, "sha256:" + "cd" * 32))
    assert mark.read() == Mark(3, DIGEST)
    assert writes(cluster) == []  # a lower or equal version is not even written
    mark.advance(Mark(12, "git:" + "e" * 40))
    assert mark.read() == Mark(12, "git:" + "e" * 40)


def test_a_write_that_lost_a_race_is_read_again_and_retried(
    cluster: Store, make: Callable[..., ConfigMapMark]
) -> None:
    """Another replica writes between our read and our write: 409, then a fresh read."""
    raced: list[int] = []

    def other_replica(call: Call) -> None:
        if not raced:
            raced.append(1)
            cluster.put(empty_config_map(version="4", digest=DIGEST, updatedAt="x"))

    cluster.on_write = other_replica
    make().advance(5, "sha256:" + "55" * 32)
    assert data(cluster)["version"] == "5"
    assert [c.answer for c in writes(cluster)] == [409, 200]


def test_a_race_lost_to_a_higher_version_leaves_the_higher_one(
    cluster: Store, make: Callable[..., ConfigMapMark]
) -> None:
    def other_replica(call: Call) -> None:
        cluster.on_write = None
        cluster.put(empty_config_map(version="9", digest=DIGEST, updatedAt="x"))

    cluster.on_write = other_replica
    make().advance(5, "sha256:" + "55" * 32)
    assert data(cluster)["version"] == "9"
    assert [c.answer for c in writes(cluster)] == [409]


def test_a_race_lost_every_time_ends_with_an_error(
    cluster: Store, make: Callable[..., ConfigMapMark]
) -> None:
    cluster.on_write = lambda call: cluster.put(empty_config_map())
    with pytest.raises(KubeError, match="lost a race with another writer; the next policy"):
        make().advance(5, DIGEST)
    assert len(writes(cluster)) == 4


def test_a_missing_config_map_is_an_error_naming_how_to_create_it_and_is_never_created(
    cluster: Store, make: Callable[..., ConfigMapMark]
) -> None:
    cluster.remove("", "configmaps", NAME, NAMESPACE)
    mark = RemoteMark(make())
    for call in (mark.read, lambda: mark.advance(Mark(1, DIGEST))):
        with pytest.raises(MarkError) as caught:
            call()
        message = caught.value.message
        assert f"kubectl create configmap {NAME} -n {NAMESPACE}" in message
        assert "config.policies.signature.rollback.configMap" in message
    assert writes(cluster) == []
    assert ("", "configmaps", NAMESPACE, NAME) not in cluster.objects


def test_a_config_map_deleted_between_read_and_write_is_not_recreated(
    cluster: Store, make: Callable[..., ConfigMapMark]
) -> None:
    cluster.on_write = lambda call: cluster.remove("", "configmaps", NAME, NAMESPACE)
    with pytest.raises(KubeError, match=f"ConfigMap {NAMESPACE}/{NAME} does not exist"):
        make().advance(1, DIGEST)
    assert ("", "configmaps", NAMESPACE, NAME) not in cluster.objects


@pytest.mark.parametrize(("verbs", "failing"), [([], "read"), (["get"], "advance")])
def test_a_forbidden_call_names_the_role_rule_needed(
    cluster: Store, make: Callable[..., ConfigMapMark], verbs: list[str], failing: str
) -> None:
    grant(cluster, verbs or ["list"])
    mark = RemoteMark(make())
    call = mark.read if failing == "read" else lambda: mark.advance(Mark(1, DIGEST))
    with pytest.raises(MarkError) as caught:
        call()
    message = caught.value.message
    assert "forbidden" in message
    assert f"resourceNames: [{NAME}], verbs: [get, update, patch]" in message
    assert f"Role in namespace {NAMESPACE}" in message
    assert READER_TOKEN not in message
    assert data(cluster) == {}


def test_another_config_map_is_out_of_reach_of_the_role(cluster: Store, tmp_path: Path) -> None:
    """The Role names one object: the policy ConfigMap beside it cannot be touched."""
    other = {**empty_config_map(), "metadata": {"name": "policies", "namespace": NAMESPACE}}
    cluster.put(other)
    credentials = from_kubeconfig(kubeconfig(cluster, tmp_path))
    elsewhere = ConfigMapMark(credentials, "policies", NAMESPACE, timeout=2.0)
    with pytest.raises(KubeError, match="forbidden"):
        elsewhere.advance(1, DIGEST)
    elsewhere.close()


@pytest.mark.parametrize("how", ["hanging", "dripping"])
def test_a_stalled_api_server_costs_a_bounded_time(
    cluster: Store, make: Callable[..., ConfigMapMark], how: str
) -> None:
    if how == "hanging":
        cluster.hanging.set()
    else:
        cluster.drip = 0.05  # an answer of ~1 KiB would take a minute
    mark = RemoteMark(make(timeout=0.5))
    for call in (mark.read, lambda: mark.advance(Mark(1, DIGEST))):
        start = time.monotonic()
        with pytest.raises(MarkError, match=r"did not answer in time|took too long"):
            call()
        assert time.monotonic() - start < 1.5


def test_an_oversized_answer_is_refused_unread(
    cluster: Store, make: Callable[..., ConfigMapMark]
) -> None:
    cluster.put(empty_config_map(version="1", digest=DIGEST, padding="x" * 300_000))
    with pytest.raises(MarkError, match="over 262,144 bytes; not read"):
        RemoteMark(make()).read()
    with pytest.raises(KubeError, match="over 1,024 bytes"):
        make(max_bytes=1024).advance(2, DIGEST)
    assert data(cluster)["version"] == "1"


def test_an_oversized_answer_to_the_write_is_refused_unread(
    cluster: Store, make: Callable[..., ConfigMapMark]
) -> None:
    def inflate(call: Call) -> None:  # the object grows under the write, same version
        cluster.get("", "configmaps", NAME, NAMESPACE)["data"] = {"padding": "x" * 300_000}

    cluster.on_write = inflate
    with pytest.raises(KubeError, match=r"updating .* over 262,144 bytes; not read"):
        make().advance(2, DIGEST)


@pytest.mark.parametrize(
    ("stored", "message"),
    [
        ({"version": "twelve", "digest": DIGEST}, "data.version is not a whole number"),
        ({"version": "-1", "digest": DIGEST}, "data.version is not a whole number"),
        # Above 2**63 - 1, the highest version a manifest may carry: no set could load.
        ({"version": "9" * 20, "digest": DIGEST}, "data.version is not a whole number"),
        ({"version": "9" * 22, "digest": DIGEST}, "data.version is not a whole number"),
        ({"version": str(2**63), "digest": DIGEST}, "data.version is not a whole number"),
        ({"version": "7"}, "data holds version or digest alone"),
        ({"digest": DIGEST}, "data holds version or digest alone"),
    ],
)
def test_a_corrupt_mark_is_an_error_and_is_not_written_over(
    cluster: Store, make: Callable[..., ConfigMapMark], stored: dict[str, str], message: str
) -> None:
    cluster.put(empty_config_map(**stored))
    mark = RemoteMark(make())
    with pytest.raises(MarkError, match=r"not a whole number|alone"):
        mark.read()
    with pytest.raises(MarkError, match=message) as caught:
        mark.advance(Mark(99, DIGEST))
    assert f"kubectl edit configmap {NAME} -n {NAMESPACE}" in caught.value.message
    assert data(cluster) == stored


def test_a_corrupt_digest_is_an_error(cluster: Store, make: Callable[..., ConfigMapMark]) -> None:
    cluster.put(empty_config_map(version="3", digest="not a digest"))
    with pytest.raises(MarkError, match=r"digest is not a digest.*minimumVersion"):
        RemoteMark(make()).read()


def test_the_namespace_defaults_to_the_pods_own(
    cluster: Store, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    account = tmp_path / "serviceaccount"
    account.mkdir()
    (account / "token").write_text(READER_TOKEN)
    (account / "ca.crt").write_bytes(cluster.ca.read_bytes())
    (account / "namespace").write_text(NAMESPACE)
    host, port = cluster.url.removeprefix("https://").split(":")
    monkeypatch.setitem(os.environ, "KUBERNETES_SERVICE_HOST", host)
    monkeypatch.setitem(os.environ, "KUBERNETES_SERVICE_PORT", port)
    mark = ConfigMapMark(in_cluster(account), NAME, timeout=2.0)
    assert mark.where == f"ConfigMap {NAMESPACE}/{NAME}"
    mark.advance(7, DIGEST)
    assert data(cluster)["version"] == "7"
    mark.close()


def test_a_name_that_cannot_be_an_object_never_reaches_a_url(
    cluster: Store, tmp_path: Path
) -> None:
    credentials = from_kubeconfig(kubeconfig(cluster, tmp_path))
    with pytest.raises(KubeError, match="not a valid object name"):
        ConfigMapMark(credentials, "../secrets/x", NAMESPACE)
    assert cluster.calls == []


def test_a_forked_worker_opens_its_own_connection(
    cluster: Store, make: Callable[..., ConfigMapMark]
) -> None:
    """A store built (and used) before gunicorn forks is not shared with the workers."""
    mark = make()
    mark.advance(1, DIGEST)
    parent = mark.reader
    child = os.fork()
    if child == 0:  # pragma: no cover - the child reports by exit status
        code = 1
        try:
            mark.advance(2, DIGEST)
            code = 0 if mark.reader is not parent else 2
        finally:
            os._exit(code)
    _, status = os.waitpid(child, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    assert mark.reader is parent
    mark.advance(3, DIGEST)
    assert data(cluster)["version"] == "3"
