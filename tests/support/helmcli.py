"""``helm install`` and ``helm upgrade`` command lines, rendered by a real Helm without a cluster.

A document's ``helm`` line is taken apart as Helm's command line would take it
(release, chart, ``--namespace``, ``--set``, ``--set-string``, ``--set-file``,
``--values``, ``--reuse-values``) and rendered through the ``helm-python-sdk``
wheel the chart tests use: what ``helm template`` with the same values prints.
``--reuse-values`` starts from the values of the previous release, as Helm
does; without it an upgrade starts from the chart's defaults.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import helm_python as helm
import yaml

_WITH_VALUE: dict[str, Callable[[str], dict[str, Any]]] = {
    "--set": helm.parse_set_string,
    "--set-string": helm.parse_set_string_values,
    "--set-file": helm.parse_set_file,
}
_FLAGS = frozenset({"--create-namespace", "--install", "--reuse-values", "--wait", "--atomic"})


@dataclass(frozen=True, slots=True)
class Release:
    """What one ``helm install`` or ``upgrade`` line asked for, and the objects rendered."""

    name: str
    namespace: str
    values: dict[str, Any]
    objects: list[dict[str, Any]]
    #: The line used --reuse-values without a previous release to reuse: values unknown.
    partial: bool = False

    def find(self, kind: str, name: str) -> dict[str, Any] | None:
        """The rendered object of ``kind`` named ``name``, if any."""
        for obj in self.objects:
            if obj["kind"] == kind and obj["metadata"]["name"] == name:
                return obj
        return None


def _merge(into: dict[str, Any], more: Mapping[str, Any]) -> None:
    for key, value in more.items():
        if isinstance(value, Mapping) and isinstance(into.get(key), dict):
            _merge(into[key], value)
        else:
            into[key] = copy.deepcopy(value)


def helm_release(argv: list[str], cwd: Path, previous: Release | None) -> Release:
    """Render ``argv`` (``helm install ...`` or ``helm upgrade ...``) as Helm would install it.

    Files (``--set-file``, ``--values``, the chart) are relative to ``cwd``.
    """
    assert argv[:2] in (["helm", "install"], ["helm", "upgrade"]), argv
    words = iter(argv[2:])
    positional: list[str] = []
    namespace = "default"
    flags: set[str] = set()
    values: dict[str, Any] = {}
    layers: list[dict[str, Any]] = []
    for word in words:
        flag, _, inline = word.partition("=")
        if flag in ("--namespace", "-n"):
            namespace = inline or next(words)
        elif flag in _WITH_VALUE:
            expression = inline or next(words)
            if flag == "--set-file":
                key, _, path = expression.partition("=")
                expression = f"{key}={cwd / path}"
            layers.append(_WITH_VALUE[flag](expression))
        elif flag in ("-f", "--values"):
            layers.append(yaml.safe_load((cwd / (inline or next(words))).read_text()))
        elif word in _FLAGS:
            flags.add(word)
        else:
            assert not word.startswith("-"), f"a helm flag this test does not know: {word}"
            positional.append(word)
    name, chart = positional
    reuse = "--reuse-values" in flags
    if reuse and previous is not None:
        values = copy.deepcopy(previous.values)
    for layer in layers:
        _merge(values, layer)
    installing = argv[1] == "install" or ("--install" in flags and previous is None)
    manifests = helm.Chart.load(cwd / chart).render(
        values, name=name, namespace=namespace, is_install=installing, is_upgrade=not installing
    )
    objects = []
    for path, text in sorted(manifests.items()):
        if not path.endswith("NOTES.txt"):
            objects.extend(doc for doc in yaml.safe_load_all(text) if doc)
    for obj in objects:
        obj["metadata"].setdefault("namespace", namespace)
    return Release(name, namespace, values, objects, partial=reuse and previous is None)
