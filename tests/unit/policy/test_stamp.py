"""What the stamp watches of a signed set beyond the directory's own entries."""

from __future__ import annotations

import os
from pathlib import Path

from webhook.policy.stamp import stamp, verified_paths


def test_visible_top_level_entries_are_not_watched_twice(tmp_path: Path) -> None:
    files = ["policy.yaml", "tests.yaml", "keys/signer.pub", "a/b/c/key.pub", ".hidden.yaml"]
    assert verified_paths(tmp_path, files) == [
        str(tmp_path / "keys/signer.pub"),
        str(tmp_path / "a/b/c/key.pub"),
        str(tmp_path / ".hidden.yaml"),
        str(tmp_path / "a/b"),
        str(tmp_path / "a/b/c"),
    ]


def test_a_top_level_file_edited_in_place_changes_the_stamp_without_being_watched(
    tmp_path: Path,
) -> None:
    policy = tmp_path / "policy.yaml"
    policy.write_text("one")
    before = stamp(tmp_path, verified_paths(tmp_path, ["policy.yaml"]))
    status = os.stat(policy)
    policy.write_text("two")  # same size; mtime put back: the change time still moves
    os.utime(policy, ns=(status.st_atime_ns, status.st_mtime_ns))
    assert stamp(tmp_path, verified_paths(tmp_path, ["policy.yaml"])) != before
