"""A running server loads only signed policy sets, and keeps the last good one after a refusal.

A real ``trustgate serve`` (gunicorn over TLS) reads ``tmp/current``, a link to
a policy directory swapped as git-sync swaps its worktree link; some cases
edit the live directory in place instead, as whoever can write to it would.
Each tampered, unsigned, wrongly signed or replayed set must be refused within
a reload interval or so (seen on /readyz and /metrics) while the last good set
keeps denying what it denied. One server per group of cases keeps this short.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import requests
from cryptography.hazmat.primitives.asymmetric import ec
from prometheus_client.parser import text_string_to_metric_families

from tests.integration.conftest import Server, free_port, start_server, stop_server, wait_for
from tests.integration.conftest import trustgate_command as command
from tests.support.kube import pod_spec, policy_yaml, review, workload
from tests.support.policysigning import EXCEPTION, FILES, public_pem, signed_set

pytestmark = pytest.mark.e2e

INTERVAL = 0.5
#: How long a refusal may take to show: the interval, plus a loaded two-core machine.
WITHIN = 10.0
TEAM = ec.generate_private_key(ec.SECP256R1())
STRANGER = ec.generate_private_key(ec.SECP256R1())
#: The production policy's allowlist denies this in prod-web, and admits ALLOWED.
DENIED = "docker.io/library/nginx:1.27"
ALLOWED = "quay.io/acme/api:1.0"
#: What someone weakening the policies wants: any registry.
WEAK = {**FILES, "policy.yaml": policy_yaml(registries='["**"]')}
WAIVER = EXCEPTION.replace("name: vendor", "name: everything").replace(
    'images: ["quay.io/vendor/**"]', 'images: ["docker.io/**"]'
)


def config(tmp: Path, *, required: bool = True, extra: str = "") -> str:
    key = tmp / "team.pub"
    key.write_bytes(public_pem(TEAM))
    return (
        f"policies:\n  reloadIntervalSeconds: {INTERVAL}\n  signature:\n"
        f"    required: {str(required).lower()}\n{extra}"
        f"    authorities:\n      - name: policy-team\n        key: {{file: {key}}}\n"
    )


class Sets:
    """Policy sets under ``tmp/sets``; ``tmp/current`` is the link the server reads."""

    def __init__(self, tmp: Path) -> None:
        self.root = tmp / "sets"
        self.link = tmp / "current"
        self.count = 0

    def new(self, key: Any = TEAM, version: int = 2, files: dict[str, str] | None = None) -> Path:
        self.count += 1
        return signed_set(self.root / f"set{self.count}", key, version, files)

    def copy(self, directory: Path) -> Path:
        self.count += 1
        return Path(shutil.copytree(directory, self.root / f"set{self.count}"))

    def publish(self, directory: Path) -> None:
        """Point the link at ``directory`` in one rename, as git-sync does."""
        swap = self.link.with_name("current.swap")
        os.symlink(directory, swap)
        os.replace(swap, self.link)

    @property
    def live(self) -> Path:
        return Path(os.path.realpath(self.link))


def readyz(server: Server) -> requests.Response:
    return server.get("/readyz")


def signature(server: Server) -> dict[str, Any]:
    body: dict[str, Any] = readyz(server).json()["policySignature"]
    return body


def samples(server: Server) -> dict[tuple[str, str], float]:
    """(series, reason label or "") -> value, of the policy-set metrics."""
    found = {}
    for family in text_string_to_metric_families(server.get("/metrics").text):
        if family.name.startswith("trustgate_policy_set"):
            for sample in family.samples:
                found[sample.name, sample.labels.get("reason", "")] = sample.value
    return found


def wait_signature(
    server: Server, predicate: Callable[[dict[str, Any]], bool], what: str
) -> tuple[dict[str, Any], float]:
    """The policySignature once ``predicate`` holds, and how long that took; or fail."""
    started = time.monotonic()
    while True:
        state = signature(server)
        if predicate(state):
            return state, time.monotonic() - started
        if time.monotonic() - started > WITHIN:
            pytest.fail(f"not {what} within {WITHIN}s: {state}\n{server.log_text()[-3000:]}")
        time.sleep(0.05)


def refused_as(reason: str, since: float) -> Callable[[dict[str, Any]], bool]:
    """Whether a policySignature says a set was refused for ``reason`` after ``since``."""

    def holds(state: dict[str, Any]) -> bool:
        last = state["lastRefusal"]
        return bool(
            state["state"] == "refused" and last["reason"] == reason and last["at"] >= since
        )

    return holds


def allowed(server: Server, image: str) -> bool:
    return bool(server.decide(image)["allowed"])


@pytest.fixture
def sets(tmp_path: Path) -> Sets:
    return Sets(tmp_path)


def test_every_tampered_or_replayed_set_is_refused_and_the_last_good_one_enforced(
    tmp_path: Path, sets: Sets
) -> None:
    older = sets.new(version=1, files=WEAK)  # signed once, weaker: a replay candidate
    good = sets.new(version=2)
    sets.publish(sets.copy(good))
    server = start_server(tmp_path, sets.link, config(tmp_path))
    slowest = 0.0
    try:
        state, _ = wait_signature(server, lambda s: s["state"] == "verified", "verified")
        assert (state["authority"], state["version"]) == ("policy-team", 2)
        assert state["digest"].startswith("sha256:")
        assert samples(server)["trustgate_policy_set_signature_valid", ""] == 1
        assert samples(server)["trustgate_policy_set_version", ""] == 2
        assert not allowed(server, DENIED) and allowed(server, ALLOWED)

        def in_place(change: Callable[[Path], None]) -> Callable[[], None]:
            return lambda: change(sets.live)

        def swap(directory: Path) -> Callable[[], None]:
            return lambda: sets.publish(directory)

        unsigned = sets.new(files=WEAK)
        shutil.rmtree(unsigned / ".trustgate")
        cases: list[tuple[str, Callable[[], None], str, str]] = [
            (
                "a policy",
                in_place(lambda d: (d / "policy.yaml").write_text(WEAK["policy.yaml"])),
                "altered",
                "policy.yaml: changed",
            ),
            (
                "a key file beside it",
                in_place(lambda d: (d / "keys/signer.pub").write_bytes(public_pem(STRANGER))),
                "altered",
                "keys/signer.pub: changed",
            ),
            (
                "an exception",
                in_place(lambda d: (d / "exception.yaml").write_text(WAIVER)),
                "altered",
                "exception.yaml: changed",
            ),
            (
                "a test case",
                in_place(
                    lambda d: (d / "tests.yaml").write_text(FILES["tests.yaml"] + "# edited\n")
                ),
                "altered",
                "tests.yaml: changed",
            ),
            (
                "an added file",
                in_place(lambda d: (d / "waiver.yaml").write_text(WAIVER)),
                "altered",
                "waiver.yaml: added",
            ),
            (
                "a removed file",
                in_place(lambda d: (d / "exception.yaml").unlink()),
                "altered",
                "exception.yaml: removed",
            ),
            (
                "a renamed file",
                in_place(lambda d: (d / "tests.yaml").rename(d / "tests-renamed.yaml")),
                "altered",
                "tests-renamed.yaml: added",
            ),
            ("an unsigned set", swap(unsigned), "unsigned", "is unsigned"),
            (
                "a set signed by an unlisted key",
                swap(sets.new(STRANGER, version=9, files=WEAK)),
                "untrusted",
                "not an authority",
            ),
            ("an older signed set", swap(older), "replayed", "older than version 2"),
            (
                "the same version with other content",
                swap(sets.new(version=2, files=WEAK)),
                "replayed",
                "sign with --version 3",
            ),
        ]
        for name, change, reason, words in cases:
            before = samples(server)["trustgate_policy_set_refusals_total", reason]
            since = time.time()
            change()
            state, took = wait_signature(server, refused_as(reason, since), f"refused ({name})")
            slowest = max(slowest, took)
            assert words in state["lastRefusal"]["message"], (name, state)
            answer = readyz(server)
            # Every replica sees the same directory: still ready, serving the last good set.
            assert answer.status_code == 200, (name, answer.text)
            assert answer.json()["lastError"].startswith(f"refused ({reason})"), name
            assert state["version"] == 2 and state["authority"] == "policy-team", name
            metrics = samples(server)
            assert metrics["trustgate_policy_set_refusals_total", reason] >= before + 1, name
            assert metrics["trustgate_policy_set_signature_valid", ""] == 0, name
            assert metrics["trustgate_policy_set_version", ""] == 2, name
            assert not allowed(server, DENIED), name  # the weakened set is not in force
            sets.publish(sets.copy(good))
            wait_signature(server, lambda s: s["state"] == "verified", f"verified after {name}")
            assert samples(server)["trustgate_policy_set_signature_valid", ""] == 1, name

        assert server.logged("policy reload failed, keeping the last good set")
        # A newer, correctly signed set loads, however weak: its signer decided.
        sets.publish(sets.new(version=3, files=WEAK))
        state, took = wait_signature(
            server, lambda s: s["state"] == "verified" and s["version"] == 3, "version 3"
        )
        slowest = max(slowest, took)
        assert allowed(server, DENIED)
        assert samples(server)["trustgate_policy_set_version", ""] == 3
        # ...and version 2, the good set of a moment ago, is now a replay.
        sets.publish(sets.copy(good))
        wait_signature(
            server,
            lambda s: (
                s["state"] == "refused" and "older than version 3" in s["lastRefusal"]["message"]
            ),
            "version 2 refused",
        )
        assert allowed(server, DENIED)
    finally:
        stop_server(server)
    print(f"slowest refusal or load: {slowest:.2f}s (reload interval {INTERVAL}s)")
    assert slowest < WITHIN


def test_start_with_no_signed_set_is_not_ready_and_denies_until_one_is_signed(
    tmp_path: Path, sets: Sets
) -> None:
    unsigned = sets.new(version=1)
    shutil.rmtree(unsigned / ".trustgate")
    sets.publish(unsigned)
    server = start_server(tmp_path, sets.link, config(tmp_path))
    try:
        answer = readyz(server)
        assert answer.status_code == 503, answer.text
        body = answer.json()
        assert "trustgate has no trusted policy set loaded" in body["reason"]
        assert "unsigned" in body["reason"]
        assert body["policySignature"]["state"] == "none"
        assert body["policySignature"]["lastRefusal"]["reason"] == "unsigned"
        # Denied, never the no-match default: even what the set would admit.
        message = server.denial(ALLOWED)
        assert message.startswith("trustgate has no trusted policy set loaded: ")
        assert "is unsigned" in message
        assert server.denial(DENIED).startswith("trustgate has no trusted policy set loaded")
        mutation = requests.post(
            f"{server.url}/mutate",
            data=json.dumps(review(workload("Deployment", pod_spec(ALLOWED)), uid="m-1")),
            headers={"Content-Type": "application/json"},
            verify=str(server.ca),
            timeout=10,
        ).json()["response"]
        assert mutation["allowed"] is True and "patch" not in mutation
        assert mutation["uid"] == "m-1"
        metrics = samples(server)
        assert metrics["trustgate_policy_set_signature_valid", ""] == 0
        assert metrics["trustgate_policy_set_refusals_total", "unsigned"] >= 1
        # Signed where it lies: it loads within an interval, and the pod becomes ready.
        from datetime import UTC, datetime

        from tests.support.policysigning import private_pem
        from webhook.policy.signing.envelope import sign_directory

        sign_directory(sets.live, private_pem(TEAM), source="k", version=1, now=datetime.now(UTC))
        wait_signature(server, lambda s: s["state"] == "verified", "verified once signed")
        assert readyz(server).status_code == 200
        assert allowed(server, ALLOWED) and not allowed(server, DENIED)
    finally:
        assert stop_server(server) == 0


def test_audit_mode_loads_an_unsigned_set_with_a_warning(tmp_path: Path, sets: Sets) -> None:
    unsigned = sets.new(version=1)
    shutil.rmtree(unsigned / ".trustgate")
    sets.publish(unsigned)
    server = start_server(tmp_path, sets.link, config(tmp_path, required=False))
    try:
        answer = readyz(server)
        assert answer.status_code == 200, answer.text
        state = answer.json()["policySignature"]
        assert (state["required"], state["state"]) == (False, "audit")
        assert state["lastRefusal"]["reason"] == "unsigned"
        assert allowed(server, ALLOWED) and not allowed(server, DENIED)
        metrics = samples(server)
        assert metrics["trustgate_policy_set_signature_valid", ""] == 0
        assert metrics["trustgate_policy_set_refusals_total", "unsigned"] == 1
        assert server.logged("without a valid signature")
    finally:
        stop_server(server)


def serve_once(tmp: Path, config_file: Path) -> subprocess.CompletedProcess[str]:
    """``trustgate serve`` of ``tmp/policies``, expected to stop at start-up."""
    port = str(free_port())
    arguments = ["--policies", str(tmp / "policies"), "--config", str(config_file)]
    return subprocess.run(
        [*command(), "serve", *arguments, "--insecure-http", "--host", "127.0.0.1", "--port", port],
        capture_output=True,
        text=True,
        timeout=60,
    )


@pytest.mark.parametrize(
    ("extra", "words"),
    [
        ("    minimumVersion: -1\n", "minimumVersion"),
        # A rollback ConfigMap, and no way to the API server to read it.
        ("    rollback: {configMap: {name: mark}}\n", "rollback.configMap"),
    ],
)
def test_what_the_operator_must_fix_in_the_configuration_stops_serve(
    tmp_path: Path, extra: str, words: str
) -> None:
    (tmp_path / "policies").mkdir()
    path = tmp_path / "trustgate.yaml"
    missing = tmp_path / "no-kubeconfig"
    path.write_text(config(tmp_path, extra=extra) + f"kubernetes: {{kubeconfig: {missing}}}\n")
    done = serve_once(tmp_path, path)
    assert done.returncode == 2, done.stderr
    assert words in done.stderr


def test_an_unreadable_authority_key_stops_serve(tmp_path: Path) -> None:
    (tmp_path / "policies").mkdir()
    path = tmp_path / "trustgate.yaml"
    path.write_text(config(tmp_path))
    (tmp_path / "team.pub").unlink()
    done = serve_once(tmp_path, path)
    assert done.returncode == 2, done.stderr
    assert "team.pub" in done.stderr


def test_every_worker_refuses_and_the_pods_metrics_add_up(tmp_path: Path, sets: Sets) -> None:
    sets.publish(sets.copy(sets.new(version=1)))
    server = start_server(tmp_path, sets.link, config(tmp_path), serve_args=["--workers", "2"])
    try:
        wait_signature(server, lambda s: s["state"] == "verified", "verified")
        since = time.time()
        # In one rename: each worker then sees one change, and refuses it once.
        staged = tmp_path / "policy.yaml"
        staged.write_text(WEAK["policy.yaml"])
        staged.replace(sets.live / "policy.yaml")
        wait_signature(server, refused_as("altered", since), "refused")

        def refusals() -> float:
            return samples(server)["trustgate_policy_set_refusals_total", "altered"]

        # Each worker checks on its own: the pod's count adds both up.
        if not wait_for(lambda: refusals() == 2, WITHIN):
            pytest.fail(f"{refusals()} refusals counted, not 2:\n{server.log_text()}")
        metrics = samples(server)
        # livemin: 0 while any worker is not on a verified set.
        assert metrics["trustgate_policy_set_signature_valid", ""] == 0
        assert metrics["trustgate_policy_set_version", ""] == 1
        assert not allowed(server, DENIED)
    finally:
        stop_server(server)
