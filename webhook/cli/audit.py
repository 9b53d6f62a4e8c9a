"""The dry-run audit: judge manifests as the webhook would, without a cluster.

Each object becomes the AdmissionRequest the API server would send for its
creation, and goes through the same ``decide`` as ``POST /validate``; a
repository audited in Git and a cluster reviewed live therefore agree.

An image that runs only thanks to an ImagePolicyException or a break-glass
annotation is a ``waived`` row naming what waived it. The audit has no
userInfo: break-glass counts wherever a policy allows it at all, so that
``audit --cluster`` lists the break-glass workloads still running.

A document that cannot be read (not YAML, not an object, a ``kind`` that is not
a string) becomes an ``error`` row naming the file and the document, and the
audit goes on with the next one. An AdmissionReview (a request saved from the
API server, or docs/examples/) is judged as ``trustgate review`` judges it:
its request's object, namespace and operation.

A kustomization or a Helm chart is judged as rendered (``webhook.cli.tree``
decides what is one, ``webhook.cli.render`` runs the tool); a tree that cannot be
rendered is an ``error`` row quoting the tool.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, Literal

import yaml

from webhook.admission.review import AdmissionRequest, Decision, decide, parse_review
from webhook.admission.waivers import shown_reason
from webhook.cli.render import RenderError, Renderers, find_renderers, render
from webhook.cli.tree import Source
from webhook.core.errors import AdmissionReviewError
from webhook.core.yamltags import check_timestamps
from webhook.engine import Engine, PolicyResult
from webhook.policy.model import NoMatch

DecisionLabel = Literal["allowed", "warned", "waived", "denied", "error"]
#: trustgate's own documents live beside manifests in Git; they are not workloads.
_OWN_KINDS = frozenset({"ImagePolicy", "ImagePolicyTest", "ImagePolicyException"})


class _Loader(getattr(yaml, "CSafeLoader", yaml.SafeLoader)):  # type: ignore[misc]
    """The safe loader (libyaml's when built), refusing a ``!!timestamp`` that is not one."""


check_timestamps(_Loader)


@dataclass(frozen=True, slots=True)
class Manifest:
    """One Kubernetes object read from a file (``-`` for standard input).

    ``error`` says why document ``document`` of ``source`` could not be read
    as an object; ``object`` is then empty. ``request`` is the request of an
    AdmissionReview document, judged as it stands.
    """

    source: str
    document: int
    object: Mapping[str, Any]
    error: str = ""
    request: AdmissionRequest | None = None


@dataclass(frozen=True, slots=True)
class Row:
    """One image of one workload, judged.

    ``reasons`` are the denials and warnings; ``notes`` say how the image passed
    the checks that report it (which authorities signed); ``digest`` is what the
    reference resolved to, when a check needed it. ``containers`` and
    ``volumes`` name what uses the image: containers of any kind, and image
    volumes. ``waivers`` say what admitted an image an enforce policy denies
    (``exception "name" (expires DAY)``, ``break-glass: "reason"``); the row is
    then ``waived``. An ``error`` row stands for a document that could not be read.
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
    containers: tuple[str, ...] = ()
    volumes: tuple[str, ...] = ()
    waivers: tuple[str, ...] = ()
    #: Each matching policy's outcome for the image (policy reports list them one by one).
    policies: tuple[PolicyResult, ...] = ()
    #: How an image no policy matched was treated (``defaults.noMatch``).
    no_match: NoMatch | None = None

    @property
    def resource(self) -> str:
        """``Kind/name``, as kubectl prints it."""
        return f"{self.kind}/{self.name}"


_TYPE_NAMES: dict[type, str] = {dict: "a mapping", list: "a list", str: "a string"}


def _type(value: object) -> str:
    return _TYPE_NAMES.get(type(value), "a scalar")


def _objects(value: Any, source: str, index: int) -> Iterator[Manifest]:
    """The objects of one document, unpacking ``List`` kinds (kubectl get -o yaml)."""
    if value is None:
        return
    if not isinstance(value, dict):
        yield _error(source, index, f"not a Kubernetes object: {_type(value)}")
        return
    kind = value.get("kind")
    if kind is None:
        return  # a values file, a kustomization patch: not a workload
    if not isinstance(kind, str):
        yield _error(source, index, f"kind must be a string, got {_type(kind)}")
    elif kind == "AdmissionReview":
        try:
            request = parse_review(value)
        except AdmissionReviewError as exc:
            yield _error(source, index, f"an AdmissionReview that cannot be judged: {exc}")
            return
        yield Manifest(source, index, request.object or {}, request=request)
    elif kind.endswith("List") and isinstance(value.get("items"), list):
        for item in value["items"]:
            yield from _objects(item, source, index)
    elif kind not in _OWN_KINDS:
        yield Manifest(source, index, value)


def _error(source: str, index: int, message: str) -> Manifest:
    return Manifest(source, index, {}, error=f"{source}: document {index}: {message}")


def parse_manifests(text: str, source: str) -> Iterator[Manifest]:
    """The objects of the YAML or JSON documents of ``text``, read from ``source``."""
    index = 0
    documents = yaml.load_all(text, Loader=_Loader)
    while True:
        index += 1
        try:
            document = next(documents)
        except StopIteration:
            return
        except yaml.YAMLError as exc:
            yield _error(source, index, f"not valid YAML or JSON: {exc}")
            return
        except RecursionError:
            yield _error(source, index, "nested too deeply to read")
            return
        except ValueError as exc:  # a timestamp datetime refuses, such as 2026-02-30
            yield _error(source, index, f"not valid YAML: {exc}")
            return
        yield from _objects(document, source, index)


def read_manifests(
    sources: Iterable[Source],
    renderers: Renderers | None = None,
    *,
    values: Sequence[Path] = (),
    namespace: str = "default",
) -> Iterator[Manifest]:
    """Every Kubernetes object of ``sources`` (see ``webhook.cli.tree.plan``).

    Kustomizations and charts are rendered by ``renderers`` (default: those on
    PATH), charts as release namespace ``namespace`` with the ``values`` files.
    A file that cannot be read or parsed, a tree that cannot be rendered, and a
    document that is not an object, yield a Manifest carrying the error.
    """
    for source in sources:
        if source.kind == "stdin":
            yield from parse_manifests(sys.stdin.read(), "-")
        elif source.kind == "file":
            try:
                text = source.path.read_text(encoding="utf-8")
            except (OSError, UnicodeDecodeError) as exc:
                yield Manifest(source.name, 0, {}, error=f"{source.path}: cannot read: {exc}")
                continue
            yield from parse_manifests(text, source.name)
        else:
            renderers = renderers or find_renderers(os.environ)
            try:
                text = render(source, renderers, values=values, namespace=namespace)
            except RenderError as exc:
                yield Manifest(source.name, 0, {}, error=str(exc))
                continue
            yield from parse_manifests(text, source.name)


def assumes_namespace(manifest: Manifest) -> bool:
    """Whether ``manifest`` is an object that names no namespace, judged in the assumed one."""
    if manifest.error or manifest.request is not None:
        return False
    metadata = manifest.object.get("metadata")
    named = isinstance(metadata, Mapping) and metadata.get("namespace")
    return not (isinstance(named, str) and named)


def request_for(obj: Mapping[str, Any], *, namespace: str, uid: str) -> AdmissionRequest:
    """The CREATE request the API server would send for ``obj``.

    Fields of the wrong type are left out here; ``decide`` refuses the object.
    """
    raw = obj.get("metadata")
    metadata: Mapping[str, Any] = raw if isinstance(raw, Mapping) else {}

    def text(value: Any) -> str:
        return value if isinstance(value, str) else ""

    return AdmissionRequest(
        uid=uid,
        kind=text(obj.get("kind")),
        operation="CREATE",
        namespace=text(metadata.get("namespace")) or namespace,
        name=text(metadata.get("name")) or text(metadata.get("generateName")),
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
        waivers = _waivers(verdict.image, decision)
        label: DecisionLabel = "allowed"
        if verdict.denials:
            label = "denied"
        elif waivers:
            label = "waived"
        elif verdict.warnings:
            label = "warned"
        reasons = verdict.denials + verdict.warnings
        used_by = (
            decision.containers.get(verdict.image, ()),
            decision.volumes.get(verdict.image, ()),
        )
        rows.append(
            Row(
                *base,
                verdict.image,
                label,
                reasons,
                verdict.digest,
                verdict.notes + ((f"login: {verdict.login}",) if verdict.login else ()),
                *used_by,
                waivers=waivers,
                policies=verdict.policies,
                no_match=verdict.no_match,
            )
        )
    return rows


def _waivers(image: str, decision: Decision) -> tuple[str, ...]:
    """What admitted ``image`` although an enforce policy denies it, one entry each."""
    named: dict[str, None] = {}
    for waiver in decision.waivers:
        if waiver.image != image:
            continue
        if waiver.exception:
            named[f'exception "{waiver.exception}" (expires {waiver.expires})'] = None
        else:
            named[f'break-glass: "{shown_reason(decision.break_glass or "")}"'] = None
    return tuple(named)


def audit(
    engine: Engine,
    manifests: Iterable[Manifest],
    *,
    namespace: str,
    now: datetime | None = None,
) -> list[Row]:
    """Judge every manifest; objects without images produce no rows.

    A manifest that could not be read produces one ``error`` row. Exceptions
    expire against ``now`` (default: the clock).
    """
    rows: list[Row] = []
    for number, manifest in enumerate(manifests, start=1):
        if manifest.error:
            rows.append(Row(manifest.source, "-", "", "-", "-", "error", (manifest.error,)))
            continue
        request = manifest.request or request_for(
            manifest.object, namespace=namespace, uid=f"audit-{number}"
        )
        # A saved AdmissionReview names its user; a manifest has none.
        decision = decide(engine, request, now=now, user_known=manifest.request is not None)
        rows.extend(rows_for(manifest.source, request, decision))
    return rows


def pod_for_images(
    images: Iterable[str],
    *,
    namespace: str,
    volumes: Iterable[str] = (),
    service_account: str | None = None,
    pull_secrets: Iterable[str] = (),
) -> dict[str, Any]:
    """A Pod running ``images`` and mounting image volumes ``volumes``, for ``trustgate check``.

    ``service_account`` and ``pull_secrets`` are what it pulls with, as a
    Pod's ``serviceAccountName`` and ``imagePullSecrets``.
    """
    containers = [{"name": f"c{i}", "image": image} for i, image in enumerate(images)]
    spec: dict[str, Any] = {"containers": containers}
    if service_account is not None:
        spec["serviceAccountName"] = service_account
    secrets = [{"name": name} for name in pull_secrets]
    if secrets:
        spec["imagePullSecrets"] = secrets
    mounted = [{"name": f"v{i}", "image": {"reference": ref}} for i, ref in enumerate(volumes)]
    if mounted:
        spec["volumes"] = mounted
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "trustgate-check", "namespace": namespace},
        "spec": spec,
    }
