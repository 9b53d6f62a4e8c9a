"""The chart mounts a policy set's signature beside its policies, as `policy verify` expects it.

A ConfigMap key cannot hold a "/", so the signature travels under a key of its own and
the volume maps it to .trustgate/signature.json. These tests lay out the rendered
volumes the way kubelet does (items map keys to paths; without items, every key) and
verify the result with the verifier the server and `policy lint` use.
"""

from __future__ import annotations

import json
import shlex
import subprocess
import sys
import textwrap
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import yaml
from cryptography.hazmat.primitives.asymmetric import ec

from tests.chart.test_chart import RELEASE, one, render
from tests.support.policysigning import FILES, policy_dir, private_pem, public_pem
from webhook.cli.main import build_parser
from webhook.policy.signing.envelope import TrustedKey, sign_directory, verify_directory
from webhook.policy.signing.gate import PolicySignatureError
from webhook.trust.keys import load_public_key

KEY = ec.generate_private_key(ec.SECP256R1())
AUTHORITIES = [TrustedKey("policy-team", load_public_key(public_pem(KEY), source="test key"))]


def _signed(tmp_path: Path) -> dict[str, Any]:
    """Chart values holding a signed policy directory: files and signature, as --set-file gives."""
    directory = policy_dir(tmp_path)
    (directory / "release.pub").write_bytes(public_pem(KEY))
    sign_directory(directory, private_pem(KEY), source="key", version=3, now=datetime.now(UTC))
    signature = (directory / ".trustgate" / "signature.json").read_text()
    # None removes the chart's default policy, which was not signed.
    files = {**FILES, "release.pub": public_pem(KEY).decode(), "audit-all.yaml": None}
    return {"policies": {"files": files, "signature": signature}}


def _lay_out(source: dict[str, Any], config_maps: dict[str, dict], target: Path) -> Path:
    """What kubelet writes for a configMap or projected volume ``source``."""
    sources = (
        [s["configMap"] for s in source["projected"]["sources"]]
        if "projected" in source
        else [source["configMap"]]
    )
    target.mkdir(parents=True)
    for volume in sources:
        data = config_maps[volume["name"]]["data"]
        items = volume.get("items") or [{"key": k, "path": k} for k in data]
        for item in items:
            path = target / item["path"]
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(data[item["key"]])
    return target


def _config_maps(objects: list[dict]) -> dict[str, dict]:
    return {o["metadata"]["name"]: o for o in objects if o["kind"] == "ConfigMap"}


def _volume(pod_spec: dict, name: str = "policies") -> dict:
    return next(v for v in pod_spec["volumes"] if v["name"] == name)


def test_the_server_and_the_preflight_job_see_a_signed_directory(tmp_path: Path) -> None:
    objects = render(_signed(tmp_path))
    maps = _config_maps(objects)
    keys = {*FILES, "release.pub", "trustgate-signature.json"}
    assert set(maps[f"{RELEASE}-policies"]["data"]) == keys
    server = one(objects, "Deployment")["spec"]["template"]["spec"]
    preflight = one(objects, "Job", f"{RELEASE}-preflight")["spec"]["template"]["spec"]
    for number, spec in enumerate((server, preflight)):
        mounted = _lay_out(_volume(spec), maps, tmp_path / f"mounted-{number}")
        verified = verify_directory(mounted, AUTHORITIES)
        assert verified.version == 3
        assert not (mounted / "trustgate-signature.json").exists()


def test_a_policy_changed_in_the_values_but_not_signed_again_is_refused(tmp_path: Path) -> None:
    values = _signed(tmp_path)
    values["policies"]["files"]["policy.yaml"] += "# widened\n"
    objects = render(values)
    spec = one(objects, "Deployment")["spec"]["template"]["spec"]
    mounted = _lay_out(_volume(spec), _config_maps(objects), tmp_path / "mounted")
    with pytest.raises(PolicySignatureError, match=r"policy\.yaml: changed after signing"):
        verify_directory(mounted, AUTHORITIES)


def test_an_existing_config_map_and_its_signature_are_projected_together(tmp_path: Path) -> None:
    values = {
        "policies": {
            "existingConfigMap": "platform-policies",
            "existingSignatureConfigMap": "platform-policies-signature",
        }
    }
    objects = render(values)
    signed = _signed(tmp_path)["policies"]
    maps = {
        "platform-policies": {"data": {k: v for k, v in signed["files"].items() if v}},
        "platform-policies-signature": {"data": {"signature.json": signed["signature"]}},
    }
    for spec in (
        one(objects, "Deployment")["spec"]["template"]["spec"],
        one(objects, "Job", f"{RELEASE}-preflight")["spec"]["template"]["spec"],
    ):
        source = _volume(spec)
        assert [s["configMap"]["name"] for s in source["projected"]["sources"]] == list(maps)
    mounted = _lay_out(_volume(spec), maps, tmp_path / "mounted")
    assert verify_directory(mounted, AUTHORITIES).authority == "policy-team"


def test_without_a_signature_the_whole_config_map_is_mounted() -> None:
    spec = one(render(), "Deployment")["spec"]["template"]["spec"]
    assert _volume(spec) == {"name": "policies", "configMap": {"name": f"{RELEASE}-policies"}}


def test_a_policy_file_cannot_take_the_signature_key() -> None:
    values = {"policies": {"files": {"trustgate-signature.json": "{}"}}}
    with pytest.raises(Exception, match="key the chart keeps the policy signature under"):
        render(values)


def test_a_dotted_policy_name_still_gets_yaml_and_a_key_file_keeps_its_name() -> None:
    """team.prod became team.prod.yaml before keys could sit beside policies, and still does:
    kept as it is, the loader (which reads .yaml, .yml and .json) would skip it unsaid."""
    files = {"team.prod": "{}", "prod": "{}", "release.pub": "k", "ca.pem": "c", "a.yml": "{}"}
    values = {"policies": {"files": {**files, "audit-all.yaml": None}}}
    data = _config_maps(render(values))[f"{RELEASE}-policies"]["data"]
    assert set(data) == {"team.prod.yaml", "prod.yaml", "release.pub", "ca.pem", "a.yml"}


WORKFLOW = Path(__file__).resolve().parents[2] / "docs" / "examples" / "sign-policies.yml"


def _steps() -> dict[str, str]:
    workflow = yaml.safe_load(WORKFLOW.read_text())
    return {s["name"]: s.get("run", "") for s in workflow["jobs"]["sign"]["steps"] if "name" in s}


def test_the_example_workflow_runs_real_trustgate_commands() -> None:
    parser = build_parser({})
    commands = [
        shlex.split(line.replace("\\\n", " "))
        for run in _steps().values()
        for line in run.replace("\\\n", " ").splitlines()
        if line.strip().startswith("trustgate ")
    ]
    assert {tuple(c[1:3]) for c in commands} >= {("policy", "sign"), ("policy", "verify")}
    for command in commands:
        words = [w if not w.startswith("$(") else "1" for w in command[1:]]
        parser.parse_args(words)  # exits (SystemExit) on a flag the CLI does not have


def test_the_example_workflow_deploys_what_it_signed(tmp_path: Path) -> None:
    """The Deploy step's values, rendered by the chart and mounted, verify."""
    _signed(tmp_path)  # tmp_path/policies, signed
    script = _steps()["Deploy"].split("<<'PY'\n", 1)[1].split("\nPY", 1)[0]
    made = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(script)],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        check=True,
    )
    objects = render(json.loads(made.stdout))
    spec = one(objects, "Deployment")["spec"]["template"]["spec"]
    mounted = _lay_out(_volume(spec), _config_maps(objects), tmp_path / "mounted")
    assert verify_directory(mounted, AUTHORITIES).authority == "policy-team"
