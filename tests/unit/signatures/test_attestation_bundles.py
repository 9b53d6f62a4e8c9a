"""Key-signed attestation bundles (``cosign attest --key``, cosign 3): verified alone, and read
by the attestation check from a real registry beside cosign's ``.att`` layers.

Such a bundle is a v0.3 Sigstore bundle holding a public-key hint and a DSSE envelope of an
in-toto statement of the attestation's predicate type about the image digest. Debian's
docker-registry has no referrers API, so the check finds these bundles through the
``sha256-<hex>`` tag fallback (the referrers API itself is exercised end to end in
tests/integration/test_attestation_bundles_e2e.py).
"""

from __future__ import annotations

import base64
import hashlib
import json
from pathlib import Path
from typing import Any

import pytest

from tests.support.cosign import (
    BUNDLE_V03,
    PrivateKey,
    dsse_envelope,
    generate_key,
    in_toto_statement,
    key_bundle,
    public_pem,
    sign_statement,
)
from tests.support.referrers import push_referrer
from tests.support.registry import Registry, default_layer, push_image
from tests.unit.signatures.test_attestations import authority, policy, push_attestations
from webhook.cache.local import Caches
from webhook.checks import CheckContext
from webhook.core.deadline import Deadline
from webhook.core.errors import CheckFailed
from webhook.core.reference import ImageRef, parse_reference
from webhook.policy.cel import compile_condition
from webhook.policy.model import Attestation
from webhook.registry.client import RegistryClient, RegistrySettings
from webhook.signatures.attestations import AttestationCheck
from webhook.signatures.keybundle import (
    MALFORMED,
    UNVERIFIED,
    VERIFIED,
    parse_key_bundle,
    verify_key_attestations,
    verify_key_bundle,
)
from webhook.signatures.material import MAX_BUNDLE_SIZE
from webhook.trust.keys import load_public_key

SLSA = "https://slsa.dev/provenance/v1"
SIGN = "https://sigstore.dev/cosign/sign/v1"
DIGEST = "sha256:" + "ab" * 32
NAME = "registry.test/acme/api"
RELEASE = generate_key("ecdsa-p256")
OPS = generate_key("ecdsa-p256")
OTHER = generate_key("ecdsa-p256")
PUBLIC = load_public_key(public_pem(RELEASE), source="release")
CONFORMANCE = Path(__file__).parents[2] / "data" / "conformance" / "managed-key-happy-path"


def attested(
    key: PrivateKey = RELEASE,
    *,
    digest: str = DIGEST,
    predicate_type: str = SLSA,
    predicate: Any = None,
) -> dict[str, Any]:
    """The bundle ``cosign attest --key`` 3 writes: a DSSE envelope of the statement."""
    body = {"builder": {"id": "ci"}} if predicate is None else predicate
    statement = in_toto_statement(digest, NAME, predicate_type, body)
    return key_bundle(key, envelope=dsse_envelope(statement, key))


def verify(*documents: dict[str, Any] | bytes) -> tuple[tuple[str, ...], Any]:
    raw = [d if isinstance(d, bytes) else json.dumps(d).encode() for d in documents]
    return verify_key_attestations(
        raw, PUBLIC, "release", image_digest=DIGEST, repository=NAME, predicate_type=SLSA
    )


# -- verify_key_attestations: sans-I/O ------------------------------------------------------


def test_a_key_signed_attestation_bundle_yields_its_statement() -> None:
    statements, result = verify(attested())
    assert result.ok
    assert [json.loads(text) for text in statements] == [
        in_toto_statement(DIGEST, NAME, SLSA, {"builder": {"id": "ci"}})
    ]


def _tampered() -> dict[str, Any]:
    document = attested()
    envelope = document["dsseEnvelope"]
    statement = json.loads(base64.b64decode(envelope["payload"]))
    statement["predicate"]["builder"]["id"] = "laptop"
    envelope["payload"] = base64.b64encode(json.dumps(statement).encode()).decode()
    return document


def _hinted(signer: PrivateKey, hinted: PrivateKey) -> dict[str, Any]:
    """A bundle signed by ``signer`` whose key hint names ``hinted``."""
    document = attested(signer)
    hint = key_bundle(hinted, digest=DIGEST)["verificationMaterial"]["publicKey"]
    document["verificationMaterial"]["publicKey"] = hint
    return document


@pytest.mark.parametrize(
    ("document", "reason", "rank"),
    [
        (
            attested(digest="sha256:" + "cd" * 32),
            f"signed statement is about another subject, not {DIGEST}",
            VERIFIED,
        ),
        (attested(OTHER), "bundle envelope does not verify with key release", UNVERIFIED),
        (
            attested(predicate_type="https://cosign.sigstore.dev/attestation/vuln/v1"),
            "signed statement has predicate type "
            "'https://cosign.sigstore.dev/attestation/vuln/v1', not " + SLSA,
            VERIFIED,
        ),
        (
            # What `cosign sign --key` 3 writes: a signature, not an attestation.
            key_bundle(RELEASE, envelope=dsse_envelope(sign_statement(DIGEST, NAME), RELEASE)),
            f"signed statement has predicate type '{SIGN}', not {SLSA}",
            VERIFIED,
        ),
        (_tampered(), "bundle envelope does not verify with key release", UNVERIFIED),
        (
            key_bundle(RELEASE, digest=DIGEST),
            "a message-signature bundle signs the bare digest; it is no attestation of "
            f"predicate type {SLSA}",
            MALFORMED,
        ),
        (
            attested(predicate=["not", "an", "object"]),
            "signed statement's predicate is not an object",
            VERIFIED,
        ),
        # The hint names the policy's key, the signature is another key's: the hint is ignored.
        (_hinted(OTHER, RELEASE), "bundle envelope does not verify with key release", UNVERIFIED),
    ],
    ids=[
        "another-digest",
        "another-key",
        "wrong-predicate-type",
        "signature-bundle",
        "tampered",
        "message-signature",
        "predicate-not-object",
        "hint-of-the-key",
    ],
)
def test_bundles_that_are_not_this_keys_attestation_of_this_image_fail(
    document: dict[str, Any], reason: str, rank: int
) -> None:
    statements, result = verify(document)
    assert statements == ()
    assert not result.ok
    assert result.reason == reason
    assert result.rank == rank


def test_a_hint_naming_another_key_does_not_stop_the_policys_key() -> None:
    statements, result = verify(_hinted(RELEASE, OTHER))
    assert result.ok and len(statements) == 1


def test_a_real_cosign_3_message_signature_bundle_is_no_attestation() -> None:
    """sigstore-conformance's managed-key bundle (a message signature, with its log entry and
    timestamp) verifies as a signature of its artifact, and never as an attestation."""
    raw = (CONFORMANCE / "bundle.sigstore.json").read_bytes()
    key = load_public_key((CONFORMANCE / "key.pub").read_bytes(), source="conformance")
    artifact = "sha256:" + hashlib.sha256((CONFORMANCE.parent / "a.txt").read_bytes()).hexdigest()
    parsed = parse_key_bundle(raw)
    assert not isinstance(parsed, str)
    signature = verify_key_bundle(
        parsed, key, "conformance", image_digest=artifact, repository=NAME
    )
    assert signature.ok and signature.statement == ""
    statements, result = verify_key_attestations(
        [raw], key, "conformance", image_digest=artifact, repository=NAME, predicate_type=SIGN
    )
    assert statements == ()
    assert result.reason.startswith("a message-signature bundle signs the bare digest")


def test_every_attesting_bundle_counts_and_the_most_telling_failure_is_kept() -> None:
    first, second = attested(predicate={"n": 1}), attested(predicate={"n": 2})
    statements, _ = verify(b"{not json", first, attested(OTHER), second)
    assert [json.loads(text)["predicate"] for text in statements] == [{"n": 1}, {"n": 2}]
    _, result = verify(b"{not json", attested(OTHER), attested(digest="sha256:" + "cd" * 32))
    assert result.reason == (
        f"signed statement is about another subject, not {DIGEST} (and 2 other bundles failed)"
    )
    _, result = verify()
    assert result.reason == "no Sigstore bundle"


def test_signature_results_carry_the_statement_they_verified() -> None:
    parsed = parse_key_bundle(json.dumps(attested(predicate_type=SIGN, predicate={})).encode())
    assert not isinstance(parsed, str)
    result = verify_key_bundle(parsed, PUBLIC, "release", image_digest=DIGEST, repository=NAME)
    assert result.ok
    assert json.loads(result.statement)["predicateType"] == SIGN


# -- the attestation check, against a real registry (tag fallback) ----------------------------


def _image(registry: Registry, repository: str) -> tuple[ImageRef, str]:
    digest = push_image(
        registry, repository, tag="v1", layers=[default_layer(content=repository.encode())]
    )
    return parse_reference(f"{registry.host}/{repository}:v1"), digest


def _attach(registry: Registry, repository: str, digest: str, document: dict[str, Any]) -> None:
    raw = json.dumps(document).encode()
    push_referrer(registry, repository, digest, raw, artifact_type=BUNDLE_V03)


def _statement(key: PrivateKey, digest: str, builder: str) -> dict[str, Any]:
    return dsse_envelope(in_toto_statement(digest, NAME, SLSA, {"builder": {"id": builder}}), key)


def _check(registry: Registry) -> AttestationCheck:
    client = RegistryClient({registry.host: RegistrySettings(insecure=True)}, timeout=5.0)
    return AttestationCheck(client, Caches())


def _run(check: AttestationCheck, ref: ImageRef, digest: str, *requirements: Attestation) -> str:
    note = check.run(ref, policy(*requirements), CheckContext(Deadline(10), lambda: digest))
    assert note is not None
    return note


def test_a_bundle_alone_attests_and_its_predicate_is_kept(registry: Registry) -> None:
    ref, digest = _image(registry, "attb/alone")
    _attach(
        registry,
        "attb/alone",
        digest,
        key_bundle(RELEASE, envelope=_statement(RELEASE, digest, "ci")),
    )
    check = _check(registry)
    requirement = Attestation(SLSA, (authority("release", RELEASE),))
    assert _run(check, ref, digest, requirement) == f"{SLSA} attested by release"
    predicates = check.verified_predicates(ref, digest, SLSA, policy(requirement))
    assert predicates == [{"builder": {"id": "ci"}}]


def test_bundles_are_read_when_no_att_layer_meets_the_conditions(registry: Registry) -> None:
    ref, digest = _image(registry, "attb/conditions")
    push_attestations(registry, "attb/conditions", digest, [_statement(RELEASE, digest, "laptop")])
    _attach(
        registry,
        "attb/conditions",
        digest,
        key_bundle(RELEASE, envelope=_statement(RELEASE, digest, "ci")),
    )
    check = _check(registry)
    held = Attestation(
        SLSA,
        (authority("release", RELEASE),),
        conditions=(compile_condition("predicate.builder.id == 'ci'"),),
    )
    _run(check, ref, digest, held)
    # Only the bundle's statement met the conditions: it alone is kept for later checks.
    assert check.verified_predicates(ref, digest, SLSA, policy(held)) == [{"builder": {"id": "ci"}}]
    failing = Attestation(
        SLSA,
        (authority("release", RELEASE),),
        conditions=(compile_condition("predicate.builder.id == 'release-pipeline'"),),
    )
    with pytest.raises(CheckFailed) as raised:
        _run(check, ref, digest, failing)
    assert raised.value.message == (
        f"attestation check failed for predicate type {SLSA}: 0 of the 1 required authorities "
        "verified (release: 0 of 1 conditions held: condition "
        "\"predicate.builder.id == 'release-pipeline'\" does not hold "
        '(saw predicate.builder.id = "ci"))'
    )


def test_one_key_counts_once_across_att_layers_and_bundles(registry: Registry) -> None:
    ref, digest = _image(registry, "attb/threshold")
    push_attestations(registry, "attb/threshold", digest, [_statement(RELEASE, digest, "ci")])
    _attach(
        registry,
        "attb/threshold",
        digest,
        key_bundle(RELEASE, envelope=_statement(RELEASE, digest, "ci")),
    )
    twice = Attestation(
        SLSA, (authority("release", RELEASE), authority("release-copy", RELEASE)), threshold=2
    )
    with pytest.raises(CheckFailed) as raised:
        _run(_check(registry), ref, digest, twice)
    assert "1 of the 2 required authorities verified (release-copy: verified, but by key " in (
        raised.value.message
    )
    assert "already counted for release)" in raised.value.message
    _attach(
        registry, "attb/threshold", digest, key_bundle(OPS, envelope=_statement(OPS, digest, "ci"))
    )
    two_keys = Attestation(
        SLSA, (authority("release", RELEASE), authority("ops", OPS)), threshold=2
    )
    assert _run(_check(registry), ref, digest, two_keys) == f"{SLSA} attested by release, ops"


def test_the_denial_names_the_more_telling_form(registry: Registry) -> None:
    """A bundle that verified with the key but attests something else says more than an
    ``.att`` layer of another key; an ``.att`` layer of the wrong type says more than a
    bundle of another key."""
    requirement = Attestation(SLSA, (authority("release", RELEASE),))
    ref, digest = _image(registry, "attb/telling-bundle")
    push_attestations(registry, "attb/telling-bundle", digest, [_statement(OTHER, digest, "ci")])
    _attach(registry, "attb/telling-bundle", digest, attested(digest="sha256:" + "cd" * 32))
    with pytest.raises(
        CheckFailed, match=f"release: signed statement is about another subject, not {digest}"
    ):
        _run(_check(registry), ref, digest, requirement)
    ref, digest = _image(registry, "attb/telling-layer")
    vuln = "https://cosign.sigstore.dev/attestation/vuln/v1"
    statement = in_toto_statement(digest, NAME, vuln, {})
    push_attestations(registry, "attb/telling-layer", digest, [dsse_envelope(statement, RELEASE)])
    _attach(registry, "attb/telling-layer", digest, attested(OTHER, digest=digest))
    with pytest.raises(
        CheckFailed, match=f"release: signed attestations have predicate type {vuln}, not"
    ):
        _run(_check(registry), ref, digest, requirement)


def test_an_oversized_bundle_is_refused_unread_with_its_size(registry: Registry) -> None:
    ref, digest = _image(registry, "attb/oversized")
    document = attested(digest=digest, predicate={"padding": "x" * (MAX_BUNDLE_SIZE + 1)})
    raw = json.dumps(document).encode()
    referrer = push_referrer(registry, "attb/oversized", digest, raw, artifact_type=BUNDLE_V03)
    with pytest.raises(CheckFailed) as raised:
        _run(_check(registry), ref, digest, Attestation(SLSA, (authority("release", RELEASE),)))
    assert raised.value.message.endswith(
        f"(release: bundle of referrer {referrer} is {len(raw)} bytes; over {MAX_BUNDLE_SIZE})"
    )
