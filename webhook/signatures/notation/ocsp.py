"""OCSP (RFC 6960) for one certificate: the request to send, and what a response may be believed.

Sans-I/O: ``revocation`` fetches; this module builds the request URL and
judges the answer, following the Notary Project trust policy ("Revocation
Checking with OCSP"). cryptography builds the request and parses the
response; it does not verify an OCSP response's signature nor pick its
signer, which is done here with its primitives (no ASN.1 by hand):

- the response must be ``successful`` and hold a single response for the
  very CertID asked about (issuer name and key hashes, serial number);
- it is signed by the certificate's issuer, or by a responder certificate
  the issuer issued directly with the OCSP signing EKU (RFC 6960 4.2.2.2),
  valid now; such a delegated responder without ``id-pkix-ocsp-nocheck`` is
  itself checked by CRL (the caller's ``check_responder``), as the Notary
  Project asks;
- thisUpdate is not in the future (beyond ``skew``), and nextUpdate is
  present and not past: a response without nextUpdate cannot be judged
  fresh, and over plain HTTP an old "good" could be replayed (notation-go
  refuses it too).

The CertID hashes with SHA-1, as notation-go does: the responders of most
public CAs accept nothing else, and the CertID only names the certificate
(the response's signature is what is trusted). With SHA-1 and an RFC 5280
serial (at most 20 octets) the request stays well under the 255 bytes of
RFC 6960's GET form, so every request is a GET, which caches can serve.
"""

from __future__ import annotations

import base64
from collections.abc import Callable
from datetime import datetime, timedelta
from urllib.parse import quote

from cryptography import x509
from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, ed448, ed25519, padding, rsa
from cryptography.hazmat.primitives.serialization import Encoding
from cryptography.x509 import ocsp
from cryptography.x509.oid import ExtendedKeyUsageOID, SignatureAlgorithmOID

from webhook.core.x509read import CERTIFICATE_ERRORS, readable
from webhook.signatures.notation.certstatus import Finding, Unavailable, stamp

#: Checks a delegated responder's own certificate (by CRL); raises Unavailable
#: when it is revoked or its status cannot be had.
ResponderCheck = Callable[[x509.Certificate, x509.Certificate], None]
#: An invalidity date absent, or in extensions cryptography cannot read: none is used.
_NO_INVALIDITY: tuple[type[Exception], ...] = (x509.ExtensionNotFound, *CERTIFICATE_ERRORS)


def request_for(cert: x509.Certificate, issuer: x509.Certificate) -> ocsp.OCSPRequest:
    """The OCSP request for ``cert`` issued by ``issuer`` (CertID hashed with SHA-1, no nonce)."""
    builder = ocsp.OCSPRequestBuilder().add_certificate(cert, issuer, hashes.SHA1())
    return builder.build()


def request_url(responder: str, request: ocsp.OCSPRequest) -> str:
    """The GET URL for ``request`` at ``responder`` (RFC 6960 A.1: the base64 DER, URL-encoded)."""
    encoded = quote(base64.b64encode(request.public_bytes(Encoding.DER)).decode(), safe="")
    return f"{responder}{'' if responder.endswith('/') else '/'}{encoded}"


def read_response(
    der: bytes,
    request: ocsp.OCSPRequest,
    issuer: x509.Certificate,
    *,
    source: str,
    now: datetime,
    skew: timedelta,
    check_responder: ResponderCheck,
) -> Finding:
    """What the OCSP response ``der`` to ``request`` says, once it is shown to deserve belief.

    ``source`` names the responder in the finding and in messages.

    Raises:
        Unavailable: the response is malformed, unsuccessful, about another
            certificate, not signed by the issuer or its delegated responder,
            stale, or says ``unknown``; the message says which.
    """
    try:
        response = ocsp.load_der_ocsp_response(der)
    except ValueError:
        raise Unavailable("the answer is not a DER OCSP response") from None
    if response.response_status is not ocsp.OCSPResponseStatus.SUCCESSFUL:
        raise Unavailable(f"the responder answered {response.response_status.name}")
    try:
        single = _single(response, request)
        signer = _signer(response, issuer, now)
        _verify(response, signer)
    except CERTIFICATE_ERRORS as exc:  # a field or certificate cryptography could not parse
        raise Unavailable(f"the OCSP response is malformed: {exc}") from None
    this_update, next_update = single.this_update_utc, single.next_update_utc
    if this_update > now + skew:
        raise Unavailable(f"the OCSP response is from the future (thisUpdate {stamp(this_update)})")
    if next_update is None:
        raise Unavailable("the OCSP response has no nextUpdate, so its freshness is unknown")
    if next_update < now:
        raise Unavailable(f"the OCSP response is stale: its nextUpdate {stamp(next_update)} passed")
    if signer is not issuer and not _has(signer, x509.OCSPNoCheck):
        check_responder(signer, issuer)
    status = single.certificate_status
    if status is ocsp.OCSPCertStatus.GOOD:
        return Finding(False, "ocsp", source, next_update)
    if status is ocsp.OCSPCertStatus.UNKNOWN:
        raise Unavailable("the responder does not know the certificate (status unknown)")
    reason = single.revocation_reason
    return Finding(
        True,
        "ocsp",
        source,
        next_update,
        revoked_at=single.revocation_time_utc,
        invalid_since=_invalidity(response),
        reason=reason.value if reason is not None else None,
    )


def _single(response: ocsp.OCSPResponse, request: ocsp.OCSPRequest) -> ocsp.OCSPSingleResponse:
    """The single response about the CertID of ``request``."""
    seen = []
    for single in response.responses:
        if (
            single.serial_number == request.serial_number
            and single.hash_algorithm.name == request.hash_algorithm.name
            and single.issuer_name_hash == request.issuer_name_hash
            and single.issuer_key_hash == request.issuer_key_hash
        ):
            return single
        seen.append(f"{single.serial_number:x}")
        if len(seen) > 4:
            break
    others = f" (serials {', '.join(seen)})" if seen else ""
    raise Unavailable(
        f"the OCSP response is about another certificate{others}, "
        f"not serial {request.serial_number:x} of this issuer"
    )


def _signer(
    response: ocsp.OCSPResponse, issuer: x509.Certificate, now: datetime
) -> x509.Certificate:
    """Who may have signed ``response``: the issuer, or a responder it delegated to."""
    if _names(response, issuer):
        return issuer
    for candidate in response.certificates:
        readable(candidate)  # a certificate cryptography cannot read: the response is malformed
        if not _names(response, candidate):
            continue
        who = candidate.subject.rfc4514_string()
        try:
            candidate.verify_directly_issued_by(issuer)
        except (ValueError, TypeError, InvalidSignature, UnsupportedAlgorithm):
            raise Unavailable(
                f"the OCSP response is signed by {who}, which the issuer did not issue"
            ) from None
        usage = _extension(candidate, x509.ExtendedKeyUsage)
        if usage is None or ExtendedKeyUsageOID.OCSP_SIGNING not in usage:
            raise Unavailable(
                f"the OCSP response is signed by {who}, which lacks the OCSP signing EKU"
            )
        if not candidate.not_valid_before_utc <= now <= candidate.not_valid_after_utc:
            raise Unavailable(f"the OCSP responder certificate {who} is not valid now")
        return candidate
    raise Unavailable(
        "the OCSP response is signed by neither the certificate's issuer nor a responder "
        "it delegated to"
    )


def _names(response: ocsp.OCSPResponse, cert: x509.Certificate) -> bool:
    """Whether the response's ResponderID names ``cert`` (by name, or by SHA-1 of its key)."""
    if response.responder_name is not None:
        return bool(response.responder_name == cert.subject)
    try:
        key_id = x509.SubjectKeyIdentifier.from_public_key(cert.public_key()).digest
    except (ValueError, UnsupportedAlgorithm):
        return False
    return response.responder_key_hash == key_id


def _verify(response: ocsp.OCSPResponse, signer: x509.Certificate) -> None:
    """Check the response's signature with ``signer``'s key; raises Unavailable."""
    key = signer.public_key()
    data, signature = response.tbs_response_bytes, response.signature
    algorithm = response.signature_hash_algorithm
    try:
        if isinstance(key, ed25519.Ed25519PublicKey | ed448.Ed448PublicKey):
            key.verify(signature, data)
        elif algorithm is None:
            raise Unavailable("the OCSP response's signature algorithm names no hash")
        elif isinstance(key, rsa.RSAPublicKey):
            if response.signature_algorithm_oid == SignatureAlgorithmOID.RSASSA_PSS:
                raise Unavailable("OCSP responses signed with RSASSA-PSS are not supported")
            key.verify(signature, data, padding.PKCS1v15(), algorithm)
        elif isinstance(key, ec.EllipticCurvePublicKey):
            key.verify(signature, data, ec.ECDSA(algorithm))
        else:
            raise Unavailable("the OCSP responder's key type is not supported")
    except InvalidSignature:
        raise Unavailable(
            f"the OCSP response's signature does not verify with the key of "
            f"{signer.subject.rfc4514_string()}"
        ) from None


def _invalidity(response: ocsp.OCSPResponse) -> datetime | None:
    """The invalidity date among the single response's extensions (RFC 6960 4.4.7), if any."""
    try:
        found = response.single_extensions.get_extension_for_class(x509.InvalidityDate)
    except _NO_INVALIDITY:
        return None
    return found.value.invalidity_date_utc


def _extension(
    cert: x509.Certificate, kind: type[x509.ExtendedKeyUsage]
) -> x509.ExtendedKeyUsage | None:
    try:
        return cert.extensions.get_extension_for_class(kind).value
    except x509.ExtensionNotFound:
        return None


def _has(cert: x509.Certificate, kind: type[x509.ExtensionType]) -> bool:
    try:
        cert.extensions.get_extension_for_class(kind)
    except x509.ExtensionNotFound:
        return False
    return True
