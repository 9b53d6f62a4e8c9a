"""``trustgate audit`` of manifest files and stdin: tables, JSON, JUnit, and unreadable input."""

from __future__ import annotations

import io
import json
import sys
from pathlib import Path
from xml.etree import ElementTree as ET

import pytest
import yaml

from tests.support.cli import BAD, GOOD, MODELS, days_from_today, exception_yaml, run
from tests.support.kube import pod_spec, workload

MANIFESTS = f"""\
apiVersion: apps/v1
kind: Deployment
metadata: {{name: web, namespace: prod-web}}
spec:
  template:
    spec:
      containers: [{{name: web, image: "{GOOD}"}}]
      initContainers: [{{name: init, image: "{BAD}"}}]
---
apiVersion: v1
kind: List
items:
  - apiVersion: batch/v1
    kind: CronJob
    metadata: {{name: nightly, namespace: staging}}
    spec:
      schedule: "@daily"
      jobTemplate:
        spec:
          template:
            spec:
              containers: [{{name: job, image: "{BAD}"}}]
  - apiVersion: v1
    kind: ConfigMap
    metadata: {{name: settings}}
    data: {{a: b}}
"""


@pytest.fixture
def manifests(tmp_path: Path) -> Path:
    directory = tmp_path / "deploy"
    (directory / "nested").mkdir(parents=True)
    (directory / "nested" / "app.yaml").write_text(MANIFESTS)
    (directory / ".hidden.yaml").write_text("kind: Pod\nspec: {containers: [{image: x}]}\n")
    (directory / "README.md").write_text("not a manifest")
    return directory


def test_audit_directory_table(
    policies: Path, manifests: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, _ = run(capsys, "audit", str(manifests), "--policies", str(policies))
    assert code == 1
    assert "Deployment/web" in out
    assert "CronJob/nightly" in out
    assert "3 images: 1 allowed, 1 warned, 1 denied" in out


def test_audit_json(policies: Path, manifests: Path, capsys: pytest.CaptureFixture[str]) -> None:
    _, out, _ = run(capsys, "audit", str(manifests), "--policies", str(policies), "-o", "json")
    rows = json.loads(out)
    assert [(r["kind"], r["namespace"], r["image"], r["decision"]) for r in rows] == [
        ("Deployment", "prod-web", GOOD, "allowed"),
        ("Deployment", "prod-web", BAD, "denied"),
        ("CronJob", "staging", BAD, "warned"),
    ]
    assert rows[1]["reasons"][0].startswith(f'image {BAD} denied by policy "production"')


def test_audit_junit(policies: Path, manifests: Path, capsys: pytest.CaptureFixture[str]) -> None:
    _, out, _ = run(capsys, "audit", str(manifests), "--policies", str(policies), "-o", "junit")
    suite = ET.fromstring(out.split("\n", 1)[1])
    assert suite.get("tests") == "3"
    assert suite.get("failures") == "1"
    assert len(suite.findall("testcase/failure")) == 1


def test_audit_stdin_and_only_warnings_exit_0(
    policies: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    text = json.dumps(workload("Pod", pod_spec(BAD), namespace="staging"))
    monkeypatch.setattr(sys, "stdin", io.StringIO(text))
    code, out, _ = run(capsys, "audit", "-", "--policies", str(policies))
    assert code == 0
    assert "WARNED" in out


def test_audit_missing_path(policies: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run(capsys, "audit", "/no/such/dir", "--policies", str(policies))
    assert code == 2
    assert "/no/such/dir: no such file or directory" in err


def test_audit_invalid_yaml_is_an_error_row_and_the_audit_goes_on(
    policies: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    good = yaml.safe_dump(workload("Pod", pod_spec(GOOD)))
    (tmp_path / "a-bad.yaml").write_text(f"{good}---\nkind: [unclosed\n")
    (tmp_path / "b-good.yaml").write_text(good)
    paths = [str(tmp_path / "a-bad.yaml"), str(tmp_path / "b-good.yaml")]
    code, out, err = run(capsys, "audit", *paths, "--policies", str(policies), "-o", "json")
    assert code == 2
    assert err == ""
    rows = json.loads(out)
    assert [(r["source"], r["decision"]) for r in rows] == [
        (str(tmp_path / "a-bad.yaml"), "allowed"),
        (str(tmp_path / "a-bad.yaml"), "error"),
        (str(tmp_path / "b-good.yaml"), "allowed"),
    ]
    assert rows[1]["reasons"][0].startswith(
        f"{tmp_path / 'a-bad.yaml'}: document 2: not valid YAML"
    )


#: Documents whose fields have the wrong type where an object's are read.
BAD_DOCUMENTS = [
    ("- 1\n- 2\n", "error", "document 1: not a Kubernetes object: a list"),
    ("just text\n", "error", "document 1: not a Kubernetes object: a string"),
    ("kind: [Pod]\n", "error", "document 1: kind must be a string, got a list"),
    ("kind: {a: 1}\n", "error", "document 1: kind must be a string, got a mapping"),
    ("kind: List\nitems: [1]\n", "error", "document 1: not a Kubernetes object: a scalar"),
    (
        "apiVersion: [v1]\nkind: Pod\nspec: {containers: [{image: nginx}]}\n",
        "denied",
        "the Pod cannot be judged: apiVersion must be a string, got list",
    ),
    (
        "apiVersion: {v: 1}\nkind: Deployment\nspec: {template: {spec: {containers: []}}}\n",
        "denied",
        "the Deployment cannot be judged: apiVersion must be a string, got dict",
    ),
    (
        "apiVersion: v1\nkind: Pod\nmetadata: [x]\nspec: {containers: [{image: nginx}]}\n",
        "denied",
        "the Pod cannot be judged: metadata must be a mapping, got list",
    ),
    (
        "apiVersion: v1\nkind: Pod\nmetadata: {name: [x]}\nspec: {containers: []}\n",
        "denied",
        "the Pod cannot be judged: metadata.name must be a string, got list",
    ),
    (
        "apiVersion: apps/v1\nkind: Deployment\nspec: {template: [x]}\n",
        "denied",
        "the Deployment cannot be judged: spec.template must be a mapping, got list",
    ),
    (
        "apiVersion: v1\nkind: Pod\nspec: {containers: [], volumes: [{name: m, image: x}]}\n",
        "denied",
        "the Pod cannot be judged: spec.volumes[0].image must be a mapping, got str",
    ),
]


@pytest.mark.parametrize(("text", "decision", "reason"), BAD_DOCUMENTS)
def test_audit_reports_a_bad_document_and_goes_on(
    policies: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    text: str,
    decision: str,
    reason: str,
) -> None:
    after = yaml.safe_dump(workload("Pod", pod_spec(BAD)))
    (tmp_path / "m.yaml").write_text(f"{text}---\n{after}")
    # --namespace given: an object that names none is no cause for a warning here.
    code, out, err = run(capsys, "audit", str(tmp_path / "m.yaml"), "--policies", str(policies),
                         "-o", "json", "-n", "default")  # fmt: skip
    assert err == ""
    first, second = json.loads(out)
    assert first["decision"] == decision
    assert reason in first["reasons"][0]
    assert second["image"] == BAD
    assert second["decision"] == "denied"
    assert code == (2 if decision == "error" else 1)


def test_audit_table_counts_unreadable_documents(
    policies: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "m.yaml").write_text(f"[1]\n---\n{yaml.safe_dump(workload('Pod', pod_spec(GOOD)))}")
    code, out, _ = run(capsys, "audit", str(tmp_path), "--policies", str(policies))
    assert code == 2
    assert "ERROR" in out
    assert "1 image: 1 allowed, 0 warned, 0 denied; 1 unreadable document" in out
    _, out, _ = run(capsys, "audit", str(tmp_path), "--policies", str(policies), "-o", "junit")
    suite = ET.fromstring(out.split("\n", 1)[1])
    assert suite.get("errors") == "1"
    assert "not a Kubernetes object" in suite.findall("testcase/error")[0].get("message")


def test_audit_lists_image_volumes(
    policies: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    spec = pod_spec(GOOD, volumes=(MODELS, GOOD))
    (tmp_path / "m.yaml").write_text(
        yaml.safe_dump(workload("StatefulSet", spec))
        + "---\n"
        + yaml.safe_dump(workload("Pod", pod_spec(GOOD)))
    )
    code, out, _ = run(capsys, "audit", str(tmp_path), "--policies", str(policies), "-o", "json")
    assert code == 1
    rows = json.loads(out)
    assert [
        (r["kind"], r["image"], r["containers"], r["volumes"], r["decision"]) for r in rows
    ] == [
        ("StatefulSet", GOOD, ["app-0"], ["data-1"], "allowed"),
        ("StatefulSet", MODELS, [], ["data-0"], "denied"),
        ("Pod", GOOD, ["app-0"], [], "allowed"),
    ]
    assert "ghcr.io/acme/models is not in the registry allowlist" in rows[1]["reasons"][0]

    _, out, _ = run(capsys, "audit", str(tmp_path), "--policies", str(policies))
    header, first, second, third = out.splitlines()[:4]
    assert first.split()[:5] == ["StatefulSet/web", "prod-web", GOOD, "data-1", "ALLOWED"]
    assert header.split()[:5] == ["RESOURCE", "NAMESPACE", "IMAGE", "VOLUME", "DECISION"]
    assert second.split()[:5] == ["StatefulSet/web", "prod-web", MODELS, "data-0", "DENIED"]
    assert third.split()[:5] == ["Pod/web", "prod-web", GOOD, "-", "ALLOWED"]

    _, out, _ = run(capsys, "audit", str(tmp_path), "--policies", str(policies), "-o", "junit")
    suite = ET.fromstring(out.split("\n", 1)[1])
    (failed,) = [c for c in suite.findall("testcase") if c.find("failure") is not None]
    assert failed.get("name") == f"StatefulSet/web {MODELS} (image volume data-0)"


def test_audit_reports_an_unreadable_file_and_goes_on(
    policies: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "a.yaml").write_bytes(b"kind: Pod\nmetadata: {name: \xff\xfe}\n")
    (tmp_path / "b.yaml").write_text(yaml.safe_dump(workload("Pod", pod_spec(BAD))))
    code, out, _ = run(capsys, "audit", str(tmp_path), "--policies", str(policies), "-o", "json")
    assert code == 2
    first, second = json.loads(out)
    assert first["decision"] == "error"
    assert first["reasons"][0].startswith(f"{tmp_path / 'a.yaml'}: cannot read: ")
    assert (second["image"], second["decision"]) == (BAD, "denied")


def test_audit_lists_what_runs_only_thanks_to_an_exception(
    policies: Path, manifests: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    until = days_from_today(30)
    (policies / "exceptions.yaml").write_text(exception_yaml("nginx-legacy", until))
    code, out, _ = run(capsys, "audit", str(manifests), "--policies", str(policies))
    assert code == 0
    (line,) = [line for line in out.splitlines() if BAD in line and "WAIVED" in line]
    assert f'exception "nginx-legacy" (expires {until})' in line
    assert "run only thanks to an exception or break-glass" in out
    _, out, _ = run(capsys, "audit", str(manifests), "--policies", str(policies), "-o", "json")
    waived = [r for r in json.loads(out) if r["decision"] == "waived"]
    assert [(r["image"], r["waivers"]) for r in waived] == [
        (BAD, [f'exception "nginx-legacy" (expires {until})'])
    ]


def test_audit_junit_shows_a_waived_image_as_passing_with_its_waiver(
    policies: Path, manifests: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    until = days_from_today(30)
    (policies / "exceptions.yaml").write_text(exception_yaml("nginx-legacy", until))
    code, out, _ = run(capsys, "audit", str(manifests), "--policies", str(policies), "-o", "junit")
    assert code == 0
    suite = ET.fromstring(out)
    assert suite.get("failures") == "0"
    (case,) = [c for c in suite.iter("testcase") if BAD in (c.get("name") or "") and
               c.get("classname", "").endswith(":prod-web")]  # fmt: skip
    text = case.findtext("system-out") or ""
    assert text.splitlines()[0] == f'exception "nginx-legacy" (expires {until})'
