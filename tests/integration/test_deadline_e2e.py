"""One hard deadline per review, end to end: registries that trickle their headers or
their body one byte at a time (each byte restarts a per-read timeout) cannot hold the
CLI or `trustgate serve` past the review's deadline; the denial names the slow host."""

from __future__ import annotations

import subprocess
import time
from pathlib import Path

import pytest
import requests

from tests.integration.conftest import start_server, stop_server, trustgate_command
from tests.integration.test_isolation_e2e import KEY_SIGNATURES, policy, post, write_policies
from tests.support.hostile import hostile_server, trickle_body, trickle_headers

pytestmark = pytest.mark.e2e

DEADLINE = 2.0
#: Process start-up (imports, policy loading) on a busy shared machine.
STARTUP = 8.0


def setup(tmp_path: Path, host: str) -> tuple[Path, Path]:
    policies = tmp_path / "policies"
    write_policies(
        policies, [policy("signed", '["prod-*", "default"]', f'"{host}/**"', KEY_SIGNATURES)]
    )
    config = tmp_path / "trustgate.yaml"
    config.write_text(
        f"deadlineSeconds: {DEADLINE}\npolicies: {{reloadIntervalSeconds: 0}}\n"
        f'registries: {{"{host}": {{insecure: true}}}}\n'
    )
    return policies, config


@pytest.mark.parametrize("behaviour", [trickle_headers, trickle_body])
def test_check_answers_and_exits_at_the_deadline(tmp_path: Path, behaviour: object) -> None:
    with hostile_server(behaviour) as slow:  # type: ignore[arg-type]
        policies, config = setup(tmp_path, slow.host)
        started = time.monotonic()
        done = subprocess.run(
            [*trustgate_command(), "check", f"{slow.host}/acme/app:1",
             "--policies", str(policies), "--config", str(config)],
            capture_output=True, text=True, timeout=60,
        )  # fmt: skip
        elapsed = time.monotonic() - started
    assert done.returncode == 1, done.stderr
    assert slow.host in done.stdout and "timed out" in done.stdout, done.stdout
    assert f"deadline of {DEADLINE:g} s" in done.stdout, done.stdout
    assert elapsed < DEADLINE + STARTUP


@pytest.mark.parametrize("behaviour", [trickle_headers, trickle_body])
def test_serve_answers_a_single_image_review_at_the_deadline(
    tmp_path: Path, behaviour: object
) -> None:
    with hostile_server(behaviour) as slow:  # type: ignore[arg-type]
        policies, config = setup(tmp_path, slow.host)
        server = start_server(tmp_path, policies, config.read_text())
        try:
            started = time.monotonic()
            response = post(server, requests.Session(), f"{slow.host}/acme/app:1", "prod-web")
            elapsed = time.monotonic() - started
        finally:
            assert stop_server(server) == 0
    assert response["allowed"] is False
    message = response["status"]["message"]
    assert message.startswith(f'image {slow.host}/acme/app:1 denied by policy "signed": ')
    assert f"{slow.host} timed out" in message and f"deadline of {DEADLINE:g} s" in message
    assert elapsed < DEADLINE + 1.5
