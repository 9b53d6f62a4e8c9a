"""The README holds: its policy snippets load, and its `trustgate` commands run as written."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from xml.etree import ElementTree as ET

import pytest

from tests.support.cosign import generate_key, public_pem
from tests.support.kubeapi import ApiServer, kubeconfig, start_api_server, stored
from webhook.policy.loader import load_directory

REPO = Path(__file__).resolve().parents[2]
README = REPO / "README.md"


def test_readme_policy_snippets_load(tmp_path: Path) -> None:
    first, *more = re.findall(r"```yaml\n(.*?)```", README.read_text(encoding="utf-8"), re.S)
    assert more, "the README shows signatures and freshness as a continuation of its policy"
    (tmp_path / "keys").mkdir()
    (tmp_path / "keys" / "release.pub").write_text(public_pem(generate_key("ecdsa-p256")))
    (tmp_path / "policy.yaml").write_text(first + "".join(more))
    (policy,) = load_directory(tmp_path).policies
    assert policy.name == "production"
    assert policy.signatures is not None
    assert [a.name for a in policy.signatures.authorities] == ["release", "ci"]
    assert policy.freshness is not None


# What each README command must end with: (exit code, text its output must hold).
EXPECTED = {
    "review": (1, '"allowed": false'),
    "check": (1, "1 allowed, 0 warned, 1 denied"),
    "audit examples/": (1, "allowed, 1 warned, 1 denied"),
    "audit examples/ --output junit": (1, ""),
    "policy lint": (0, "test cases are valid"),
    "policy test": (0, " 0 failed"),
    "audit --cluster": (1, "DENIED"),
}


def readme_commands() -> list[str]:
    """Every ``trustgate`` command line of the README's shell blocks, comments removed."""
    text = README.read_text(encoding="utf-8")
    lines = []
    for block in re.findall(r"```sh\n(.*?)```", text, re.S):
        for line in block.replace("\\\n", " ").splitlines():
            command = line.split("  #")[0].strip()
            if command.startswith((".venv/bin/trustgate ", "trustgate ")):
                lines.append(command)
    return lines


def expectation(command: str) -> tuple[int, str]:
    words = command.split(" > ")[0].split(" ", 1)[1]
    matches = [key for key in EXPECTED if words.startswith(key)]
    assert matches, f"README command without an expectation in this test: {command}"
    return EXPECTED[max(matches, key=len)]


@pytest.fixture(scope="module")
def api(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ApiServer]:
    server = start_api_server(tmp_path_factory.mktemp("kubeapi"))
    kinds = ("replicasets", "statefulsets", "daemonsets", "replicationcontrollers")
    server.objects = {kind: [] for kind in (*kinds, "cronjobs", "jobs", "pods")}
    server.objects["deployments"] = [stored("Deployment", "web", "prod-web", "nginx:1.27")]
    yield server
    server.stop()


def test_readme_commands_run_as_written(tmp_path: Path, api: ApiServer) -> None:
    commands = readme_commands()
    assert len(commands) >= 7, commands
    for name in ("examples", "docs", "policies"):
        (tmp_path / name).symlink_to(REPO / name)
    script = tmp_path / ".venv" / "bin" / "trustgate"
    script.parent.mkdir(parents=True)
    script.write_text(f'#!/bin/sh\nexec {sys.executable} -m webhook.cli.main "$@"\n')
    script.chmod(0o755)
    env = {
        **os.environ,
        "PATH": f"{script.parent}:{os.environ['PATH']}",
        "PYTHONPATH": str(REPO),
        "KUBECONFIG": str(kubeconfig(tmp_path / "kubeconfig", api, token=api.token)),
    }
    env.pop("TRUSTGATE_POLICIES", None)
    env.pop("TRUSTGATE_CONFIG", None)
    sample = json.loads(re.findall(r"```json\n(.*?)```", README.read_text(), re.S)[0])
    for command in commands:
        code, text = expectation(command)
        done = subprocess.run(
            ["sh", "-c", command], cwd=tmp_path, env=env, capture_output=True, text=True,
            timeout=120, check=False,
        )  # fmt: skip
        assert done.returncode == code, (command, done.stdout, done.stderr)
        assert text in done.stdout, (command, done.stdout)
        if " review " in command:
            # The README's sample answer of the server is the one review prints, field for field.
            assert json.loads(done.stdout) == sample
    report = ET.parse(tmp_path / "trustgate.xml").getroot()
    assert report.tag == "testsuite" and report.get("failures") == "1"
