"""verify_notation end to end against a real docker-registry: discovery, envelopes (JWS and
COSE), the target descriptor, trust, revocation (a real OCSP responder), and a flood.

Images are signed as ``notation sign`` would (tests/support/notation_images.py).
"""

from __future__ import annotations

import datetime as dt
import re
import time
from collections.abc import Iterator

import pytest
from cryptography.hazmat.primitives import hashes

from tests.support.notation_images import COSE, JWS, of, sign_image, signing_chain
from tests.support.notation_pki import DAY, Authority, Signing, TimestampAuthority
from tests.support.notation_referrers import push_signature
from tests.support.notation_revocation import RevocationServer, chain
from tests.support.registry import (
    Registry,
    default_layer,
    free_port,
    manifest_descriptor,
    push_image,
)
from webhook.core.deadline import Deadline
from webhook.core.reference import ImageRef
from webhook.registry.client import RegistryClient, RegistrySettings
from webhook.signatures.notation.discovery import MAX_SIGNATURES
from webhook.signatures.notation.revocation import RevocationChecker, RevocationSettings
from webhook.signatures.notation.trust import RevocationCheck
from webhook.signatures.notation.verifier import (
    MAX_REASONS,
    SKIPPED,
    Candidates,
    Refusal,
    Verification,
    short,
    thumbprints,
    verify_candidates,
    verify_notation,
)
from webhook.trust.notation.identities import parse_identities
from webhook.trust.notation.levels import Level, Validation, level
from webhook.trust.notation.truststore import TrustStore

ANY = parse_identities(["*"])
BUILDER = parse_identities(["x509.subject: C=US, ST=WA, O=acme-rabbits, CN=builder"])
STRICT = level("strict", {"revocation": "skip"})


@pytest.fixture(scope="module")
def root() -> Authority:
    return Authority.root()


@pytest.fixture(scope="module")
def builder(root: Authority) -> Signing:
    return root.intermediate().leaf("builder")


@pytest.fixture(scope="module")
def responder() -> Iterator[RevocationServer]:
    running = RevocationServer().start()
    yield running
    running.stop()


def new_image(registry: Registry, repository: str) -> str:
    content = repository.encode() + str(time.monotonic_ns()).encode()
    return push_image(registry, repository, tag="v1", layers=[default_layer(content=content)])


def client(registry: Registry, repository: str) -> tuple[RegistryClient, ImageRef]:
    settings = {registry.host: RegistrySettings(insecure=True)}
    return RegistryClient(settings), ImageRef(registry.host, repository, "v1")


def verify(
    registry: Registry,
    repository: str,
    digest: str,
    store: TrustStore,
    identities: object = ANY,
    chosen: Level = STRICT,
    **options: object,
) -> Verification:
    registry_client, ref = client(registry, repository)
    return verify_notation(
        registry_client,
        ref,
        digest,
        Deadline(10),
        store,
        identities,
        chosen,
        **options,  # type: ignore[arg-type]
    )


@pytest.mark.parametrize("media_type", [JWS, COSE])
def test_a_signed_image_verifies_in_either_envelope(
    registry: Registry, root: Authority, builder: Signing, media_type: str
) -> None:
    repository = f"notation-verify/good-{media_type.split('/')[1].replace('+', '-')}"
    digest = new_image(registry, repository)
    pushed = sign_image(registry, repository, digest, of(builder), media_type=media_type)
    found = verify(registry, repository, digest, TrustStore(ca=(root.cert,)), BUILDER)
    assert found.refused == ()
    (accepted,) = found.accepted
    assert accepted.manifest == pushed
    assert accepted.envelope == ("COSE" if media_type == COSE else "JWS")
    assert accepted.result.identity == "x509.subject: C=US, ST=WA, O=acme-rabbits, CN=builder"
    assert accepted.signer.label == "x509.subject 'CN=builder,O=acme-rabbits,L=Seattle,ST=WA,C=US'"
    assert found.signers == (accepted.signer,)
    # Without a timestamp, the verification holds until the chain's first certificate ends.
    assert found.until == min(cert.not_valid_after_utc for cert in builder.chain)


def test_jws_and_cose_by_one_certificate_are_one_signer(
    registry: Registry, root: Authority, builder: Signing
) -> None:
    repository = "notation-verify/both"
    digest = new_image(registry, repository)
    for media_type in (JWS, COSE):
        sign_image(registry, repository, digest, of(builder), media_type=media_type)
    found = verify(registry, repository, digest, TrustStore(ca=(root.cert,)))
    first, second = found.signers
    assert first == second


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        ("digest", r"the signature is for digest sha256:\w+, not the image's sha256:\w+: it signs"),
        ("size", r"with size 1, but the image's manifest is \d+ bytes"),
        ("mediaType", r"with mediaType application/vnd.docker.distribution.manifest.v2\+json, but"),
    ],
)
def test_a_signature_of_another_descriptor_is_refused(
    registry: Registry, root: Authority, builder: Signing, change: str, reason: str
) -> None:
    repository = f"notation-verify/other-{change.lower()}"
    digest = new_image(registry, repository)
    target = manifest_descriptor(registry, repository, digest)
    target[change] = {
        "digest": new_image(registry, repository),
        "size": 1,
        "mediaType": "application/vnd.docker.distribution.manifest.v2+json",
    }[change]
    pushed = sign_image(registry, repository, digest, of(builder), target=target)
    found = verify(registry, repository, digest, TrustStore(ca=(root.cert,)))
    assert found.accepted == ()
    (refusal,) = found.refused
    assert (refusal.manifest, refusal.envelope) == (pushed, "JWS")
    assert found.reason().startswith(
        f"no Notation signature verified (1 read: {short(pushed)} (JWS): "
    )
    assert re.search(reason, refusal.reason), refusal.reason


def test_trust_failures_are_refusals_with_the_validation_named(
    registry: Registry, root: Authority, builder: Signing
) -> None:
    repository = "notation-verify/untrusted"
    digest = new_image(registry, repository)
    stranger = Authority.root("stranger root")
    intruder = root.intermediate().leaf("intruder")
    sign_image(registry, repository, digest, of(stranger.intermediate().leaf("builder")))
    sign_image(registry, repository, digest, of(intruder))
    found = verify(registry, repository, digest, TrustStore(ca=(root.cert,)), BUILDER)
    reasons = sorted(refusal.reason for refusal in found.refused)
    assert found.accepted == () and len(reasons) == 2
    assert reasons[0].startswith("authenticity: ") and "does not chain" in reasons[0]
    assert reasons[1].startswith("authenticity: signing certificate 'CN=intruder,")


def test_at_level_audit_an_untrusted_signer_is_reported_never_counted(
    registry: Registry, builder: Signing
) -> None:
    repository = "notation-verify/audit"
    digest = new_image(registry, repository)
    sign_image(registry, repository, digest, of(builder))
    stranger = Authority.root("stranger root")
    found = verify(registry, repository, digest, TrustStore(ca=(stranger.cert,)),
                   chosen=level("audit", {"revocation": "skip"}))  # fmt: skip
    assert found.accepted == ()
    (refusal,) = found.refused
    assert refusal.reason.startswith("authenticity: ") and "does not chain" in refusal.reason
    assert refusal.reason.endswith("(level audit only logs it; an untrusted signer never counts)")


def test_an_expired_certificate_needs_a_timestamp(registry: Registry, root: Authority) -> None:
    repository = "notation-verify/expired"
    now = dt.datetime.now(dt.UTC)
    expired = root.intermediate().leaf("builder", start=now - 2 * DAY, end=now - DAY / 24)
    tsa = TimestampAuthority()
    digest = new_image(registry, repository)
    sign_image(registry, repository, digest, of(expired))
    store = TrustStore(ca=(root.cert,))
    found = verify(registry, repository, digest, store)
    (refusal,) = found.refused
    assert refusal.reason.startswith("authenticTimestamp: at verification time, certificate")
    assert "had expired" in refusal.reason
    stamped = new_image(registry, repository)
    sign_image(registry, repository, stamped, of(expired), tsa=tsa, stamped_at=now - DAY)
    with_tsa = TrustStore(ca=(root.cert,), tsa=(tsa.root.cert,))
    found = verify(registry, repository, stamped, with_tsa)
    assert len(found.accepted) == 1 and found.refused == ()
    assert found.until is None  # anchored by its timestamp: holds after the chain expires


def test_an_expiring_signature_holds_until_its_expiry(
    registry: Registry, root: Authority, builder: Signing
) -> None:
    repository = "notation-verify/expiry"
    digest = new_image(registry, repository)
    ends = dt.datetime.now(dt.UTC).replace(microsecond=0) + dt.timedelta(hours=1)
    sign_image(registry, repository, digest, of(builder), media_type=COSE, expiry=ends)
    found = verify(registry, repository, digest, TrustStore(ca=(root.cert,)))
    assert found.until == ends


def test_an_unknown_critical_header_is_refused(
    registry: Registry, root: Authority, builder: Signing
) -> None:
    repository = "notation-verify/critical"
    digest = new_image(registry, repository)
    sign_image(
        registry, repository, digest, of(builder),
        crit=["io.cncf.notary.signingScheme", "com.example.unknown"],
        extended={"com.example.unknown": "x"},
    )  # fmt: skip
    (refusal,) = verify(registry, repository, digest, TrustStore(ca=(root.cert,))).refused
    assert "com.example.unknown" in refusal.reason and refusal.reason.startswith("JWS envelope:")


def test_no_signature_says_so(registry: Registry, root: Authority) -> None:
    repository = "notation-verify/unsigned"
    digest = new_image(registry, repository)
    found = verify(registry, repository, digest, TrustStore(ca=(root.cert,)))
    assert found.reason() == f"no Notation signature refers to {digest}"


def test_level_skip_reads_nothing(root: Authority) -> None:
    dead = RegistryClient({f"127.0.0.1:{free_port()}": RegistrySettings(insecure=True)})
    ref = ImageRef(f"127.0.0.1:{free_port()}", "skip", "v1")
    found = verify_notation(
        dead, ref, "sha256:" + "0" * 64, Deadline(1), TrustStore(), ANY, level("skip")
    )
    assert (found.accepted, found.refused, found.reason()) == ((), (), SKIPPED)


def test_candidates_are_read_and_parsed_once_for_every_authority(
    registry: Registry, root: Authority, builder: Signing
) -> None:
    repository = "notation-verify/shared"
    digest = new_image(registry, repository)
    other = root.intermediate("second").leaf("builder")
    for signer in (builder, other):
        sign_image(registry, repository, digest, of(signer))
    registry_client, ref = client(registry, repository)
    deadline = Deadline(10)
    candidates = Candidates(registry_client, ref, digest, deadline)
    first = verify_candidates(candidates, TrustStore(ca=(root.cert,)), ANY, STRICT,
                              deadline=deadline)  # fmt: skip
    read = deadline.read_bytes
    second = verify_candidates(candidates, TrustStore(ca=(root.cert,)), BUILDER, STRICT,
                               deadline=deadline)  # fmt: skip
    assert deadline.read_bytes == read  # nothing fetched again
    assert len(first.signers) == len(second.signers) == 2
    assert first.signers[0] != first.signers[1]  # two certificates, two signers
    parsed = [entry for _, _, entry in candidates]
    assert parsed == [entry for _, _, entry in candidates]
    assert all(a is b for a, b in zip(parsed, [e for _, _, e in candidates], strict=True))


# -- a flood of fake signatures ----------------------------------------------------------


def test_a_flood_of_newer_fakes_cannot_hide_a_signature_under_the_trust_store(
    registry: Registry, root: Authority, builder: Signing
) -> None:
    repository = "notation-verify/flood"
    digest = new_image(registry, repository)
    real = sign_image(registry, repository, digest, of(builder),
                      created=dt.datetime(2025, 1, 1, tzinfo=dt.UTC))  # fmt: skip
    forger = Authority.root("forger root").leaf("builder")
    newer = dt.datetime.now(dt.UTC)
    for number in range(MAX_SIGNATURES + 4):
        sign_image(registry, repository, digest, of(forger),
                   created=newer + dt.timedelta(seconds=number))  # fmt: skip
    store = TrustStore(ca=(root.cert,))
    found = verify(registry, repository, digest, store)
    assert [a.manifest for a in found.accepted] == [real]
    assert len(found.refused) == MAX_SIGNATURES - 1
    assert "only the first 16 are read" in found.note
    # A real signature without notation's annotation is pushed out by the newer fakes,
    # and the denial names the flood.
    hidden = new_image(registry, repository)
    sign_image(registry, repository, hidden, of(builder), annotate=False,
               created=dt.datetime(2025, 1, 1, tzinfo=dt.UTC))  # fmt: skip
    for number in range(MAX_SIGNATURES):
        sign_image(registry, repository, hidden, of(forger),
                   created=newer + dt.timedelta(seconds=number))  # fmt: skip
    found = verify(registry, repository, hidden, store)
    assert found.accepted == ()
    reason = found.reason()
    assert reason.startswith("no Notation signature verified (16 read: ")
    assert f"and {MAX_SIGNATURES - MAX_REASONS} more" in reason
    assert reason.endswith("(at most 16 per image: a flood of signatures costs no more, "
                           "but may hide a real one)")  # fmt: skip


def test_the_trust_store_thumbprints_are_its_signing_roots() -> None:
    ca, authority, tsa = Authority.root("a"), Authority.root("b"), Authority.root("c")
    store = TrustStore(ca=(ca.cert,), signing_authority=(authority.cert,), tsa=(tsa.cert,))
    assert thumbprints(store) == {
        ca.cert.fingerprint(hashes.SHA256()).hex(),
        authority.cert.fingerprint(hashes.SHA256()).hex(),
    }


def test_a_refusal_line_names_the_manifest_shortly() -> None:
    line = Refusal("sha256:" + "ab" * 32, "why", "COSE").line
    assert line == "sha256:abababababab (COSE): why"


# -- revocation, with a real OCSP responder ----------------------------------------------


@pytest.mark.parametrize("name_", ["strict", "permissive"])
def test_a_revoked_certificate_is_refused_under_strict_and_logged_under_permissive(
    registry: Registry, responder: RevocationServer, name_: str
) -> None:
    repository = f"notation-verify/revoked-{name_}"
    leaf, ca, top = chain(responder)
    digest = new_image(registry, repository)
    signer = signing_chain(leaf.key, (leaf.cert, ca.cert, top.cert))
    sign_image(registry, repository, digest, signer)
    ca.revoke(leaf.cert)
    checker: RevocationCheck = RevocationChecker(RevocationSettings(ocsp_seconds=1))
    found = verify(registry, repository, digest, TrustStore(ca=(top.cert,)),
                   chosen=level(name_), revocation=checker)  # fmt: skip
    if name_ == "strict":
        (refusal,) = found.refused
        assert refusal.reason.startswith("revocation: revoked: certificate ")
        return
    (accepted,) = found.accepted
    assert [f.validation for f in accepted.result.logged] == [Validation.REVOCATION]
    assert "is revoked" in found.logged[0]


def test_push_signature_of_garbage_is_refused_by_the_parser(
    registry: Registry, root: Authority
) -> None:
    repository = "notation-verify/garbage"
    digest = new_image(registry, repository)
    push_signature(registry, repository, digest, b"{not json")
    (refusal,) = verify(registry, repository, digest, TrustStore(ca=(root.cert,))).refused
    assert refusal.reason.startswith("JWS envelope: ")
