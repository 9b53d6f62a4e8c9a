"""The helm-python-sdk child: prints what `helm template` prints, values merged as Helm does."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from webhook.cli.helmsdk import main, merge

CHART = Path(__file__).resolve().parents[3] / "charts" / "trustgate"


@pytest.mark.parametrize(
    ("base", "override", "merged"),
    [
        ({"a": 1}, {"b": 2}, {"a": 1, "b": 2}),
        ({"a": {"x": 1, "y": 2}}, {"a": {"y": 3}}, {"a": {"x": 1, "y": 3}}),
        ({"a": {"x": 1}}, {"a": 5}, {"a": 5}),
        ({"a": [1, 2]}, {"a": [3]}, {"a": [3]}),  # lists are replaced, not appended
        ({"a": {"x": 1}}, {"a": None}, {"a": None}),  # null is kept: Helm then drops the key
    ],
)
def test_merge_as_helm_merges_values_files(base: dict, override: dict, merged: dict) -> None:
    assert merge(base, override) == merged


def test_prints_the_rendered_chart_without_notes(capsys: pytest.CaptureFixture[str]) -> None:
    assert main([str(CHART), "--namespace", "web"]) == 0
    out = capsys.readouterr().out
    assert "# Source: trustgate/templates/deployment.yaml" in out
    assert "NOTES.txt" not in out
    kinds = {doc["kind"] for doc in yaml.safe_load_all(out) if doc}
    assert {"Deployment", "Service", "ValidatingWebhookConfiguration"} <= kinds


def test_a_failure_is_exit_1_with_helms_message(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main([str(tmp_path)]) == 1
    assert capsys.readouterr().err.startswith("Error: ")
    values = tmp_path / "v.yaml"
    values.write_text("replicaCount: [unclosed\n")
    assert main([str(CHART), "--values", str(values)]) == 1
    assert capsys.readouterr().err.startswith("Error: ")
