"""webhook.policy.signing.marks: the rollback high-water mark in a file.

Real files, real processes: workers of one pod advance the mark at once through
the same file; a mark that cannot be read is an error, never "no mark".
"""

from __future__ import annotations

import fcntl
import json
import os
import subprocess
import sys
import textwrap
import time
from datetime import UTC, datetime
from pathlib import Path

import pytest

from webhook.policy.signing.gate import Mark, MarkError
from webhook.policy.signing.marks import MAX_MARK_BYTES, FileMark

REPO = Path(__file__).resolve().parents[3]
DIGEST = "sha256:" + "ab" * 32
OTHER = "sha256:" + "cd" * 32


def at(path: Path) -> FileMark:
    return FileMark(path, now=lambda: datetime(2026, 12, 6, 9, 30, tzinfo=UTC))


def test_no_file_yet_is_no_mark_and_the_first_advance_writes_one(tmp_path: Path) -> None:
    mark = at(tmp_path / "mark.json")
    assert mark.read() is None
    assert mark.where == f"file {tmp_path / 'mark.json'}"
    mark.advance(Mark(3, DIGEST))
    assert mark.read() == Mark(3, DIGEST)
    document = json.loads((tmp_path / "mark.json").read_text())
    assert document == {"version": 3, "digest": DIGEST, "updatedAt": "2026-12-06T09:30:00Z"}
    # Temp files are renamed over the mark, none left behind; the lock file stays.
    assert sorted(p.name for p in tmp_path.iterdir()) == ["mark.json", "mark.json.lock"]


def test_advance_never_lowers_the_mark(tmp_path: Path) -> None:
    path = tmp_path / "mark.json"
    mark = at(path)
    mark.advance(Mark(5, DIGEST))
    before = path.stat()
    mark.advance(Mark(4, OTHER))
    mark.advance(Mark(5, OTHER))  # the same version with other content is not written either
    assert mark.read() == Mark(5, DIGEST)
    assert path.stat().st_ino == before.st_ino  # not rewritten at all
    mark.advance(Mark(6, OTHER))
    assert mark.read() == Mark(6, OTHER)
    assert path.stat().st_ino != before.st_ino  # a new file renamed over the old one


def test_a_new_instance_reads_what_another_wrote(tmp_path: Path) -> None:
    """What a restart sees: the mark of the previous process."""
    at(tmp_path / "mark.json").advance(Mark(9, DIGEST))
    assert at(tmp_path / "mark.json").read() == Mark(9, DIGEST)


_WORKER = textwrap.dedent(
    """
    import random, sys
    from pathlib import Path
    from webhook.policy.signing.gate import Mark
    from webhook.policy.signing.marks import FileMark

    path, seed = Path(sys.argv[1]), int(sys.argv[2])
    versions = list(range(1, 151))
    random.Random(seed).shuffle(versions)
    mark = FileMark(path, lock_seconds=30)
    for version in versions:
        mark.advance(Mark(version, "sha256:" + format(version, "064x")))
        stored = mark.read()
        assert stored is not None and stored.version >= version, (stored, version)
    print("done")
    """
)


def test_processes_advancing_at_once_end_at_the_highest_version(tmp_path: Path) -> None:
    """gunicorn workers share the file: read-compare-write under the lock, never lower."""
    path = tmp_path / "mark.json"
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    workers = [
        subprocess.Popen(
            [sys.executable, "-c", _WORKER, str(path), str(seed)],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for seed in (1, 2, 3)
    ]
    for worker in workers:
        out, err = worker.communicate(timeout=120)
        assert worker.returncode == 0, err
        assert out.strip() == "done"
    assert at(path).read() == Mark(150, "sha256:" + format(150, "064x"))


def test_a_lock_held_too_long_is_an_error_not_a_hang(tmp_path: Path) -> None:
    path = tmp_path / "mark.json"
    with open(tmp_path / "mark.json.lock", "w") as held:
        fcntl.flock(held, fcntl.LOCK_EX)
        mark = FileMark(path, lock_seconds=0.2)
        start = time.monotonic()
        with pytest.raises(MarkError, match=r"another process held .* for over 0.2s"):
            mark.advance(Mark(1, DIGEST))
        assert time.monotonic() - start < 1.0
    assert mark.read() is None
    mark.advance(Mark(1, DIGEST))
    assert mark.read() == Mark(1, DIGEST)


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"", "not JSON"),
        (b'{"version": 3, "dig', "not JSON"),
        (b"[3]", "not a JSON object"),
        (b"{}", "version is not a whole number"),
        (b'{"version": true, "digest": "sha256:ab"}', "version is not a whole number"),
        (b'{"version": -1, "digest": "sha256:ab"}', "version is not a whole number"),
        (b'{"version": 2.5, "digest": "sha256:ab"}', "version is not a whole number"),
        (b'{"version": 3}', "digest is not a digest"),
        (b'{"version": 3, "digest": "ab cd"}', "digest is not a digest"),
        (b'{"version": 3, "digest": "sha256:' + b"a" * MAX_MARK_BYTES + b'"}', "over 4096 bytes"),
        (b"\xff\xfe", "not JSON"),
        (b'{"version": "' + b"9" * 3000 + b'", "digest": "sha256:ab"}', "not a whole number"),
    ],
)
def test_a_corrupt_file_is_an_error_that_says_what_to_do_and_is_not_written_over(
    tmp_path: Path, content: bytes, message: str
) -> None:
    path = tmp_path / "mark.json"
    path.write_bytes(content)
    mark = at(path)
    with pytest.raises(MarkError, match=message) as caught:
        mark.read()
    assert "set policies.signature.minimumVersion to the version deployed now" in str(caught.value)
    with pytest.raises(MarkError, match=message):
        mark.advance(Mark(99, DIGEST))
    assert path.read_bytes() == content


def test_a_huge_file_is_not_read_whole(tmp_path: Path) -> None:
    path = tmp_path / "mark.json"
    with open(path, "wb") as file:
        file.truncate(1 << 34)  # 16 GiB, sparse
    with pytest.raises(MarkError, match="over 4096 bytes"):
        at(path).read()


def test_an_unreadable_mark_is_an_error(tmp_path: Path) -> None:
    path = tmp_path / "mark.json"
    path.mkdir()  # something there that cannot be read as a file (root reads any mode)
    with pytest.raises(MarkError, match=f"file {path}: cannot read it: Is a directory"):
        at(path).read()
    with pytest.raises(MarkError, match="cannot read it"):
        at(path).advance(Mark(1, DIGEST))


def test_a_fifo_in_place_of_the_mark_is_an_error_not_a_hang(tmp_path: Path) -> None:
    """Opened for reading, a FIFO waits for a writer: the reload thread would hang."""
    import threading

    path = tmp_path / "mark.json"
    os.mkfifo(path)
    raised: list[BaseException] = []

    def read() -> None:
        try:
            at(path).read()
        except BaseException as exc:  # the outcome is the assertion below
            raised.append(exc)

    worker = threading.Thread(target=read, daemon=True)
    worker.start()
    worker.join(5)
    if worker.is_alive():  # let the hung reader go before failing
        with open(path, "wb"):
            pass
    assert not worker.is_alive(), "reading a FIFO as the mark hung"
    assert len(raised) == 1 and isinstance(raised[0], MarkError)
    assert "not a regular file" in str(raised[0]) and "minimumVersion" in str(raised[0])


def test_a_missing_directory_is_an_error_naming_the_volume_not_no_mark(tmp_path: Path) -> None:
    mark = at(tmp_path / "not-mounted" / "mark.json")
    with pytest.raises(MarkError, match="does not exist; mount a volume there"):
        mark.read()
    with pytest.raises(MarkError, match="does not exist; mount a volume there"):
        mark.advance(Mark(1, DIGEST))


def test_a_mark_written_by_hand_in_the_documented_shape_is_read(tmp_path: Path) -> None:
    path = tmp_path / "mark.json"
    path.write_text('{"version": 12, "digest": "git:' + "e" * 40 + '"}')
    assert at(path).read() == Mark(12, "git:" + "e" * 40)
