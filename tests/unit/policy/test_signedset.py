"""The signature and version gate: replays refused, the high-water mark read and written."""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from pathlib import Path

import pytest

from tests.support.policysigning import MemoryMarks as Marks
from webhook.policy.signedset import SignedSets
from webhook.policy.signing.gate import Mark, MarkError, PolicySignatureError, Verified

WHEN = datetime(2026, 3, 1, tzinfo=UTC)


def verified(version: int, digest: str = "sha256:a") -> Verified:
    return Verified("policy-team", version, digest, WHEN, {"policy.yaml": b"x"})


class Verifier:
    """Says the directory is whatever ``answer`` is (a set or a refusal)."""

    def __init__(self, answer: Verified | PolicySignatureError) -> None:
        self.answer = answer

    def __call__(self, directory: Path) -> Verified:
        if isinstance(self.answer, PolicySignatureError):
            raise self.answer
        return self.answer


def gate(
    answer: Verified | PolicySignatureError, marks: Marks | None = None, minimum: int = 0
) -> tuple[SignedSets, Verifier, list[MarkError]]:
    errors: list[MarkError] = []
    verifier = Verifier(answer)
    sets = SignedSets(
        verifier, marks, required=True, minimum_version=minimum, on_mark_error=errors.append
    )
    return sets, verifier, errors


def refusal(sets: SignedSets) -> PolicySignatureError:
    with pytest.raises(PolicySignatureError) as caught:
        sets.admit(Path("policies"))
    return caught.value


def test_a_signed_set_is_admitted_and_raises_the_mark() -> None:
    marks = Marks()
    sets, _, _ = gate(verified(3), marks)
    sets.advance(sets.admit(Path("policies")))
    assert marks.mark == Mark(3, "sha256:a")


def test_the_verifiers_refusal_passes_through() -> None:
    sets, _, _ = gate(PolicySignatureError("no", reason="untrusted"))
    assert refusal(sets).reason == "untrusted"


def test_below_minimum_version_is_replayed() -> None:
    sets, _, _ = gate(verified(2), minimum=5)
    error = refusal(sets)
    assert error.reason == "replayed"
    assert "minimumVersion 5" in error.message and "--version 5" in error.message


def test_older_than_the_stored_mark_is_replayed_after_a_restart() -> None:
    sets, _, _ = gate(verified(4), Marks(Mark(7, "sha256:b")))
    error = refusal(sets)
    assert error.reason == "replayed"
    assert "older than version 7" in error.message and "--version 8" in error.message


def test_a_replayed_commit_is_told_to_check_out_a_newer_commit_not_to_pass_a_flag() -> None:
    """source: git: the version is the committer time, which no --version sets."""
    older = gate(verified(1_700_000_000, "git:older"), Marks(Mark(1_700_000_060, "git:newer")))[0]
    same = gate(verified(1_700_000_060, "git:other"), Marks(Mark(1_700_000_060, "git:newer")))[0]
    low = gate(verified(1_700_000_000, "git:older"), minimum=1_800_000_000)[0]
    for sets, wanted in [(older, 1_700_000_061), (same, 1_700_000_061), (low, 1_800_000_000)]:
        error = refusal(sets)
        assert error.reason == "replayed"
        assert "--version" not in error.message
        assert f"signed commit whose committer time is {wanted} (Unix seconds)" in error.message


def test_older_than_what_this_process_loaded_is_replayed_without_a_store() -> None:
    sets, verifier, _ = gate(verified(4))
    sets.advance(sets.admit(Path("policies")))
    verifier.answer = verified(3, "sha256:old")
    assert refusal(sets).reason == "replayed"


def test_same_version_same_content_loads_again_other_content_is_replayed() -> None:
    marks = Marks(Mark(4, "sha256:a"))
    sets, verifier, _ = gate(verified(4), marks)
    sets.advance(sets.admit(Path("policies")))  # a restart: the same set
    assert marks.writes == 0  # nothing higher to write
    verifier.answer = verified(4, "sha256:other")
    error = refusal(sets)
    assert error.reason == "replayed"
    assert "version 4 was already loaded with other content; sign with --version 5" in str(error)
    verifier.answer = verified(5, "sha256:other")
    sets.advance(sets.admit(Path("policies")))
    assert marks.mark == Mark(5, "sha256:other")


def test_an_unreadable_mark_admits_nothing() -> None:
    marks = Marks()
    marks.read_error = "the ConfigMap cannot be read: 403"
    sets, _, _ = gate(verified(9), marks)
    error = refusal(sets)
    assert error.reason == "unavailable"
    assert "memory" in error.message and "403" in error.message
    marks.read_error = None
    assert sets.admit(Path("policies")).version == 9


def test_a_failed_write_is_counted_logged_once_kept_in_memory_and_retried(
    caplog: pytest.LogCaptureFixture,
) -> None:
    marks = Marks()
    marks.write_error = "read-only file system"
    sets, verifier, errors = gate(verified(6), marks)
    with caplog.at_level(logging.ERROR, "trustgate.policy"):
        sets.advance(sets.admit(Path("policies")))
        sets.retry()
        sets.retry()
    assert len(errors) == 3 and marks.mark is None
    assert [r.getMessage() for r in caplog.records if "cannot record" in r.getMessage()] == [
        "cannot record policy-set version 6 in memory, retrying at every check (this process "
        "still refuses older sets; a restarted one would not know of this version): "
        "read-only file system"
    ]
    verifier.answer = verified(5, "sha256:b")
    assert refusal(sets).reason == "replayed"  # the mark held in memory still applies
    marks.write_error = None
    sets.retry()
    assert marks.mark == Mark(6, "sha256:a")
    writes = marks.writes
    sets.retry()
    assert marks.writes == writes  # written once, not at every check
