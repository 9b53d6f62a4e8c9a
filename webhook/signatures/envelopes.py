"""The envelope layers of cosign's ``.att`` manifests, fetched within bounds.

``cosign attest`` stores the attestations of ``sha256:<hex>`` as the layers of
the manifest at tag ``sha256-<hex>.att``: each layer of media type
``application/vnd.dsse.envelope.v1+json`` is a DSSE envelope. This module only
reads them (how many, how large); verifying them is for the attestation check
(key authorities) and ``material.KeylessMaterial`` (keyless ones), which both
import it.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from webhook.core.untrusted import NestedTooDeep, json_value, shown
from webhook.signatures.cosign import DSSE_MEDIA_TYPE

#: Declared envelope sizes above this are refused before anything is fetched.
MAX_ENVELOPE_SIZE = 1024 * 1024
#: At most this many envelope layers of one ``.att`` manifest are looked at.
MAX_ATTESTATION_LAYERS = 32

#: A fetched envelope (a JSON object), or why the layer is unusable.
Envelope = Mapping[str, Any] | str


@dataclass(frozen=True, slots=True)
class AttestationLayer:
    """One envelope layer of an ``.att`` manifest: the envelope (or why it is unusable),
    its text as stored, and the layer's annotations."""

    envelope: Envelope
    raw: bytes = b""
    annotations: Mapping[str, Any] = field(default_factory=dict)


def attestation_envelopes(
    manifest: Mapping[str, Any], fetch_blob: Callable[[str, int], bytes]
) -> list[Envelope]:
    """The DSSE envelopes of an ``.att`` manifest, or per layer why it is unusable.

    As ``attestation_layers``, without the layers' text and annotations.
    """
    return [layer.envelope for layer in attestation_layers(manifest, fetch_blob)]


def attestation_layers(
    manifest: Mapping[str, Any], fetch_blob: Callable[[str, int], bytes]
) -> list[AttestationLayer]:
    """The envelope layers of an ``.att`` manifest, each parsed or with why it is unusable.

    Only the first MAX_ATTESTATION_LAYERS envelope layers are read, and layers
    declaring more than MAX_ENVELOPE_SIZE bytes are never fetched. Whatever
    ``fetch_blob`` raises (an UpstreamError) propagates.
    """
    layers = manifest.get("layers")
    if not isinstance(layers, list):
        return []
    found: list[AttestationLayer] = []
    for layer in layers:
        if not isinstance(layer, dict) or layer.get("mediaType") != DSSE_MEDIA_TYPE:
            continue
        if len(found) == MAX_ATTESTATION_LAYERS:
            break
        annotations = layer.get("annotations")
        envelope, raw = _envelope(layer, fetch_blob)
        found.append(
            AttestationLayer(envelope, raw, annotations if isinstance(annotations, dict) else {})
        )
    return found


def _envelope(
    layer: Mapping[str, Any], fetch_blob: Callable[[str, int], bytes]
) -> tuple[Envelope, bytes]:
    digest, size = layer.get("digest"), layer.get("size")
    if not isinstance(digest, str) or not digest.startswith(("sha256:", "sha512:")):
        return "attestation layer has no valid digest", b""
    if not isinstance(size, int) or isinstance(size, bool) or size < 0:
        return f"attestation layer {shown(digest)} has no valid size", b""
    if size > MAX_ENVELOPE_SIZE:
        return (
            f"attestation layer {digest} is {size} bytes; envelopes over "
            f"{MAX_ENVELOPE_SIZE} bytes are not fetched"
        ), b""
    raw = fetch_blob(digest, size)
    try:
        envelope = json_value(raw)
    except NestedTooDeep:
        return f"attestation layer {digest} is nested too deeply to be a DSSE envelope", raw
    except ValueError:  # not UTF-8, not JSON, or a number of more than 4,300 digits
        return f"attestation layer {digest} is not a JSON DSSE envelope", raw
    if not isinstance(envelope, dict):
        return f"attestation layer {digest} is not a JSON DSSE envelope", raw
    return envelope, raw
