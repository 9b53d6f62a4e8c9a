"""The Containerfile's install steps, run in a virtualenv as the image build runs them.

No container registry is reachable here, so the image itself is not built (``make image``
does that where one is; docs/install.md). Instead the build stage's steps run on a copy of
exactly what the Containerfile copies: a virtualenv, ``pip install .`` of that copy, the
smoke test; then the runtime stage's environment, policies and command start a real server
from the installed package. The one difference: the build reaches PyPI for dependencies,
while here they come from the test environment (``pip install --no-deps``, offline).
"""

from __future__ import annotations

import json
import os
import re
import shlex
import subprocess
import sys
import time
from pathlib import Path

import pytest
import requests

from tests.integration.conftest import free_port
from webhook.core import certs

REPO = Path(__file__).resolve().parents[2]
CONTAINERFILE = REPO / "Containerfile"
VENV_IN_IMAGE = "/opt/trustgate"


def stages() -> list[list[tuple[str, str]]]:
    """The Containerfile's instructions (with continuation lines joined), by stage."""
    text = re.sub(r"\\\n\s*", " ", CONTAINERFILE.read_text())
    out: list[list[tuple[str, str]]] = []
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        instruction, _, rest = line.partition(" ")
        if instruction.upper() == "FROM":
            out.append([])
        if out:
            out[-1].append((instruction.upper(), rest.strip()))
    return out


def local(command: str, venv: Path) -> str:
    """A build step as it runs here: in ``venv``, with dependencies from this environment."""
    command = command.replace(VENV_IN_IMAGE, str(venv)).replace("python3.11", sys.executable)
    steps = [s.strip() for s in command.split("&&")]
    kept = []
    for step in steps:
        if "--upgrade pip" in step:
            continue  # the pip the venv comes with serves
        if re.search(r"pip install .*\s\.$", step):
            # The build backend still comes from the index, in an isolated build as in the
            # image; the dependencies are this environment's.
            step = step.replace("pip install", "pip install --no-deps")
        kept.append(step)
    return " && ".join(kept)


def python(venv: Path, code: str, env: dict[str, str], cwd: Path) -> str:
    """What ``code`` prints, run by the venv's interpreter (in ``cwd``, not this tree)."""
    return subprocess.run(
        [str(venv / "bin" / "python"), "-c", code],
        env=env,
        cwd=cwd,
        capture_output=True,
        text=True,
        check=True,
    ).stdout


@pytest.mark.e2e
def test_image_install_steps_give_a_working_server(tmp_path: Path) -> None:
    build, runtime = stages()
    context = tmp_path / "context"
    work = context / "src"
    work.mkdir(parents=True)
    # What the build stage copies, and nothing else: a file it forgets fails here.
    for instruction, rest in build:
        if instruction == "COPY":
            *sources, destination = shlex.split(rest)
            target = work / destination
            for source in sources:
                path = REPO / source
                copied = target / path.name if destination.endswith("/") else target
                if path.is_dir():
                    subprocess.run(["cp", "-r", str(path), str(copied)], check=True)
                else:
                    copied.parent.mkdir(parents=True, exist_ok=True)
                    copied.write_bytes(path.read_bytes())
    venv = tmp_path / "opt-trustgate"
    (run,) = [rest for instruction, rest in build if instruction == "RUN"]
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    # Create the venv first (the step's first command), then let it see this
    # environment's dependencies, but not this source tree.
    first, _, remaining = local(run, venv).partition(" && ")
    subprocess.run(first, shell=True, cwd=work, env=env, check=True)
    (site,) = venv.glob("lib/python*/site-packages")
    venv_pth = site / "test-dependencies.pth"
    own = python(venv, "import sys; print('\\n'.join(sys.path))", env, tmp_path).split()
    venv_pth.write_text(
        "\n".join(
            p
            for p in sys.path
            if p and p not in own and Path(p).is_dir() and Path(p).resolve() != REPO
        )
    )
    result = subprocess.run(
        remaining, shell=True, cwd=work, env=env, capture_output=True, text=True, timeout=300
    )
    assert result.returncode == 0, result.stdout + result.stderr
    trustgate = venv / "bin" / "trustgate"
    where = python(venv, "import webhook; print(webhook.__file__)", env, tmp_path)
    assert where.startswith(str(site)), f"not the installed copy: {where}"

    # The runtime stage: its policies, its environment, its command.
    policies = tmp_path / "etc-trustgate-policies"
    copies = [shlex.split(rest) for instruction, rest in runtime if instruction == "COPY"]
    (policy_source,) = [c[0] for c in copies if c[-1] == "/etc/trustgate/policies"]
    subprocess.run(["cp", "-r", str(REPO / policy_source), str(policies)], check=True)
    image_env = dict(re.findall(r"(\w+)=(\S+)", next(rest for i, rest in runtime if i == "ENV")))
    assert image_env["TRUSTGATE_POLICIES"] == "/etc/trustgate/policies"
    run_env = {**env, **image_env, "TRUSTGATE_POLICIES": str(policies)}
    run_env["PATH"] = f"{venv / 'bin'}:{env['PATH']}"
    lint = subprocess.run(
        [str(trustgate), "policy", "lint"],
        env=run_env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
    )
    assert lint.returncode == 0, lint.stdout + lint.stderr
    (entrypoint,) = [rest for i, rest in runtime if i == "ENTRYPOINT"]
    (cmd,) = [rest for i, rest in runtime if i == "CMD"]
    argv = json.loads(entrypoint) + json.loads(cmd)
    assert argv[0] == "trustgate"
    tls = certs.generate(
        tmp_path / "tls", service="trustgate", namespace="t", extra_sans=["localhost"]
    )
    argv = [a.replace("/etc/trustgate/tls", str(tls.cert.parent)) for a in argv]
    port = free_port()
    log = (tmp_path / "serve.log").open("wb")
    server = subprocess.Popen(
        [str(trustgate), *argv[1:], "--host", "127.0.0.1", "--port", str(port)],
        env=run_env,
        stdout=log,
        stderr=subprocess.STDOUT,
        cwd=tmp_path,
    )
    try:
        deadline = time.monotonic() + 30
        while True:
            assert server.poll() is None, (tmp_path / "serve.log").read_text()
            try:
                ready = requests.get(
                    f"https://localhost:{port}/readyz", verify=str(tls.ca), timeout=2
                )
                if ready.status_code == 200:
                    break
            except requests.RequestException:
                pass
            assert time.monotonic() < deadline, (tmp_path / "serve.log").read_text()
            time.sleep(0.2)
    finally:
        server.terminate()
        server.wait(timeout=20)
