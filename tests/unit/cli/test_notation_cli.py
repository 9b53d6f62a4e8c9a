"""``check``, ``audit`` and ``policy test`` with a Notation authority, against a real registry.

The commands build their engine as the server does (services.build_engine), so a Notation
signer shows where a cosign signer does: in the note of how the image passed, and in the
reason of a denial.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
import yaml
from cryptography.hazmat.primitives.serialization import Encoding

from tests.support.notation_images import COSE, of, sign_image
from tests.support.notation_pki import Authority
from tests.support.registry import Registry, default_layer, push_image
from webhook.cli.main import main

SUBJECT = "CN=builder,O=acme-rabbits,L=Seattle,ST=WA,C=US"


@pytest.fixture(scope="module")
def root() -> Authority:
    return Authority.root()


@pytest.fixture
def setup(tmp_path: Path, registry: Registry, root: Authority) -> tuple[Path, Path]:
    """(policy directory, trustgate.yaml): a notation authority over the test registry."""
    policies = tmp_path / "policies"
    policies.mkdir()
    (policies / "ca.pem").write_bytes(root.cert.public_bytes(Encoding.PEM))
    (policies / "p.yaml").write_text(
        "apiVersion: trustgate.dev/v1alpha1\nkind: ImagePolicy\nmetadata: {name: wabbit}\n"
        f'spec:\n  registries: ["{registry.host}/**"]\n  signatures:\n    authorities:\n'
        "      - name: wabbit\n        notation:\n          trustStore: ca.pem\n"
        '          trustedIdentities: ["x509.subject: C=US, ST=WA, O=acme-rabbits"]\n'
        "          override: {revocation: skip}\n"
    )
    config = tmp_path / "trustgate.yaml"
    config.write_text(yaml.safe_dump({"registries": {registry.host: {"insecure": True}}}))
    return policies, config


def image(registry: Registry, repository: str, root: Authority, *, signed: bool) -> str:
    content = repository.encode() + str(time.monotonic_ns()).encode()
    digest = push_image(registry, repository, tag="v1", layers=[default_layer(content=content)])
    if signed:
        sign_image(registry, repository, digest, of(root.intermediate().leaf("builder")),
                   media_type=COSE)  # fmt: skip
    return f"{registry.host}/{repository}:v1"


def run(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    code = main(argv)
    out, _ = capsys.readouterr()
    return code, out


def test_check_names_the_notation_signer(
    registry: Registry,
    root: Authority,
    setup: tuple[Path, Path],
    capsys: pytest.CaptureFixture[str],
) -> None:
    policies, config = setup
    good = image(registry, "cli/notation-good", root, signed=True)
    bad = image(registry, "cli/notation-bad", root, signed=False)
    files = ["--policies", str(policies), "--config", str(config)]
    code, out = run(["check", good, bad, *files, "--output", "json"], capsys)
    assert code == 1
    rows = {row["image"]: row for row in json.loads(out)}
    assert rows[good]["decision"] == "allowed"
    assert rows[good]["notes"][0] == (
        f"policy \"wabbit\": signed by wabbit (x509.subject '{SUBJECT}')"
    )
    assert rows[bad]["decision"] == "denied"
    assert "wabbit: no Notation signature refers to sha256:" in rows[bad]["reasons"][0]


def test_audit_judges_manifests_with_notation_signatures(
    registry: Registry,
    root: Authority,
    setup: tuple[Path, Path],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    policies, config = setup
    good = image(registry, "cli/notation-audit-good", root, signed=True)
    bad = image(registry, "cli/notation-audit-bad", root, signed=False)
    manifest = tmp_path / "pods.yaml"
    manifest.write_text(
        "---\n".join(
            yaml.safe_dump(
                {
                    "apiVersion": "v1",
                    "kind": "Pod",
                    "metadata": {"name": name},
                    "spec": {"containers": [{"name": "app", "image": ref}]},
                }
            )
            for name, ref in (("good", good), ("bad", bad))
        )
    )
    files = ["--policies", str(policies), "--config", str(config)]
    code, out = run(["audit", str(manifest), *files, "-n", "prod", "--output", "json"], capsys)
    assert code == 1
    rows = {row["image"]: row for row in json.loads(out)}
    assert rows[good]["decision"] == "allowed"
    assert "signed by wabbit (x509.subject" in rows[good]["notes"][0]
    assert rows[bad]["decision"] == "denied"
    assert "0 of the 1 required authorities verified (wabbit: " in rows[bad]["reasons"][0]


def test_policy_test_runs_cases_against_notation_signatures(
    registry: Registry,
    root: Authority,
    setup: tuple[Path, Path],
    capsys: pytest.CaptureFixture[str],
) -> None:
    policies, config = setup
    good = image(registry, "cli/notation-case-good", root, signed=True)
    bad = image(registry, "cli/notation-case-bad", root, signed=False)
    (policies / "tests.yaml").write_text(
        yaml.safe_dump(
            {
                "apiVersion": "trustgate.dev/v1alpha1",
                "kind": "ImagePolicyTest",
                "metadata": {"name": "notation"},
                "spec": {
                    "cases": [
                        {"name": "signed", "image": good, "expect": "allowed"},
                        {
                            "name": "unsigned",
                            "image": bad,
                            "expect": "denied",
                            "reason": "wabbit: no Notation signature refers to",
                        },
                        {"name": "wrong", "image": bad, "expect": "allowed"},
                    ]
                },
            }
        )
    )
    argv = ["policy", "test", str(policies), "--config", str(config), "-o", "json"]
    code, out = run(argv, capsys)
    assert code == 1
    results = {row["case"]: row for row in json.loads(out)}
    assert results["signed"]["passed"] and results["unsigned"]["passed"]
    assert (results["wrong"]["passed"], results["wrong"]["got"]) == (False, "denied")
