"""What an audit reads in a tree: manifests, kustomizations, charts; which bases it leaves out."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from webhook.cli.tree import Base, Source, plan
from webhook.core.errors import ManifestError

REPO = Path(__file__).resolve().parents[3]
KUST = REPO / "tests" / "data" / "kust"


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    """The kust fixture, a chart and plain manifests side by side, as in a GitOps repository."""
    root = tmp_path / "deploy"
    shutil.copytree(KUST, root / "kust")
    chart = root / "charts" / "app"
    (chart / "templates").mkdir(parents=True)
    (chart / "Chart.yaml").write_text("apiVersion: v2\nname: app\nversion: 0.1.0\n")
    (chart / "templates" / "deployment.yaml").write_text("{{ .Values.broken }\n")
    (chart / "charts" / "sub").mkdir(parents=True)
    (chart / "charts" / "sub" / "Chart.yaml").write_text("apiVersion: v2\nname: sub\n")
    (root / "plain").mkdir()
    (root / "plain" / "pod.yaml").write_text("kind: Pod\n")
    (root / "plain" / ".hidden.yaml").write_text("kind: Pod\n")
    return root


def test_a_tree_is_its_overlays_its_charts_and_its_plain_files(tree: Path) -> None:
    found = plan([str(tree)])
    assert found.sources == (
        Source("chart", tree / "charts" / "app"),
        Source("kustomization", tree / "kust" / "overlays" / "prod"),
        Source("kustomization", tree / "kust" / "overlays" / "staging"),
        Source("file", tree / "plain" / "pod.yaml"),
    )
    # The base, its deployment.yaml, the overlays' patches and the chart's templates and
    # subchart are inputs to a render, not manifests of their own.
    assert found.bases == (
        Base(
            tree / "kust" / "base",
            (tree / "kust" / "overlays" / "prod", tree / "kust" / "overlays" / "staging"),
        ),
    )


def test_bases_are_judged_on_their_own_only_when_asked(tree: Path) -> None:
    found = plan([str(tree / "kust")], include_bases=True)
    assert [s.path.relative_to(tree / "kust") for s in found.sources] == [
        Path("base"),
        Path("overlays/prod"),
        Path("overlays/staging"),
    ]
    assert found.bases == ()


def test_a_base_given_alone_is_judged(tree: Path) -> None:
    # No overlay of the given path uses it: it is what was asked for.
    found = plan([str(tree / "kust" / "base")])
    assert found.sources == (Source("kustomization", tree / "kust" / "base"),)


def test_a_kustomization_or_chart_file_stands_for_its_directory(tree: Path) -> None:
    prod = tree / "kust" / "overlays" / "prod"
    found = plan([str(prod / "kustomization.yaml"), str(tree / "charts" / "app" / "Chart.yaml")])
    assert found.sources == (
        Source("kustomization", prod),
        Source("chart", tree / "charts" / "app"),
    )


def test_components_are_never_built_alone(tree: Path) -> None:
    component = tree / "kust" / "components" / "probes"
    component.mkdir(parents=True)
    (component / "kustomization.yaml").write_text(
        "apiVersion: kustomize.config.k8s.io/v1alpha1\nkind: Component\n"
    )
    prod = tree / "kust" / "overlays" / "prod" / "kustomization.yaml"
    prod.write_text(prod.read_text() + "components:\n  - ../../components/probes\n")
    found = plan([str(tree / "kust")], include_bases=True)
    assert Source("kustomization", component) not in found.sources
    assert Base(component, (tree / "kust" / "overlays" / "prod",)) in found.bases


def test_remote_and_missing_references_are_no_bases(tree: Path) -> None:
    staging = tree / "kust" / "overlays" / "staging" / "kustomization.yml"
    staging.write_text(
        "bases:\n  - https://github.com/acme/deploy//base?ref=v1\n  - ../../nowhere\n"
        "resources: [7, {a: b}]\n"
    )
    found = plan([str(tree / "kust")])
    assert found.bases == (Base(tree / "kust" / "base", (tree / "kust" / "overlays" / "prod",)),)
    # An unreadable kustomization is still rendered: kubectl says what is wrong with it.
    staging.write_text("bases: [unclosed\n")
    assert Source("kustomization", staging.parent) in plan([str(tree / "kust")]).sources


def test_stdin_and_a_missing_path(tree: Path) -> None:
    assert plan(["-"]).sources == (Source("stdin", Path("-")),)
    assert plan(["-"]).sources[0].name == "-"
    with pytest.raises(ManifestError, match="nowhere: no such file or directory"):
        plan([str(tree / "nowhere")])
