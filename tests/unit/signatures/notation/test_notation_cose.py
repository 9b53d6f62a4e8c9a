"""The COSE envelope: the protected header is the signed byte string, in place, whole."""

from __future__ import annotations

import hashlib
from typing import Any

import cbor2
import pytest

from tests.support import notation as signer
from webhook.signatures.notation import cose
from webhook.signatures.notation.model import COSE, NotationError

TARGET = signer.descriptor("sha256:" + hashlib.sha256(b"cose").hexdigest(), 99)
CHAIN = signer.signing_chain("p256")


def _raw(protected: bytes) -> dict[Any, Any]:
    """A protected header's map, its times kept as tag-1 values."""
    header: dict[Any, Any] = cbor2.loads(
        protected, semantic_decoders={1: lambda value, _: cbor2.CBORTag(1, value)}
    )
    return header


def _header(**overrides: Any) -> dict[Any, Any]:
    return signer.cose_header(signer.attributes(CHAIN, **overrides))


def _refused(pattern: str, **kwargs: Any) -> None:
    blob = signer.sign_cose(CHAIN, TARGET, **kwargs)
    with pytest.raises(NotationError, match=pattern):
        cose.parse(blob)


def test_a_notation_message_parses() -> None:
    envelope = cose.parse(signer.sign_cose(CHAIN, TARGET))
    assert envelope.media_type == COSE
    assert envelope.target.digest == TARGET["digest"]


def test_protected_header_stripped_is_refused() -> None:
    _refused(
        "the COSE_Sign1 protected header is empty \\(stripped\\)",
        body=lambda protected, unprotected, payload, signature: [
            b"",
            unprotected,
            payload,
            signature,
        ],
    )


def test_protected_header_moved_to_the_unprotected_map_is_refused() -> None:
    def moved(
        protected: bytes, unprotected: dict[Any, Any], payload: bytes, signature: bytes
    ) -> list[Any]:
        return [b"", {**_raw(protected), **unprotected}, payload, signature]

    _refused("alg \\(label 1\\) is in the unprotected header, where it is not signed", body=moved)


def test_protected_header_given_as_a_map_is_refused() -> None:
    _refused(
        "the COSE_Sign1 protected header is not a byte string: COSE signs the protected "
        "header as the exact bytes",
        body=lambda protected, unprotected, payload, signature: [
            _raw(protected),
            unprotected,
            payload,
            signature,
        ],
    )


def test_protected_header_re_encoded_is_refused() -> None:
    """The same map in another key order: other bytes, so not what was signed."""

    def reordered(
        protected: bytes, unprotected: dict[Any, Any], payload: bytes, signature: bytes
    ) -> list[Any]:
        items = list(_raw(protected).items())
        return [cbor2.dumps(dict(reversed(items))), unprotected, payload, signature]

    _refused("the signature does not verify", body=reordered)


def test_protected_header_altered_is_refused() -> None:
    def altered(
        protected: bytes, unprotected: dict[Any, Any], payload: bytes, signature: bytes
    ) -> list[Any]:
        header = _raw(protected)
        header["io.cncf.notary.signingTime"] = cbor2.CBORTag(1, 1)
        return [cbor2.dumps(header), unprotected, payload, signature]

    _refused("the signature does not verify", body=altered)


def test_protected_header_with_trailing_bytes_is_refused() -> None:
    _refused(
        "the protected header is not well-formed CBOR: 1 bytes follow",
        protected_bytes=cbor2.dumps(_header()) + b"\x00",
    )


def test_protected_header_that_is_not_a_map_is_refused() -> None:
    _refused("does not wrap a CBOR map", protected_bytes=cbor2.dumps([1, 2]))


def test_untagged_or_otherwise_tagged_messages_are_refused() -> None:
    message = cbor2.loads(signer.sign_cose(CHAIN, TARGET))
    with pytest.raises(NotationError, match="not a COSE_Sign1_Tagged message"):
        cose.parse(cbor2.dumps(list(message.value)))
    with pytest.raises(NotationError, match="CBOR tag 98 appears"):
        cose.parse(cbor2.dumps(cbor2.CBORTag(98, list(message.value))))
    with pytest.raises(NotationError, match="not an array of four items"):
        cose.parse(cbor2.dumps(cbor2.CBORTag(18, list(message.value)[:3])))


def test_a_header_in_both_maps_is_refused() -> None:
    _refused(
        "io.example.note is in both the protected and the unprotected header",
        extended={"io.example.note": "signed"},
        unprotected={"io.example.note": "not signed"},
    )


def test_times_must_be_tag_1_epoch_date_times() -> None:
    _refused(
        "io.cncf.notary.signingTime is not an epoch date/time",
        header={**_header(), "io.cncf.notary.signingTime": 1700000000},
    )
    _refused(
        "CBOR tag 0 appears",
        header={
            **_header(),
            "io.cncf.notary.signingTime": cbor2.CBORTag(0, "2024-01-01T00:00:00Z"),
        },
    )
    _refused(
        "out of any date's range",
        header={**_header(), "io.cncf.notary.signingTime": cbor2.CBORTag(1, 10**18)},
    )
    envelope = cose.parse(
        signer.sign_cose(
            CHAIN,
            TARGET,
            header={**_header(), "io.cncf.notary.signingTime": cbor2.CBORTag(1, 1700000000.5)},
        )
    )
    assert envelope.signing_time is not None and envelope.signing_time.microsecond == 500000


def test_crit_with_an_integer_label_is_refused() -> None:
    _refused(
        "crit names label 4, which trustgate does not know",
        header={**_header(), 4: b"kid", 2: ["io.cncf.notary.signingScheme", 4]},
    )


@pytest.mark.parametrize(
    ("change", "pattern"),
    [
        ({1: "ES256"}, "alg \\(label 1\\) is not an integer identifier"),
        ({1: -7, 3: 50}, "no content type \\(label 3\\) text string"),
        ({2: "io.cncf.notary.signingScheme"}, "crit \\(label 2\\) is not a list of labels"),
        ({"io.cncf.notary.signingScheme": 1}, "no io.cncf.notary.signingScheme text string"),
    ],
)
def test_header_values_of_the_wrong_type_are_refused(change: dict[Any, Any], pattern: str) -> None:
    _refused(pattern, header={**_header(), **change})


def test_missing_alg_is_refused() -> None:
    header = _header()
    del header[1]
    _refused("the protected header has no alg \\(label 1\\)", header=header)


def test_x5chain_in_the_protected_header_or_as_one_certificate_is_accepted() -> None:
    blob = signer.sign_cose(
        CHAIN, TARGET, header={**_header(), 33: CHAIN.ders}, unprotected={33: None}
    )
    assert cose.parse(blob).chain == CHAIN.certificates
    single = signer.sign_cose(CHAIN, TARGET, unprotected={33: CHAIN.ders[0]})
    assert cose.parse(single).chain == CHAIN.certificates[:1]
    _refused("x5chain \\(label 33\\)|label 33 is in both", header={**_header(), 33: CHAIN.ders})


def test_detached_payload_and_odd_signatures_are_refused() -> None:
    message = list(cbor2.loads(signer.sign_cose(CHAIN, TARGET)).value)
    detached = [*message[:2], None, message[3]]
    with pytest.raises(NotationError, match="a detached payload is not a Notation signature"):
        cose.parse(cbor2.dumps(cbor2.CBORTag(18, detached)))
    with pytest.raises(NotationError, match="the COSE_Sign1 signature is not a byte string"):
        cose.parse(cbor2.dumps(cbor2.CBORTag(18, [*message[:3], "sig"])))
    with pytest.raises(NotationError, match="the envelope's signature is empty"):
        cose.parse(cbor2.dumps(cbor2.CBORTag(18, [*message[:3], b""])))
    short = [*message[:3], message[3][:-1]]  # r || s one byte short
    with pytest.raises(NotationError, match="the signature does not verify"):
        cose.parse(cbor2.dumps(cbor2.CBORTag(18, short)))


def test_unsigned_attributes() -> None:
    _refused(
        "io.cncf.notary.timestampSignature is not a byte string",
        unprotected={"io.cncf.notary.timestampSignature": "token"},
    )
    odd_agent = signer.sign_cose(
        CHAIN, TARGET, unprotected={"io.cncf.notary.signingAgent": 7, "io.example": 1}
    )
    assert cose.parse(odd_agent).signing_agent == ""
