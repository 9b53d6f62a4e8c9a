"""Attacks on signed policy sets through a running server (gunicorn over TLS).

The attacker can edit what the server reads (the policy directory, git-sync's
volume, a file a policy names) but holds no authority's key and cannot edit
trustgate.yaml. Each attack must end in a refusal shown on /readyz, with the
last good set still enforced and the server still answering: never an image
admitted on the attacker's key, never a reload thread (or process) stopped.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import pytest

from tests.integration.conftest import Server, start_server, stop_server
from tests.integration.test_policy_signature_e2e import (
    DENIED,
    TEAM,
    WEAK,
    Sets,
    allowed,
    readyz,
    refused_as,
    signature,
    wait_signature,
)
from tests.support.cosign import generate_key, public_pem, push_signature
from tests.support.gitsigning import WHEN, commit, public_line, source_repo, ssh_key, sync
from tests.support.kube import pod_spec, review, workload
from tests.support.policysigning import FILES
from tests.support.policysigning import public_pem as set_key_pem
from tests.support.registry import Registry, default_layer, push_image
from webhook.policy.signing.tree import MAX_FILES

pytestmark = pytest.mark.e2e

INTERVAL = 0.5
RELEASE = generate_key("ecdsa-p256")
ATTACKER = generate_key("ecdsa-p256")


def keyed(registry: Registry, key_file: str) -> str:
    """A policy for namespaces signed-*: images of the registry signed by ``key_file``."""
    return (
        "apiVersion: trustgate.dev/v1alpha1\nkind: ImagePolicy\n"
        'metadata: {name: keyed}\nspec:\n  match: {namespaces: ["signed-*"]}\n'
        f'  registries: ["{registry.host}/**"]\n'
        "  signatures:\n    authorities:\n"
        f"      - name: release\n        key: {{file: {key_file}}}\n"
    )


def admitted(server: Server, image: str) -> bool:
    body = review(workload("Pod", pod_spec(image), namespace="signed-web"))
    answer = server.post(json.dumps(body), timeout=30)
    assert answer.status_code == 200, answer.text
    return bool(answer.json()["response"]["allowed"])


def answers_fast(server: Server) -> float:
    started = time.monotonic()
    assert readyz(server).status_code == 200
    return time.monotonic() - started


def test_files_mode_attacks_are_refused_and_the_last_good_set_enforced(
    tmp_path: Path, registry: Registry
) -> None:
    sets = Sets(tmp_path)
    release = {"keys/release.pub": public_pem(RELEASE)}
    good = sets.new(
        version=2, files={**FILES, **release, "keyed.yaml": keyed(registry, "keys/release.pub")}
    )
    sets.publish(good)
    # A key file outside the set, as an operator might mount one; the signer names it.
    outside = tmp_path / "mounted" / "release.pub"
    outside.parent.mkdir()
    outside.write_text(public_pem(RELEASE))
    team = tmp_path / "team.pub"
    team.write_bytes(set_key_pem(TEAM))
    settings = (
        f'deadlineSeconds: 10\nregistries: {{"{registry.host}": {{insecure: true}}}}\n'
        f"policies:\n  reloadIntervalSeconds: {INTERVAL}\n  signature:\n    required: true\n"
        f"    authorities:\n      - name: policy-team\n        key: {{file: {team}}}\n"
    )
    digest = push_image(registry, "acme/evil", tag="v1", layers=[default_layer(content=b"evil")])
    push_signature(registry, "acme/evil", digest, ATTACKER)
    evil = f"{registry.host}/acme/evil@{digest}"
    server = start_server(tmp_path, sets.link, settings)
    try:
        wait_signature(server, lambda s: s["state"] == "verified", "verified")
        assert not admitted(server, evil)

        # 1. A signed set whose policy names the key by absolute path: the signature
        # does not cover the key, so whoever writes it would choose what is admitted.
        since = time.time()
        files = {**FILES, "keyed.yaml": keyed(registry, str(outside))}
        sets.publish(sets.new(version=3, files=files))
        state, _ = wait_signature(server, refused_as("unsigned", since), "refused (outside key)")
        assert str(outside) in state["lastRefusal"]["message"]
        assert "copy each file into the directory" in state["lastRefusal"]["message"]
        outside.write_text(public_pem(ATTACKER))  # the attacker swaps the mounted key
        time.sleep(3 * INTERVAL)
        assert signature(server)["version"] == 2
        assert not admitted(server, evil)

        # 2. A loop of symbolic links in the live directory: a refusal, not a defect.
        loop = sets.copy(good)
        (loop / "a.yaml").symlink_to("b.yaml")
        (loop / "b.yaml").symlink_to("a.yaml")
        since = time.time()
        sets.publish(loop)
        state, _ = wait_signature(server, refused_as("altered", since), "refused (loop)")
        assert "a loop of symbolic links" in state["lastRefusal"]["message"]

        # 3. Ten thousand empty directories: refused, and the server stays quick.
        crowded = sets.copy(good)
        for index in range(MAX_FILES + 1):
            (crowded / f"d{index}").mkdir()
        since = time.time()
        sets.publish(crowded)
        state, _ = wait_signature(server, refused_as("altered", since), "refused (crowded)")
        assert "more than 10000 directories" in state["lastRefusal"]["message"]
        assert max(answers_fast(server) for _ in range(5)) < 2.0

        # 4. A FIFO as the signature file: unsigned, and the reader does not block.
        fifo = sets.copy(good)
        (fifo / ".trustgate" / "signature.json").unlink()
        os.mkfifo(fifo / ".trustgate" / "signature.json")
        since = time.time()
        sets.publish(fifo)
        wait_signature(server, refused_as("unsigned", since), "refused (FIFO)")

        # Through all of it the good set stayed in force, and a good set still loads.
        assert not allowed(server, DENIED) and not admitted(server, evil)
        sets.publish(sets.copy(good))
        wait_signature(server, lambda s: s["state"] == "verified", "verified again")
    finally:
        assert stop_server(server) == 0


def test_a_fifo_in_git_syncs_repository_does_not_stop_the_server(tmp_path: Path) -> None:
    home = tmp_path / "ssh"
    home.mkdir()
    key = ssh_key(home, "team")
    signers = tmp_path / "allowed_signers"
    signers.write_text(f"alice@example.com {public_line(key)}\n")
    settings = (
        f"policies:\n  reloadIntervalSeconds: {INTERVAL}\n  signature:\n    required: true\n"
        "    source: git\n    authorities:\n"
        f"      - name: maintainers\n        key: {{allowedSigners: {signers}}}\n"
    )
    repo = source_repo(tmp_path)
    first = commit(repo, FILES, key=key)
    link = sync(repo, tmp_path)
    server = start_server(tmp_path, link, settings)
    try:
        wait_signature(server, lambda s: s["state"] == "verified", "verified")
        # libgit2 opens the commit's loose object with the GIL held: a FIFO there
        # would stop every thread of the worker, the admission path too.
        loose = tmp_path / "git" / ".git" / "objects" / first[:2] / first[2:]
        saved = loose.read_bytes()
        loose.unlink()
        os.mkfifo(loose)
        since = time.time()
        (link / "policy.yaml").write_text(WEAK["policy.yaml"])  # any change makes it re-read
        state, _ = wait_signature(server, refused_as("invalid", since), "refused (FIFO)")
        assert "is a FIFO" in state["lastRefusal"]["message"]
        assert answers_fast(server) < 2.0
        assert not allowed(server, DENIED)
        # Repaired, it loads again.
        loose.unlink()
        loose.write_bytes(saved)
        (link / "policy.yaml").write_text(FILES["policy.yaml"])
        state, _ = wait_signature(server, lambda s: s["state"] == "verified", "verified again")
        assert state["version"] == WHEN
    finally:
        stop_server(server)
