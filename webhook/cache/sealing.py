"""Sealed entries of the shared cache: what is stored in Redis, and the MAC that guards it.

An entry is the HMAC-SHA256 (under ``cache.shared.keyFile``) of the format,
the cache's name, the whole cache key, the expiry and the payload; then the
expiry (ms since the epoch, big-endian) and the payload: plain JSON of frozen
dataclasses named in an allowlist (``Codec``), so that even a sealed entry
cannot make the reader run code.
"""

from __future__ import annotations

import dataclasses
import hashlib
import hmac
import json
from collections.abc import Hashable, Iterable
from datetime import datetime
from typing import Any

#: Version of the entry format; part of every key and of every MAC.
FORMAT = "trustgate-shared-cache/1"
MAC_SIZE = 32
EXPIRY_SIZE = 8


class Undecodable(ValueError):
    """A sealed entry whose value is not one the webhook shares."""


class Codec:
    """JSON of frozen dataclasses from an allowlist, tuples, datetimes and scalars.

    Lists decode as tuples (cached values are immutable), datetimes keep their
    offset, and a dataclass is rebuilt from exactly its fields.
    """

    def __init__(self, types: Iterable[type]) -> None:
        self._types: dict[str, type] = {}
        for kind in types:
            if not dataclasses.is_dataclass(kind):
                raise TypeError(f"{kind.__qualname__} is not a dataclass")
            if kind.__qualname__ in self._types:
                raise TypeError(f"two shared types are named {kind.__qualname__}")
            self._types[kind.__qualname__] = kind

    def encode(self, value: Any) -> bytes | None:
        """The JSON of ``value``, or None when it holds a type that is not shared."""
        try:
            return json.dumps(self._out(value), separators=(",", ":")).encode()
        except Undecodable:
            return None

    def decode(self, data: bytes) -> Any:
        """The value of ``data``.

        Raises:
            Undecodable: not JSON, or a type or field the allowlist does not know.
        """
        try:
            return self._in(json.loads(data))
        except (ValueError, TypeError, RecursionError) as exc:
            raise Undecodable(str(exc)) from None

    def _out(self, value: Any) -> Any:
        if value is None or isinstance(value, str | int | float | bool):
            return value
        if isinstance(value, tuple):
            return [self._out(item) for item in value]
        if isinstance(value, datetime):
            return {"d": value.isoformat()}
        kind = type(value)
        if self._types.get(kind.__qualname__) is kind:
            return {
                "c": kind.__qualname__,
                "f": {f.name: self._out(getattr(value, f.name)) for f in dataclasses.fields(value)},
            }
        raise Undecodable(f"{kind.__qualname__} is not shared")

    def _in(self, data: Any) -> Any:
        if data is None or isinstance(data, str | int | float | bool):
            return data
        if isinstance(data, list):
            return tuple(self._in(item) for item in data)
        if isinstance(data, dict) and set(data) == {"d"}:
            return datetime.fromisoformat(data["d"])
        if isinstance(data, dict) and set(data) == {"c", "f"} and isinstance(data["f"], dict):
            kind = self._types.get(data["c"])
            if kind is None:
                raise Undecodable(f"{data['c']!r} is not a shared type")
            names = {f.name for f in dataclasses.fields(kind)}
            unknown = set(data["f"]) - names
            if unknown:
                raise Undecodable(f"unknown fields of {data['c']}: {sorted(unknown)}")
            return kind(**{name: self._in(item) for name, item in data["f"].items()})
        raise Undecodable("not a shared value")


def canonical_key(cache: str, key: Hashable) -> bytes | None:
    """The bytes that name ``key`` in ``cache``, or None when the key is not JSON-able."""
    try:
        return json.dumps([cache, key], separators=(",", ":")).encode()
    except (TypeError, ValueError):
        return None


def entry_mac(key: bytes, cache: str, name: bytes, expires_ms: int, payload: bytes) -> bytes:
    message = b"\0".join(
        (FORMAT.encode(), cache.encode(), name, expires_ms.to_bytes(EXPIRY_SIZE, "big"), payload)
    )
    return hmac.new(key, message, hashlib.sha256).digest()


def seal(key: bytes, cache: str, name: bytes, expires_ms: int, payload: bytes) -> bytes:
    """An entry: the MAC, the expiry (ms since the epoch, big-endian) and the payload."""
    mac = entry_mac(key, cache, name, expires_ms, payload)
    return mac + expires_ms.to_bytes(EXPIRY_SIZE, "big") + payload
