"""webhook.services: where policies.signature.rollback keeps the mark, and who verifies the set."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric import ec

from tests.support.apistore import Store, start_store
from tests.support.gitsigning import WHEN, commit, public_line, source_repo, ssh_key, sync
from tests.support.policysigning import FILES, public_pem, signed_set
from webhook.config.loader import parse_config
from webhook.core.errors import ConfigError
from webhook.policy.signing.gate import Mark, MarkError
from webhook.policy.signing.marks import FileMark, RemoteMark
from webhook.services import build_mark_store, build_set_verifier

DIGEST = "sha256:" + "ab" * 32
TEAM = ec.generate_private_key(ec.SECP256R1())


def config_with(tmp_path: Path, rollback: dict[str, Any] | None, **more: Any) -> Any:
    key = tmp_path / "signer.pub"
    key.write_bytes(public_pem(ec.generate_private_key(ec.SECP256R1())))
    signature: dict[str, Any] = {"authorities": [{"name": "team", "key": {"file": str(key)}}]}
    if rollback is not None:
        signature["rollback"] = rollback
    return parse_config({"policies": {"signature": signature}, **more})


def test_no_signature_or_no_rollback_keeps_no_mark(tmp_path: Path) -> None:
    assert build_mark_store(parse_config({})) is None
    assert build_mark_store(config_with(tmp_path, None)) is None


def test_a_file_mark(tmp_path: Path) -> None:
    store = build_mark_store(config_with(tmp_path, {"file": str(tmp_path / "mark.json")}))
    assert isinstance(store, FileMark)
    store.advance(Mark(2, DIGEST))
    assert store.read() == Mark(2, DIGEST)


def test_a_config_map_mark_through_the_configured_kubeconfig(tmp_path: Path) -> None:
    api: Store = start_store(tmp_path)
    try:
        kubeconfig = api.kubeconfig(tmp_path / "kubeconfig", "admin")
        api.put({"apiVersion": "v1", "kind": "ConfigMap",
                 "metadata": {"name": "mark", "namespace": "tg"}})  # fmt: skip
        config = config_with(
            tmp_path,
            {"configMap": {"name": "mark", "namespace": "tg"}},
            kubernetes={"kubeconfig": str(kubeconfig)},
        )
        store = build_mark_store(config)
        assert isinstance(store, RemoteMark)
        assert store.where == "ConfigMap tg/mark"
        store.advance(Mark(4, DIGEST))
        assert api.get("", "configmaps", "mark", "tg")["data"]["version"] == "4"
        api.remove("", "configmaps", "mark", "tg")
        with pytest.raises(MarkError, match="kubectl create configmap mark -n tg"):
            store.read()
    finally:
        api.stop()


def test_a_config_map_mark_without_a_way_to_the_api_server_is_a_config_error(
    tmp_path: Path,
) -> None:
    config = config_with(
        tmp_path,
        {"configMap": {"name": "mark"}},
        kubernetes={"kubeconfig": str(tmp_path / "missing")},
    )
    with pytest.raises(ConfigError, match=r"rollback.configMap keeps the policy version"):
        build_mark_store(config)


def signing_config(tmp_path: Path, source: str = "files") -> Any:
    key = tmp_path / "team.pub"
    key.write_bytes(public_pem(TEAM))
    authority: dict[str, Any] = {"name": "policy-team", "key": {"file": str(key)}}
    if source == "git":
        signers = tmp_path / "allowed_signers"
        signers.write_text(f"alice@example.com {public_line(ssh_key(tmp_path, 'team'))}\n")
        authority = {"name": "maintainers", "key": {"allowedSigners": str(signers)}}
    signature = {"source": source, "authorities": [authority]}
    return parse_config({"policies": {"signature": signature}})


def test_source_files_verifies_the_signature_file(tmp_path: Path) -> None:
    verifier = build_set_verifier(signing_config(tmp_path))
    assert verifier is not None
    verified = verifier(signed_set(tmp_path / "policies", TEAM, 4))
    assert (verified.authority, verified.version) == ("policy-team", 4)
    assert verified.files is not None and "policy.yaml" in verified.files


def test_source_git_verifies_the_checked_out_commit(tmp_path: Path) -> None:
    verifier = build_set_verifier(signing_config(tmp_path, "git"))
    assert verifier is not None
    repo = source_repo(tmp_path)
    commit_id = commit(repo, FILES, key=tmp_path / "team")
    verified = verifier(sync(repo, tmp_path))
    assert (verified.authority, verified.version) == ("maintainers", WHEN)
    assert verified.digest == f"git:{commit_id}"
    assert verified.files is not None and sorted(verified.files) == sorted(FILES)


def test_nothing_is_verified_without_policies_signature() -> None:
    assert build_set_verifier(parse_config({})) is None
