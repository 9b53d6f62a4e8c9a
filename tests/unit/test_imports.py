"""The package's own imports form no cycle, and the check protocol imports no check.

Every ``import`` counts, including those under ``TYPE_CHECKING`` and inside
functions: a cycle hidden in a function still ties the modules together.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import webhook

ROOT = Path(webhook.__file__).parent


def _modules() -> dict[str, Path]:
    found = {}
    for path in ROOT.rglob("*.py"):
        parts = ("webhook", *path.relative_to(ROOT).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        found[".".join(parts)] = path
    return found


def _imports(path: Path, modules: dict[str, Path]) -> Iterator[str]:
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            for alias in node.names:
                full = f"{node.module}.{alias.name}"
                yield full if full in modules else node.module
        elif isinstance(node, ast.Import):
            yield from (alias.name for alias in node.names)


def _graph() -> dict[str, set[str]]:
    modules = _modules()
    return {
        name: {dep for dep in _imports(path, modules) if dep in modules and dep != name}
        for name, path in modules.items()
    }


def _cycle_from(start: str, graph: dict[str, set[str]]) -> list[str] | None:
    """A path of imports from ``start`` back to itself, if there is one."""
    stack = [(start, [start])]
    seen: set[str] = set()
    while stack:
        node, path = stack.pop()
        for dep in sorted(graph[node]):
            if dep == start:
                return [*path, dep]
            if dep not in seen:
                seen.add(dep)
                stack.append((dep, [*path, dep]))
    return None


def test_no_module_of_the_package_imports_itself_back() -> None:
    graph = _graph()
    cycles = [cycle for name in sorted(graph) if (cycle := _cycle_from(name, graph))]
    assert cycles == [], " ; ".join(" -> ".join(cycle) for cycle in cycles)


def test_the_cycle_finder_sees_a_cycle() -> None:
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}
    assert _cycle_from("a", graph) == ["a", "b", "c", "a"]
    assert _cycle_from("d", graph) is None


def test_the_check_protocol_imports_no_check_implementation() -> None:
    deps = _graph()["webhook.checks"]
    implementations = {d for d in deps if d.startswith(("webhook.signatures", "webhook.freshness"))}
    assert implementations == set()
    assert "webhook.services" not in deps
