"""Google registry logins: access tokens from Application Default Credentials, renewed early.

google-auth runs for real against ``tests.support.gcp``: the GCE metadata server
stand-in (as GKE's answers with Workload Identity), found through
``GCE_METADATA_HOST``, and Google STS's token exchange, for a workload identity
federation file named by ``GOOGLE_APPLICATION_CREDENTIALS``.
"""

from __future__ import annotations

import importlib
import json
import os
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import pytest

from tests.support.clock import Clock
from tests.support.cloudregistry import pull_manifest, start_login_registry
from tests.support.gcp import TOKEN_PATH, MetadataServer, StsServer
from tests.support.registry import push_image
from webhook.config.credentials import DEFAULT_REGISTRIES
from webhook.core.deadline import Deadline
from webhook.core.errors import ConfigError, UpstreamError
from webhook.core.reference import parse_reference
from webhook.credentials.gcp import SCOPES, GcpSource
from webhook.credentials.renewal import RENEW_AT
from webhook.registry.client import RegistryClient, RegistrySettings

IMAGE = "europe-west1-docker.pkg.dev/example-project/team/app:1"
LIFE = 3599.0
_METADATA = "google.auth.compute_engine._metadata"


@pytest.fixture(scope="module")
def metadata() -> Iterator[MetadataServer]:
    """One metadata server for the module: google-auth reads its host once, at import."""
    server = MetadataServer(expires_in=int(LIFE)).start()
    saved = {name: os.environ.get(name) for name in ("GCE_METADATA_HOST", "GCE_METADATA_IP")}
    os.environ["GCE_METADATA_HOST"] = os.environ["GCE_METADATA_IP"] = server.host
    if _METADATA in sys.modules:  # imported before with another host: read it again
        importlib.reload(sys.modules[_METADATA])
    yield server
    for name, value in saved.items():
        if value is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = value
    server.stop()


@pytest.fixture
def gke(
    metadata: MetadataServer, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> MetadataServer:
    """The metadata server as on GKE, and no credential file or gcloud login to find first."""
    metadata.reset()
    monkeypatch.delenv("GOOGLE_APPLICATION_CREDENTIALS", raising=False)
    (tmp_path / "gcloud").mkdir()
    monkeypatch.setenv("CLOUDSDK_CONFIG", str(tmp_path / "gcloud"))
    return metadata


def _source(**options: object) -> GcpSource:
    return GcpSource(DEFAULT_REGISTRIES["gcp"], **options)  # type: ignore[arg-type]


def _ask(source: GcpSource, image: str = IMAGE, seconds: float = 10.0) -> list[tuple[str, str]]:
    logins = source.logins(parse_reference(image), Deadline(seconds))
    return [(login.username, login.password) for login in logins]


def _failure(source: GcpSource, seconds: float = 10.0) -> str:
    with pytest.raises(UpstreamError) as caught:
        _ask(source, seconds=seconds)
    message = str(caught.value)
    assert "ya29." not in message
    return message


# --- which hosts get the token -----------------------------------------------------------------

SERVED = [
    ("europe-west1-docker.pkg.dev", True),
    ("us-docker.pkg.dev", True),
    ("gcr.io", True),
    ("eu.gcr.io", True),
    ("GCR.IO", True),
    ("docker.pkg.dev", False),
    ("a.b-docker.pkg.dev", False),
    ("europe-west1-docker.pkg.dev.evil.com", False),
    ("gcr.io.evil.com", False),
    ("evilgcr.io", False),
    ("a.b.gcr.io", False),
    ("gcr.io:5000", False),
    ("pkg.dev", False),
    ("evil.com", False),
    ("docker.io", False),
]


@pytest.mark.parametrize(("host", "served"), SERVED)
def test_the_token_goes_only_to_the_listed_google_registries(host: str, served: bool) -> None:
    assert _source().matches(host) is served


def test_an_image_elsewhere_gets_nothing_and_costs_no_call(gke: MetadataServer) -> None:
    source = _source()
    assert _ask(source, "evil.com/gcr.io/app:1") == []
    assert _ask(source, "gcr.io.evil.com/app:1") == []
    assert gke.requests == []


# --- fetched once, renewed early -------------------------------------------------------------


def test_many_reviews_at_once_cost_one_token_from_the_metadata_server(gke: MetadataServer) -> None:
    source = _source()
    got: list[list[tuple[str, str]]] = []
    lock = threading.Lock()

    def review(image: str) -> None:
        logins = _ask(source, image)
        with lock:
            got.append(logins)

    images = [
        IMAGE,
        "gcr.io/example-project/app:1",
        "eu.gcr.io/example-project/app@sha256:" + "a" * 64,
    ]
    threads = [threading.Thread(target=review, args=(image,)) for image in images * 8]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    (token,) = gke.tokens
    assert got == [[("oauth2accesstoken", token)]] * 24
    assert gke.token_requests() == 1
    token_calls = [(path, headers) for path, headers in gke.requests if TOKEN_PATH in path]
    ((path, headers),) = token_calls
    assert headers["metadata-flavor"] == "Google"
    assert parse_qs(urlsplit(path).query)["scopes"] == [",".join(SCOPES)]


def test_the_login_names_its_source_and_kind_and_hides_its_password(gke: MetadataServer) -> None:
    (login,) = _source().logins(parse_reference(IMAGE), Deadline(10))
    assert (login.username, login.source, login.kind) == ("oauth2accesstoken", "gcp", "gcp")
    assert login.password not in repr(login)


def test_a_token_that_expires_is_renewed_before_any_review_fails(gke: MetadataServer) -> None:
    """Six hours of reviews every five minutes, with tokens of an hour: none fails or waits."""
    clock = Clock(1_900_000_000.0)
    source = _source(clock=clock)
    ((_, first),) = _ask(source)
    issued = {first: clock() + LIFE}
    fetched_at = clock()
    for _ in range(6 * 12):
        clock.advance(300)
        fetches = len(gke.tokens)
        started = time.monotonic()
        ((_, token),) = _ask(source, seconds=0.0)
        assert time.monotonic() - started < 0.5, "a review waited for a fetch"
        assert clock() < issued[token], "a review was handed an expired token"
        if clock() - fetched_at >= LIFE * RENEW_AT:
            _wait_for(lambda n=fetches + 1: len(gke.tokens) == n)
            renewed = gke.tokens[-1]
            _wait_for(lambda want=renewed: _ask(source, seconds=0.0)[0][1] == want)
            issued[renewed] = clock() + LIFE
            fetched_at = clock()
    assert gke.token_requests() == len(issued) >= 6 * 60 // 45


# --- federated credentials --------------------------------------------------------------------


def test_a_workload_identity_federation_file_is_exchanged_at_sts(
    gke: MetadataServer, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    audience = (
        "//iam.googleapis.com/projects/123456789/locations/global/"
        "workloadIdentityPools/eks/providers/trustgate"
    )
    sts = StsServer(audience)
    try:
        subject = tmp_path / "token"
        subject.write_text("eyJ.kubernetes-service-account-token.sig")
        config = {
            "type": "external_account",
            "audience": audience,
            "subject_token_type": "urn:ietf:params:oauth:token-type:jwt",
            "token_url": sts.url,
            "credential_source": {"file": str(subject)},
        }
        (tmp_path / "federation.json").write_text(json.dumps(config))
        monkeypatch.setenv("GOOGLE_APPLICATION_CREDENTIALS", str(tmp_path / "federation.json"))
        source = _source()
        for _ in range(3):
            assert _ask(source) == [("oauth2accesstoken", sts.tokens[0])]
        (exchange,) = sts.exchanges
        assert exchange["subject_token"] == subject.read_text()
        assert exchange["scope"] == " ".join(SCOPES)
        assert gke.requests == []  # the file comes first: the metadata server is not asked
    finally:
        sts.stop()


# --- failures: bounded, clear, without a secret -----------------------------------------------


def test_a_metadata_server_that_hangs_costs_a_review_its_deadline_and_each_call_is_cut(
    gke: MetadataServer,
) -> None:
    gke.mode = "hang"
    source = _source(timeout=0.5)
    started = time.monotonic()
    with pytest.raises(UpstreamError, match="still being fetched when the review's deadline"):
        _ask(source, seconds=0.3)
    assert time.monotonic() - started < 1.0
    # google-auth asks again after each call is cut at half a second (and a backoff of one).
    _wait_for(lambda: gke.token_requests() >= 2, seconds=4.0)
    gke.reset()  # the server recovers: the fetch still running brings a token
    assert _ask(source, seconds=15.0)[0][0] == "oauth2accesstoken"


def test_a_refusal_by_iam_says_so_and_where_to_look(gke: MetadataServer) -> None:
    gke.mode = "denied"
    message = _failure(_source())
    assert message.startswith("the Google access token could not be refreshed (")
    assert "Status: 403" in message and "IAM returned 403 Forbidden" in message
    assert message.endswith("see docs/clouds/gke.md")


def test_an_oversized_answer_is_cut_and_not_asked_again(gke: MetadataServer) -> None:
    gke.mode = "huge"
    started = time.monotonic()
    message = _failure(_source())
    assert time.monotonic() - started < 3.0
    assert f"{gke.host} answered more than 65536 bytes" in message
    assert gke.token_requests() == 1


def test_a_redirect_is_not_followed(gke: MetadataServer) -> None:
    elsewhere = MetadataServer().start()
    try:
        gke.mode = "redirect"
        gke.redirect_to = f"http://{elsewhere.host}{TOKEN_PATH}"
        message = _failure(_source())
        assert "Status: 302" in message
        assert elsewhere.requests == []
    finally:
        elsewhere.stop()


def test_without_google_credentials_the_message_says_how_to_give_some(gke: MetadataServer) -> None:
    gke.mode = "absent"
    message = _failure(_source())
    assert message.startswith("found no Google credentials (")
    assert "Workload Identity" in message and "GOOGLE_APPLICATION_CREDENTIALS" in message
    assert "docs/clouds/gke.md" in message


# --- the registry takes the token, and only it ------------------------------------------------


def test_the_registry_accepts_the_access_token_and_refuses_another(
    gke: MetadataServer, tmp_path: Path
) -> None:
    gke.fixed_token = "ya29.the-token-the-registry-knows"
    registry = start_login_registry(tmp_path, "oauth2accesstoken", gke.fixed_token)
    try:
        digest = push_image(registry, "example-project/team/app", tag="1")
        image = parse_reference(f"{registry.host}/example-project/team/app:1")
        source = GcpSource([registry.host])
        assert source.matches(registry.host) and not source.matches("gcr.io")
        (login,) = source.logins(image, Deadline(10))
        assert pull_manifest(registry, "example-project/team/app", "1", login) == 200
        # Through the registry client, as reviews pull.
        settings = {registry.host: RegistrySettings(insecure=True)}
        deadline = Deadline(10)
        assert RegistryClient(settings, sources=[source]).resolve(image, deadline) == digest
        assert deadline.logins[image.repository] == "gcp"
        assert gke.token_requests() == 1
        gke.fixed_token = "ya29.some-other-identity"
        other_source = GcpSource([registry.host])
        (other,) = other_source.logins(image, Deadline(10))
        assert other.password == gke.fixed_token
        assert pull_manifest(registry, "example-project/team/app", "1", other) == 401
        with pytest.raises(UpstreamError) as denied:
            RegistryClient(settings, sources=[other_source]).resolve(image, Deadline(10))
        assert f"authentication to {registry.host} failed" in str(denied.value)
        assert "tried: gcp (" in str(denied.value) and "ya29." not in str(denied.value)
    finally:
        registry.stop()


# --- google-auth is loaded only for a configured provider -------------------------------------


def test_importing_the_module_loads_no_google_library() -> None:
    code = (
        "import sys, webhook.credentials.gcp; "
        "print(sorted(m for m in sys.modules if m.split('.')[0] == 'google'))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_without_google_auth_a_gcp_provider_is_a_configuration_error_naming_the_extra() -> None:
    code = (
        "import sys; sys.modules['google.auth'] = None\n"
        "from webhook.credentials.gcp import GcpSource\n"
        "try:\n    GcpSource(['gcr.io'])\n"
        "except Exception as exc:\n    print(type(exc).__name__, exc)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.startswith("ConfigError credentials.providers: type gcp needs google-auth")
    assert "trustgate[gcp]" in out.stdout


def test_a_pattern_that_is_no_registry_host_is_a_configuration_error() -> None:
    with pytest.raises(ConfigError, match=r"credentials\.providers: gcp: registries"):
        GcpSource(["gcr.io?x"])


def _wait_for(condition: Callable[[], bool], seconds: float = 10.0) -> None:
    end = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < end, "what the test waits for did not happen"
        time.sleep(0.01)
