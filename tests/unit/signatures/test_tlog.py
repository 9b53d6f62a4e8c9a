"""Transparency-log entries of key-signed ``.sig`` layers (``tlog: required``), and the
``intoto`` entries of keyless ``.att`` layers.

The entries come from the test Sigstore's log (tests/support/sigstore_instance.py),
as ``cosign sign --key`` stores Rekor's answer on the layer.
"""

from __future__ import annotations

import base64
import datetime as dt
import json
from pathlib import Path
from typing import Any

import pytest

from tests.support.cosign import (
    generate_key,
    public_pem,
    sign,
    signature_manifest,
    simple_signing_payload,
)
from tests.support.sigstore_instance import (
    Identity,
    SigstoreInstance,
    intoto_body,
    now,
    rekor_bundle,
)
from webhook.signatures.cosign import KeyVerification, verify_with_key
from webhook.signatures.tlog import BUNDLE_ANNOTATION, intoto_body_problem, parse_cosign_entry
from webhook.trust.keys import load_public_key
from webhook.trust.trustroot import TrustRoot, load_trusted_root

REPO = "quay.io/acme/app"
DIGEST = "sha256:" + "a" * 64
RELEASE = generate_key("ecdsa-p256")
OTHER = generate_key("ecdsa-p256")
PAYLOAD = simple_signing_payload(REPO, DIGEST)


def layer(signature: bytes, annotation: str | None) -> tuple[dict[str, Any], dict[str, bytes]]:
    """A one-layer ``.sig`` manifest for PAYLOAD, with ``annotation`` as its Rekor bundle."""
    manifest, blobs = signature_manifest([(PAYLOAD, base64.b64encode(signature).decode())])
    if annotation is not None:
        manifest["layers"][0]["annotations"][BUNDLE_ANNOTATION] = annotation
    return manifest, blobs


def check(
    manifest: dict[str, Any], blobs: dict[str, bytes], root: TrustRoot | None
) -> KeyVerification:
    return verify_with_key(
        manifest,
        lambda digest, size: blobs[digest],
        image_digest=DIGEST,
        repository=REPO,
        key=load_public_key(public_pem(RELEASE), source="test"),
        key_name="release",
        tlog_root=root,
    )


def logged(instance: SigstoreInstance, **options: Any) -> tuple[bytes, str]:
    """RELEASE's signature of PAYLOAD and the annotation of its log entry."""
    signature = sign(RELEASE, PAYLOAD)
    entry = instance.log_key_signature(
        options.pop("pem", public_pem(RELEASE).encode()),
        options.pop("logged_signature", signature),
        PAYLOAD,
        **options,
    )
    return signature, rekor_bundle(entry)


def test_logged_key_signature_verifies(instance: SigstoreInstance, root: TrustRoot) -> None:
    signature, annotation = logged(instance)
    result = check(*layer(signature, annotation), root)
    assert result.ok, result.reason


def test_without_tlog_root_no_entry_is_needed() -> None:
    result = check(*layer(sign(RELEASE, PAYLOAD), None), None)
    assert result.ok, result.reason


def test_missing_entry_is_denied(root: TrustRoot) -> None:
    result = check(*layer(sign(RELEASE, PAYLOAD), None), root)
    assert not result.ok
    assert result.reason == (
        "signature verifies with key release, but no transparency-log entry "
        "(dev.sigstore.cosign/bundle annotation)"
    )


def test_entry_of_another_log_is_denied(root: TrustRoot) -> None:
    signature, annotation = logged(SigstoreInstance("elsewhere"))
    result = check(*layer(signature, annotation), root)
    assert not result.ok
    assert "log entry signed by an unknown log" in result.reason
    assert root.name in result.reason


def test_forged_signed_entry_timestamp_is_denied(
    instance: SigstoreInstance, root: TrustRoot
) -> None:
    signature, annotation = logged(instance)
    document = json.loads(annotation)
    document["Payload"]["integratedTime"] += 1
    result = check(*layer(signature, json.dumps(document)), root)
    assert not result.ok
    assert "signed entry timestamp does not verify" in result.reason


@pytest.mark.parametrize(
    ("options", "message"),
    [
        (
            {"logged_signature": sign(RELEASE, b"something else")},
            "log entry is for another signature",
        ),
        ({"pem": public_pem(OTHER).encode()}, "log entry is for another key"),
        ({"logged_digest": "b" * 64}, "log entry is for another artifact (sha256:" + "b" * 64),
    ],
    ids=["signature", "key", "artifact"],
)
def test_entry_for_something_else_is_denied(
    instance: SigstoreInstance, root: TrustRoot, options: dict[str, Any], message: str
) -> None:
    signature, annotation = logged(instance, **options)
    result = check(*layer(signature, annotation), root)
    assert not result.ok
    assert message in result.reason


@pytest.mark.parametrize(
    "annotation",
    ["not json", "{}", '{"Payload": {"body": "e30="}}', '{"Payload": {"body": "%%%"}}'],
)
def test_malformed_entry_is_denied(root: TrustRoot, annotation: str) -> None:
    result = check(*layer(sign(RELEASE, PAYLOAD), annotation), root)
    assert not result.ok
    assert "malformed transparency-log entry" in result.reason


def test_parse_names_missing_fields() -> None:
    with pytest.raises(ValueError, match="has no logIndex, logID, integratedTime"):
        parse_cosign_entry('{"Payload": {"body": "e30="}}')


def test_unlogged_layer_is_the_reason_over_an_unverified_one(root: TrustRoot) -> None:
    manifest, blobs = signature_manifest(
        [
            (PAYLOAD, base64.b64encode(sign(OTHER, PAYLOAD)).decode()),
            (PAYLOAD, base64.b64encode(sign(RELEASE, PAYLOAD)).decode()),
        ]
    )
    result = check(manifest, blobs, root)
    assert "no transparency-log entry" in result.reason


def test_one_logged_layer_among_unlogged_ones_passes(
    instance: SigstoreInstance, root: TrustRoot
) -> None:
    signature, annotation = logged(instance)
    manifest, blobs = signature_manifest(
        [
            (PAYLOAD, base64.b64encode(sign(RELEASE, PAYLOAD)).decode()),
            (PAYLOAD, base64.b64encode(signature).decode()),
        ]
    )
    manifest["layers"][1]["annotations"][BUNDLE_ANNOTATION] = annotation
    assert check(manifest, blobs, root).ok


# -- intoto 0.0.2 entries of keyless attestations ----------------------------------


def _intoto_case(instance: SigstoreInstance) -> tuple[bytes, Any, bytes, bytes, Any]:
    """(body, certificate, envelope, signature, payload) of one logged keyless attestation."""
    identity = Identity("dev@acme.test", "https://accounts.google.com")
    cert, _ = instance.ca.issue(identity)
    payload = b'{"_type":"https://in-toto.io/Statement/v1"}'
    signature = b"a signature"
    envelope = json.dumps(
        {
            "payloadType": "application/vnd.in-toto+json",
            "payload": base64.b64encode(payload).decode(),
            "signatures": [{"keyid": "", "sig": base64.b64encode(signature).decode()}],
        }
    ).encode()
    body = json.dumps(intoto_body(cert, envelope)).encode()
    return body, cert, envelope, signature, payload


def test_intoto_body_of_this_envelope_matches(instance: SigstoreInstance) -> None:
    body, cert, envelope, signature, payload = _intoto_case(instance)
    problem = intoto_body_problem(
        body, envelope=envelope, payload=payload, signature=signature, cert=cert
    )
    assert problem is None


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        ({"envelope": b"{}"}, "log entry is for another envelope (sha256:"),
        ({"payload": b"other"}, "log entry is for another payload"),
        ({"signature": b"other"}, "log entry is for another signature"),
        ({"cert": "other"}, "log entry names another signing certificate"),
        ({"body": b'{"kind": "dsse", "apiVersion": "0.0.1"}'}, "log entry is a 'dsse/0.0.1'"),
        (
            {"body": b'{"kind": "intoto", "apiVersion": "0.0.2"}'},
            "log entry's body is not a valid intoto 0.0.2 entry",
        ),
    ],
)
def test_intoto_body_of_something_else_is_refused(
    instance: SigstoreInstance, change: dict[str, Any], reason: str
) -> None:
    body, cert, envelope, signature, payload = _intoto_case(instance)
    values: dict[str, Any] = {
        "envelope": envelope,
        "payload": payload,
        "signature": signature,
        "cert": cert,
    }
    values.update(change)
    logged = values.pop("body", body)
    if values["cert"] == "other":
        values["cert"] = _intoto_case(instance)[1]
    problem = intoto_body_problem(logged, **values)
    assert problem is not None
    assert problem.startswith(reason)


def test_entry_logged_after_the_root_retired_the_log_key_is_denied(tmp_path: Path) -> None:
    """sigstore-python verifies the signed entry timestamp with a retired key; trustgate not."""
    instance = SigstoreInstance("retired-log")
    document = instance.trusted_root()
    retired = now() - dt.timedelta(minutes=5)
    document["tlogs"][0]["publicKey"]["validFor"]["end"] = f"{retired:%Y-%m-%dT%H:%M:%SZ}"
    (tmp_path / "root.json").write_text(json.dumps(document))
    root = load_trusted_root("root.json", tmp_path)
    signature, annotation = logged(instance)
    result = check(*layer(signature, annotation), root)
    assert not result.ok
    assert f"whose key the root retired at {retired:%Y-%m-%dT%H:%M:%SZ}" in result.reason
    assert result.reason.endswith("; log the signature again")
