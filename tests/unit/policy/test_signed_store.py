"""The policy store with policies.signature, on real signed directories and keys."""

from __future__ import annotations

import logging
import os
import shutil
from datetime import UTC, datetime
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric import ec

from tests.support.kube import policy_yaml
from tests.support.policysigning import (
    KEYED_POLICY,
    MemoryMarks,
    private_pem,
    public_pem,
    signed_set,
)
from webhook.core.errors import PolicyError
from webhook.policy.signing.envelope import TrustedKey, sign_directory
from webhook.policy.signing.gate import PolicySignatureError, Verified
from webhook.policy.signing.verifier import FileVerifier
from webhook.policy.store import PolicyStore, ReloadStatus

TEAM = ec.generate_private_key(ec.SECP256R1())
VERIFIER = FileVerifier([TrustedKey("policy-team", TEAM.public_key())])


def sign(directory: Path, version: int) -> None:
    sign_directory(directory, private_pem(TEAM), source="k", version=version, now=datetime.now(UTC))


def unsigned(directory: Path) -> Path:
    signed_set(directory, TEAM, 1)
    shutil.rmtree(directory / ".trustgate")
    return directory


class Heard:
    def __init__(self) -> None:
        self.refusals: list[str] = []
        self.statuses: list[ReloadStatus] = []

    def store(self, directory: Path, **kwargs: object) -> PolicyStore:
        return PolicyStore(
            directory,
            verifier=VERIFIER,
            on_refused=lambda exc: self.refusals.append(exc.reason),
            on_reload=self.statuses.append,
            **kwargs,  # type: ignore[arg-type]
        )


def test_no_good_set_at_start_is_held_not_raised_and_loads_once_signed(tmp_path: Path) -> None:
    heard = Heard()
    directory = unsigned(tmp_path / "policies")
    store = heard.store(directory)
    assert not store.loaded and len(store.current) == 0
    assert store.status.last_error and store.status.last_error.startswith("refused (unsigned)")
    assert store.signature is not None and store.signature.state == "none"
    assert heard.refusals == ["unsigned"]
    assert not store.check()  # nothing changed: not read again, not counted again
    assert heard.refusals == ["unsigned"]
    sign(directory, 1)
    assert store.check()
    assert store.loaded and {p.name for p in store.current} == {"production", "keyed"}
    assert store.signature.state == "verified" and store.signature.version == 1
    assert store.status.last_error is None


def test_a_refusal_keeps_the_last_good_set(tmp_path: Path) -> None:
    heard = Heard()
    directory = signed_set(tmp_path / "policies", TEAM, 1)
    store = heard.store(directory)
    good = store.current
    (directory / "policy.yaml").write_text(policy_yaml(registries='["**"]'))
    assert not store.check()
    assert store.current is good
    state = store.signature
    assert state is not None and state.state == "refused" and not state.valid
    assert state.last_refusal is not None and state.last_refusal.reason == "altered"
    assert (state.version, state.authority) == (1, "policy-team")  # of the set in force
    assert heard.refusals == ["altered"]
    assert heard.statuses[-1].last_error.startswith("refused (altered)")  # type: ignore[union-attr]


def test_audit_loads_an_unsigned_set_with_a_warning(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    heard = Heard()
    with caplog.at_level(logging.WARNING, "trustgate.policy"):
        store = heard.store(unsigned(tmp_path / "policies"), required=False)
    assert store.loaded and store.status.last_error is None
    assert store.signature is not None and store.signature.state == "audit"
    assert heard.refusals == ["unsigned"]
    assert any("required is false (audit)" in r.getMessage() for r in caplog.records)


def test_audit_loads_a_set_naming_its_key_by_absolute_path_with_a_warning(
    tmp_path: Path,
) -> None:
    """What required refuses (a file read from the directory, not the verified bytes), audit
    loads, as it loads every other refused set, and says why."""
    directory = tmp_path / "policies"
    key = directory / "keys" / "signer.pub"
    files = {
        "keyed.yaml": KEYED_POLICY.replace("keys/signer.pub", str(key)),
        "keys/signer.pub": public_pem(ec.generate_private_key(ec.SECP256R1())).decode(),
    }
    signed_set(directory, TEAM, 1, files)
    heard = Heard()
    assert not heard.store(directory).loaded  # required: refused
    audit = heard.store(directory, required=False)
    assert audit.loaded and {p.name for p in audit.current.policies} == {"keyed"}
    assert audit.signature is not None and audit.signature.state == "audit"
    assert heard.refusals == ["unsigned", "unsigned"]


def test_a_new_signature_alone_is_seen(tmp_path: Path) -> None:
    directory = signed_set(tmp_path / "policies", TEAM, 1)
    store = Heard().store(directory)
    sign(directory, 2)  # only .trustgate/signature.json changes
    store.check()
    assert store.signature is not None and store.signature.version == 2


def test_a_directory_link_swapped_as_git_sync_does_is_seen(tmp_path: Path) -> None:
    first = signed_set(tmp_path / "one", TEAM, 1)
    second = signed_set(tmp_path / "two", TEAM, 2)
    os.utime(second / "policy.yaml", ns=(0, os.stat(first / "policy.yaml").st_mtime_ns))
    link = tmp_path / "current"
    link.symlink_to(first)
    store = Heard().store(link)
    swap = tmp_path / "swap"
    swap.symlink_to(second)
    swap.replace(link)
    assert store.check()
    assert store.signature is not None and store.signature.version == 2


def test_a_file_edited_in_place_in_a_subdirectory_is_seen(tmp_path: Path) -> None:
    directory = signed_set(tmp_path / "policies", TEAM, 1)
    store = Heard().store(directory)
    key = directory / "keys" / "signer.pub"
    before = os.stat(key)
    other = public_pem(ec.generate_private_key(ec.SECP256R1()))
    assert len(other) == before.st_size
    key.write_bytes(other)
    os.utime(key, ns=(before.st_atime_ns, before.st_mtime_ns))  # size and mtime as before
    store.check()
    assert store.signature is not None and store.signature.state == "refused"
    assert "keys/signer.pub: changed" in store.signature.last_refusal.message  # type: ignore[union-attr]


@pytest.mark.parametrize("name", ["policy.yaml", ".hidden.yaml"])
def test_a_top_level_file_edited_in_place_is_seen(tmp_path: Path, name: str) -> None:
    files = {"policy.yaml": policy_yaml(), ".hidden.yaml": "notes"}
    directory = signed_set(tmp_path / "policies", TEAM, 1, files)
    store = Heard().store(directory)
    store.check()
    path = directory / name
    before = os.stat(path)
    path.write_bytes(path.read_bytes().replace(b"e", b"E", 1))  # same size
    os.utime(path, ns=(before.st_atime_ns, before.st_mtime_ns))
    store.check()
    assert store.signature is not None and store.signature.state == "refused"
    assert f"{name}: changed" in store.signature.last_refusal.message  # type: ignore[union-attr]


def test_an_unreadable_mark_refuses_and_is_retried_at_every_check(tmp_path: Path) -> None:
    heard = Heard()
    marks = MemoryMarks()
    marks.read_error = "connection refused"
    store = heard.store(signed_set(tmp_path / "policies", TEAM, 3), marks=marks)
    assert not store.loaded
    assert store.signature is not None and store.signature.last_refusal is not None
    assert store.signature.last_refusal.reason == "unavailable"
    store.check()
    store.check()
    assert heard.refusals == ["unavailable"]  # retried quietly: counted once
    assert heard.statuses == []  # and not reported again
    marks.read_error = None
    assert store.check()  # nothing changed on disk, and yet it loads
    assert marks.mark is not None and marks.mark.version == 3


def test_a_replayed_set_is_refused_by_the_stored_mark(tmp_path: Path) -> None:
    marks = MemoryMarks()
    store = Heard().store(signed_set(tmp_path / "policies", TEAM, 5), marks=marks)
    assert store.loaded and marks.mark is not None and marks.mark.version == 5
    # A restart with an older signed set on disk.
    again = Heard().store(signed_set(tmp_path / "older", TEAM, 4), marks=marks)
    assert not again.loaded
    assert again.signature is not None and again.signature.last_refusal is not None
    assert again.signature.last_refusal.reason == "replayed"


def test_minimum_version_applies_at_start(tmp_path: Path) -> None:
    store = Heard().store(signed_set(tmp_path / "policies", TEAM, 2), minimum_version=3)
    assert not store.loaded
    assert "minimumVersion 3" in (store.status.last_error or "")


def test_a_signed_set_that_does_not_compile_is_not_loaded(tmp_path: Path) -> None:
    files = {"policy.yaml": policy_yaml(extra="  registry: typo\n")}
    store = Heard().store(signed_set(tmp_path / "policies", TEAM, 1, files))
    assert not store.loaded
    assert "registry" in (store.status.last_error or "")


def test_without_a_verifier_a_bad_first_load_still_raises(tmp_path: Path) -> None:
    with pytest.raises(PolicyError):
        PolicyStore(tmp_path / "missing")


def test_the_verifier_adapter_returns_the_verified_content(tmp_path: Path) -> None:
    directory = signed_set(tmp_path / "policies", TEAM, 7)
    verified = VERIFIER(directory)
    assert (verified.authority, verified.version) == ("policy-team", 7)
    assert verified.digest.startswith("sha256:") and len(verified.digest) == 71
    assert verified.files is not None and "keys/signer.pub" in verified.files
    assert verified.files["policy.yaml"] == (directory / "policy.yaml").read_bytes()
    stranger = FileVerifier(
        [TrustedKey("other", ec.generate_private_key(ec.SECP256R1()).public_key())]
    )
    with pytest.raises(PolicySignatureError) as caught:
        stranger(directory)
    assert caught.value.reason == "untrusted"


def test_a_change_made_while_a_set_loads_is_refused_at_the_next_check(tmp_path: Path) -> None:
    directory = signed_set(tmp_path / "policies", TEAM, 1)
    weak = policy_yaml(registries='["**"]')

    def tampering(path: Path) -> Verified:
        verified = VERIFIER(path)
        (directory / "policy.yaml").write_text(weak)  # between the check and the load
        return verified

    store = PolicyStore(directory, verifier=tampering)
    # What loaded is what was verified, not what the directory holds now...
    (production,) = [p for p in store.current if p.name == "production"]
    assert "**" not in [str(g) for g in production.registries]
    assert store.signature is not None and store.signature.state == "verified"
    # ...and the next check reads the directory again, and refuses it.
    store.check()
    assert store.signature.state == "refused"
    assert "policy.yaml: changed" in store.signature.last_refusal.message  # type: ignore[union-attr]


def test_a_file_added_deep_in_a_subdirectory_is_seen(tmp_path: Path) -> None:
    files = {"policy.yaml": policy_yaml(), "a/b/c/key.pub": "k"}
    directory = signed_set(tmp_path / "policies", TEAM, 1, files)
    store = Heard().store(directory)
    store.check()  # the first check after a load reads the set again: now stable
    (directory / "a" / "b" / "extra.yaml").write_text("x")
    store.check()
    assert store.signature is not None and store.signature.state == "refused"
    assert "a/b/extra.yaml: added" in store.signature.last_refusal.message  # type: ignore[union-attr]


def test_audit_with_an_unreadable_mark_loads_once_and_does_not_retry(tmp_path: Path) -> None:
    heard = Heard()
    marks = MemoryMarks()
    marks.read_error = "connection refused"
    directory = signed_set(tmp_path / "policies", TEAM, 3)
    store = heard.store(directory, marks=marks, required=False)
    assert store.loaded and store.signature is not None and store.signature.state == "audit"
    store.check()
    store.check()
    assert heard.refusals == ["unavailable"]
