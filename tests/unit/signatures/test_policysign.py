"""Keyless signing of a manifest against Fulcio and Rekor stand-ins: tokens, instances, failures.

The servers are real HTTP servers on 127.0.0.1 answering the API sigstore-python
calls; hostile ones hang, fail quoting the token, answer nonsense or redirect.
"""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from tests.support.hostile import hang, hostile_server
from tests.support.sigstore_instance import FulcioCA
from tests.support.sigstore_services import (
    OidcIssuer,
    SigstoreServices,
    ca_entry,
    sigstore_services,
)
from webhook.core.errors import PolicyError
from webhook.signatures.policysign import (
    TOKEN_VARIABLE,
    Instance,
    identity_token,
    load_instance,
    sign_keyless,
)

EMAIL = "policy-bot@trustgate.test"
AMBIENT = (
    "GITHUB_ACTIONS",
    "ACTIONS_ID_TOKEN_REQUEST_TOKEN",
    "ACTIONS_ID_TOKEN_REQUEST_URL",
    "GOOGLE_SERVICE_ACCOUNT_NAME",
    "BUILDKITE",
    "GITLAB_CI",
    "CIRCLECI",
    TOKEN_VARIABLE,
)


@pytest.fixture(autouse=True)
def no_ambient_credentials(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in AMBIENT:
        monkeypatch.delenv(name, raising=False)


@pytest.fixture
def services() -> Iterator[SigstoreServices]:
    with sigstore_services() as running:
        yield running


def _instance(services: SigstoreServices, tmp_path: Path, **urls: Any) -> Instance:
    path = tmp_path / "trust-config.json"
    path.write_text(json.dumps(services.trust_config(**urls)))
    return load_instance(trust_config=path)


# Tokens --------------------------------------------------------------------------------------


def test_a_given_token_wins_over_the_environment(
    services: SigstoreServices, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(TOKEN_VARIABLE, services.oidc.token(subject="from-env"))
    assert identity_token(services.oidc.token(subject="given")).identity == "given"
    assert identity_token(None).identity == "from-env"


def test_github_actions_gives_its_token(
    services: SigstoreServices, monkeypatch: pytest.MonkeyPatch
) -> None:
    """GitHub's token endpoint, as ACTIONS_ID_TOKEN_REQUEST_URL names it, asked for audience
    sigstore with the job's request token."""
    token = services.oidc.token("https://github.com/acme/policies/.github/workflows/sign.yml")
    seen: list[tuple[str, str]] = []

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            seen.append((self.path, self.headers.get("Authorization", "")))
            data = json.dumps({"value": token}).encode()
            self.send_response(200)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        monkeypatch.setenv("GITHUB_ACTIONS", "true")
        monkeypatch.setenv("ACTIONS_ID_TOKEN_REQUEST_TOKEN", "request-token")
        url = f"http://127.0.0.1:{server.server_address[1]}/token?api-version=2.0"
        monkeypatch.setenv("ACTIONS_ID_TOKEN_REQUEST_URL", url)
        assert str(identity_token(None)) == token
    finally:
        server.shutdown()
        server.server_close()
    assert seen == [("/token?api-version=2.0&audience=sigstore", "bearer request-token")]


def test_a_hanging_ci_token_endpoint_fails_within_the_timeout(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    with hostile_server(hang) as server:
        monkeypatch.setenv("GITHUB_ACTIONS", "true")
        monkeypatch.setenv("ACTIONS_ID_TOKEN_REQUEST_TOKEN", "request-token")
        monkeypatch.setenv("ACTIONS_ID_TOKEN_REQUEST_URL", f"http://{server.host}/token")
        started = time.monotonic()
        with pytest.raises(PolicyError, match="token endpoint did not answer within 1 s"):
            identity_token(None, timeout=1)
        assert time.monotonic() - started < 3


def test_a_ci_token_endpoint_error_never_shows_a_token(monkeypatch: pytest.MonkeyPatch) -> None:
    """id quotes the endpoint's body in its error; a token in it is hidden."""
    leaked = OidcIssuer().token(EMAIL)

    def refuse(sock: socket.socket, request: bytes) -> None:
        body = json.dumps({"message": f"refused {leaked}"}).encode()
        head = f"HTTP/1.1 500 Oops\r\nContent-Length: {len(body)}\r\n\r\n".encode()
        sock.sendall(head + body)

    with hostile_server(refuse) as server:
        monkeypatch.setenv("GITHUB_ACTIONS", "true")
        monkeypatch.setenv("ACTIONS_ID_TOKEN_REQUEST_TOKEN", "request-token")
        monkeypatch.setenv("ACTIONS_ID_TOKEN_REQUEST_URL", f"http://{server.host}/token")
        with pytest.raises(PolicyError, match="ambient detection failed") as caught:
            identity_token(None, timeout=30)
    assert leaked not in str(caught.value)
    assert leaked.split(".")[1] not in str(caught.value)


def test_github_actions_without_id_token_permission_says_what_to_do(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("GITHUB_ACTIONS", "true")
    with pytest.raises(PolicyError, match="ACTIONS_ID_TOKEN_REQUEST_TOKEN"):
        identity_token(None)


def test_no_token_anywhere_says_where_to_put_one() -> None:
    with pytest.raises(PolicyError) as caught:
        identity_token(None)
    message = str(caught.value)
    assert "--identity-token" in message
    assert TOKEN_VARIABLE in message
    assert "id-token: write" in message


@pytest.mark.parametrize(
    "make",
    [
        lambda oidc: oidc.token(EMAIL, lifetime=-60),
        lambda oidc: oidc.token(EMAIL, audience="another-audience"),
        lambda oidc: oidc.token(EMAIL) + "-truncated.AAAA",
        lambda oidc: "eyJhbGciOiJFUzI1NiJ9.bm90LWpzb24.c2ln",
    ],
)
def test_an_unusable_token_is_refused_without_being_shown(make: Any) -> None:
    token = make(OidcIssuer())
    with pytest.raises(PolicyError, match="the identity token is not usable") as caught:
        identity_token(token)
    assert token not in str(caught.value)
    assert token.split(".")[1] not in str(caught.value)


# Instances -----------------------------------------------------------------------------------


def test_production_and_staging_are_read_offline() -> None:
    production = load_instance()
    assert production.name == "production"
    assert production.fulcio == "https://fulcio.sigstore.dev"
    assert production.rekor == "https://rekor.sigstore.dev/api/v1"
    staging = load_instance(staging=True)
    assert staging.fulcio == "https://fulcio.sigstage.dev"
    assert "sigstage.dev" in staging.rekor


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        ("{", "not a usable Sigstore ClientTrustConfig"),
        ('{"mediaType": "x"}', "not a usable Sigstore ClientTrustConfig"),
        ("x" * (1024 * 1024 + 1), "is over 1048576 bytes"),
    ],
)
def test_a_bad_trust_config_is_bad_input(tmp_path: Path, content: str, expected: str) -> None:
    path = tmp_path / "trust.json"
    path.write_text(content)
    with pytest.raises(PolicyError, match=expected):
        load_instance(trust_config=path)
    with pytest.raises(PolicyError, match="cannot read trust config"):
        load_instance(trust_config=tmp_path / "missing.json")


# Signing -------------------------------------------------------------------------------------


def test_a_bundle_names_the_token_identity(services: SigstoreServices, tmp_path: Path) -> None:
    instance = _instance(services, tmp_path)
    signature = sign_keyless(b"manifest", instance, identity_token(services.oidc.token(EMAIL)))
    assert signature.signer == f"identity {EMAIL!r} (issuer 'https://oidc.trustgate.test')"
    assert len(signature.bundle["verificationMaterial"]["tlogEntries"]) == 1
    fulcio = services.fulcio.requests
    assert [r["path"] for r in fulcio] == ["/api/v2/signingCert"]
    assert [r["path"] for r in services.rekor.requests] == ["/api/v1/log/entries"]
    assert "Authorization" not in services.rekor.requests[0]["headers"]


def _closed_port() -> str:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return f"http://127.0.0.1:{sock.getsockname()[1]}"


def test_an_unreachable_fulcio_is_named(services: SigstoreServices, tmp_path: Path) -> None:
    url = _closed_port()
    instance = _instance(services, tmp_path, fulcio=url)
    with pytest.raises(PolicyError, match=rf"keyless signing failed at Fulcio \({url}\)"):
        sign_keyless(b"manifest", instance, identity_token(services.oidc.token(EMAIL)))


@pytest.mark.parametrize("server", ["fulcio", "rekor"])
def test_a_hanging_service_fails_within_the_timeout(
    services: SigstoreServices, tmp_path: Path, server: str
) -> None:
    getattr(services, server).behaviour = "hang"
    instance = _instance(services, tmp_path)
    started = time.monotonic()
    with pytest.raises(PolicyError, match="did not finish within 1 s") as caught:
        sign_keyless(b"m", instance, identity_token(services.oidc.token(EMAIL)), timeout=1)
    assert time.monotonic() - started < 3
    assert ("Fulcio" if server == "fulcio" else "Rekor") in str(caught.value)


def test_a_fulcio_error_quoting_the_token_never_shows_it(
    services: SigstoreServices, tmp_path: Path
) -> None:
    services.fulcio.behaviour = "error"
    token = services.oidc.token(EMAIL)
    with pytest.raises(PolicyError, match="keyless signing failed at Fulcio") as caught:
        sign_keyless(b"m", _instance(services, tmp_path), identity_token(token))
    assert token not in str(caught.value)
    assert token.split(".")[2] not in str(caught.value)
    assert "500" in str(caught.value)


def test_fulcio_refuses_a_token_of_another_issuer(
    services: SigstoreServices, tmp_path: Path
) -> None:
    token = OidcIssuer().token(EMAIL)  # same issuer name, another key
    with pytest.raises(PolicyError, match="keyless signing failed at Fulcio") as caught:
        sign_keyless(b"m", _instance(services, tmp_path), identity_token(token))
    assert "401" in str(caught.value)
    assert token not in str(caught.value)


@pytest.mark.parametrize("server", ["fulcio", "rekor"])
def test_nonsense_answers_are_refused(
    services: SigstoreServices, tmp_path: Path, server: str
) -> None:
    getattr(services, server).behaviour = "garbage"
    stage = "Fulcio" if server == "fulcio" else "Rekor"
    with pytest.raises(PolicyError, match=f"keyless signing failed at {stage}"):
        sign_keyless(
            b"m", _instance(services, tmp_path), identity_token(services.oidc.token(EMAIL))
        )


def test_a_redirect_to_another_host_does_not_carry_the_token(
    services: SigstoreServices, tmp_path: Path
) -> None:
    """Fulcio answers 307 to another host (localhost, not 127.0.0.1): the token stays behind."""
    with sigstore_services() as elsewhere:
        port = elsewhere.fulcio.url.rsplit(":", 1)[1]
        services.fulcio.behaviour = "redirect"
        services.fulcio.redirect_to = f"http://localhost:{port}"
        with pytest.raises(PolicyError, match="keyless signing failed at Fulcio"):
            sign_keyless(
                b"m", _instance(services, tmp_path), identity_token(services.oidc.token(EMAIL))
            )
        assert elsewhere.fulcio.requests, "the redirect was followed"
        assert all("Authorization" not in r["headers"] for r in elsewhere.fulcio.requests)


def test_a_bundle_its_own_root_refuses_is_not_written(
    services: SigstoreServices, tmp_path: Path
) -> None:
    """Fulcio issues from a CA the instance's trusted root does not list."""
    services.fulcio.ca = FulcioCA(services.instance.ct_log, "unlisted")
    with pytest.raises(PolicyError, match="does not verify with its trusted root"):
        sign_keyless(
            b"m", _instance(services, tmp_path), identity_token(services.oidc.token(EMAIL))
        )
    listed = _instance(services, tmp_path, authorities=[ca_entry(services.fulcio.ca)])
    assert sign_keyless(b"m", listed, identity_token(services.oidc.token(EMAIL))).bundle
