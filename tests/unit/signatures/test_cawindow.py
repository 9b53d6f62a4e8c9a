"""A Fulcio CA's and the log keys' ``validFor`` in the trusted root, held against the signing
time.

sigstore-python accepts a certificate from a CA the root retired before the
signature was logged (the first test shows it), and a signed entry timestamp or
SCT from a retired log key; every keyless verification of trustgate refuses
them: cosign ``.sig`` layers, Sigstore bundles (message and DSSE), legacy
``.att`` layers and gitsign commits.
"""

from __future__ import annotations

import base64
import copy
import datetime as dt
import hashlib
import json
from pathlib import Path

import pytest

from tests.support.gitsign import gitsign_signature, with_signature
from tests.support.gitsigning import check_out, commit, forge, raw_commit, source_repo, sync
from tests.support.policysigning import FILES
from tests.support.sigstore_instance import (
    FulcioCA,
    Identity,
    LogEntry,
    SigstoreInstance,
    bundle,
    cosign_annotations,
    now,
)
from tests.support.sigstore_services import ca_entry
from tests.support.tsa import TimestampAuthority
from webhook.policy.model import Keyless
from webhook.policy.signing.gate import PolicySignatureError
from webhook.policy.signing.gitcheckout import read_checkout
from webhook.signatures.cawindow import ca_window_problem
from webhook.signatures.gitsign import GitsignAuthority, verify_gitsign
from webhook.signatures.identity import identity_policy
from webhook.signatures.keyless import (
    KeylessResult,
    parse_bundle,
    verify_bundle,
    verify_legacy,
    verify_legacy_attestation,
)
from webhook.trust.trustroot import TrustRoot, load_trusted_root

ISSUER = "https://token.actions.githubusercontent.com"
SUBJECT = "https://github.com/acme/api/.github/workflows/release.yml@refs/tags/v1.0"
IDENTITY = Identity(SUBJECT, ISSUER)
POLICY = Keyless(issuer=ISSUER, subject=SUBJECT)
PAYLOAD = b'{"critical":{"type":"cosign container image signature"}}'
IMAGE = hashlib.sha256(b"an image manifest").hexdigest()
SLSA = "https://slsa.dev/provenance/v1"
STAMP = "%Y-%m-%dT%H:%M:%SZ"
CA = "'CN=retired-intermediate,O=trustgate.test'"


def _root(tmp_path: Path, document: dict[str, object]) -> TrustRoot:
    path = tmp_path / "trusted_root.json"
    path.write_text(json.dumps(document))
    return load_trusted_root(path.name, tmp_path)


@pytest.fixture
def retired(tmp_path: Path) -> tuple[SigstoreInstance, TrustRoot]:
    """A Sigstore whose root retired its only Fulcio CA five minutes ago."""
    instance = SigstoreInstance("retired")
    instance.ca_end = now() - dt.timedelta(minutes=5)
    return instance, _root(tmp_path, instance.trusted_root())


def _expected(instance: SigstoreInstance, root: TrustRoot, signed: dt.datetime) -> str:
    assert instance.ca_end is not None
    return (
        f"signed at {signed:{STAMP}} by Fulcio CA {CA} of trusted root {root.name}, "
        f"which the root retired at {instance.ca_end:{STAMP}}; "
        "sign the image again under the root's current CA and log keys"
    )


def _logged(entry: LogEntry) -> dt.datetime:
    return dt.datetime.fromtimestamp(entry.integrated_time, dt.UTC)


def _legacy(
    root: TrustRoot, instance: SigstoreInstance, **sign: object
) -> tuple[KeylessResult, LogEntry]:
    cert, signature, entry = instance.sign_blob(IDENTITY, PAYLOAD, **sign)  # type: ignore[arg-type]
    annotations = cosign_annotations(instance, cert, signature, entry)
    result = verify_legacy(
        root,
        POLICY,
        annotations=annotations,
        signature_b64=annotations["dev.cosignproject.cosign/signature"],
        payload=PAYLOAD,
    )
    return result, entry


def test_sigstore_python_alone_accepts_a_certificate_of_a_retired_ca(
    retired: tuple[SigstoreInstance, TrustRoot],
) -> None:
    """The gap closed here: if this fails, sigstore-python checks validFor.end itself."""
    instance, root = retired
    cert, signature, entry = instance.sign_blob(IDENTITY, PAYLOAD)
    document = bundle(
        cert, entry, signature=signature, digest_hex=hashlib.sha256(PAYLOAD).hexdigest()
    )
    parsed = parse_bundle(json.dumps(document).encode())
    assert not isinstance(parsed, str), parsed
    root.verifier.verify_artifact(PAYLOAD, parsed, identity_policy(POLICY))  # no error
    problem = ca_window_problem(root, parsed)
    assert problem is not None and "which the root retired at" in problem


def test_a_legacy_signature_after_the_ca_was_retired_is_denied(
    retired: tuple[SigstoreInstance, TrustRoot],
) -> None:
    instance, root = retired
    result, entry = _legacy(root, instance)
    assert not result.ok
    assert result.reason == _expected(instance, root, _logged(entry))


def test_a_legacy_signature_before_the_ca_was_retired_verifies(tmp_path: Path) -> None:
    instance = SigstoreInstance("retired")
    instance.ca_end = now() - dt.timedelta(seconds=10)
    root = _root(tmp_path, instance.trusted_root())
    result, _ = _legacy(root, instance, when=now() - dt.timedelta(seconds=20))
    assert result.ok, result.reason


def test_a_signature_before_the_ca_was_trusted_is_denied(tmp_path: Path) -> None:
    instance = SigstoreInstance("retired")
    document = instance.trusted_root()
    start = now() - dt.timedelta(seconds=10)
    document["certificateAuthorities"][0]["validFor"] = {"start": start.strftime(STAMP)}
    root = _root(tmp_path, document)
    signed = now() - dt.timedelta(seconds=20)
    result, _ = _legacy(root, instance, when=signed)
    assert not result.ok
    assert result.reason.startswith(f"signed at {signed:{STAMP}} by Fulcio CA {CA}")
    assert f"which the root trusts only from {start:{STAMP}}" in result.reason


@pytest.mark.parametrize("kind", ["message", "dsse"])
def test_a_bundle_after_the_ca_was_retired_is_denied(
    retired: tuple[SigstoreInstance, TrustRoot], kind: str
) -> None:
    instance, root = retired
    if kind == "message":
        cert, signature, entry = instance.sign_digest(IDENTITY, IMAGE)
        document = bundle(cert, entry, signature=signature, digest_hex=IMAGE)
    else:
        statement = {
            "_type": "https://in-toto.io/Statement/v1",
            "subject": [{"name": "registry.test/acme/api", "digest": {"sha256": IMAGE}}],
            "predicateType": "https://sigstore.dev/cosign/sign/v1",
            "predicate": {},
        }
        cert, envelope, entry = instance.sign_dsse(IDENTITY, statement)
        document = bundle(cert, entry, envelope=envelope)
    parsed = parse_bundle(json.dumps(document).encode())
    assert not isinstance(parsed, str), parsed
    result = verify_bundle(root, POLICY, parsed, image_digest=f"sha256:{IMAGE}")
    assert result == KeylessResult(False, _expected(instance, root, _logged(entry)))


@pytest.mark.parametrize("kind", ["intoto", "dsse"])
def test_a_legacy_attestation_after_the_ca_was_retired_is_denied(
    retired: tuple[SigstoreInstance, TrustRoot], kind: str
) -> None:
    instance, root = retired
    statement = {
        "_type": "https://in-toto.io/Statement/v1",
        "subject": [{"name": "registry.test/acme/api", "digest": {"sha256": IMAGE}}],
        "predicateType": SLSA,
        "predicate": {"builder": {"id": "https://github.com/acme/api"}},
    }
    envelope, annotations = instance.attest_legacy(IDENTITY, statement, kind=kind)
    logged = json.loads(annotations["dev.sigstore.cosign/bundle"])["Payload"]["integratedTime"]
    result = verify_legacy_attestation(
        root,
        POLICY,
        annotations=annotations,
        envelope=envelope,
        image_digest=f"sha256:{IMAGE}",
        predicate_type=SLSA,
    )
    signed = dt.datetime.fromtimestamp(logged, dt.UTC)
    assert result == KeylessResult(False, _expected(instance, root, signed))


@pytest.mark.parametrize("name", ["new", "retired"])
def test_a_rotated_root_admits_the_new_ca_and_refuses_the_retired_one(
    tmp_path: Path, name: str
) -> None:
    """Also when the new CA has the retired one's names (only the keys tell them apart)."""
    instance = SigstoreInstance("retired")
    old, new = instance.ca, FulcioCA(instance.ct_log, name)
    document = instance.trusted_root()
    retired_at = now() - dt.timedelta(minutes=5)
    document["certificateAuthorities"] = [ca_entry(old, end=retired_at), ca_entry(new)]
    root = _root(tmp_path, document)
    refused, _ = _legacy(root, instance)
    assert not refused.ok and f"which the root retired at {retired_at:{STAMP}}" in refused.reason
    instance.ca = new
    assert _legacy(root, instance)[0].ok


def test_a_retired_ca_key_posing_as_the_current_ca_is_refused(tmp_path: Path) -> None:
    """A leaf signed with the retired CA's key but naming the current CA as its issuer."""
    instance = SigstoreInstance("retired")
    old, new = instance.ca, FulcioCA(instance.ct_log, "new")
    document = instance.trusted_root()
    retired_at = now() - dt.timedelta(minutes=5)
    document["certificateAuthorities"] = [ca_entry(old, end=retired_at), ca_entry(new)]
    root = _root(tmp_path, document)
    posing = copy.copy(old)
    posing.intermediate = new.intermediate  # the issuer name written into the leaf
    instance.ca = posing
    result, _ = _legacy(root, instance)
    assert not result.ok
    assert "does not chain to a Fulcio CA of the trusted root" in result.reason, result.reason


def test_every_signing_time_must_fall_in_the_window(tmp_path: Path) -> None:
    """A log time inside the window does not excuse a timestamp authority's time after it."""
    instance = SigstoreInstance("retired")
    instance.tsa = TimestampAuthority()
    instance.ca_end = now() - dt.timedelta(seconds=10)
    root = _root(tmp_path, instance.trusted_root())
    cert, signature, entry = instance.sign_blob(
        IDENTITY, PAYLOAD, when=now() - dt.timedelta(seconds=20)
    )
    document = bundle(
        cert, entry, signature=signature, digest_hex=hashlib.sha256(PAYLOAD).hexdigest()
    )
    stamped = now()
    stamp = base64.b64encode(instance.tsa.stamp(signature, stamped)).decode()
    document["verificationMaterial"]["timestampVerificationData"] = {
        "rfc3161Timestamps": [{"signedTimestamp": stamp}]
    }
    parsed = parse_bundle(json.dumps(document).encode())
    assert not isinstance(parsed, str), parsed
    root.verifier.verify_artifact(PAYLOAD, parsed, identity_policy(POLICY))
    problem = ca_window_problem(root, parsed)
    assert problem is not None
    assert problem.startswith(f"signed at {stamped:{STAMP}} by Fulcio CA {CA}")


def test_a_gitsign_commit_after_the_ca_was_retired_is_refused(
    retired: tuple[SigstoreInstance, TrustRoot], tmp_path: Path
) -> None:
    instance, root = retired
    repo = source_repo(tmp_path)
    unsigned = commit(repo, FILES, key=None)
    sync(repo, tmp_path, unsigned)
    raw = raw_commit(tmp_path, unsigned)
    signed = forge(tmp_path, with_signature(raw, gitsign_signature(instance, IDENTITY, raw)))
    checkout = check_out(tmp_path, signed)
    authority = GitsignAuthority("maintainers", Keyless(issuer=ISSUER, subject=SUBJECT, root=root))
    with pytest.raises(PolicySignatureError) as caught:
        verify_gitsign(read_checkout(checkout), [authority])
    assert caught.value.reason == "untrusted"
    assert f"by Fulcio CA {CA} of trusted root {root.name}, which the root retired" in str(
        caught.value
    )
    assert "sign the commit again under the root's current CA and log keys" in str(caught.value)


# Log keys ---------------------------------------------------------------------------------


def _retiring_log(
    tmp_path: Path, instance: SigstoreInstance, logs: str, at: dt.datetime
) -> TrustRoot:
    """``instance``'s root, the key of its ``tlogs`` or ``ctlogs`` log retired ``at``."""
    document = instance.trusted_root()
    document[logs][0]["publicKey"]["validFor"]["end"] = at.strftime(STAMP)
    return _root(tmp_path, document)


def test_an_entry_logged_after_the_root_retired_the_log_key_is_denied(tmp_path: Path) -> None:
    """sigstore-python verifies the signed entry timestamp with the retired key all the same."""
    instance = SigstoreInstance("retired")
    retired_at = now() - dt.timedelta(minutes=5)
    root = _retiring_log(tmp_path, instance, "tlogs", retired_at)
    result, entry = _legacy(root, instance)
    assert result.reason == (
        f"logged at {_logged(entry):{STAMP}} by transparency log 'https://rekor.trustgate.test' "
        f"of trusted root {root.name}, whose key the root retired at {retired_at:{STAMP}}; "
        "sign the image again under the root's current CA and log keys"
    )


def test_an_entry_logged_before_the_log_key_was_retired_verifies(tmp_path: Path) -> None:
    instance = SigstoreInstance("retired")
    root = _retiring_log(tmp_path, instance, "tlogs", now() - dt.timedelta(seconds=10))
    result, _ = _legacy(root, instance, when=now() - dt.timedelta(seconds=20))
    assert result.ok, result.reason


def test_an_entry_naming_no_log_key_does_not_dodge_the_window(tmp_path: Path) -> None:
    """sigstore-python tries every key for a log ID it does not know: each must be in time."""
    instance = SigstoreInstance("retired")
    root = _retiring_log(tmp_path, instance, "tlogs", now() - dt.timedelta(minutes=5))
    instance.tlog.log_id = hashlib.sha256(b"no such log").digest()
    result, _ = _legacy(root, instance)
    assert not result.ok
    assert "whose key the root retired at" in result.reason
    assert "(it names no key of the root; each was tried)" in result.reason


def test_a_certificate_timestamped_after_the_root_retired_the_ct_key_is_denied(
    tmp_path: Path,
) -> None:
    instance = SigstoreInstance("retired")
    retired_at = now() - dt.timedelta(minutes=5)
    root = _retiring_log(tmp_path, instance, "ctlogs", retired_at)
    issued = now() - dt.timedelta(seconds=30)  # the SCT's time: the certificate's start
    cert, signature, entry = instance.sign_digest(IDENTITY, IMAGE, not_before=issued)
    parsed = parse_bundle(
        json.dumps(bundle(cert, entry, signature=signature, digest_hex=IMAGE)).encode()
    )
    assert not isinstance(parsed, str), parsed
    result = verify_bundle(root, POLICY, parsed, image_digest=f"sha256:{IMAGE}")
    assert not result.ok
    assert result.reason.startswith(
        f"certificate timestamp (SCT) signed at {issued:{STAMP}} by CT log "
        f"'https://ctfe.trustgate.test' of trusted root {root.name}, "
        f"whose key the root retired at {retired_at:{STAMP}}"
    )
