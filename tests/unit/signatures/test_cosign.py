"""cosign's formats: tags, payloads, key-signed ``.sig`` manifests, DSSE."""

from __future__ import annotations

import base64
import json
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from tests.support.cosign import (
    COSIGN_KEY_LABEL,
    KEY_KINDS,
    SIGSTORE_KEY_LABEL,
    KeyKind,
    PrivateKey,
    dsse_envelope,
    encrypt_cosign_key,
    generate_key,
    in_toto_statement,
    load_encrypted_cosign_key,
    public_pem,
    sha256,
    sign,
    sign_b64,
    signature_manifest,
    simple_signing_payload,
)
from webhook.core.errors import CheckFailed, ImageReferenceError, UpstreamError
from webhook.signatures.cosign import (
    MAX_SIGNATURE_LAYERS,
    SIGNATURE_ANNOTATION,
    SIMPLESIGNING_MEDIA_TYPE,
    KeyVerification,
    SignatureInvalid,
    attestation_tag,
    pae,
    parse_payload,
    signature_tag,
    statement_subject_matches,
    verify_dsse,
    verify_with_key,
)
from webhook.trust.keys import PublicKey, load_public_key

DATA = Path(__file__).resolve().parents[2] / "data" / "cosign"
REPO = "quay.io/acme/app"
DIGEST = "sha256:" + "a" * 64
OTHER_DIGEST = "sha256:" + "b" * 64


def public(key: PrivateKey) -> PublicKey:
    return load_public_key(public_pem(key), source="test")


@dataclass
class Blobs:
    """A fetch_blob callback over a dict, recording what was fetched."""

    blobs: dict[str, bytes]
    fetched: list[tuple[str, int]] = field(default_factory=list)

    def __call__(self, digest: str, size: int) -> bytes:
        self.fetched.append((digest, size))
        return self.blobs[digest]


def check(
    manifest: dict[str, Any],
    blobs: dict[str, bytes],
    key: PublicKey,
    **options: Any,
) -> tuple[KeyVerification, Blobs]:
    fetch = Blobs(blobs)
    settings: dict[str, Any] = {"image_digest": DIGEST, "repository": REPO, "key_name": "release"}
    settings.update(options)
    return verify_with_key(manifest, fetch, key=key, **settings), fetch


def signed_layer(
    key: PrivateKey,
    *,
    repository: str = REPO,
    digest: str = DIGEST,
    optional: dict[str, Any] | None = None,
) -> tuple[bytes, str]:
    payload = simple_signing_payload(repository, digest, optional)
    return payload, sign_b64(key, payload)


# Tags ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("digest", "sig", "att"),
    [
        (DIGEST, f"sha256-{'a' * 64}.sig", f"sha256-{'a' * 64}.att"),
        ("sha512:" + "0" * 128, f"sha512-{'0' * 128}.sig", f"sha512-{'0' * 128}.att"),
    ],
)
def test_tags(digest: str, sig: str, att: str) -> None:
    assert signature_tag(digest) == sig
    assert attestation_tag(digest) == att


@pytest.mark.parametrize(
    "digest", ["", "sha256:abc", "sha256:" + "A" * 64, "md5:" + "a" * 32, "a" * 64]
)
def test_tags_refuse_partial_digests(digest: str) -> None:
    with pytest.raises(ImageReferenceError, match="is not a full lowercase sha256 or sha512"):
        signature_tag(digest)
    with pytest.raises(ImageReferenceError):
        attestation_tag(digest)


# Payloads -----------------------------------------------------------------


def test_parse_payload_reads_cosign_layout() -> None:
    payload = simple_signing_payload(REPO, DIGEST, {"env": "prod", "build": 7, "ok": True})
    signed = parse_payload(payload)
    assert signed.docker_manifest_digest == DIGEST
    assert signed.docker_reference == REPO
    assert signed.type == "cosign container image signature"
    assert dict(signed.optional) == {"env": "prod"}
    assert hash(signed) == hash(parse_payload(payload))


def test_payload_layout_is_cosigns() -> None:
    assert simple_signing_payload("r.example/a", DIGEST, {"b": "2", "a": "<&>"}) == (
        b'{"critical":{"identity":{"docker-reference":"r.example/a"},'
        b'"image":{"docker-manifest-digest":"' + DIGEST.encode() + b'"},'
        b'"type":"cosign container image signature"},'
        b'"optional":{"a":"\\u003c\\u0026\\u003e","b":"2"}}'
    )


def test_parse_payload_tolerates_missing_identity_and_null_optional() -> None:
    payload = json.dumps(
        {"critical": {"image": {"docker-manifest-digest": DIGEST}, "type": "t"}, "optional": None}
    ).encode()
    signed = parse_payload(payload)
    assert (signed.docker_reference, dict(signed.optional)) == ("", {})


def _critical(**changes: Any) -> bytes:
    critical: dict[str, Any] = {
        "identity": {"docker-reference": REPO},
        "image": {"docker-manifest-digest": DIGEST},
        "type": "cosign container image signature",
    }
    critical.update(changes)
    return json.dumps({"critical": critical}).encode()


@pytest.mark.parametrize(
    ("payload", "message"),
    [
        (b"\xff\xfe", "payload is not UTF-8"),
        (b"{", "payload is not valid JSON: Expecting property name enclosed in double quotes"),
        (b"", "payload is not valid JSON: Expecting value at offset 0"),
        (b"[]", "payload is a JSON array, not an object"),
        (b'"x"', "payload is a JSON string, not an object"),
        (b"{}", 'payload field "critical" must be an object, not missing'),
        (b'{"critical": 1}', 'payload field "critical" must be an object, not a number'),
        (_critical(image=None), 'payload field "critical.image" must be an object, not missing'),
        (
            _critical(image={}),
            'payload field "critical.image.docker-manifest-digest" must be a string, not missing',
        ),
        (
            _critical(image={"docker-manifest-digest": ["x"]}),
            'payload field "critical.image.docker-manifest-digest" must be a string, not a',
        ),
        (_critical(type=None), 'payload field "critical.type" must be a string, not missing'),
        (_critical(type=True), 'payload field "critical.type" must be a string, not a boolean'),
        (
            _critical(identity="x"),
            'payload field "critical.identity" must be an object, not a string',
        ),
        (
            _critical(identity={"docker-reference": 3}),
            'payload field "critical.identity.docker-reference" must be a string, not a number',
        ),
        (
            b'{"critical": {"image": {"docker-manifest-digest": "x"}, "type": "t"}, '
            b'"optional": []}',
            'payload field "optional" must be an object, not a array',
        ),
        (
            b'{"critical": {"type": "a", "type": "b", "image": {}}}',
            'payload has the key "type" twice',
        ),
        (b'{"critical": NaN}', "payload contains NaN, which is not JSON"),
    ],
)
def test_parse_payload_errors(payload: bytes, message: str) -> None:
    with pytest.raises(SignatureInvalid, match=f"^{re.escape(message)}") as caught:
        parse_payload(payload)
    assert isinstance(caught.value, CheckFailed)


# Key signatures: every kind -----------------------------------------------


@pytest.mark.parametrize("kind", KEY_KINDS)
def test_every_key_kind_verifies(kind: KeyKind) -> None:
    key = generate_key(kind)
    manifest, blobs = signature_manifest([signed_layer(key, optional={"env": "prod"})])
    result, fetch = check(
        manifest, blobs, public(key), required_annotations={"env": "prod"}, check_reference=True
    )
    assert result.ok, result.reason
    assert result.reason == "signed with key release"
    assert result.payload is not None
    assert result.payload.docker_manifest_digest == DIGEST
    assert fetch.fetched == [(manifest["layers"][0]["digest"], manifest["layers"][0]["size"])]


def test_manifest_is_cosigns_oci_layout() -> None:
    key = generate_key()
    manifest, blobs = signature_manifest([signed_layer(key)])
    assert manifest["mediaType"] == "application/vnd.oci.image.manifest.v1+json"
    config = json.loads(blobs[manifest["config"]["digest"]])
    layer = manifest["layers"][0]
    assert config["rootfs"] == {"type": "layers", "diff_ids": [layer["digest"]]}
    assert layer["mediaType"] == SIMPLESIGNING_MEDIA_TYPE
    assert layer["digest"] == sha256(blobs[layer["digest"]])
    assert set(layer["annotations"]) == {SIGNATURE_ANNOTATION}


# Key signatures: every failure reason ---------------------------------------

SIGNER = generate_key()
OTHER_SIGNER = generate_key()


def _tampered() -> tuple[dict[str, Any], dict[str, bytes]]:
    payload, signature = signed_layer(SIGNER)
    manifest, blobs = signature_manifest([(payload, signature)])
    layer = manifest["layers"][0]
    blobs[layer["digest"]] = payload.replace(b"acme", b"acmf")
    return manifest, blobs


def _with_layer(layer: dict[str, Any]) -> tuple[dict[str, Any], dict[str, bytes]]:
    manifest, blobs = signature_manifest([signed_layer(SIGNER)])
    manifest["layers"][0].update(layer)
    return manifest, blobs


def _raw(payload: bytes) -> tuple[dict[str, Any], dict[str, bytes]]:
    return signature_manifest([(payload, sign_b64(SIGNER, payload))])


FAILURES: list[
    tuple[str, Callable[[], tuple[dict[str, Any], dict[str, bytes]]], dict[str, Any], str]
] = [
    (
        "no layers list",
        lambda: ({"schemaVersion": 2}, {}),
        {},
        "signature manifest has no layers list",
    ),
    ("empty layers", lambda: signature_manifest([]), {}, "no signature layers"),
    (
        "tampered payload",
        _tampered,
        {},
        "signature does not verify with key release",
    ),
    (
        "wrong key",
        lambda: signature_manifest([signed_layer(OTHER_SIGNER)]),
        {},
        "signature does not verify with key release",
    ),
    (
        "other digest",
        lambda: signature_manifest([signed_layer(SIGNER, digest=OTHER_DIGEST)]),
        {},
        f"signed payload is for digest {OTHER_DIGEST} not {DIGEST}",
    ),
    (
        "missing annotation",
        lambda: signature_manifest([signed_layer(SIGNER, optional={"team": "a"})]),
        {"required_annotations": {"env": "prod"}},
        "missing annotation env=prod",
    ),
    (
        "no annotations at all",
        lambda: signature_manifest([signed_layer(SIGNER)]),
        {"required_annotations": {"env": "prod"}},
        "missing annotation env=prod",
    ),
    (
        "other annotation value",
        lambda: signature_manifest([signed_layer(SIGNER, optional={"env": "dev"})]),
        {"required_annotations": {"env": "prod"}},
        "annotation env=dev, not env=prod",
    ),
    (
        "wrong reference",
        lambda: signature_manifest([signed_layer(SIGNER, repository="quay.io/other/app")]),
        {"check_reference": True},
        f"signed for repository quay.io/other/app, not {REPO}",
    ),
    (
        "unparseable reference",
        lambda: signature_manifest([signed_layer(SIGNER, repository="Not A Reference")]),
        {"check_reference": True},
        f"signed for repository Not A Reference, not {REPO}",
    ),
    (
        "payload type",
        lambda: _raw(simple_signing_payload(REPO, DIGEST, kind="something else")),
        {},
        'payload type "something else" is not "cosign container image signature"',
    ),
    (
        "signed garbage",
        lambda: _raw(b"[1, 2]"),
        {},
        "signed payload is a JSON array, not an object",
    ),
    (
        "bad base64",
        lambda: _with_layer({"annotations": {SIGNATURE_ANNOTATION: "not base64!"}}),
        {},
        "signature annotation of layer sha256:",
    ),
    (
        "annotation not a string",
        lambda: _with_layer({"annotations": {SIGNATURE_ANNOTATION: 42}}),
        {},
        "signature annotation of layer sha256:",
    ),
    (
        "oversized layer",
        lambda: _with_layer({"size": 70000}),
        {},
        "is 70000 bytes; payloads over 65536 bytes are not fetched",
    ),
    (
        "oversized for the caller's limit",
        lambda: signature_manifest([signed_layer(SIGNER)]),
        {"max_payload_size": 100},
        "bytes; payloads over 100 bytes are not fetched",
    ),
    (
        "bad digest",
        lambda: _with_layer({"digest": "sha256:xyz"}),
        {},
        "signature layer has no valid digest",
    ),
    ("bad size", lambda: _with_layer({"size": "12"}), {}, "has no valid size"),
    ("boolean size", lambda: _with_layer({"size": True}), {}, "has no valid size"),
    ("negative size", lambda: _with_layer({"size": -1}), {}, "has no valid size"),
]


@pytest.mark.parametrize(
    ("name", "build", "options", "reason"), FAILURES, ids=[f[0] for f in FAILURES]
)
def test_failure_reasons(
    name: str,
    build: Callable[[], tuple[dict[str, Any], dict[str, bytes]]],
    options: dict[str, Any],
    reason: str,
) -> None:
    manifest, blobs = build()
    result, _ = check(manifest, blobs, public(SIGNER), **options)
    assert not result.ok
    assert result.payload is None
    assert reason in result.reason, result.reason


def test_oversized_layers_are_never_fetched() -> None:
    manifest, blobs = _with_layer({"size": 65537})
    _, fetch = check(manifest, blobs, public(SIGNER))
    assert fetch.fetched == []


def test_bad_base64_layer_is_not_fetched_and_next_layer_passes() -> None:
    manifest, blobs = signature_manifest([signed_layer(SIGNER), signed_layer(SIGNER)])
    manifest["layers"][0]["annotations"][SIGNATURE_ANNOTATION] = "%%%"
    result, fetch = check(manifest, blobs, public(SIGNER))
    assert result.ok
    assert len(fetch.fetched) == 1


def test_oversized_blob_from_fetch_is_refused() -> None:
    manifest, blobs = signature_manifest([signed_layer(SIGNER)])
    layer = manifest["layers"][0]
    blobs[layer["digest"]] = b" " * (layer["size"] + 1)
    result, _ = check(manifest, blobs, public(SIGNER), max_payload_size=layer["size"])
    assert result.reason == f"signature layer {layer['digest']} is over {layer['size']} bytes"


@pytest.mark.parametrize("order", ["unverified first", "verified first"])
def test_prefers_reason_of_verified_layer(order: str) -> None:
    layers = [signed_layer(OTHER_SIGNER), signed_layer(SIGNER, digest=OTHER_DIGEST)]
    if order == "verified first":
        layers.reverse()
    manifest, blobs = signature_manifest(layers)
    result, _ = check(manifest, blobs, public(SIGNER))
    assert result.reason == f"signed payload is for digest {OTHER_DIGEST} not {DIGEST}"


def test_first_passing_layer_wins_among_failures() -> None:
    manifest, blobs = signature_manifest(
        [
            signed_layer(OTHER_SIGNER),
            signed_layer(SIGNER, digest=OTHER_DIGEST),
            signed_layer(SIGNER, optional={"n": "1"}),
            signed_layer(SIGNER, optional={"n": "2"}),
        ]
    )
    result, fetch = check(manifest, blobs, public(SIGNER))
    assert result.ok
    assert result.payload is not None
    assert dict(result.payload.optional) == {"n": "1"}
    assert len(fetch.fetched) == 3


def test_non_simplesigning_layers_are_ignored() -> None:
    good = signed_layer(SIGNER)
    manifest, blobs = signature_manifest([good])
    manifest["layers"][0]["mediaType"] = "application/vnd.oci.image.layer.v1.tar"
    unannotated = dict(manifest["layers"][0], mediaType=SIMPLESIGNING_MEDIA_TYPE, annotations={})
    manifest["layers"].append(unannotated)
    result, fetch = check(manifest, blobs, public(SIGNER))
    assert (result.ok, result.reason, fetch.fetched) == (False, "no signature layers", [])


@pytest.mark.parametrize(
    ("bad", "ok"),
    [
        (MAX_SIGNATURE_LAYERS - 1, True),
        (MAX_SIGNATURE_LAYERS, False),
        (MAX_SIGNATURE_LAYERS + 5, False),
    ],
)
def test_layer_cap(bad: int, ok: bool) -> None:
    layers = [signed_layer(SIGNER, optional={"n": str(i)}, digest=OTHER_DIGEST) for i in range(bad)]
    manifest, blobs = signature_manifest([*layers, signed_layer(SIGNER)])
    result, fetch = check(manifest, blobs, public(SIGNER))
    assert result.ok is ok
    assert len(fetch.fetched) == min(bad + 1, MAX_SIGNATURE_LAYERS)
    if not ok:
        assert result.reason == (
            f"signed payload is for digest {OTHER_DIGEST} not {DIGEST} (looked at the first "
            f"{MAX_SIGNATURE_LAYERS} of {bad + 1} signature layers)"
        )


@pytest.mark.parametrize(
    ("signed", "expected"),
    [
        ("quay.io/acme/app", "quay.io/acme/app"),
        ("quay.io/acme/app:1.2", "quay.io/acme/app"),
        (f"quay.io/acme/app@{DIGEST}", "quay.io/acme/app"),
        ("index.docker.io/library/nginx", "docker.io/library/nginx"),
        ("docker.io/nginx:1.25", "docker.io/library/nginx"),
        ("nginx", "index.docker.io/library/nginx"),
        ("QUAY.IO/acme/app", "quay.io/acme/app"),
    ],
)
def test_reference_normalisation(signed: str, expected: str) -> None:
    manifest, blobs = signature_manifest([signed_layer(SIGNER, repository=signed)])
    result, _ = check(manifest, blobs, public(SIGNER), repository=expected, check_reference=True)
    assert result.ok, result.reason


def test_reference_not_checked_unless_asked() -> None:
    manifest, blobs = signature_manifest([signed_layer(SIGNER, repository="quay.io/other/app")])
    assert check(manifest, blobs, public(SIGNER))[0].ok


def test_fetch_errors_propagate() -> None:
    manifest, _ = signature_manifest([signed_layer(SIGNER)])

    def failing(digest: str, size: int) -> bytes:
        raise UpstreamError(f"blob {digest} unavailable")

    with pytest.raises(UpstreamError, match="unavailable"):
        verify_with_key(
            manifest,
            failing,
            image_digest=DIGEST,
            repository=REPO,
            key=public(SIGNER),
            key_name="k",
        )


# Real cosign data ------------------------------------------------------------

REAL_REPO = "registry-testing.svc.lan/busybox"
REAL_DIGEST = "sha256:f3cfc9d0dbf931d3db4685ec659b7ac68e2a578219da4aae65427886e649b06b"


def _real() -> tuple[bytes, str, PublicKey]:
    payload = (DATA / "busybox.payload.json").read_bytes()
    signature = (DATA / "busybox.sig.b64").read_text().strip()
    key = load_public_key((DATA / "busybox.pub").read_bytes(), source="busybox.pub")
    return payload, signature, key


def test_real_cosign_signature_verifies() -> None:
    payload, signature, key = _real()
    manifest, blobs = signature_manifest([(payload, signature)])
    result, _ = check(
        manifest, blobs, key, image_digest=REAL_DIGEST, repository=REAL_REPO, check_reference=True
    )
    assert result.ok, result.reason
    assert result.payload is not None
    assert result.payload.docker_reference == REAL_REPO


@pytest.mark.parametrize("offset", [0, 40, 100, -2])
def test_real_cosign_signature_rejects_one_byte_change(offset: int) -> None:
    payload, signature, key = _real()
    changed = bytearray(payload)
    changed[offset] ^= 0x01
    manifest, blobs = signature_manifest([(bytes(changed), signature)])
    result, _ = check(manifest, blobs, key, image_digest=REAL_DIGEST, repository=REAL_REPO)
    assert result.reason == "signature does not verify with key release"


def test_real_cosign_signature_rejects_changed_signature() -> None:
    payload, signature, key = _real()
    raw = bytearray(base64.b64decode(signature))
    raw[-1] ^= 0x01
    manifest, blobs = signature_manifest([(payload, base64.b64encode(raw).decode())])
    result, _ = check(manifest, blobs, key, image_digest=REAL_DIGEST, repository=REAL_REPO)
    assert result.reason == "signature does not verify with key release"


REAL_KEYS = [
    ("sigstore-rs-cosign-generated-empty-password.key", b""),
    ("cosign-keys-test-sigstore-hello.key", b"hello"),
    ("cosign-keys-test-cosign-hello.key", b"hello"),
]


@pytest.mark.parametrize(("name", "password"), REAL_KEYS)
def test_real_encrypted_keys_decrypt_and_sign(name: str, password: bytes) -> None:
    key = load_encrypted_cosign_key((DATA / name).read_bytes(), password)
    manifest, blobs = signature_manifest([signed_layer(key)])
    assert check(manifest, blobs, public(key))[0].ok


@pytest.mark.parametrize(("name", "password"), REAL_KEYS)
def test_real_encrypted_keys_refuse_wrong_password(name: str, password: bytes) -> None:
    with pytest.raises(ValueError, match="wrong password"):
        load_encrypted_cosign_key((DATA / name).read_bytes(), password + b"x")


# Encrypted key files -----------------------------------------------------------


@pytest.mark.parametrize("label", [SIGSTORE_KEY_LABEL, COSIGN_KEY_LABEL])
@pytest.mark.parametrize("kind", KEY_KINDS)
def test_encrypted_key_round_trip(kind: KeyKind, label: str) -> None:
    key = generate_key(kind)
    pem = encrypt_cosign_key(key, b"s3cret", n=1024, label=label)
    assert pem.startswith(f"-----BEGIN {label}-----\n".encode())
    body = b"".join(pem.splitlines()[1:-1])
    document = json.loads(base64.b64decode(body))
    assert document["kdf"]["params"] == {"N": 1024, "r": 8, "p": 1}
    assert document["cipher"]["name"] == "nacl/secretbox"
    loaded = load_encrypted_cosign_key(pem, b"s3cret")
    assert public_pem(loaded) == public_pem(key)
    with pytest.raises(ValueError, match="wrong password"):
        load_encrypted_cosign_key(pem, b"s3cre")


def test_encrypted_key_refuses_other_pem() -> None:
    with pytest.raises(ValueError, match="not an encrypted cosign private key"):
        load_encrypted_cosign_key(public_pem(generate_key()).encode(), b"")


# DSSE --------------------------------------------------------------------------


def test_pae_matches_the_spec_example() -> None:
    assert (
        pae("http://example.com/HelloWorld", b"hello world")
        == b"DSSEv1 29 http://example.com/HelloWorld 11 hello world"
    )


def test_pae_counts_bytes_not_characters() -> None:
    assert pae("t\u00e9", b"\x00\xff") == b"DSSEv1 3 t\xc3\xa9 2 \x00\xff"


STATEMENT = in_toto_statement(DIGEST, REPO, "https://example.com/grade/v1", {"grade": "A"})


@pytest.mark.parametrize("kind", KEY_KINDS)
def test_dsse_round_trip(kind: KeyKind) -> None:
    key = generate_key(kind)
    envelope = dsse_envelope(STATEMENT, key)
    payload = verify_dsse(envelope, public(key))
    assert payload is not None
    assert json.loads(payload) == STATEMENT


def _envelope_cases() -> list[tuple[str, dict[str, Any], bool]]:
    good = dsse_envelope(STATEMENT, SIGNER)
    payload = base64.b64decode(good["payload"])
    urlsafe = dict(good, payload=base64.urlsafe_b64encode(payload).decode().rstrip("="))
    other_sig = dsse_envelope(STATEMENT, OTHER_SIGNER)["signatures"][0]
    tampered_payload = base64.b64encode(payload.replace(b'"A"', b'"F"')).decode()
    return [
        ("good", good, True),
        ("url-safe unpadded payload", urlsafe, True),
        (
            "second signature verifies",
            dict(good, signatures=[other_sig, *good["signatures"]]),
            True,
        ),
        ("tampered payload", dict(good, payload=tampered_payload), False),
        ("changed payload type", dict(good, payloadType="application/json"), False),
        ("other signer only", dict(good, signatures=[other_sig]), False),
        ("no signatures", dict(good, signatures=[]), False),
        ("signatures not a list", dict(good, signatures={}), False),
        ("signature entry not an object", dict(good, signatures=["x"]), False),
        ("sig not base64", dict(good, signatures=[{"sig": "***"}]), False),
        ("payload missing", {k: v for k, v in good.items() if k != "payload"}, False),
        ("payload not base64", dict(good, payload="***"), False),
        ("payload type missing", dict(good, payloadType=None), False),
    ]


@pytest.mark.parametrize(
    ("name", "envelope", "ok"), _envelope_cases(), ids=[c[0] for c in _envelope_cases()]
)
def test_verify_dsse(name: str, envelope: dict[str, Any], ok: bool) -> None:
    assert (verify_dsse(envelope, public(SIGNER)) is not None) is ok


def test_dsse_signature_is_over_pae_not_payload() -> None:
    payload = b'{"subject": []}'
    envelope = {
        "payloadType": "application/vnd.in-toto+json",
        "payload": base64.b64encode(payload).decode(),
        "signatures": [{"sig": base64.b64encode(sign(SIGNER, payload)).decode()}],
    }
    assert verify_dsse(envelope, public(SIGNER)) is None


@pytest.mark.parametrize(
    ("statement", "digest", "matches"),
    [
        (STATEMENT, DIGEST, True),
        (STATEMENT, OTHER_DIGEST, False),
        (STATEMENT, "sha512:" + "a" * 64, False),
        (STATEMENT, "a" * 64, False),
        (
            {"subject": [{"digest": {"sha256": "c" * 64}}, {"digest": {"sha256": "a" * 64}}]},
            DIGEST,
            True,
        ),
        ({"subject": [{"digest": {"sha256": "A" * 64}}]}, DIGEST, False),
        ({"subject": "x"}, DIGEST, False),
        ({"subject": ["x", {"digest": "y"}]}, DIGEST, False),
        ({}, DIGEST, False),
    ],
)
def test_statement_subject_matches(statement: dict[str, Any], digest: str, matches: bool) -> None:
    assert statement_subject_matches(statement, digest) is matches


def test_reasons_quote_odd_signed_text() -> None:
    manifest, blobs = signature_manifest(
        [signed_layer(SIGNER, optional={"env": "dev\nDENIED"}, repository="x" * 300)]
    )
    result, _ = check(manifest, blobs, public(SIGNER), required_annotations={"env": "prod"})
    assert result.reason == 'annotation env="dev\\nDENIED", not env=prod'
    result, _ = check(manifest, blobs, public(SIGNER), check_reference=True)
    assert result.reason == f'signed for repository "{"x" * 128}...", not {REPO}'


def test_a_signed_payload_with_a_key_twice_is_an_invalid_signature() -> None:
    # Two "critical" objects: a reader could see one digest and trustgate another.
    payload = b'{"critical": {"type": "a"}, "critical": {"type": "b"}, "optional": null}'
    with pytest.raises(SignatureInvalid, match='payload has the key "critical" twice'):
        parse_payload(payload)
