"""The chart's alerts and dashboard read metrics a real ``trustgate serve`` exports.

A server answers a few reviews, /metrics is scraped, and every series name (and
every label a matcher names, where the metric has samples) in the PrometheusRule
and the Grafana dashboard must be among what was exported: a renamed metric
breaks this test, not the alerts in production.
"""

from __future__ import annotations

import datetime
import json
import time
from pathlib import Path

import pytest
import requests
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec
from prometheus_client.parser import text_string_to_metric_families

from tests.chart.test_chart import render
from tests.chart.test_monitoring import MONITORING, selectors
from tests.integration.conftest import E2E_POLICIES, Server, start_server, stop_server
from tests.integration.test_serve_certificate_rotation import secret_volume
from tests.support.kube import pod_spec, review, workload
from tests.support.policysigning import public_pem
from webhook.core import certs

#: The sample names each metric type exports, by suffix.
SUFFIXES = {"counter": ("_total",), "histogram": ("_bucket", "_count", "_sum"), "gauge": ("",)}


def exported(text: str) -> tuple[set[str], dict[str, set[str]]]:
    """(every series name /metrics can carry, label names seen per series name)."""
    names: set[str] = set()
    labels: dict[str, set[str]] = {}
    for family in text_string_to_metric_families(text):
        names |= {family.name + suffix for suffix in SUFFIXES.get(family.type, ("",))}
        for sample in family.samples:
            labels.setdefault(sample.name, set()).update(sample.labels)
    return names, labels


def reviews(server: Server) -> None:
    """Allowed, denied and malformed reviews, as the API server might send them."""
    for image in ("quay.io/acme/api:1.0", "docker.io/library/nginx:1.27"):
        body = review(workload("Deployment", pod_spec(image)))
        assert server.post(json.dumps(body)).status_code == 200
    assert server.post(b"{not json").status_code == 400


@pytest.mark.e2e
def test_rules_and_dashboard_read_exported_metrics(tmp_path: Path) -> None:
    policies = tmp_path / "policies"
    policies.mkdir()
    for name, text in E2E_POLICIES.items():
        (policies / name).write_text(text)
    # Signatures asked for in audit (required: false): the unsigned set loads, and
    # the policy-set signature metrics, absent without policies.signature, are there.
    key = tmp_path / "policy-team.pub"
    key.write_bytes(public_pem(ec.generate_private_key(ec.SECP256R1())))
    config = (
        "policies:\n  reloadIntervalSeconds: 0.2\n  signature:\n    required: false\n"
        f"    authorities: [{{name: policy-team, key: {{file: {key}}}}}]\n"
    )
    server = start_server(tmp_path, policies, config)
    try:
        reviews(server)
        names, labels = exported(server.get("/metrics").text)
    finally:
        stop_server(server)
    # The scrape is real: the reviews above produced samples with their labels.
    assert {"decision"} <= labels["trustgate_admission_requests_total"]
    assert "trustgate_certificate_expiry_timestamp_seconds" in names
    read: dict[str, set[str]] = {}
    for where, selector in selectors(render(MONITORING)):
        read.setdefault(selector.name, set()).add(where)
        assert selector.name in names, f"{where} reads {selector.name}, which /metrics lacks"
        for matcher in selector.matchers.matchers:
            if matcher.name in ("job", "namespace") or selector.name not in labels:
                continue  # target labels Prometheus adds; or no samples yet to compare with
            assert matcher.name in labels[selector.name], (where, selector.name, matcher.name)
    assert {"trustgate_exception_admissions_total", "trustgate_break_glass_total"} <= set(read)
    # Both rules and dashboard cover the metrics that matter most.
    for name in (
        "trustgate_admission_requests_total",
        "trustgate_admission_duration_seconds_bucket",
        "trustgate_breaker_state",
        "trustgate_certificate_expiry_timestamp_seconds",
        "trustgate_policy_reload_success",
    ):
        assert "dashboard" in read[name] and len(read[name]) >= 2, name


def expiry(server: Server, ca: Path) -> float:
    text = requests.get(f"{server.url}/metrics", verify=str(ca), timeout=10).text
    (family,) = [
        f
        for f in text_string_to_metric_families(text)
        if f.name == "trustgate_certificate_expiry_timestamp_seconds"
    ]
    (sample,) = family.samples
    return float(sample.value)


def not_after(path: Path) -> float:
    return x509.load_pem_x509_certificate(path.read_bytes()).not_valid_after_utc.timestamp()


@pytest.mark.e2e
def test_certificate_expiry_follows_the_served_certificate(tmp_path: Path) -> None:
    """The gauge is the notAfter of the certificate in use, renewed ones included."""
    sans = ["localhost", "127.0.0.1"]
    soon = certs.generate(
        tmp_path / "soon", service="trustgate", namespace="t", extra_sans=sans, days=3
    )
    renewed = certs.generate(
        tmp_path / "renewed", service="trustgate", namespace="t", extra_sans=sans, days=90
    )
    tls = tmp_path / "tls"
    secret_volume(tls, "2026_11_01_00_00_00.000000001", soon)
    policies = tmp_path / "policies"
    policies.mkdir()
    (policies / "p.yaml").write_text(E2E_POLICIES["production.yaml"])
    served = certs.CertPaths(ca=soon.ca, cert=tls / "tls.crt", key=tls / "tls.key")
    server = start_server(tmp_path, policies, tls=served)
    try:
        first = expiry(server, soon.ca)
        assert first == not_after(soon.cert)
        days_left = (first - time.time()) / 86400
        assert 2 < days_left <= 3  # what TrustgateCertificateExpiresSoon compares
        secret_volume(tls, "2026_11_01_01_00_00.000000002", renewed)
        deadline = time.monotonic() + 10
        while True:
            try:
                value = expiry(server, renewed.ca)
            except requests.exceptions.SSLError:
                value = first  # still the old certificate, which the new CA does not sign
            if value != first:
                break
            assert time.monotonic() < deadline, "the expiry of the renewed certificate not shown"
            time.sleep(0.1)
        assert value == not_after(renewed.cert)
        assert datetime.timedelta(seconds=value - time.time()).days in (89, 90)
    finally:
        assert stop_server(server) == 0
