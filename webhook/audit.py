"""The dry-run audit: judge manifests as the webhook would, without a cluster.

Each object becomes the AdmissionRequest the API server would send for its
creation, and goes through the same ``decide`` as ``POST /validate``; a
repository audited in Git and a cluster reviewed live therefore agree.
"""

from __future__ import annotations

import sys
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import yaml

from webhook.admission import AdmissionRequest, Decision, decide
from webhook.engine import Engine
from webhook.errors import ManifestError

DecisionLabel = Literal["allowed", "warned", "denied"]
_SUFFIXES = frozenset({".yaml", ".yml", ".json"})
#: trustgate's own documents live beside manifests in Git; they are not workloads.
_OWN_KINDS = frozenset({"ImagePolicy", "ImagePolicyTest"})
_Loader: type[yaml.SafeLoader] = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


@dataclass(frozen=True, slots=True)
class Manifest:
    """One Kubernetes object read from a file (``-`` for standard input)."""

    source: str
    document: int
    object: Mapping[str, Any]


@dataclass(frozen=True, slots=True)
class Row:
    """One image of one workload, judged.

    ``reasons`` are the denials and warnings; ``notes`` say how the image passed
    the checks that report it (which authorities signed); ``digest`` is what the
    reference resolved to, when a check needed it.
    """

    source: str
    kind: str
    namespace: str
    name: str
    image: str
    decision: DecisionLabel
    reasons: tuple[str, ...] = ()
    digest: str | None = None
    notes: tuple[str, ...] = ()

    @property
    def resource(self) -> str:
        """``Kind/name``, as kubectl prints it."""
        return f"{self.kind}/{self.name}"


def _files(path: Path) -> Iterator[Path]:
    if path.is_dir():
        for child in sorted(path.rglob("*")):
            hidden = any(part.startswith(".") for part in child.relative_to(path).parts)
            if child.is_file() and child.suffix in _SUFFIXES and not hidden:
                yield child
    elif path.exists():
        yield path
    else:
        raise ManifestError(f"{path}: no such file or directory")


def _objects(value: Any) -> Iterator[Mapping[str, Any]]:
    """The objects of one document, unpacking ``List`` kinds (kubectl get -o yaml)."""
    if not isinstance(value, dict):
        return
    if str(value.get("kind", "")).endswith("List") and isinstance(value.get("items"), list):
        for item in value["items"]:
            yield from _objects(item)
    elif value.get("kind") not in _OWN_KINDS and "kind" in value:
        yield value


def _parse(text: str, source: str) -> Iterator[Manifest]:
    try:
        documents = list(yaml.load_all(text, Loader=_Loader))
    except yaml.YAMLError as exc:
        raise ManifestError(f"{source}: not valid YAML or JSON: {exc}") from exc
    for index, document in enumerate(documents, start=1):
        for obj in _objects(document):
            yield Manifest(source, index, obj)


def read_manifests(paths: Iterable[str]) -> Iterator[Manifest]:
    """Every Kubernetes object in ``paths`` (files, directories, ``-``).

    Raises:
        ManifestError: a path is missing, unreadable, or not YAML/JSON.
    """
    for name in paths:
        if name == "-":
            yield from _parse(sys.stdin.read(), "-")
            continue
        for file in _files(Path(name)):
            try:
                text = file.read_text(encoding="utf-8")
            except (OSError, UnicodeDecodeError) as exc:
                raise ManifestError(f"{file}: cannot read: {exc}") from exc
            yield from _parse(text, str(file))


def request_for(obj: Mapping[str, Any], *, namespace: str, uid: str) -> AdmissionRequest:
    """The CREATE request the API server would send for ``obj``."""
    metadata = obj.get("metadata") if isinstance(obj.get("metadata"), dict) else {}
    assert isinstance(metadata, dict)
    return AdmissionRequest(
        uid=uid,
        kind=str(obj.get("kind", "")),
        operation="CREATE",
        namespace=str(metadata.get("namespace") or namespace),
        name=str(metadata.get("name") or metadata.get("generateName") or ""),
        object=obj,
    )


def rows_for(source: str, request: AdmissionRequest, decision: Decision) -> list[Row]:
    """The report rows of one judged object: one per distinct image."""
    base = (source, request.kind, request.namespace, request.name)
    if not decision.verdicts:
        if decision.allowed:
            return []
        return [Row(*base, image="-", decision="denied", reasons=(decision.message,))]
    rows = []
    for verdict in decision.verdicts:
        label: DecisionLabel = "allowed"
        if verdict.denials:
            label = "denied"
        elif verdict.warnings:
            label = "warned"
        reasons = verdict.denials + verdict.warnings
        rows.append(Row(*base, verdict.image, label, reasons, verdict.digest, verdict.notes))
    return rows


def audit(engine: Engine, manifests: Iterable[Manifest], *, namespace: str) -> list[Row]:
    """Judge every manifest; objects without images produce no rows."""
    rows: list[Row] = []
    for number, manifest in enumerate(manifests, start=1):
        request = request_for(manifest.object, namespace=namespace, uid=f"audit-{number}")
        rows.extend(rows_for(manifest.source, request, decide(engine, request)))
    return rows


def pod_for_images(images: Iterable[str], *, namespace: str) -> dict[str, Any]:
    """A Pod running ``images``, for ``trustgate check``."""
    containers = [{"name": f"c{i}", "image": image} for i, image in enumerate(images)]
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "trustgate-check", "namespace": namespace},
        "spec": {"containers": containers},
    }
