"""RFC 3161 timestamp countersignatures of Notation signatures, checked against the TSA store.

A ``notary.x509`` signature may carry, unsigned, a TimeStampToken over its
signature value: a TSA's word that the signature existed at ``genTime``. Per
the trust-store and trust-policy specification ("Validate Authentic
Timestamp") the token must be a valid CMS SignedData holding a TSTInfo whose
message imprint is the hash of this signature; its signer certificate must
meet the timestamping requirements (extended key usage timeStamping only,
critical), carry a signing-certificate-v2 attribute naming it, and chain to
the TSA trust store at ``genTime``; its time is ``genTime`` plus or minus the
accuracy (1 s when the baseline policy of RFC 3628 gives none, else 0).

Libraries, measured on a real GlobalSign token of notation-go's test data
(5.8 kB, three certificates):

- ``rfc3161-client`` (installed with sigstore; sigstore-python verifies its
  timestamps with it) verifies the CMS signature and its certificate path
  with OpenSSL at ``genTime``, picks the signer certificate by the
  SignerInfo's issuer and serial (not by position in the bag), checks the
  timeStamping extended key usage and the imprint. It reads a TimeStampResp,
  not the bare token Notation stores, so the token is wrapped in a granted
  response; and its DER parser refuses real tokens whose certificate SET is
  not in DER order (GlobalSign's, in notation-go's test data). Hence:
- ``pyasn1-modules`` (RFC 5652, RFC 5035 structures) decodes the token
  leniently (BER), re-encodes it as DER and reads the signed attributes,
  which rfc3161-client does not expose: pure Python, four fifths of the 8 ms a
  real token takes to verify (worth caching by envelope digest above). The
  re-encoding only reorders what no signature covers; anything else it
  changed would fail a signature check, never pass one.
- ``cryptography``'s path validation (``chains.trusted_path``) gives the TSA
  chain itself, which the requirements and revocation need.

No ASN.1 is written by hand here.
"""

from __future__ import annotations

import datetime as dt
import hashlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Final

from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding
from pyasn1.codec.ber import decoder as ber_decoder
from pyasn1.codec.der import decoder as der_decoder
from pyasn1.codec.der import encoder as der_encoder
from pyasn1.error import PyAsn1Error
from pyasn1.type import univ
from pyasn1_modules import rfc3161, rfc5035, rfc5652
from rfc3161_client import (
    TimeStampResponse,
    VerificationError,
    VerifierBuilder,
    decode_timestamp_response,
)

from webhook.core.untrusted import literal
from webhook.core.x509read import CERTIFICATE_ERRORS, load_der
from webhook.signatures.notation.chains import TIMESTAMPING, check_chain, trusted_path
from webhook.signatures.notation.model import NotationError

#: A token larger than this is refused; real ones, with their chain, are 2-8 kB.
MAX_TOKEN_BYTES: Final = 64 * 1024
#: The baseline time-stamp policy of RFC 3628 (section 5.2): accuracy 1 s when unstated.
BASELINE_POLICY: Final = "0.4.0.2023.1.1"
_HASHES: Final = {
    "2.16.840.1.101.3.4.2.1": hashlib.sha256,
    "2.16.840.1.101.3.4.2.2": hashlib.sha384,
    "2.16.840.1.101.3.4.2.3": hashlib.sha512,
}


@dataclass(frozen=True, slots=True)
class Timestamp:
    """A verified countersignature: when, within what bounds, and which TSA chain said so."""

    time: dt.datetime
    earliest: dt.datetime
    latest: dt.datetime
    chain: tuple[x509.Certificate, ...] = field(repr=False)

    @property
    def authority(self) -> str:
        """The TSA certificate's subject (RFC 4514)."""
        return self.chain[0].subject.rfc4514_string()


def verify_timestamp(
    token: bytes, signature: bytes, anchors: Sequence[x509.Certificate]
) -> Timestamp:
    """The time ``token`` vouches ``signature`` existed at, if a TSA of ``anchors`` signed it.

    Raises NotationError saying which check failed: not a token, a token for
    another signature, a signer certificate it does not name, a TSA outside
    the store, a certificate that is no timestamping certificate.
    """
    if not anchors:
        raise NotationError("the signature has a timestamp but the policy trusts no TSA")
    if len(token) > MAX_TOKEN_BYTES:
        raise NotationError(f"the timestamp token is over {MAX_TOKEN_BYTES} bytes")
    signed_data, canonical = _decode(token)
    response = _response(canonical)
    _check_imprint(response, signature)
    leaf, others = _signer(response)
    _check_signing_certificate(signed_data, leaf)
    moment = response.tst_info.gen_time.astimezone(dt.UTC)
    path = trusted_path(leaf, others, anchors, moment, TIMESTAMPING)
    check_chain(path, TIMESTAMPING)
    try:
        VerifierBuilder(roots=list(anchors)).build().verify_message(response, signature)
    except VerificationError as exc:
        raise NotationError(
            f"the timestamp's signature does not verify: {str(exc)[:300]}"
        ) from None
    accuracy = _accuracy(response)
    return Timestamp(moment, moment - accuracy, moment + accuracy, path)


def _decode(token: bytes) -> tuple[Any, bytes]:
    """The SignedData of ``token`` (pyasn1) and the token re-encoded as DER."""
    try:
        info, rest = ber_decoder.decode(token, asn1Spec=rfc5652.ContentInfo())
        if rest or info["contentType"] != rfc5652.id_signedData:
            raise NotationError("the timestamp is not a CMS SignedData")
        signed_data, rest = ber_decoder.decode(info["content"], asn1Spec=rfc5652.SignedData())
        if rest:
            raise NotationError("the timestamp's SignedData has trailing bytes")
        content = signed_data["encapContentInfo"]
        if content["eContentType"] != rfc3161.id_ct_TSTInfo:
            raise NotationError("the timestamp's content is not a TSTInfo")
        info["content"] = univ.Any(der_encoder.encode(signed_data))
        canonical = der_encoder.encode(info)
    except (PyAsn1Error, RecursionError):  # RecursionError: BER nested past Python's limit
        raise NotationError("the timestamp is not an RFC 3161 TimeStampToken") from None
    return signed_data, canonical


def _response(token: bytes) -> TimeStampResponse:
    """``token`` in a granted TimeStampResp, the form rfc3161-client reads."""
    status = rfc3161.PKIStatusInfo()
    status["status"] = 0
    wrapper = univ.SequenceOf(componentType=univ.Any())
    wrapper.extend([univ.Any(der_encoder.encode(status)), univ.Any(token)])
    try:
        return decode_timestamp_response(der_encoder.encode(wrapper))
    except ValueError as exc:
        raise NotationError(f"the timestamp token is malformed: {str(exc)[:200]}") from None


def _check_imprint(response: TimeStampResponse, signature: bytes) -> None:
    imprint = response.tst_info.message_imprint
    digest = _HASHES.get(imprint.hash_algorithm.dotted_string)
    if digest is None:
        raise NotationError(
            f"the timestamp hashes with {imprint.hash_algorithm.dotted_string}; "
            "only SHA-256, SHA-384 and SHA-512 are accepted"
        )
    if digest(signature).digest() != imprint.message:
        raise NotationError("the timestamp is for another signature (its message imprint differs)")


def _signer(response: TimeStampResponse) -> tuple[x509.Certificate, list[x509.Certificate]]:
    """The certificate the SignerInfo names, and the rest of the certificate bag."""
    infos = list(response.signed_data.signer_infos)
    if len(infos) != 1:
        raise NotationError(f"the timestamp has {len(infos)} signers; exactly one is expected")
    try:
        bag = [load_der(der) for der in response.signed_data.certificates]
    except CERTIFICATE_ERRORS as exc:
        raise NotationError(
            f"the timestamp's certificate bag holds a certificate that cannot be read: "
            f"{literal(str(exc))}"
        ) from None
    signer = infos[0]
    named = [
        c for c in bag if c.issuer == signer.issuer and c.serial_number == signer.serial_number
    ]
    if len(named) != 1:
        raise NotationError(
            "the timestamp's certificate bag does not hold its signer's certificate exactly once"
        )
    return named[0], [cert for cert in bag if cert is not named[0]]


def _check_signing_certificate(signed_data: Any, leaf: x509.Certificate) -> None:
    """The signed signing-certificate-v2 attribute (RFC 5035) must name ``leaf``.

    It binds the certificate into what the TSA signed, so another certificate
    with the same issuer and serial (or the same key) cannot be substituted.
    """
    attributes = signed_data["signerInfos"][0]["signedAttrs"]
    found = [a for a in attributes if a["attrType"] == rfc5035.id_aa_signingCertificateV2]
    if len(found) != 1 or len(found[0]["attrValues"]) != 1:
        raise NotationError(
            "the timestamp has no signing-certificate-v2 attribute (RFC 5035); Notation requires it"
        )
    try:
        value, _ = der_decoder.decode(
            found[0]["attrValues"][0], asn1Spec=rfc5035.SigningCertificateV2()
        )
    except PyAsn1Error:
        raise NotationError(
            "the timestamp's signing-certificate-v2 attribute is malformed"
        ) from None
    first = value["certs"][0]
    digest = _HASHES.get(str(first["hashAlgorithm"]["algorithm"]))  # SHA-256 when not given
    der = leaf.public_bytes(Encoding.DER)
    if digest is None or digest(der).digest() != bytes(first["certHash"]):
        raise NotationError(
            "the timestamp's signing-certificate-v2 attribute names another certificate than "
            "its signer's"
        )
    serial = first["issuerSerial"]
    if serial.isValue and int(serial["serialNumber"]) != leaf.serial_number:
        raise NotationError("the timestamp's signing-certificate-v2 serial is not its signer's")


def _accuracy(response: TimeStampResponse) -> dt.timedelta:
    accuracy = response.tst_info.accuracy
    if accuracy is None:
        baseline = response.tst_info.policy.dotted_string == BASELINE_POLICY
        return dt.timedelta(seconds=1 if baseline else 0)
    return dt.timedelta(
        seconds=accuracy.seconds or 0,
        milliseconds=accuracy.millis or 0,
        microseconds=accuracy.micros or 0,
    )
