"""Every parser of signature material turns nesting too deep for Python's JSON parser,
and numbers too long for int(), into its own refusal: never RecursionError or a bare ValueError.

The end-to-end forms are in tests/integration/test_deep_signatures_e2e.py; these
pin each parser's message.
"""

from __future__ import annotations

import base64
import json

import pytest
from cryptography.hazmat.primitives.asymmetric import ec

from webhook.signatures import tlog
from webhook.signatures.cosign import IN_TOTO_PAYLOAD_TYPE, SignatureInvalid, parse_payload
from webhook.signatures.envelopes import attestation_layers
from webhook.signatures.keybundle import parse_key_bundle
from webhook.signatures.keyless import statement_payload_problem

DEEP = b"[" * 3000 + b"]" * 3000
LONG = b"[" + b"1" * 5000 + b"]"
KEY = ec.generate_private_key(ec.SECP256R1()).public_key()
DIGEST = "sha256:" + "ab" * 32


@pytest.mark.parametrize(
    ("payload", "says"),
    [
        (b'{"critical": ' + DEEP + b"}", "payload is nested too deeply to read"),
        (b'{"critical": ' + LONG + b"}", "payload is not usable JSON: Exceeds the limit"),
    ],
)
def test_a_simple_signing_payload(payload: bytes, says: str) -> None:
    with pytest.raises(SignatureInvalid, match=says):
        parse_payload(payload)


@pytest.mark.parametrize(
    ("blob", "says"),
    [(DEEP, "is nested too deeply to be a DSSE envelope"), (LONG, "is not a JSON DSSE envelope")],
)
def test_an_attestation_envelope(blob: bytes, says: str) -> None:
    manifest = {
        "layers": [
            {
                "mediaType": "application/vnd.dsse.envelope.v1+json",
                "digest": DIGEST,
                "size": len(blob),
            }
        ]
    }
    (layer,) = attestation_layers(manifest, lambda digest, size: blob)
    assert isinstance(layer.envelope, str)
    assert layer.envelope == f"attestation layer {DIGEST} {says}"


@pytest.mark.parametrize(
    ("payload", "says"),
    [(DEEP, "signed payload is nested too deeply to read"), (LONG, "signed payload is not JSON")],
)
def test_a_signed_statement(payload: bytes, says: str) -> None:
    assert statement_payload_problem(IN_TOTO_PAYLOAD_TYPE, payload, DIGEST, "x") == says


def test_a_sigstore_bundle() -> None:
    problem = parse_key_bundle(DEEP)
    assert isinstance(problem, str)
    assert problem.startswith("malformed Sigstore bundle")


def test_a_cosign_bundle_annotation() -> None:
    with pytest.raises(ValueError, match="nested too deeply to read"):
        tlog.parse_cosign_entry(DEEP.decode())
    body = base64.b64encode(DEEP).decode()
    entry = json.dumps(
        {"Payload": {"body": body, "logIndex": 1, "logID": "00", "integratedTime": 1}}
    )
    with pytest.raises(ValueError, match="nested too deeply to read"):
        tlog.parse_cosign_entry(entry)


@pytest.mark.parametrize("body", [DEEP, LONG])
def test_log_entry_bodies(body: bytes) -> None:
    for problem in (
        tlog.hashedrekord_problem(body, b"sig", KEY, "ab" * 32),
        tlog.hashedrekord_v2_problem(body, b"sig", KEY, b"\0" * 32),
        tlog.dsse_v2_problem(body, b"payload", b"sig", KEY),
        tlog.dsse_key_problem(body, b"payload", b"sig", KEY),
    ):
        assert isinstance(problem, str) and problem
