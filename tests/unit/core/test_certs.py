"""webhook.core.certs: the CA and serving certificate kube-apiserver will check."""

from __future__ import annotations

import datetime
import ipaddress
import os
import re
import stat
from collections.abc import Iterator, Sequence
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID
from cryptography.x509.verification import PolicyBuilder, Store, VerificationError

from webhook.core import certs
from webhook.core.errors import ConfigError

SERVICE_NAMES = [
    "trustgate",
    "trustgate.trustgate-system",
    "trustgate.trustgate-system.svc",
    "trustgate.trustgate-system.svc.cluster.local",
]


def load(paths: certs.CertPaths) -> tuple[x509.Certificate, x509.Certificate]:
    return (
        x509.load_pem_x509_certificate(paths.ca.read_bytes()),
        x509.load_pem_x509_certificate(paths.cert.read_bytes()),
    )


def generate(
    out: Path,
    *,
    service: str = "trustgate",
    extra_sans: Sequence[str] = (),
    days: int = 365,
    overwrite: bool = False,
) -> certs.CertPaths:
    return certs.generate(
        out,
        service=service,
        namespace="trustgate-system",
        extra_sans=extra_sans,
        days=days,
        overwrite=overwrite,
    )


@pytest.fixture
def generated(tmp_path: Path) -> certs.CertPaths:
    return generate(tmp_path / "certs", extra_sans=["localhost", "127.0.0.1", "::1"])


@pytest.fixture
def umask_zero() -> Iterator[None]:
    old = os.umask(0)
    try:
        yield
    finally:
        os.umask(old)


def test_service_dns_names() -> None:
    assert certs.service_dns_names("trustgate", "trustgate-system") == SERVICE_NAMES


def test_files_and_nothing_else(generated: certs.CertPaths, tmp_path: Path) -> None:
    out = tmp_path / "certs"
    assert generated == certs.CertPaths(out / "ca.crt", out / "tls.crt", out / "tls.key")
    # No CA key, and no temporary files left behind.
    assert sorted(p.name for p in out.iterdir()) == ["ca.crt", "tls.crt", "tls.key"]


def test_subject_alternative_names_are_exact(generated: certs.CertPaths) -> None:
    _, cert = load(generated)
    sans = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert sans.get_values_for_type(x509.DNSName) == [*SERVICE_NAMES, "localhost"]
    assert sans.get_values_for_type(x509.IPAddress) == [
        ipaddress.ip_address("127.0.0.1"),
        ipaddress.ip_address("::1"),
    ]


def test_duplicate_and_mixed_case_sans_are_listed_once(tmp_path: Path) -> None:
    paths = generate(tmp_path, extra_sans=["trustgate", "LocalHost", "localhost", "::0001", "::1"])
    _, cert = load(paths)
    sans = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert sans.get_values_for_type(x509.DNSName) == [*SERVICE_NAMES, "localhost"]
    assert sans.get_values_for_type(x509.IPAddress) == [ipaddress.ip_address("::1")]


def test_ca_certificate(generated: certs.CertPaths) -> None:
    ca, _ = load(generated)
    assert ca.issuer == ca.subject
    # Dated, so that an operator can tell one generated CA from the next.
    assert re.fullmatch(
        r"CN=trustgate webhook CA \d{4}-\d\d-\d\d \d\d:\d\d:\d\d,O=trustgate",
        ca.subject.rfc4514_string(),
    )
    ca.verify_directly_issued_by(ca)
    constraints = ca.extensions.get_extension_for_class(x509.BasicConstraints)
    assert constraints.critical
    assert (constraints.value.ca, constraints.value.path_length) == (True, 0)
    usage = ca.extensions.get_extension_for_class(x509.KeyUsage).value
    assert usage.key_cert_sign
    assert usage.crl_sign
    public_key = ca.public_key()
    assert isinstance(public_key, ec.EllipticCurvePublicKey)
    assert public_key.curve.name == "secp256r1"


def test_serving_certificate(generated: certs.CertPaths) -> None:
    ca, cert = load(generated)
    cert.verify_directly_issued_by(ca)
    assert cert.subject.rfc4514_string() == "CN=trustgate.trustgate-system.svc"
    constraints = cert.extensions.get_extension_for_class(x509.BasicConstraints).value
    assert constraints.ca is False
    usage = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert list(usage) == [ExtendedKeyUsageOID.SERVER_AUTH]
    lifetime = cert.not_valid_after_utc - datetime.datetime.now(datetime.UTC)
    assert datetime.timedelta(days=364) < lifetime <= datetime.timedelta(days=365)
    assert cert.not_valid_before_utc < datetime.datetime.now(datetime.UTC)


def test_key_matches_certificate_and_is_pkcs8(generated: certs.CertPaths) -> None:
    _, cert = load(generated)
    pem = generated.key.read_bytes()
    assert pem.startswith(b"-----BEGIN PRIVATE KEY-----\n")
    key = serialization.load_pem_private_key(pem, password=None)
    assert isinstance(key, ec.EllipticCurvePrivateKey)
    assert key.curve.name == "secp256r1"
    assert key.public_key() == cert.public_key()


@pytest.mark.parametrize(
    "subject",
    [
        x509.DNSName("localhost"),
        x509.DNSName("trustgate.trustgate-system.svc"),
        x509.DNSName("trustgate.trustgate-system.svc.cluster.local"),
        x509.IPAddress(ipaddress.ip_address("127.0.0.1")),
        x509.IPAddress(ipaddress.ip_address("::1")),
    ],
)
def test_chain_verifies_for_server_name(
    generated: certs.CertPaths, subject: x509.DNSName | x509.IPAddress
) -> None:
    ca, cert = load(generated)
    verifier = PolicyBuilder().store(Store([ca])).build_server_verifier(subject)
    assert verifier.verify(cert, []) == [cert, ca]


@pytest.mark.parametrize(
    "subject",
    [
        x509.DNSName("trustgate.other-namespace.svc"),
        x509.DNSName("example.com"),
        x509.IPAddress(ipaddress.ip_address("10.0.0.1")),
    ],
)
def test_chain_does_not_verify_for_other_names(
    generated: certs.CertPaths, subject: x509.DNSName | x509.IPAddress
) -> None:
    ca, cert = load(generated)
    verifier = PolicyBuilder().store(Store([ca])).build_server_verifier(subject)
    with pytest.raises(VerificationError):
        verifier.verify(cert, [])


def test_chain_does_not_verify_against_another_ca(tmp_path: Path) -> None:
    _, cert = load(generate(tmp_path / "one"))
    other_ca, _ = load(generate(tmp_path / "two"))
    verifier = (
        PolicyBuilder()
        .store(Store([other_ca]))
        .build_server_verifier(x509.DNSName("trustgate.trustgate-system.svc"))
    )
    with pytest.raises(VerificationError):
        verifier.verify(cert, [])


@pytest.mark.usefixtures("umask_zero")
def test_key_is_private_whatever_the_umask(tmp_path: Path) -> None:
    paths = generate(tmp_path)
    assert stat.S_IMODE(paths.key.stat().st_mode) == 0o600
    assert stat.S_IMODE(paths.cert.stat().st_mode) == 0o644
    assert stat.S_IMODE(paths.ca.stat().st_mode) == 0o644


def test_overwriting_a_readable_key_makes_it_private(tmp_path: Path) -> None:
    (tmp_path / "tls.key").write_text("old")
    (tmp_path / "tls.key").chmod(0o644)
    paths = generate(tmp_path, overwrite=True)
    assert stat.S_IMODE(paths.key.stat().st_mode) == 0o600
    assert paths.key.read_bytes().startswith(b"-----BEGIN PRIVATE KEY-----")


@pytest.mark.parametrize("existing", ["ca.crt", "tls.crt", "tls.key"])
def test_refuses_to_overwrite(tmp_path: Path, existing: str) -> None:
    (tmp_path / existing).write_text("keep me")
    with pytest.raises(ConfigError, match=rf"{existing} already exists; pass --force to replace"):
        generate(tmp_path)
    assert [p.name for p in tmp_path.iterdir()] == [existing]
    assert (tmp_path / existing).read_text() == "keep me"


def test_overwrite_replaces_everything(generated: certs.CertPaths, tmp_path: Path) -> None:
    old_ca, old_cert = load(generated)
    old_key = generated.key.read_bytes()
    again = generate(tmp_path / "certs", overwrite=True)
    new_ca, new_cert = load(again)
    assert new_ca != old_ca
    assert new_cert != old_cert
    assert again.key.read_bytes() != old_key
    new_cert.verify_directly_issued_by(new_ca)


def test_creates_missing_directories(tmp_path: Path) -> None:
    paths = generate(tmp_path / "a" / "b")
    assert paths.cert.exists()


def test_days(tmp_path: Path) -> None:
    _, cert = load(generate(tmp_path, days=2))
    assert cert.not_valid_after_utc - cert.not_valid_before_utc == datetime.timedelta(
        days=2, minutes=5
    )


@pytest.mark.parametrize("days", [0, -1])
def test_rejects_non_positive_days(tmp_path: Path, days: int) -> None:
    with pytest.raises(ConfigError, match=f"at least 1 day, got {days}"):
        generate(tmp_path, days=days)


BAD_LABELS = ["", "Trustgate", "-trustgate", "trustgate-", "trust.gate", "trust_gate", "x" * 64]


@pytest.mark.parametrize("name", BAD_LABELS)
def test_rejects_bad_service_names(tmp_path: Path, name: str) -> None:
    with pytest.raises(ConfigError, match=rf"^service {name!r} is not a valid DNS label"):
        generate(tmp_path, service=name)
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("name", BAD_LABELS)
def test_rejects_bad_namespaces(tmp_path: Path, name: str) -> None:
    with pytest.raises(ConfigError, match=rf"^namespace {name!r} is not a valid DNS label"):
        certs.service_dns_names("trustgate", name)


def test_longest_labels(tmp_path: Path) -> None:
    service, namespace = "s" * 63, "n" * 63
    ca, cert = load(certs.generate(tmp_path, service=service, namespace=namespace))
    sans = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert sans.get_values_for_type(x509.DNSName) == certs.service_dns_names(service, namespace)
    # svc.ns.svc would exceed the 64 characters a common name may have.
    assert cert.subject.rfc4514_string() == f"CN={service}"
    cert.verify_directly_issued_by(ca)


@pytest.mark.parametrize("san", ["", "bad name", "bücher.example", "a..b", "-a.example", "a.*"])
def test_rejects_bad_extra_sans(tmp_path: Path, san: str) -> None:
    with pytest.raises(ConfigError, match="is neither an IP address nor a valid DNS name"):
        generate(tmp_path, extra_sans=[san])
    assert list(tmp_path.iterdir()) == []


def test_rejects_a_string_for_extra_sans(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="must be a list of names, not the string 'localhost'"):
        generate(tmp_path, extra_sans="localhost")


def test_accepts_wildcard_san(tmp_path: Path) -> None:
    _, cert = load(generate(tmp_path, extra_sans=["*.webhook.example.com"]))
    sans = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert sans.get_values_for_type(x509.DNSName)[-1] == "*.webhook.example.com"


def test_unwritable_directory(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("")
    with pytest.raises(ConfigError, match=f"cannot write certificates to {blocker}/certs"):
        generate(blocker / "certs")
