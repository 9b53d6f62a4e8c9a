"""Attestations: DSSE envelopes in cosign's ``.att`` manifest, and the check against a registry."""

from __future__ import annotations

import base64
import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tests.support.cosign import (
    OCI_CONFIG,
    PrivateKey,
    dsse_envelope,
    generate_key,
    go_json,
    in_toto_statement,
    public_pem,
    sha256,
    sign_b64,
)
from tests.support.registry import OCI_MANIFEST, Registry, default_layer, push_blob, push_image
from tests.support.registry import push_manifest as push_manifest_body
from tests.support.sigstore_instance import Identity, SigstoreInstance
from webhook.cache.local import Caches
from webhook.checks import CheckContext, Unavailable, checks_for
from webhook.core.deadline import Deadline
from webhook.core.errors import CheckFailed, UpstreamError
from webhook.core.reference import ImageRef, parse_reference
from webhook.policy.cel import Condition, compile_condition
from webhook.policy.globs import Glob
from webhook.policy.model import Attestation, Authority, Keyless, KeyRef, Match, Policy
from webhook.registry.client import RegistryClient, RegistrySettings
from webhook.services import build_checks
from webhook.signatures.attestations import (
    MAX_ATTESTATION_LAYERS,
    MAX_ENVELOPE_SIZE,
    AttestationCheck,
    attestation_envelopes,
    verify_attestation,
)
from webhook.signatures.check import load_key
from webhook.signatures.conditions import CostExceeded, Evaluator
from webhook.signatures.cosign import DSSE_MEDIA_TYPE, attestation_tag, pae
from webhook.trust.trustroot import load_trusted_root

SLSA = "https://slsa.dev/provenance/v1"
VULN = "https://cosign.sigstore.dev/attestation/vuln/v1"
RELEASE = generate_key("ecdsa-p256")
SCANNER = generate_key("ed25519")
DIGEST = "sha256:" + "a" * 64
OTHER = "sha256:" + "b" * 64
NAME = "quay.io/acme/app"
ISSUER = "https://token.actions.githubusercontent.com"


def envelope(
    key: PrivateKey = RELEASE,
    *,
    digest: str = DIGEST,
    predicate_type: str = SLSA,
    predicate: Any = None,
    statement_type: str | None = None,
) -> dict[str, Any]:
    statement = in_toto_statement(digest, NAME, predicate_type, predicate or {"builder": "ci"})
    if statement_type is not None:
        statement["_type"] = statement_type
    return dsse_envelope(statement, key)


def verify(envelopes: list[Any], key: PrivateKey = RELEASE) -> tuple[tuple[str, ...], str]:
    return verify_attestation(
        envelopes,
        image_digest=DIGEST,
        predicate_type=SLSA,
        key=load_key(public_pem(key), "test"),
        key_name="release",
    )


# -- verify_attestation ---------------------------------------------------------


def test_a_signed_statement_about_the_image_verifies() -> None:
    predicates, reason = verify([envelope(predicate={"builder": {"id": "ci"}})])
    assert reason == ""
    assert [json.loads(p)["predicate"] for p in predicates] == [{"builder": {"id": "ci"}}]


def test_statement_v01_is_accepted() -> None:
    old = envelope(statement_type="https://in-toto.io/Statement/v0.1")
    assert verify([old])[1] == ""


def _raw_envelope(payload: bytes, payload_type: str = "application/vnd.in-toto+json") -> Any:
    return {
        "payloadType": payload_type,
        "payload": base64.b64encode(payload).decode(),
        "signatures": [{"sig": sign_b64(RELEASE, pae(payload_type, payload))}],
    }


@pytest.mark.parametrize(
    ("envelopes", "reason"),
    [
        ([], "no attestation found"),
        ([envelope(SCANNER)], "attestation signature does not verify with key release"),
        ([envelope(digest=OTHER)], f"signed attestation is about another subject, not {DIGEST}"),
        (
            [envelope(predicate_type=VULN), envelope(predicate_type="https://spdx.dev/Document")],
            f"signed attestations have predicate type {VULN}, https://spdx.dev/Document, "
            f"not {SLSA}",
        ),
        (
            [envelope(statement_type="https://example.com/Statement")],
            "signed payload is not an in-toto Statement",
        ),
        (
            [_raw_envelope(go_json(in_toto_statement(DIGEST, NAME, SLSA, {})), "text/plain")],
            "signed payload type text/plain is not application/vnd.in-toto+json",
        ),
        ([_raw_envelope(b"not json")], "signed payload is not JSON"),
        (
            [_raw_envelope(go_json(in_toto_statement(DIGEST, NAME, SLSA, [1])))],
            "signed statement's predicate is not an object",
        ),
        (["attestation layer sha256:x is not a JSON DSSE envelope"], "is not a JSON DSSE"),
        # The most telling reason wins, whatever the order.
        (
            [envelope(digest=OTHER), envelope(SCANNER), envelope(predicate_type=VULN)],
            "about another subject",
        ),
        ([envelope(SCANNER), envelope(predicate_type=VULN)], "have predicate type"),
    ],
)
def test_failure_reasons(envelopes: list[Any], reason: str) -> None:
    predicates, got = verify(envelopes)
    assert predicates == ()
    assert reason in got


def test_one_good_envelope_among_bad_ones_passes() -> None:
    good = envelope(predicate={"n": 1})
    predicates, reason = verify([envelope(SCANNER), envelope(digest=OTHER), good])
    assert (len(predicates), reason) == (1, "")


def test_payload_type_is_covered_by_the_signature() -> None:
    forged = envelope()
    forged["payloadType"] = "application/json"
    assert "does not verify" in verify([forged])[1]


# -- attestation_envelopes -------------------------------------------------------


def _layers(blobs: list[bytes], **overrides: Any) -> dict[str, Any]:
    layers = [
        {"mediaType": DSSE_MEDIA_TYPE, "digest": sha256(b), "size": len(b), **overrides}
        for b in blobs
    ]
    return {"schemaVersion": 2, "layers": layers}


def _fetcher(blobs: list[bytes]) -> tuple[Callable[[str, int], bytes], list[str]]:
    by_digest = {sha256(b): b for b in blobs}
    fetched: list[str] = []

    def fetch(digest: str, size: int) -> bytes:
        fetched.append(digest)
        return by_digest[digest]

    return fetch, fetched


def test_envelopes_are_parsed_and_others_skipped() -> None:
    good = json.dumps(envelope()).encode()
    manifest = _layers([good, b"[1]", b"\xff"])
    manifest["layers"].append({"mediaType": "application/octet-stream", "digest": "x"})
    fetch, _ = _fetcher([good, b"[1]", b"\xff"])
    found = attestation_envelopes(manifest, fetch)
    assert isinstance(found[0], dict)
    assert found[0]["payloadType"] == "application/vnd.in-toto+json"
    assert found[1:] == [
        f"attestation layer {sha256(b'[1]')} is not a JSON DSSE envelope",
        f"attestation layer {sha256(bytes([255]))} is not a JSON DSSE envelope",
    ]
    assert attestation_envelopes({"layers": "x"}, fetch) == []


def test_oversized_envelopes_are_never_fetched() -> None:
    fetch, fetched = _fetcher([b"{}"])
    manifest = _layers([b"{}"], size=MAX_ENVELOPE_SIZE + 1)
    (reason,) = attestation_envelopes(manifest, fetch)
    assert "envelopes over 1048576 bytes are not fetched" in str(reason)
    assert fetched == []


def test_envelope_layers_are_capped() -> None:
    blobs = [json.dumps({"n": n}).encode() for n in range(MAX_ATTESTATION_LAYERS + 5)]
    fetch, fetched = _fetcher(blobs)
    assert len(attestation_envelopes(_layers(blobs), fetch)) == MAX_ATTESTATION_LAYERS
    assert len(fetched) == MAX_ATTESTATION_LAYERS


# -- the check, against a real registry ------------------------------------------


def push_attestations(
    registry: Registry, repository: str, digest: str, envelopes: list[dict[str, Any]]
) -> None:
    """Push the ``.att`` manifest cosign attest writes: one DSSE layer per envelope."""
    blobs = []
    for item in envelopes:
        predicate_type = json.loads(base64.b64decode(item["payload"]))["predicateType"]
        notes = {"dev.cosignproject.cosign/signature": "", "predicateType": predicate_type}
        blobs.append((go_json(item), notes))
    push_attestation_layers(registry, repository, digest, blobs)


def push_attestation_layers(
    registry: Registry, repository: str, digest: str, blobs: list[tuple[bytes, dict[str, str]]]
) -> None:
    """Push an ``.att`` manifest of these (envelope text, annotations) layers."""
    layers = []
    for blob, notes in blobs:
        push_blob(registry, repository, blob)
        layers.append(
            {
                "mediaType": DSSE_MEDIA_TYPE,
                "size": len(blob),
                "digest": sha256(blob),
                "annotations": notes,
            }
        )
    config = go_json({"architecture": "", "os": "", "config": {}, "rootfs": {"type": "layers"}})
    push_blob(registry, repository, config)
    manifest = {
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": {"mediaType": OCI_CONFIG, "size": len(config), "digest": sha256(config)},
        "layers": layers,
    }
    body = json.dumps(manifest).encode()
    push_manifest_body(registry, repository, attestation_tag(digest), body, OCI_MANIFEST)


def authority(name: str, key: PrivateKey) -> Authority:
    return Authority(name, key=KeyRef(pem=public_pem(key)))


def policy(*requirements: Attestation) -> Policy:
    return Policy("p", "enforce", Match(), (Glob("**"),), attestations=requirements)


SLSA_BY_RELEASE = Attestation(SLSA, (authority("release", RELEASE),))


def fresh(registry: Registry) -> AttestationCheck:
    client = RegistryClient({registry.host: RegistrySettings(insecure=True)}, timeout=5.0)
    return AttestationCheck(client, Caches())


def image(registry: Registry, repository: str) -> tuple[ImageRef, str]:
    layer = default_layer(content=repository.encode())
    digest = push_image(registry, repository, tag="v1", layers=[layer])
    return parse_reference(f"{registry.host}/{repository}:v1"), digest


def run(check: AttestationCheck, ref: ImageRef, digest: str, rules: Policy) -> None:
    check.run(ref, rules, CheckContext(Deadline(10), lambda: digest))


def test_attested_image_passes_and_predicates_are_kept(registry: Registry) -> None:
    ref, digest = image(registry, "att/ok")
    push_attestations(
        registry,
        "att/ok",
        digest,
        [
            envelope(digest=digest, predicate={"builder": {"id": "ci"}}),
            envelope(SCANNER, digest=digest, predicate_type=VULN, predicate={"scanner": "x"}),
        ],
    )
    check = fresh(registry)
    rules = policy(SLSA_BY_RELEASE, Attestation(VULN, (authority("scanner", SCANNER),)))
    assert check.verified_predicates(ref, digest, SLSA, rules) == []
    run(check, ref, digest, rules)
    assert check.verified_predicates(ref, digest, SLSA, rules) == [{"builder": {"id": "ci"}}]
    assert check.verified_predicates(ref, digest, VULN, rules) == [{"scanner": "x"}]
    # Another policy's authorities are not this one's.
    other = policy(Attestation(SLSA, (authority("scanner", SCANNER),)))
    assert check.verified_predicates(ref, digest, SLSA, other) == []


def test_missing_attestation_is_denied_with_the_predicate_type(registry: Registry) -> None:
    ref, digest = image(registry, "att/none")
    with pytest.raises(CheckFailed) as raised:
        run(fresh(registry), ref, digest, policy(SLSA_BY_RELEASE))
    assert raised.value.check == "attestations"
    assert raised.value.message == (
        f"attestation check failed for predicate type {SLSA}: 0 of the 1 required "
        f"authorities verified (release: no attestation found ({attestation_tag(digest)} "
        f"does not exist); no Sigstore bundle refers to {digest})"
    )


def test_each_requirement_and_threshold_is_enforced(registry: Registry) -> None:
    ref, digest = image(registry, "att/threshold")
    push_attestations(registry, "att/threshold", digest, [envelope(digest=digest)])
    two = Attestation(
        SLSA,
        (
            authority("release", RELEASE),
            authority("scanner", SCANNER),
            Authority("ci", keyless=Keyless(issuer="i", subject="s")),
        ),
        threshold=2,
    )
    with pytest.raises(CheckFailed) as raised:
        run(fresh(registry), ref, digest, policy(two))
    assert "1 of the 2 required authorities verified (" in raised.value.message
    assert "scanner: attestation signature does not verify with key scanner" in str(raised.value)
    assert "ci: keyless authority has no trusted root loaded" in str(raised.value)
    with pytest.raises(CheckFailed, match=f"predicate type {VULN}: .*have predicate type {SLSA}"):
        run(
            fresh(registry),
            ref,
            digest,
            policy(SLSA_BY_RELEASE, Attestation(VULN, two.authorities[:1])),
        )


def test_attestation_of_another_image_is_refused(registry: Registry) -> None:
    ref, digest = image(registry, "att/copied")
    push_attestations(registry, "att/copied", digest, [envelope(digest=OTHER)])
    with pytest.raises(CheckFailed, match="about another subject, not " + digest):
        run(fresh(registry), ref, digest, policy(SLSA_BY_RELEASE))


def test_missing_envelope_blob_is_an_upstream_error(registry: Registry) -> None:
    ref, digest = image(registry, "att/blobless")
    item = envelope(digest=digest)
    push_attestations(registry, "att/blobless", digest, [item])
    gone = registry.request("DELETE", f"/v2/att/blobless/blobs/{sha256(go_json(item))}")
    assert gone.status_code == 202, gone.text
    with pytest.raises(UpstreamError, match="not found"):
        run(fresh(registry), ref, digest, policy(SLSA_BY_RELEASE))


def test_attestations_are_registered_after_signatures() -> None:
    rules = policy(SLSA_BY_RELEASE)
    names = [check.name for check in checks_for(rules, build_checks())]
    assert names == ["allowlist", "attestations"]
    assert isinstance(build_checks()["attestations"], Unavailable)
    assert [c.name for c in checks_for(policy(), build_checks())] == ["allowlist"]


# -- keyless authorities and cosign's legacy .att layers -----------------------------

BUILDER = Identity(
    "https://github.com/acme/app/.github/workflows/build.yml@refs/heads/main", ISSUER
)


@pytest.fixture(scope="module")
def sigstore() -> SigstoreInstance:
    return SigstoreInstance()


def builder(sigstore: SigstoreInstance, tmp: Path) -> Authority:
    (tmp / "trusted_root.json").write_text(sigstore.trusted_root_json())
    root = load_trusted_root("trusted_root.json", tmp)
    return Authority("builder", keyless=Keyless(issuer=ISSUER, subject=BUILDER.subject, root=root))


def test_keyless_attestation_in_the_legacy_layout_passes(
    registry: Registry, sigstore: SigstoreInstance, tmp_path: Path
) -> None:
    ref, digest = image(registry, "att/keyless-legacy")
    statement = in_toto_statement(digest, NAME, SLSA, {"builder": {"id": "ci"}})
    layer = sigstore.attest_legacy(BUILDER, statement)
    push_attestation_layers(registry, "att/keyless-legacy", digest, [layer])
    check = fresh(registry)
    rules = policy(Attestation(SLSA, (builder(sigstore, tmp_path),)))
    run(check, ref, digest, rules)
    assert check.verified_predicates(ref, digest, SLSA, rules) == [{"builder": {"id": "ci"}}]
    # The key authority of another policy does not accept the certificate-signed envelope.
    with pytest.raises(CheckFailed, match="release: attestation signature does not verify"):
        run(check, ref, digest, policy(SLSA_BY_RELEASE))


def test_keyless_legacy_attestation_of_another_identity_is_refused(
    registry: Registry, sigstore: SigstoreInstance, tmp_path: Path
) -> None:
    ref, digest = image(registry, "att/keyless-legacy-other")
    statement = in_toto_statement(digest, NAME, SLSA, {})
    stranger = Identity("mallory@evil.test", "https://accounts.google.com")
    layer = sigstore.attest_legacy(stranger, statement)
    push_attestation_layers(registry, "att/keyless-legacy-other", digest, [layer])
    rules = policy(Attestation(SLSA, (builder(sigstore, tmp_path),)))
    with pytest.raises(CheckFailed) as raised:
        run(fresh(registry), ref, digest, rules)
    assert raised.value.message == (
        f"attestation check failed for predicate type {SLSA}: 0 of the 1 required "
        "authorities verified (builder: issuer 'https://accounts.google.com' is not "
        f"{ISSUER!r})"
    )


# -- conditions, on every form of attestation ------------------------------------------


def conditions(*texts: str) -> tuple[Condition, ...]:
    return tuple(compile_condition(text) for text in texts)


def test_key_attestation_counts_only_when_its_conditions_hold(registry: Registry) -> None:
    ref, digest = image(registry, "att/conditions")
    push_attestations(
        registry,
        "att/conditions",
        digest,
        [
            envelope(digest=digest, predicate={"builder": {"id": "other"}}),
            envelope(digest=digest, predicate={"builder": {"id": "ci"}}),
        ],
    )
    check = fresh(registry)
    held = conditions(
        "predicate.builder.id == 'ci'", "image.repository.endsWith('/att/conditions')"
    )
    rules = policy(Attestation(SLSA, (authority("release", RELEASE),), conditions=held))
    note = check.run(ref, rules, CheckContext(Deadline(10), lambda: digest))
    assert note == (
        f"{SLSA} attested by release (conditions held: \"predicate.builder.id == 'ci'\", "
        "\"image.repository.endsWith('/att/conditions')\")"
    )
    # Only the statement that met the conditions is kept for later checks.
    assert check.verified_predicates(ref, digest, SLSA, rules) == [{"builder": {"id": "ci"}}]
    failing = conditions("predicate.builder.id == 'release-pipeline'")
    with pytest.raises(CheckFailed) as raised:
        run(
            check,
            ref,
            digest,
            policy(Attestation(SLSA, (authority("release", RELEASE),), conditions=failing)),
        )
    assert raised.value.message == (
        f"attestation check failed for predicate type {SLSA}: 0 of the 1 required authorities "
        "verified (release: 0 of 1 conditions held: condition "
        "\"predicate.builder.id == 'release-pipeline'\" does not hold "
        '(saw predicate.builder.id = "other"))'
    )


def test_keyless_attestation_meets_the_same_conditions(
    registry: Registry, sigstore: SigstoreInstance, tmp_path: Path
) -> None:
    ref, digest = image(registry, "att/keyless-conditions")
    statement = in_toto_statement(digest, NAME, SLSA, {"builder": {"id": "ci"}})
    layer = sigstore.attest_legacy(BUILDER, statement)
    push_attestation_layers(registry, "att/keyless-conditions", digest, [layer])
    keyless = builder(sigstore, tmp_path)
    held = policy(
        Attestation(SLSA, (keyless,), conditions=conditions("predicate.builder.id == 'ci'"))
    )
    run(fresh(registry), ref, digest, held)
    failing = conditions("subject.all(s, s.name == 'quay.io/acme/other')")
    with pytest.raises(CheckFailed, match=r"builder: 0 of 1 conditions held: condition \"subject"):
        run(fresh(registry), ref, digest, policy(Attestation(SLSA, (keyless,), conditions=failing)))


def test_conditions_over_their_cost_limit_deny_and_are_not_cached(registry: Registry) -> None:
    ref, digest = image(registry, "att/conditions-cost")
    numbers = {"numbers": list(range(5000))}
    push_attestations(
        registry, "att/conditions-cost", digest, [envelope(digest=digest, predicate=numbers)]
    )
    client = RegistryClient({registry.host: RegistrySettings(insecure=True)}, timeout=5.0)
    caches = Caches()
    evaluator = Evaluator(cost_seconds=0.3)
    check = AttestationCheck(client, caches, evaluator)
    slow = conditions(
        "predicate.numbers.all(x, (predicate.numbers + predicate.numbers"
        " + predicate.numbers).size() > 0)"
    )
    rules = policy(Attestation(SLSA, (authority("release", RELEASE),), conditions=slow))
    for _ in range(2):  # not remembered as a failure: each review tries within the limit again
        started = time.monotonic()
        with pytest.raises(CostExceeded, match=r"did not finish within the cost limit of 0\.3 s"):
            run(check, ref, digest, rules)
        assert time.monotonic() - started < 3.0
    assert len(caches.failures) == 0 and len(caches.verified) == 0
    evaluator.close()
