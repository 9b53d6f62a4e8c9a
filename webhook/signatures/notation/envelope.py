"""Read a Notation signature envelope and check it signs the image being admitted.

``parse_envelope`` picks the parser by the signature manifest layer's media
type (``application/jose+json``: ``jws``; ``application/cose``: ``cose``),
after refusing an envelope over MAX_ENVELOPE_BYTES: a real one, with a chain
of three certificates and a timestamp token, is 5 to 15 kB. What it returns
has passed the integrity checks of the Notary Project signature specification
(the signature verifies with the signing certificate's key under the one
algorithm that key allows, and the critical headers are all understood); it
says nothing yet about whether the signer is trusted (``trust``).

``check_target`` compares the signed descriptor with the image: a signature
is only about the artifact whose digest, size and media type it names.
"""

from __future__ import annotations

from webhook.core.untrusted import shown
from webhook.signatures.notation import cose, jws
from webhook.signatures.notation.model import COSE, FORMAT_NAMES, JWS, Envelope, NotationError
from webhook.signatures.notation.model import MAX_ENVELOPE_BYTES as MAX_ENVELOPE_BYTES


def parse_envelope(media_type: str, blob: bytes) -> Envelope:
    """The parsed envelope, once its integrity is checked.

    ``media_type`` is the signature manifest layer's; ``blob`` the layer's bytes.

    Raises:
        NotationError: the media type is not a Notation envelope's, the blob is
            too large, malformed, breaks a rule of the specification, or its
            signature does not verify. The message names the format and the step.
    """
    parser = {JWS: jws.parse, COSE: cose.parse}.get(media_type)
    if parser is None:
        raise NotationError(
            f"the signature's media type is {shown(media_type, 80)}; a Notation signature "
            f"envelope is {JWS} (JWS) or {COSE} (COSE)"
        )
    name = FORMAT_NAMES[media_type]
    if len(blob) > MAX_ENVELOPE_BYTES:
        raise NotationError(
            f"{name} envelope: it is {len(blob)} bytes, over the limit of {MAX_ENVELOPE_BYTES}"
        )
    try:
        return parser(blob)
    except NotationError as exc:
        raise NotationError(f"{name} envelope: {exc.message}") from None


def check_target(envelope: Envelope, digest: str, size: int, media_type: str) -> None:
    """Refuse ``envelope`` unless its payload's descriptor is the admitted image's.

    ``digest``, ``size`` and ``media_type`` are those of the image manifest (or
    index) being admitted, as the registry served it.

    Raises:
        NotationError: naming the field that differs, with both values.
    """
    target = envelope.target
    if target.digest != digest:
        raise NotationError(
            f"the signature is for digest {shown(target.digest, 80)}, not the image's "
            f"{shown(digest, 80)}: it signs another artifact"
        )
    if target.size != size:
        raise NotationError(
            f"the signature is for {digest} with size {target.size}, but the image's manifest "
            f"is {size} bytes: the signed descriptor does not match"
        )
    if target.media_type != media_type:
        raise NotationError(
            f"the signature is for {digest} with mediaType {shown(target.media_type, 80)}, "
            f"but the image's manifest is {shown(media_type, 80)}: the signed descriptor "
            f"does not match"
        )
