"""``trustgate serve``: what it refuses before serving; how --workers and --cpu-request parse."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.support.cli import run
from webhook.cli.main import build_parser


def test_serve_refuses_missing_tls(policies: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run(capsys, "serve", "--policies", str(policies))
    assert code == 2
    assert "--cert and --key are required" in err


def test_serve_refuses_broken_policies(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run(capsys, "serve", "--policies", str(tmp_path), "--insecure-http")
    assert code == 2
    assert "no ImagePolicy documents" in err


def test_serve_workers_default_to_auto_and_take_a_count() -> None:
    parser = build_parser({})
    assert parser.parse_args(["serve"]).workers == "auto"
    assert parser.parse_args(["serve", "--workers", "auto"]).workers == "auto"
    assert parser.parse_args(["serve", "--workers", "3"]).workers == 3
    assert parser.parse_args(["serve"]).cpu_request is None


@pytest.mark.parametrize("value", ["0", "-2", "two", "1.5", ""])
def test_serve_refuses_a_worker_count_below_one(
    value: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exited:
        build_parser({}).parse_args(["serve", "--workers", value])
    assert exited.value.code == 2
    assert (
        f"argument --workers: must be auto or a whole number of at least 1, got {value!r}"
        in capsys.readouterr().err
    )


def test_serve_cpu_request_comes_from_the_downward_api_variable(
    capsys: pytest.CaptureFixture[str],
) -> None:
    env = {"TRUSTGATE_CPU_REQUEST_MILLICORES": "1500"}
    assert build_parser(env).parse_args(["serve"]).cpu_request == 1500
    assert build_parser(env).parse_args(["serve", "--cpu-request", "250"]).cpu_request == 250
    # Unset in the pod (no request): the variable is empty or 0, and nothing counts.
    assert (
        build_parser({"TRUSTGATE_CPU_REQUEST_MILLICORES": ""}).parse_args(["serve"]).cpu_request
        is None
    )
    with pytest.raises(SystemExit):
        build_parser({}).parse_args(["serve", "--cpu-request", "1.5"])
    assert "must be a whole number of millicores, got '1.5'" in capsys.readouterr().err


def test_serve_register_needs_tls(
    policies: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    registration = tmp_path / "registration.json"
    registration.write_text("{}")
    code, _, err = run(
        capsys, "serve", "--policies", str(policies), "--insecure-http",
        "--register", str(registration),
    )  # fmt: skip
    assert code == 2
    assert "--register needs TLS: the API server calls webhooks over HTTPS" in err


def test_serve_register_refuses_a_registration_that_does_not_load_before_serving(
    policies: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from tests.support.registration import document, write
    from webhook.core import certs

    tls = certs.generate(tmp_path / "tls", service="trustgate", namespace="trustgate-system")
    tls.ca.unlink()  # no ca.crt beside --cert, and no caBundle in the file
    registration = write(tmp_path, document())
    code, _, err = run(
        capsys, "serve", "--policies", str(policies), "--cert", str(tls.cert),
        "--key", str(tls.key), "--port", "1", "--register", str(registration),
    )  # fmt: skip
    assert code == 2
    assert f"{registration}: a webhook has no caBundle, and {tls.ca} cannot be read" in err
