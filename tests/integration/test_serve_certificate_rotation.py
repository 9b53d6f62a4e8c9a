"""``trustgate serve`` follows a rotated Kubernetes Secret volume without a restart.

kubelet updates a mounted Secret the way it updates a ConfigMap: the files are links
into ``..data``, which it swaps to a new timestamped directory in one rename. That is
what cert-manager's renewals and the chart's mounted TLS Secret look like to the server.
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest
import requests

from tests.integration.conftest import (
    E2E_POLICIES,
    der,
    served_certificate,
    start_server,
    stop_server,
)
from webhook.core import certs

SWAP_DEADLINE = 10.0


def secret_volume(root: Path, version: str, source: certs.CertPaths) -> None:
    """Lay out (or update) ``root`` as kubelet's atomic writer does for a TLS Secret."""
    directory = root / f"..{version}"
    directory.mkdir(parents=True)
    for name, path in (("tls.crt", source.cert), ("tls.key", source.key)):
        (directory / name).write_bytes(path.read_bytes())
    (root / "..data_tmp").symlink_to(directory.name)
    (root / "..data_tmp").rename(root / "..data")
    for name in ("tls.crt", "tls.key"):
        if not (root / name).is_symlink():
            (root / name).symlink_to(f"..data/{name}")


@pytest.mark.e2e
def test_rotated_secret_volume_is_served_without_restart(tmp_path: Path) -> None:
    sans = ["localhost", "127.0.0.1"]
    first = certs.generate(tmp_path / "first", service="trustgate", namespace="t", extra_sans=sans)
    renewed = certs.generate(
        tmp_path / "renewed", service="trustgate", namespace="t", extra_sans=sans
    )
    tls = tmp_path / "tls"
    secret_volume(tls, "2026_11_01_00_00_00.000000001", first)
    policies = tmp_path / "policies"
    policies.mkdir()
    for name, text in E2E_POLICIES.items():
        (policies / name).write_text(text)
    served = certs.CertPaths(ca=first.ca, cert=tls / "tls.crt", key=tls / "tls.key")
    server = start_server(tmp_path, policies, tls=served)
    port = int(server.url.rpartition(":")[2])
    try:
        assert served_certificate(port) == der(first.cert)

        secret_volume(tls, "2026_11_01_01_00_00.000000002", renewed)
        deadline = time.monotonic() + SWAP_DEADLINE
        while served_certificate(port) != der(renewed.cert):
            assert time.monotonic() < deadline, "the renewed certificate was not served"
            time.sleep(0.1)
        assert server.process.poll() is None
        url = server.url
        assert requests.get(f"{url}/readyz", verify=str(renewed.ca), timeout=5).ok
        with pytest.raises(requests.exceptions.SSLError):
            requests.get(f"{url}/healthz", verify=str(first.ca), timeout=5)
        deadline = time.monotonic() + 5  # log lines are written every 50 ms
        while "serving the TLS certificate in" not in server.log_text():
            assert time.monotonic() < deadline, "the reload was not logged"
            time.sleep(0.05)
    finally:
        assert stop_server(server) == 0
