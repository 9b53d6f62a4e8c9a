"""Forged Notation signatures, each refused with a message that says why: in both the
JWS and the COSE envelope, through parse_envelope as the signature check will call it."""

from __future__ import annotations

import base64
import contextlib
import datetime as dt
import hashlib
from typing import Any

import cbor2
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.support import notation as signer
from webhook.signatures.notation.attributes import PROTECTED_ONLY
from webhook.signatures.notation.envelope import parse_envelope
from webhook.signatures.notation.model import COSE, JWS, NotationError

DIGEST = "sha256:" + hashlib.sha256(b"an image manifest").hexdigest()
TARGET = signer.descriptor(DIGEST, 1234)
FORMATS = [JWS, COSE]
_OCI = "application/vnd.oci.image.manifest.v1+json"


def _refused(media_type: str, pattern: str, **kwargs: Any) -> None:
    chain = kwargs.pop("chain", None) or signer.signing_chain("p256")
    blob = signer.sign(media_type, chain, TARGET, **kwargs)
    with pytest.raises(NotationError, match=pattern):
        parse_envelope(media_type, blob)


@pytest.mark.parametrize("media_type", FORMATS)
def test_signature_over_other_bytes_is_refused(media_type: str) -> None:
    chain = signer.signing_chain("rsa2048")
    _refused(
        media_type,
        "the signature does not verify with the signing certificate's key under PS256",
        chain=chain,
        sign=lambda data: signer.raw_signature(chain.key, "PS256", data + b"x"),
    )


@pytest.mark.parametrize("media_type", FORMATS)
def test_signature_by_another_key_is_refused(media_type: str) -> None:
    other = signer.signing_chain("p256", subject="someone else")
    _refused(
        media_type,
        "the signature does not verify",
        sign=lambda data: signer.raw_signature(other.key, "ES256", data),
    )


@pytest.mark.parametrize("media_type", FORMATS)
def test_pkcs1v15_signature_presented_as_pss_is_refused(media_type: str) -> None:
    chain = signer.signing_chain("rsa2048")
    _refused(
        media_type,
        "does not verify .* under PS256 \\(RSASSA-PSS with SHA-256\\)",
        chain=chain,
        sign=lambda data: signer.raw_signature(chain.key, "PS256", data, pkcs1v15=True),
    )


@pytest.mark.parametrize("media_type", FORMATS)
@pytest.mark.parametrize(
    ("kind", "alg", "pattern"),
    [
        (
            "p256",
            "PS256",
            r"PS256 .* does not fit the signing certificate, which has an EC secp256r1 key and "
            "signs with ES256",
        ),
        (
            "rsa2048",
            "ES256",
            "ES256 .* does not fit the signing certificate, which has an RSA 2048-bit key",
        ),
        ("rsa3072", "PS256", "PS256 .* does not fit .* RSA 3072-bit key and signs with PS384"),
        ("p384", "ES256", "ES256 .* does not fit .* secp384r1 key and signs with ES384"),
    ],
)
def test_algorithm_that_does_not_fit_the_key_is_refused(
    media_type: str, kind: str, alg: str, pattern: str
) -> None:
    chain = signer.signing_chain(kind)
    # Signed honestly under the header's algorithm where the key can: only the fit is wrong.
    sign = None if (alg[0] == "P") == kind.startswith("rsa") else (lambda data: b"\x01" * 64)
    _refused(media_type, pattern, chain=chain, alg=alg, sign=sign)


@pytest.mark.parametrize("media_type", FORMATS)
@pytest.mark.parametrize(
    ("alg", "pattern"),
    [
        (
            "RS256",
            r"(RS256|-257) \(RSASSA-PKCS1-v1_5\), which the Notary Project signature "
            "specification does not allow",
        ),
        ("none", r"none \(an unsigned JWS\)|is 'none'|not an integer"),
        ("HS256", r"HMAC, a symmetric algorithm|not an integer"),
    ],
)
def test_refused_algorithms(media_type: str, alg: str, pattern: str) -> None:
    if media_type == COSE and alg == "RS256":
        alg_value: Any = -257
    else:
        alg_value = alg
    header_builder = signer.jws_header if media_type == JWS else signer.cose_header
    chain = signer.signing_chain("rsa2048")
    attrs = signer.attributes(chain)
    header = header_builder(attrs)
    header["alg" if media_type == JWS else 1] = alg_value
    _refused(media_type, pattern, chain=chain, header=header)


@pytest.mark.parametrize("media_type", FORMATS)
@pytest.mark.parametrize(
    ("kind", "described"),
    [
        ("rsa1024", "an RSA 1024-bit key"),
        ("p192", "an EC secp192r1 key"),
        ("k256", "an EC secp256k1 key"),
    ],
)
def test_keys_below_the_minimum_or_off_the_list_are_refused(
    media_type: str, kind: str, described: str
) -> None:
    chain = signer.signing_chain(kind)
    alg = "PS256" if kind.startswith("rsa") else "ES256"
    _refused(
        media_type,
        f"the signing certificate has {described}, which the Notary Project signature "
        "specification does not allow",
        chain=chain,
        alg=alg,
    )


@pytest.mark.parametrize("media_type", FORMATS)
def test_unknown_critical_header_is_refused(media_type: str) -> None:
    _refused(
        media_type,
        r"crit names io.example.mustUnderstand, which trustgate does not know how to process; "
        "an unknown critical",
        extended={"io.example.mustUnderstand": "yes"},
        crit=["io.cncf.notary.signingScheme", "io.example.mustUnderstand"],
    )


@pytest.mark.parametrize("media_type", FORMATS)
def test_crit_naming_a_missing_header_is_refused(media_type: str) -> None:
    _refused(
        media_type,
        "crit names io.cncf.notary.expiry, which the protected header does not have",
        crit=["io.cncf.notary.signingScheme", "io.cncf.notary.expiry"],
    )


@pytest.mark.parametrize("media_type", FORMATS)
def test_verification_plugin_is_refused(media_type: str) -> None:
    _refused(
        media_type,
        'must be verified by the Notation verification plugin "?com.example.plugin"?, which '
        "trustgate does not run",
        extended={"io.cncf.notary.verificationPlugin": "com.example.plugin"},
        crit=["io.cncf.notary.signingScheme", "io.cncf.notary.verificationPlugin"],
    )


@pytest.mark.parametrize("media_type", FORMATS)
def test_expiry_not_marked_critical_is_refused(media_type: str) -> None:
    _refused(
        media_type,
        "io.cncf.notary.expiry must be listed in crit",
        expiry=signer.SIGNING_TIME + dt.timedelta(days=1),
        crit=["io.cncf.notary.signingScheme"],
    )


@pytest.mark.parametrize("media_type", FORMATS)
def test_protected_attribute_moved_to_the_unprotected_header_is_refused(media_type: str) -> None:
    name = "io.cncf.notary.expiry"
    value: Any = "2099-01-01T00:00:00Z" if media_type == JWS else cbor2.CBORTag(1, 4070908800)
    _refused(
        media_type,
        f"{name} is in the unprotected header, where it is not signed",
        unprotected={name: value},
    )


@pytest.mark.parametrize("media_type", FORMATS)
@pytest.mark.parametrize("name", sorted(PROTECTED_ONLY))
def test_every_signed_only_attribute_is_refused_unprotected_in_both_formats(
    media_type: str, name: str
) -> None:
    # One list (attributes.PROTECTED_ONLY) for both parsers: a name added to it is
    # refused unsigned in JWS and COSE alike. A name the protected header also
    # carries is refused as being in both headers.
    _refused(
        media_type,
        f"{name} is in (the|both the protected and the) unprotected header",
        unprotected={name: "unsigned"},
    )


@pytest.mark.parametrize("media_type", FORMATS)
@pytest.mark.parametrize(
    ("change", "pattern"),
    [
        (
            {"x5c": ["bm90IGEgY2VydGlmaWNhdGU="]},
            "certificate 1 of the chain is not a DER X.509 certificate",
        ),
        ({"x5c": []}, "carries no certificate chain"),
        ({"x5c": None}, "no x5c|no x5chain"),
    ],
)
def test_garbage_or_missing_chain_is_refused(
    media_type: str, change: dict[str, Any], pattern: str
) -> None:
    chain_value = change["x5c"]
    if media_type == COSE:
        unprotected: dict[Any, Any] = {
            33: None if chain_value is None else [base64.b64decode(item) for item in chain_value]
        }
    else:
        unprotected = change
    _refused(media_type, pattern, unprotected=unprotected)


@pytest.mark.parametrize("media_type", FORMATS)
def test_chain_too_long_is_refused(media_type: str) -> None:
    chain = signer.signing_chain("p256")
    ders = chain.ders * 4  # 12 certificates
    value: Any = [base64.b64encode(der).decode() for der in ders] if media_type == JWS else ders
    _refused(
        media_type,
        "the certificate chain has 12 certificates, over the limit of 10",
        unprotected={"x5c" if media_type == JWS else 33: value},
    )


@pytest.mark.parametrize("media_type", FORMATS)
@pytest.mark.parametrize(
    ("target", "pattern"),
    [
        ({"mediaType": _OCI, "digest": DIGEST}, "no valid size"),
        ({"mediaType": _OCI, "digest": DIGEST, "size": -1}, "no valid size"),
        ({"mediaType": _OCI, "digest": "sha256", "size": 1}, "no valid digest"),
        ({"digest": DIGEST, "size": 1}, "no valid mediaType"),
    ],
)
def test_malformed_descriptors_are_refused(
    media_type: str, target: dict[str, Any], pattern: str
) -> None:
    chain = signer.signing_chain("p256")
    with pytest.raises(NotationError, match=pattern):
        parse_envelope(media_type, signer.sign(media_type, chain, target))


@pytest.mark.parametrize("media_type", FORMATS)
@pytest.mark.parametrize(
    ("content", "pattern"),
    [
        (
            b'{"targetArtifact":{"mediaType":"a/b","digest":"sha256:ab","size":1}',
            "is not valid JSON",
        ),
        (
            b'{"targetArtifact":{"mediaType":"a/b","digest":"sha256:ab","size":1,"size":2}}',
            "names the key 'size' twice",
        ),
        (
            b'{"targetArtifact":{"mediaType":"a/b","digest":"sha256:ab","size":NaN}}',
            "is not valid JSON",
        ),
        (
            b'{"targetArtifact":{"mediaType":"a/b","digest":"sha256:ab","size":1}}' + b" " * 70000,
            "over the limit",
        ),
    ],
)
def test_truncated_duplicate_key_and_oversized_payloads_are_refused(
    media_type: str, content: bytes, pattern: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(signer, "payload", lambda _target: content)
    _refused(media_type, pattern)


_VALID = {
    media_type: signer.sign(media_type, signer.signing_chain("p256"), TARGET)
    for media_type in FORMATS
}


@pytest.mark.parametrize("media_type", FORMATS)
@settings(
    max_examples=400, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(data=st.data())
def test_any_damage_is_a_refusal_never_a_crash(media_type: str, data: st.DataObject) -> None:
    """Flipped, cut, inserted or duplicated bytes of a valid envelope: parse_envelope
    accepts it or refuses it with a NotationError, and raises nothing else."""
    blob = bytearray(_VALID[media_type])
    for _ in range(data.draw(st.integers(1, 4))):
        position = data.draw(st.integers(0, len(blob) - 1))
        action = data.draw(st.sampled_from(["flip", "cut", "insert", "repeat"]))
        if action == "flip":
            blob[position] ^= 1 << data.draw(st.integers(0, 7))
        elif action == "cut":
            del blob[position:]
        elif action == "insert":
            blob[position:position] = data.draw(st.binary(min_size=1, max_size=9))
        else:
            blob[position:position] = blob[position : position + data.draw(st.integers(1, 64))]
        if not blob:
            blob = bytearray(b"\x00")
    with contextlib.suppress(NotationError):
        parse_envelope(media_type, bytes(blob))
