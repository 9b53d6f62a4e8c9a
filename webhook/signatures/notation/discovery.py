"""The Notation signatures of an image digest: its referrers of the signature artifact type.

Notation attaches a signature as an OCI image manifest whose ``subject`` is
the signed image, ``artifactType`` is ``application/vnd.cncf.notary.signature``,
config is the empty descriptor, and single layer is the envelope (its media
type says which: ``application/jose+json`` or ``application/cose``). They are
found through the referrers API, or its ``<alg>-<hex>`` tag fallback, with
the same ``RegistryClient`` as everything else: its byte budgets, deadlines,
breakers and credentials (``RegistryClient.referrers``).

Anyone who may push to the repository may attach signatures, so their number
is bounded: at most ``limit`` signature manifests are read per digest
(notation's own ``--max-signatures`` bound, smaller here because a review
answers within seconds), and the listing says how many were left unread. A
flood of fake signatures thus costs at most ``limit`` manifests of at most
``MAX_MANIFEST_BYTES`` and as many envelopes of at most ``max_envelope_bytes``
(declared sizes above those are never fetched), all within the review's
deadline and byte budget; and it may push the real signature out of what is
read, which then denies (fails closed) with a message naming the flood.

Order: signatures whose ``io.cncf.notary.x509chain.thumbprint#S256`` names a
certificate of the trust store come first (``prefer``; the annotation is
unsigned, so this only orders, never trusts), then the newest by
``org.opencontainers.image.created`` (which notation sets to the signing
time), then the rest in the registry's order.

The envelopes are returned unparsed (media type and bytes): parsing and
verifying them is ``envelope`` and ``trust``'s job.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from webhook.core.deadline import Deadline
from webhook.core.reference import ImageRef
from webhook.registry.client import OCI_MANIFEST, NotFound, RegistryClient
from webhook.signatures.notation.model import ARTIFACT_TYPE, COSE, JWS
from webhook.signatures.notation.model import MAX_ENVELOPE_BYTES as MAX_ENVELOPE_BYTES

#: Signature manifests read per digest, at most.
MAX_SIGNATURES = 16
#: A signature manifest declared larger than this is not fetched; real ones are under 1 KiB.
MAX_MANIFEST_BYTES = 64 * 1024
#: The annotations notation sets on a signature manifest.
CREATED = "org.opencontainers.image.created"
THUMBPRINTS = "io.cncf.notary.x509chain.thumbprint#S256"
#: The config media type of a signature manifest with ``artifactType``.
EMPTY_CONFIG = "application/vnd.oci.empty.v1+json"

_DIGEST = re.compile(r"sha256:[0-9a-f]{64}|sha512:[0-9a-f]{128}")
_THUMBPRINT = re.compile(r"[0-9a-f]{64}")
_MAX_THUMBPRINTS = 16


@dataclass(frozen=True, slots=True)
class SignatureRef:
    """A signature manifest as the referrers listing describes it (unverified)."""

    digest: str
    size: int
    created: datetime | None = None
    thumbprints: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class Signature:
    """A signature envelope, as stored: ``media_type`` is JWS or COSE."""

    manifest: str
    media_type: str
    envelope: bytes = field(repr=False)
    created: datetime | None = None
    thumbprints: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class Unreadable:
    """A listed signature manifest that holds no usable envelope, and why."""

    manifest: str
    reason: str


class Signatures:
    """The Notation signatures of one digest: the listing, and the envelopes, read on demand.

    Iterating fetches each envelope in order, once, so a caller that has
    what it needs stops reading. Holds the review's deadline; use it within
    the review.
    """

    def __init__(
        self,
        client: RegistryClient,
        image: ImageRef,
        digest: str,
        deadline: Deadline,
        refs: tuple[SignatureRef, ...],
        listed: int,
        max_envelope_bytes: int,
    ) -> None:
        self._client = client
        self._image = image
        self._digest = digest
        self._deadline = deadline
        self._max_envelope_bytes = max_envelope_bytes
        self._read: list[Signature | Unreadable] = []
        #: What will be read, in order (at most the limit).
        self.refs = refs
        #: How many distinct signature manifests the registry listed (descriptors
        #: without a valid digest and size are not counted: they cannot be read).
        self.listed = listed

    @property
    def note(self) -> str:
        """What was left unread, or why there is nothing: for a denial or a log line."""
        if self.listed == 0:
            return f"no Notation signature refers to {self._digest}"
        if self.listed <= len(self.refs):
            return ""
        return (
            f"{self._digest} has {self.listed} Notation signatures; only the first "
            f"{len(self.refs)} are read (at most {len(self.refs)} per image: a flood of "
            "signatures costs no more, but may hide a real one)"
        )

    def __iter__(self) -> Iterator[Signature | Unreadable]:
        """Each envelope (or why it is unusable), fetched on first use.

        Raises:
            UpstreamError: the registry failed or the review ran out of time or budget.
        """
        yield from self._read
        for ref in self.refs[len(self._read) :]:
            found = self._fetch(ref)
            self._read.append(found)
            yield found

    def _fetch(self, ref: SignatureRef) -> Signature | Unreadable:
        if ref.size > MAX_MANIFEST_BYTES:
            return Unreadable(
                ref.digest, f"its manifest is {ref.size} bytes; over {MAX_MANIFEST_BYTES}"
            )
        try:
            manifest = self._client.manifest(self._image, ref.digest, self._deadline)
        except NotFound:
            return Unreadable(ref.digest, "it is listed but does not exist")
        if len(manifest.body) > MAX_MANIFEST_BYTES:
            return Unreadable(ref.digest, f"its manifest is over {MAX_MANIFEST_BYTES} bytes")
        layer = _envelope_layer(manifest.media_type, manifest.data, self._digest)
        if isinstance(layer, str):
            return Unreadable(ref.digest, layer)
        media_type, blob, size = layer
        if size > self._max_envelope_bytes:
            return Unreadable(
                ref.digest, f"its envelope is {size} bytes; over {self._max_envelope_bytes}"
            )
        try:
            envelope = self._client.blob(self._image, blob, self._deadline, max_bytes=size)
        except NotFound:
            return Unreadable(ref.digest, f"its envelope {blob} does not exist")
        return Signature(ref.digest, media_type, envelope, ref.created, ref.thumbprints)


def discover(
    client: RegistryClient,
    image: ImageRef,
    digest: str,
    deadline: Deadline,
    *,
    limit: int = MAX_SIGNATURES,
    max_envelope_bytes: int = MAX_ENVELOPE_BYTES,
    prefer: frozenset[str] = frozenset(),
) -> Signatures:
    """The Notation signatures of ``digest`` in ``image``'s repository, at most ``limit``.

    ``prefer`` holds SHA-256 thumbprints (lowercase hex) of trusted
    certificates: signatures whose chain annotation names one are read first.
    Lists now; envelopes are fetched as the result is iterated.

    Raises:
        UpstreamError: the listing failed (including a registry listing more
            referrers than ``RegistryClient.referrers`` reads).
    """
    listed = client.referrers(image, digest, deadline, artifact_type=ARTIFACT_TYPE)
    refs: dict[str, SignatureRef] = {}
    for descriptor in listed:
        ref = _ref(descriptor)
        if ref is not None:
            refs.setdefault(ref.digest, ref)
    ordered = sorted(refs.values(), key=lambda ref: _rank(ref, prefer))
    return Signatures(
        client, image, digest, deadline, tuple(ordered[:limit]), len(refs), max_envelope_bytes
    )


def _rank(ref: SignatureRef, prefer: frozenset[str]) -> tuple[bool, bool, float]:
    """Sort key: preferred first, then those with a time, newest first (stable otherwise)."""
    preferred = bool(prefer.intersection(ref.thumbprints))
    when = -ref.created.timestamp() if ref.created is not None else 0.0
    return not preferred, ref.created is None, when


def _ref(descriptor: Mapping[str, Any]) -> SignatureRef | None:
    """The signature manifest a listed descriptor names; None when it names none usably."""
    digest, size = descriptor.get("digest"), descriptor.get("size")
    if not isinstance(digest, str) or not _DIGEST.fullmatch(digest):
        return None
    if not isinstance(size, int) or isinstance(size, bool) or size < 0:
        return None
    annotations = descriptor.get("annotations")
    if not isinstance(annotations, dict):
        return SignatureRef(digest, size)
    return SignatureRef(
        digest, size, _created(annotations.get(CREATED)), _thumbprints(annotations.get(THUMBPRINTS))
    )


def _created(value: object) -> datetime | None:
    if not isinstance(value, str) or len(value) > 64:
        return None
    try:
        when = datetime.fromisoformat(value)
    except ValueError:
        return None
    return when if when.tzinfo is not None else None


def _thumbprints(value: object) -> tuple[str, ...]:
    if not isinstance(value, str) or len(value) > _MAX_THUMBPRINTS * 70:
        return ()
    try:
        found = json.loads(value)
    except ValueError:
        return ()
    if not isinstance(found, list) or len(found) > _MAX_THUMBPRINTS:
        return ()
    return tuple(t for t in found if isinstance(t, str) and _THUMBPRINT.fullmatch(t))


def _envelope_layer(
    media_type: str, data: Mapping[str, Any], digest: str
) -> tuple[str, str, int] | str:
    """The envelope layer's (media type, digest, size) of a signature manifest, or why none."""
    if media_type != OCI_MANIFEST:
        return f"it is a {media_type[:80]!r}, not an OCI image manifest"
    config = data.get("config")
    config_type = config.get("mediaType") if isinstance(config, dict) else None
    artifact_type = data.get("artifactType")
    if artifact_type == ARTIFACT_TYPE:
        if config_type != EMPTY_CONFIG:
            return f"its config is {str(config_type)[:80]!r}, not the empty descriptor"
    elif artifact_type is not None or config_type != ARTIFACT_TYPE:
        return "it is not a Notation signature (artifactType)"
    subject = data.get("subject")
    if not isinstance(subject, dict) or subject.get("digest") != digest:
        return f"its subject is not {digest}"
    layers = data.get("layers")
    if not isinstance(layers, list) or len(layers) != 1 or not isinstance(layers[0], dict):
        count = len(layers) if isinstance(layers, list) else 0
        return f"it has {count} layers; a Notation signature has exactly one, its envelope"
    layer = layers[0]
    kind, blob, size = layer.get("mediaType"), layer.get("digest"), layer.get("size")
    if kind not in (JWS, COSE):
        return f"its envelope type {str(kind)[:80]!r} is neither {JWS} nor {COSE}"
    if not isinstance(blob, str) or not _DIGEST.fullmatch(blob):
        return "its envelope layer has no valid digest"
    if not isinstance(size, int) or isinstance(size, bool) or size <= 0:
        return "its envelope layer has no valid size"
    return kind, blob, size
