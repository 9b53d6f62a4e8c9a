"""Which UPDATEs are no new admission: images unchanged in place, or a stored object deleted."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from tests.support.kube import pod_spec, workload
from webhook.admission.updates import DELETING, UNCHANGED, not_new
from webhook.admission.workloads import find_images

APP = "quay.io/acme/api:1.0"
SIDE = "quay.io/acme/side:2.0"
OLD = "docker.io/library/nginx:1.27"
MODELS = "ghcr.io/acme/models:7"


def _deployment(*images: str, volumes: tuple[str, ...] = ()) -> dict[str, Any]:
    return workload("Deployment", pod_spec(*images, volumes=volumes))


def _update(old: dict[str, Any], change: Any) -> str | None:
    new = copy.deepcopy(old)
    change(new)
    return not_new(old, find_images(new))


def _template(obj: dict[str, Any]) -> dict[str, Any]:
    spec: dict[str, Any] = obj["spec"]["template"]["spec"]
    return spec


def test_metadata_only_updates_are_not_new() -> None:
    old = _deployment(OLD, SIDE, volumes=(MODELS,))
    assert _update(old, lambda o: o["metadata"].update(finalizers=[])) == UNCHANGED
    assert _update(old, lambda o: o["metadata"]["labels"].update(tier="web")) == UNCHANGED
    assert _update(old, lambda o: o["spec"].update(replicas=9)) == UNCHANGED


CHANGES = {
    "image swapped": lambda o: _template(o)["containers"][0].update(image=APP),
    "container added": lambda o: _template(o)["containers"].append({"name": "x", "image": OLD}),
    "init container added": lambda o: _template(o).update(
        initContainers=[{"name": "i", "image": SIDE}]
    ),
    "images swapped between containers": lambda o: _template(o)["containers"].reverse(),
    "container renamed": lambda o: _template(o)["containers"][0].update(name="other"),
    "container moved to init": lambda o: _template(o).update(
        initContainers=[_template(o)["containers"].pop(1)]
    ),
    "volume image swapped": lambda o: _template(o)["volumes"][1]["image"].update(reference=OLD),
    "volume added": lambda o: _template(o)["volumes"].append(
        {"name": "more", "image": {"reference": MODELS}}
    ),
    "volume renamed": lambda o: _template(o)["volumes"][1].update(name="weights"),
    "image moved from volume to container": lambda o: (
        _template(o)["volumes"].pop(1),
        _template(o)["containers"].append({"name": "m", "image": MODELS}),
    ),
    "tag replaced by digest": lambda o: _template(o)["containers"][0].update(
        image=f"docker.io/library/nginx@sha256:{'a' * 64}"
    ),
}


@pytest.mark.parametrize("change", list(CHANGES.values()), ids=list(CHANGES))
def test_a_changed_added_or_moved_image_is_a_new_admission(change: Any) -> None:
    assert _update(_deployment(OLD, SIDE, volumes=(MODELS,)), change) is None


def test_removing_an_image_is_a_new_admission() -> None:
    """Fewer images is still another set: judged, and judging it costs only the rest."""
    old = _deployment(OLD, SIDE)
    assert _update(old, lambda o: _template(o)["containers"].pop()) is None


def test_an_object_being_deleted_is_not_new_whatever_the_update() -> None:
    old = _deployment(OLD)
    old["metadata"]["deletionTimestamp"] = "2026-11-28T23:00:00Z"
    old["metadata"]["finalizers"] = ["example.com/hold"]
    assert _update(old, lambda o: o["metadata"].update(finalizers=[])) == DELETING
    assert _update(old, lambda o: _template(o)["containers"][0].update(image=APP)) == DELETING
    assert not_new(old, None) == DELETING


def test_only_the_stored_object_says_it_is_being_deleted() -> None:
    """The client writes the new object; a deletionTimestamp it adds proves nothing."""
    old = _deployment(OLD)
    new = copy.deepcopy(old)
    new["metadata"]["deletionTimestamp"] = "2026-11-28T23:00:00Z"
    _template(new)["containers"][0]["image"] = APP
    assert not_new(old, find_images(new)) is None


def _stored(deletion: Any = None, api_version: Any = "v1") -> dict[str, Any] | None:
    old = workload("Pod", pod_spec(OLD))
    old["apiVersion"] = api_version
    if deletion is not None:
        old["metadata"]["deletionTimestamp"] = deletion
    return old


@pytest.mark.parametrize(
    "old",
    [
        None,
        _stored(api_version=["v1"]),
        _stored(deletion=["2026-11-28T23:00:00Z"]),
        _stored(deletion={"time": "2026-11-28T23:00:00Z"}),
        _stored(deletion=""),
    ],
    ids=[
        "missing",
        "mistyped apiVersion",
        "deletionTimestamp a list",
        "deletionTimestamp a mapping",
        "deletionTimestamp empty",
    ],
)
def test_an_old_object_that_proves_nothing_means_a_new_admission(old: Any) -> None:
    """Each ``old`` would count as being deleted if its fields were read with a guess."""
    assert not_new(old, find_images(workload("Pod", pod_spec(APP)))) is None


def test_an_unreadable_new_object_is_new_unless_the_old_is_being_deleted() -> None:
    assert not_new(_deployment(OLD), None) is None
