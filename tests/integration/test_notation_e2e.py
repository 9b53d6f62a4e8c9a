"""Notation (Notary Project) signatures end to end: a real registry, `trustgate serve`, and a
real OCSP responder and CRL server.

Images are signed as ``notation sign`` does (tests/support/notation_images.py): a JWS or
COSE envelope over the image's descriptor, pushed as an OCI referrer of artifact type
``application/vnd.cncf.notary.signature`` (Debian's docker-registry has no referrers API:
trustgate reads the ``sha256-<hex>`` tag fallback). Chains come from a test PKI
(tests/support/notation_pki.py, with a TSA) or, for revocation, from CAs whose OCSP
responder and CRL server run here (tests/support/notation_revocation.py). Each policy
matches its own namespaces:

- ``notation-*``: one notation authority, strict, revocation skipped (an air-gapped cluster);
- ``stamped-*``: the same with a TSA store: an expired certificate stamped in time verifies;
- ``strict-*`` / ``permissive-*``: revocation checked against the responder;
- ``two-*``: threshold 2 of a cosign key and a notation authority;
- ``twice-*``: threshold 2 of two notation authorities that one certificate satisfies.
"""

from __future__ import annotations

import datetime as dt
import json
import time
from collections.abc import Iterator
from dataclasses import dataclass

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding

from tests.integration.conftest import Server, serve_config, serving, small_image
from tests.support.cosign import generate_key, public_pem
from tests.support.cosign import push_signature as cosign_sign
from tests.support.kube import pod_spec, review, workload
from tests.support.notation import SigningChain, raw_signature
from tests.support.notation_images import COSE, JWS, of, sign_image, signing_chain
from tests.support.notation_pki import Authority, Signing, TimestampAuthority
from tests.support.notation_revocation import RevocationServer, chain
from tests.support.notation_revocation_pki import Authority as RevocationCA
from tests.support.notation_revocation_pki import Issued
from tests.support.registry import Registry, free_port, manifest_descriptor
from webhook.signatures.notation.discovery import MAX_SIGNATURES

pytestmark = pytest.mark.e2e

RELEASE = generate_key("ecdsa-p256")
BUILDER = "x509.subject: C=US, ST=WA, O=acme-rabbits, CN=builder"
SUBJECT = "CN=builder,O=acme-rabbits,L=Seattle,ST=WA,C=US"
HOUR = dt.timedelta(hours=1)


def pem(*certs: x509.Certificate) -> str:
    return "".join(cert.public_bytes(Encoding.PEM).decode() for cert in certs)


@dataclass
class Revocation:
    """The responder and the CAs whose root the strict and permissive policies trust."""

    server: RevocationServer
    leaf: Issued
    ca: RevocationCA
    root: RevocationCA

    def signer(self, name: str, *, url: str | None = None) -> tuple[Issued, SigningChain]:
        """A signing certificate of the intermediate CA, naming its responder (or ``url``)."""
        issued = self.ca.issue(
            name,
            ocsp_url=url or self.server.ocsp_url(self.ca.name),
            crl_url=url or self.server.crl_url(self.ca.name),
        )
        return issued, signing_chain(issued.key, (issued.cert, self.ca.cert, self.root.cert))


@pytest.fixture(scope="module")
def pki() -> tuple[Authority, Signing, TimestampAuthority]:
    root = Authority.root()
    return root, root.intermediate().leaf("builder"), TimestampAuthority()


@pytest.fixture(scope="module")
def revocation() -> Iterator[Revocation]:
    server = RevocationServer().start()
    leaf, ca, root = chain(server)
    yield Revocation(server, leaf, ca, root)
    server.stop()


def authority(name: str, store: str, identities: str, extra: str = "") -> str:
    return (
        f"      - name: {name}\n        notation:\n          trustStore: {store}\n"
        f"          trustedIdentities: {identities}\n"
        + "".join(f"          {line}\n" for line in extra.splitlines())
    )


def policy(
    name: str, registry_host: str, namespaces: str, authorities: str, threshold: int = 1
) -> str:
    return (
        "apiVersion: trustgate.dev/v1alpha1\nkind: ImagePolicy\n"
        f"metadata: {{name: {name}}}\nspec:\n"
        f"  match: {{namespaces: {namespaces}}}\n"
        f'  registries: ["{registry_host}/**"]\n'
        f"  signatures:\n    threshold: {threshold}\n    authorities:\n{authorities}"
    )


@pytest.fixture(scope="module")
def server(
    registry: Registry,
    pki: tuple[Authority, Signing, TimestampAuthority],
    revocation: Revocation,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Server]:
    root, _, tsa = pki
    host = registry.host
    air_gapped = "override: {revocation: skip}"
    builder = authority("wabbit", "certs/ca.pem", f'["{BUILDER}"]', air_gapped)
    documents = [
        policy("notation", host, '["notation-*"]', builder),
        policy("stamped", host, '["stamped-*"]', authority(
            "wabbit", "certs/ca.pem", f'["{BUILDER}"]', f"tsaStore: certs/tsa.pem\n{air_gapped}"
        )),
        policy("strict", host, '["strict-*"]', authority("ops", "certs/rev.pem", '["*"]')),
        policy("permissive", host, '["permissive-*"]',
               authority("ops", "certs/rev.pem", '["*"]', "level: permissive")),
        policy("two", host, '["two-*"]',
               builder + "      - name: release\n        key: {file: keys/release.pub}\n", 2),
        policy("twice", host, '["twice-*"]',
               authority("any", "certs/ca.pem", '["*"]', air_gapped) + builder, 2),
    ]  # fmt: skip
    files = {
        "certs/ca.pem": pem(root.cert),
        "certs/tsa.pem": pem(tsa.root.cert),
        "certs/rev.pem": pem(revocation.root.cert),
        "keys/release.pub": public_pem(RELEASE),
        "policies.yaml": "---\n".join(documents),
    }
    with serving(tmp_path_factory.mktemp("notation"), files, serve_config(host)) as running:
        yield running


def decide(server: Server, ref: str, namespace: str) -> dict:
    body = review(workload("Deployment", pod_spec(ref), namespace=namespace))
    result = server.post(json.dumps(body), timeout=30)
    assert result.status_code == 200, result.text
    return result.json()["response"]


def denial(server: Server, ref: str, namespace: str) -> str:
    response = decide(server, ref, namespace)
    assert response["allowed"] is False, response
    return str(response["status"]["message"])


# -- admitted ------------------------------------------------------------------------------


@pytest.mark.parametrize("media_type", [JWS, COSE])
def test_a_valid_signature_in_either_envelope_is_admitted(
    registry: Registry, server: Server, pki: tuple[Authority, Signing, TimestampAuthority],
    media_type: str,
) -> None:  # fmt: skip
    _, builder, _ = pki
    repository = f"notation/good-{'cose' if media_type == COSE else 'jws'}"
    ref, digest = small_image(registry, repository)
    assert f"wabbit: no Notation signature refers to {digest}" in denial(server, ref, "notation-a")
    signed_ref, signed = small_image(registry, repository + "-signed")
    sign_image(registry, repository + "-signed", signed, of(builder), media_type=media_type)
    response = decide(server, signed_ref, "notation-a")
    assert response["allowed"] is True, response
    assert "warnings" not in response
    pinned = f"{registry.host}/{repository}-signed@{signed}"
    assert decide(server, pinned, "notation-a")["allowed"] is True


def test_an_expired_certificate_stamped_in_time_is_admitted_only_with_the_tsa(
    registry: Registry, server: Server, pki: tuple[Authority, Signing, TimestampAuthority]
) -> None:
    root, _, tsa = pki
    now = dt.datetime.now(dt.UTC)
    expired = root.intermediate().leaf("builder", start=now - 48 * HOUR, end=now - HOUR)
    ref, digest = small_image(registry, "notation/stamped")
    sign_image(registry, "notation/stamped", digest, of(expired), tsa=tsa,
               stamped_at=now - 2 * HOUR)  # fmt: skip
    assert decide(server, ref, "stamped-a")["allowed"] is True
    message = denial(server, ref, "notation-a")
    assert "authenticTimestamp: at verification time, certificate" in message
    assert "had expired" in message


# -- refused -------------------------------------------------------------------------------


def _other_descriptor(registry: Registry, repository: str, digest: str, change: str) -> dict:
    target = manifest_descriptor(registry, repository, digest)
    if change == "digest":
        _, target["digest"] = small_image(registry, repository + "-other")
    elif change == "size":
        target["size"] += 1
    else:
        target["mediaType"] = "application/vnd.docker.distribution.manifest.v2+json"
    return target


@pytest.mark.parametrize(
    ("case", "reason"),
    [
        ("digest", "it signs another artifact"),
        ("size", "the signed descriptor does not match"),
        ("mediaType", "with mediaType application/vnd.docker.distribution.manifest.v2+json"),
        ("expired", "authenticTimestamp: at verification time, certificate"),
        ("untrusted", "authenticity: "),
        ("identity", "authenticity: signing certificate 'CN=intruder,"),
        ("critical", "com.example.unknown"),
        ("pkcs1", "JWS envelope: "),
        ("cose-stripped", "COSE envelope: "),
        ("stamp-other", "authenticTimestamp: the timestamp is for another"),
    ],
)
def test_hostile_signatures_are_refused(
    registry: Registry,
    server: Server,
    pki: tuple[Authority, Signing, TimestampAuthority],
    case: str,
    reason: str,
) -> None:
    root, builder, tsa = pki
    repository = f"notation/hostile-{case.lower()}"
    ref, digest = small_image(registry, repository)
    signer, options, kind, where = of(builder), {}, "JWS", "notation"
    if case in ("digest", "size", "mediaType"):
        options["target"] = _other_descriptor(registry, repository, digest, case)
    elif case == "expired":
        now = dt.datetime.now(dt.UTC)
        signer = of(root.intermediate().leaf("builder", start=now - 48 * HOUR, end=now - HOUR))
    elif case == "untrusted":
        signer = of(Authority.root("wabbit root").intermediate().leaf("builder"))
    elif case == "identity":
        signer = of(root.intermediate().leaf("intruder"))
    elif case == "critical":
        options["crit"] = ["io.cncf.notary.signingScheme", "com.example.unknown"]
        options["extended"] = {"com.example.unknown": "x"}
    elif case == "pkcs1":  # RSASSA-PKCS1-v1_5 under a PS256 header: algorithm confusion
        signer = of(root.intermediate().leaf("builder", kind="rsa2048"))
        options["sign"] = lambda data: raw_signature(signer.key, "PS256", data, pkcs1v15=True)
    elif case == "cose-stripped":  # the protected header emptied after signing
        kind, options["media_type"] = "COSE", COSE
        options["body"] = lambda _protected, unprotected, content, value: [
            b"",
            unprotected,
            content,
            value,
        ]
    else:  # a genuine token of the trusted TSA, over another signature
        where, options["timestamp"] = "stamped", tsa.token(b"another signature")
    pushed = sign_image(registry, repository, digest, signer, **options)
    message = denial(server, ref, f"{where}-a")
    assert message.startswith(
        f'image {ref} denied by policy "{where}": signature check failed: 0 of the 1 required '
        f"authorities verified (wabbit: no Notation signature verified (1 read: "
        f"{pushed[:19]} ({kind}): "
    ), message
    assert reason in message


def test_a_revoked_certificate_is_refused_under_strict_and_logged_under_permissive(
    registry: Registry, server: Server, revocation: Revocation
) -> None:
    _, good_chain = revocation.signer("good signer")
    ref, digest = small_image(registry, "notation/unrevoked")
    sign_image(registry, "notation/unrevoked", digest, good_chain)
    assert decide(server, ref, "strict-a")["allowed"] is True
    assert revocation.server.hits[f"ocsp/{revocation.ca.name}"] >= 1

    revoked, revoked_chain = revocation.signer("revoked signer")
    revocation.ca.revoke(revoked.cert)
    ref, digest = small_image(registry, "notation/revoked")
    sign_image(registry, "notation/revoked", digest, revoked_chain)
    message = denial(server, ref, "strict-a")
    subject = revoked.cert.subject.rfc4514_string()
    assert f"revocation: revoked: certificate {subject} is revoked at " in message
    assert f"(keyCompromise), per OCSP {revocation.server.ocsp_url(revocation.ca.name)}" in message
    response = decide(server, ref, "permissive-a")
    assert response["allowed"] is True
    (warning,) = response["warnings"]
    assert "signed by ops (x509.subject" in warning
    assert f"; Notation logged revocation: revoked: certificate {subject} is revoked" in warning


def test_an_unreachable_responder_is_unknown_denied_under_strict_logged_under_permissive(
    registry: Registry, server: Server, revocation: Revocation
) -> None:
    # A responder of its own (nothing listens there), so that its breaker is no one else's.
    dead = f"http://127.0.0.1:{free_port()}/status"
    _, signer = revocation.signer("unlucky signer", url=dead)
    ref, digest = small_image(registry, "notation/unknown")
    sign_image(registry, "notation/unknown", digest, signer)
    started = time.monotonic()
    message = denial(server, ref, "strict-a")
    assert time.monotonic() - started < 5
    assert "revocation: revocation status unknown: " in message
    response = decide(server, ref, "permissive-a")
    assert response["allowed"] is True
    assert "revocation: revocation status unknown: " in response["warnings"][0]


def test_a_flood_of_fake_signatures_cannot_push_a_real_one_out(
    registry: Registry, server: Server, pki: tuple[Authority, Signing, TimestampAuthority]
) -> None:
    _, builder, _ = pki
    forger = of(Authority.root("forger root").intermediate().leaf("builder"))
    old = dt.datetime(2025, 1, 1, tzinfo=dt.UTC)
    ref, digest = small_image(registry, "notation/flood")
    sign_image(registry, "notation/flood", digest, of(builder), created=old)
    newer = dt.datetime.now(dt.UTC)
    for number in range(MAX_SIGNATURES + 8):
        sign_image(registry, "notation/flood", digest, forger,
                   created=newer + dt.timedelta(seconds=number))  # fmt: skip
    started = time.monotonic()
    assert decide(server, ref, "notation-a")["allowed"] is True
    assert time.monotonic() - started < 5
    # Without notation's thumbprint annotation the real one is pushed out, and the denial
    # names the flood rather than a missing signature.
    hidden_ref, hidden = small_image(registry, "notation/flood-hidden")
    sign_image(registry, "notation/flood-hidden", hidden, of(builder), created=old,
               annotate=False)  # fmt: skip
    for number in range(MAX_SIGNATURES):
        sign_image(registry, "notation/flood-hidden", hidden, forger,
                   created=newer + dt.timedelta(seconds=number))  # fmt: skip
    message = denial(server, hidden_ref, "notation-a")
    assert f"no Notation signature verified ({MAX_SIGNATURES} read: " in message
    assert f"{hidden} has {MAX_SIGNATURES + 1} Notation signatures; only the first " in message


# -- thresholds across cosign and Notation -------------------------------------------------


def test_a_cosign_key_and_a_notation_signer_meet_a_threshold_of_two(
    registry: Registry, server: Server, pki: tuple[Authority, Signing, TimestampAuthority]
) -> None:
    _, builder, _ = pki
    ref, digest = small_image(registry, "notation/two")
    sign_image(registry, "notation/two", digest, of(builder), media_type=COSE)
    message = denial(server, ref, "two-a")
    assert "1 of the 2 required authorities verified (release: no signature found" in message
    both_ref, both = small_image(registry, "notation/two-both")
    sign_image(registry, "notation/two-both", both, of(builder), media_type=COSE)
    cosign_sign(registry, "notation/two-both", both, RELEASE)
    assert decide(server, both_ref, "two-a")["allowed"] is True


def test_one_notation_certificate_listed_twice_is_one_signer(
    registry: Registry, server: Server, pki: tuple[Authority, Signing, TimestampAuthority]
) -> None:
    root, builder, _ = pki
    ref, digest = small_image(registry, "notation/twice")
    sign_image(registry, "notation/twice", digest, of(builder), media_type=JWS)
    sign_image(registry, "notation/twice", digest, of(builder), media_type=COSE)
    message = denial(server, ref, "twice-a")
    assert (
        "1 of the 2 required authorities verified (wabbit: verified, but by x509.subject "
        f"'{SUBJECT}', already counted for any)"
    ) in message
    other_ref, other = small_image(registry, "notation/twice-two")
    sign_image(registry, "notation/twice-two", other, of(builder))
    sign_image(registry, "notation/twice-two", other, of(root.intermediate().leaf("releaser")))
    assert decide(server, other_ref, "twice-a")["allowed"] is True
