"""The policy store on real directories: edits, ConfigMap swaps, failures, the poller."""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.support.cosign import generate_key, public_pem
from webhook.core.errors import PolicyError
from webhook.policy.globs import Glob
from webhook.policy.store import PolicyStore, ReloadStatus

API = "trustgate.dev/v1alpha1"


def policy(name: str = "prod", registry: str = "quay.io/acme/**", *, extra: str = "") -> str:
    return (
        f"apiVersion: {API}\nkind: ImagePolicy\nmetadata: {{name: {name}}}\n"
        f"spec:\n  registries: ['{registry}']\n{extra}"
    )


BROKEN = policy(extra="  registry: ['typo/**']\n")


def registries(store: PolicyStore) -> list[str]:
    return [str(g) for p in store.current.policies for g in p.registries]


class Records(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


@pytest.fixture
def records() -> Iterator[list[logging.LogRecord]]:
    """Records of the ``trustgate.policy`` logger, whatever other tests configured."""
    logger = logging.getLogger("trustgate.policy")
    handler, level = Records(), logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    yield handler.records
    logger.removeHandler(handler)
    logger.setLevel(level)


@pytest.fixture
def statuses() -> list[ReloadStatus]:
    return []


def make_store(directory: Path, statuses: list[ReloadStatus], **kwargs: float) -> PolicyStore:
    return PolicyStore(directory, on_reload=statuses.append, **kwargs)


class ConfigMap:
    """A directory laid out as kubelet mounts a ConfigMap, updated as kubelet does."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.generation = 0

    def publish(self, files: dict[str, str], *, mtime_ns: int | None = None) -> Path:
        """Write a new timestamped directory and swap ``..data`` to it in one rename."""
        self.generation += 1
        data = self.root / f"..2026_01_0{self.generation}_10_00_00.{1000 + self.generation}"
        data.mkdir()
        for name, text in files.items():
            (data / name).write_text(text)
            if mtime_ns is not None:
                os.utime(data / name, ns=(mtime_ns, mtime_ns))
        old = (self.root / "..data").resolve() if (self.root / "..data").exists() else None
        staging = self.root / "..data_tmp"
        staging.symlink_to(data.name)
        os.replace(staging, self.root / "..data")
        for name in files:
            link = self.root / name
            if not link.is_symlink():
                link.symlink_to(f"..data/{name}")
        if old is not None:
            for child in old.iterdir():
                child.unlink()
            old.rmdir()
        return data


def test_first_load(tmp_path: Path, statuses: list[ReloadStatus]) -> None:
    (tmp_path / "prod.yaml").write_text(policy())
    before = time.time()
    store = make_store(tmp_path, statuses)
    status = store.status
    assert (status.policies, status.last_error, status.reloads, status.failures) == (1, None, 0, 0)
    assert status.fingerprint == store.current.fingerprint
    assert before <= status.loaded_at <= time.time()
    assert store.current.policies[0].registries == (Glob("quay.io/acme/**"),)
    assert statuses == []  # the caller reads the first status itself
    assert store.check() is False


@pytest.mark.parametrize(
    ("files", "match"),
    [
        ({}, "no ImagePolicy documents found"),
        ({"prod.yaml": BROKEN}, r"prod.yaml, document 1, field spec.registry: unknown field"),
    ],
    ids=["empty directory", "broken policy"],
)
def test_first_load_failing_raises(tmp_path: Path, files: dict[str, str], match: str) -> None:
    for name, text in files.items():
        (tmp_path / name).write_text(text)
    with pytest.raises(PolicyError, match=match):
        PolicyStore(tmp_path)


def test_interval_must_be_positive(tmp_path: Path) -> None:
    (tmp_path / "prod.yaml").write_text(policy())
    with pytest.raises(ValueError, match="interval must be positive"):
        PolicyStore(tmp_path, interval=0)


def test_reload_on_file_edit(
    tmp_path: Path, statuses: list[ReloadStatus], records: list[logging.LogRecord]
) -> None:
    file = tmp_path / "prod.yaml"
    file.write_text(policy())
    store = make_store(tmp_path, statuses)
    first = store.current

    file.write_text(policy(registry="registry.redhat.io/**"))
    assert store.check() is True
    assert registries(store) == ["registry.redhat.io/**"]
    assert store.current.fingerprint != first.fingerprint
    assert first.policies[0].registries == (Glob("quay.io/acme/**"),)  # old set untouched
    assert store.status.reloads == 1
    assert statuses == [store.status]
    assert store.check() is False

    (tmp_path / "staging.yaml").write_text(policy("staging"))
    assert store.check() is True
    assert store.status.policies == 2
    (tmp_path / "staging.yaml").unlink()
    assert store.check() is True
    assert store.status.policies == 1
    assert store.status.reloads == 3

    reloaded = [r for r in records if r.getMessage().startswith("reloaded")]
    assert len(reloaded) == 3
    assert all(r.levelno == logging.INFO and r.name == "trustgate.policy" for r in reloaded)


def test_touch_without_change_installs_nothing(
    tmp_path: Path, statuses: list[ReloadStatus]
) -> None:
    file = tmp_path / "prod.yaml"
    file.write_text(policy())
    store = make_store(tmp_path, statuses)
    current = store.current
    os.utime(file, ns=(1, 1))
    (tmp_path / "notes.txt").write_text("not a policy")
    assert store.check() is False
    assert store.current is current
    assert statuses == []


def test_configmap_swap_is_seen_even_with_equal_size_and_mtime(
    tmp_path: Path, statuses: list[ReloadStatus]
) -> None:
    mount = ConfigMap(tmp_path)
    stamp = 1_700_000_000 * 10**9
    mount.publish({"prod.yaml": policy(registry="quay.io/acme/**")}, mtime_ns=stamp)
    store = make_store(tmp_path, statuses)
    assert registries(store) == ["quay.io/acme/**"]

    # Same size, same mtime: only the resolved path (and inode) tell them apart.
    mount.publish({"prod.yaml": policy(registry="quay.io/beta/**")}, mtime_ns=stamp)
    assert store.check() is True
    assert registries(store) == ["quay.io/beta/**"]
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "..2026_01_02_10_00_00.1002",
        "..data",
        "prod.yaml",
    ]


def test_broken_update_keeps_the_last_good_set_until_fixed(
    tmp_path: Path, statuses: list[ReloadStatus], records: list[logging.LogRecord]
) -> None:
    mount = ConfigMap(tmp_path)
    mount.publish({"prod.yaml": policy()})
    store = make_store(tmp_path, statuses)
    good = store.current

    mount.publish({"prod.yaml": BROKEN})
    before = time.time()
    assert store.check() is False
    assert store.current is good
    status = store.status
    assert status.last_error is not None
    assert f"{tmp_path / 'prod.yaml'}, document 1, field spec.registry" in status.last_error
    assert status.last_error_at is not None and status.last_error_at >= before
    assert (status.failures, status.reloads, status.policies) == (1, 0, 1)
    assert statuses == [status]
    (failure,) = [r for r in records if r.levelno == logging.ERROR]
    assert failure.name == "trustgate.policy"
    assert "keeping the last good set" in failure.getMessage()
    assert "field spec.registry: unknown field" in failure.getMessage()

    # Not retried (nor logged again) until something changes.
    assert store.check() is False
    assert store.status.failures == 1

    mount.publish({"prod.yaml": policy(registry="registry.redhat.io/**")})
    assert store.check() is True
    status = store.status
    assert (status.last_error, status.last_error_at) == (None, None)
    assert (status.failures, status.reloads) == (1, 1)
    assert registries(store) == ["registry.redhat.io/**"]
    assert statuses[-1] == status


def test_reverting_to_the_installed_content_clears_the_error(
    tmp_path: Path, statuses: list[ReloadStatus]
) -> None:
    file = tmp_path / "prod.yaml"
    file.write_text(policy())
    store = make_store(tmp_path, statuses)
    good = store.current
    file.write_text(BROKEN)
    assert store.check() is False
    assert store.status.last_error is not None
    file.write_text(policy())
    assert store.check() is False  # nothing new to install...
    assert store.current is good
    assert store.status.last_error is None  # ...but the directory is healthy again
    assert [s.last_error is None for s in statuses] == [False, True]


def test_directory_removed_keeps_the_last_good_set(
    tmp_path: Path, statuses: list[ReloadStatus]
) -> None:
    directory = tmp_path / "policies"
    directory.mkdir()
    (directory / "prod.yaml").write_text(policy())
    store = make_store(directory, statuses)
    (directory / "prod.yaml").unlink()
    directory.rmdir()
    assert store.check() is False
    assert len(store.current) == 1
    assert store.status.last_error is not None
    assert "does not exist" in store.status.last_error


def wait_for(condition: Callable[[], bool], deadline: float = 5.0) -> bool:
    end = time.monotonic() + deadline
    while time.monotonic() < end:
        if condition():
            return True
        time.sleep(0.01)
    return condition()


def test_poller_sees_a_change_and_stops(tmp_path: Path, statuses: list[ReloadStatus]) -> None:
    file = tmp_path / "prod.yaml"
    file.write_text(policy())
    store = make_store(tmp_path, statuses, interval=0.02)
    store.start()
    store.start()  # idempotent
    try:
        file.write_text(policy(registry="registry.redhat.io/**"))
        assert wait_for(lambda: registries(store) == ["registry.redhat.io/**"])
        assert store.status.reloads == 1
    finally:
        store.stop()
    assert not [t for t in threading.enumerate() if t.name == "trustgate-policy-reload"]
    file.write_text(policy(registry="quay.io/after-stop/**"))
    time.sleep(0.1)
    assert registries(store) == ["registry.redhat.io/**"]
    store.stop()  # idempotent


def test_stop_does_not_wait_for_the_interval(tmp_path: Path) -> None:
    (tmp_path / "prod.yaml").write_text(policy())
    store = PolicyStore(tmp_path, interval=60)
    store.start()
    started = time.monotonic()
    store.stop()
    assert time.monotonic() - started < 1.0


def test_poller_survives_a_failing_callback(
    tmp_path: Path, records: list[logging.LogRecord]
) -> None:
    calls: list[ReloadStatus] = []

    def on_reload(status: ReloadStatus) -> None:
        calls.append(status)
        if len(calls) == 1:
            raise RuntimeError("metrics exploded")

    file = tmp_path / "prod.yaml"
    file.write_text(policy())
    store = PolicyStore(tmp_path, interval=0.02, on_reload=on_reload)
    store.start()
    try:
        file.write_text(policy(registry="a/**"))
        assert wait_for(lambda: len(calls) == 1)
        file.write_text(policy(registry="bb/**"))
        assert wait_for(lambda: len(calls) == 2)
    finally:
        store.stop()
    assert any("metrics exploded" in str(r.exc_info) for r in records if r.exc_info)


def later(path: Path, *, seconds: int) -> None:
    """Move ``path``'s modification time forward, as a later edit would have it."""
    mtime = path.stat().st_mtime_ns + seconds * 1_000_000_000
    os.utime(path, ns=(mtime, mtime))


def signed_policy(key_file: str) -> str:
    return policy(
        extra=(
            "  signatures:\n    authorities:\n"
            f"      - {{name: release, key: {{file: {key_file}}}}}\n"
        )
    )


def test_key_file_edited_in_place_reloads(tmp_path: Path, statuses: list[ReloadStatus]) -> None:
    """Keys rotate: a new key in the same file, in a subdirectory the stamp does not list."""
    keys = tmp_path / "keys"
    keys.mkdir()
    key = keys / "release.pub"
    key.write_text(public_pem(generate_key("ecdsa-p256")))
    (tmp_path / "prod.yaml").write_text(signed_policy("keys/release.pub"))
    store = make_store(tmp_path, statuses)
    first = store.current
    assert first.files == (str(key),)
    assert store.check() is False

    rotated = public_pem(generate_key("ecdsa-p256"))
    key.write_text(rotated)
    later(key, seconds=1)  # same size; make the edit visible past the clock's granularity
    assert store.check() is True
    (authority,) = store.current.policies[0].signatures.authorities  # type: ignore[union-attr]
    assert authority.key is not None and authority.key.pem == rotated
    assert store.current.fingerprint != first.fingerprint

    key.write_text("not a key\n")
    later(key, seconds=2)
    assert store.check() is False
    assert store.current.policies[0].signatures.authorities[0].key.pem == rotated  # type: ignore[union-attr]
    assert store.status.last_error is not None and "release.pub" in store.status.last_error


def test_same_policy_text_with_another_key_file_content_is_another_set(tmp_path: Path) -> None:
    from webhook.policy.loader import load_directory

    (tmp_path / "release.pub").write_text(public_pem(generate_key("ecdsa-p256")))
    (tmp_path / "prod.yaml").write_text(signed_policy("release.pub"))
    before = load_directory(tmp_path).fingerprint
    (tmp_path / "release.pub").write_text(public_pem(generate_key("ecdsa-p256")))
    assert load_directory(tmp_path).fingerprint != before


KEYLESS = policy(
    extra=(
        "  signatures:\n    authorities:\n      - name: ci\n        keyless:\n"
        "          issuer: https://issuer.example\n          subject: ci@example.com\n"
    )
)


def test_a_loader_defect_fails_the_reload_where_readiness_shows_it(
    tmp_path: Path, statuses: list[ReloadStatus], records: list[logging.LogRecord]
) -> None:
    """Should anything but a PolicyError escape the loader, the change is not silently dropped."""
    from webhook.trust.trustroot import TrustRoots

    class Defective(TrustRoots):
        broken = False

        def load(self, spec: str, base: Path):  # type: ignore[no-untyped-def]
            if self.broken:
                raise KeyError("a defect")
            return super().load(spec, base)

    roots = Defective()
    file = tmp_path / "prod.yaml"
    file.write_text(KEYLESS)
    store = PolicyStore(tmp_path, on_reload=statuses.append, roots=roots)
    first = store.current
    roots.broken = True
    file.write_text(KEYLESS + "  mode: audit\n")
    assert store.check() is False
    assert store.current is first
    assert store.status.failures == 1
    assert store.status.last_error == "cannot load the policies (KeyError: 'a defect')"
    assert statuses == [store.status]
    assert any(r.getMessage().startswith("policy reload failed") for r in records)
