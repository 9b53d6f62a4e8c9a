"""Who signed: the certificate identity a keyless authority requires.

Each part of the policy's ``keyless`` identity is a sigstore-python policy
object, composed with ``AllOf``: the OIDC issuer and the subject (exactly, or
by a regular expression matching the whole value with ``re.fullmatch``, never
a part of it), and each certificate extension Fulcio records (GitHub
Actions workflow, source repository and so on).
"""

from __future__ import annotations

import functools
import re
from collections.abc import Mapping
from typing import Any

from cryptography import x509
from cryptography.hazmat import asn1
from cryptography.x509.oid import ObjectIdentifier
from sigstore.errors import VerificationError
from sigstore.verify import policy as sigstore_policy
from sigstore.verify.policy import VerificationPolicy

from webhook.core.untrusted import literal
from webhook.policy.model import Keyless

_ISSUER_V1 = ObjectIdentifier("1.3.6.1.4.1.57264.1.1")
_ISSUER_V2 = ObjectIdentifier("1.3.6.1.4.1.57264.1.8")
_OTHERNAME = ObjectIdentifier("1.3.6.1.4.1.57264.1.7")

#: Policy spelling of each extension -> the sigstore-python policy that checks it.
EXTENSION_POLICIES: Mapping[str, type[Any]] = {
    "githubWorkflowTrigger": sigstore_policy.GitHubWorkflowTrigger,
    "githubWorkflowSha": sigstore_policy.GitHubWorkflowSHA,
    "githubWorkflowName": sigstore_policy.GitHubWorkflowName,
    "githubWorkflowRepository": sigstore_policy.GitHubWorkflowRepository,
    "githubWorkflowRef": sigstore_policy.GitHubWorkflowRef,
    "buildSignerURI": sigstore_policy.OIDCBuildSignerURI,
    "runnerEnvironment": sigstore_policy.OIDCRunnerEnvironment,
    "sourceRepositoryURI": sigstore_policy.OIDCSourceRepositoryURI,
    "sourceRepositoryDigest": sigstore_policy.OIDCSourceRepositoryDigest,
    "sourceRepositoryRef": sigstore_policy.OIDCSourceRepositoryRef,
}


class IssuerPolicy:
    """The certificate's OIDC issuer equals ``exact`` or fully matches ``pattern``.

    Fulcio writes the issuer twice: as a DER UTF8String (OID ...57264.1.8) and,
    for older clients, as raw bytes (...57264.1.1). The DER one is read when
    present, as cosign does; otherwise the legacy one.
    """

    def __init__(self, *, exact: str | None = None, pattern: str | None = None) -> None:
        self._exact = exact
        self._pattern = None if pattern is None else re.compile(pattern)

    def verify(self, cert: x509.Certificate) -> None:
        """Raise VerificationError unless the issuer matches."""
        issuer = certificate_issuer(cert)
        if issuer is None:
            raise VerificationError("certificate names no OIDC issuer")
        if self._pattern is not None:
            if self._pattern.fullmatch(issuer) is None:
                expected = f"the whole of /{self._pattern.pattern}/"
                raise VerificationError(f"issuer {literal(issuer)} does not match {expected}")
        elif issuer != self._exact:
            raise VerificationError(f"issuer {literal(issuer)} is not {self._exact!r}")


class SubjectPolicy:
    """One subject alternative name equals ``exact`` or fully matches ``pattern``."""

    def __init__(self, *, exact: str | None = None, pattern: str | None = None) -> None:
        self._exact = exact
        self._pattern = None if pattern is None else re.compile(pattern)

    def verify(self, cert: x509.Certificate) -> None:
        """Raise VerificationError unless a SAN (e-mail, URI, Sigstore other name) matches."""
        names = certificate_identities(cert)
        if self._pattern is not None:
            if any(self._pattern.fullmatch(name) for name in names):
                return
            expected = f"the whole of /{self._pattern.pattern}/"
        elif self._exact in names:
            return
        else:
            expected = repr(self._exact)
        got = ", ".join(literal(name) for name in names[:4]) or "no identity"
        raise VerificationError(f"subject {got} does not match {expected}")


def certificate_issuer(cert: x509.Certificate) -> str | None:
    """The OIDC issuer Fulcio recorded in ``cert``, or None."""
    extensions = cert.extensions
    try:
        value = extensions.get_extension_for_oid(_ISSUER_V2).value
        return str(asn1.decode_der(str, value.value))  # type: ignore[attr-defined]
    except x509.ExtensionNotFound:
        pass
    except ValueError:
        return None
    try:
        raw = extensions.get_extension_for_oid(_ISSUER_V1).value
        return bytes(raw.value).decode("utf-8")  # type: ignore[attr-defined]
    except (x509.ExtensionNotFound, UnicodeDecodeError):
        return None


def certificate_identities(cert: x509.Certificate) -> list[str]:
    """The identities of ``cert``'s SAN: e-mail addresses, URIs and Sigstore other names."""
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return []
    names: list[str] = list(san.get_values_for_type(x509.RFC822Name))
    names += san.get_values_for_type(x509.UniformResourceIdentifier)
    for other in san.get_values_for_type(x509.OtherName):
        if other.type_id == _OTHERNAME:
            try:
                names.append(str(asn1.decode_der(str, other.value)))
            except ValueError:
                continue
    return names


@functools.lru_cache(maxsize=256)
def identity_policy(keyless: Keyless) -> VerificationPolicy:
    """The sigstore-python policy for ``keyless``: issuer, subject and each extension (AllOf)."""
    children: list[VerificationPolicy] = [
        IssuerPolicy(exact=keyless.issuer, pattern=keyless.issuer_regexp),
        SubjectPolicy(exact=keyless.subject, pattern=keyless.subject_regexp),
    ]
    for name, value in keyless.extensions:
        children.append(EXTENSION_POLICIES[name](value))
    return sigstore_policy.AllOf(children)
