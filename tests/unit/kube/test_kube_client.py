"""webhook.kube.client: paging, TLS, and refusals against a stand-in API server."""

from __future__ import annotations

import base64
import json
from pathlib import Path

import pytest

from tests.support.kubeapi import ApiServer, kubeconfig
from tests.support.kubecluster import token_credentials
from webhook.core.errors import KubeError
from webhook.kube.client import KubeClient
from webhook.kube.credentials import from_kubeconfig
from webhook.kube.workloads import WORKLOADS, cluster_workloads


def test_lists_every_page(api: ApiServer, tmp_path: Path) -> None:
    pods = next(r for r in WORKLOADS if r.plural == "pods")
    with KubeClient(token_credentials(api, tmp_path), page_size=3) as client:
        items = list(client.list(pods))
    assert len(items) == 8
    assert {(i["apiVersion"], i["kind"]) for i in items} == {("v1", "Pod")}
    pages = [r for r in api.requests if r.path == "/api/v1/pods"]
    assert [r.query.get("limit") for r in pages] == ["3", "3", "3"]
    assert "continue" not in pages[0].query
    assert all("continue" in r.query for r in pages[1:])
    assert all(r.authorization == f"Bearer {api.token}" for r in pages)


def test_client_certificate_and_ca_file(api: ApiServer, tmp_path: Path) -> None:
    client_files = api.client_certificate(tmp_path)
    config = kubeconfig(tmp_path / "config", api, client=client_files, inline_ca=False)
    credentials = from_kubeconfig(config)
    with KubeClient(credentials) as client:
        assert len(list(client.list(WORKLOADS[0]))) == 2
    assert api.requests[-1].client_cert and api.requests[-1].authorization is None


def test_insecure_skip_tls_verify(api: ApiServer, tmp_path: Path) -> None:
    path = kubeconfig(tmp_path / "config", api, token=api.token, inline_ca=False)
    document = json.loads(path.read_text())
    document["clusters"][0]["cluster"] = {"server": api.url, "insecure-skip-tls-verify": True}
    path.write_text(json.dumps(document))
    with KubeClient(from_kubeconfig(path)) as client:
        assert len(list(client.list(WORKLOADS[0]))) == 2


def test_unknown_certificate_authority_is_refused(api: ApiServer, tmp_path: Path) -> None:
    path = kubeconfig(tmp_path / "config", api, token=api.token)
    document = json.loads(path.read_text())
    document["clusters"][0]["cluster"]["certificate-authority-data"] = base64.b64encode(
        api.client_ca_cert.read_bytes()
    ).decode()
    path.write_text(json.dumps(document))
    with (
        KubeClient(from_kubeconfig(path)) as client,
        pytest.raises(KubeError, match="cannot reach"),
    ):
        list(client.list(WORKLOADS[0]))
    assert api.requests == []


@pytest.mark.parametrize(
    ("setup", "message"),
    [
        (lambda api: api.forbidden.add("cronjobs"), "listing cronjobs: forbidden; the identity"),
        (lambda api: setattr(api, "token", "other"), "listing deployments: not authenticated"),
        (lambda api: setattr(api, "expire_continue", True), "changed too much while it was read"),
    ],
)
def test_refusals_are_clear(api: ApiServer, tmp_path: Path, setup, message: str) -> None:
    setup(api)
    try:
        with (
            KubeClient(
                from_kubeconfig(kubeconfig(tmp_path / "c", api, token="sa-token-1")), page_size=1
            ) as client,
            pytest.raises(KubeError, match=message),
        ):
            list(cluster_workloads(client))
    finally:
        api.token = "sa-token-1"


def test_unreachable_server(api: ApiServer, tmp_path: Path) -> None:
    path = kubeconfig(tmp_path / "config", api, token="t")
    document = json.loads(path.read_text())
    document["clusters"][0]["cluster"]["server"] = "https://127.0.0.1:9"
    path.write_text(json.dumps(document))
    credentials = from_kubeconfig(path)
    with KubeClient(credentials) as client, pytest.raises(KubeError, match="cannot reach"):
        list(client.list(WORKLOADS[0]))
