"""``trustgate serve`` follows a rotated Kubernetes Secret volume without a restart.

kubelet updates a mounted Secret the way it updates a ConfigMap: the files are links
into ``..data``, which it swaps to a new timestamped directory in one rename. That is
what cert-manager's renewals and the chart's mounted TLS Secret look like to the server.
"""

from __future__ import annotations

import os
import socket
import ssl
import subprocess
import time
from pathlib import Path

import pytest
import requests
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from tests.integration.conftest import E2E_POLICIES, free_port, trustgate_command
from webhook import certs

READY_DEADLINE = 30.0
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


def served_certificate(port: int) -> bytes:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    with (
        socket.create_connection(("127.0.0.1", port), timeout=5) as sock,
        context.wrap_socket(sock, server_hostname="localhost") as tls,
    ):
        der = tls.getpeercert(binary_form=True)
    assert der is not None
    return der


def der(path: Path) -> bytes:
    certificate = x509.load_pem_x509_certificate(path.read_bytes())
    return certificate.public_bytes(serialization.Encoding.DER)


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
    port = free_port()
    log = tmp_path / "server.log"
    argv = [
        *trustgate_command(), "serve", "--policies", str(policies),
        "--cert", str(tls / "tls.crt"), "--key", str(tls / "tls.key"),
        "--host", "127.0.0.1", "--port", str(port),
    ]  # fmt: skip
    with log.open("wb") as out:
        process = subprocess.Popen(
            argv, stdout=out, stderr=subprocess.STDOUT, env={**os.environ, "PYTHONUNBUFFERED": "1"}
        )
    url = f"https://localhost:{port}"
    try:
        deadline = time.monotonic() + READY_DEADLINE
        while True:
            assert process.poll() is None, log.read_text()
            try:
                if requests.get(f"{url}/healthz", verify=str(first.ca), timeout=5).ok:
                    break
            except requests.RequestException:
                assert time.monotonic() < deadline, log.read_text()
                time.sleep(0.1)
        assert served_certificate(port) == der(first.cert)

        secret_volume(tls, "2026_11_01_01_00_00.000000002", renewed)
        deadline = time.monotonic() + SWAP_DEADLINE
        while served_certificate(port) != der(renewed.cert):
            assert time.monotonic() < deadline, "the renewed certificate was not served"
            time.sleep(0.1)
        assert process.poll() is None
        assert requests.get(f"{url}/readyz", verify=str(renewed.ca), timeout=5).ok
        with pytest.raises(requests.exceptions.SSLError):
            requests.get(f"{url}/healthz", verify=str(first.ca), timeout=5)
        assert "serving the TLS certificate in" in log.read_text()
    finally:
        process.terminate()
        assert process.wait(timeout=20) == 0
