"""The signed payload of a Notation signature: the descriptor of the artifact it signs.

The payload (media type ``application/vnd.cncf.notary.payload.v1+json``) is a
JSON object whose ``targetArtifact`` is an OCI descriptor with ``mediaType``,
``digest`` and ``size`` and optional ``annotations`` (Notary Project signature
specification, "Payload"). It is read only after the signature over it has
verified, strictly: a key given twice is refused rather than read as its last
value, so that the payload cannot say one thing to trustgate and another to a
reader; so are JSON's non-standard ``NaN`` and ``Infinity``.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from typing import Any, Final

from webhook.core.untrusted import DuplicateKey, json_value, literal, unique_keys
from webhook.signatures.notation.model import NotationError, TargetDescriptor

#: A payload larger than this is refused (a descriptor with annotations is ~1 kB).
MAX_PAYLOAD_BYTES: Final = 64 * 1024
#: At most this many annotations are read from the target descriptor.
MAX_ANNOTATIONS: Final = 256
_MAX_SIZE: Final = 2**63 - 1
# The OCI image specification's digest grammar (descriptor.md, "Digests").
_DIGEST: Final = re.compile(r"[a-z0-9]+(?:[+._-][a-z0-9]+)*:[a-zA-Z0-9=_-]+")
# The OCI media type grammar (RFC 6838 names, as in the image specification).
_MEDIA_TYPE: Final = re.compile(
    r"[A-Za-z0-9][A-Za-z0-9!#$&^_.+-]{0,126}/[A-Za-z0-9][A-Za-z0-9!#$&^_.+-]{0,126}"
)


def parse_payload(data: bytes) -> TargetDescriptor:
    """The target descriptor of a signed payload.

    Raises:
        NotationError: the payload is too large, not strict JSON, or its
            ``targetArtifact`` is missing or malformed.
    """
    if len(data) > MAX_PAYLOAD_BYTES:
        raise NotationError(
            f"the signed payload is {len(data)} bytes, over the limit of {MAX_PAYLOAD_BYTES}"
        )
    document = strict_json(data, "the signed payload")
    if not isinstance(document, dict):
        raise NotationError("the signed payload is not a JSON object")
    target = document.get("targetArtifact")
    if not isinstance(target, dict):
        raise NotationError("the signed payload has no targetArtifact object")
    return _descriptor(target)


def strict_json(data: bytes, what: str) -> Any:
    """``data`` as JSON, refusing duplicate keys and ``NaN``/``Infinity``.

    Raises:
        NotationError: ``data`` is not such a JSON document.
    """
    try:
        return json_value(data, object_pairs_hook=unique_keys, parse_constant=_no_constant)
    except DuplicateKey as exc:
        raise NotationError(
            f"{what} names the key {literal(exc.key, 64)} twice; a document that could be "
            f"read two ways is refused"
        ) from None
    except (json.JSONDecodeError, ValueError) as exc:
        reason = exc.msg if isinstance(exc, json.JSONDecodeError) else str(exc)
        raise NotationError(f"{what} is not valid JSON ({reason[:120]})") from None


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON number")


def _descriptor(target: Mapping[str, Any]) -> TargetDescriptor:
    media_type, digest, size = (
        target.get("mediaType"),
        target.get("digest"),
        target.get("size"),
    )
    if not isinstance(media_type, str) or not _MEDIA_TYPE.fullmatch(media_type):
        raise NotationError(
            f"the signed payload's targetArtifact has no valid mediaType (got {_got(media_type)})"
        )
    if not isinstance(digest, str) or not _DIGEST.fullmatch(digest) or len(digest) > 200:
        raise NotationError(
            f"the signed payload's targetArtifact has no valid digest (got {_got(digest)}); "
            f"a digest is <algorithm>:<encoded>, e.g. sha256:<64 hex digits>"
        )
    if isinstance(size, bool) or not isinstance(size, int) or not 0 <= size <= _MAX_SIZE:
        raise NotationError(
            f"the signed payload's targetArtifact has no valid size (got {_got(size)}); "
            f"a size is a whole number of bytes"
        )
    return TargetDescriptor(
        media_type=media_type,
        digest=digest,
        size=size,
        annotations=_annotations(target.get("annotations")),
    )


def _annotations(value: object) -> tuple[tuple[str, str], ...]:
    if value is None:
        return ()
    if not isinstance(value, dict) or not all(
        isinstance(key, str) and isinstance(text, str) for key, text in value.items()
    ):
        raise NotationError(
            "the signed payload's targetArtifact annotations are not a map of strings to "
            "strings, as OCI annotations must be"
        )
    if len(value) > MAX_ANNOTATIONS:
        raise NotationError(
            f"the signed payload's targetArtifact has {len(value)} annotations, over the "
            f"limit of {MAX_ANNOTATIONS}"
        )
    return tuple(sorted(value.items()))


def _got(value: object) -> str:
    if isinstance(value, str):
        return literal(value, 80)
    if value is None:
        return "nothing"
    return type(value).__name__ if isinstance(value, (dict, list)) else repr(value)[:40]
