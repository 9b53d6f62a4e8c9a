"""The trust store of a Notation authority: CA, signingAuthority and TSA certificates.

The Notary Project trust store ("Trust Store" in the trust-store and
trust-policy specification) holds three kinds of certificates: ``ca`` roots
for the ``notary.x509`` signing scheme, ``signingAuthority`` roots for
``notary.x509.signingAuthority``, and ``tsa`` roots that RFC 3161 timestamp
countersignatures must chain to. A policy names them by file (one or a list;
``.pem``, ``.crt``, ``.cer``: PEM with one or more certificates, or one DER
certificate) or gives PEM text inline.

Loading happens once, when policies load: a file that cannot be read, holds
no certificate, or a certificate that can anchor nothing (neither a CA nor
self-signed) raises PolicyError naming the file, so a broken store never
becomes denials at admission time. Unlike notation's own directory store,
symbolic links are followed: Kubernetes mounts every ConfigMap and Secret
file through one.
"""

from __future__ import annotations

import stat
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes

from webhook.core.errors import PolicyError
from webhook.core.untrusted import literal
from webhook.core.x509read import CERTIFICATE_ERRORS, load_der, load_pem_all

#: The two signing schemes, whose roots are kept in the ca and signingAuthority stores.
X509: Final = "notary.x509"
SIGNING_AUTHORITY: Final = "notary.x509.signingAuthority"

#: A trust store file larger than this is refused; a bundle of 100 roots is ~200 KiB.
MAX_FILE_BYTES: Final = 1024 * 1024
#: At most this many certificates in one store kind.
MAX_CERTIFICATES: Final = 1000
_PEM_MARK: Final = b"-----BEGIN"


@dataclass(frozen=True, slots=True)
class TrustStore:
    """The certificates one authority trusts, by kind.

    ``origins`` names where they came from (file paths or ``inline PEM``), for
    messages and for ``check`` to show.
    """

    ca: tuple[x509.Certificate, ...] = field(default=(), repr=False)
    signing_authority: tuple[x509.Certificate, ...] = field(default=(), repr=False)
    tsa: tuple[x509.Certificate, ...] = field(default=(), repr=False)
    origins: tuple[str, ...] = ()

    def anchors(self, scheme: str) -> tuple[x509.Certificate, ...]:
        """The roots a chain signed under ``scheme`` must lead to (none for an unknown scheme)."""
        if scheme == X509:
            return self.ca
        if scheme == SIGNING_AUTHORITY:
            return self.signing_authority
        return ()

    @property
    def kinds(self) -> tuple[str, ...]:
        """The kinds this store holds certificates of, as a policy names them."""
        named = (("ca", self.ca), ("signingAuthority", self.signing_authority), ("tsa", self.tsa))
        return tuple(name for name, certs in named if certs)


def load_store(
    *,
    ca: str | Sequence[str] = (),
    signing_authority: str | Sequence[str] = (),
    tsa: str | Sequence[str] = (),
    base: Path | None = None,
) -> TrustStore:
    """A TrustStore from files and inline PEM, one entry or a list per kind.

    An entry that starts with ``-----BEGIN`` is PEM text; any other is a file
    path, relative to ``base`` (the policy file's directory) when not
    absolute. Raises PolicyError naming the file and what is wrong with it.
    """
    origins: list[str] = []
    kinds = []
    for kind, entries in (("ca", ca), ("signingAuthority", signing_authority), ("tsa", tsa)):
        certs: list[x509.Certificate] = []
        for entry in [entries] if isinstance(entries, str) else list(entries):
            origin, loaded = _load_entry(entry, base)
            origins.append(origin)
            for cert in loaded:
                _check_anchor(cert, origin, kind)
                if cert not in certs:
                    certs.append(cert)
        if len(certs) > MAX_CERTIFICATES:
            raise PolicyError(f"the {kind} trust store holds over {MAX_CERTIFICATES} certificates")
        kinds.append(tuple(certs))
    return TrustStore(kinds[0], kinds[1], kinds[2], tuple(origins))


def parse_certificates(data: bytes, origin: str) -> tuple[x509.Certificate, ...]:
    """The certificates in ``data``: PEM (one or more CERTIFICATE blocks) or one DER certificate.

    Raises PolicyError naming ``origin`` when there is none or one is malformed.
    """
    if _PEM_MARK in data[:4096] or data.lstrip().startswith(b"-----"):
        try:
            certs = load_pem_all(data)
        except CERTIFICATE_ERRORS as exc:
            raise PolicyError(
                f"{origin}: no valid PEM CERTIFICATE block ({literal(str(exc))}); give PEM "
                "certificates or one DER certificate"
            ) from None
        return tuple(certs)
    try:
        return (load_der(data),)
    except CERTIFICATE_ERRORS as exc:
        raise PolicyError(
            f"{origin}: neither PEM certificates nor a DER certificate (.pem, .crt or .cer) "
            f"cryptography can read ({literal(str(exc))})"
        ) from None


def _load_entry(entry: str, base: Path | None) -> tuple[str, tuple[x509.Certificate, ...]]:
    if entry.lstrip().startswith("-----BEGIN"):
        return "inline PEM", parse_certificates(entry.encode(), "inline PEM")
    if not entry.strip():
        raise PolicyError("a trust store entry is empty; give a certificate file or PEM text")
    path = Path(entry)
    if base is not None and not path.is_absolute():
        path = base / path
    origin = str(path)
    return origin, parse_certificates(_read(path), origin)


def _read(path: Path) -> bytes:
    """The bytes of a certificate file, at most MAX_FILE_BYTES. Raises PolicyError.

    Only a regular file (after links) is opened: a FIFO would block the load and
    a device never end.
    """
    try:
        if not stat.S_ISREG(path.stat().st_mode):
            kind = "a directory" if path.is_dir() else "not a regular file"
            raise PolicyError(f"trust store {path} is {kind}; name a certificate file")
        with path.open("rb") as handle:
            data = handle.read(MAX_FILE_BYTES + 1)
    except OSError as exc:
        raise PolicyError(
            f"cannot read trust store {path}: {exc.strerror or type(exc).__name__}; "
            "check the path and that trustgate may read it"
        ) from None
    if len(data) > MAX_FILE_BYTES:
        raise PolicyError(f"trust store {path} is over {MAX_FILE_BYTES} bytes")
    if not data.strip():
        raise PolicyError(f"trust store {path} is empty; it should hold certificates")
    return data


def _check_anchor(cert: x509.Certificate, origin: str, kind: str) -> None:
    """A store certificate must be able to anchor a chain: a CA, or self-signed."""
    if _is_ca(cert) or _self_signed(cert):
        return
    subject = literal(cert.subject.rfc4514_string())
    raise PolicyError(
        f"{origin}: {kind} certificate {subject} is neither a CA nor self-signed; a trust store "
        "holds root (or CA) certificates, or a self-signed signing certificate"
    )


def _is_ca(cert: x509.Certificate) -> bool:
    try:
        return cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    except (x509.ExtensionNotFound, ValueError):
        return False


def _self_signed(cert: x509.Certificate) -> bool:
    try:
        cert.verify_directly_issued_by(cert)
    except (ValueError, TypeError, InvalidSignature):
        return False
    return True


def fingerprint(cert: x509.Certificate) -> str:
    """``sha256:<hex>`` of a certificate's DER: how ``check`` names a store certificate."""
    return "sha256:" + cert.fingerprint(hashes.SHA256()).hex()
