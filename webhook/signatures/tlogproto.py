"""A Rekor ``TransparencyLogEntry`` in protobuf's binary form, as gitsign embeds it, as JSON.

gitsign (offline Rekor mode) stores the log entry of a commit signature in
the CMS signature itself: an unsigned attribute (OID 1.3.6.1.4.1.57264.3.1)
holding the entry of sigstore's ``rekor/v1`` protobuf schema, serialized,
with its canonicalized body left out (the verifier rebuilds it from the
signature). sigstore-python reads the same schema in its JSON form only, and
no protobuf runtime is installed, so the few fields are read here from the
wire format (varints and length-delimited fields, nothing else needed) into
the JSON object a Sigstore bundle's ``tlogEntries`` item is.
"""

from __future__ import annotations

import base64
from collections.abc import Iterator
from typing import Any

__all__ = ["MAX_ENTRY_BYTES", "entry_json"]

#: Largest serialized entry read: an inclusion proof of 64 hashes and a checkpoint is ~3 KiB.
MAX_ENTRY_BYTES = 64 * 1024
_VARINT, _FIXED64, _BYTES, _FIXED32 = 0, 1, 2, 5


def _varint(data: bytes, at: int) -> tuple[int, int]:
    value = 0
    for shift in range(0, 70, 7):
        if at >= len(data):
            raise ValueError("truncated varint")
        byte = data[at]
        at += 1
        value |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return value, at
    raise ValueError("varint longer than 10 bytes")


def _fields(data: bytes) -> Iterator[tuple[int, int, int | bytes]]:
    """(field number, wire type, value) of each field of one message; unknown kinds refused."""
    at = 0
    while at < len(data):
        key, at = _varint(data, at)
        number, wire = key >> 3, key & 7
        value: int | bytes
        if wire == _VARINT:
            value, at = _varint(data, at)
        elif wire == _BYTES:
            length, at = _varint(data, at)
            if at + length > len(data):
                raise ValueError("truncated field")
            value, at = data[at : at + length], at + length
        elif wire in (_FIXED64, _FIXED32):
            size = 8 if wire == _FIXED64 else 4
            if at + size > len(data):
                raise ValueError("truncated field")
            value, at = data[at : at + size], at + size
        else:
            raise ValueError(f"unsupported wire type {wire}")
        yield number, wire, value


def _message(data: bytes, schema: dict[int, tuple[str, str]]) -> dict[str, Any]:
    """The fields of ``schema`` (number -> (JSON name, kind)); other fields are skipped."""
    out: dict[str, Any] = {}
    for number, wire, value in _fields(data):
        if number not in schema:
            continue
        name, kind = schema[number]
        expected = _VARINT if kind == "int" else _BYTES
        if wire != expected:
            raise ValueError(f"field {name} has wire type {wire}")
        converted: Any
        if isinstance(value, int):
            converted = str(value)  # int64 fields are strings in protobuf's JSON
        elif kind in ("bytes", "repeated bytes"):
            converted = base64.b64encode(value).decode("ascii")
        elif kind == "string":
            converted = value.decode("utf-8")
        else:
            converted = _message(value, _SCHEMAS[kind])
        if kind == "repeated bytes":
            out.setdefault(name, []).append(converted)
        else:
            out[name] = converted
    return out


_SCHEMAS: dict[str, dict[int, tuple[str, str]]] = {
    "entry": {
        1: ("logIndex", "int"),
        2: ("logId", "logId"),
        3: ("kindVersion", "kindVersion"),
        4: ("integratedTime", "int"),
        5: ("inclusionPromise", "promise"),
        6: ("inclusionProof", "proof"),
        7: ("canonicalizedBody", "bytes"),
    },
    "logId": {1: ("keyId", "bytes")},
    "kindVersion": {1: ("kind", "string"), 2: ("version", "string")},
    "promise": {1: ("signedEntryTimestamp", "bytes")},
    "proof": {
        1: ("logIndex", "int"),
        2: ("rootHash", "bytes"),
        3: ("treeSize", "int"),
        4: ("hashes", "repeated bytes"),
        5: ("checkpoint", "checkpoint"),
    },
    "checkpoint": {1: ("envelope", "string")},
}


def entry_json(data: bytes) -> dict[str, Any]:
    """The ``tlogEntries`` item (protobuf JSON) of serialized ``TransparencyLogEntry`` ``data``.

    Raises:
        ValueError: ``data`` is larger than ``MAX_ENTRY_BYTES`` or not such a message.
    """
    if len(data) > MAX_ENTRY_BYTES:
        raise ValueError(f"the log entry is larger than {MAX_ENTRY_BYTES} bytes")
    try:
        return _message(data, _SCHEMAS["entry"])
    except UnicodeDecodeError:
        raise ValueError("a text field of the log entry is not UTF-8") from None
