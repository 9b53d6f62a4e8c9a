"""parse_envelope and check_target: real Notation signatures, the test signer's in both
envelopes, and the forgeries each envelope must refuse."""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import json
import re
from pathlib import Path

import cbor2
import pytest

from tests.support import notation as signer
from webhook.signatures.notation.envelope import MAX_ENVELOPE_BYTES, check_target, parse_envelope
from webhook.signatures.notation.model import COSE, JWS, SIGNING_AUTHORITY, X509, NotationError

NOTATION = Path(__file__).parents[3] / "data" / "notation"
FIXTURES = NOTATION / "envelopes"
DIGEST = "sha256:" + hashlib.sha256(b"an image manifest").hexdigest()
TARGET = signer.descriptor(DIGEST, 1234)
FORMATS = [JWS, COSE]

_DOCKER = "application/vnd.docker.distribution.manifest.v2+json"
_OCI = "application/vnd.oci.image.manifest.v1+json"
_ALPINE = ("sha256:19dbd2e48e921426ee8ace4dc892edfb2ecdc1d1a72d5416c83670c30acecef0", 481, _OCI)
_STAMPED = ("sha256:c0669ef34cdc14332c0f1ab0c2c01acb91d96014b172f1a76f3a39e63d1f0bda", 528, _DOCKER)
_MOCK = ("sha256:60043cf45eaebc4c0867fea485a039b598f52fd09fd5b07b0b2d2f88fad9d74e", 528, _DOCKER)
_METADATA = (
    "sha256:5a07385af4e6b6af81b0ebfd435aedccdfa3507f0609c658209e1aba57159b2b",
    942,
    _DOCKER,
)
#: file, envelope media type, signed (digest, size, media type), signing scheme, algorithm
REAL = [
    ("jws_signature.sig", JWS, _ALPINE, X509, "PS256"),
    ("cose_signature.sig", COSE, _ALPINE, X509, "PS256"),
    ("../timestamp/jwsWithTimestamp.sig", JWS, _STAMPED, X509, "PS256"),
    ("coseWithTimestamp.sig", COSE, _STAMPED, X509, "PS256"),
    ("ca_valid_sig_env.json", JWS, _MOCK, X509, "PS384"),
    ("sa_valid_sig_env.json", JWS, _MOCK, SIGNING_AUTHORITY, "PS384"),
    ("sig_env_with_metadata.json", JWS, _METADATA, X509, "PS256"),
]


def _fixture(name: str) -> bytes:
    return (FIXTURES / name).read_bytes()


def _git_blob_id(data: bytes) -> str:
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()  # git's blob id


def test_fixtures_are_byte_exact_copies() -> None:
    """Every file the README lists has the git blob id it names, as in notation-go;
    so has the timestamped JWS read from the trust tests' fixtures."""
    readme = (FIXTURES / "README.md").read_text(encoding="utf-8")
    rows = re.findall(r"^\| `([^`]+)` \| `[^`]+` \| `([0-9a-f]{40})` \|", readme, re.M)
    assert len(rows) == 10
    rows.append(("../timestamp/jwsWithTimestamp.sig", "ec1c0f4e79666352f45776aea01d68e8c669158e"))
    for name, blob in rows:
        assert _git_blob_id(_fixture(name)) == blob, name


@pytest.mark.parametrize(("name", "media_type", "target", "scheme", "alg"), REAL)
def test_real_signatures_parse_verify_and_name_their_target(
    name: str, media_type: str, target: tuple[str, int, str], scheme: str, alg: str
) -> None:
    envelope = parse_envelope(media_type, _fixture(name))
    assert envelope.media_type == media_type
    assert (envelope.signing_scheme, envelope.signature_algorithm) == (scheme, alg)
    digest, size, target_type = target
    check_target(envelope, digest, size, target_type)
    assert envelope.chain and envelope.signature
    if scheme == X509:
        assert envelope.signing_time is not None and envelope.authentic_signing_time is None
    else:
        assert envelope.authentic_signing_time == dt.datetime(2020, 11, 9, 7, tzinfo=dt.UTC)
        assert envelope.signing_time is None
    with pytest.raises(NotationError, match="signs another artifact"):
        check_target(envelope, "sha256:" + "0" * 64, size, target_type)


def test_real_signatures_carry_their_details() -> None:
    jws = parse_envelope(JWS, _fixture("../timestamp/jwsWithTimestamp.sig"))
    cose = parse_envelope(COSE, _fixture("coseWithTimestamp.sig"))
    for envelope in (jws, cose):
        assert envelope.timestamp is not None and envelope.timestamp[:1] == b"\x30"  # DER
        assert envelope.signing_agent == "Notation/1.0.0"
        assert (
            envelope.chain[0].subject.rfc4514_string() == "CN=alpine,O=Notary,L=Seattle,ST=WA,C=US"
        )
    assert jws.signing_time == dt.datetime(
        2024, 6, 18, 6, 29, 33, tzinfo=dt.UTC
    )  # +08:00 in the header
    assert cose.signing_time == dt.datetime(2024, 6, 18, 6, 27, 11, tzinfo=dt.UTC)
    metadata = parse_envelope(JWS, _fixture("sig_env_with_metadata.json"))
    assert dict(metadata.target.annotations) == {
        "io.wabbit-networks.buildId": "123",
        "io.wabbit-networks.buildTime": "1672944615",
    }
    mock = parse_envelope(JWS, _fixture("ca_valid_sig_env.json"))
    assert mock.expiry == dt.datetime(2120, 11, 9, 7, tzinfo=dt.UTC)
    assert mock.signing_agent == ""  # under a misspelt name, which is ignored
    assert len(mock.chain) == 2


def test_real_signature_with_plugin_and_unknown_critical_headers_is_refused() -> None:
    with pytest.raises(
        NotationError, match=r"JWS envelope: crit names SomeKey, which trustgate does not know"
    ):
        parse_envelope(JWS, _fixture("ca_plugin_sig_env.json"))


def test_real_signature_with_altered_payload_is_refused() -> None:
    with pytest.raises(NotationError, match="payload is not unpadded base64url"):
        parse_envelope(JWS, _fixture("ca_invalid_sig_env.json"))
    envelope = json.loads(_fixture("ca_valid_sig_env.json"))
    other = {"targetArtifact": {"mediaType": _DOCKER, "digest": DIGEST, "size": 528}}
    envelope["payload"] = base64.urlsafe_b64encode(json.dumps(other).encode()).rstrip(b"=").decode()
    with pytest.raises(NotationError, match="the signature does not verify"):
        parse_envelope(JWS, json.dumps(envelope).encode())


def test_real_cose_signature_over_other_bytes_is_refused() -> None:
    message = cbor2.loads(_fixture("cose_signature.sig"))
    protected, unprotected, payload, signature = message.value
    forged = payload.replace(b'"size":481', b'"size":482')
    assert forged != payload
    blob = cbor2.dumps(cbor2.CBORTag(18, [protected, unprotected, forged, signature]))
    with pytest.raises(NotationError, match="COSE envelope: the signature does not verify"):
        parse_envelope(COSE, blob)


@pytest.mark.parametrize("media_type", FORMATS)
@pytest.mark.parametrize("kind", list(signer.KEY_KINDS))
def test_test_signer_signatures_verify_in_both_envelopes(media_type: str, kind: str) -> None:
    chain = signer.signing_chain(kind)
    envelope = parse_envelope(media_type, signer.sign(media_type, chain, TARGET))
    assert envelope.signature_algorithm == signer.KEY_KINDS[kind]
    assert envelope.chain == chain.certificates
    assert envelope.signing_time == signer.SIGNING_TIME
    assert envelope.signing_agent == "trustgate-tests/1.0"
    check_target(envelope, DIGEST, 1234, signer.OCI_MANIFEST)


@pytest.mark.parametrize("media_type", FORMATS)
def test_signing_authority_expiry_timestamp_and_extended_attributes(media_type: str) -> None:
    chain = signer.signing_chain("p256")
    expiry = signer.SIGNING_TIME + dt.timedelta(days=30)
    blob = signer.sign(
        media_type,
        chain,
        TARGET,
        scheme=SIGNING_AUTHORITY,
        expiry=expiry,
        extended={"io.example.build": "42", "io.example.flags": [1, "two"]},
        timestamp=b"\x30\x03\x02\x01\x01",
    )
    envelope = parse_envelope(media_type, blob)
    assert envelope.signing_scheme == SIGNING_AUTHORITY
    assert envelope.authentic_signing_time == signer.SIGNING_TIME
    assert envelope.signing_time is None
    assert envelope.expiry == expiry
    assert envelope.timestamp == b"\x30\x03\x02\x01\x01"
    assert envelope.extended == (
        ("io.example.build", "42", False),
        ("io.example.flags", '[1,"two"]', False),
    )


def test_unknown_media_type_is_refused() -> None:
    with pytest.raises(
        NotationError, match=r"media type is application/vnd.dsse.envelope.v1\+json"
    ):
        parse_envelope("application/vnd.dsse.envelope.v1+json", b"{}")


@pytest.mark.parametrize("media_type", FORMATS)
def test_oversized_envelope_is_refused_before_parsing(media_type: str) -> None:
    with pytest.raises(NotationError, match=f"over the limit of {MAX_ENVELOPE_BYTES}"):
        parse_envelope(media_type, b"\x00" * (MAX_ENVELOPE_BYTES + 1))


def test_check_target_names_the_field_that_differs() -> None:
    envelope = parse_envelope(JWS, signer.sign(JWS, signer.signing_chain("p256"), TARGET))
    check_target(envelope, DIGEST, 1234, signer.OCI_MANIFEST)
    with pytest.raises(
        NotationError, match=r"is for digest sha256:.*not the image's sha256:0+: it signs another"
    ):
        check_target(envelope, "sha256:" + "0" * 64, 1234, signer.OCI_MANIFEST)
    with pytest.raises(
        NotationError, match="with size 1234, but the image's manifest is 1235 bytes"
    ):
        check_target(envelope, DIGEST, 1235, signer.OCI_MANIFEST)
    with pytest.raises(
        NotationError, match=r"with mediaType application/vnd.oci.image.manifest.v1\+json, but"
    ):
        check_target(envelope, DIGEST, 1234, "application/vnd.oci.image.index.v1+json")
