"""webhook.kube.secretreads: pull secrets read directly, for one-shot commands.

Against the stand-in API server of tests/support/apistore.py: one GET per object,
remembered; a hanging or dripping server never holds a review past its deadline.
"""

from __future__ import annotations

import base64
import socket
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.support.apistore import Store, start_store
from tests.support.pullcluster import (
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
from webhook.kube.secretreads import OneShotSecretStore


@pytest.fixture(scope="module")
def apiserver(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Store]:
    store = start_store(tmp_path_factory.mktemp("apistore"))
    yield store
    store.stop()


@pytest.fixture
def cluster(apiserver: Store) -> Iterator[Store]:
    store = reset(apiserver)
    grant_namespaces(store, "team-a", "team-b")
    store.put(pull_secret("team-a", "regcred", {"quay.io": ("alice", "pw-alice")}))
    store.put(pull_secret("team-a", "opaque", data={"token": "cHctb3BhcXVl"}, secret_type="Opaque"))
    store.put(service_account("team-a", "builder", "regcred", "opaque"))
    store.put(pull_secret("team-b", "regcred", {"quay.io": ("bob", "pw-bob")}))
    store.calls.clear()
    yield store
    store.hanging.clear()
    store.drip = 0.0


@pytest.fixture
def make(cluster: Store, tmp_path: Path) -> Iterator[Callable[..., OneShotSecretStore]]:
    made: list[OneShotSecretStore] = []

    def build(**kw: Any) -> OneShotSecretStore:
        kw.setdefault("timeout", 2.0)
        store = OneShotSecretStore(from_kubeconfig(kubeconfig(cluster, tmp_path)), **kw)
        made.append(store)
        return store

    yield build
    for store in made:
        store.close()


def reads(cluster: Store) -> list[str]:
    return [call.path for call in cluster.calls]


def test_each_object_is_read_once_as_it_is_now_and_remembered(
    cluster: Store, make: Callable[..., OneShotSecretStore]
) -> None:
    store = make()
    pull = PullSecrets(store)
    identity = PullIdentity("team-a", ("regcred",), "builder")
    for _ in range(20):
        scope = pull.scope(identity, Deadline(5))
        assert scope is not None
        (login,) = scope.lookup(parse_reference("quay.io/team/app"))
        assert (login.password, login.source) == ("pw-alice", "pull secret team-a/regcred")
    assert sorted(reads(cluster)) == [
        "/api/v1/namespaces/team-a/secrets/opaque",
        "/api/v1/namespaces/team-a/secrets/regcred",
        "/api/v1/namespaces/team-a/serviceaccounts/builder",
    ]
    assert store.calls.snapshot() == {"list": 0, "watch": 0, "get": 3}
    assert scope.problems == (
        'pull secret team-a/opaque: of type "Opaque", not kubernetes.io/dockerconfigjson or '
        "kubernetes.io/dockercfg; the kubelet does not use it",
    )


def test_what_is_kept_of_an_object_is_what_a_pull_uses(
    make: Callable[..., OneShotSecretStore],
) -> None:
    store = make()
    secret = store.secret("team-a", "regcred", Deadline(5))
    assert secret is not None and set(secret) == {"metadata", "type", "data"}
    assert set(secret["metadata"]) == {"name", "namespace", "uid", "resourceVersion"}
    opaque = store.secret("team-a", "opaque", Deadline(5))
    assert opaque == {"metadata": opaque["metadata"], "type": "Opaque"}  # type: ignore[index]
    assert store.secret("team-a", "missing", Deadline(5)) is None
    assert store.service_account("team-a", "missing", Deadline(5)) is None


def test_namespaces_not_listed_and_invalid_names_never_reach_the_api_server(
    cluster: Store, make: Callable[..., OneShotSecretStore]
) -> None:
    store = make(namespaces=("team-a",))
    assert store.secret("team-b", "regcred", Deadline(5)) is None
    assert store.secret("team-a", "../../secrets", Deadline(5)) is None
    assert store.secret("kube-system/x", "regcred", Deadline(5)) is None
    assert store.service_account("team-a", "a/b", Deadline(5)) is None
    assert reads(cluster) == []


def test_a_namespace_the_identity_may_not_read_is_an_error_that_says_what_to_grant(
    cluster: Store, make: Callable[..., OneShotSecretStore]
) -> None:
    store = make()
    with pytest.raises(UpstreamError) as raised:
        store.secret("team-x", "regcred", Deadline(5))
    message = str(raised.value)
    assert "reading secrets team-x/regcred: forbidden; trustgate's identity needs 'get'" in message
    assert 'cannot get resource "secrets" in API group "" in the namespace "team-x"' in message


@pytest.mark.parametrize("how", ["hanging", "dripping"])
def test_a_slow_api_server_never_holds_a_review_past_its_deadline(
    cluster: Store, make: Callable[..., OneShotSecretStore], how: str
) -> None:
    if how == "hanging":
        cluster.hanging.set()
    else:
        cluster.drip = 0.05
    store = make(timeout=5.0)
    for _ in range(3):  # later reviews wait on the same read, within their own deadline
        start = time.monotonic()
        with pytest.raises(UpstreamError, match="did not answer within the review's deadline"):
            store.secret("team-a", "regcred", Deadline(0.3))
        assert time.monotonic() - start < 0.45
    assert len(reads(cluster)) == 1


def test_a_read_that_failed_is_tried_again(
    cluster: Store, make: Callable[..., OneShotSecretStore]
) -> None:
    store = make(timeout=0.3)
    cluster.hanging.set()
    with pytest.raises(UpstreamError):
        store.secret("team-a", "regcred", Deadline(1.0))
    cluster.hanging.clear()
    secret = store.secret("team-a", "regcred", Deadline(5))
    assert secret is not None and secret["type"] == "kubernetes.io/dockerconfigjson"
    assert len(reads(cluster)) == 2


def test_an_unreachable_api_server_is_an_error_that_names_it(
    tmp_path: Path, cluster: Store
) -> None:
    with socket.socket() as free:
        free.bind(("127.0.0.1", 0))
        port = free.getsockname()[1]
    config = kubeconfig(cluster, tmp_path)
    config.write_text(config.read_text().replace(cluster.url, f"https://127.0.0.1:{port}"))
    store = OneShotSecretStore(from_kubeconfig(config), timeout=2.0)
    with pytest.raises(UpstreamError, match=f"cannot reach https://127.0.0.1:{port}: the conn"):
        store.secret("team-a", "regcred", Deadline(3))
    store.close()


def test_an_oversized_secret_is_answered_as_a_marker(
    cluster: Store, make: Callable[..., OneShotSecretStore]
) -> None:
    huge = base64.b64encode(b"pw-huge " * 100_000).decode()
    cluster.put(pull_secret("team-a", "huge", data={".dockerconfigjson": huge}))
    marker = make().secret("team-a", "huge", Deadline(5))
    assert marker is not None and "data" not in marker and "pw-" not in repr(marker)
    assert "its .dockerconfigjson data is 1,066,668 bytes" in marker[DROPPED]
