"""Reading certificates from outside: one tuple of what cryptography raises, and loaders.

A registry, an image's publisher or a timestamp authority serves certificate
bytes, so every reader must expect a certificate cryptography cannot read.
Not all of those failures are ``ValueError``: an unknown X.509 version raises
``InvalidVersion`` at load, and an extension given twice (``DuplicateExtension``)
or a general name of a type cryptography does not model
(``UnsupportedGeneralNameType``, e.g. an x400Address) only when ``.extensions``
is first read, long after the load, wherever the next reader happens to be.
Catching :data:`CERTIFICATE_ERRORS` and reading through these loaders keeps
such a certificate a refusal in its check's words, not an internal error.
"""

from __future__ import annotations

from cryptography import x509

__all__ = ["CERTIFICATE_ERRORS", "load_der", "load_pem", "load_pem_all", "readable"]

#: What cryptography raises for certificate bytes it cannot read.
CERTIFICATE_ERRORS: tuple[type[Exception], ...] = (
    ValueError,
    x509.InvalidVersion,
    x509.DuplicateExtension,
    x509.UnsupportedGeneralNameType,
)


def readable(cert: x509.Certificate) -> x509.Certificate:
    """``cert``, its lazily parsed names and extensions read now.

    Raises one of :data:`CERTIFICATE_ERRORS` here, where the caller refuses
    the certificate, rather than in whatever reads its extensions next.
    """
    _ = cert.subject, cert.issuer, cert.extensions
    return cert


def load_der(data: bytes) -> x509.Certificate:
    """A DER certificate, fully read. Raises one of :data:`CERTIFICATE_ERRORS`."""
    return readable(x509.load_der_x509_certificate(data))


def load_pem(data: bytes) -> x509.Certificate:
    """The first PEM certificate of ``data``, fully read.

    Raises one of :data:`CERTIFICATE_ERRORS`.
    """
    return readable(x509.load_pem_x509_certificate(data))


def load_pem_all(data: bytes) -> list[x509.Certificate]:
    """Every PEM certificate of ``data``, fully read.

    Raises one of :data:`CERTIFICATE_ERRORS`.
    """
    return [readable(cert) for cert in x509.load_pem_x509_certificates(data)]
