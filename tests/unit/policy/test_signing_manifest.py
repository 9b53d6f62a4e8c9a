"""The canonical manifest: deterministic bytes, strict paths, differences by file."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta, timezone

import pytest

from webhook.core.errors import PolicyError
from webhook.policy.signing.manifest import (
    build_manifest,
    check_path,
    compare,
    manifest_bytes,
    parse_manifest,
)

WHEN = datetime(2026, 3, 1, 12, 0, 0, tzinfo=UTC)
FILES = {"b.yaml": b"b", "a.yaml": b"a", "keys/cosign.pub": b"k"}


def test_the_bytes_do_not_depend_on_order_zone_or_microseconds() -> None:
    one = manifest_bytes(build_manifest(FILES, 3, WHEN))
    shuffled = dict(reversed(FILES.items()))
    elsewhere = (WHEN + timedelta(microseconds=5)).astimezone(timezone(timedelta(hours=5)))
    assert manifest_bytes(build_manifest(shuffled, 3, elsewhere)) == one
    assert one == json.dumps(json.loads(one), sort_keys=True, separators=(",", ":")).encode()
    document = json.loads(one)
    assert [f["path"] for f in document["files"]] == ["a.yaml", "b.yaml", "keys/cosign.pub"]
    assert document["signedAt"] == "2026-03-01T12:00:00Z"
    assert document["version"] == 3


def test_the_bytes_change_with_content_version_and_time() -> None:
    one = manifest_bytes(build_manifest(FILES, 3, WHEN))
    assert manifest_bytes(build_manifest({**FILES, "a.yaml": b"A"}, 3, WHEN)) != one
    assert manifest_bytes(build_manifest(FILES, 4, WHEN)) != one
    assert manifest_bytes(build_manifest(FILES, 3, WHEN + timedelta(seconds=1))) != one


def test_parse_gives_back_what_was_built() -> None:
    manifest = build_manifest(FILES, 7, WHEN)
    assert parse_manifest(manifest_bytes(manifest)) == manifest


@pytest.mark.parametrize(
    "path", ["", "/etc/passwd", "../x.yaml", "a/../b.yaml", "./a.yaml", "a//b", "a\\b", "a\nb"]
)
def test_paths_must_be_normalized_and_relative(path: str) -> None:
    with pytest.raises(PolicyError, match="not a normalized relative path"):
        check_path(path)


@pytest.mark.parametrize(
    "data",
    [
        b"{}",
        b'{"kind":"other","version":1,"signedAt":"2026-03-01T12:00:00Z","files":[]}',
        b'{"kind":"trustgate.dev/PolicyManifest/v1","version":0,'
        b'"signedAt":"2026-03-01T12:00:00Z","files":[]}',
        b'{"kind":"trustgate.dev/PolicyManifest/v1","version":1,'
        b'"signedAt":"2026-03-01T12:00:00Z","files":[{"path":"a","sha256":"zz"}]}',
    ],
)
def test_parse_refuses_what_is_not_a_manifest(data: bytes) -> None:
    with pytest.raises(PolicyError, match=r"not a trustgate\.dev/PolicyManifest/v1"):
        parse_manifest(data)


def test_parse_refuses_an_escaping_path() -> None:
    data = manifest_bytes(build_manifest({"a": b""}, 1, WHEN)).replace(b'"a"', b'"../a"')
    with pytest.raises(PolicyError, match="not a normalized relative path"):
        parse_manifest(data)


def test_compare_names_each_file_added_removed_or_changed() -> None:
    manifest = build_manifest(FILES, 1, WHEN)
    assert compare(manifest, FILES) == []
    now = {"a.yaml": b"A", "keys/cosign.pub": b"k", "c.yaml": b"b"}
    found = [(d.path, d.change) for d in compare(manifest, now)]
    assert found == [("a.yaml", "changed"), ("b.yaml", "removed"), ("c.yaml", "added")]
