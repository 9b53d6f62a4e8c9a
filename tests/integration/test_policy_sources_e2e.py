"""Signed policy sets through a running server: a mark that survives restarts, Git and keyless.

The same real ``trustgate serve`` (gunicorn over TLS) as test_policy_signature_e2e.py,
with the other ways a set is signed or remembered: the high-water mark in a file
(``rollback``), which refuses after a restart the older set the process before it
loaded past; commits checked out as git-sync checks them out, SSH-signed
(``source: git``); and keyless signatures made through the test Sigstore (Fulcio and
Rekor stand-ins) and checked offline against its trusted root.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.integration.conftest import start_server, stop_server
from tests.integration.test_policy_signature_e2e import (
    ALLOWED,
    DENIED,
    STRANGER,
    TEAM,
    WEAK,
    Sets,
    allowed,
    config,
    readyz,
    refused_as,
    signature,
    wait_signature,
)
from tests.support.gitsigning import WHEN, commit, git, public_line, source_repo, ssh_key, sync
from tests.support.policysigning import FILES, policy_dir
from tests.support.sigstore_services import SigstoreServices, sigstore_services
from webhook.cli.main import main
from webhook.signatures.policysign import TOKEN_VARIABLE

pytestmark = pytest.mark.e2e


def test_a_replay_is_refused_after_a_restart_by_the_mark_in_a_file(tmp_path: Path) -> None:
    sets = Sets(tmp_path)
    older = sets.new(version=1, files=WEAK)
    sets.publish(sets.new(version=2))
    mark = tmp_path / "state" / "policy-mark.json"
    mark.parent.mkdir()
    settings = config(tmp_path, extra=f"    rollback: {{file: {mark}}}\n")
    server = start_server(tmp_path, sets.link, settings)
    try:
        wait_signature(server, lambda s: s["state"] == "verified", "verified")
    finally:
        assert stop_server(server) == 0
    assert json.loads(mark.read_text())["version"] == 2
    # A new process knows only what the mark says: the older set is still a replay.
    sets.publish(older)
    (tmp_path / "restarted").mkdir()
    server = start_server(tmp_path / "restarted", sets.link, settings)
    try:
        answer = readyz(server)
        assert answer.status_code == 503, answer.text
        assert answer.json()["policySignature"]["lastRefusal"]["reason"] == "replayed"
        assert "older than version 2" in answer.json()["reason"]
        assert "no trusted policy set loaded" in server.denial(ALLOWED)
        sets.publish(sets.new(version=3))
        wait_signature(server, lambda s: s["state"] == "verified", "version 3")
        assert readyz(server).status_code == 200
        assert json.loads(mark.read_text())["version"] == 3
    finally:
        stop_server(server)


@pytest.fixture
def ssh_keys(tmp_path: Path) -> dict[str, Path]:
    home = tmp_path / "ssh"
    home.mkdir()
    return {"team": ssh_key(home, "team"), "other": ssh_key(home, "other")}


def test_git_mode_refuses_unsigned_foreign_tampered_and_older_commits(
    tmp_path: Path, ssh_keys: dict[str, Path]
) -> None:
    signers = tmp_path / "allowed_signers"
    signers.write_text(f"alice@example.com {public_line(ssh_keys['team'])}\n")
    settings = (
        "policies:\n  reloadIntervalSeconds: 0.5\n  signature:\n    required: true\n"
        "    source: git\n    authorities:\n"
        f"      - name: maintainers\n        key: {{allowedSigners: {signers}}}\n"
    )
    repo = source_repo(tmp_path)
    first = commit(repo, FILES, key=ssh_keys["team"])
    link = sync(repo, tmp_path)
    server = start_server(tmp_path, link, settings)
    try:
        state, _ = wait_signature(server, lambda s: s["state"] == "verified", "verified")
        assert (state["authority"], state["version"], state["digest"]) == (
            "maintainers",
            WHEN,
            f"git:{first}",
        )
        assert not allowed(server, DENIED)
        cases = [
            ("an unsigned commit", WHEN + 10, None, "unsigned"),
            ("a commit signed by another key", WHEN + 20, ssh_keys["other"], "untrusted"),
        ]
        for name, when, key, reason in cases:
            since = time.time()
            commit(repo, WEAK, key=key, when=when, message=name)
            sync(repo, tmp_path)
            wait_signature(server, refused_as(reason, since), f"refused ({name})")
            assert readyz(server).status_code == 200, name
            assert not allowed(server, DENIED), name
        # The checkout edited in place, behind git-sync's back.
        since = time.time()
        sync(repo, tmp_path, first)  # the first commit: version WHEN, as loaded
        (link / "policy.yaml").write_text(WEAK["policy.yaml"])
        state, _ = wait_signature(server, refused_as("altered", since), "refused (edited)")
        assert "policy.yaml: changed" in state["lastRefusal"]["message"]
        git(link, "checkout", "--", ".")
        wait_signature(server, lambda s: s["state"] == "verified", "verified again")
        # A newer signed commit loads; the first one is then a replay.
        commit(repo, WEAK, key=ssh_keys["team"], when=WHEN + 30, message="newer")
        sync(repo, tmp_path)
        wait_signature(server, lambda s: s["version"] == WHEN + 30, "the newer commit")
        assert allowed(server, DENIED)
        since = time.time()
        sync(repo, tmp_path, first)
        state, _ = wait_signature(server, refused_as("replayed", since), "refused (older)")
        assert allowed(server, DENIED)
    finally:
        stop_server(server)


EMAIL = "policy-bot@trustgate.test"
ISSUER = "https://oidc.trustgate.test"


@pytest.fixture
def services() -> Iterator[SigstoreServices]:
    with sigstore_services() as running:
        yield running


def sign_keyless(services: SigstoreServices, directory: Path, email: str, version: int) -> None:
    trust = directory.parent / "trust-config.json"
    trust.write_text(json.dumps(services.trust_config()))
    before = os.environ.get(TOKEN_VARIABLE)
    os.environ[TOKEN_VARIABLE] = services.oidc.token(email)
    try:
        arguments = ["--keyless", "--trust-config", str(trust), "--version", str(version)]
        assert main(["policy", "sign", str(directory), *arguments]) == 0
    finally:
        if before is None:
            del os.environ[TOKEN_VARIABLE]
        else:
            os.environ[TOKEN_VARIABLE] = before


def test_a_keyless_signed_set_loads_and_another_identity_is_refused(
    tmp_path: Path, services: SigstoreServices
) -> None:
    root = tmp_path / "root.json"
    root.write_text(json.dumps(services.trust_config()["trustedRoot"]))
    settings = (
        "policies:\n  reloadIntervalSeconds: 0.5\n  signature:\n    required: true\n"
        "    authorities:\n      - name: ci\n        keyless:\n"
        f"          issuer: {ISSUER}\n          subject: {EMAIL}\n"
        f"          trustedRoot: {root}\n"
    )
    sets = Sets(tmp_path)
    (tmp_path / "one").mkdir()
    first = policy_dir(tmp_path / "one")
    sign_keyless(services, first, EMAIL, 1)
    sets.publish(first)
    server = start_server(tmp_path, sets.link, settings)
    try:
        state, _ = wait_signature(server, lambda s: s["state"] == "verified", "verified")
        assert (state["authority"], state["version"]) == ("ci", 1)
        since = time.time()
        impostor = sets.new(STRANGER, version=2, files=WEAK)
        sign_keyless(services, impostor, "someone-else@trustgate.test", 2)
        sets.publish(impostor)
        wait_signature(server, refused_as("untrusted", since), "refused (another identity)")
        assert not allowed(server, DENIED)
        rightful = sets.new(TEAM, version=2, files=WEAK)
        sign_keyless(services, rightful, EMAIL, 2)
        sets.publish(rightful)
        wait_signature(server, lambda s: s["state"] == "verified" and s["version"] == 2, "v2")
        assert allowed(server, DENIED) and signature(server)["authority"] == "ci"
    finally:
        stop_server(server)
