"""What ``trustgate audit`` reads in a tree: plain manifests, kustomizations and Helm charts.

Separate from the reading itself because it decides *what* is judged, which is
where a GitOps tree passes by mistake: a directory holding a kustomization file
is one kustomization (its files are inputs to the render, not manifests), a
directory holding a ``Chart.yaml`` is one chart (its templates are not YAML), and
a kustomization that another one in the same tree builds on (a base, a
component) is judged through the overlay that uses it, with the overlay's images
and namespace, unless the bases are asked for.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import yaml

from webhook.core.errors import ManifestError

SourceKind = Literal["stdin", "file", "kustomization", "chart"]
#: The names kustomize looks for, in its order.
KUSTOMIZATION_FILES = ("kustomization.yaml", "kustomization.yml", "Kustomization")
CHART_FILE = "Chart.yaml"
_SUFFIXES = frozenset({".yaml", ".yml", ".json"})
#: The fields of a kustomization that name other kustomizations (directories).
_REFERENCES = ("resources", "bases", "components")


@dataclass(frozen=True, slots=True)
class Source:
    """One thing to read: standard input, a manifest file, a kustomization or a chart directory."""

    kind: SourceKind
    path: Path

    @property
    def name(self) -> str:
        """How rows name it: ``-`` for standard input, else the path."""
        return "-" if self.kind == "stdin" else str(self.path)


@dataclass(frozen=True, slots=True)
class Base:
    """A kustomization left out because kustomizations in the same tree build on it."""

    path: Path
    used_by: tuple[Path, ...]


@dataclass(frozen=True, slots=True)
class Plan:
    """What an audit of some paths reads, in order, and which bases it leaves to their overlays."""

    sources: tuple[Source, ...]
    bases: tuple[Base, ...] = ()


def plan(paths: Iterable[str], *, include_bases: bool = False) -> Plan:
    """The sources of ``paths`` (files, directories, ``-``).

    A directory is searched recursively for ``*.yaml``, ``*.yml`` and ``*.json``
    files, hidden ones left out, except below a kustomization or a chart, which
    are sources of their own; a kustomization another one of the same path
    builds on is left out unless ``include_bases``. A kustomization file or a
    ``Chart.yaml`` given as a file stands for its directory.

    Raises:
        ManifestError: a path is missing.
    """
    sources: list[Source] = []
    bases: list[Base] = []
    for name in paths:
        if name == "-":
            sources.append(Source("stdin", Path("-")))
            continue
        path = Path(name)
        if path.is_dir():
            found, left = _walk(path, include_bases)
            sources += found
            bases += left
        elif path.exists():
            sources.append(_file(path))
        else:
            raise ManifestError(f"{path}: no such file or directory")
    return Plan(tuple(sources), tuple(bases))


def _file(path: Path) -> Source:
    if path.name in KUSTOMIZATION_FILES:
        return Source("kustomization", path.parent)
    if path.name == CHART_FILE:
        return Source("chart", path.parent)
    return Source("file", path)


def _walk(top: Path, include_bases: bool) -> tuple[list[Source], list[Base]]:
    """The sources below ``top``, and the kustomizations left out as bases."""
    files: list[Source] = []
    charts: list[Source] = []
    kustomizations: list[Path] = []
    for directory, dirnames, filenames in _directories(top):
        inside = any(_within(directory, root) for root in kustomizations)
        if any(name in filenames for name in KUSTOMIZATION_FILES):
            kustomizations.append(directory)
            continue
        if CHART_FILE in filenames:
            dirnames.clear()  # its subcharts render with it
            if not inside:
                charts.append(Source("chart", directory))
            continue
        if not inside:
            files += [
                Source("file", directory / name)
                for name in filenames
                if Path(name).suffix in _SUFFIXES and (directory / name).is_file()
            ]
    judged, bases = _judged(kustomizations, include_bases)
    found = files + charts + [Source("kustomization", k) for k in judged]
    return sorted(found, key=lambda s: s.path), bases


def _directories(top: Path) -> Iterator[tuple[Path, list[str], list[str]]]:
    """``os.walk`` of ``top`` in sorted order, hidden files and directories left out."""
    for directory, dirnames, filenames in os.walk(top):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        yield Path(directory), dirnames, sorted(f for f in filenames if not f.startswith("."))


def _within(path: Path, root: Path) -> bool:
    return path == root or root in path.parents


def _judged(kustomizations: Sequence[Path], include_bases: bool) -> tuple[list[Path], list[Base]]:
    """The kustomizations judged on their own; the others, with what uses them."""
    used_by: dict[Path, list[Path]] = {}
    components = set()
    for root in kustomizations:
        document = _kustomization(root)
        if document.get("kind") == "Component":
            components.add(root)  # cannot be built alone
        for target in _referenced(root, document):
            used_by.setdefault(target, []).append(root)
    judged, bases = [], []
    for root in kustomizations:
        users = used_by.get(root.resolve(), [])
        if root in components or (users and not include_bases):
            bases.append(Base(root, tuple(users)))
        else:
            judged.append(root)
    return judged, bases


def _kustomization(root: Path) -> dict[str, Any]:
    """The kustomization file of ``root``, or {} when unreadable (kubectl will say why)."""
    for name in KUSTOMIZATION_FILES:
        file = root / name
        if file.is_file():
            try:
                document = yaml.safe_load(file.read_text(encoding="utf-8"))
            except (OSError, UnicodeDecodeError, yaml.YAMLError, RecursionError, ValueError):
                return {}
            return document if isinstance(document, dict) else {}
    return {}


def _referenced(root: Path, document: dict[str, Any]) -> Iterator[Path]:
    """The local directories (resolved) that the kustomization at ``root`` builds on."""
    for field in _REFERENCES:
        entries = document.get(field)
        if not isinstance(entries, list):
            continue
        for entry in entries:
            if isinstance(entry, str) and "://" not in entry and (root / entry).is_dir():
                yield (root / entry).resolve()
