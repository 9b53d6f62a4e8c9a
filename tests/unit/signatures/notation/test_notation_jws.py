"""The JWS envelope: flattened serialization, strict encodings, headers in their place."""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import json
from typing import Any

import pytest

from tests.support import notation as signer
from webhook.signatures.notation import jws
from webhook.signatures.notation.model import JWS, NotationError

TARGET = signer.descriptor("sha256:" + hashlib.sha256(b"jws").hexdigest(), 77)
CHAIN = signer.signing_chain("p384")


def _envelope(**kwargs: Any) -> dict[str, Any]:
    document: dict[str, Any] = json.loads(signer.sign_jws(CHAIN, TARGET, **kwargs))
    return document


def _header(**overrides: Any) -> dict[str, Any]:
    return signer.jws_header(signer.attributes(CHAIN, **overrides))


def _refuse(document: object, pattern: str) -> None:
    with pytest.raises(NotationError, match=pattern):
        jws.parse(json.dumps(document).encode() if not isinstance(document, bytes) else document)


def test_a_notation_jws_parses() -> None:
    envelope = jws.parse(signer.sign_jws(CHAIN, TARGET))
    assert (envelope.media_type, envelope.signature_algorithm) == (JWS, "ES384")
    assert envelope.target.size == 77


def test_serialization_shape() -> None:
    document = _envelope()
    _refuse(
        {"signatures": [document]},
        "general JWS JSON serialization; Notation signs with the flattened one",
    )
    _refuse(
        {**document, "extra": 1},
        "has members extra; a Notation JWS has only payload, protected, header, signature",
    )
    _refuse(
        {key: value for key, value in document.items() if key != "header"},
        "header is missing or not an object",
    )
    _refuse({**document, "payload": 5}, "payload is missing or not a string")
    _refuse([document], "the envelope is not a JSON object")
    _refuse(b'{"payload": ', "the envelope is not valid JSON")


def test_duplicate_keys_are_refused_in_the_envelope_and_the_protected_header() -> None:
    document = _envelope()
    text = json.dumps(document)
    doubled = text.replace('"payload":', '"payload": "AAAA", "payload":', 1)
    _refuse(doubled.encode(), "the envelope names the key 'payload' twice")
    protected = json.dumps(_header(), separators=(",", ":"))
    forged = protected[:-1] + ',"alg":"ES256"}'
    document["protected"] = base64.urlsafe_b64encode(forged.encode()).rstrip(b"=").decode()
    _refuse(document, "the protected header names the key 'alg' twice")


@pytest.mark.parametrize(
    ("member", "mangle", "label"),
    [
        ("protected", lambda text: text + "==", "protected header"),
        ("payload", lambda text: "+" + text[1:], "payload"),
        ("payload", lambda text: "\u00e9" + text[1:], "payload"),
        ("signature", lambda text: text + "A" * ((1 - len(text)) % 4), "signature"),
        ("protected", lambda text: text[:-1] + " ", "protected header"),
    ],
)
def test_base64url_is_strict(member: str, mangle: Any, label: str) -> None:
    document = _envelope()
    document[member] = mangle(document[member])
    _refuse(document, f"the envelope's {label} is not unpadded base64url")


def test_protected_header_must_be_an_object_and_not_use_nan() -> None:
    document = _envelope()
    document["protected"] = base64.urlsafe_b64encode(b"[1]").rstrip(b"=").decode()
    _refuse(document, "the protected header is not a JSON object")
    document["protected"] = base64.urlsafe_b64encode(b'{"alg":NaN}').rstrip(b"=").decode()
    _refuse(document, "the protected header is not valid JSON")


@pytest.mark.parametrize(
    "name", ["alg", "crit", "cty", "io.cncf.notary.signingScheme", "io.cncf.notary.signingTime"]
)
def test_signed_names_in_the_unprotected_header_are_refused(name: str) -> None:
    document = _envelope()
    document["header"][name] = "x"
    _refuse(document, f"{name} is in both the protected and the unprotected header")


def test_a_protected_only_name_missing_from_the_protected_header_is_still_refused_unprotected() -> (
    None
):
    header = _header()
    del header["cty"]
    with pytest.raises(
        NotationError, match="cty is in the unprotected header, where it is not signed"
    ):
        jws.parse(
            signer.sign_jws(
                CHAIN,
                TARGET,
                header=header,
                unprotected={"cty": "application/vnd.cncf.notary.payload.v1+json"},
            )
        )


@pytest.mark.parametrize(
    ("x5c", "pattern"),
    [
        ("MIIB", "no x5c list"),
        ([1], "no x5c list"),
        (["MII-_A=="], "x5c\\[0\\] is not standard base64"),
        (["MIIB="], "x5c\\[0\\] is not standard base64"),
    ],
)
def test_x5c_must_be_a_list_of_standard_base64(x5c: object, pattern: str) -> None:
    document = _envelope()
    document["header"]["x5c"] = x5c
    _refuse(document, pattern)


def test_timestamp_and_signing_agent() -> None:
    token = b"\x30\x82\x00\x00"
    envelope = jws.parse(
        signer.sign_jws(
            CHAIN, TARGET, timestamp=token, unprotected={"io.cncf.notary.signingAgent": ["x"]}
        )
    )
    assert envelope.timestamp == token
    assert envelope.signing_agent == ""  # informational: a wrong type is ignored, not refused
    document = _envelope()
    document["header"]["io.cncf.notary.timestampSignature"] = {"token": 1}
    _refuse(document, "io.cncf.notary.timestampSignature is not a base64 string")
    document["header"]["io.cncf.notary.timestampSignature"] = "not base64!"
    _refuse(document, "io.cncf.notary.timestampSignature is not standard base64")


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2024-06-18T14:29:33+08:00", dt.datetime(2024, 6, 18, 6, 29, 33, tzinfo=dt.UTC)),
        ("2024-06-18t06:29:33z", dt.datetime(2024, 6, 18, 6, 29, 33, tzinfo=dt.UTC)),
        (
            "2024-06-18T06:29:33.123456789Z",
            dt.datetime(2024, 6, 18, 6, 29, 33, 123456, tzinfo=dt.UTC),
        ),
        ("2024-06-18T06:29:33-00:30", dt.datetime(2024, 6, 18, 6, 59, 33, tzinfo=dt.UTC)),
    ],
)
def test_rfc3339_signing_times(text: str, expected: dt.datetime) -> None:
    envelope = jws.parse(
        signer.sign_jws(CHAIN, TARGET, header={**_header(), "io.cncf.notary.signingTime": text})
    )
    assert envelope.signing_time == expected


@pytest.mark.parametrize(
    ("value", "pattern"),
    [
        ("2024-06-18 06:29:33Z", "not an RFC 3339 date-time"),
        ("2024-06-18T06:29:33", "not an RFC 3339 date-time"),
        ("2024-13-18T06:29:33Z", "not a valid date-time"),
        (1718692173, "is int, not an RFC 3339 date-time"),
    ],
)
def test_malformed_times_are_refused(value: object, pattern: str) -> None:
    header = {**_header(), "io.cncf.notary.signingTime": value}
    with pytest.raises(NotationError, match=f"io.cncf.notary.signingTime .*{pattern}"):
        jws.parse(signer.sign_jws(CHAIN, TARGET, header=header))


@pytest.mark.parametrize(
    ("change", "pattern"),
    [
        ({"alg": None}, "the protected header has no alg"),
        ({"alg": "none"}, "alg is none \\(an unsigned JWS\\), which the Notary Project"),
        ({"alg": 7}, "alg is not a string"),
        ({"cty": None}, "has no cty"),
        (
            {"cty": "application/json"},
            "the content type is application/json, not the Notation payload",
        ),
        ({"crit": "io.cncf.notary.signingScheme"}, "crit is not a list of header names"),
        ({"crit": [1]}, "crit is not a list of header names"),
        ({"io.cncf.notary.signingScheme": None}, "has no io.cncf.notary.signingScheme string"),
        (
            {"io.cncf.notary.signingScheme": "notary.default.x509"},
            "signing scheme is notary.default.x509; trustgate knows",
        ),
    ],
)
def test_protected_header_values(change: dict[str, Any], pattern: str) -> None:
    header = _header()
    for name, value in change.items():
        if value is None:
            header.pop(name)
        else:
            header[name] = value
    with pytest.raises(NotationError, match=pattern):
        jws.parse(signer.sign_jws(CHAIN, TARGET, header=header))
