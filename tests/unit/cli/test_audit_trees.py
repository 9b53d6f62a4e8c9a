"""``trustgate audit`` of GitOps trees: judged as rendered, and never passed by mistake.

The tree tests/data/kust holds a base (nginx, no namespace) and two overlays that set the
image and the namespace. Judged as files, the base passes in ``default``; rendered, the
production overlay is denied. The policies are the shipped ones (policies/).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
import yaml

from webhook.cli.main import main

REPO = Path(__file__).resolve().parents[3]
POLICIES = str(REPO / "policies")
KUST = "tests/data/kust"
CHART = "charts/trustgate"


@pytest.fixture(autouse=True)
def at_repo(monkeypatch: pytest.MonkeyPatch) -> None:
    """Paths as a user at the top of the repository types them."""
    monkeypatch.chdir(REPO)


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main([*argv, "--policies", POLICIES])
    out, err = capsys.readouterr()
    return code, out, err


def judged(out: str) -> list[tuple[str, str, str, str]]:
    return [(r["source"], r["namespace"], r["image"], r["decision"]) for r in json.loads(out)]


def test_a_tree_is_judged_as_its_overlays_render_it(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run(capsys, "audit", KUST, "-o", "json")
    assert code == 1
    assert judged(out) == [
        (f"{KUST}/overlays/prod", "prod-web", "ghcr.io/acme/web:2.1", "denied"),
        (f"{KUST}/overlays/staging", "staging", "ghcr.io/acme/web:2.2-rc1", "warned"),
    ]
    assert (
        f"trustgate: {KUST}/base: not judged on its own, but as {KUST}/overlays/prod, "
        f"{KUST}/overlays/staging render it (a base; --include-bases judges it on its own too)"
    ) in err
    # Every object named its namespace once rendered: nothing was assumed.
    assert "--namespace" not in err


def test_an_overlay_is_denied_where_its_base_alone_passes(
    capsys: pytest.CaptureFixture[str],
) -> None:
    code, out, _ = run(capsys, "audit", f"{KUST}/overlays/prod")
    assert code == 1
    assert "DENIED" in out and "ghcr.io/acme/web:2.1" in out
    code, out, err = run(capsys, "audit", KUST, "--include-bases", "-o", "json")
    assert code == 1
    assert (f"{KUST}/base", "default", "nginx:1.27", "allowed") in judged(out)
    assert len(judged(out)) == 3
    assert "not judged on its own" not in err


def test_without_kubectl_the_audit_refuses_with_the_command_to_pipe_in(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))  # no kubectl there
    code, out, err = run(capsys, "audit", KUST)
    assert code == 2
    assert out == ""  # nothing judged, not even the plain files
    assert "kubectl is not on PATH" in err
    assert f"\n  kubectl kustomize {KUST}/overlays/prod | trustgate audit -\n" in err
    assert err.endswith(f"\n  kubectl kustomize {KUST}/overlays/staging | trustgate audit -\n")


def test_a_failing_render_is_an_error_quoting_kubectl(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "kustomization.yaml").write_text("resources:\n  - missing.yaml\n")
    code, out, _ = run(capsys, "audit", str(broken), f"{KUST}/overlays/prod", "-o", "json")
    assert code == 2
    error, denied = json.loads(out)
    assert error["decision"] == "error" and error["source"] == str(broken)
    assert error["reasons"][0].startswith(f"kubectl kustomize {broken} failed (exit 1): ")
    assert "missing.yaml" in error["reasons"][0]
    assert denied["decision"] == "denied"  # the audit went on


def test_a_chart_is_judged_as_helm_renders_it(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, err = run(capsys, "audit", CHART)
    assert code == 0, out + err
    assert "not valid YAML" not in out and "ERROR" not in out
    assert "Deployment/release-name-trustgate" in out
    assert "quay.io/trustgate/trustgate:0.1.0" in out and "WARNED" in out
    assert f'judged the release of {CHART} in namespace "default"' in err
    assert "give --namespace NS" in err

    code, out, err = run(capsys, "audit", CHART, "-n", "prod-web", "-o", "json")
    assert code == 1
    # The Deployment, and the pre-install Job that lints what it will load: the same image.
    denied = (CHART, "prod-web", "quay.io/trustgate/trustgate:0.1.0", "denied")
    assert judged(out) == [denied, denied]
    assert "warning" not in err

    values = tmp_path / "prod.yaml"
    values.write_text(yaml.safe_dump({"image": {"repository": "quay.io/acme/trustgate"}}))
    code, out, _ = run(capsys, "audit", CHART, "-n", "prod-web", "-f", str(values), "-o", "json")
    assert code == 0
    allowed = (CHART, "prod-web", "quay.io/acme/trustgate:0.1.0", "allowed")
    assert judged(out) == [allowed, allowed]


def test_without_helm_a_chart_is_refused_with_the_helm_template_hint(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))
    monkeypatch.setitem(sys.modules, "helm_python", None)  # as if not installed
    values = tmp_path / "prod.yaml"
    values.write_text("{}\n")
    code, out, err = run(capsys, "audit", CHART, "-n", "web", "--values", str(values))
    assert code == 2 and out == ""
    assert err.endswith(
        f"\n  helm template {CHART} --namespace web --values {values} | trustgate audit -\n"
    )
    assert "pip install helm-python-sdk" in err


def test_values_need_exactly_one_chart(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    values = tmp_path / "v.yaml"
    values.write_text("{}\n")
    code, _, err = run(capsys, "audit", KUST, "-f", str(values))
    assert code == 2
    assert "--values is for a Helm chart, and the paths hold none" in err
    code, _, err = run(capsys, "audit", CHART, f"{CHART}/Chart.yaml", "-f", str(values))
    assert code == 2 and "--values is for one chart, and the paths hold 2" in err
    code, _, err = run(capsys, "audit", CHART, "-f", str(tmp_path / "nope.yaml"))
    assert code == 2 and "nope.yaml: no such file" in err
    code, _, err = run(capsys, "audit", "--cluster", "--include-bases")
    assert code == 2 and "not --cluster" in err


@pytest.mark.parametrize("fmt", ["table", "json"])
def test_an_audit_that_judged_no_image_is_no_pass(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], fmt: str
) -> None:
    config = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "settings"}}
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(config))
    code, _, err = run(capsys, "audit", str(tmp_path), "-o", fmt)
    assert code == 2
    assert f"trustgate: no workload images found in {tmp_path}: nothing was judged" in err


def test_assuming_a_namespace_warns_and_names_the_flag(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    pod = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "nginx"},
        "spec": {"containers": [{"name": "c", "image": "nginx:1.27"}]},
    }
    (tmp_path / "pod.yaml").write_text(yaml.safe_dump(pod))
    code, out, err = run(capsys, "audit", str(tmp_path / "pod.yaml"))
    assert code == 0 and "ALLOWED" in out
    assert err == (
        "trustgate: warning: judged 1 workload that names no namespace (Pod/nginx) in namespace "
        '"default", which the audit assumed: give --namespace NS to judge them in the namespace '
        "they will run in\n"
    )
    code, out, err = run(capsys, "audit", str(tmp_path / "pod.yaml"), "-n", "prod-web")
    assert code == 1 and "DENIED" in out
    assert err == ""
    pod["metadata"]["namespace"] = "default"
    (tmp_path / "pod.yaml").write_text(yaml.safe_dump(pod))
    code, _, err = run(capsys, "audit", str(tmp_path / "pod.yaml"))
    assert code == 0 and err == ""
