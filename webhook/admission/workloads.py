"""Every image of a Kubernetes object, wherever its pod specs sit.

An image is what a container runs (``containers``, ``initContainers``,
``ephemeralContainers``) and what an image volume mounts
(``volumes[].image.reference``, Kubernetes 1.31+): the kubelet pulls both.

A missed image is an image admitted unchecked, so the object is not read
through per-kind paths alone: the whole object is walked, and any mapping
whose ``containers``, ``initContainers`` or ``ephemeralContainers`` holds a
list is a pod spec. That finds Pods, every workload template, CronJobs, and
CRDs that embed pod templates (Knative, Argo Rollouts, ...) without a table
that has to keep up with them. An image volume source (an ``image`` mapping
naming a ``reference``) in any ``volumes`` list is an image too, pod spec or
not. For the kinds trustgate knows, the pod spec at the kind's own path is a
pod spec even when its container lists are missing or mistyped, and every
mapping on the way to it must be a mapping, so a malformed manifest is
refused instead of passing as "no images". So is an object whose
``apiVersion``, ``kind`` or ``metadata`` has the wrong type.

``metadata`` (ObjectMeta, which never holds a pod spec) is skipped at the top
level and beside every nested ``spec``, and so is the top-level ``status``,
which reports the images already running, not the ones requested. Strings are never parsed, so
an image named in an annotation is not an image.

The walk is iterative and bounded in depth and size: the object comes from
whoever may create workloads, and YAML aliases can make a small document a
large (or cyclic) tree.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Final, Literal, TypeAlias

from webhook.core.errors import WorkloadError

ContainerKind = Literal["container", "initContainer", "ephemeralContainer", "imageVolume"]

#: Deepest nesting walked; a CronJob's container fields sit about a dozen levels down.
MAX_DEPTH: Final = 100
#: Most values walked in one object; an API object is at most ~1.5 MB of JSON.
MAX_NODES: Final = 200_000

_CONTAINER_KEYS: Final[Mapping[str, ContainerKind]] = {
    "containers": "container",
    "initContainers": "initContainer",
    "ephemeralContainers": "ephemeralContainer",
}

_CONTAINER_KEY_NAMES: Final = frozenset(_CONTAINER_KEYS)
_VOLUMES: Final = "volumes"
#: What the list items of each key of a pod spec are read as.
_POD_SPEC_KEYS: Final[Mapping[str, ContainerKind]] = {**_CONTAINER_KEYS, _VOLUMES: "imageVolume"}
#: ObjectMeta fields read for the decision (names, namespace, deletion).
_METADATA_STRINGS: Final = ("name", "generateName", "namespace", "deletionTimestamp")

# kind -> keys from the object to its pod spec.
POD_SPEC_PATHS: Final[Mapping[str, tuple[str, ...]]] = {
    "Pod": ("spec",),
    "Deployment": ("spec", "template", "spec"),
    "ReplicaSet": ("spec", "template", "spec"),
    "StatefulSet": ("spec", "template", "spec"),
    "DaemonSet": ("spec", "template", "spec"),
    "Job": ("spec", "template", "spec"),
    "CronJob": ("spec", "jobTemplate", "spec", "template", "spec"),
    "ReplicationController": ("spec", "template", "spec"),
    "PodTemplate": ("template", "spec"),
    "DeploymentConfig": ("spec", "template", "spec"),  # OpenShift apps.openshift.io/v1
}

KNOWN_KINDS: Final[frozenset[str]] = frozenset(POD_SPEC_PATHS)

#: Built-in kinds reach the webhook decoded into their typed structs, which drop
#: unknown fields, so their images can only be where the type puts them; reading
#: just that pod spec keeps the request path short. The same kind name in any
#: other API group (a CRD) gets the full walk.
_TYPED_API_VERSIONS: Final[Mapping[str, frozenset[str]]] = {
    "Pod": frozenset({"v1"}),
    "ReplicationController": frozenset({"v1"}),
    "PodTemplate": frozenset({"v1"}),
    "Deployment": frozenset({"apps/v1"}),
    "ReplicaSet": frozenset({"apps/v1"}),
    "StatefulSet": frozenset({"apps/v1"}),
    "DaemonSet": frozenset({"apps/v1"}),
    "Job": frozenset({"batch/v1"}),
    "CronJob": frozenset({"batch/v1"}),
    "DeploymentConfig": frozenset({"apps.openshift.io/v1"}),
}

_TOP_LEVEL_SKIPPED: Final = frozenset({"metadata", "status"})
_NESTED_SKIPPED: Final = frozenset({"metadata"})
_NOTHING_SKIPPED: Final[frozenset[str]] = frozenset()
_SCALARS: Final = frozenset({str, int, float, bool, type(None)})
_PLAIN_KEY = re.compile(r"[A-Za-z0-9_-]+")


@dataclass(frozen=True, slots=True)
class ContainerImage:
    """One image as the manifest writes it, and where.

    ``image`` is not normalised: the policy engine parses it, and messages
    show what the author wrote. ``path`` points at the container or volume,
    e.g. ``spec.template.spec.initContainers[0]``; ``container`` is its name
    (the volume's name for an ``imageVolume``).
    """

    image: str
    container: str
    kind: ContainerKind
    where: _Path = field(default=None, repr=False, compare=False)

    @property
    def path(self) -> str:
        """Where the container is, rendered on demand (the request path never asks)."""
        return _render(self.where)

    @property
    def pointer(self) -> str:
        """The JSON Pointer (RFC 6901) of the image string itself, for a JSONPatch.

        ``/spec/containers/0/image``, ``/spec/volumes/2/image/reference``; a key
        holding ``~`` or ``/`` (possible in a custom resource) is escaped.
        """
        steps = _steps(self.where)
        steps += ["image", "reference"] if self.kind == "imageVolume" else ["image"]
        return "".join("/" + str(s).replace("~", "~0").replace("/", "~1") for s in steps)

    @property
    def location(self) -> str:
        """``container app``, ``image volume models``: where it is, for people."""
        label = "image volume" if self.kind == "imageVolume" else self.kind
        return f"{label} {self.container}" if self.container else label


# A path is built lazily as (parent, key-or-index) links and rendered only when
# shown: most of an object is walked and forgotten.
_Path: TypeAlias = tuple[Any, Any] | None
# A node to visit: the value, its path, its depth, and its container kind when
# it is an item of a pod spec's container list.
_Node: TypeAlias = tuple[Any, _Path, int, ContainerKind | None]


def is_understood(kind: str) -> bool:
    """Whether ``kind`` is one whose pod spec trustgate knows where to find.

    An object of another kind is still searched; this only lets the caller
    say why an object without images was admitted.
    """
    return kind in KNOWN_KINDS


def find_images(obj: Mapping[str, Any]) -> tuple[ContainerImage, ...]:
    """Every image of every pod spec in ``obj``, in document order.

    A container without an ``image`` (allowed in some templates) is skipped;
    the same image in two containers is reported twice. Raises WorkloadError,
    naming the path, when a pod spec is malformed where an image could hide
    (a container or volume list that is not a list, a container or volume
    that is not a mapping, an image that is not a non-empty string), when
    ``obj`` is not a mapping or its ``apiVersion``, ``kind`` or ``metadata``
    has the wrong type, when a mapping on a known kind's way to its pod spec
    is not one, or when it is nested deeper than MAX_DEPTH or holds more than
    MAX_NODES values.
    """
    check_object(obj)
    anchor, anchor_path = known_pod_spec(obj)
    if anchor is not None and obj.get("apiVersion") in _TYPED_API_VERSIONS[obj["kind"]]:
        return _pod_spec_images(anchor, anchor_path)
    found: list[ContainerImage] = []
    stack: list[_Node] = [(obj, None, 0, None)]
    nodes = 0
    while stack:
        node, path, depth, container_kind = stack.pop()
        if container_kind is not None:
            image = _image_of(node, path, container_kind)
            if image is not None:
                found.append(image)
        nodes += len(node)
        if nodes > MAX_NODES:
            raise WorkloadError(f"the object holds more than {MAX_NODES} values, too many to walk")
        if _is_mapping(node):
            children = _mapping_children(node, path, depth, pod_spec=node is anchor)
        else:
            children = _list_children(node, path, depth)
        stack.extend(reversed(children))
    return tuple(found)


def check_object(obj: object) -> None:
    """Refuse an object whose envelope has the wrong types.

    The fields every object has (``apiVersion``, ``kind``, ``metadata`` and
    the ObjectMeta fields a decision reads) are strings and a mapping; any
    other type means a forged or broken object, which is refused rather than
    read with a guess.

    Raises:
        WorkloadError: naming the field and the type found.
    """
    if not _is_mapping(obj):
        raise WorkloadError(f"the object must be a mapping, got {_type_name(obj)}")
    assert isinstance(obj, Mapping)
    for key in ("apiVersion", "kind"):
        value = obj.get(key)
        if value is not None and not isinstance(value, str):
            raise WorkloadError(f"{key} must be a string, got {_type_name(value)}")
    metadata = obj.get("metadata")
    if metadata is None:
        return
    if not _is_mapping(metadata):
        raise WorkloadError(f"metadata must be a mapping, got {_type_name(metadata)}")
    for key in _METADATA_STRINGS:
        value = metadata.get(key)
        if value is not None and not isinstance(value, str):
            raise WorkloadError(f"metadata.{key} must be a string, got {_type_name(value)}")


def known_pod_spec(obj: Mapping[str, Any]) -> tuple[Mapping[str, Any] | None, _Path]:
    """The mapping at the pod-spec path of ``obj``'s kind, if it has one, and its path.

    A step that is missing (a partial manifest) means no pod spec; a step of
    another type is refused, since the walk would not look inside it.
    """
    kind = obj.get("kind")
    keys = POD_SPEC_PATHS.get(kind) if isinstance(kind, str) else None
    if keys is None:
        return None, None
    node = obj
    path: _Path = None
    for key in keys:
        child = node.get(key)
        path = (path, key)
        if child is None:
            return None, None
        if not _is_mapping(child):
            raise WorkloadError(f"{_render(path)} must be a mapping, got {_type_name(child)}")
        node = child
    return node, path


def _pod_spec_images(spec: Mapping[str, Any], path: _Path) -> tuple[ContainerImage, ...]:
    """The images of one typed pod spec, in document order."""
    found: list[ContainerImage] = []
    for key, value in spec.items():
        kind = _POD_SPEC_KEYS.get(key)
        if kind is None or value is None:
            continue
        child = (path, key)
        if not _is_list(value):
            raise WorkloadError(f"{_render(child)} must be a list, got {_type_name(value)}")
        for index, item in enumerate(value):
            if not _is_mapping(item):
                where = _render((child, index))
                raise WorkloadError(f"{where} must be a mapping, got {_type_name(item)}")
            image = _image_of(item, (child, index), kind)
            if image is not None:
                found.append(image)
    return tuple(found)


def _mapping_children(
    node: Mapping[Any, Any], path: _Path, depth: int, *, pod_spec: bool
) -> list[_Node]:
    """The containers (mappings and lists) directly under ``node``, in order.

    When ``node`` is a pod spec, the items of its container and volume lists
    come back tagged with their kind, so that they are read as containers and
    volumes when visited. Items of any other ``volumes`` list whose ``image``
    is a mapping come back tagged too: an image volume source there is an
    image (elsewhere a CRD's own ``image`` field may mean something else).
    """
    if not pod_spec and not _CONTAINER_KEY_NAMES.isdisjoint(node.keys()):
        pod_spec = (
            _is_list(node.get("containers"))
            or _is_list(node.get("initContainers"))
            or _is_list(node.get("ephemeralContainers"))
        )
    if depth == 0:
        skipped = _TOP_LEVEL_SKIPPED
    elif "spec" in node:
        skipped = _NESTED_SKIPPED
    else:
        skipped = _NOTHING_SKIPPED
    children: list[_Node] = []
    for key, value in node.items():
        if key in skipped:
            continue
        kind = _POD_SPEC_KEYS.get(key) if pod_spec else None
        if kind is None and not _is_container(value):
            continue
        child = (path, key)
        if kind is not None:
            if value is None:
                continue
            if not _is_list(value):
                raise WorkloadError(f"{_render(child)} must be a list, got {_type_name(value)}")
            _check_depth(child, depth + 2)
            for index, item in enumerate(value):
                item_path = (child, index)
                if not _is_mapping(item):
                    raise WorkloadError(
                        f"{_render(item_path)} must be a mapping, got {_type_name(item)}"
                    )
                children.append((item, item_path, depth + 2, kind))
        elif key == _VOLUMES and _is_list(value):
            _check_depth(child, depth + 2)
            for index, item in enumerate(value):
                source = _is_mapping(item) and _is_mapping(item.get("image"))
                tag: ContainerKind | None = "imageVolume" if source else None
                if tag is not None or _is_container(item):
                    children.append((item, (child, index), depth + 2, tag))
        else:
            _check_depth(child, depth + 1)
            children.append((value, child, depth + 1, None))
    return children


def _list_children(node: Sequence[Any], path: _Path, depth: int) -> list[_Node]:
    """The containers (mappings and lists) directly under list ``node``, in order."""
    children: list[_Node] = []
    for index, value in enumerate(node):
        if _is_container(value):
            child = (path, index)
            _check_depth(child, depth + 1)
            children.append((value, child, depth + 1, None))
    return children


def _image_of(node: Mapping[Any, Any], where: _Path, kind: ContainerKind) -> ContainerImage | None:
    """The image of one container or volume, or None when it names none.

    A container without ``image`` is a template default; a volume without an
    ``image`` source is another kind of volume; an image source without a
    ``reference`` leaves it to config management, as a container may.
    """
    holder: Any = node
    field = "image"
    if kind == "imageVolume":
        holder, field = node.get("image"), "image.reference"
        if holder is None:
            return None
        if not _is_mapping(holder):
            raise WorkloadError(
                f"{_render(where)}.image must be a mapping, got {_type_name(holder)}"
            )
    key = field.rpartition(".")[2]
    if key not in holder:
        return None
    image = holder[key]
    if not isinstance(image, str):
        raise WorkloadError(f"{_render(where)}.{field} must be a string, got {_type_name(image)}")
    if not image:
        raise WorkloadError(f"{_render(where)}.{field} must not be empty")
    name = node.get("name")
    if name is None:
        name = ""
    elif not isinstance(name, str):
        raise WorkloadError(f"{_render(where)}.name must be a string, got {_type_name(name)}")
    return ContainerImage(image=image, container=name, kind=kind, where=where)


def _check_depth(path: _Path, depth: int) -> None:
    if depth > MAX_DEPTH:
        raise WorkloadError(f"{_render(path)} is nested more than {MAX_DEPTH} levels deep")


def _steps(path: _Path) -> list[Any]:
    """The keys and indexes of ``path``, from the object down."""
    parts: list[Any] = []
    while path is not None:
        path, step = path
        parts.append(step)
    parts.reverse()
    return parts


def _render(path: _Path) -> str:
    """``a.b[0].c``; keys that would read ambiguously are quoted: ``a["b.c"]``."""
    text = ""
    for step in _steps(path):
        if type(step) is int:
            text += f"[{step}]"
        elif isinstance(step, str) and _PLAIN_KEY.fullmatch(step):
            text = f"{text}.{step}" if text else step
        else:
            text += f"[{json.dumps(str(step))}]"
    return text


def _is_container(value: object) -> bool:
    """Whether ``value`` is a mapping or a list, i.e. could hold a pod spec."""
    kind = type(value)
    if kind is dict or kind is list:
        return True
    if kind in _SCALARS:
        return False
    return _is_mapping(value) or _is_list(value)


def _is_mapping(value: object) -> bool:
    kind = type(value)
    if kind is dict:
        return True
    if kind is list or kind in _SCALARS:
        return False
    return isinstance(value, Mapping)


def _is_list(value: object) -> bool:
    """A JSON array: any sequence but text (a string is a sequence of strings)."""
    kind = type(value)
    if kind is list:
        return True
    if kind is dict or kind in _SCALARS:
        return False
    return isinstance(value, Sequence) and not isinstance(value, str | bytes | bytearray)


def _type_name(value: object) -> str:
    return "null" if value is None else type(value).__name__
