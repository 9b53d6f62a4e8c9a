"""``trustgate review`` and ``trustgate check``: one AdmissionReview or a list of images, judged."""

from __future__ import annotations

import io
import json
import re
import sys
from pathlib import Path

import pytest

from tests.support.cli import BAD, GOOD, MODELS, REPO, run
from tests.support.kube import pod_spec, review, workload


def test_review_prints_the_response_and_exits_by_decision(
    policies: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    denied = tmp_path / "denied.json"
    denied.write_text(json.dumps(review(workload("Deployment", pod_spec(BAD)), uid="u-9")))
    code, out, _ = run(capsys, "review", str(denied), "--policies", str(policies))
    assert code == 1
    answer = json.loads(out)
    assert answer["response"]["uid"] == "u-9"
    assert answer["response"]["allowed"] is False

    allowed = tmp_path / "allowed.json"
    allowed.write_text(json.dumps(review(workload("Pod", pod_spec(GOOD)))))
    code, out, _ = run(capsys, "review", str(allowed), "--policies", str(policies))
    assert code == 0
    assert json.loads(out)["response"]["allowed"] is True


def test_review_reads_stdin(
    policies: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    body = json.dumps(review(workload("Pod", pod_spec(GOOD))))
    monkeypatch.setattr(sys, "stdin", io.StringIO(body))
    code, out, _ = run(capsys, "review", "-", "--policies", str(policies))
    assert code == 0
    assert json.loads(out)["response"]["allowed"] is True


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("{oops", "is not valid JSON"),
        ('{"kind": "Pod"}', "not .*AdmissionReview|expected apiVersion"),
    ],
)
def test_review_rejects_bad_input(
    policies: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], content: str, message: str
) -> None:
    path = tmp_path / "bad.json"
    path.write_text(content)
    code, _, err = run(capsys, "review", str(path), "--policies", str(policies))
    assert code == 2
    assert err.startswith("trustgate: ")
    assert re.search(message, err)


def test_check_images(policies: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "check", GOOD, "--namespace", "prod-a", "--policies", str(policies))
    assert code == 0
    assert "ALLOWED" in out
    code, out, _ = run(
        capsys, "check", GOOD, BAD, "-n", "prod-a", "--policies", str(policies), "-o", "json"
    )
    assert code == 1
    rows = json.loads(out)
    assert [(r["image"], r["decision"]) for r in rows] == [(GOOD, "allowed"), (BAD, "denied")]


def test_check_in_audit_namespace_warns(policies: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "check", BAD, "-n", "staging", "--policies", str(policies))
    assert code == 0
    assert "WARNED" in out


def test_readme_example_is_what_the_webhook_answers(capsys: pytest.CaptureFixture[str]) -> None:
    readme = (REPO / "README.md").read_text()
    shown = json.loads(readme.split("```json\n", 1)[1].split("\n```", 1)[0])
    code, out, _ = run(
        capsys,
        "review",
        str(REPO / "docs" / "examples" / "admission-review.json"),
        "--policies",
        str(REPO / "policies"),
    )
    assert code == 1
    assert json.loads(out) == shown


def test_check_judges_image_volumes(policies: Path, capsys: pytest.CaptureFixture[str]) -> None:
    argv = ["check", GOOD, "--volume", MODELS, "-n", "prod-a", "--policies", str(policies)]
    code, out, _ = run(capsys, *argv, "-o", "json")
    assert code == 1
    rows = json.loads(out)
    assert [(r["image"], r["volumes"], r["decision"]) for r in rows] == [
        (GOOD, [], "allowed"),
        (MODELS, ["v0"], "denied"),
    ]
    code, _, err = run(capsys, "check", "--policies", str(policies))
    assert code == 2
    assert "give at least one IMAGE or --volume IMAGE" in err
