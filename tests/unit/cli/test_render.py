"""Kustomizations and charts rendered by their real tools, within time and output limits.

kubectl is the one on PATH (``make test-deps`` installs Debian's kubernetes-client when
there is none); Helm is the helm-python-sdk wheel of the test tools, run as a child
process, unless a ``helm`` binary is on PATH.
"""

from __future__ import annotations

import os
import shutil
import time
from pathlib import Path

import pytest
import yaml

from webhook.cli.render import (
    Limits,
    RenderError,
    Renderers,
    find_renderers,
    helm_command,
    kustomize_command,
    quote,
    refusal,
    render,
)
from webhook.cli.tree import Source

REPO = Path(__file__).resolve().parents[3]
KUST = REPO / "tests" / "data" / "kust"
CHART = REPO / "charts" / "trustgate"


@pytest.fixture(scope="module")
def renderers() -> Renderers:
    found = find_renderers(os.environ)
    assert found.kubectl, "kubectl is not on PATH: `make test-deps` installs kubernetes-client"
    assert found.helm, "neither helm nor helm-python-sdk: `make install-test` installs the SDK"
    return found


def objects(text: str) -> list[dict]:
    return [doc for doc in yaml.safe_load_all(text) if doc]


def image_of(obj: dict) -> str:
    return obj["spec"]["template"]["spec"]["containers"][0]["image"]


def test_an_overlay_renders_with_its_image_namespace_and_patch(renderers: Renderers) -> None:
    text = render(Source("kustomization", KUST / "overlays" / "prod"), renderers, namespace="x")
    (deployment,) = objects(text)
    assert deployment["metadata"]["namespace"] == "prod-web"
    assert image_of(deployment) == "ghcr.io/acme/web:2.1"
    assert deployment["spec"]["replicas"] == 3


def test_a_failing_render_quotes_kubectl_briefly(renderers: Renderers, tmp_path: Path) -> None:
    (tmp_path / "kustomization.yaml").write_text("resources:\n  - missing.yaml\n")
    with pytest.raises(
        RenderError, match=r"kubectl kustomize .* failed \(exit 1\): .*missing"
    ) as e:
        render(Source("kustomization", tmp_path), renderers, namespace="default")
    assert len(str(e.value)) < 1500
    assert "\n" not in str(e.value)


def running_with(marker: str) -> list[str]:
    """The processes whose command line mentions ``marker``, once killed ones had 5 s to go."""
    deadline = time.monotonic() + 5  # SIGKILL is delivered, not waited for, to grandchildren
    while True:
        found = []
        for entry in Path("/proc").iterdir():
            try:
                cmdline = (entry / "cmdline").read_bytes()
            except OSError:
                continue
            if entry.name.isdigit() and marker.encode() in cmdline:
                found.append(entry.name)
        if not found or time.monotonic() > deadline:
            return found
        time.sleep(0.05)


def test_a_render_that_hangs_is_cut_off(renderers: Renderers, tmp_path: Path) -> None:
    # A named pipe nobody writes: kustomize waits on it for ever.
    tree = tmp_path / "hangs"
    tree.mkdir()
    os.mkfifo(tree / "pipe.yaml")
    (tree / "kustomization.yaml").write_text("resources:\n  - pipe.yaml\n")
    limited = Renderers(renderers.kubectl, None, Limits(seconds=1.5))
    started = time.monotonic()
    with pytest.raises(RenderError, match=r"hangs: stopped after 1\.5 s without finishing"):
        render(Source("kustomization", tree), limited, namespace="default")
    assert time.monotonic() - started < 10
    assert running_with(str(tree)) == []


def test_a_render_that_floods_is_cut_off(renderers: Renderers, tmp_path: Path) -> None:
    big = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "big"}, "data": {}}
    big["data"] = {f"k{i}": "x" * 1000 for i in range(3000)}  # 3 MB
    (tmp_path / "big.yaml").write_text(yaml.safe_dump(big))
    (tmp_path / "kustomization.yaml").write_text("resources:\n  - big.yaml\n")
    limited = Renderers(renderers.kubectl, None, Limits(output_bytes=1 << 20))
    with pytest.raises(RenderError, match="stopped after 1048576 bytes of output"):
        render(Source("kustomization", tmp_path), limited, namespace="default")
    assert running_with(str(tmp_path)) == []
    # Within the limit, the same tree renders.
    assert objects(render(Source("kustomization", tmp_path), renderers, namespace="d"))


def test_a_chart_renders_with_values_files_in_order(renderers: Renderers, tmp_path: Path) -> None:
    first, second = tmp_path / "a.yaml", tmp_path / "b.yaml"
    first.write_text("image: {repository: quay.io/acme/trustgate, tag: '1.0'}\n")
    second.write_text("image: {tag: '2.0'}\n")
    text = render(
        Source("chart", CHART), renderers, values=[first, second], namespace="trustgate-system"
    )
    (deployment,) = [o for o in objects(text) if o["kind"] == "Deployment"]
    # The later file wins where both set a key; the earlier one's other keys stay.
    assert image_of(deployment) == "quay.io/acme/trustgate:2.0"
    assert deployment["metadata"]["name"] == "release-name-trustgate"
    assert deployment["metadata"]["namespace"] == "trustgate-system"


def test_a_failing_chart_quotes_helm(renderers: Renderers, tmp_path: Path) -> None:
    values = tmp_path / "bad.yaml"
    values.write_text("config: {deadlineSeconds: 0}\n")
    with pytest.raises(RenderError, match=r"helm template .*trustgate failed \(exit 1\): .*dead"):
        render(Source("chart", CHART), renderers, values=[values], namespace="default")


def fake_helm(directory: Path, body: str) -> Path:
    """A ``helm`` program on a PATH of its own: a broken Helm, for the limits."""
    directory.mkdir()
    helm = directory / "helm"
    helm.write_text(f"#!/bin/sh\n{body}\n")
    helm.chmod(0o755)
    return helm


def test_a_helm_on_path_comes_first_and_is_held_to_the_limits(tmp_path: Path) -> None:
    nap = f"30.{os.getpid()}"  # a sleep of its own, told apart from any other test run's
    helm = fake_helm(tmp_path / "bin", f"sleep {nap}")
    found = find_renderers({"PATH": str(tmp_path / "bin")}, Limits(seconds=1))
    assert found.helm == (str(helm), "template")
    assert found.kubectl is None
    with pytest.raises(RenderError, match=r"helm template .*trustgate: stopped after 1 s"):
        render(Source("chart", CHART), found, namespace="default")
    # The shell and the sleep it started: the whole session is killed.
    assert running_with(str(helm)) == []
    assert running_with(f"sleep\0{nap}") == []

    flood = fake_helm(tmp_path / "bin2", "exec yes")
    found = find_renderers({"PATH": str(flood.parent)}, Limits(output_bytes=100_000))
    with pytest.raises(RenderError, match="stopped after 100000 bytes"):
        render(Source("chart", CHART), found, namespace="default")


def test_refusals_give_the_command_to_pipe_in() -> None:
    none = Renderers(kubectl=None, helm=None)
    overlay = Source("kustomization", Path("kust/overlays/prod"))
    chart = Source("chart", Path("charts/my app"))
    values = [Path("prod.yaml")]
    message = refusal([overlay, chart], none, values, "prod-web")
    assert message is not None
    assert "  kubectl kustomize kust/overlays/prod | trustgate audit -\n" in message
    assert message.endswith(
        "  helm template 'charts/my app' --namespace prod-web --values prod.yaml"
        " | trustgate audit -"
    )
    assert "apt-get install kubernetes-client" in message
    assert "pip install helm-python-sdk" in message
    assert kustomize_command(overlay) == "kubectl kustomize kust/overlays/prod | trustgate audit -"
    assert helm_command(chart, [], "default").startswith("helm template 'charts/my app'")
    assert refusal([overlay, chart], Renderers("kubectl", ("helm",)), values, "x") is None
    assert refusal([Source("file", Path("a.yaml"))], none, [], "x") is None


def test_a_missing_tool_is_an_error_with_the_command() -> None:
    with pytest.raises(RenderError, match=r"run: kubectl kustomize k \| trustgate audit -"):
        render(Source("kustomization", Path("k")), Renderers(None, None), namespace="default")


@pytest.mark.parametrize(
    ("stderr", "quoted"),
    [
        (b"", "no error output"),
        (
            b"# Warning: 'bases' is deprecated.\nError: accumulating resources: x\n",
            "Error: accumulating resources: x",
        ),
        (b"# Warning: only this\n", "# Warning: only this"),
        (
            b'E1206 04:50:06.515057   16623 run.go:72] "command failed" err="x"\n',
            '"command failed" err="x"',
        ),
        (b"a\nb\nc\nd\ne\nf\n", "a / b / c / d / (and 2 more lines)"),
        (b"y" * 400, "y" * 297 + "..."),
        (b"\xff bad bytes", "\ufffd bad bytes"),
    ],
)
def test_quote(stderr: bytes, quoted: str) -> None:
    assert quote(stderr) == quoted


def test_debian_kubectl_is_what_make_installs() -> None:
    makefile = (REPO / "Makefile").read_text()
    assert "command -v kubectl" in makefile
    assert "apt-get install -y -qq kubernetes-client" in makefile
    assert shutil.which("kubectl")
