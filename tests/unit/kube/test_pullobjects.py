"""webhook.kube.pullobjects: what the stores keep of a Secret or ServiceAccount."""

from __future__ import annotations

from webhook.credentials import dockerconfig, pullsecrets
from webhook.kube import pullobjects
from webhook.kube.pullobjects import Bounds, dropped, key_of, trim_secret, valid_name


def test_the_names_kube_restates_equal_those_of_credentials() -> None:
    # kube may not import credentials; the two copies must not drift apart.
    assert pullobjects.DROPPED == pullsecrets.DROPPED
    assert dict(pullobjects.PULL_SECRET_TYPES) == dict(dockerconfig.DATA_KEYS)


def test_valid_names_only_can_reach_a_url_path() -> None:
    assert valid_name("team-a", "regcred.v2")
    for namespace, name in (
        ("team-a", "../x"),
        ("a/b", "x"),
        ("team-a", "x/y"),
        ("Team", "x"),
        ("team-a", ""),
        ("a" * 64, "x"),
        ("a", "x%2f"),
    ):
        assert not valid_name(namespace, name)


def test_a_marker_keeps_names_type_and_reason_only() -> None:
    secret = {
        "metadata": {
            "name": "s",
            "namespace": "n",
            "uid": "u",
            "resourceVersion": "7",
            "annotations": {"a": "pw-secret"},
        },
        "type": "kubernetes.io/dockercfg",
        "data": {".dockercfg": "cHctc2VjcmV0"},
    }
    assert dropped(secret, "too large") == {
        "metadata": {"name": "s", "namespace": "n", "uid": "u", "resourceVersion": "7"},
        "type": "kubernetes.io/dockercfg",
        pullobjects.DROPPED: "too large",
    }
    assert key_of(secret) == ("n", "s")
    assert key_of({"metadata": {"name": "s"}}) is None


def test_a_secret_of_another_type_is_kept_only_when_asked_and_without_data() -> None:
    opaque = {
        "metadata": {"name": "s", "namespace": "n"},
        "type": "Opaque",
        "data": {"token": "cHctc2VjcmV0"},
    }
    assert trim_secret(opaque, Bounds()) is None
    kept = trim_secret(opaque, Bounds(), any_type=True)
    assert kept is not None and not isinstance(kept, str)
    assert kept[0] == {"metadata": {"name": "s", "namespace": "n"}, "type": "Opaque"}
    assert trim_secret({"metadata": {}}, Bounds()) is None
