"""The layering is checked by import-linter: contracts that hold, catch a violation, match the docs.

``make lint`` runs ``lint-imports`` on the tree; these tests prove that the
contracts would fail on an import pointing the wrong way (on a copy of the
package), and that docs/architecture.md draws exactly the layers the contracts
name, which are exactly the packages and modules of ``webhook/``.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
LINT_IMPORTS = Path(sys.executable).parent / "lint-imports"


def _contracts() -> list[dict[str, object]]:
    config = tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))
    contracts: list[dict[str, object]] = config["tool"]["importlinter"]["contracts"]
    return contracts


def _layer_names() -> list[str]:
    (layers,) = [c for c in _contracts() if c["type"] == "layers"]
    names: list[str] = []
    for layer in layers["layers"]:  # type: ignore[attr-defined]
        names += [part.strip() for part in str(layer).split("|")]
    return names


def _lint(package_parent: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(package_parent)}
    return subprocess.run(
        [str(LINT_IMPORTS), "--config", str(REPO / "pyproject.toml"), "--no-cache"],
        cwd=package_parent,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_the_tree_keeps_every_contract() -> None:
    result = _lint(REPO)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "0 broken" in result.stdout


@pytest.mark.parametrize(
    ("module", "bad_import", "contract"),
    [
        # A lower layer reaching up: the registry importing the server.
        ("registry/client.py", "import webhook.serving.app", "a review flows down the layers"),
        # The registry reaching Kubernetes.
        ("registry/network.py", "import lightkube", "know nothing of Kubernetes"),
        # The protocol importing an implementation.
        ("checks.py", "import webhook.signatures.check", "the checks protocol"),
        # Something importing the CLI.
        ("core/errors.py", "import webhook.cli.main", "the CLI is imported by nothing"),
    ],
)
def test_an_import_pointing_the_wrong_way_breaks_a_contract(
    tmp_path: Path, module: str, bad_import: str, contract: str
) -> None:
    copy = tmp_path / "webhook"
    shutil.copytree(REPO / "webhook", copy, ignore=shutil.ignore_patterns("__pycache__"))
    target = copy / module
    target.write_text(target.read_text(encoding="utf-8") + f"\n{bad_import}  # noqa\n")
    result = _lint(tmp_path)
    assert result.returncode != 0, result.stdout
    broken = result.stdout.split("Broken contracts", 1)[-1]
    assert contract in broken, result.stdout


def test_every_package_and_module_is_in_a_layer() -> None:
    root = REPO / "webhook"
    entries = {
        path.stem
        for path in root.iterdir()
        if (path.is_dir() and (path / "__init__.py").exists())
        or (path.suffix == ".py" and path.stem != "__init__")
    }
    assert set(_layer_names()) == entries


def test_the_architecture_picture_draws_the_layers() -> None:
    text = (REPO / "docs" / "architecture.md").read_text(encoding="utf-8")
    (block,) = re.findall(r"```mermaid\n(.*?)```", text, flags=re.S)
    nodes = set(re.findall(r"^\s*(\w+)\[", block, flags=re.M))
    assert nodes == set(_layer_names())
    order = {name: index for index, layer in enumerate(_layer_order()) for name in layer}
    for upper, lower in re.findall(r"^\s*(\w+) --> (\w+)", block, flags=re.M):
        assert order[upper] < order[lower], f"{upper} --> {lower} points up the layers"


def _layer_order() -> list[list[str]]:
    (layers,) = [c for c in _contracts() if c["type"] == "layers"]
    return [
        [part.strip() for part in str(layer).split("|")]
        for layer in layers["layers"]  # type: ignore[attr-defined]
    ]
