"""webhook.kube.registration: the registration file, and writing it into the configurations.

Against the stand-in API server of tests/support/apistore.py, which stores webhook
configurations, fills in the API server's defaults, checks each write against
Kubernetes' schema and authorizes the service account by the ClusterRole bound to it.
"""

from __future__ import annotations

import base64
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.support.apistore import Call, Store, start_store
from tests.support.registration import (
    GROUP,
    MUTATING,
    SA_TOKEN,
    VALIDATING,
    document,
    hook,
    prepare,
    shell,
    write,
)
from webhook.core import certs
from webhook.core.errors import ConfigError, KubeError
from webhook.kube.client import KubeClient
from webhook.kube.credentials import from_kubeconfig
from webhook.kube.registration import load_registration, register


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Store]:
    server = start_store(tmp_path_factory.mktemp("apistore"))
    yield server
    server.stop()


@pytest.fixture
def cluster(store: Store) -> Store:
    return prepare(store)


@pytest.fixture
def tls(tmp_path: Path) -> certs.CertPaths:
    return certs.generate(tmp_path / "tls", service="trustgate", namespace="trustgate-system")


def client_for(store: Store, tmp_path: Path, token: str = SA_TOKEN) -> KubeClient:
    config = store.kubeconfig(tmp_path / f"kubeconfig-{token}", token)
    return KubeClient(from_kubeconfig(config), timeout=2.0)


def webhooks_of(store: Store, plural: str, name: str) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = store.get(GROUP, plural, name).get("webhooks", [])
    return found


# --- the file ------------------------------------------------------------------------


def test_ca_bundle_comes_from_the_ca_file_unless_the_file_gives_one(
    tmp_path: Path, tls: certs.CertPaths
) -> None:
    registration = load_registration(write(tmp_path, document()), tls.ca)
    bundle = base64.b64encode(tls.ca.read_bytes()).decode()
    for configuration in registration.configurations:
        (webhook,) = configuration.webhooks
        assert webhook["clientConfig"]["caBundle"] == bundle
    (endpoint,) = registration.endpoints
    assert (endpoint.host, endpoint.ca_pem) == (
        "trustgate.trustgate-system.svc",
        tls.ca.read_bytes(),
    )

    given = document()
    given["configurations"][0]["webhooks"][0]["clientConfig"]["caBundle"] = bundle
    given["configurations"][1]["webhooks"][0]["clientConfig"]["caBundle"] = bundle
    # No CA file is needed when every webhook carries its caBundle (tls.mode secret).
    assert load_registration(write(tmp_path, given), None).endpoints == registration.endpoints


def _doc(change: Any) -> Any:
    doc = document()
    change(doc)
    return doc


@pytest.mark.parametrize(
    ("doc", "message"),
    [
        ("{not json", "not a registration \\(JSON\\)"),
        ('{"configurations": [], "configurations": []}', "key 'configurations' is given twice"),
        ({"configurations": []}, "configurations is empty: nothing to register"),
        (_doc(lambda d: d["configurations"][0].update(kind="Webhook")), "kind: must be one of"),
        (
            _doc(lambda d: d["configurations"][1].update(kind="ValidatingWebhookConfiguration",
                                                         name="trustgate")),
            "name: must be given, once per kind",
        ),
        (_doc(lambda d: d["configurations"][0].update(webhooks=[])), "webhooks: is empty"),
        (
            _doc(lambda d: d["configurations"][0]["webhooks"].append(
                hook("validate.trustgate.dev", "/validate"))),
            "'validate.trustgate.dev' is given twice",
        ),
        (
            _doc(lambda d: d["configurations"][0]["webhooks"][0]["clientConfig"].update(
                url="https://example.com/validate")),
            "names a url; trustgate registers a Service only",
        ),
        (
            _doc(lambda d: d["configurations"][0]["webhooks"][0]["clientConfig"]["service"]
                 .pop("namespace")),
            "namespace must be a string",
        ),
        (
            _doc(lambda d: d["configurations"][0]["webhooks"][0]["clientConfig"].update(
                caBundle="not base64!")),
            "caBundle is not base64 of PEM certificates",
        ),
    ],
)  # fmt: skip
def test_a_bad_registration_is_refused_with_where(
    tmp_path: Path, tls: certs.CertPaths, doc: Any, message: str
) -> None:
    with pytest.raises(ConfigError, match=message):
        load_registration(write(tmp_path, doc), tls.ca)


def test_without_a_ca_it_says_where_the_ca_comes_from(tmp_path: Path) -> None:
    path = write(tmp_path, document())
    with pytest.raises(ConfigError, match=r"ca.crt cannot be read: No such file.*mount the CA"):
        load_registration(path, tmp_path / "ca.crt")
    (tmp_path / "ca.crt").write_text("not a certificate\n")
    with pytest.raises(ConfigError, match="holds no PEM certificate"):
        load_registration(path, tmp_path / "ca.crt")


# --- writing -------------------------------------------------------------------------


def test_writes_the_webhooks_into_the_empty_configurations_once(
    cluster: Store, tmp_path: Path, tls: certs.CertPaths
) -> None:
    registration = load_registration(write(tmp_path, document()), tls.ca)
    with client_for(cluster, tmp_path) as client:
        assert register(client, registration) == [
            "ValidatingWebhookConfiguration trustgate",
            "MutatingWebhookConfiguration trustgate-pin",
        ]
        # The API server added its defaults (objectSelector, timeoutSeconds, the port):
        # they are no difference, so a second pass reads and writes nothing.
        written = len([c for c in cluster.calls if c.method == "PATCH"])
        assert register(client, registration) == []
    assert len([c for c in cluster.calls if c.method == "PATCH"]) == written == 2
    (validate,) = webhooks_of(cluster, VALIDATING, "trustgate")
    assert validate["objectSelector"] == {} and validate["clientConfig"]["service"]["port"] == 443
    assert validate["clientConfig"]["caBundle"] == base64.b64encode(tls.ca.read_bytes()).decode()
    (pin,) = webhooks_of(cluster, MUTATING, "trustgate-pin")
    assert pin["name"] == "pin.trustgate.dev"
    patches = [c for c in cluster.calls if c.method == "PATCH"]
    assert {c.content_type for c in patches} == {"application/merge-patch+json"}
    assert {c.query["fieldManager"] for c in patches} == {"trustgate"}
    assert all(c.body["metadata"]["resourceVersion"] for c in patches)


def test_it_owns_the_list_a_changed_or_foreign_webhook_is_replaced(
    cluster: Store, tmp_path: Path, tls: certs.CertPaths
) -> None:
    registration = load_registration(write(tmp_path, document()), tls.ca)
    stale = hook("old-name.trustgate.dev", "/validate", failurePolicy="Ignore")
    stale["clientConfig"]["caBundle"] = base64.b64encode(tls.ca.read_bytes()).decode()
    cluster.put({**shell("ValidatingWebhookConfiguration", "trustgate"), "webhooks": [stale]})
    with client_for(cluster, tmp_path) as client:
        assert "ValidatingWebhookConfiguration trustgate" in register(client, registration)
    assert [w["name"] for w in webhooks_of(cluster, VALIDATING, "trustgate")] == [
        "validate.trustgate.dev"
    ]


def test_a_missing_configuration_is_never_created(
    cluster: Store, tmp_path: Path, tls: certs.CertPaths
) -> None:
    """After helm uninstall the objects are gone: a pod still running cannot bring them back."""
    del cluster.objects[(GROUP, VALIDATING, "", "trustgate")]
    registration = load_registration(write(tmp_path, document()), tls.ca)
    with (
        client_for(cluster, tmp_path) as client,
        pytest.raises(KubeError, match=r"not found.*install or upgrade the chart"),
    ):
        register(client, registration)
    validating = [(c.method, c.answer) for c in cluster.calls if VALIDATING in c.path]
    assert validating == [("GET", 404)]
    assert {c.content_type for c in cluster.calls} <= {None, "application/merge-patch+json"}
    assert (GROUP, VALIDATING, "", "trustgate") not in cluster.objects
    # The other configuration is still written.
    assert webhooks_of(cluster, MUTATING, "trustgate-pin")


def test_rbac_by_name_lets_it_write_its_own_configurations_only(
    cluster: Store, tmp_path: Path, tls: certs.CertPaths
) -> None:
    other = document()
    other["configurations"][0]["name"] = "someone-elses"
    cluster.put(shell("ValidatingWebhookConfiguration", "someone-elses"))
    cluster.calls.clear()
    registration = load_registration(write(tmp_path, other), tls.ca)
    with (
        client_for(cluster, tmp_path) as client,
        pytest.raises(KubeError, match=r"forbidden.*cannot get.*needs get and patch on this"),
    ):
        register(client, registration)
    assert "webhooks" not in cluster.get(GROUP, VALIDATING, "someone-elses")


def test_a_configuration_changed_meanwhile_is_read_and_written_again(
    cluster: Store, tmp_path: Path, tls: certs.CertPaths
) -> None:
    """Two replicas registering at once: the second write names a stale version (409)."""
    registration = load_registration(write(tmp_path, document()), tls.ca)
    interfere = [1]

    def another_writer_first(call: Call) -> None:
        # A write that lands between a read and the patch that follows it.
        if interfere:
            interfere.pop()
            cluster.put(shell("ValidatingWebhookConfiguration", "trustgate"), manager="kubectl")

    cluster.on_write = another_writer_first
    with client_for(cluster, tmp_path) as client:
        assert len(register(client, registration)) == 2
    answers = [(c.method, c.answer) for c in cluster.calls if "validating" in c.path]
    assert answers == [("GET", 200), ("PATCH", 409), ("GET", 200), ("PATCH", 200)]
    assert webhooks_of(cluster, VALIDATING, "trustgate")

    # A writer that always wins: refused after the second try, the other one written.
    prepare(cluster)
    cluster.on_write = lambda call: (
        "validating" in call.path
        and cluster.put(shell("ValidatingWebhookConfiguration", "trustgate"), manager="kubectl")
    )
    with (
        client_for(cluster, tmp_path) as client,
        pytest.raises(
            KubeError,
            match=r"trustgate: patching .*changed by another writer meanwhile.*"
            r"\(registered in MutatingWebhookConfiguration trustgate-pin\)",
        ),
    ):
        register(client, registration)
    assert "webhooks" not in cluster.get(GROUP, VALIDATING, "trustgate")
    assert webhooks_of(cluster, MUTATING, "trustgate-pin")


def test_a_webhook_the_api_server_refuses_is_reported_by_field(
    cluster: Store, tmp_path: Path, tls: certs.CertPaths
) -> None:
    registration = load_registration(write(tmp_path, document(bogus=1)), tls.ca)
    with (
        client_for(cluster, tmp_path) as client,
        pytest.raises(KubeError, match=r"ValidatingWebhookConfiguration trustgate: .*bogus"),
    ):
        register(client, registration)
    assert "webhooks" not in cluster.get(GROUP, VALIDATING, "trustgate")


def test_a_hanging_api_server_is_bounded_by_the_call_timeout(
    cluster: Store, tmp_path: Path, tls: certs.CertPaths
) -> None:
    registration = load_registration(write(tmp_path, document()), tls.ca)
    cluster.hanging.set()
    started = time.monotonic()
    try:
        with (
            client_for(cluster, tmp_path) as client,
            pytest.raises(KubeError, match=r"cannot reach .*: it did not answer in time"),
        ):
            register(client, registration)
    finally:
        cluster.hanging.clear()
    # The client's timeout is 2 s: one call, then the pass ends (the mutating
    # configuration is not tried against a server that does not answer).
    assert 2 <= time.monotonic() - started < 4
    assert [c.path.rsplit("/", 1)[-1] for c in cluster.calls] == ["trustgate"]
