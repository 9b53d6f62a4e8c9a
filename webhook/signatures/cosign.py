"""cosign's formats: ``.sig`` tag signatures, simple signing payloads, DSSE envelopes.

Sans-I/O: callers hand over the signature manifest they fetched and a
``fetch_blob(digest, size)`` callback that returns a blob's bytes after
checking them against ``digest``. Nothing here opens a socket or a file.

A cosign key signature is one layer of the manifest at tag
``sha256-<hex>.sig``: the layer blob is the simple signing JSON payload, and
the layer's ``dev.cosignproject.cosign/signature`` annotation is the
base64 signature over exactly those bytes.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, NoReturn

from webhook.core.errors import CheckFailed, ImageReferenceError
from webhook.core.untrusted import (
    DuplicateKey,
    NestedTooDeep,
    json_value,
    quoted,
    shown,
    unique_keys,
)
from webhook.signatures.rules import annotations_problem, reference_problem
from webhook.signatures.rules import statement_subject_matches as statement_subject_matches
from webhook.signatures.tlog import BUNDLE_ANNOTATION, verify_key_entry
from webhook.trust.keys import PublicKey, verify
from webhook.trust.trustroot import TrustRoot

SIMPLESIGNING_MEDIA_TYPE = "application/vnd.dev.cosign.simplesigning.v1+json"
SIGNATURE_ANNOTATION = "dev.cosignproject.cosign/signature"
DSSE_MEDIA_TYPE = "application/vnd.dsse.envelope.v1+json"
IN_TOTO_PAYLOAD_TYPE = "application/vnd.in-toto+json"
#: The in-toto Statement versions accepted.
STATEMENT_TYPES = frozenset(
    {"https://in-toto.io/Statement/v0.1", "https://in-toto.io/Statement/v1"}
)
COSIGN_SIGNATURE_TYPE = "cosign container image signature"

#: At most this many signature layers of one manifest are looked at.
MAX_SIGNATURE_LAYERS = 32
#: Declared layer sizes above this are refused before anything is fetched.
MAX_PAYLOAD_SIZE = 64 * 1024
#: At most this many signatures of one DSSE envelope are tried.
MAX_DSSE_SIGNATURES = 16

_DIGEST = re.compile(r"(sha256:[0-9a-f]{64}|sha512:[0-9a-f]{128})")
_URLSAFE_B64 = re.compile(r"[A-Za-z0-9_-]*={0,2}")

# How informative a layer's failure is: a layer whose signature verified says
# more about what went wrong than one that did not verify at all, and one
# signed for this image but missing its log entry says the most.
_MALFORMED, _UNVERIFIED, _VERIFIED, _UNLOGGED = 0, 1, 2, 3


class SignatureInvalid(CheckFailed):
    """A signed payload or envelope is malformed or says something unacceptable."""


def signature_tag(digest: str) -> str:
    """The tag cosign stores signatures of ``digest`` under: ``sha256-<hex>.sig``.

    Raises ImageReferenceError when ``digest`` is not a full sha256/sha512 digest.
    """
    return f"{_tag_stem(digest)}.sig"


def attestation_tag(digest: str) -> str:
    """The tag cosign stores attestations of ``digest`` under: ``sha256-<hex>.att``.

    Raises ImageReferenceError when ``digest`` is not a full sha256/sha512 digest.
    """
    return f"{_tag_stem(digest)}.att"


def _tag_stem(digest: str) -> str:
    if not _DIGEST.fullmatch(digest):
        raise ImageReferenceError(f"{digest!r} is not a full lowercase sha256 or sha512 digest")
    return digest.replace(":", "-", 1)


@dataclass(frozen=True, slots=True)
class SimpleSigning:
    """The fields of a simple signing payload that verification looks at.

    ``optional`` keeps the string-valued annotations only: annotations that
    policies require are strings, and other values could never match one.
    """

    docker_manifest_digest: str
    docker_reference: str
    type: str
    optional: Mapping[str, str] = field(default_factory=dict, hash=False)


def parse_payload(payload: bytes) -> SimpleSigning:
    """Parse a simple signing JSON payload.

    Raises SignatureInvalid naming what is wrong: not UTF-8 JSON, duplicate
    keys, or a missing or mistyped ``critical.type``,
    ``critical.image.docker-manifest-digest``, ``critical.identity`` or
    ``optional``.
    """
    try:
        document = json_value(
            payload.decode("utf-8"),
            object_pairs_hook=unique_keys,
            parse_constant=_no_constant,
        )
    except DuplicateKey as exc:
        raise SignatureInvalid(f"payload has the key {json.dumps(exc.key)} twice") from None
    except UnicodeDecodeError:
        raise SignatureInvalid("payload is not UTF-8") from None
    except NestedTooDeep:
        raise SignatureInvalid("payload is nested too deeply to read") from None
    except json.JSONDecodeError as exc:
        raise SignatureInvalid(
            f"payload is not valid JSON: {exc.msg} at offset {exc.pos}"
        ) from None
    except ValueError as exc:  # a number of more than 4,300 digits
        raise SignatureInvalid(f"payload is not usable JSON: {exc}") from None
    if not isinstance(document, dict):
        raise SignatureInvalid(f"payload is a JSON {_json_kind(document)}, not an object")
    critical = _object(document, "critical", "critical")
    image = _object(critical, "image", "critical.image")
    digest = _string(image, "docker-manifest-digest", "critical.image.docker-manifest-digest")
    kind = _string(critical, "type", "critical.type")
    reference = ""
    if critical.get("identity") is not None:
        identity = _object(critical, "identity", "critical.identity")
        if identity.get("docker-reference") is not None:
            reference = _string(identity, "docker-reference", "critical.identity.docker-reference")
    optional: dict[str, str] = {}
    if document.get("optional") is not None:
        extra = _object(document, "optional", "optional")
        optional = {key: value for key, value in extra.items() if isinstance(value, str)}
    return SimpleSigning(digest, reference, kind, MappingProxyType(optional))


def _no_constant(name: str) -> NoReturn:
    raise SignatureInvalid(f"payload contains {name}, which is not JSON")


def _json_kind(value: object) -> str:
    if isinstance(value, list):
        return "array"
    if isinstance(value, str):
        return "string"
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    return "number"


def _object(parent: dict[str, Any], key: str, path: str) -> dict[str, Any]:
    value = parent.get(key)
    if not isinstance(value, dict):
        kind = "missing" if value is None else f"a {_json_kind(value)}"
        raise SignatureInvalid(f'payload field "{path}" must be an object, not {kind}')
    return value


def _string(parent: dict[str, Any], key: str, path: str) -> str:
    value = parent.get(key)
    if not isinstance(value, str):
        kind = "missing" if value is None else f"a {_json_kind(value)}"
        raise SignatureInvalid(f'payload field "{path}" must be a string, not {kind}')
    return value


@dataclass(frozen=True, slots=True)
class KeyVerification:
    """The outcome of checking one signature manifest against one key.

    ``reason`` says why, in a phrase that fits after "signature check failed:".
    ``payload`` is the accepted payload when ``ok``, else None.
    """

    ok: bool
    reason: str
    payload: SimpleSigning | None = None


@dataclass(frozen=True, slots=True)
class _LayerFailure:
    rank: int
    reason: str


def verify_with_key(
    manifest: Mapping[str, Any],
    fetch_blob: Callable[[str, int], bytes],
    *,
    image_digest: str,
    repository: str,
    key: PublicKey,
    key_name: str,
    required_annotations: Mapping[str, str] = MappingProxyType({}),
    check_reference: bool = False,
    max_payload_size: int = MAX_PAYLOAD_SIZE,
    tlog_root: TrustRoot | None = None,
) -> KeyVerification:
    """Whether a layer of the ``.sig`` ``manifest`` is ``key``'s signature for ``image_digest``.

    A layer passes when its simple signing payload verifies with ``key``,
    has cosign's signature type, names ``image_digest``, carries every
    ``required_annotations`` entry in ``optional`` and, with
    ``check_reference``, names ``repository`` (tags, digests and Docker Hub
    spellings aside). The first passing layer wins; otherwise the reason is
    that of the most telling failure, preferring what a verified payload got
    wrong over signatures that did not verify. Only the first
    MAX_SIGNATURE_LAYERS signature layers are looked at, and layers
    declaring more than ``max_payload_size`` bytes are never fetched. With
    ``tlog_root``, a layer passes only when its transparency-log entry
    (``dev.sigstore.cosign/bundle``) is from a log of that trusted root and
    records this signature, this key and this payload (``tlog.verify_key_entry``).

    Returns a KeyVerification; a bad manifest or signature never raises.
    Whatever ``fetch_blob`` raises (an UpstreamError) propagates.
    """
    layers = manifest.get("layers")
    if not isinstance(layers, list):
        return KeyVerification(False, "signature manifest has no layers list")
    candidates = [layer for layer in layers if _is_signature_layer(layer)]
    if not candidates:
        return KeyVerification(False, "no signature layers")
    best: _LayerFailure | None = None
    for layer in candidates[:MAX_SIGNATURE_LAYERS]:
        outcome = _check_layer(
            layer,
            fetch_blob,
            image_digest=image_digest,
            repository=repository,
            key=key,
            key_name=key_name,
            required_annotations=required_annotations,
            check_reference=check_reference,
            max_payload_size=max_payload_size,
            tlog_root=tlog_root,
        )
        if isinstance(outcome, SimpleSigning):
            return KeyVerification(True, f"signed with key {key_name}", outcome)
        if best is None or outcome.rank > best.rank:
            best = outcome
    assert best is not None
    reason = best.reason
    if len(candidates) > MAX_SIGNATURE_LAYERS:
        reason += (
            f" (looked at the first {MAX_SIGNATURE_LAYERS} of {len(candidates)} signature layers)"
        )
    return KeyVerification(False, reason)


def _is_signature_layer(layer: object) -> bool:
    if not isinstance(layer, dict) or layer.get("mediaType") != SIMPLESIGNING_MEDIA_TYPE:
        return False
    annotations = layer.get("annotations")
    return isinstance(annotations, dict) and SIGNATURE_ANNOTATION in annotations


def _check_layer(
    layer: dict[str, Any],
    fetch_blob: Callable[[str, int], bytes],
    *,
    image_digest: str,
    repository: str,
    key: PublicKey,
    key_name: str,
    required_annotations: Mapping[str, str],
    check_reference: bool,
    max_payload_size: int,
    tlog_root: TrustRoot | None,
) -> SimpleSigning | _LayerFailure:
    digest, size = layer.get("digest"), layer.get("size")
    if not isinstance(digest, str) or not _DIGEST.fullmatch(digest):
        return _LayerFailure(_MALFORMED, "signature layer has no valid digest")
    if not isinstance(size, int) or isinstance(size, bool) or size < 0:
        return _LayerFailure(_MALFORMED, f"signature layer {digest} has no valid size")
    if size > max_payload_size:
        return _LayerFailure(
            _MALFORMED,
            f"signature layer {digest} is {size} bytes; payloads over {max_payload_size} "
            "bytes are not fetched",
        )
    signature = _b64_strict(layer["annotations"][SIGNATURE_ANNOTATION])
    if signature is None:
        return _LayerFailure(
            _MALFORMED, f"signature annotation of layer {digest} is not valid base64"
        )
    payload = fetch_blob(digest, size)
    if len(payload) > max_payload_size:
        return _LayerFailure(
            _MALFORMED, f"signature layer {digest} is over {max_payload_size} bytes"
        )
    if not verify(key, signature, payload):
        return _LayerFailure(_UNVERIFIED, f"signature does not verify with key {key_name}")
    try:
        signed = parse_payload(payload)
    except SignatureInvalid as exc:
        return _LayerFailure(_VERIFIED, f"signed {exc.message}")
    problem = payload_problem(
        signed,
        image_digest=image_digest,
        repository=repository,
        required_annotations=required_annotations,
        check_reference=check_reference,
    )
    if problem is not None:
        return _LayerFailure(_VERIFIED, problem)
    if tlog_root is not None:
        unlogged = verify_key_entry(
            tlog_root,
            layer["annotations"].get(BUNDLE_ANNOTATION),
            signature=signature,
            key=key,
            payload=payload,
        )
        if unlogged is not None:
            reason = f"signature verifies with key {key_name}, but {unlogged}"
            return _LayerFailure(_UNLOGGED, reason)
    return signed


def payload_problem(
    signed: SimpleSigning,
    *,
    image_digest: str,
    repository: str,
    required_annotations: Mapping[str, str],
    check_reference: bool,
) -> str | None:
    """Why a verified simple signing payload does not count for the image, or None.

    It must be cosign's signature type, name ``image_digest``, and meet the
    policy's rules (``rules.annotations_problem``, ``rules.reference_problem``).
    """
    if signed.type != COSIGN_SIGNATURE_TYPE:
        return f"payload type {quoted(signed.type)} is not {quoted(COSIGN_SIGNATURE_TYPE)}"
    if signed.docker_manifest_digest != image_digest:
        digest = shown(signed.docker_manifest_digest)
        return f"signed payload is for digest {digest} not {image_digest}"
    problem = annotations_problem(signed.optional, required_annotations)
    if problem is None and check_reference:
        problem = reference_problem(signed.docker_reference, repository)
    return problem


def _b64_strict(value: object) -> bytes | None:
    """Standard padded base64 as cosign writes it; None for anything else."""
    if not isinstance(value, str):
        return None
    try:
        return base64.b64decode(value, validate=True)
    except binascii.Error:
        return None


def pae(payload_type: str, payload: bytes) -> bytes:
    """DSSE v1 pre-authentication encoding: what a DSSE signature signs."""
    kind = payload_type.encode("utf-8")
    return b"DSSEv1 %d %b %d %b" % (len(kind), kind, len(payload), payload)


def verify_dsse(envelope: Mapping[str, Any], key: PublicKey) -> bytes | None:
    """The payload of ``envelope`` when one of its signatures verifies with ``key``.

    The signature covers ``payloadType`` too (through PAE), so a caller may
    trust ``envelope["payloadType"]`` once this returns bytes. Only the first
    MAX_DSSE_SIGNATURES signatures are tried. Returns None for a malformed
    envelope or when no signature verifies; never raises.
    """
    payload_type = envelope.get("payloadType")
    encoded = envelope.get("payload")
    signatures = envelope.get("signatures")
    if not isinstance(payload_type, str) or not isinstance(signatures, list):
        return None
    payload = _b64_either(encoded)
    if payload is None:
        return None
    message = pae(payload_type, payload)
    for entry in signatures[:MAX_DSSE_SIGNATURES]:
        if not isinstance(entry, dict):
            continue
        signature = _b64_either(entry.get("sig"))
        if signature is not None and verify(key, signature, message):
            return payload
    return None


def _b64_either(value: object) -> bytes | None:
    """Standard or URL-safe base64, as DSSE allows; None when neither."""
    standard = _b64_strict(value)
    if standard is not None or not isinstance(value, str):
        return standard
    if not _URLSAFE_B64.fullmatch(value):
        return None
    try:
        return base64.urlsafe_b64decode(value + "=" * (-len(value) % 4))
    except binascii.Error:
        return None
