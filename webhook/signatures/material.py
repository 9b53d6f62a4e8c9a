"""What keyless verification reads from a registry, fetched once per image digest.

``KeylessMaterial`` gathers, lazily and at most once however many keyless
authorities a policy lists: the payloads of cosign's legacy ``.sig`` layers
that carry a certificate, and the Sigstore bundles attached to the digest as
OCI referrers (the referrers API, or its ``sha256-<hex>`` tag fallback).
``verify_signature`` and ``verify_attestation`` then ask one authority;
attestations also come from cosign's legacy ``.att`` layers, which the
attestation check reads and hands over.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from sigstore.models import Bundle

from webhook.core.deadline import Deadline
from webhook.core.reference import ImageRef
from webhook.policy.model import Authority, Signatures
from webhook.registry.client import Manifest, NotFound, RegistryClient
from webhook.signatures.cosign import (
    MAX_PAYLOAD_SIZE,
    MAX_SIGNATURE_LAYERS,
    SIGNATURE_ANNOTATION,
    SIMPLESIGNING_MEDIA_TYPE,
    SignatureInvalid,
    parse_payload,
    payload_problem,
    signature_tag,
)
from webhook.signatures.envelopes import AttestationLayer
from webhook.signatures.keyless import (
    BUNDLE_MEDIA_TYPES,
    CERTIFICATE_ANNOTATION,
    KeylessResult,
    parse_bundle,
    verify_bundle,
    verify_legacy,
    verify_legacy_attestation,
)
from webhook.signatures.rules import message_signature_problem, statement_problem
from webhook.signatures.signers import Signer, certificate_signer

#: At most this many bundle referrers of one digest are fetched.
MAX_BUNDLES = 16
#: Bundles declared larger than this are never fetched; real ones are a few KiB.
MAX_BUNDLE_SIZE = 256 * 1024


@dataclass(frozen=True, slots=True)
class _Layer:
    annotations: Mapping[str, Any]
    payload: bytes | str  # the payload, or why it is unusable


class KeylessMaterial:
    """The legacy keyless layers and the bundles of one digest, fetched on first use."""

    def __init__(
        self,
        client: RegistryClient,
        image: ImageRef,
        digest: str,
        manifest: Manifest | None,
        deadline: Deadline,
    ) -> None:
        self._client = client
        self._image = image
        self._digest = digest
        self._manifest = manifest
        self._deadline = deadline
        self._layers: list[_Layer] | None = None
        self._raw_bundles: tuple[list[bytes | str], str] | None = None
        self._bundles: tuple[list[Bundle | str], str] | None = None

    def layers(self) -> list[_Layer]:
        """The ``.sig`` layers carrying a Fulcio certificate, with their payloads."""
        if self._layers is None:
            self._layers = self._read_layers()
        return self._layers

    def _read_layers(self) -> list[_Layer]:
        if self._manifest is None:
            return []
        layers = self._manifest.data.get("layers")
        found: list[_Layer] = []
        for layer in layers if isinstance(layers, list) else []:
            if len(found) == MAX_SIGNATURE_LAYERS:
                break
            if not isinstance(layer, dict) or layer.get("mediaType") != SIMPLESIGNING_MEDIA_TYPE:
                continue
            annotations = layer.get("annotations")
            if not isinstance(annotations, dict) or CERTIFICATE_ANNOTATION not in annotations:
                continue
            digest, size = layer.get("digest"), layer.get("size")
            if not isinstance(digest, str) or not isinstance(size, int) or size < 0:
                found.append(_Layer(annotations, "signature layer has no valid digest or size"))
            elif size > MAX_PAYLOAD_SIZE:
                found.append(_Layer(annotations, f"signature layer {digest} is {size} bytes"))
            else:
                payload = self._client.blob(self._image, digest, self._deadline, max_bytes=size)
                found.append(_Layer(annotations, payload))
        return found

    def bundles(self) -> tuple[list[Bundle | str], str]:
        """The bundles referring to the digest (or why each is unusable), and a note
        describing referrers of other artifact types when there is no bundle."""
        if self._bundles is None:
            raw, note = self.raw_bundles()
            parsed = [item if isinstance(item, str) else parse_bundle(item) for item in raw]
            self._bundles = parsed, note
        return self._bundles

    def raw_bundles(self) -> tuple[list[bytes | str], str]:
        """As ``bundles``, the bundle documents unparsed (key bundles parse differently)."""
        if self._raw_bundles is None:
            self._raw_bundles = self._read_bundles()
        return self._raw_bundles

    def _read_bundles(self) -> tuple[list[bytes | str], str]:
        referrers = self._client.referrers(self._image, self._digest, self._deadline)
        wanted = [r for r in referrers if r.get("artifactType") in BUNDLE_MEDIA_TYPES]
        if not wanted:
            kinds = sorted({str(r.get("artifactType") or r.get("mediaType")) for r in referrers})
            other = f"; referrers of other types: {', '.join(kinds[:4])}" if kinds else ""
            return [], f"no Sigstore bundle refers to {self._digest}{other}"
        found: list[bytes | str] = []
        for referrer in wanted[:MAX_BUNDLES]:
            found.append(self._bundle(referrer))
        return found, ""

    def _bundle(self, referrer: Mapping[str, Any]) -> bytes | str:
        digest = referrer.get("digest")
        if not isinstance(digest, str):
            return "bundle referrer has no digest"
        try:
            manifest = self._client.manifest(self._image, digest, self._deadline)
        except NotFound:
            return f"bundle referrer {digest} does not exist"
        layers = manifest.data.get("layers")
        for layer in layers if isinstance(layers, list) else []:
            if isinstance(layer, dict) and layer.get("mediaType") in BUNDLE_MEDIA_TYPES:
                blob, size = layer.get("digest"), layer.get("size")
                if not isinstance(blob, str) or not isinstance(size, int) or size < 0:
                    return f"bundle referrer {digest} has a layer without digest or size"
                if size > MAX_BUNDLE_SIZE:
                    return f"bundle of referrer {digest} is {size} bytes; over {MAX_BUNDLE_SIZE}"
                return self._client.blob(self._image, blob, self._deadline, max_bytes=size)
        return f"bundle referrer {digest} has no bundle layer"

    def verify_signature(
        self, signatures: Signatures, authority: Authority
    ) -> tuple[tuple[Signer, ...], str]:
        """Who signed the digest for ``authority`` (keyless), meeting every rule, or why none.

        With a threshold above 1 every signature is tried, not only up to the
        first that verifies: the threshold counts distinct signers
        (``signers.count_distinct``), and one authority's pattern may match
        several identities. With threshold 1 the first signer is enough, and a
        legacy signature spares the referrers round trips.
        """
        keyless = authority.keyless
        if keyless is None or keyless.root is None:
            return (), "keyless authority has no trusted root loaded"
        reasons: list[str] = []
        found: list[Signer] = []
        for layer in self.layers():
            if isinstance(layer.payload, str):
                reasons.append(layer.payload)
                continue
            result = verify_legacy(
                keyless.root,
                keyless,
                annotations=layer.annotations,
                signature_b64=layer.annotations.get(SIGNATURE_ANNOTATION),
                payload=layer.payload,
            )
            problem = (
                result.reason
                if not result.ok
                else _signed_problem(layer.payload, self._digest, self._image, signatures)
            )
            _collect(result, problem, found, reasons)
            if found and signatures.threshold == 1:
                return tuple(found), ""
        bundles, note = self.bundles()
        for bundle in bundles:
            if isinstance(bundle, str):
                reasons.append(bundle)
                continue
            outcome = verify_bundle(keyless.root, keyless, bundle, image_digest=self._digest)
            problem = (
                outcome.reason
                if not outcome.ok
                else _bundle_problem(outcome, self._digest, self._image, signatures)
            )
            _collect(outcome, problem, found, reasons)
            if found and signatures.threshold == 1:
                break
        if found:
            return tuple(dict.fromkeys(found)), ""
        if reasons:
            return (), _summary(reasons)
        legacy = (
            "" if self._manifest is not None else f" ({signature_tag(self._digest)} does not exist)"
        )
        return (), f"no keyless signature found{legacy}; {note}"

    def verify_attestation(
        self,
        authority: Authority,
        predicate_type: str,
        legacy: Sequence[AttestationLayer] = (),
    ) -> tuple[tuple[tuple[str, Signer], ...], str]:
        """The statements (JSON text) ``authority`` attested, each with its signer, or why none.

        ``legacy`` holds the ``.att`` layers carrying a certificate; they are
        tried first, then the Sigstore bundles referring to the digest.
        """
        keyless = authority.keyless
        if keyless is None or keyless.root is None:
            return (), "keyless authority has no trusted root loaded"
        outcomes: list[KeylessResult | str] = []
        for layer in legacy:
            if isinstance(layer.envelope, str):
                outcomes.append(layer.envelope)
                continue
            outcomes.append(
                verify_legacy_attestation(
                    keyless.root,
                    keyless,
                    annotations=layer.annotations,
                    envelope=layer.raw,
                    image_digest=self._digest,
                    predicate_type=predicate_type,
                )
            )
        bundles, note = self.bundles()
        for bundle in bundles:
            if isinstance(bundle, str):
                outcomes.append(bundle)
                continue
            outcomes.append(
                verify_bundle(
                    keyless.root,
                    keyless,
                    bundle,
                    image_digest=self._digest,
                    predicate_type=predicate_type,
                )
            )
        predicates: list[tuple[str, Signer]] = []
        reasons: list[str] = []
        for outcome in outcomes:
            if isinstance(outcome, str) or not outcome.ok:
                reasons.append(outcome if isinstance(outcome, str) else outcome.reason)
                continue
            statement = json.loads(outcome.payload)
            if not isinstance(statement.get("predicate"), dict):
                reasons.append("signed statement's predicate is not an object")
            elif outcome.certificate is None:
                reasons.append("verified, but without a signing certificate")
            else:
                signer = certificate_signer(outcome.certificate)
                predicates.append((json.dumps(statement, sort_keys=True), signer))
        if predicates:
            return tuple(predicates), ""
        return (), _summary(reasons) if reasons else f"no keyless attestation found; {note}"


def _signed_problem(
    payload: bytes, digest: str, image: ImageRef, signatures: Signatures
) -> str | None:
    try:
        signed = parse_payload(payload)
    except SignatureInvalid as exc:
        return f"signed {exc.message}"
    return payload_problem(
        signed,
        image_digest=digest,
        repository=image.repository,
        required_annotations=dict(signatures.annotations),
        check_reference=signatures.match_reference,
    )


def _bundle_problem(
    outcome: KeylessResult, digest: str, image: ImageRef, signatures: Signatures
) -> str | None:
    """Why a verified bundle does not meet the policy's rules (``rules.py``), or None."""
    required = dict(signatures.annotations)
    if not outcome.payload_type:
        return message_signature_problem(
            required_annotations=required, check_reference=signatures.match_reference
        )
    statement = json.loads(outcome.payload)
    return statement_problem(
        statement,
        image_digest=digest,
        repository=image.repository,
        required_annotations=required,
        check_reference=signatures.match_reference,
    )


def _collect(
    result: KeylessResult, problem: str | None, found: list[Signer], reasons: list[str]
) -> None:
    """Record a signature that verified and met every rule as its signer, else why not."""
    if problem is None and result.certificate is not None:
        found.append(certificate_signer(result.certificate))
    else:
        reasons.append(problem or "verified, but without a signing certificate")


def _summary(reasons: list[str]) -> str:
    """The first reason, and how many other signatures failed too."""
    unique = list(dict.fromkeys(reasons))
    more = f" (and {len(unique) - 1} other signatures failed)" if len(unique) > 1 else ""
    return unique[0] + more
