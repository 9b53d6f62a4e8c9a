"""Transparency-log (Rekor) entries as cosign keeps them on a ``.sig`` layer.

When ``cosign sign`` uploads a signature to Rekor, it stores the answer in
the layer's ``dev.sigstore.cosign/bundle`` annotation:
``{"SignedEntryTimestamp", "Payload": {body, integratedTime, logIndex, logID}}``.
The signed entry timestamp (SET) is the log's signature over that payload;
verified with a transparency-log key of the trusted root, it proves that the
log integrated the entry. This layout never carries a Merkle inclusion
proof, so the SET is the proof, as in ``cosign verify`` offline.

Both kinds of signature read the annotation with ``parse_cosign_entry``:

- keyless layers wrap the entry in a ``PromiseEntry`` and hand it to
  sigstore-python, which checks the SET and that the body names this
  certificate, signature and payload;
- key-signed layers of an authority with ``tlog: required`` are checked by
  ``verify_key_entry``: the log is one of the trusted root's, the SET
  verifies with its key, and the hashedrekord body holds this signature,
  this public key and this payload's SHA-256;
- keyless attestations (``.att`` layers) logged as ``intoto`` v0.0.2 entries
  are matched to their envelope by ``intoto_body_problem``; sigstore-python
  checks ``dsse`` v0.0.1 entries itself.

Sans-I/O: nothing here opens a socket; failures are returned as reasons.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
from typing import Any

from cryptography import x509
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from sigstore.errors import Error as SigstoreError
from sigstore.models import InvalidBundle, TransparencyLogEntry
from sigstore_models.common import v1 as common_v1
from sigstore_models.rekor import v1 as rekor_v1

from webhook.core.untrusted import NestedTooDeep, json_value
from webhook.core.x509read import CERTIFICATE_ERRORS
from webhook.signatures.cawindow import entry_window_problem
from webhook.trust.keys import PublicKey
from webhook.trust.trustroot import TrustRoot

BUNDLE_ANNOTATION = "dev.sigstore.cosign/bundle"
_SPKI = (serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)


class PromiseEntry(TransparencyLogEntry):
    """A Rekor entry known by its signed entry timestamp only (cosign's legacy layout).

    sigstore-python requires an inclusion proof; the legacy layout has none, so
    the signed entry timestamp, verified against the trusted root's log keys,
    is the proof of inclusion here.
    """

    def _validate(self) -> None:
        if self._inner.inclusion_promise is None:
            raise InvalidBundle("log entry has no signed entry timestamp")

    def _verify(self, keyring: Any) -> None:
        self._verify_set(keyring)


def parse_cosign_entry(text: str) -> rekor_v1.TransparencyLogEntry:
    """The entry of a ``dev.sigstore.cosign/bundle`` annotation, as sigstore-python models it.

    Raises:
        ValueError: the text is not such an entry (pydantic's ValidationError,
            binascii.Error and JSONDecodeError are ValueErrors too).
    """
    document = _json(text)
    if not isinstance(document, dict) or not isinstance(document.get("Payload"), dict):
        raise ValueError("transparency log entry is not a JSON object with a Payload")
    entry = document["Payload"]
    body = entry.get("body")
    if not isinstance(body, str):
        raise ValueError("transparency log entry has no body")
    kind = _json(base64.b64decode(body, validate=True))
    if not isinstance(kind, dict):
        raise ValueError("transparency log entry body is not a JSON object")
    missing = [name for name in ("logIndex", "logID", "integratedTime") if name not in entry]
    if missing:
        raise ValueError(f"transparency log entry has no {', '.join(missing)}")
    try:
        index = int(entry["logIndex"])
        integrated = int(entry["integratedTime"])
    except TypeError as exc:
        raise ValueError(f"transparency log entry has a non-integer index or time: {exc}") from None
    validated = rekor_v1.TransparencyLogEntry(
        log_index=str(index),  # type: ignore[arg-type]
        log_id=common_v1.LogId(key_id=base64.b64encode(bytes.fromhex(str(entry["logID"])))),
        kind_version=rekor_v1.KindVersion(
            kind=str(kind.get("kind")), version=str(kind.get("apiVersion"))
        ),
        integrated_time=str(integrated),  # type: ignore[arg-type]
        inclusion_promise=rekor_v1.InclusionPromise(
            signed_entry_timestamp=str(document.get("SignedEntryTimestamp"))  # type: ignore[arg-type]
        ),
        # The model requires a proof; this placeholder is dropped below and
        # never verified (PromiseEntry checks the signed entry timestamp).
        inclusion_proof=rekor_v1.InclusionProof(
            log_index=str(index),  # type: ignore[arg-type]
            root_hash=b"",
            tree_size=str(index + 1),  # type: ignore[arg-type]
            hashes=[],
            checkpoint=rekor_v1.Checkpoint(envelope=""),
        ),
        canonicalized_body=body,  # type: ignore[arg-type]
    )
    return validated.model_copy(update={"inclusion_proof": None})


def verify_key_entry(
    root: TrustRoot, text: object, *, signature: bytes, key: PublicKey, payload: bytes
) -> str | None:
    """None when ``text`` proves that ``root``'s log recorded this key signature, else why not.

    ``text`` is the layer's ``dev.sigstore.cosign/bundle`` annotation (None
    when absent), ``signature`` the layer's signature that ``key`` verified
    over ``payload``. The entry must come from a log of ``root`` (its log ID
    names one of the root's logs), its SET must verify with that log's key,
    and its hashedrekord body must name exactly this signature, this key and
    the SHA-256 of this payload.
    """
    if not isinstance(text, str):
        return f"no transparency-log entry ({BUNDLE_ANNOTATION} annotation)"
    try:
        entry = parse_cosign_entry(text)
        promise = PromiseEntry(entry)
    except (ValueError, SigstoreError) as exc:
        return f"malformed transparency-log entry: {_first_line(exc)}"
    log_id = bytes(entry.log_id.key_id)
    if log_id not in root.log_ids:
        return (
            f"log entry signed by an unknown log (log ID {log_id.hex()[:16]}... is not a "
            f"transparency log of trusted root {root.name})"
        )
    try:
        promise._verify_set(root.rekor)
    except (SigstoreError, ValueError):
        return "log entry's signed entry timestamp does not verify with its log's key"
    return _retired_log(root, entry) or _body_problem(
        bytes(entry.canonicalized_body), signature, key, payload
    )


def _body_problem(body: bytes, signature: bytes, key: PublicKey, payload: bytes) -> str | None:
    """Why a hashedrekord ``body`` is not the record of this signature over ``payload``, or None."""
    return hashedrekord_problem(body, signature, key, hashlib.sha256(payload).hexdigest())


def hashedrekord_problem(
    body: bytes, signature: bytes, key: PublicKey, digest_hex: str
) -> str | None:
    """Why a hashedrekord v0.0.1 ``body`` is not the record of this signature, or None.

    It must name exactly ``signature``, ``key`` (a PUBLIC KEY block) and the
    SHA-256 ``digest_hex`` of what was signed.
    """
    try:
        document = json_value(body)
        kind = document.get("kind")
        if kind != "hashedrekord":
            return f"log entry is a {str(kind)[:40]!r} entry, not a hashedrekord of a signature"
        spec = document["spec"]
        logged_signature = base64.b64decode(spec["signature"]["content"], validate=True)
        logged_key = base64.b64decode(spec["signature"]["publicKey"]["content"], validate=True)
        algorithm = spec["data"]["hash"]["algorithm"]
        logged_hash = spec["data"]["hash"]["value"]
    except (ValueError, RecursionError, TypeError, KeyError, AttributeError):
        return "log entry's body is not a valid hashedrekord entry"
    if logged_signature != signature:
        return "log entry is for another signature"
    if not _same_key(logged_key, key):
        return "log entry is for another key"
    if algorithm != "sha256" or logged_hash != digest_hex:
        shown = f"{str(algorithm)[:16]}:{str(logged_hash)[:64]}"
        return f"log entry is for another artifact ({shown}, not sha256:{digest_hex})"
    return None


def hashedrekord_v2_problem(
    body: bytes, signature: bytes, key: PublicKey, digest: bytes
) -> str | None:
    """Why a Rekor v2 hashedrekord v0.0.2 ``body`` is not the record of this signature, or None.

    Rekor v2 records a message signature, and a DSSE envelope too (its
    digest then covers the envelope's pre-authentication encoding), as the
    SHA-256 ``digest``, the signature and the verifier's DER public key.
    """
    try:
        spec = _v2_spec(body, "hashedrekord", "hashedRekordV002")
        data = spec["data"]
        logged_digest = base64.b64decode(data["digest"], validate=True)
        logged = _v2_signature(spec["signature"])
    except (ValueError, RecursionError, TypeError, KeyError, AttributeError):
        return "log entry's body is not a valid hashedrekord 0.0.2 entry with a public key"
    if logged[0] != signature:
        return "log entry is for another signature"
    if logged[1] != key.public_bytes(*_SPKI):
        return "log entry is for another key"
    if data["algorithm"] != "SHA2_256" or logged_digest != digest:
        return f"log entry is for another artifact, not sha256:{digest.hex()}"
    return None


def dsse_v2_problem(body: bytes, payload: bytes, signature: bytes, key: PublicKey) -> str | None:
    """Why a Rekor v2 dsse v0.0.2 ``body`` is not the record of this key's DSSE envelope, or None.

    Rekor v2 records the payload's SHA-256 and each signature with its
    verifier's DER public key; ``signature`` by ``key`` must be among them.
    """
    try:
        spec = _v2_spec(body, "dsse", "dsseV002")
        payload_hash = spec["payloadHash"]
        logged_hash = base64.b64decode(payload_hash["digest"], validate=True)
        logged = [_v2_signature(item) for item in spec["signatures"][:16]]
    except (ValueError, RecursionError, TypeError, KeyError, AttributeError):
        return "log entry's body is not a valid dsse 0.0.2 entry with a public key"
    expected = hashlib.sha256(payload).digest()
    if payload_hash["algorithm"] != "SHA2_256" or logged_hash != expected:
        return "log entry is for another payload (its payload hash differs from this envelope's)"
    if (signature, key.public_bytes(*_SPKI)) not in logged:
        return "log entry records another signature or key"
    return None


def _json(text: str | bytes) -> Any:
    """``text`` parsed; raises ValueError, also for nesting too deep to parse."""
    try:
        return json_value(text)
    except NestedTooDeep:
        raise ValueError("transparency log entry is nested too deeply to read") from None


def _v2_spec(body: bytes, kind: str, field: str) -> dict[str, Any]:
    """The ``spec.<field>`` of a Rekor v2 entry of ``kind`` 0.0.2; raises ValueError or KeyError."""
    document = _json(body)
    if (document.get("kind"), document.get("apiVersion")) != (kind, "0.0.2"):
        raise ValueError(f"not a {kind} 0.0.2 entry")
    spec: dict[str, Any] = document["spec"][field]
    return spec


def _v2_signature(item: dict[str, Any]) -> tuple[bytes, bytes]:
    """(signature, DER public key) of a Rekor v2 ``Signature``; raises on anything else."""
    content = base64.b64decode(item["content"], validate=True)
    raw = item["verifier"]["publicKey"]["rawBytes"]
    return content, base64.b64decode(raw, validate=True)


def dsse_key_problem(body: bytes, payload: bytes, signature: bytes, key: PublicKey) -> str | None:
    """Why a dsse v0.0.1 ``body`` is not Rekor's record of this key's DSSE envelope, or None.

    Rekor records the payload's SHA-256 and each signature with its verifier
    (here the PUBLIC KEY block), base64-encoded; ``signature`` must be among them.
    """
    try:
        document = json_value(body)
        if (document.get("kind"), document.get("apiVersion")) != ("dsse", "0.0.1"):
            return "log entry is not a dsse 0.0.1 entry"
        spec = document["spec"]
        payload_hash = (spec["payloadHash"]["algorithm"], spec["payloadHash"]["value"])
        logged = [
            (
                base64.b64decode(item["signature"], validate=True),
                base64.b64decode(item["verifier"], validate=True),
            )
            for item in spec["signatures"][:16]
        ]
    except (ValueError, RecursionError, TypeError, KeyError, AttributeError):
        return "log entry's body is not a valid dsse 0.0.1 entry"
    if payload_hash != ("sha256", hashlib.sha256(payload).hexdigest()):
        return "log entry is for another payload (its payload hash differs from this envelope's)"
    if not any(sig == signature and _same_key(pem, key) for sig, pem in logged):
        return "log entry records another signature or key"
    return None


def entry_proof_problem(root: TrustRoot, entry: rekor_v1.TransparencyLogEntry) -> str | None:
    """Why ``entry`` is not proven to be in a log of ``root``, or None.

    The entry must name a log of the root. An inclusion proof with its signed
    checkpoint is verified (and the signed entry timestamp, when the entry has
    one too) by sigstore-python's log entry model; an entry with a signed
    entry timestamp only (bundle v0.1) is proven by that timestamp.
    """
    log_id = bytes(entry.log_id.key_id)
    if log_id not in root.log_ids:
        return (
            f"log entry signed by an unknown log (log ID {log_id.hex()[:16]}... is not a "
            f"transparency log of trusted root {root.name})"
        )
    proof = entry.inclusion_proof
    try:
        if proof is not None and proof.checkpoint is not None:
            TransparencyLogEntry(entry)._verify(root.rekor)
        elif entry.inclusion_promise is not None:
            PromiseEntry(entry)._verify_set(root.rekor)
        else:
            return "log entry has neither an inclusion proof nor a signed entry timestamp"
    except (SigstoreError, ValueError) as exc:
        return f"log entry does not verify with trusted root {root.name}: {_first_line(exc)}"
    return _retired_log(root, entry)


def _retired_log(root: TrustRoot, entry: rekor_v1.TransparencyLogEntry) -> str | None:
    """Why the log's key was retired by ``root`` before the entry's time (``cawindow``)."""
    problem = entry_window_problem(root, entry)
    return None if problem is None else f"{problem}; log the signature again"


def intoto_body_problem(
    body: bytes, *, envelope: bytes, payload: bytes, signature: bytes, cert: x509.Certificate
) -> str | None:
    """Why an ``intoto`` v0.0.2 ``body`` is not Rekor's record of this DSSE envelope, or None.

    ``envelope`` is the envelope JSON exactly as stored (and uploaded by
    cosign), ``payload`` its decoded payload and ``signature`` its one
    signature. Rekor records the SHA-256 of the envelope text, of the payload,
    and each signature twice base64-encoded next to the signer's PEM
    certificate, itself base64-encoded.
    """
    try:
        document = json_value(body)
        if (document.get("kind"), document.get("apiVersion")) != ("intoto", "0.0.2"):
            shown = f"{str(document.get('kind'))[:40]}/{str(document.get('apiVersion'))[:16]}"
            return f"log entry is a {shown!r} entry, not an intoto 0.0.2 record of an attestation"
        content = document["spec"]["content"]
        envelope_hash = (content["hash"]["algorithm"], content["hash"]["value"])
        payload_hash = (content["payloadHash"]["algorithm"], content["payloadHash"]["value"])
        signatures = content["envelope"]["signatures"]
        if not isinstance(signatures, list) or len(signatures) != 1:
            return "log entry does not record exactly one envelope signature"
        text = base64.b64decode(signatures[0]["sig"], validate=True)
        logged = base64.b64decode(text, validate=True)
        logged_pem = base64.b64decode(signatures[0]["publicKey"], validate=True)
    except (ValueError, RecursionError, TypeError, KeyError, AttributeError, binascii.Error):
        return "log entry's body is not a valid intoto 0.0.2 entry"
    expected = hashlib.sha256(envelope).hexdigest()
    if envelope_hash != ("sha256", expected):
        shown = f"{str(envelope_hash[0])[:16]}:{str(envelope_hash[1])[:64]}"
        return f"log entry is for another envelope ({shown}, not this envelope's sha256:{expected})"
    if payload_hash != ("sha256", hashlib.sha256(payload).hexdigest()):
        return "log entry is for another payload (its payload hash differs from this envelope's)"
    if logged != signature:
        return "log entry is for another signature"
    try:
        logged_cert = x509.load_pem_x509_certificate(logged_pem)
    except CERTIFICATE_ERRORS as exc:
        reason = _first_line(exc)
        return f"log entry's signer is not a PEM certificate cryptography can read: {reason}"
    if logged_cert != cert:
        return "log entry names another signing certificate"
    return None


def _same_key(pem: bytes, key: PublicKey) -> bool:
    """Whether ``pem`` is a PUBLIC KEY block of exactly ``key``."""
    try:
        logged = serialization.load_pem_public_key(pem)
    except (ValueError, UnsupportedAlgorithm, binascii.Error):
        return False
    return logged.public_bytes(*_SPKI) == key.public_bytes(*_SPKI)


def _first_line(exc: BaseException) -> str:
    lines = str(exc).strip().splitlines()
    return (lines[0] if lines else type(exc).__name__)[:300]
