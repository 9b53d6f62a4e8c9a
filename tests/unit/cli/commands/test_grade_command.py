"""`trustgate grade`: grade, source, deciding fixes and schedule, against a real registry."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from tests.support.pyxis import grades, image_record, running_pyxis
from tests.support.registry import Registry, default_layer, push_image
from webhook.cli.main import main

POLICY = """\
apiVersion: trustgate.dev/v1alpha1
kind: ImagePolicy
metadata: {{name: production}}
spec:
  registries: ["{host}/**"]
  freshness: {{minimumGrade: C, sources: [pyxis, static]}}
"""


def test_grade_command(
    registry: Registry, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    now = datetime.now(UTC)
    fresh = push_image(registry, "grade/fresh", tag="v1", layers=[default_layer(content=b"g1")])
    stale = push_image(registry, "grade/stale", tag="v1", layers=[default_layer(content=b"g2")])
    filed = push_image(registry, "grade/filed", tag="v1", layers=[default_layer(content=b"g3")])
    (tmp_path / "policies").mkdir()
    (tmp_path / "policies" / "p.yaml").write_text(POLICY.format(host=registry.host))
    released = (now - timedelta(days=40)).date().isoformat()
    (tmp_path / "grades.yaml").write_text(
        f"grades:\n  - image: {registry.host}/grade/filed\n    fixes:\n"
        f'      - {{id: RHSA-1, severity: Important, released: "{released}"}}\n'
    )
    drop = now + timedelta(days=3)
    with running_pyxis() as pyxis:
        pyxis.add(
            image_record(
                "amd64", fresh, grades(("B", now - timedelta(days=1), drop), ("D", drop, None))
            ),
            image_record("amd64", stale, grades(("F", now - timedelta(days=1), None))),
        )
        (tmp_path / "trustgate.yaml").write_text(
            f'registries: {{"{registry.host}": {{insecure: true}}}}\n'
            f"freshness: {{pyxis: {{url: '{pyxis.url}'}}, "
            f"static: {{file: {tmp_path / 'grades.yaml'}}}}}\n"
        )
        common = [
            "--policies",
            str(tmp_path / "policies"),
            "--config",
            str(tmp_path / "trustgate.yaml"),
        ]
        refs = [f"{registry.host}/grade/{name}:v1" for name in ("fresh", "stale", "filed")]
        assert main(["grade", *refs, *common, "--output", "json"]) == 1
        fresh_out, stale_out, filed_out = json.loads(capsys.readouterr().out)
        assert main(["grade", refs[0], *common]) == 0
        text = capsys.readouterr().out
    assert fresh_out["grade"] == "B" and fresh_out["passes"] is True
    assert fresh_out["source"] == "Pyxis" and fresh_out["digest"] == fresh
    assert fresh_out["nextDrop"]["grade"] == "D"
    assert fresh_out["belowMinimumFrom"] == drop.isoformat()
    assert [w["grade"] for w in fresh_out["schedule"]] == ["B", "D"]
    assert stale_out["grade"] == "F" and stale_out["passes"] is False
    # Pyxis does not know it; the grades file grades its fixes: Important, 40 days old -> C.
    assert filed_out["digest"] == filed
    assert filed_out["grade"] == "C" and filed_out["source"] == "grades file"
    assert [f["id"] for f in filed_out["fixes"]] == ["RHSA-1"]
    assert filed_out["unknown"][0].startswith("Pyxis: Pyxis at ")
    assert text.startswith(
        f"{refs[0]}: grade B (Pyxis, architecture amd64); "
        'passes the minimum C of policy "production"'
    )
    assert f"  next drop: D on {drop.strftime('%Y-%m-%d')}" in text
