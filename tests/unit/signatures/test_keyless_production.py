"""A real bundle, signed against the production Sigstore, verified offline by trustgate.

tests/data/sigstore/README.md says where the bundle comes from and what it signs.
"""

from __future__ import annotations

import socket
from pathlib import Path

import pytest
from sigstore.models import Bundle

from webhook.policy.model import Keyless
from webhook.signatures.keyless import parse_bundle, verify_bundle
from webhook.trust.trustroot import TrustRoot, load_trusted_root

DATA = Path(__file__).parents[2] / "data" / "sigstore"
ISSUER = "https://token.actions.githubusercontent.com"
SUBJECT = "https://github.com/trailofbits/rfc8785.py/.github/workflows/release.yml@refs/tags/v0.1.2"
DIGEST = "sha256:c4e92e9ecc828bef2aa7dba1de8ac983511f7532a0df11c770d39099a25cf201"


@pytest.fixture(autouse=True)
def offline(monkeypatch: pytest.MonkeyPatch) -> None:
    """Any attempt to open a connection fails the test: verification must be offline."""

    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError(f"network access during offline verification: {args!r}")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)


@pytest.fixture(scope="module")
def production() -> TrustRoot:
    return load_trusted_root("production", DATA)


@pytest.fixture(scope="module")
def signed() -> Bundle:
    raw = (DATA / "bundle_v3_github.whl.sigstore").read_bytes()
    assert len(raw) == 10040
    parsed = parse_bundle(raw)
    assert not isinstance(parsed, str), parsed
    return parsed


def keyless(**fields: object) -> Keyless:
    values: dict[str, object] = {"issuer": ISSUER, "subject": SUBJECT}
    values.update(fields)
    return Keyless(**values)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "policy",
    [
        keyless(),
        keyless(
            extensions=(
                ("githubWorkflowRef", "refs/tags/v0.1.2"),
                ("githubWorkflowRepository", "trailofbits/rfc8785.py"),
                ("runnerEnvironment", "github-hosted"),
                ("sourceRepositoryURI", "https://github.com/trailofbits/rfc8785.py"),
            )
        ),
        keyless(
            subject=None,
            subject_regexp=r"https://github\.com/trailofbits/[^/]+/\.github/workflows/release\.yml@refs/tags/v.*",
        ),
    ],
)
def test_production_bundle_verifies_offline(
    production: TrustRoot, signed: Bundle, policy: Keyless
) -> None:
    result = verify_bundle(production, policy, signed, image_digest=DIGEST)
    assert result.ok, result.reason


@pytest.mark.parametrize(
    ("policy", "reason"),
    [
        (
            keyless(subject=SUBJECT.replace("v0.1.2", "v0.1.3")),
            f"subject {SUBJECT!r} does not match {SUBJECT.replace('v0.1.2', 'v0.1.3')!r}",
        ),
        (
            keyless(issuer="https://accounts.google.com"),
            f"issuer {ISSUER!r} is not 'https://accounts.google.com'",
        ),
        (
            keyless(subject=None, subject_regexp=r"https://github\.com/trailofbits/rfc8785\.py"),
            "does not match the whole of /https://github\\.com/trailofbits/rfc8785\\.py/",
        ),
        (
            keyless(extensions=(("githubWorkflowRepository", "acme/rfc8785.py"),)),
            "GitHubWorkflowRepository does not match (got 'trailofbits/rfc8785.py', "
            "expected 'acme/rfc8785.py')",
        ),
    ],
)
def test_production_bundle_with_another_identity_is_refused(
    production: TrustRoot, signed: Bundle, policy: Keyless, reason: str
) -> None:
    result = verify_bundle(production, policy, signed, image_digest=DIGEST)
    assert not result.ok
    assert reason in result.reason


def test_production_bundle_for_another_digest_is_refused(
    production: TrustRoot, signed: Bundle
) -> None:
    other = "sha256:" + "0" * 64
    result = verify_bundle(production, keyless(), signed, image_digest=other)
    assert result.reason.startswith(f"the bundle signs another artifact, not {other}")


def test_production_bundle_against_the_staging_root_is_refused(signed: Bundle) -> None:
    staging = load_trusted_root("staging", DATA)
    result = verify_bundle(staging, keyless(), signed, image_digest=DIGEST)
    assert result.reason.startswith("the certificate does not chain to a Fulcio CA")
