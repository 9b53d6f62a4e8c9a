"""webhook.services.build_mark_store: where policies.signature.rollback keeps the mark."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric import ec

from tests.support.apistore import Store, start_store
from tests.support.policysigning import public_pem
from webhook.config.loader import parse_config
from webhook.core.errors import ConfigError
from webhook.policy.signing.gate import Mark, MarkError
from webhook.policy.signing.marks import FileMark, RemoteMark
from webhook.services import build_mark_store

DIGEST = "sha256:" + "ab" * 32


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
