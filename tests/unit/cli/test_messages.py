"""Mistakes a newcomer makes first, each answered with what to do instead."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
from cryptography import x509

from tests.support.kube import policy_yaml
from webhook.cli.main import main

REPO = Path(__file__).resolve().parents[3]


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture
def policies(tmp_path: Path) -> Path:
    directory = tmp_path / "policies"
    directory.mkdir()
    (directory / "prod.yaml").write_text(policy_yaml())
    return directory


def test_review_of_a_manifest_points_to_audit(
    policies: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, err = run(
        capsys, "review", str(REPO / "examples" / "web.yaml"), "--policies", str(policies)
    )
    assert (code, out) == (2, "")
    assert "is not valid JSON" in err
    assert f"run: trustgate audit {REPO / 'examples' / 'web.yaml'}" in err
    deployment = tmp_path / "deployment.json"
    deployment.write_text(json.dumps({"apiVersion": "apps/v1", "kind": "Deployment"}))
    code, _, err = run(capsys, "review", str(deployment), "--policies", str(policies))
    assert code == 2
    assert "holds a Deployment, not an AdmissionReview; to judge Kubernetes manifests" in err
    assert f"run: trustgate audit {deployment}" in err


@pytest.mark.parametrize("flag", [[], ["--volume"]])
def test_check_of_a_url_is_bad_input(
    policies: Path, capsys: pytest.CaptureFixture[str], flag: list[str]
) -> None:
    code, out, err = run(
        capsys, "check", *flag, "https://quay.io/acme/api:1.2", "--policies", str(policies)
    )
    assert (code, out) == (2, "")
    assert "starts with a URL scheme (https://), which an image reference does not have" in err
    assert 'write "quay.io/acme/api:1.2"' in err


def test_check_of_a_malformed_reference_is_bad_input(
    policies: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, _, err = run(capsys, "check", "quay.io/acme/api@sha256:12", "--policies", str(policies))
    assert code == 2
    assert 'digest "sha256:12" must have 64 hex characters' in err


def test_a_missing_policy_directory_says_where_its_name_came_from(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("TRUSTGATE_POLICIES", raising=False)
    code, _, err = run(capsys, "check", "nginx")
    assert code == 2
    assert "policy directory policies does not exist (the default, ./policies" in err
    assert "pass --policies DIR or set $TRUSTGATE_POLICIES" in err

    monkeypatch.setenv("TRUSTGATE_POLICIES", "/etc/trustgate/policies")
    code, _, err = run(capsys, "policy", "lint")
    assert code == 2
    assert (
        "policy directory /etc/trustgate/policies does not exist (from $TRUSTGATE_POLICIES:" in err
    )

    code, _, err = run(capsys, "policy", "test", "--policies", "polices")
    assert code == 2
    assert "policy directory polices does not exist (from --policies: check the path)" in err


def test_certs_are_for_the_namespace_the_docs_install_into(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, _, _ = run(capsys, "certs", "generate", "--out", str(tmp_path))
    assert code == 0
    cert = x509.load_pem_x509_certificate((tmp_path / "tls.crt").read_bytes())
    names = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert "trustgate.trustgate-system.svc" in names.get_values_for_type(x509.DNSName)


@pytest.mark.e2e
@pytest.mark.parametrize("flag", ["--port", "--metrics-port"])
def test_a_busy_port_names_the_flag_that_sets_it(policies: Path, flag: str) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        ports = (
            ["--port", str(port)]
            if flag == "--port"
            else ["--port", "0", "--metrics-port", str(port)]
        )
        started = time.monotonic()
        done = subprocess.run(
            [sys.executable, "-m", "webhook.cli.main", "serve", "--insecure-http", "--host",
             "127.0.0.1", *ports, "--policies", str(policies)],
            capture_output=True, text=True, timeout=60, check=False,
        )  # fmt: skip
    assert done.returncode == 2, done.stderr
    assert f"port {port} on 127.0.0.1 is in use by another process" in done.stderr
    assert f"choose another port with {flag} N" in done.stderr
    if flag == "--port":
        assert "(make run: PORT=N)" in done.stderr
    assert "Can't connect" not in done.stderr
    assert time.monotonic() - started < 5, "refused at once, without gunicorn's retries"
