"""The start-up refresh of the production trusted root, and what a failed one leaves in use.

The failing cases run sigstore-python's real TUF client against a local HTTP
server that answers 404 to everything, and against a closed port: this
environment has no network, and a refresh must fail fast and harmlessly.
"""

from __future__ import annotations

import http.server
import logging
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from sigstore.models import Bundle

from tests.support.sigstore_instance import SigstoreInstance
from tests.unit.signatures.test_keyless_production import DATA, DIGEST, keyless
from webhook.config import parse_config
from webhook.policy.model import Authority
from webhook.policy.store import PolicyStore
from webhook.serving.app import Settings, create_app
from webhook.signatures.keyless import parse_bundle, verify_bundle
from webhook.signatures.refresher import RootRefresher, fetch_from_tuf
from webhook.trust.trustroot import TrustRoots, load_trusted_root

EMBEDDED = load_trusted_root("production", Path("."))
POLICY = """\
apiVersion: trustgate.dev/v1alpha1
kind: ImagePolicy
metadata: {name: ci}
spec:
  registries: ["**"]
  signatures:
    authorities:
      - name: ci
        keyless: {issuer: https://token.actions.githubusercontent.com, subject: s}
"""


class _NotFound(http.server.BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        self.send_response(404)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture(scope="module")
def not_found() -> Iterator[str]:
    """A TUF repository URL whose every file is missing."""
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _NotFound)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()
    thread.join()


@pytest.fixture(autouse=True)
def tuf_dirs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """sigstore-python's TUF client keeps metadata under the XDG directories."""
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "data"))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))


def refresher(roots: TrustRoots, url: str, calls: list[str], **options: object) -> RootRefresher:
    return RootRefresher(
        roots,
        url=url,
        timeout=float(options.pop("timeout", 10.0)),  # type: ignore[arg-type]
        on_refresh=lambda: calls.append("reloaded"),
        **options,  # type: ignore[arg-type]
    )


def production_bundle() -> Bundle:
    parsed = parse_bundle((DATA / "bundle_v3_github.whl.sigstore").read_bytes())
    assert isinstance(parsed, Bundle), parsed
    return parsed


@pytest.mark.parametrize("where", ["404", "closed port"])
def test_failed_refresh_keeps_the_shipped_root(
    not_found: str, where: str, caplog: pytest.LogCaptureFixture
) -> None:
    url = not_found if where == "404" else "http://127.0.0.1:1"
    roots, calls = TrustRoots(), []
    started = time.monotonic()
    with caplog.at_level(logging.INFO, logger="trustgate"):
        assert refresher(roots, url, calls).refresh() is False
    assert time.monotonic() - started < 5
    assert calls == [] and roots.fingerprint == ""
    warning = [
        r for r in caplog.records if r.levelno == logging.WARNING and r.name.startswith("trustgate")
    ]
    assert len(warning) == 1
    message = warning[0].getMessage()
    assert message.startswith(
        f"trusted root refresh from {url} failed, keeping the production root shipped with "
        "sigstore-python: TUFError: Failed to refresh TUF metadata"
    )
    # Verification still uses the shipped root: a real production bundle verifies.
    root = roots.load("production", Path("."))
    assert root.digest == EMBEDDED.digest
    assert verify_bundle(root, keyless(), production_bundle(), image_digest=DIGEST).ok


def test_fetch_from_tuf_raises_for_a_missing_repository(not_found: str) -> None:
    with pytest.raises(Exception, match="Failed to refresh TUF metadata"):
        fetch_from_tuf(not_found)


def test_slow_refresh_is_given_up_at_the_timeout(caplog: pytest.LogCaptureFixture) -> None:
    release = threading.Event()

    def hang(url: str) -> bytes:
        release.wait(10)
        return SigstoreInstance().trusted_root_json().encode()

    roots, calls = TrustRoots(), []
    with caplog.at_level(logging.WARNING, logger="trustgate"):
        assert (
            refresher(roots, "https://tuf.example", calls, timeout=0.2, fetch=hang).refresh()
            is False
        )
    release.set()
    assert "failed, keeping the production root" in caplog.text
    assert "no answer within 0.2 seconds" in caplog.text
    time.sleep(0.1)
    assert roots.fingerprint == "" and calls == []


def test_unusable_root_is_not_installed(caplog: pytest.LogCaptureFixture) -> None:
    roots, calls = TrustRoots(), []
    with caplog.at_level(logging.WARNING, logger="trustgate"):
        ok = refresher(roots, "https://tuf.example", calls, fetch=lambda url: b"{}").refresh()
    assert ok is False and calls == [] and roots.fingerprint == ""
    assert "not a usable Sigstore trusted root" in caplog.text


def test_refreshed_root_is_swapped_in_for_production_authorities(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    policies = tmp_path / "policies"
    policies.mkdir()
    (policies / "ci.yaml").write_text(POLICY)
    roots = TrustRoots()
    store = PolicyStore(policies, roots=roots)

    def root_digest() -> str:
        signatures = store.current.policies[0].signatures
        assert signatures is not None
        authority: Authority = signatures.authorities[0]
        assert authority.keyless is not None and authority.keyless.root is not None
        return authority.keyless.root.digest

    assert root_digest() == EMBEDDED.digest
    fresh = SigstoreInstance().trusted_root_json().encode()
    refreshed = RootRefresher(
        roots,
        url="https://tuf.example",
        timeout=5,
        on_refresh=store.reload,
        fetch=lambda url: fresh,
    )
    with caplog.at_level(logging.INFO, logger="trustgate"):
        assert refreshed.refresh() is True
    assert "production trusted root refreshed from https://tuf.example" in caplog.text
    assert root_digest() == roots.load("production", policies).digest != EMBEDDED.digest
    assert store.status.reloads == 1


def test_app_starts_without_waiting_and_keeps_the_shipped_root(
    tmp_path: Path, not_found: str, caplog: pytest.LogCaptureFixture
) -> None:
    policies = tmp_path / "policies"
    policies.mkdir()
    (policies / "ci.yaml").write_text(POLICY)
    config = parse_config(
        {
            "policies": {"reloadIntervalSeconds": 0},
            "sigstore": {
                "refreshTrustedRoot": True,
                "refreshTimeoutSeconds": 5,
                "tufUrl": not_found,
            },
        }
    )
    assert config.sigstore.refresh_trusted_root and config.sigstore.tuf_url == not_found
    with caplog.at_level(logging.INFO, logger="trustgate"):
        app = create_app(Settings(policies=policies, config=config, reload=False))
        deadline = time.monotonic() + 5
        while "trusted root refresh" not in caplog.text and time.monotonic() < deadline:
            time.sleep(0.02)
    assert f"trusted root refresh from {not_found} failed" in caplog.text
    store = app.extensions["trustgate"].store
    signatures = store.current.policies[0].signatures
    assert signatures.authorities[0].keyless.root.digest == EMBEDDED.digest


def test_refresh_is_off_by_default() -> None:
    config = parse_config({})
    assert config.sigstore.refresh_trusted_root is False
    assert config.sigstore.refresh_timeout_seconds == 10
    assert config.sigstore.tuf_url == "https://tuf-repo-cdn.sigstore.dev"
