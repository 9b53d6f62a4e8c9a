"""What the stand-in API server of tests/support/apistore.py answers to each request.

Separate from the server so that each stays short: discovery and the OpenAPI index, what
one GET, list, POST, PATCH (server-side apply, merge patch) or DELETE does to the store,
and how kube-apiserver words each refusal. A Job is stored as finished with success, as
the Job controller would leave one whose pod passed (Helm waits for its hooks' Jobs).
"""

from __future__ import annotations

import copy
from typing import Any

from tests.support.apistore import (
    ADMIN,
    KIND_TABLE,
    KINDS,
    Call,
    Store,
    group_version,
    status,
    validate,
)


def answer(store: Store, call: Call) -> tuple[int, dict[str, Any]]:
    """The answer to one request: 401, discovery, or what ``handle`` does to the store."""
    if call.user is None:
        return 401, status(401, "Unauthorized", "Unauthorized")
    if call.method == "GET" and (found := _discovery(call.path)) is not None:
        return 200, found
    with store.lock:
        return handle(store, call)


def merge_patch(target: Any, patch: Any) -> Any:
    """RFC 7386."""
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    out = dict(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            out.pop(key, None)
        else:
            out[key] = merge_patch(out.get(key), value)
    return out


def _paths(obj: Any, prefix: tuple[str, ...] = ()) -> set[tuple[str, ...]]:
    """The leaf fields of ``obj``; a list is one leaf."""
    if isinstance(obj, dict) and obj:
        return set().union(*(_paths(v, (*prefix, k)) for k, v in obj.items()))
    return {prefix} if prefix else set()


def _drop(obj: dict[str, Any], path: tuple[str, ...]) -> None:
    for key in path[:-1]:
        obj = obj.get(key)  # type: ignore[assignment]
        if not isinstance(obj, dict):
            return
    obj.pop(path[-1], None)


def server_side_apply(
    live: dict[str, Any] | None, before: Any, applied: dict[str, Any]
) -> dict[str, Any]:
    """``live`` after a manager that last applied ``before`` applies ``applied``."""
    result = copy.deepcopy(live or {})
    for path in _paths(before or {}) - _paths(applied):
        if path[:1] != ("metadata",) or path[1:2] in (("labels",), ("annotations",)):
            _drop(result, path)
    return _merge_apply(result, applied)


def _merge_apply(live: Any, applied: Any) -> Any:
    if not isinstance(applied, dict) or not isinstance(live, dict):
        return copy.deepcopy(applied)
    return {**live, **{k: _merge_apply(live.get(k), v) for k, v in applied.items()}}


def route(path: str) -> tuple[str, str, str, str] | None:
    """(group, plural, namespace, name) of a resource path; name may be ''."""
    parts = path.strip("/").split("/")
    if parts[0] == "api" and len(parts) >= 3:
        group, rest = "", parts[2:]
    elif parts[0] == "apis" and len(parts) >= 4:
        group, rest = parts[1], parts[3:]
    else:
        return None
    namespace = ""
    if rest[0] == "namespaces" and len(rest) >= 3:
        namespace, rest = rest[1], rest[2:]
    if (group, rest[0]) not in KINDS or len(rest) > 2:
        return None
    return group, rest[0], namespace, rest[1] if len(rest) == 2 else ""


def _discovery(path: str) -> dict[str, Any] | None:
    groups = sorted({g for g, *_ in KIND_TABLE if g})
    if path == "/version":
        return {"major": "1", "minor": "33", "gitVersion": "v1.33.0", "platform": "linux/amd64"}
    if path == "/api":
        return {"kind": "APIVersions", "versions": ["v1"]}
    if path == "/apis":
        entries = [
            {"groupVersion": group_version(g), "version": group_version(g).split("/")[1]}
            for g in groups
        ]
        return {
            "kind": "APIGroupList",
            "apiVersion": "v1",
            "groups": [
                {"name": g, "versions": [e], "preferredVersion": e}
                for g, e in zip(groups, entries, strict=True)
            ],
        }
    if path == "/openapi/v3":
        documents = {gv: f"/openapi/v3/{gv}?hash=1" for gv in map(_api_root, ["", *groups])}
        return {"paths": {gv: {"serverRelativeURL": url} for gv, url in documents.items()}}
    for group in ["", *groups]:
        if path == "/" + _api_root(group):
            resources = [
                {"name": p, "singularName": k.lower(), "namespaced": n, "kind": k,
                 "verbs": ["create", "delete", "get", "list", "patch", "update"]}
                for (g, p), (k, n) in KINDS.items() if g == group
            ]  # fmt: skip
            return {"kind": "APIResourceList", "groupVersion": group_version(group),
                    "resources": resources}  # fmt: skip
        if path == "/openapi/v3/" + _api_root(group):
            return {"openapi": "3.0.0", "info": {"title": "Kubernetes", "version": "v1.33.0"},
                    "paths": _openapi_paths(group), "components": {"schemas": {}}}  # fmt: skip
    return None


def _api_root(group: str) -> str:
    return f"apis/{group_version(group)}" if group else "api/v1"


def _openapi_paths(group: str) -> dict[str, Any]:
    """A PATCH operation per kind that takes ``fieldValidation``: what Helm looks for."""
    version = group_version(group).split("/")[-1]
    paths = {}
    for (g, plural), (kind, namespaced) in KINDS.items():
        if g != group:
            continue
        scope = "/namespaces/{namespace}" if namespaced else ""
        gvk = {"group": group, "version": version, "kind": kind}
        param = {"name": "fieldValidation", "in": "query", "schema": {"type": "string"}}
        patch = {"x-kubernetes-group-version-kind": gvk, "parameters": [param], "responses": {}}
        paths[f"/{_api_root(group)}{scope}/{plural}/{{name}}"] = {"patch": patch}
    return paths


_VERBS = {"POST": "create", "PUT": "update", "PATCH": "patch", "DELETE": "delete"}
_APPLY = "application/apply-patch+yaml"
_MERGE = "application/merge-patch+json"


def handle(store: Store, call: Call) -> tuple[int, dict[str, Any]]:
    """The answer to one object request (already authenticated)."""
    found = route(call.path)
    if found is None:
        return 404, status(404, "NotFound", "the server could not find the requested resource")
    group, plural, namespace, name = found
    if call.method in ("POST",) and isinstance(call.body, dict):
        name = (call.body.get("metadata") or {}).get("name", "")
    verb = ("get" if name else "list") if call.method == "GET" else _VERBS[call.method]
    if not store.allowed(call.user or "", verb, group, plural, name, namespace):
        return 403, _forbidden(store, call.user or "", verb, group, plural, namespace, name)
    if call.method != "GET" and store.on_write is not None:
        store.on_write(call)
    key = (group, plural, namespace, name)
    live = store.objects.get(key)
    if call.method == "GET":
        if name:
            return (200, live) if live else _not_found(group, plural, name)
        unsupported = unsupported_fields(plural, call.query)
        if unsupported:
            return 400, status(400, "BadRequest", unsupported)
        return 200, _list(store, group, plural, namespace, call.query)
    if call.method == "DELETE":
        if live is None:
            return _not_found(group, plural, name)
        del store.objects[key]
        store.version += 1
        live["metadata"]["resourceVersion"] = str(store.version)
        store.record("DELETED", key, live)
        store.applied = {k: v for k, v in store.applied.items() if k[0] != key}
        return 200, {"kind": "Status", "apiVersion": "v1", "status": "Success",
                     "details": {"name": name, "group": group, "kind": plural}}  # fmt: skip
    if call.method == "POST":
        if live is not None:
            message = f'{_resource(group, plural)} "{name}" already exists'
            return 409, status(409, "AlreadyExists", message, name=name, kind=plural)
        return _store(store, call, key, None, copy.deepcopy(call.body), "Update", 201)
    if call.method == "PATCH":
        return _patch(store, call, key, live)
    return 405, status(405, "MethodNotAllowed", f"{call.method} is not supported here")


def _patch(
    store: Store, call: Call, key: tuple[str, str, str, str], live: dict[str, Any] | None
) -> tuple[int, dict[str, Any]]:
    group, plural, namespace, name = key
    manager = call.query.get("fieldManager", "")
    if call.content_type == _APPLY:
        if not manager:
            message = "PatchOptions.meta.k8s.io is invalid: fieldManager: Required value"
            return 422, status(422, "Invalid", message)
        if live is None and not store.allowed(
            call.user or "", "create", group, plural, name, namespace
        ):
            return 403, _forbidden(store, call.user or "", "create", group, plural, namespace, name)
        before = store.applied.get((key, manager))
        merged = server_side_apply(live, before, call.body)
        answer = _store(store, call, key, live, merged, "Apply", 201 if live is None else 200)
        if answer[0] < 300:
            store.applied[(key, manager)] = copy.deepcopy(call.body)
        return answer
    if call.content_type != _MERGE:
        return 415, status(415, "UnsupportedMediaType", f"{call.content_type} is not supported")
    if live is None:
        return _not_found(group, plural, name)
    wanted = ((call.body or {}).get("metadata") or {}).get("resourceVersion")
    if wanted is not None and wanted != live["metadata"]["resourceVersion"]:
        message = (
            f'Operation cannot be fulfilled on {_resource(group, plural)} "{name}": the object '
            "has been modified; please apply your changes to the latest version and try again"
        )
        return 409, status(409, "Conflict", message, name=name, group=group, kind=plural)
    merged = merge_patch(live, call.body)
    return _store(store, call, key, live, merged, "Update", 200, manager or "unknown")


def _store(
    store: Store,
    call: Call,
    key: tuple[str, str, str, str],
    live: dict[str, Any] | None,
    obj: Any,
    operation: str,
    code: int,
    manager: str | None = None,
) -> tuple[int, dict[str, Any]]:
    group, plural, namespace, name = key
    kind, namespaced = KINDS[(group, plural)]
    if not isinstance(obj, dict):
        return 400, status(400, "BadRequest", "the body is not an object")
    obj["apiVersion"], obj["kind"] = group_version(group), kind
    metadata = obj.setdefault("metadata", {})
    if metadata.get("name", name) != name:
        message = f"the name of the object ({metadata.get('name')}) does not match the URL"
        return 400, status(400, "BadRequest", message)
    metadata["name"] = name
    if namespaced:
        metadata["namespace"] = namespace
    if kind == "Job" and live is None:
        obj["status"] = _succeeded(obj)
    manager = manager or call.query.get("fieldManager") or "unknown"
    store.stamp(obj, live, manager, operation, call.body)
    problems = validate(obj)
    if problems:
        message = f'{kind}.{group or "core"} "{name}" is invalid: {"; ".join(problems)}'
        return 422, status(422, "Invalid", message, name=name, group=group, kind=kind)
    store.objects[key] = obj
    store.record("MODIFIED" if live else "ADDED", key, obj)
    return code, obj


#: The field selectors kube-apiserver takes beyond metadata.name and metadata.namespace.
_FIELDS = {"secrets": ("type",)}


def unsupported_fields(plural: str, query: dict[str, str]) -> str | None:
    """kube-apiserver's refusal of a field selector it does not index, or None."""
    for part in query.get("fieldSelector", "").split(","):
        label = part.split("=", 1)[0].removesuffix("!")
        if part and label not in ("metadata.name", "metadata.namespace", *_FIELDS.get(plural, ())):
            return f'"{label}" is not a known field selector: only "metadata.name", ...'
    return None


def selects(obj: dict[str, Any], query: dict[str, str]) -> bool:
    """Whether ``obj`` matches the label and field selectors of ``query`` (``=`` and ``!=``)."""
    labels = dict(p.split("=", 1) for p in query.get("labelSelector", "").split(",") if p)
    if not labels.items() <= (obj["metadata"].get("labels") or {}).items():
        return False
    for part in query.get("fieldSelector", "").split(","):
        if not part:
            continue
        label, value = part.split("=", 1)
        negated = label.endswith("!")
        label = label.removesuffix("!")
        found = obj["metadata"] if label.startswith("metadata.") else obj
        if (found.get(label.removeprefix("metadata.")) == value) == negated:
            return False
    return True


def _selected(
    store: Store, group: str, plural: str, namespace: str, query: dict[str, str]
) -> list[dict[str, Any]]:
    """The objects a list or watch names, by namespace, label and field selectors."""
    return [
        obj
        for (g, p, ns, _), obj in sorted(store.objects.items())
        if (g, p) == (group, plural) and namespace in ("", ns) and selects(obj, query)
    ]


def watch_events(store: Store, call: Call) -> list[dict[str, Any]]:
    """The events a watch starts with: with ``sendInitialEvents``, each object as ADDED and
    the bookmark that ends them (client-go's streaming list); otherwise none."""
    found = route(call.path)
    if found is None or call.query.get("sendInitialEvents") != "true":
        return []
    group, plural, namespace, _ = found
    kind = KINDS[(group, plural)][0]
    events = [
        {"type": "ADDED", "object": obj}
        for obj in _selected(store, group, plural, namespace, call.query)
    ]
    end = {"resourceVersion": str(store.version),
           "annotations": {"k8s.io/initial-events-end": "true"}}  # fmt: skip
    bookmark = {"kind": kind, "apiVersion": group_version(group), "metadata": end}
    return [*events, {"type": "BOOKMARK", "object": bookmark}]


def _list(
    store: Store, group: str, plural: str, namespace: str, query: dict[str, str]
) -> dict[str, Any]:
    items = [
        {k: v for k, v in obj.items() if k not in ("apiVersion", "kind")}
        for obj in _selected(store, group, plural, namespace, query)
    ]
    kind = KINDS[(group, plural)][0]
    # Pages by ``limit``; ``continue`` carries the offset (a real one is opaque, and pins
    # the snapshot: good enough for lists that do not change while read).
    start = int(query.get("continue") or 0)
    limit = int(query.get("limit") or 0) or len(items) or 1
    metadata: dict[str, Any] = {"resourceVersion": str(store.version)}
    if start + limit < len(items):
        metadata["continue"] = str(start + limit)
        metadata["remainingItemCount"] = len(items) - start - limit
    return {"kind": f"{kind}List", "apiVersion": group_version(group),
            "metadata": metadata, "items": items[start : start + limit]}  # fmt: skip


def _succeeded(job: dict[str, Any]) -> dict[str, Any]:
    """The status of a Job whose one pod ran to success."""
    now = "2026-01-01T00:00:00Z"
    conditions = [
        {"type": kind, "status": "True", "lastProbeTime": now, "lastTransitionTime": now}
        for kind in ("SuccessCriteriaMet", "Complete")
    ]
    return {"conditions": conditions, "startTime": now, "completionTime": now, "succeeded": 1,
            "ready": 0, "terminating": 0, "uncountedTerminatedPods": {}}  # fmt: skip


def _resource(group: str, plural: str) -> str:
    return f"{plural}.{group}" if group else plural


def _not_found(group: str, plural: str, name: str) -> tuple[int, dict[str, Any]]:
    message = f'{_resource(group, plural)} "{name}" not found'
    return 404, status(404, "NotFound", message, name=name, group=group, kind=plural)


def _forbidden(
    store: Store, user: str, verb: str, group: str, plural: str, namespace: str, name: str
) -> dict[str, Any]:
    who = user
    if user != ADMIN:
        account_namespace, account = store.service_accounts[user]
        who = f"system:serviceaccount:{account_namespace}:{account}"
    scope = f'in the namespace "{namespace}"' if namespace else "at the cluster scope"
    what = f'{_resource(group, plural)} "{name}"' if name else _resource(group, plural)
    message = (
        f'{what} is forbidden: User "{who}" cannot {verb} resource "{plural}" '
        f'in API group "{group}" {scope}'
    )
    return status(403, "Forbidden", message, name=name, group=group, kind=plural)
