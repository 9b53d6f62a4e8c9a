"""webhook.kube.informer: the bounded table a list and watch keep, and what a feed reads.

The loop itself (list, watch, bookmarks, 410, backoff) runs against the stand-in API
server in test_secretwatch.py.
"""

from __future__ import annotations

from typing import Any

from tests.support.pullcluster import pull_secret, service_account
from webhook.kube.informer import Feed, Table
from webhook.kube.pullobjects import DROPPED, OVERHEAD, Bounds, trim_account, trim_secret


def stored(namespace: str, name: str, password: str = "pw", version: str = "1") -> dict[str, Any]:
    secret = pull_secret(namespace, name, {"quay.io": ("u", password)})
    secret["metadata"].update(uid=f"uid-{name}", resourceVersion=version)
    return secret


def test_a_feed_names_its_path_and_selector() -> None:
    everywhere = Feed("secrets", None, "type=kubernetes.io/dockercfg")
    assert everywhere.path == "/api/v1/secrets"
    assert str(everywhere) == "secrets (type=kubernetes.io/dockercfg) in every namespace"
    assert everywhere.params(limit="5") == {
        "limit": "5",
        "fieldSelector": "type=kubernetes.io/dockercfg",
    }
    one = Feed("serviceaccounts", "team-a")
    assert one.path == "/api/v1/namespaces/team-a/serviceaccounts"
    assert str(one) == "serviceaccounts in namespace team-a" and one.params() == {}


def test_a_table_keeps_what_a_pull_uses_and_forgets_deleted_objects() -> None:
    table = Table(Bounds(), trim_secret)
    assert table.put(stored("team-a", "one")) is None
    kept = table.objects[("team-a", "one")]
    assert set(kept) == {"metadata", "type", "data"} and set(kept["data"]) == {".dockerconfigjson"}
    first = table.bytes
    table.put(stored("team-a", "one", "a-much-longer-password", "2"))
    assert table.bytes > first and len(table) == 1
    table.delete(stored("team-a", "one"))
    assert len(table) == 0 and table.bytes == 0
    table.delete(stored("team-a", "never-there"))  # no error
    opaque = stored("team-a", "opaque")
    opaque["type"] = "Opaque"
    assert table.put(opaque) is None and len(table) == 0  # not a pull secret: not kept


def test_a_secret_too_large_is_kept_as_a_marker_that_says_why() -> None:
    table = Table(Bounds(object_bytes=10), trim_secret)
    reason = table.put(stored("team-a", "big"))
    assert reason is not None and "data is" in reason and "at most 10 bytes" in reason
    marker = table.objects[("team-a", "big")]
    assert marker[DROPPED] == reason and "data" not in marker
    assert marker["type"] == "kubernetes.io/dockerconfigjson"
    assert table.dropped == 1


def test_one_namespace_cannot_take_the_room_of_others() -> None:
    table = Table(Bounds(per_namespace=2, objects=3), trim_secret)
    assert table.put(stored("a", "1")) is None
    assert table.put(stored("a", "2")) is None
    refused = table.put(stored("a", "3"))
    assert refused is not None and "namespace a holds more than trustgate keeps" in refused
    assert table.put(stored("a", "1", "rotated", "5")) is None  # a change still fits
    assert table.put(stored("b", "1")) is None
    assert table.put(stored("c", "1")) is not None  # three in all
    marker = table.overflow("a", "3")
    assert marker is not None and marker[DROPPED].startswith("not kept: namespace a holds")
    assert table.overflow("b", "2") is None
    assert len(table) == 3


def test_bytes_are_bounded_and_a_change_that_does_not_fit_drops_the_old_version() -> None:
    one = stored("a", "1")
    size = trim_secret(one, Bounds())[1]  # type: ignore[index]
    table = Table(Bounds(bytes=size + 10), trim_secret)
    assert table.put(one) is None
    assert table.put(stored("a", "1", "p" * 200, "2")) is not None
    assert ("a", "1") not in table.objects  # not the stale version either
    assert table.bytes == 0


def test_accounts_keep_only_the_names_of_their_pull_secrets() -> None:
    account = service_account("team-a", "builder", "one", "two")
    account["metadata"].update(uid="u", resourceVersion="3")
    account["secrets"] = [{"name": "builder-token-x"}]
    kept, size = trim_account(account, Bounds())
    assert kept == {
        "metadata": {"name": "builder", "namespace": "team-a", "uid": "u", "resourceVersion": "3"},
        "imagePullSecrets": [{"name": "one"}, {"name": "two"}],
    }
    assert size == OVERHEAD + 6


def test_one_namespace_cannot_take_the_bytes_of_others() -> None:
    one = stored("a", "1", "p" * 100)
    size = trim_secret(one, Bounds())[1]  # type: ignore[index]
    table = Table(Bounds(per_namespace_bytes=2 * size + 10, bytes=10 * size), trim_secret)
    assert table.put(one) is None
    assert table.put(stored("a", "2", "p" * 100)) is None
    refused = table.put(stored("a", "3", "p" * 100))
    assert refused is not None and f"{2 * size + 10:,} bytes of each" in refused
    assert ("a", "3") not in table.objects
    assert table.put(stored("b", "1", "p" * 100)) is None  # another namespace still has room
    assert table.put(stored("a", "1", "p" * 200, "2")) is not None  # a change past it is refused
    assert ("a", "1") not in table.objects
    assert table.put(stored("a", "3", "p" * 100)) is None  # room again once one went
    table.delete(stored("a", "2"))
    table.delete(stored("a", "3"))
    table.delete(stored("b", "1"))
    assert table.bytes == 0 and len(table) == 0
