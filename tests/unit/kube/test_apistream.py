"""webhook.kube.apistream: reads of the API server bounded in time and bytes, and counted.

Against the stand-in API server of tests/support/apistore.py, made to hang or drip.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.apistore import Store, start_store
from tests.support.pullcluster import grant_cluster, kubeconfig, pull_secret, reset
from webhook.core.errors import KubeError
from webhook.kube.apistream import AnswerTooLarge, ApiReader, ApiRefusal
from webhook.kube.credentials import from_kubeconfig

SECRETS = "/api/v1/namespaces/team-a/secrets"


@pytest.fixture(scope="module")
def apiserver(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Store]:
    store = start_store(tmp_path_factory.mktemp("apistore"))
    yield store
    store.stop()


@pytest.fixture
def reader(apiserver: Store, tmp_path: Path) -> Iterator[ApiReader]:
    reset(apiserver)
    grant_cluster(apiserver)
    apiserver.put(pull_secret("team-a", "regcred", {"quay.io": ("u", "pw-u")}))
    found = ApiReader(from_kubeconfig(kubeconfig(apiserver, tmp_path)), timeout=2.0)
    yield found
    apiserver.hanging.clear()
    apiserver.drip = 0.0
    found.close()


def test_a_get_reads_one_object_a_missing_one_is_none_and_every_call_is_counted(
    reader: ApiReader,
) -> None:
    found = reader.get(f"{SECRETS}/regcred", what="reading", verb="get", seconds=2, max_bytes=65536)
    assert found is not None and found["metadata"]["name"] == "regcred"
    assert reader.get(f"{SECRETS}/nope", what="r", verb="get", seconds=2, max_bytes=65536) is None
    page = reader.get(
        SECRETS, {"limit": "5"}, what="listing", verb="list", seconds=2, max_bytes=65536
    )
    assert page is not None and [i["metadata"]["name"] for i in page["items"]] == ["regcred"]
    assert reader.calls.snapshot() == {"list": 1, "watch": 0, "get": 2}
    assert reader.calls.total == 3


def test_an_answer_over_its_byte_cap_is_not_read(reader: ApiReader) -> None:
    with pytest.raises(AnswerTooLarge, match="listing: the answer is over 100 bytes; not read"):
        reader.get(SECRETS, what="listing", verb="list", seconds=2, max_bytes=100)


def test_a_refusal_says_what_to_grant(reader: ApiReader, apiserver: Store, tmp_path: Path) -> None:
    reset(apiserver)
    apiserver.service_accounts["nobody"] = ("x", "nobody")
    other = ApiReader(from_kubeconfig(kubeconfig(apiserver, tmp_path, "nobody")), timeout=2.0)
    with pytest.raises(ApiRefusal) as raised:
        other.get(
            SECRETS, what="listing secrets in team-a", verb="list", seconds=2, max_bytes=65536
        )
    assert raised.value.code == 403
    assert str(raised.value).startswith(
        "listing secrets in team-a: forbidden; trustgate's identity needs 'list' here: "
        'secrets is forbidden: User "system:serviceaccount:x:nobody" cannot list'
    )
    stranger = ApiReader(from_kubeconfig(kubeconfig(apiserver, tmp_path, "wrong")), timeout=2.0)
    with pytest.raises(ApiRefusal, match="not authenticated; check the token"):
        stranger.get(SECRETS, what="l", verb="list", seconds=2, max_bytes=65536)
    other.close()
    stranger.close()


def test_a_dripping_answer_is_dropped_at_its_time_bound(
    reader: ApiReader, apiserver: Store
) -> None:
    apiserver.drip = 0.02
    start = time.monotonic()
    with pytest.raises(KubeError, match="the answer took too long to arrive"):
        reader.get(SECRETS, what="listing", verb="list", seconds=0.5, max_bytes=65536)
    assert time.monotonic() - start < 1.5


def test_a_watch_is_read_line_by_line_within_its_bounds(
    reader: ApiReader, apiserver: Store
) -> None:
    params = {"watch": "1", "resourceVersion": "0", "timeoutSeconds": "1"}
    with reader.watch(
        SECRETS, params, what="watching", seconds=5, idle=5, max_line=65536
    ) as events:
        (added,) = list(events)
    assert added["type"] == "ADDED" and added["object"]["metadata"]["name"] == "regcred"
    with (
        pytest.raises(KubeError, match="watching: an event is over 100 bytes; watch dropped"),
        reader.watch(SECRETS, params, what="watching", seconds=5, idle=5, max_line=100) as events,
    ):
        list(events)
    apiserver.drip = 0.01
    start = time.monotonic()
    with (
        pytest.raises(KubeError, match="the watch outlived its timeout"),
        reader.watch(SECRETS, params, what="w", seconds=0.5, idle=5, max_line=65536) as events,
    ):
        list(events)
    assert time.monotonic() - start < 1.5
    assert reader.calls.snapshot()["watch"] == 3


def test_a_hanging_api_server_ends_a_watch_at_its_idle_bound(
    reader: ApiReader, apiserver: Store
) -> None:
    apiserver.hanging.set()
    start = time.monotonic()
    with (
        pytest.raises(KubeError, match=r"cannot reach https://127\.0\.0\.1:.*did not answer in"),
        reader.watch(SECRETS, {"watch": "1"}, what="w", seconds=5, idle=0.3, max_line=9) as events,
    ):
        list(events)
    assert time.monotonic() - start < 1.5
