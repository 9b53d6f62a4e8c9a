"""ACR logins from Entra ID: workload identity or managed identity, exchanged, cached, renewed.

Against real-shaped stand-ins (tests/support/entraid.py: the AAD v2 token
endpoint and IMDS; tests/support/acrserver.py: ACR's /oauth2/exchange and
/oauth2/token in front of a real docker-registry), with the real azure-identity.
The leak tests check every request each server saw: the Entra ID token reaches
only the registry's own exchange, the federated token only the authority, the
refresh token only the registry's token endpoint.
"""

from __future__ import annotations

import importlib.util
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
import requests

from tests.support import hostile
from tests.support.acrserver import ACR_USERNAME, AcrFront, acr_env
from tests.support.entraid import EntraId, Seen, serving_certificate
from tests.support.registry import push_image
from webhook.core import certs
from webhook.core.deadline import Deadline
from webhook.core.errors import ConfigError, UpstreamError
from webhook.core.reference import parse_reference
from webhook.core.scope import Login
from webhook.credentials import acr
from webhook.credentials.acr import ACR_SCOPE, AcrSource
from webhook.registry.client import RegistryClient, RegistrySettings

TENANT = "72f988bf-86f1-41af-91ab-2d7cd011db47"
CLIENT_ID = "5b0e2a3c-1d4f-4e6a-9b8c-7d6e5f4a3b2c"
#: The federated service account token the workload identity webhook projects.
ASSERTION = "eyJhbGciOiJSUzI1NiIsImtpZCI6InNhIn0.eyJzdWIiOiJzeXN0ZW06c2EifQ.c2EtdG9rZW4tc2ln"
MANIFEST = "application/vnd.oci.image.manifest.v1+json"


@pytest.fixture(scope="module")
def tls(tmp_path_factory: pytest.TempPathFactory) -> certs.CertPaths:
    return serving_certificate(tmp_path_factory.mktemp("tls"))


@pytest.fixture(scope="module")
def entra(tls: certs.CertPaths) -> Iterator[EntraId]:
    server = EntraId(tls, tenant=TENANT, client_id=CLIENT_ID, assertion=ASSERTION)
    yield server
    server.stop()


@pytest.fixture(scope="module")
def front(
    tls: certs.CertPaths, entra: EntraId, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[AcrFront]:
    server = AcrFront(tmp_path_factory.mktemp("acr"), tls, accepts=entra.accepts)
    with server.pushing() as registry:
        push_image(registry, "team/app", tag="1.0")
    yield server
    server.stop()


@pytest.fixture(scope="module")
def other(
    tls: certs.CertPaths, entra: EntraId, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[AcrFront]:
    """Another registry, with its own exchange: a redirect target, or one not configured."""
    server = AcrFront(tmp_path_factory.mktemp("other"), tls, accepts=entra.accepts, registry=False)
    yield server
    server.stop()


@pytest.fixture(autouse=True)
def calm(entra: EntraId, front: AcrFront, other: AcrFront) -> Iterator[None]:
    for server in (front, other):
        server.mode = "ok"
        server.refresh_lifetime = 3 * 3600
    entra.refuse = False
    yield


@pytest.fixture
def workload(
    tls: certs.CertPaths, entra: EntraId, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Path:
    """The pod's environment under workload identity, pointed at the stand-ins."""
    token_file = tmp_path / "azure-identity-token"
    token_file.write_text(ASSERTION)
    for name, value in acr_env(entra.authority, TENANT, CLIENT_ID, token_file).items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(tls.ca))
    for name in ("HTTPS_PROXY", "https_proxy", "AZURE_POD_IDENTITY_AUTHORITY_HOST"):
        monkeypatch.delenv(name, raising=False)
    return token_file


@pytest.fixture
def managed(tls: certs.CertPaths, entra: EntraId, monkeypatch: pytest.MonkeyPatch) -> None:
    """A pod without workload identity: the managed identity endpoint (IMDS)."""
    for name in (
        "AZURE_FEDERATED_TOKEN_FILE",
        "AZURE_TENANT_ID",
        "AZURE_CLIENT_ID",
        "AZURE_AUTHORITY_HOST",
        "IDENTITY_ENDPOINT",
        "MSI_ENDPOINT",
        "HTTPS_PROXY",
        "https_proxy",
    ):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AZURE_POD_IDENTITY_AUTHORITY_HOST", entra.imds)
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(tls.ca))


class Clock:
    def __init__(self) -> None:
        self.now = time.time()

    def __call__(self) -> float:
        return self.now


def _logins(source: AcrSource, image: str, seconds: float = 20) -> list[Login]:
    return list(source.logins(parse_reference(image), Deadline(seconds)))


def _pull(front: AcrFront, tls: certs.CertPaths, login: Login, repository: str) -> int:
    """The registry's usual token flow with ``login``, then a manifest GET: its status."""
    token = requests.get(
        f"{front.url}/oauth2/token",
        params={"service": front.host, "scope": f"repository:{repository}:pull"},
        auth=(login.username, login.password),
        verify=str(tls.ca),
        timeout=10,
    )
    if token.status_code != 200:
        return token.status_code
    manifest = requests.get(
        f"{front.url}/v2/{repository}/manifests/1.0",
        headers={"Authorization": f"Bearer {token.json()['access_token']}", "Accept": MANIFEST},
        verify=str(tls.ca),
        timeout=10,
    )
    return manifest.status_code


def _wait_for(condition: Any, seconds: float = 10) -> None:
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        if condition():
            return
        time.sleep(0.02)
    pytest.fail("the condition did not come true in time")


def test_workload_identity_flows_end_to_end(
    workload: Path, entra: EntraId, front: AcrFront, tls: certs.CertPaths
) -> None:
    before = len(front.exchanges)
    source = AcrSource([front.host])
    (login,) = _logins(source, f"{front.host}/team/app:1.0")
    assert (login.username, login.source, login.kind) == (
        ACR_USERNAME,
        "acr workload identity",
        "acr",
    )
    assert login.password in front.refresh_tokens
    token_request = entra.token_requests[-1]
    assert token_request.path == f"/{TENANT}/oauth2/v2.0/token"
    asked = token_request.form()
    assert (asked["client_assertion"], asked["client_id"]) == (ASSERTION, CLIENT_ID)
    assert asked["grant_type"] == "client_credentials"
    assert asked["scope"].split()[0] == ACR_SCOPE
    (exchange,) = front.exchanges[before:]
    sent = exchange.form()
    assert (sent["grant_type"], sent["service"], sent["tenant"]) == (
        "access_token",
        front.host,
        TENANT,
    )
    assert entra.accepts(sent["access_token"]) is not None
    assert _pull(front, tls, login, "team/app") == 200


def test_the_registry_client_pulls_a_manifest_with_the_acr_login(
    workload: Path, front: AcrFront, tls: certs.CertPaths
) -> None:
    settings = {front.host: RegistrySettings(ca=tls.ca)}
    image = parse_reference(f"{front.host}/team/app:1.0")
    client = RegistryClient(settings, sources=[AcrSource([front.host])])
    deadline = Deadline(20)
    manifest = client.manifest(image, "1.0", deadline)
    assert manifest.media_type == MANIFEST and manifest.data["schemaVersion"] == 2
    assert deadline.logins == {image.repository: "acr workload identity"}
    # Without the source, the same registry refuses: the login is what let it through.
    with pytest.raises(UpstreamError, match=rf"authentication to {front.host} failed"):
        RegistryClient(settings).manifest(image, "1.0", Deadline(20))


def test_a_failing_identity_is_named_among_the_sources_tried(
    workload: Path, entra: EntraId, front: AcrFront, tls: certs.CertPaths
) -> None:
    entra.refuse = True
    client = RegistryClient(
        {front.host: RegistrySettings(ca=tls.ca)}, sources=[AcrSource([front.host])]
    )
    with pytest.raises(
        UpstreamError, match=r"tried: acr \(no login: acr: cannot get an Entra"
    ) as caught:
        client.manifest(parse_reference(f"{front.host}/team/app:1.0"), "1.0", Deadline(20))
    _no_token_in(str(caught.value))


def test_the_login_is_cached_per_registry(workload: Path, entra: EntraId, front: AcrFront) -> None:
    source = AcrSource([front.host])
    before = (len(entra.token_requests), len(front.exchanges))
    first = _logins(source, f"{front.host}/team/app:1.0")
    second = _logins(source, f"{front.host}/team/other@sha256:" + "a" * 64)
    assert first == second and first[0].password == second[0].password
    assert (len(entra.token_requests), len(front.exchanges)) == (before[0] + 1, before[1] + 1)


def test_the_refresh_token_is_renewed_before_it_expires(
    workload: Path, front: AcrFront, tls: certs.CertPaths
) -> None:
    clock = Clock()
    source = AcrSource([front.host], clock=clock)
    image = f"{front.host}/team/app:1.0"
    (first,) = _logins(source, image)
    exchanged = len(front.exchanges)
    clock.now += 2 * 3600  # two thirds of its three hours: still fresh
    assert _logins(source, image) == [first]
    assert len(front.exchanges) == exchanged
    clock.now += 20 * 60  # past three quarters: used, and renewed behind the review's back
    assert _logins(source, image) == [first]
    _wait_for(lambda: len(front.exchanges) == exchanged + 1)
    _wait_for(lambda: _logins(source, image) != [first])
    (renewed,) = _logins(source, image)
    assert renewed.password != first.password
    assert _pull(front, tls, renewed, "team/app") == 200


def test_an_expired_login_is_fetched_again_within_the_deadline(
    workload: Path, front: AcrFront
) -> None:
    front.refresh_lifetime = 600
    clock = Clock()
    source = AcrSource([front.host], clock=clock)
    image = f"{front.host}/team/app:1.0"
    (first,) = _logins(source, image)
    clock.now += 599  # within the last minute of its life: no longer handed out
    (second,) = _logins(source, image)
    assert second.password != first.password


def test_a_refresh_token_without_a_readable_expiry_lives_three_hours(
    workload: Path, front: AcrFront
) -> None:
    front.mode = "opaque"
    clock = Clock()
    source = AcrSource([front.host], clock=clock)
    image = f"{front.host}/team/app:1.0"
    _logins(source, image)
    exchanged = len(front.exchanges)
    clock.now += 2.2 * 3600
    _logins(source, image)
    time.sleep(0.2)
    assert len(front.exchanges) == exchanged
    clock.now += 0.1 * 3600  # 2.3 h: past 75 % of 3 h
    _logins(source, image)
    _wait_for(lambda: len(front.exchanges) == exchanged + 1)


def test_managed_identity_flows_end_to_end(
    managed: None, entra: EntraId, front: AcrFront, tls: certs.CertPaths
) -> None:
    before = len(front.exchanges)
    source = AcrSource([front.host], client_id=CLIENT_ID)
    (login,) = _logins(source, f"{front.host}/team/app:1.0")
    assert login.source == "acr managed identity"
    imds = entra.imds_requests[-1]
    query = parse_qs(urlsplit(imds.path).query)
    assert query["resource"] == ["https://containerregistry.azure.net"]
    assert query["client_id"] == [CLIENT_ID]
    assert imds.headers.get("Metadata") == "true"
    # The tenant comes from the token itself when the environment has none.
    (exchange,) = front.exchanges[before:]
    assert exchange.form()["tenant"] == TENANT
    assert _pull(front, tls, login, "team/app") == 200


def test_concurrent_reviews_share_one_exchange(workload: Path, front: AcrFront) -> None:
    source = AcrSource([front.host])
    before = len(front.exchanges)
    results: list[list[Login]] = []
    threads = [
        threading.Thread(target=lambda: results.append(_logins(source, f"{front.host}/team/app")))
        for _ in range(8)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    assert len(results) == 8 and len({r[0].password for r in results}) == 1
    assert len(front.exchanges) == before + 1


def test_a_registry_not_configured_gets_nothing(
    workload: Path, entra: EntraId, front: AcrFront, other: AcrFront
) -> None:
    source = AcrSource([front.host])
    seen_before = len(other.seen())
    asked_before = len(entra.token_requests)
    assert not source.matches(other.host)
    assert _logins(source, f"{other.host}/team/app:1.0") == []
    assert len(other.seen()) == seen_before and len(entra.token_requests) == asked_before


def test_a_redirect_at_the_exchange_is_not_followed(
    workload: Path, front: AcrFront, other: AcrFront
) -> None:
    front.mode = "redirect"
    front.redirect_to = f"{other.url}/oauth2/exchange"
    seen_before = len(other.seen())
    source = AcrSource([front.host])
    with pytest.raises(UpstreamError, match=r"answered a redirect \(HTTP 307\)") as caught:
        _logins(source, f"{front.host}/team/app")
    assert len(other.seen()) == seen_before
    _no_token_in(str(caught.value))


def test_a_refusal_that_echoes_the_token_is_reported_without_it(
    workload: Path, front: AcrFront
) -> None:
    front.mode = "echo"
    source = AcrSource([front.host])
    with pytest.raises(
        UpstreamError, match=r"refused the Entra ID token \(HTTP 401, UNAUTHORIZED\): check"
    ) as caught:
        _logins(source, f"{front.host}/team/app")
    _no_token_in(str(caught.value))


def test_an_oversized_exchange_answer_is_cut(workload: Path, front: AcrFront) -> None:
    front.mode = "flood"
    with pytest.raises(UpstreamError, match="larger than 65536 bytes"):
        _logins(AcrSource([front.host]), f"{front.host}/team/app")


def test_an_authority_refusal_is_reported_without_the_federated_token(
    workload: Path, entra: EntraId, front: AcrFront
) -> None:
    entra.refuse = True
    with pytest.raises(UpstreamError, match="cannot get an Entra ID token with workload") as caught:
        _logins(AcrSource([front.host]), f"{front.host}/team/app")
    assert "AADSTS700213" in str(caught.value)
    _no_token_in(str(caught.value))


def test_a_hanging_exchange_costs_a_review_only_its_deadline(
    workload: Path, tls: certs.CertPaths
) -> None:
    hang = hostile.Hanging()
    try:
        source = AcrSource([hang.host])
        started = time.monotonic()
        with pytest.raises(UpstreamError, match="still being fetched when the review's deadline"):
            _logins(source, f"{hang.host}/team/app", seconds=0.5)
        assert time.monotonic() - started < 1.5
    finally:
        hang.close()


def test_the_tokens_reach_only_their_own_hosts(
    workload: Path, entra: EntraId, front: AcrFront, other: AcrFront, tls: certs.CertPaths
) -> None:
    source = AcrSource([front.host])
    (login,) = _logins(source, f"{front.host}/team/app:1.0")
    assert _pull(front, tls, login, "team/app") == 200
    _logins(source, f"{other.host}/team/app:1.0")  # not configured: nothing sent
    issued = list(entra.issued)
    everything: dict[str, list[Seen]] = {
        "authority": entra.every_request(),
        "registry": front.seen(),
        "other registry": other.seen(),
    }
    found: dict[str, set[tuple[str, str]]] = {"entra": set(), "federated": set(), "refresh": set()}
    for where, requests_seen in everything.items():
        for seen in requests_seen:
            text = seen.text()
            path = seen.path.split("?")[0]
            if any(token in text for token in issued):
                found["entra"].add((where, path))
            if ASSERTION in text:
                found["federated"].add((where, path))
            if login.password in text:
                found["refresh"].add((where, path))
    assert found == {
        "entra": {("registry", "/oauth2/exchange")},
        "federated": {("authority", f"/{TENANT}/oauth2/v2.0/token")},
        "refresh": {("registry", "/oauth2/token")},
    }


def _no_token_in(message: str) -> None:
    assert ASSERTION not in message
    assert "eyJ" not in message


@pytest.mark.parametrize(
    ("registries", "message"),
    [
        (["myreg.azurecr.io/team"], "has a path"),
        (["user@myreg.azurecr.io"], "is not a registry host pattern"),
    ],
)
def test_a_bad_registry_pattern_is_a_config_error(registries: list[str], message: str) -> None:
    with pytest.raises(
        ConfigError, match=rf"credentials.providers \(type acr\).registries: .*{message}"
    ):
        AcrSource(registries)


def test_half_configured_workload_identity_is_a_config_error(
    workload: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("AZURE_TENANT_ID")
    with pytest.raises(ConfigError, match=r"AZURE_TENANT_ID or the client ID is not.*client-id"):
        AcrSource(["*.azurecr.io"])


def test_without_azure_identity_the_config_error_says_what_to_install(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    real = importlib.util.find_spec
    monkeypatch.setattr(
        acr.importlib.util,
        "find_spec",
        lambda name, *a: None if name == "azure.identity" else real(name, *a),
    )
    with pytest.raises(ConfigError, match=r"pip install 'trustgate\[azure\]'"):
        AcrSource(["*.azurecr.io"])
