"""The README and docs/*.md hold: their snippets load, and their commands run as written.

Every ``sh`` block of README.md, certs/README.md and docs/*.md runs in order, one
session per document (:mod:`tests.support.docsession`): what can run here runs,
what needs a cluster, a container runtime or a registry (blocks marked ``sh
cluster`` or ``sh image``) runs its local counterpart. ``console`` transcripts
must print what they show.
"""

from __future__ import annotations

import json
import re
import shutil
from collections.abc import Iterator
from pathlib import Path
from xml.etree import ElementTree as ET

import pytest

from tests.support.cosign import generate_key, public_pem
from tests.support.docblocks import DOCUMENTS, REPO, blocks, commands, transcript
from tests.support.dockerd import Dockerd, start_dockerd
from tests.support.docsession import DocSession
from tests.support.kubeapi import ApiServer, start_api_server
from webhook.policy.loader import load_directory

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


def test_the_first_policy_of_policies_md_lints(tmp_path: Path) -> None:
    """The reference's first example is a policy that loads, every field as documented."""
    first = next(b for b in blocks(REPO / "docs" / "policies.md") if b.lang == "yaml")
    (tmp_path / "policy.yaml").write_text(first.body)
    (policy,) = load_directory(tmp_path).policies
    assert policy.name == "production" and policy.signatures and policy.freshness


# What each trustgate command of the documents must end with: (exit code, text its output
# holds). A command without an entry fails the test, so that a new one is checked too.
EXPECTED = {
    "review": (1, '"allowed": false'),
    "check --namespace prod-web quay.io/acme/api:1.2 nginx": (1, "1 allowed, 0 warned, 1 denied"),
    "audit examples/": (1, "allowed, 1 warned, 1 denied"),
    "audit examples/ --output junit": (1, ""),
    "policy lint": (0, "test cases are valid"),
    "policy test": (0, " 0 failed"),
    "audit --cluster": (1, "DENIED"),
    "audit --cluster -n prod-web --policies policies/ -o json": (1, '"decision": "denied"'),
    "certs generate": (0, "wrote certs/ca.crt"),
}


@pytest.fixture(scope="module")
def api(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ApiServer]:
    server = start_api_server(tmp_path_factory.mktemp("kubeapi"))
    yield server
    server.stop()


@pytest.fixture(scope="module")
def dockerd(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Dockerd | None]:
    """A stand-in Docker daemon for ``make image``, when the docker command is installed."""
    if shutil.which("docker") is None:
        yield None
        return
    daemon = start_dockerd(tmp_path_factory.mktemp("dockerd"))
    yield daemon
    daemon.stop()


RUNNABLE = [d for d in DOCUMENTS if any(b.lang in ("sh", "console") for b in blocks(d))]


@pytest.mark.parametrize("document", RUNNABLE, ids=[str(d.relative_to(REPO)) for d in RUNNABLE])
def test_document_commands_run_as_written(
    document: Path, tmp_path: Path, api: ApiServer, dockerd: Dockerd | None
) -> None:
    session = DocSession(tmp_path, api, dockerd, EXPECTED)
    try:
        for block in blocks(document):
            if block.lang == "sh":
                for command in commands(block):
                    session.run(command)
            elif block.lang == "console":
                for command, output in transcript(block):
                    done = session.shell(command)
                    shown = "\n".join(line.rstrip() for line in done.stdout.splitlines())
                    assert shown.strip("\n") == output, (block.where, done.stdout, done.stderr)
    finally:
        session.close()
    assert session.ran or document.name != "README.md"
    if document == README:
        # The README's sample answer of the server is what the server and review answer.
        sample = json.loads(re.findall(r"```json\n(.*?)```", README.read_text(), re.S)[0])
        answers = [json.loads(o.stdout) for c, o in session.outputs.items() if "review" in c]
        answers += [json.loads(o.stdout) for c, o in session.outputs.items() if "curl" in c]
        assert answers and all(answer == sample for answer in answers), answers
        report = ET.parse(tmp_path / "trustgate.xml").getroot()
        assert report.tag == "testsuite" and report.get("failures") == "1"


def test_the_readme_and_quickstart_reach_a_cluster(tmp_path: Path, api: ApiServer) -> None:
    """README and the kind quickstart build, load and install one image, in audit mode first."""
    for document in (README, REPO / "docs" / "install.md"):
        lines = [c.text for b in blocks(document) if b.lang == "sh" for c in commands(b)]
        build = next(i for i, line in enumerate(lines) if line.startswith("make image"))
        load = next(i for i, line in enumerate(lines) if re.match(r"kind load|\S+ push", line))
        install = next(i for i, line in enumerate(lines) if line.startswith("helm install"))
        assert build < load < install, (document, lines)
        assert "--set image.repository=" in lines[install], lines[install]
        assert "--set image.tag=" in lines[install], lines[install]
        # The first install brings no enforce policy: only the chart's audit-mode default.
        assert "policies.files" not in lines[install], lines[install]


def test_no_document_calls_a_bare_trustgate() -> None:
    """After ``make run`` the command is .venv/bin/trustgate: a bare one is not on PATH."""
    bare = [
        f"{block.where}: {line}"
        for document in DOCUMENTS
        for block in blocks(document)
        if block.lang in ("sh", "console")
        for line in block.body.splitlines()
        if re.match(r"(\$ )?trustgate ", line.strip())
    ]
    assert bare == []
