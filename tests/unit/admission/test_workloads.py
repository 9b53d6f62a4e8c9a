"""Finding every image of an object: one realistic manifest per kind, plus refusals.

A missed image is admitted unchecked, so each known kind is pinned to the
exact images, container names, kinds and paths found in it, images that only
look like images (annotations, status) are pinned as ignored, and malformed
pod specs are pinned to the message that names the path.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from types import MappingProxyType
from typing import Any

import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from webhook.admission.workloads import (
    KNOWN_KINDS,
    MAX_DEPTH,
    MAX_NODES,
    ContainerImage,
    find_images,
    is_understood,
)
from webhook.core.errors import WorkloadError

Found = tuple[str, str, str, str]

APP = "quay.io/acme/api@sha256:" + "0123456789abcdef" * 4
SIDECAR = "registry.redhat.io/ubi9/ubi-minimal:9.4"
MIGRATE = "quay.io/acme/migrate:1.2"
DEBUG = "docker.io/library/busybox:1.36"


def found(obj: Mapping[str, Any]) -> list[Found]:
    return [(i.image, i.container, i.kind, i.path) for i in find_images(obj)]


def load(text: str) -> dict[str, Any]:
    obj = yaml.safe_load(text)
    assert isinstance(obj, dict)
    return obj


POD = f"""
apiVersion: v1
kind: Pod
metadata:
  name: api-7c9d8
  namespace: prod-web
  labels: {{app: api, image: "evil.example/label:1"}}
  annotations:
    kubectl.kubernetes.io/last-applied-configuration: >-
      {{"spec":{{"containers":[{{"name":"x","image":"evil.example/annotation:1"}}]}}}}
  managedFields:
    - manager: kubectl
      fieldsV1: {{"f:spec": {{"f:containers": {{}}}}}}
spec:
  volumes: [{{name: data, emptyDir: {{}}}}]
  initContainers:
    - name: migrate
      image: {MIGRATE}
      command: [/migrate, --up]
  containers:
    - name: api
      image: {APP}
      ports: [{{containerPort: 8080, protocol: TCP}}]
      env: [{{name: MODE, value: production}}]
    - name: sidecar
      image: {SIDECAR}
  ephemeralContainers:
    - name: debugger-x2k
      image: {DEBUG}
      targetContainerName: api
  restartPolicy: Always
status:
  phase: Running
  containerStatuses:
    - name: api
      image: evil.example/running:1
      imageID: evil.example/running@sha256:00
  ephemeralContainerStatuses: [{{name: debugger-x2k, image: evil.example/status:1}}]
"""


def _controller(kind: str, api_version: str, spec_before_template: str) -> str:
    return f"""
apiVersion: {api_version}
kind: {kind}
metadata:
  name: api
  namespace: prod-web
  annotations: {{deployment.kubernetes.io/revision: "3"}}
spec:
{spec_before_template}
  template:
    metadata:
      labels: {{app: api}}
      annotations: {{sidecar.example/image: "evil.example/template-annotation:1"}}
    spec:
      initContainers: [{{name: migrate, image: "{MIGRATE}"}}]
      containers:
        - name: api
          image: "{APP}"
          resources: {{limits: {{cpu: 500m, memory: 128Mi}}}}
        - name: sidecar
          image: "{SIDECAR}"
status:
  replicas: 3
  conditions: [{{type: Available, status: "True"}}]
"""


TEMPLATE = "spec.template.spec"
TEMPLATE_IMAGES: list[Found] = [
    (MIGRATE, "migrate", "initContainer", f"{TEMPLATE}.initContainers[0]"),
    (APP, "api", "container", f"{TEMPLATE}.containers[0]"),
    (SIDECAR, "sidecar", "container", f"{TEMPLATE}.containers[1]"),
]

STATEFUL_SET = _controller(
    "StatefulSet",
    "apps/v1",
    """  serviceName: api
  replicas: 3
  selector: {matchLabels: {app: api}}
  volumeClaimTemplates:
    - metadata: {name: data}
      spec:
        accessModes: [ReadWriteOnce]
        resources: {requests: {storage: 1Gi}}""",
)

DEPLOYMENT_CONFIG = _controller(
    "DeploymentConfig",
    "apps.openshift.io/v1",
    """  replicas: 2
  selector: {app: api}
  strategy: {type: Rolling}
  triggers:
    - type: ConfigChange
    - type: ImageChange
      imageChangeParams:
        automatic: true
        containerNames: [api]
        from: {kind: ImageStreamTag, name: "api:latest"}""",
)

CONTROLLERS = {
    "Deployment": _controller(
        "Deployment",
        "apps/v1",
        """  replicas: 3
  selector: {matchLabels: {app: api}}
  strategy: {type: RollingUpdate, rollingUpdate: {maxSurge: 25%}}""",
    ),
    "ReplicaSet": _controller(
        "ReplicaSet", "apps/v1", "  replicas: 3\n  selector: {matchLabels: {app: api}}"
    ),
    "StatefulSet": STATEFUL_SET,
    "DaemonSet": _controller(
        "DaemonSet",
        "apps/v1",
        "  selector: {matchLabels: {app: api}}\n  updateStrategy: {type: RollingUpdate}",
    ),
    "Job": _controller("Job", "batch/v1", "  backoffLimit: 6\n  completions: 1"),
    "ReplicationController": _controller(
        "ReplicationController", "v1", "  replicas: 2\n  selector: {app: api}"
    ),
    "DeploymentConfig": DEPLOYMENT_CONFIG,
}

CRON_JOB = f"""
apiVersion: batch/v1
kind: CronJob
metadata: {{name: report, namespace: prod-batch}}
spec:
  schedule: "*/5 * * * *"
  concurrencyPolicy: Forbid
  jobTemplate:
    metadata: {{labels: {{app: report}}}}
    spec:
      backoffLimit: 2
      template:
        spec:
          restartPolicy: OnFailure
          containers:
            - name: report
              image: {APP}
              args: [--since, 5m]
"""

POD_TEMPLATE = f"""
apiVersion: v1
kind: PodTemplate
metadata: {{name: batch-worker, namespace: prod-batch}}
template:
  metadata: {{labels: {{app: worker}}}}
  spec:
    containers: [{{name: worker, image: "{SIDECAR}"}}]
"""

# A CRD that trustgate has no path table for (Knative Serving): found by shape.
KNATIVE_SERVICE = f"""
apiVersion: serving.knative.dev/v1
kind: Service
metadata: {{name: hello, namespace: prod-web}}
spec:
  template:
    metadata:
      annotations: {{autoscaling.knative.dev/target: "10"}}
    spec:
      containerConcurrency: 0
      containers:
        - image: {APP}
          ports: [{{containerPort: 8080}}]
  traffic: [{{latestRevision: true, percent: 100}}]
"""

CONFIG_MAP = """
apiVersion: v1
kind: ConfigMap
metadata: {name: settings, namespace: prod-web}
data:
  pod.yaml: |
    containers:
      - image: evil.example/in-a-string:1
"""

SCALE = """
apiVersion: autoscaling/v1
kind: Scale
metadata: {name: api, namespace: prod-web}
spec: {replicas: 5}
status: {replicas: 3, selector: app=api}
"""

# The schema of a CRD that embeds pod specs names `containers` as a mapping:
# that is not a pod spec, and must not be refused as a malformed one.
CRD = """
apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata: {name: workers.example.com}
spec:
  group: example.com
  names: {kind: Worker, plural: workers}
  scope: Namespaced
  versions:
    - name: v1
      served: true
      storage: true
      schema:
        openAPIV3Schema:
          type: object
          required: [containers]
          properties:
            containers:
              type: array
              items:
                type: object
                properties: {image: {type: string}, name: {type: string}}
"""


def test_pod_reports_every_container_kind_in_document_order() -> None:
    assert found(load(POD)) == [
        (MIGRATE, "migrate", "initContainer", "spec.initContainers[0]"),
        (APP, "api", "container", "spec.containers[0]"),
        (SIDECAR, "sidecar", "container", "spec.containers[1]"),
        (DEBUG, "debugger-x2k", "ephemeralContainer", "spec.ephemeralContainers[0]"),
    ]


@pytest.mark.parametrize("kind", sorted(CONTROLLERS))
def test_controllers_report_their_template(kind: str) -> None:
    obj = load(CONTROLLERS[kind])
    assert obj["kind"] == kind
    assert found(obj) == TEMPLATE_IMAGES


def test_cron_job_reports_its_job_template() -> None:
    path = "spec.jobTemplate.spec.template.spec.containers[0]"
    assert found(load(CRON_JOB)) == [(APP, "report", "container", path)]


def test_pod_template_reports_its_template() -> None:
    path = "template.spec.containers[0]"
    assert found(load(POD_TEMPLATE)) == [(SIDECAR, "worker", "container", path)]


def test_unknown_crd_with_a_pod_template_is_found_by_shape() -> None:
    path = "spec.template.spec.containers[0]"
    assert found(load(KNATIVE_SERVICE)) == [(APP, "", "container", path)]


@pytest.mark.parametrize("text", [CONFIG_MAP, SCALE, CRD], ids=["ConfigMap", "Scale", "CRD"])
def test_objects_without_a_pod_spec_have_no_images(text: str) -> None:
    assert find_images(load(text)) == ()


def test_pod_spec_anywhere_is_found() -> None:
    """A List, or a CRD nesting pod specs in its own fields, is still searched."""
    obj = {
        "apiVersion": "v1",
        "kind": "List",
        "items": [
            load(POD_TEMPLATE),
            {
                "apiVersion": "example.com/v1",
                "kind": "Pipeline",
                "spec": {"stages": [{"name": "build", "pod": {"containers": [{"image": DEBUG}]}}]},
            },
        ],
    }
    assert found(obj) == [
        (SIDECAR, "worker", "container", "items[0].template.spec.containers[0]"),
        (DEBUG, "", "container", "items[1].spec.stages[0].pod.containers[0]"),
    ]


def test_keys_that_would_read_ambiguously_are_quoted_in_paths() -> None:
    obj = {"kind": "Thing", "spec": {"pod.spec": {"containers": [{"image": APP}]}}}
    assert found(obj) == [(APP, "", "container", 'spec["pod.spec"].containers[0]')]


def test_images_outside_pod_specs_are_not_images() -> None:
    """Annotations and labels are strings; status reports what runs, not what is asked for."""
    obj = load(POD)
    obj["metadata"]["extra"] = {"containers": [{"image": "evil.example/metadata:1"}]}
    obj["status"]["containers"] = [{"image": "evil.example/status:2"}]
    obj["spec"]["template"] = {
        "metadata": {"containers": [{"image": "evil.example/template-metadata:1"}]},
        "spec": {},
    }
    images = {i.image for i in find_images(obj)}
    assert images == {MIGRATE, APP, SIDECAR, DEBUG}


def test_containers_without_an_image_are_skipped() -> None:
    """Templates may leave the image to a later step (an OpenShift trigger, a mutating webhook)."""
    obj = load(CONTROLLERS["Deployment"])
    del obj["spec"]["template"]["spec"]["containers"][0]["image"]
    obj["spec"]["template"]["spec"]["initContainers"] = None
    assert found(obj) == [(SIDECAR, "sidecar", "container", f"{TEMPLATE}.containers[1]")]


def test_the_same_image_in_two_containers_is_reported_twice() -> None:
    obj = {"kind": "Pod", "spec": {"containers": [{"name": "a", "image": APP}] * 2}}
    assert [i.container for i in find_images(obj)] == ["a", "a"]


def test_mappings_and_sequences_other_than_dict_and_list_are_walked() -> None:
    container = MappingProxyType({"name": "api", "image": APP})
    obj = MappingProxyType({"kind": "Pod", "spec": MappingProxyType({"containers": (container,)})})
    assert found(obj) == [(APP, "api", "container", "spec.containers[0]")]


def _pod(*containers: Any, key: str = "containers") -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Pod", "spec": {key: list(containers)}}


MALFORMED: list[tuple[str, Any, str]] = [
    (
        "image not a string",
        _pod({"name": "a", "image": APP}, {"name": "b", "image": 42}),
        r"^spec\.containers\[1\]\.image must be a string, got int$",
    ),
    (
        "image null",
        _pod({"name": "a", "image": None}, key="initContainers"),
        r"^spec\.initContainers\[0\]\.image must be a string, got null$",
    ),
    (
        "image empty",
        _pod({"name": "a", "image": ""}, key="ephemeralContainers"),
        r"^spec\.ephemeralContainers\[0\]\.image must not be empty$",
    ),
    (
        "name not a string",
        _pod({"name": ["a"], "image": APP}),
        r"^spec\.containers\[0\]\.name must be a string, got list$",
    ),
    (
        "containers a string",
        {"kind": "Pod", "spec": {"containers": APP}},
        r"^spec\.containers must be a list, got str$",
    ),
    (
        "containers a mapping (a YAML item without its dash)",
        load(
            """
apiVersion: apps/v1
kind: Deployment
metadata: {name: api}
spec:
  template:
    spec:
      containers:
        name: api
        image: quay.io/acme/api:1.2
"""
        ),
        r"^spec\.template\.spec\.containers must be a list, got dict$",
    ),
    (
        "initContainers not a list beside a containers list",
        {"kind": "Rollout", "spec": {"containers": [], "initContainers": {"image": APP}}},
        r"^spec\.initContainers must be a list, got dict$",
    ),
    (
        "container not a mapping",
        _pod({"name": "a", "image": APP}, APP),
        r"^spec\.containers\[1\] must be a mapping, got str$",
    ),
    (
        "container a list",
        {"kind": "Job", "spec": {"template": {"spec": {"containers": [[{"image": APP}]]}}}},
        r"^spec\.template\.spec\.containers\[0\] must be a mapping, got list$",
    ),
    ("object not a mapping", [load(POD)], r"^the object must be a mapping, got list$"),
]


@pytest.mark.parametrize(
    ("obj", "message"), [(o, m) for _, o, m in MALFORMED], ids=[i for i, _, _ in MALFORMED]
)
def test_malformed_pod_specs_are_refused(obj: Any, message: str) -> None:
    with pytest.raises(WorkloadError, match=message):
        find_images(obj)


def test_container_keys_off_a_known_path_need_a_list_to_be_a_pod_spec() -> None:
    """Elsewhere ``containers`` may be a CRD's own field (a count): walked, not refused."""
    assert find_images({"kind": "Widget", "spec": {"containers": {"count": 3}}}) == ()
    assert find_images({"kind": "Widget", "spec": {"containers": "all"}}) == ()
    with pytest.raises(WorkloadError, match=r"^spec\.containers must be a list, got dict$"):
        find_images({"kind": "Pod", "spec": {"containers": {"count": 3}}})


def test_workload_errors_deny() -> None:
    assert WorkloadError.outcome == "deny"


def _nested(levels: int) -> dict[str, Any]:
    obj: dict[str, Any] = {"containers": [{"image": APP}]}
    for _ in range(levels):
        obj = {"a": obj}
    return obj


def test_nesting_up_to_the_cap_is_walked() -> None:
    # The container sits two levels below its pod spec: the list, then the item.
    path = ".".join(["a"] * (MAX_DEPTH - 2)) + ".containers[0]"
    assert found(_nested(MAX_DEPTH - 2)) == [(APP, "", "container", path)]


def test_nesting_past_the_cap_is_refused() -> None:
    with pytest.raises(WorkloadError, match=rf"is nested more than {MAX_DEPTH} levels deep$"):
        find_images(_nested(MAX_DEPTH - 1))


def test_deep_nesting_is_refused_without_recursion() -> None:
    deep: dict[str, Any] = {}
    for _ in range(100_000):
        deep = {"a": [deep]}
    with pytest.raises(WorkloadError, match="nested more than"):
        find_images({"kind": "Pod", "spec": deep})


def test_cyclic_yaml_is_refused() -> None:
    obj = load("kind: Pod\nspec: &loop\n  containers: []\n  more: *loop\n")
    with pytest.raises(WorkloadError, match="nested more than"):
        find_images(obj)


def test_yaml_alias_bombs_are_refused() -> None:
    """Aliases make a small document a huge tree; the walk counts values, not bytes."""
    text = "kind: Pod\nl0: &l0 [x, x, x, x, x, x, x, x, x, x]\n"
    for level in range(1, 7):
        previous = f"*l{level - 1}"
        text += f"l{level}: &l{level} [{', '.join([previous] * 10)}]\n"
    with pytest.raises(WorkloadError, match=rf"^the object holds more than {MAX_NODES} values"):
        find_images(load(text))


def test_large_flat_objects_under_the_cap_are_walked() -> None:
    obj = _pod({"image": APP})
    obj["spec"]["env"] = list(range(MAX_NODES - 10))
    assert len(find_images(obj)) == 1


def test_known_kinds() -> None:
    assert {
        "Pod",
        "Deployment",
        "ReplicaSet",
        "StatefulSet",
        "DaemonSet",
        "Job",
        "CronJob",
        "ReplicationController",
        "PodTemplate",
        "DeploymentConfig",
    } == KNOWN_KINDS
    assert is_understood("CronJob")
    assert not is_understood("ConfigMap")
    assert not is_understood("pod")


def test_container_images_are_frozen_values() -> None:
    first, *_ = find_images(load(POD))
    with pytest.raises(dataclasses.FrozenInstanceError):
        first.image = DEBUG  # type: ignore[misc]
    again = ContainerImage(MIGRATE, "migrate", "initContainer", "spec.initContainers[0]")
    assert first == again
    assert hash(first) == hash(again)


_KEYS = st.one_of(
    st.sampled_from(["containers", "initContainers", "ephemeralContainers", "image", "name"]),
    st.sampled_from(["spec", "template", "metadata", "status", "kind", "apiVersion"]),
    st.sampled_from(["volumes", "reference", "deletionTimestamp", "jobTemplate"]),
    st.text(max_size=8),
)
_JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=12) | st.sampled_from([APP, ""]),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(_KEYS, children, max_size=5),
    max_leaves=40,
)


@settings(max_examples=300, deadline=None)
@given(st.one_of(_JSON, st.dictionaries(_KEYS, _JSON, max_size=6)))
def test_any_json_value_yields_images_or_a_workload_error(value: Any) -> None:
    try:
        images = find_images(value)
    except WorkloadError as exc:
        assert str(exc)
    else:
        assert isinstance(images, tuple)
        for image in images:
            assert isinstance(image, ContainerImage)
            assert image.image


def test_a_builtin_kind_name_in_another_group_gets_the_full_walk() -> None:
    """A CRD may reuse "Deployment"; only the built-in group's type is trusted."""
    crd = {
        "apiVersion": "evil.example.com/v1",
        "kind": "Deployment",
        "metadata": {"name": "x"},
        "spec": {
            "template": {"spec": {"containers": [{"name": "a", "image": "quay.io/ok/a:1"}]}},
            "sidecars": {"containers": [{"name": "b", "image": "evil.com/miner:1"}]},
        },
    }
    assert [found.image for found in find_images(crd)] == ["quay.io/ok/a:1", "evil.com/miner:1"]


def test_typed_kinds_read_their_pod_spec_in_document_order() -> None:
    pod = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "p"},
        "spec": {
            "initContainers": [{"name": "i", "image": "init:1"}],
            "containers": [{"name": "c", "image": "app:1"}, {"name": "d"}],
            "ephemeralContainers": [{"name": "e", "image": "debug:1"}],
        },
    }
    assert [(f.image, f.kind, f.path) for f in find_images(pod)] == [
        ("init:1", "initContainer", "spec.initContainers[0]"),
        ("app:1", "container", "spec.containers[0]"),
        ("debug:1", "ephemeralContainer", "spec.ephemeralContainers[0]"),
    ]


MODELS = "ghcr.io/acme/models:7"


def _with_image_volume(obj: dict[str, Any], spec_path: tuple[str, ...]) -> dict[str, Any]:
    spec = obj
    for key in spec_path:
        spec = spec[key]
    spec["volumes"] = [
        {"name": "scratch", "emptyDir": {}},
        {"name": "models", "image": {"reference": MODELS, "pullPolicy": "IfNotPresent"}},
        {"name": "config", "configMap": {"name": "c"}},
    ]
    return obj


IMAGE_VOLUME_CASES = [
    ("Pod", "v1", POD, ("spec",)),
    ("Deployment", "apps/v1", _controller("Deployment", "apps/v1", "  replicas: 3"),
     ("spec", "template", "spec")),
    ("CronJob", "batch/v1", CRON_JOB, ("spec", "jobTemplate", "spec", "template", "spec")),
    ("PodTemplate", "v1", POD_TEMPLATE, ("template", "spec")),
]  # fmt: skip


@pytest.mark.parametrize("walk", ["typed", "full"])
@pytest.mark.parametrize(
    ("kind", "api_version", "text", "spec_path"),
    IMAGE_VOLUME_CASES,
    ids=[c[0] for c in IMAGE_VOLUME_CASES],
)
def test_image_volumes_are_images(
    kind: str, api_version: str, text: str, spec_path: tuple[str, ...], walk: str
) -> None:
    """Typed kinds and the same shapes in a CRD group both report the volume's image."""
    obj = _with_image_volume(load(text), spec_path)
    if walk == "full":
        obj["apiVersion"] = "example.com/v1"
    (volume,) = [f for f in find_images(obj) if f.kind == "imageVolume"]
    assert (volume.image, volume.container, volume.path) == (
        MODELS,
        "models",
        ".".join(spec_path) + ".volumes[1]",
    )
    assert volume.location == "image volume models"
    containers = [f for f in find_images(obj) if f.kind != "imageVolume"]
    assert containers and all(f.image != MODELS for f in containers)


def test_image_volume_source_outside_a_pod_spec_is_an_image() -> None:
    """A mapping with only volumes (no container list) still mounts what it names."""
    crd = {"kind": "Notebook", "spec": {"volumes": [{"name": "m", "image": {"reference": MODELS}}]}}
    assert found(crd) == [(MODELS, "m", "imageVolume", "spec.volumes[0]")]


def test_other_meanings_of_volumes_image_are_walked_not_refused() -> None:
    """Outside a pod spec, a CRD's ``volumes[].image`` string is its own field."""
    crd = {"kind": "Backup", "spec": {"volumes": [{"name": "v", "image": "snapshot-1"}, "x"]}}
    assert find_images(crd) == ()


def test_volumes_without_an_image_source_or_reference_are_skipped() -> None:
    pod = _pod({"name": "a", "image": APP})
    pod["spec"]["volumes"] = [
        {"name": "x", "emptyDir": {}},
        {"name": "y", "image": None},
        {"name": "z", "image": {"pullPolicy": "Always"}},
    ]
    assert found(pod) == [(APP, "a", "container", "spec.containers[0]")]


MALFORMED_VOLUMES: list[tuple[str, Any, str]] = [
    ("volumes a mapping", {"name": "m"}, r"^spec\.volumes must be a list, got dict$"),
    ("volume a string", ["m"], r"^spec\.volumes\[0\] must be a mapping, got str$"),
    (
        "image source a string",
        [{"name": "m", "image": MODELS}],
        r"^spec\.volumes\[0\]\.image must be a mapping, got str$",
    ),
    (
        "reference a list",
        [{"name": "m", "image": {"reference": [MODELS]}}],
        r"^spec\.volumes\[0\]\.image\.reference must be a string, got list$",
    ),
    (
        "reference null",
        [{"name": "m", "image": {"reference": None}}],
        r"^spec\.volumes\[0\]\.image\.reference must be a string, got null$",
    ),
    (
        "reference empty",
        [{"name": "m", "image": {"reference": ""}}],
        r"^spec\.volumes\[0\]\.image\.reference must not be empty$",
    ),
    (
        "volume name a number",
        [{"name": 1, "image": {"reference": MODELS}}],
        r"^spec\.volumes\[0\]\.name must be a string, got int$",
    ),
]


@pytest.mark.parametrize("walk", ["typed", "full"])
@pytest.mark.parametrize(
    ("volumes", "message"),
    [(v, m) for _, v, m in MALFORMED_VOLUMES],
    ids=[i for i, _, _ in MALFORMED_VOLUMES],
)
def test_malformed_image_volumes_are_refused(volumes: Any, message: str, walk: str) -> None:
    pod = _pod({"name": "a", "image": APP})
    pod["spec"]["volumes"] = volumes
    if walk == "full":
        pod["apiVersion"] = "example.com/v1"
    with pytest.raises(WorkloadError, match=message):
        find_images(pod)


MALFORMED_OBJECTS: list[tuple[Any, str]] = [
    ({"apiVersion": ["v1"], "kind": "Pod"}, r"^apiVersion must be a string, got list$"),
    ({"apiVersion": {"a": 1}, "kind": "Pod"}, r"^apiVersion must be a string, got dict$"),
    ({"apiVersion": "v1", "kind": ["Pod"]}, r"^kind must be a string, got list$"),
    ({"kind": "Pod", "metadata": "x"}, r"^metadata must be a mapping, got str$"),
    ({"kind": "Pod", "metadata": {"namespace": 3}}, r"^metadata\.namespace must be a string"),
    ({"kind": "Pod", "metadata": {"deletionTimestamp": {}}}, r"^metadata\.deletionTimestamp"),
    ({"apiVersion": "v1", "kind": "Pod", "spec": [1]}, r"^spec must be a mapping, got list$"),
    (
        {"apiVersion": "batch/v1", "kind": "CronJob", "spec": {"jobTemplate": "x"}},
        r"^spec\.jobTemplate must be a mapping, got str$",
    ),
    (
        {"apiVersion": "example.com/v1", "kind": "Deployment", "spec": {"template": 1}},
        r"^spec\.template must be a mapping, got int$",
    ),
]


@pytest.mark.parametrize(("obj", "message"), MALFORMED_OBJECTS)
def test_objects_with_mistyped_envelopes_or_template_paths_are_refused(
    obj: Any, message: str
) -> None:
    with pytest.raises(WorkloadError, match=message):
        find_images(obj)


def test_a_known_kind_missing_its_template_has_no_images() -> None:
    """A partial manifest (a kustomize patch) is not malformed: it holds no pod spec."""
    assert (
        find_images({"apiVersion": "apps/v1", "kind": "Deployment", "spec": {"replicas": 3}}) == ()
    )
    assert find_images({"apiVersion": "v1", "kind": "Pod", "spec": None}) == ()


# -- JSON pointers of images (what /mutate patches) ---------------------------------

_ODD_KEYS = st.sampled_from(
    [
        *("containers", "initContainers", "ephemeralContainers", "volumes"),
        *("image", "reference", "spec", "template"),
        *("a/b", "~", "~1", "x~0y", "", "pod.spec"),
    ]
)
_POD_SPECS = st.recursive(
    st.sampled_from([APP, MIGRATE, None, 3]),
    lambda children: (
        st.lists(children, max_size=3) | st.dictionaries(_ODD_KEYS, children, max_size=4)
    ),
    max_leaves=30,
)


@settings(max_examples=300, deadline=None)
@given(st.dictionaries(_ODD_KEYS, _POD_SPECS, max_size=5))
def test_every_pointer_resolves_to_its_image(value: dict[str, Any]) -> None:
    """RFC 6901: the pointer of each image found, escapes and all, reads that image."""
    from jsonpointer import resolve_pointer

    try:
        images = find_images(value)
    except WorkloadError:
        return
    for image in images:
        assert resolve_pointer(value, image.pointer) == image.image


@pytest.mark.parametrize(
    ("obj", "pointers"),
    [
        (
            {"kind": "Thing", "spec": {"a/b~c": {"containers": [{"image": APP}]}}},
            ["/spec/a~1b~0c/containers/0/image"],
        ),
        (
            {
                "apiVersion": "batch/v1",
                "kind": "CronJob",
                "spec": {
                    "jobTemplate": {
                        "spec": {
                            "template": {
                                "spec": {
                                    "containers": [{"name": "a", "image": APP}],
                                    "volumes": [{"name": "m", "image": {"reference": MIGRATE}}],
                                }
                            }
                        }
                    }
                },
            },
            [
                "/spec/jobTemplate/spec/template/spec/containers/0/image",
                "/spec/jobTemplate/spec/template/spec/volumes/0/image/reference",
            ],
        ),
    ],
)
def test_pointers_of_images(obj: dict[str, Any], pointers: list[str]) -> None:
    assert [image.pointer for image in find_images(obj)] == pointers
