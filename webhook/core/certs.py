"""Certificates for the webhook: a private CA and the serving certificate it signs.

kube-apiserver calls the webhook over TLS and checks its certificate against the
``caBundle`` of the webhook configuration, by the Service's DNS names. This module
writes what that needs: ``ca.crt`` (the bundle), ``tls.crt`` and ``tls.key``.

The CA's private key is never written. A CA that signed one certificate and was
then forgotten cannot sign another, so a leaked or copied ``certs/`` directory can
impersonate the webhook but nothing else.
"""

from __future__ import annotations

import datetime
import ipaddress
import os
import re
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from webhook.core.errors import ConfigError

__all__ = ["CertPaths", "generate", "service_dns_names"]

_LABEL = r"[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?"
#: RFC 1123 label, as Kubernetes validates Service and Namespace names.
_DNS_LABEL = re.compile(_LABEL)
#: A DNS name for an extra SAN: such labels, optionally after a ``*.`` wildcard.
_DNS_NAME = re.compile(rf"(\*\.)?{_LABEL}(\.{_LABEL})*")
#: Certificates start this long before "now", for clocks that lag the generating machine's.
_BACKDATE = datetime.timedelta(minutes=5)
_MAX_COMMON_NAME = 64
_CA_NAME = "ca.crt"
_CERT_NAME = "tls.crt"
_KEY_NAME = "tls.key"


@dataclass(frozen=True, slots=True)
class CertPaths:
    """Where :func:`generate` wrote the CA certificate, the serving certificate and its key."""

    ca: Path
    cert: Path
    key: Path


def service_dns_names(service: str, namespace: str) -> list[str]:
    """The names a Service is reached by inside the cluster, shortest first.

    Raises:
        ConfigError: ``service`` or ``namespace`` is not an RFC 1123 label
            (lowercase letters, digits and ``-``, at most 63 characters).
    """
    _check_label("service", service)
    _check_label("namespace", namespace)
    return [
        service,
        f"{service}.{namespace}",
        f"{service}.{namespace}.svc",
        f"{service}.{namespace}.svc.cluster.local",
    ]


def generate(
    out_dir: Path,
    *,
    service: str,
    namespace: str,
    extra_sans: Sequence[str] = (),
    days: int = 365,
    overwrite: bool = False,
) -> CertPaths:
    """Write a new CA and a serving certificate for ``service`` in ``namespace``.

    The serving certificate names the Service's DNS names and ``extra_sans``;
    entries of ``extra_sans`` that are IP addresses become IP SANs. Both
    certificates are valid for ``days`` days. Each file is replaced atomically, and
    ``tls.key`` is created with mode 0600, so no reader ever sees a partial file or
    a readable key.

    Raises:
        ConfigError: a name is not a valid DNS name, ``days`` is not positive, a
            file already exists and ``overwrite`` is false, or a file cannot be
            written.
    """
    names = service_dns_names(service, namespace)
    if isinstance(extra_sans, str):
        raise ConfigError(f"extra_sans must be a list of names, not the string {extra_sans!r}")
    if days < 1:
        raise ConfigError(f"certificate lifetime must be at least 1 day, got {days}")
    sans = _subject_alt_names([*names, *extra_sans])
    paths = CertPaths(ca=out_dir / _CA_NAME, cert=out_dir / _CERT_NAME, key=out_dir / _KEY_NAME)
    if not overwrite:
        for path in (paths.ca, paths.cert, paths.key):
            if path.exists():
                raise ConfigError(f"{path} already exists; pass --force to replace it")

    now = datetime.datetime.now(datetime.UTC)
    not_before, not_after = now - _BACKDATE, now + datetime.timedelta(days=days)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = f"trustgate webhook CA {now:%Y-%m-%d %H:%M:%S}"
    ca_cert = _ca_certificate(ca_key, ca_name, not_before, not_after)
    key = ec.generate_private_key(ec.SECP256R1())
    # Clients match the SANs; the subject only has to fit X.509's 64-character limit.
    common_name = next(name for name in reversed(names[:3]) if len(name) <= _MAX_COMMON_NAME)
    cert = _serving_certificate(
        key.public_key(), sans, common_name, ca_key, ca_cert, not_before, not_after
    )

    try:
        out_dir.mkdir(parents=True, exist_ok=True)
        _write_atomically(paths.ca, ca_cert.public_bytes(serialization.Encoding.PEM), 0o644)
        # The key before the certificate: a server that reloads when tls.crt changes
        # then finds the matching key already in place.
        key_pem = key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
        _write_atomically(paths.key, key_pem, 0o600)
        _write_atomically(paths.cert, cert.public_bytes(serialization.Encoding.PEM), 0o644)
    except OSError as exc:
        raise ConfigError(f"cannot write certificates to {out_dir}: {exc.strerror}") from exc
    return paths


def _check_label(what: str, value: str) -> None:
    if not _DNS_LABEL.fullmatch(value):
        raise ConfigError(
            f"{what} {value!r} is not a valid DNS label: use at most 63 lowercase letters, "
            "digits and '-', starting and ending with a letter or digit"
        )


def _subject_alt_names(entries: Sequence[str]) -> list[x509.GeneralName]:
    """DNS names and IP addresses as SANs, in order, without duplicates."""
    sans: list[x509.GeneralName] = []
    seen: set[str] = set()
    for entry in entries:
        san: x509.GeneralName
        try:
            address = ipaddress.ip_address(entry)
        except ValueError:
            name = entry.lower()
            if len(name) > 253 or not _DNS_NAME.fullmatch(name):
                raise ConfigError(
                    f"SAN {entry!r} is neither an IP address nor a valid DNS name"
                ) from None
            key, san = name, x509.DNSName(name)
        else:
            key, san = str(address), x509.IPAddress(address)
        if key not in seen:
            seen.add(key)
            sans.append(san)
    return sans


def _ca_certificate(
    key: ec.EllipticCurvePrivateKey,
    common_name: str,
    not_before: datetime.datetime,
    not_after: datetime.datetime,
) -> x509.Certificate:
    name = x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "trustgate"),
            x509.NameAttribute(NameOID.COMMON_NAME, common_name),
        ]
    )
    public_key = key.public_key()
    return (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(public_key)
        .serial_number(x509.random_serial_number())
        .not_valid_before(not_before)
        .not_valid_after(not_after)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=False,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(public_key), critical=False)
        .sign(key, hashes.SHA256())
    )


def _serving_certificate(
    public_key: ec.EllipticCurvePublicKey,
    sans: list[x509.GeneralName],
    common_name: str,
    ca_key: ec.EllipticCurvePrivateKey,
    ca_cert: x509.Certificate,
    not_before: datetime.datetime,
    not_after: datetime.datetime,
) -> x509.Certificate:
    ca_ski = ca_cert.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
    return (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)]))
        .issuer_name(ca_cert.subject)
        .public_key(public_key)
        .serial_number(x509.random_serial_number())
        .not_valid_before(not_before)
        .not_valid_after(not_after)
        .add_extension(x509.SubjectAlternativeName(sans), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=False,
                crl_sign=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(public_key), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ca_ski),
            critical=False,
        )
        .sign(ca_key, hashes.SHA256())
    )


def _write_atomically(path: Path, data: bytes, mode: int) -> None:
    """Replace ``path`` with ``data``; the file has ``mode`` from the moment it exists.

    ``mkstemp`` creates the temporary file 0600 whatever the umask, and the rename
    is atomic, so a key is never readable by others, not even for an instant.
    """
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as out:
            out.write(data)
            out.flush()
            os.fchmod(out.fileno(), mode)
            os.fsync(out.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
