"""Sigstore bundles signed with a key, as ``cosign sign --key`` writes them since cosign 3.

Such a bundle (v0.3, or older) holds a public-key hint instead of a
certificate, and either a DSSE envelope of an in-toto statement (predicate
type ``https://sigstore.dev/cosign/sign/v1``, subject the image digest: what
cosign 3 writes by default) or a message signature over the image manifest
digest. Transparency-log entries are optional; so are RFC 3161 timestamps.

sigstore-python 4.5 verifies certificate bundles only: its ``Bundle`` refuses
a bundle without a certificate and its ``Verifier`` takes the signing key from
the certificate. So the pieces are verified here, following the bundle
specification, with the bundle models of ``sigstore_models``:

- the signature, with the policy's key (``keys.verify`` over the DSSE
  pre-authentication encoding, ``keys.verify_digest`` over the digest); the
  key hint in the bundle is only a hint and is never trusted;
- what was signed, by the same rules as every other form (``rules.py``);
- with ``tlog: required``, one log entry of the authority's trusted root:
  its inclusion proof, signed checkpoint and signed entry timestamp are
  checked by sigstore-python's log entry model, its body here (hashedrekord
  and dsse v0.0.1 of Rekor v1; hashedrekord v0.0.2 of Rekor v2);
- RFC 3161 timestamps, when the bundle carries them and the authority has a
  trusted root: each must verify with a timestamp authority of that root
  (``rfc3161-client``, as sigstore-python does).

The same bundles carry attestations (``cosign attest --key`` since cosign
3): a DSSE envelope of a statement of the attestation's predicate type.
``verify_key_attestations`` returns the statements that verified, so the
attestation check can apply its conditions to them; a message-signature
bundle signs only a digest and is never an attestation.

Sans-I/O: bytes in, a result out; nothing raises.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from types import MappingProxyType

from pydantic import ValidationError
from rfc3161_client import TimeStampResponse, decode_timestamp_response
from rfc3161_client.errors import VerificationError as TimestampError
from rfc3161_client.verify import VerifierBuilder
from sigstore_models.bundle import v1 as bundle_v1

from webhook.signatures.cosign import MAX_DSSE_SIGNATURES, pae
from webhook.signatures.keyless import (
    BUNDLE_MEDIA_TYPES,
    COSIGN_SIGN_PREDICATE,
    statement_payload_problem,
)
from webhook.signatures.rules import message_signature_problem, statement_problem
from webhook.signatures.tlog import (
    dsse_key_problem,
    dsse_v2_problem,
    entry_proof_problem,
    hashedrekord_problem,
    hashedrekord_v2_problem,
)
from webhook.trust.keys import PublicKey, verify, verify_digest
from webhook.trust.trustroot import TrustRoot

#: At most this many log entries and timestamps of one bundle are looked at.
MAX_ENTRIES = 4
MAX_TIMESTAMPS = 4

# How telling a failure is, as for ``.sig`` layers: a bundle that verified with
# the key but breaks a rule says more than one that did not verify at all.
MALFORMED, UNVERIFIED, VERIFIED, UNLOGGED = 0, 1, 2, 3


@dataclass(frozen=True, slots=True)
class KeyBundleResult:
    """What one key bundle concluded: ``ok``, or ``reason`` with how telling it is.

    ``statement`` is the JSON text of the verified in-toto statement of a DSSE
    bundle (empty for a message signature), for rules over what it says.
    """

    ok: bool
    reason: str = ""
    rank: int = MALFORMED
    statement: str = ""


def _failed(rank: int, reason: str) -> KeyBundleResult:
    return KeyBundleResult(False, reason, rank)


def parse_key_bundle(raw: bytes) -> bundle_v1.Bundle | str:
    """The bundle in ``raw`` when it is signed with a key, else why it is unusable here."""
    try:
        bundle = bundle_v1.Bundle.from_json(raw)
    except RecursionError:
        return "malformed Sigstore bundle: nested too deeply to read"
    except (ValidationError, ValueError, TypeError) as exc:
        return f"malformed Sigstore bundle: {_first_line(exc)}"
    if bundle.media_type not in BUNDLE_MEDIA_TYPES:
        return f"unsupported bundle media type {bundle.media_type[:80]!r}"
    material = bundle.verification_material
    if material.public_key is None:
        return "the bundle is signed with a certificate (keyless), not with a key"
    if (bundle.message_signature is None) == (bundle.dsse_envelope is None):
        return "malformed Sigstore bundle: needs exactly one of a message signature or an envelope"
    return bundle


def verify_key_bundle(
    bundle: bundle_v1.Bundle,
    key: PublicKey,
    key_name: str,
    *,
    image_digest: str,
    repository: str,
    required_annotations: Mapping[str, str] = MappingProxyType({}),
    check_reference: bool = False,
    tlog_root: TrustRoot | None = None,
    timestamp_root: TrustRoot | None = None,
    predicate_type: str = COSIGN_SIGN_PREDICATE,
) -> KeyBundleResult:
    """Whether ``bundle`` is ``key``'s signature of ``image_digest`` meeting every rule.

    ``tlog_root`` (with ``tlog: required``) demands a log entry of that root
    recording this signature; ``timestamp_root`` verifies the bundle's RFC
    3161 timestamps, if any, against its timestamp authorities.
    """
    signed = _signed(bundle, key, key_name, image_digest, predicate_type)
    if isinstance(signed, KeyBundleResult):
        return signed
    signature, statement = signed
    if statement is None:
        problem = message_signature_problem(
            required_annotations=required_annotations, check_reference=check_reference
        )
    else:
        problem = statement_problem(
            statement,
            image_digest=image_digest,
            repository=repository,
            required_annotations=required_annotations,
            check_reference=check_reference,
        )
    if problem is not None:
        return _failed(VERIFIED, problem)
    if timestamp_root is not None:
        problem = timestamps_problem(bundle, signature, timestamp_root)
        if problem is not None:
            return _failed(VERIFIED, f"signature verifies with key {key_name}, but {problem}")
    if tlog_root is not None:
        problem = _log_problem(bundle, signature, key, tlog_root, image_digest)
        if problem is not None:
            return _failed(UNLOGGED, f"signature verifies with key {key_name}, but {problem}")
    text = "" if statement is None else json.dumps(statement, sort_keys=True)
    return KeyBundleResult(True, f"signed with key {key_name}", statement=text)


def verify_key_bundles(
    documents: Sequence[bytes | str],
    key: PublicKey,
    key_name: str,
    *,
    image_digest: str,
    repository: str,
    required_annotations: Mapping[str, str],
    check_reference: bool,
    root: TrustRoot | None,
) -> KeyBundleResult:
    """The first of ``documents`` (bundle JSON, or why it could not be read) that
    ``verify_key_bundle`` accepts, else the most telling failure.

    ``root`` is the trusted root of an authority with ``tlog: required``: it
    verifies the log entries and the signed timestamps.
    """
    failures: list[KeyBundleResult] = []
    for document in documents:
        bundle = document if isinstance(document, str) else parse_key_bundle(document)
        if isinstance(bundle, str):
            outcome = _failed(MALFORMED, bundle)
        else:
            outcome = verify_key_bundle(
                bundle,
                key,
                key_name,
                image_digest=image_digest,
                repository=repository,
                required_annotations=required_annotations,
                check_reference=check_reference,
                tlog_root=root,
                timestamp_root=root,
            )
        if outcome.ok:
            return outcome
        failures.append(outcome)
    return _most_telling(failures)


def verify_key_attestations(
    documents: Sequence[bytes | str],
    key: PublicKey,
    key_name: str,
    *,
    image_digest: str,
    repository: str,
    predicate_type: str,
) -> tuple[tuple[str, ...], KeyBundleResult]:
    """The statements (JSON text) of ``predicate_type`` about ``image_digest`` that
    ``key`` signed in the DSSE bundles of ``documents``; when none, the most
    telling failure.

    Every bundle is tried, not only up to the first that verifies: rules over
    what the statement says (``conditions``) may hold for one and not another.
    """
    statements: list[str] = []
    failures: list[KeyBundleResult] = []
    for document in documents:
        bundle = document if isinstance(document, str) else parse_key_bundle(document)
        if isinstance(bundle, str):
            outcome = _failed(MALFORMED, bundle)
        elif bundle.dsse_envelope is None:
            outcome = _failed(MALFORMED, _not_an_attestation(predicate_type))
        else:
            outcome = verify_key_bundle(
                bundle,
                key,
                key_name,
                image_digest=image_digest,
                repository=repository,
                predicate_type=predicate_type,
            )
            if outcome.ok and not isinstance(json.loads(outcome.statement).get("predicate"), dict):
                outcome = _failed(VERIFIED, "signed statement's predicate is not an object")
        if outcome.ok:
            statements.append(outcome.statement)
        else:
            failures.append(outcome)
    if statements:
        return tuple(statements), KeyBundleResult(True, f"attested with key {key_name}")
    return (), _most_telling(failures)


def _most_telling(failures: Sequence[KeyBundleResult]) -> KeyBundleResult:
    """The highest-ranked of ``failures`` (the first among equals), noting how many others."""
    if not failures:
        return _failed(MALFORMED, "no Sigstore bundle")
    best = max(failures, key=lambda outcome: outcome.rank)  # the first of the highest rank
    more = f" (and {len(failures) - 1} other bundles failed)" if len(failures) > 1 else ""
    return _failed(best.rank, best.reason + more)


def _not_an_attestation(predicate_type: str) -> str:
    return (
        "a message-signature bundle signs the bare digest; it is no attestation "
        f"of predicate type {predicate_type}"
    )


def _signed(
    bundle: bundle_v1.Bundle, key: PublicKey, key_name: str, image_digest: str, predicate: str
) -> tuple[bytes, dict[str, object] | None] | KeyBundleResult:
    """The signature that verified and the statement it signed (None for a message signature)."""
    envelope = bundle.dsse_envelope
    if envelope is None:
        message = bundle.message_signature
        assert message is not None
        if predicate != COSIGN_SIGN_PREDICATE:
            return _failed(MALFORMED, _not_an_attestation(predicate))
        algorithm, _, hex_digest = image_digest.partition(":")
        if algorithm != "sha256":
            return _failed(
                MALFORMED, f"message-signature bundles sign sha256 digests, not {algorithm}"
            )
        digest = bytes.fromhex(hex_digest)
        claimed = message.message_digest
        if claimed is not None and bytes(claimed.digest) != digest:
            return _failed(
                UNVERIFIED,
                f"the bundle signs another artifact ({bytes(claimed.digest).hex()[:64]})",
            )
        signature = bytes(message.signature)
        if not verify_digest(key, signature, digest):
            return _failed(UNVERIFIED, f"bundle signature does not verify with key {key_name}")
        return signature, None
    payload = bytes(envelope.payload)
    signed = pae(envelope.payload_type, payload)
    for entry in envelope.signatures[:MAX_DSSE_SIGNATURES]:
        signature = bytes(entry.sig)
        if verify(key, signature, signed):
            break
    else:
        return _failed(UNVERIFIED, f"bundle envelope does not verify with key {key_name}")
    problem = statement_payload_problem(envelope.payload_type, payload, image_digest, predicate)
    if problem is not None:
        return _failed(VERIFIED, problem)
    statement: dict[str, object] = json.loads(payload)
    return signature, statement


def _log_problem(
    bundle: bundle_v1.Bundle,
    signature: bytes,
    key: PublicKey,
    root: TrustRoot,
    image_digest: str,
) -> str | None:
    """None when a log entry of ``root`` records this signature, else why none does."""
    entries = bundle.verification_material.tlog_entries or []
    if not entries:
        return "the bundle has no transparency-log entry (tlog: required)"
    reasons: list[str] = []
    for entry in entries[:MAX_ENTRIES]:
        problem = entry_proof_problem(root, entry) or _body_problem(
            bundle,
            bytes(entry.canonicalized_body),
            entry.kind_version,
            signature,
            key,
            image_digest,
        )
        if problem is None:
            return None
        reasons.append(problem)
    return reasons[0]


def _body_problem(
    bundle: bundle_v1.Bundle,
    body: bytes,
    kind: object,
    signature: bytes,
    key: PublicKey,
    image_digest: str,
) -> str | None:
    """Why a log entry's body is not the record of this bundle's signature, or None."""
    kind_version = (getattr(kind, "kind", ""), getattr(kind, "version", ""))
    envelope = bundle.dsse_envelope
    if kind_version == ("hashedrekord", "0.0.2"):
        if envelope is None:
            digest = bytes.fromhex(image_digest.partition(":")[2])
        else:
            digest = hashlib.sha256(pae(envelope.payload_type, bytes(envelope.payload))).digest()
        return hashedrekord_v2_problem(body, signature, key, digest)
    if envelope is None and kind_version == ("hashedrekord", "0.0.1"):
        return hashedrekord_problem(body, signature, key, image_digest.partition(":")[2])
    if envelope is not None and kind_version == ("dsse", "0.0.1"):
        return dsse_key_problem(body, bytes(envelope.payload), signature, key)
    if envelope is not None and kind_version == ("dsse", "0.0.2"):
        return dsse_v2_problem(body, bytes(envelope.payload), signature, key)
    shown = "/".join(str(part)[:24] for part in kind_version)
    form = "message signature" if envelope is None else "DSSE envelope"
    return f"log entry of kind {shown!r} is not supported for a {form} signed with a key"


def timestamps_problem(bundle: bundle_v1.Bundle, signature: bytes, root: TrustRoot) -> str | None:
    """Why the bundle's RFC 3161 timestamps are not all from timestamp authorities of
    ``root`` over ``signature``, or None (also when it carries none)."""
    data = bundle.verification_material.timestamp_verification_data
    stamps = list(data.rfc3161_timestamps) if data is not None else []
    if not stamps:
        return None
    if len(stamps) > MAX_TIMESTAMPS:
        return f"the bundle carries {len(stamps)} signed timestamps; at most {MAX_TIMESTAMPS}"
    if not root.timestamp_authorities:
        return (
            f"the bundle carries a signed timestamp and trusted root {root.name} names no "
            "timestamp authority"
        )
    for number, stamp in enumerate(stamps):
        try:
            response = decode_timestamp_response(bytes(stamp.signed_timestamp))
        except ValueError:
            return f"signed timestamp {number} is not an RFC 3161 timestamp response"
        if not _timestamp_verifies(response, signature, root):
            return (
                f"signed timestamp {number} does not verify with a timestamp authority of "
                f"trusted root {root.name}, or was made outside its validity"
            )
    return None


def _timestamp_verifies(response: TimeStampResponse, signature: bytes, root: TrustRoot) -> bool:
    """Whether a timestamp authority of ``root`` signed ``response`` over ``signature``,
    within that authority's validity period."""
    when = response.tst_info.gen_time
    for authority in root.timestamp_authorities:
        chain = authority.certificates(allow_expired=True)
        if len(chain) < 2:
            continue
        builder = VerifierBuilder().tsa_certificate(chain[0]).add_root_certificate(chain[-1])
        for intermediate in chain[1:-1]:
            builder = builder.add_intermediate_certificate(intermediate)
        try:
            builder.build().verify_message(response, signature)
        except TimestampError:
            continue
        start, end = authority.validity_period_start, authority.validity_period_end
        if start <= when and (end is None or when < end):
            return True
    return False


def _first_line(exc: BaseException) -> str:
    if isinstance(exc, ValidationError) and exc.errors():
        first = exc.errors()[0]
        where = ".".join(str(part) for part in first.get("loc", ())) or "document"
        return f"{where}: {first.get('msg', 'invalid')}"[:300]
    lines = str(exc).strip().splitlines()
    return (lines[0] if lines else type(exc).__name__)[:300]
