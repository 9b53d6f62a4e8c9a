"""Freshness end to end: `trustgate serve`, a real registry, a Pyxis double, signed reports."""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from tests.integration.conftest import Server, serve_config, serving, small_image
from tests.support.cosign import (
    PrivateKey,
    dsse_envelope,
    generate_key,
    in_toto_statement,
    public_pem,
)
from tests.support.pyxis import Pyxis, grades, image_record, running_pyxis
from tests.support.registry import Registry
from tests.unit.signatures.test_attestations import push_attestations

pytestmark = pytest.mark.e2e

SCANNER = generate_key("ecdsa-p256")
INTRUDER = generate_key("ecdsa-p256")
VULN = "https://cosign.sigstore.dev/attestation/vuln/v1"
NOW = datetime.now(UTC)
DAY = timedelta(days=1)

POLICIES = """\
apiVersion: trustgate.dev/v1alpha1
kind: ImagePolicy
metadata: {{name: fresh}}
spec:
  match: {{namespaces: ["prod-*"]}}
  registries: ["{host}/**"]
  freshness: {{minimumGrade: B, sources: [pyxis], warnBeforeDays: 7}}
---
apiVersion: trustgate.dev/v1alpha1
kind: ImagePolicy
metadata: {{name: lenient}}
spec:
  match: {{namespaces: ["dev-*"]}}
  registries: ["{host}/**"]
  freshness: {{minimumGrade: B, sources: [pyxis], onUnknown: warn}}
---
apiVersion: trustgate.dev/v1alpha1
kind: ImagePolicy
metadata: {{name: scanned}}
spec:
  match: {{namespaces: ["ci-*"]}}
  registries: ["{host}/**"]
  freshness:
    minimumGrade: C
    maxReportAge: 7d
    sources:
      - attestation:
          authorities:
            - name: scanner
              key: {{file: keys/scanner.pub}}
"""


def attest(
    registry: Registry, repository: str, digest: str, predicate: dict[str, Any], key: PrivateKey
) -> None:
    statement = in_toto_statement(digest, f"{registry.host}/{repository}", VULN, predicate)
    push_attestations(registry, repository, digest, [dsse_envelope(statement, key)])


def trivy(published: datetime, scanned: datetime) -> dict[str, Any]:
    """cosign attest --type vuln wrapping a Trivy report."""
    return {
        "invocation": {"uri": "", "event_id": "", "builder.id": ""},
        "scanner": {
            "uri": "pkg:github/aquasecurity/trivy@0.50.0",
            "version": "0.50.0",
            "result": {
                "SchemaVersion": 2,
                "CreatedAt": scanned.isoformat(),
                "ArtifactName": "x",
                "Results": [
                    {
                        "Target": "x (rhel 9.3)",
                        "Vulnerabilities": [
                            {
                                "VulnerabilityID": "CVE-2024-0001",
                                "PkgName": "openssl",
                                "InstalledVersion": "3.0.7-24",
                                "FixedVersion": "3.0.7-25",
                                "Severity": "HIGH",
                                "PublishedDate": published.isoformat(),
                            },
                            {
                                "VulnerabilityID": "CVE-2020-0002",
                                "PkgName": "zlib",
                                "FixedVersion": "1.2.3",
                                "Severity": "MEDIUM",
                                "PublishedDate": "2020-01-01T00:00:00Z",
                            },
                        ],
                    }
                ],
            },
        },
        "metadata": {"scanStartedOn": scanned.isoformat(), "scanFinishedOn": scanned.isoformat()},
    }


def grype(fixed: datetime, scanned: datetime) -> dict[str, Any]:
    """A plain Grype JSON report as the predicate."""
    return {
        "matches": [
            {
                "vulnerability": {
                    "id": "CVE-2024-0003",
                    "severity": "Critical",
                    "fix": {
                        "versions": ["1.1"],
                        "state": "fixed",
                        "available": [
                            {
                                "version": "1.1",
                                "date": fixed.date().isoformat(),
                                "kind": "first-observed",
                            }
                        ],
                    },
                },
                "artifact": {"name": "glibc", "version": "1.0"},
            }
        ],
        "descriptor": {"name": "grype", "version": "0.74.0", "timestamp": scanned.isoformat()},
    }


@pytest.fixture(scope="module")
def pyxis() -> Iterator[Pyxis]:
    with running_pyxis() as double:
        yield double


@pytest.fixture(scope="module")
def server(
    registry: Registry, pyxis: Pyxis, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Server]:
    files = {
        "keys/scanner.pub": public_pem(SCANNER),
        "fresh.yaml": POLICIES.format(host=registry.host),
    }
    source = f"{{pyxis: {{url: '{pyxis.url}', timeoutSeconds: 1.5, apiKey: test-key}}}}"
    config = serve_config(registry.host, deadline=4, extra=f"freshness: {source}\n")
    with serving(tmp_path_factory.mktemp("freshness"), files, config) as running:
        yield running


def test_fresh_multi_arch_image_is_admitted(
    registry: Registry, pyxis: Pyxis, server: Server
) -> None:
    ref, digest = small_image(registry, "acme/fresh")
    pyxis.add(
        image_record("amd64", digest, grades(("A", NOW - 10 * DAY, None))),
        image_record(
            "arm64", "sha256:" + "b" * 64, grades(("B", NOW - 10 * DAY, None)), list_digest=digest
        ),
    )
    response = server.decide(ref)
    assert response["allowed"] is True
    assert "warnings" not in response
    assert any(headers.get("X-API-KEY") == "test-key" for _, headers in pyxis.requests)


def test_stale_image_is_denied_with_grade_source_and_date(
    registry: Registry, pyxis: Pyxis, server: Server
) -> None:
    ref, digest = small_image(registry, "acme/stale")
    dropped = NOW - 3 * DAY
    pyxis.add(
        image_record("amd64", digest, grades(("B", NOW - 60 * DAY, dropped), ("D", dropped, None)))
    )
    response = server.decide(ref)
    assert response["allowed"] is False
    assert response["status"]["message"] == (
        f'image {ref} denied by policy "fresh": freshness grade D is below the minimum B '
        f"(Pyxis, architecture amd64) since {dropped.strftime('%Y-%m-%d')}"
    )


def test_grade_about_to_drop_is_admitted_with_a_warning(
    registry: Registry, pyxis: Pyxis, server: Server
) -> None:
    ref, digest = small_image(registry, "acme/dropping")
    drop = NOW + 3 * DAY
    pyxis.add(image_record("amd64", digest, grades(("B", NOW - DAY, drop), ("C", drop, None))))
    response = server.decide(ref)
    assert response["allowed"] is True
    (warning,) = response["warnings"]
    assert (
        f"falls to C on {drop.strftime('%Y-%m-%d')}, below the minimum B within 7 days" in warning
    )


@pytest.mark.parametrize("failure", ["500", "404", "slow", "empty"])
def test_pyxis_outages_follow_on_unknown_within_the_deadline(
    registry: Registry, pyxis: Pyxis, server: Server, failure: str
) -> None:
    ref, digest = small_image(registry, f"acme/outage-{failure}")
    if failure == "empty":
        pyxis.add(image_record("amd64", digest, []))
    else:
        pyxis.failures[digest] = failure
    started = time.monotonic()
    denied = server.decide(ref)
    assert time.monotonic() - started < 4.0 + 1.0
    assert denied["allowed"] is False
    assert "freshness grade unknown (Pyxis: " in denied["status"]["message"]
    assert denied["status"]["message"].endswith("; onUnknown is deny")
    # The same image in a namespace whose policy says onUnknown: warn is admitted, warned.
    warned = server.decide(ref, namespace="dev-a")
    assert warned["allowed"] is True
    assert f'{ref}: policy "lenient": freshness grade unknown (Pyxis: ' in warned["warnings"][0]


@pytest.mark.parametrize(
    ("shape", "grade", "allowed"), [("trivy", "C", True), ("grype", "D", False)]
)
def test_signed_reports_grade_images(
    registry: Registry, server: Server, shape: str, grade: str, allowed: bool
) -> None:
    repo = f"acme/report-{shape}"
    ref, digest = small_image(registry, repo)
    # Trivy: an Important (HIGH) fix 40 days old is C. Grype: a Critical fix 40 days old is D.
    predicate = (
        trivy(NOW - 40 * DAY, NOW - DAY) if shape == "trivy" else grype(NOW - 40 * DAY, NOW - DAY)
    )
    attest(registry, repo, digest, predicate, SCANNER)
    response = server.decide(ref, namespace="ci-a")
    assert response["allowed"] is allowed
    if not allowed:
        message = response["status"]["message"]
        assert (
            f"freshness grade {grade} is below the minimum C (signed vulnerability report, "
            "grype report scanned" in message
        )
        assert "unapplied fixes: CVE-2024-0003 (Critical, released" in message


@pytest.mark.parametrize("case", ["unsigned", "wrong-key", "too-old"])
def test_untrusted_or_old_reports_do_not_count(
    registry: Registry, server: Server, case: str
) -> None:
    repo = f"acme/report-{case}"
    ref, digest = small_image(registry, repo)
    scanned = NOW - (30 * DAY if case == "too-old" else DAY)
    if case != "unsigned":
        attest(
            registry,
            repo,
            digest,
            trivy(NOW - 2 * DAY, scanned),
            INTRUDER if case == "wrong-key" else SCANNER,
        )
    response = server.decide(ref, namespace="ci-a")
    assert response["allowed"] is False
    message = response["status"]["message"]
    assert "freshness grade unknown (signed vulnerability report: " in message
    expected = {
        "unsigned": "no attestation found",
        "wrong-key": "attestation signature does not verify with key scanner",
        "too-old": "more than 7 days ago (maxReportAge)",
    }[case]
    assert expected in message
