"""What a workload pulls with, read from the object under review."""

from __future__ import annotations

from typing import Any

import pytest

from tests.support.kube import pod_spec, workload
from webhook.admission.pullidentity import MAX_SECRETS, pull_identity
from webhook.core.scope import PullIdentity


def spec(**extra: Any) -> dict[str, Any]:
    return {**pod_spec("registry.example.com/app:v1"), **extra}


@pytest.mark.parametrize("kind", ["Pod", "Deployment", "StatefulSet", "Job", "CronJob"])
def test_the_pod_specs_secrets_and_account_of_every_kind(kind: str) -> None:
    obj = workload(kind, spec(imagePullSecrets=[{"name": "a"}, {"name": "b"}],
                              serviceAccountName="builder"))  # fmt: skip
    assert pull_identity("team", obj) == PullIdentity("team", ("a", "b"), "builder")


@pytest.mark.parametrize(
    ("extra", "expected"),
    [
        ({}, PullIdentity("team")),
        ({"serviceAccount": "legacy"}, PullIdentity("team", (), "legacy")),
        ({"serviceAccountName": ""}, PullIdentity("team")),
        ({"serviceAccountName": 7}, PullIdentity("team")),
        ({"serviceAccountName": "x" * 254}, PullIdentity("team")),
        ({"imagePullSecrets": [{"name": "a"}, {"name": "a"}]}, PullIdentity("team", ("a",))),
        ({"imagePullSecrets": [{"name": 3}, "b", {}, {"name": ""}]}, PullIdentity("team")),
        ({"imagePullSecrets": {"name": "a"}}, PullIdentity("team")),
    ],
    ids=["none", "deprecated field", "empty", "not a string", "too long", "twice", "malformed",
         "not a list"],
)  # fmt: skip
def test_malformed_entries_are_skipped_never_guessed(
    extra: dict[str, Any], expected: PullIdentity
) -> None:
    assert pull_identity("team", workload("Deployment", spec(**extra))) == expected


def test_at_most_so_many_secrets_are_read() -> None:
    listed = [{"name": f"s{i}"} for i in range(MAX_SECRETS + 10)]
    found = pull_identity("team", workload("Pod", spec(imagePullSecrets=listed)))
    assert len(found.secrets) == MAX_SECRETS


def test_an_object_without_a_known_pod_spec_pulls_as_the_default_account() -> None:
    custom = {"apiVersion": "example.com/v1", "kind": "Widget",
              "spec": {"imagePullSecrets": [{"name": "borrowed"}], "image": "r/a:v1"}}  # fmt: skip
    assert pull_identity("team", custom) == PullIdentity("team")
    broken = {"kind": "Deployment", "spec": {"template": "not a mapping"}}
    assert pull_identity("team", broken) == PullIdentity("team")
