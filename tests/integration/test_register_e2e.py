"""``trustgate serve --register``: a real gunicorn over TLS registers what the chart renders.

The stand-in API server (tests/support/apistore.py) holds what Helm installs: the two
webhook configurations, empty, and the chart's ClusterRole bound to the pod's service
account. The server registers the chart's own registration.json (rendered by Helm for
namespace ``trustgate``, the name the test certificates carry), and only ever while its
/readyz answers 200 over TLS with the caBundle it writes.
"""

from __future__ import annotations

import base64
import json
import re
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import helm_python as helm
import pytest
import requests
import yaml

from tests.integration.conftest import (
    Server,
    e2e_policies,
    start_server,
    stop_server,
    trustgate_command,
    wait_for,
)
from tests.support.apistore import Call, Store, start_store
from tests.support.registration import GROUP, MUTATING, VALIDATING
from webhook.core import certs

pytestmark = pytest.mark.e2e

CHART = Path(__file__).resolve().parents[2] / "charts" / "trustgate"
NAMESPACE = "trustgate"
TOKEN = "pod-token"
BINDING = ("rbac.authorization.k8s.io", "clusterrolebindings", "", "trustgate-register")


@pytest.fixture(scope="module")
def chart() -> dict[str, Any]:
    """What Helm renders for release trustgate in namespace trustgate: kind/name -> object."""
    rendered = helm.Chart.load(CHART).render(
        None, name="trustgate", namespace=NAMESPACE, is_install=True
    )
    objects = [
        doc
        for path, text in rendered.items()
        if not path.endswith("NOTES.txt")
        for doc in yaml.safe_load_all(text)
        if doc
    ]
    return {f"{o['kind']}/{o['metadata']['name']}": o for o in objects}


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Store]:
    server = start_store(tmp_path_factory.mktemp("apistore"))
    yield server
    server.stop()


@pytest.fixture
def cluster(
    store: Store, chart: dict[str, Any], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Store:
    """The store as Helm leaves it, and the server's kubeconfig ($KUBECONFIG)."""
    store.objects.clear()
    store.applied.clear()
    store.on_write = None
    store.hanging.clear()
    store.service_accounts = {TOKEN: (NAMESPACE, "trustgate")}
    for name in (
        "ValidatingWebhookConfiguration/trustgate",
        "MutatingWebhookConfiguration/trustgate-pin",
        "ClusterRole/trustgate-register",
        "ClusterRoleBinding/trustgate-register",
    ):
        store.put(chart[name])
    store.calls.clear()
    monkeypatch.setenv("KUBECONFIG", str(store.kubeconfig(tmp_path / "kubeconfig", TOKEN)))
    return store


def registration_file(tmp: Path, chart: dict[str, Any]) -> Path:
    path = tmp / "registration.json"
    path.write_text(chart["ConfigMap/trustgate-registration"]["data"]["registration.json"])
    return path


def serve(tmp: Path, chart: dict[str, Any], tls: certs.CertPaths | None = None) -> Server:
    args = ["--register", str(registration_file(tmp, chart))]
    return start_server(tmp, e2e_policies(tmp), tls=tls, serve_args=args)


def registered(store: Store) -> bool:
    return all(
        store.get(GROUP, plural, name).get("webhooks")
        for plural, name in ((VALIDATING, "trustgate"), (MUTATING, "trustgate-pin"))
    )


def registrar_pid(server: Server) -> int:
    found = re.search(r"answers 200 \(process (\d+)\)", server.log_text())
    assert found, server.log_text()
    return int(found[1])


def running(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, IndexError):
        return False
    return state not in ("Z", "X")


def test_registers_the_charts_webhooks_once_ready_and_again_after_a_restart(
    cluster: Store, chart: dict[str, Any], tmp_path: Path
) -> None:
    checks: list[int] = []
    server: Server | None = None

    def readiness_at_each_write(call: Call) -> None:
        # What the API server would meet if it called the webhook at this moment.
        assert server is not None
        answer = requests.get(f"{server.url}/readyz", verify=str(server.ca), timeout=5)
        checks.append(answer.status_code)

    cluster.on_write = readiness_at_each_write
    server = serve(tmp_path, chart)
    try:
        assert wait_for(lambda: registered(cluster), 15), server.log_text()
        assert checks and set(checks) == {200}
        bundle = base64.b64encode(server.ca.read_bytes()).decode()
        wanted = json.loads(registration_file(tmp_path, chart).read_text())["configurations"]
        for configuration, plural in zip(wanted, (VALIDATING, MUTATING), strict=True):
            (written,) = cluster.get(GROUP, plural, configuration["name"])["webhooks"]
            (rendered,) = configuration["webhooks"]
            assert written["clientConfig"]["caBundle"] == bundle
            for key in ("name", "rules", "namespaceSelector", "failurePolicy", "timeoutSeconds"):
                assert written[key] == rendered[key]
        assert server.logged(
            "registered the webhooks in ValidatingWebhookConfiguration trustgate, "
            "MutatingWebhookConfiguration trustgate-pin"
        )
        assert "nginx" in server.denial("docker.io/library/nginx:1.27")
        pid = registrar_pid(server)
        assert running(pid)
    finally:
        assert stop_server(server) == 0
    # The registrar leaves with the server.
    assert wait_for(lambda: not running(pid), 5)

    # Gone while the pod was down (helm upgrade --force-replace, a hand edit): a new
    # pod writes them again.
    for plural, name in ((VALIDATING, "trustgate"), (MUTATING, "trustgate-pin")):
        del cluster.get(GROUP, plural, name)["webhooks"]
    (tmp_path / "again").mkdir()
    server = serve(tmp_path / "again", chart)
    try:
        assert wait_for(lambda: registered(cluster), 15), server.log_text()
    finally:
        assert stop_server(server) == 0


def test_policies_that_do_not_load_never_register(
    cluster: Store, chart: dict[str, Any], tmp_path: Path
) -> None:
    policies = tmp_path / "policies"
    policies.mkdir()
    (policies / "broken.yaml").write_text("apiVersion: trustgate.dev/v1alpha1\nkind: Nope\n")
    tls = certs.generate(tmp_path / "certs", service="trustgate", namespace=NAMESPACE)
    command = [
        *trustgate_command(), "serve", "--policies", str(policies),
        "--cert", str(tls.cert), "--key", str(tls.key), "--port", "0",
        "--register", str(registration_file(tmp_path, chart)),
    ]  # fmt: skip
    result = subprocess.run(command, capture_output=True, text=True, timeout=60)
    assert result.returncode == 2, result.stderr
    assert "broken.yaml" in result.stderr
    time.sleep(2)
    assert cluster.calls == []
    assert not registered(cluster)


def test_a_certificate_the_api_server_would_refuse_is_never_registered(
    cluster: Store, chart: dict[str, Any], tmp_path: Path
) -> None:
    """Served for another Service's name: every review the API server sent would fail TLS."""
    wrong = certs.generate(
        tmp_path / "certs", service="other", namespace=NAMESPACE, extra_sans=["localhost"]
    )
    server = serve(tmp_path, chart, tls=wrong)
    try:
        assert server.logged("the API server would refuse this certificate too", 10)
        (line,) = [
            json.loads(line)
            for line in server.log_text().splitlines()
            if "would refuse this certificate" in line
        ]
        assert line["level"] == "warning"
        assert f"must name trustgate.{NAMESPACE}.svc" in line["msg"]
        time.sleep(2)
        assert [c for c in cluster.calls if c.method != "GET"] == []
        assert not registered(cluster)
        assert server.get("/readyz").status_code == 200
    finally:
        assert stop_server(server) == 0


def test_a_refusing_api_server_is_retried_and_the_server_keeps_answering(
    cluster: Store, chart: dict[str, Any], tmp_path: Path
) -> None:
    binding = cluster.objects.pop(BINDING)
    server = serve(tmp_path, chart)
    try:
        assert server.logged("(attempt 2; next in", 15), server.log_text()
        assert "cannot get resource" in server.log_text()
        assert "needs get and patch on this object by name" in server.log_text()
        started = time.monotonic()
        assert "nginx" in server.denial("docker.io/library/nginx:1.27")
        assert time.monotonic() - started < 2
        cluster.put(binding)
        assert wait_for(lambda: registered(cluster), 10), server.log_text()
        assert server.logged("registration works again after")
    finally:
        assert stop_server(server) == 0


def test_a_hanging_api_server_is_given_up_per_call_and_tried_again(
    cluster: Store, chart: dict[str, Any], tmp_path: Path
) -> None:
    cluster.hanging.set()
    server = serve(tmp_path, chart)
    try:
        # The registrar waits on the API in a process of its own: reviews go on.
        started = time.monotonic()
        assert "nginx" in server.denial("docker.io/library/nginx:1.27")
        assert time.monotonic() - started < 2
        assert server.logged("it did not answer in time", 20), server.log_text()
        assert server.logged("(attempt 1; next in")
        cluster.hanging.clear()
        assert wait_for(lambda: registered(cluster), 10), server.log_text()
    finally:
        cluster.hanging.clear()
        assert stop_server(server) == 0
