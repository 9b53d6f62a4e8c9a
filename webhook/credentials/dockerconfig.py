"""The content of a pull secret: registry keys with a username and password each.

A ``kubernetes.io/dockerconfigjson`` Secret holds ``{"auths": {KEY: ENTRY}}``
under ``.dockerconfigjson``; the legacy ``kubernetes.io/dockercfg`` holds the
bare ``{KEY: ENTRY}`` under ``.dockercfg``. The fields are read the way the
kubelet reads them (pkg/credentialprovider/config.go, ``DockerConfigEntry``),
so that trustgate authenticates with exactly what the node will pull with:

- an entry has ``username``, ``password``, ``email`` and ``auth``; field names
  match case-insensitively, the last one written wins (Go's encoding/json);
- a non-empty ``auth`` is base64 of ``user:password`` and wins over
  ``username``/``password``; it is split at the first ``:``, so a password may
  hold ``:``; padded and unpadded base64 are both accepted;
- ``identitytoken`` and ``registrytoken`` are ignored: the kubelet's entry has
  no such fields, so a node never pulls with them, and an entry that has only
  them is skipped (reported in ``DockerConfig.skipped``);
- a malformed entry (a non-string field, ``auth`` that is not base64 of
  ``user:password``) makes the whole secret unreadable, as it fails the
  kubelet's unmarshalling of the whole secret.

Separate from the keyring because this is the part that reads untrusted bytes:
it is bounded (size, entry count, key length) and its errors name the source
and the key but never a password, token or ``auth`` value.
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Final

from webhook.core.errors import TrustgateError
from webhook.core.untrusted import json_value, quoted

DOCKERCONFIGJSON: Final = "kubernetes.io/dockerconfigjson"
DOCKERCFG: Final = "kubernetes.io/dockercfg"
#: The ``data`` key each pull secret type keeps its content under.
DATA_KEYS: Final[Mapping[str, str]] = {
    DOCKERCONFIGJSON: ".dockerconfigjson",
    DOCKERCFG: ".dockercfg",
}

#: Content past this size is refused unread: a real pull secret for a few registries is
#: a few kB, and this keeps a hostile one (up to the API server's 1 MiB) from costing
#: a parse per review.
MAX_CONTENT_BYTES: Final = 256 * 1024
#: Registry keys per secret; each costs a comparison per image looked up.
MAX_ENTRIES: Final = 256
#: A key is a host, a port and a repository path; 1,024 characters is four times the
#: longest reference the grammar allows.
MAX_KEY_CHARS: Final = 1024
_SHOWN_KEY: Final = 96
_ENTRY_FIELDS: Final = ("username", "password", "email", "auth")
_IGNORED_TOKENS: Final = ("identitytoken", "registrytoken")


class DockerConfigError(TrustgateError):
    """A pull secret's content cannot be read.

    The message names the source and the key at fault, never a password,
    token or ``auth`` value.
    """


@dataclass(frozen=True, slots=True)
class DockerConfigEntry:
    """One registry key and the credentials written for it.

    ``key`` is as written (``quay.io/team``, ``https://index.docker.io/v1/``):
    matching it to an image is the keyring's job. ``password`` is kept out of
    ``repr`` so that logging an entry cannot log the secret.
    """

    key: str
    username: str
    password: str = field(repr=False)


@dataclass(frozen=True, slots=True)
class SkippedEntry:
    """A key that yields no credential, and why (for ``check`` and the logs)."""

    key: str
    reason: str


@dataclass(frozen=True, slots=True)
class DockerConfig:
    """The usable entries of one pull secret, in the order written, and what was skipped."""

    source: str
    entries: tuple[DockerConfigEntry, ...]
    skipped: tuple[SkippedEntry, ...] = ()


class _Object(list[tuple[str, Any]]):
    """A JSON object as its pairs in document order, duplicates kept (Go's last-wins)."""


def shown_key(key: str) -> str:
    """``key`` quoted and cut for a message, with any ``user:password@`` hidden."""
    if "@" in key:
        scheme, sep, rest = key.rpartition("://")
        key = f"{scheme}{sep}(user info hidden)@{rest.rpartition('@')[2]}"
    return quoted(key, _SHOWN_KEY)


def parse_dockerconfigjson(content: bytes | str, *, source: str) -> DockerConfig:
    """Read ``{"auths": {...}}``, the content of a ``kubernetes.io/dockerconfigjson`` Secret.

    Raises:
        DockerConfigError: too large, not JSON, no ``auths`` object, or an entry
            the kubelet could not read either.
    """
    document = _document(content, source)
    auths: Any = None
    for name, value in document:
        if name.lower() == "auths":  # Go matches struct fields case-insensitively
            auths = value
    if not isinstance(auths, _Object):
        raise DockerConfigError(
            f'{source}: has no "auths" object; a kubernetes.io/dockerconfigjson secret '
            'holds {"auths": {"registry.example.com": {"auth": "..."}}}'
        )
    return _config(auths, source)


def parse_dockercfg(content: bytes | str, *, source: str) -> DockerConfig:
    """Read the bare ``{KEY: ENTRY}`` map of a legacy ``kubernetes.io/dockercfg`` Secret.

    Raises:
        DockerConfigError: as ``parse_dockerconfigjson``, but without ``auths``.
    """
    return _config(_document(content, source), source)


def from_secret(
    secret_type: str, data: Mapping[str, str] | None, *, source: str
) -> DockerConfig | None:
    """The pull credentials of a Secret, given its ``type`` and its ``data`` (base64 values).

    None for a Secret of another type: the kubelet passes over those, and so
    does the keyring.

    Raises:
        DockerConfigError: a pull secret type whose data key is missing, empty
            or not base64, or whose content does not parse.
    """
    data_key = DATA_KEYS.get(secret_type)
    if data_key is None:
        return None
    encoded = (data or {}).get(data_key)
    if not encoded:
        raise DockerConfigError(f"{source}: a {secret_type} secret without {data_key} data")
    try:
        content = base64.b64decode(encoded, validate=True)
    except (binascii.Error, ValueError, TypeError):
        raise DockerConfigError(f"{source}: its {data_key} data is not base64") from None
    if secret_type == DOCKERCONFIGJSON:
        return parse_dockerconfigjson(content, source=source)
    return parse_dockercfg(content, source=source)


def _document(content: bytes | str, source: str) -> _Object:
    raw = content.encode("utf-8", "surrogatepass") if isinstance(content, str) else content
    if len(raw) > MAX_CONTENT_BYTES:
        raise DockerConfigError(
            f"{source}: {len(raw):,} bytes of docker config; the limit is "
            f"{MAX_CONTENT_BYTES:,} (a pull secret for a few registries is a few kB)"
        )
    try:
        document = json_value(raw, object_pairs_hook=_Object)
    except (json.JSONDecodeError, ValueError) as exc:
        # The parser's message quotes no value, only where it stopped.
        reason = exc.msg if isinstance(exc, json.JSONDecodeError) else "a number is too long"
        raise DockerConfigError(f"{source}: is not valid JSON ({reason})") from None
    if not isinstance(document, _Object):
        raise DockerConfigError(f"{source}: is not a JSON object")
    return document


def _config(pairs: _Object, source: str) -> DockerConfig:
    if len(pairs) > MAX_ENTRIES:
        raise DockerConfigError(
            f"{source}: {len(pairs):,} registry keys; the limit is {MAX_ENTRIES} per secret"
        )
    latest: dict[str, Any] = {}
    for key, value in pairs:
        if len(key) > MAX_KEY_CHARS:
            raise DockerConfigError(
                f"{source}: the registry key {shown_key(key)} is {len(key):,} characters "
                f"long; the limit is {MAX_KEY_CHARS:,}"
            )
        latest[key] = value  # a repeated key: the last one wins, as in a Go map
    entries: list[DockerConfigEntry] = []
    skipped: list[SkippedEntry] = []
    for key, value in latest.items():
        entry = _entry(key, value, source)
        if isinstance(entry, SkippedEntry):
            skipped.append(entry)
        else:
            entries.append(entry)
    return DockerConfig(source, tuple(entries), tuple(skipped))


def _entry(key: str, value: Any, source: str) -> DockerConfigEntry | SkippedEntry:
    where = f"{source}: the entry for {shown_key(key)}"
    if value is None:
        return SkippedEntry(key, "the entry is null")
    if not isinstance(value, _Object):
        raise DockerConfigError(f"{where} is not an object")
    fields: dict[str, str] = {}
    tokens = False
    for name, item in value:
        lowered = name.lower()
        tokens = tokens or lowered in _IGNORED_TOKENS
        if lowered not in _ENTRY_FIELDS or item is None:  # null leaves a Go string empty
            continue
        if not isinstance(item, str):
            raise DockerConfigError(f"{where}: {lowered} is not a string")
        fields[lowered] = item
    auth = fields.get("auth", "")
    if auth:
        username, password = _decode_auth(auth, where)
    else:
        username, password = fields.get("username", ""), fields.get("password", "")
    if not username and not password:
        reason = "no auth, username or password"
        if tokens:
            reason += " (identitytoken and registrytoken are not used: the kubelet ignores them)"
        return SkippedEntry(key, reason)
    return DockerConfigEntry(key, username, password)


def _decode_auth(auth: str, where: str) -> tuple[str, str]:
    """``auth`` as the kubelet decodes it: padded or unpadded base64 of ``user:password``.

    Go's decoder skips line breaks; the padded form is chosen by a trailing
    ``=``, the unpadded one otherwise, and each refuses the other's shape.
    """
    text = auth.replace("\r", "").replace("\n", "")
    padded = auth.strip().endswith("=")
    try:
        if padded and len(text) % 4:
            raise binascii.Error("bad padding")
        if not padded and "=" in text:
            raise binascii.Error("padding inside unpadded base64")
        decoded = base64.b64decode(text + "=" * (-len(text) % 4), validate=True)
    except (binascii.Error, ValueError):
        raise DockerConfigError(
            f"{where}: auth is not base64 of username:password (the value is not shown)"
        ) from None
    try:
        plain = decoded.decode("utf-8")
    except UnicodeDecodeError:
        raise DockerConfigError(f"{where}: auth does not decode to UTF-8 text") from None
    username, colon, password = plain.partition(":")
    if not colon:
        raise DockerConfigError(
            f"{where}: auth decodes to no ':'; it must be base64 of username:password"
        )
    return username, password
