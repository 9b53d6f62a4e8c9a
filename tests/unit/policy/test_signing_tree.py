"""read_tree: every covered file's exact bytes, within the limits, without outsized buffers."""

from __future__ import annotations

import tracemalloc
from pathlib import Path

import pytest

from webhook.core.errors import PolicyError
from webhook.policy.signing import tree
from webhook.policy.signing.tree import read_at_most, read_tree


def test_the_exact_bytes_of_every_file_are_read(tmp_path: Path) -> None:
    (tmp_path / "empty.yaml").write_bytes(b"")
    (tmp_path / "keys").mkdir()
    (tmp_path / "keys" / "signer.pub").write_bytes(b"k" * 4096)
    (tmp_path / ".trustgate").mkdir()
    (tmp_path / ".trustgate" / "signature.json").write_text("{}")
    assert read_tree(tmp_path) == {"empty.yaml": b"", "keys/signer.pub": b"k" * 4096}


def test_small_files_are_read_without_a_buffer_of_the_limit_each(tmp_path: Path) -> None:
    # Each read was once sized by the 64 MiB limit: 64 MiB allocated for a 1 KiB file.
    for number in range(50):
        (tmp_path / f"policy-{number}.yaml").write_bytes(b"x" * 1024)
    tracemalloc.start()
    try:
        files = read_tree(tmp_path)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert len(files) == 50
    assert peak < 1024 * 1024


def test_a_file_over_the_limit_is_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(tree, "MAX_TOTAL_BYTES", 1000)
    (tmp_path / "policy.yaml").write_bytes(b"x" * 1000)
    assert len(read_tree(tmp_path)["policy.yaml"]) == 1000
    (tmp_path / "big.yaml").write_bytes(b"x" * 1001)
    with pytest.raises(PolicyError, match="holds more than"):
        read_tree(tmp_path)


@pytest.mark.parametrize(("size", "read"), [(0, 0), (99, 99), (100, 100), (101, 101), (5000, 101)])
def test_read_at_most_gives_the_content_or_one_byte_over_the_limit(
    tmp_path: Path, size: int, read: int
) -> None:
    path = tmp_path / "file"
    path.write_bytes(b"x" * size)
    with path.open("rb") as handle:
        assert len(read_at_most(handle, 100)) == read
