"""Loading a policy set from the bytes that were verified, named as the real directory's files."""

from __future__ import annotations

import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric import ec

from tests.support.kube import policy_yaml
from tests.support.policysigning import KEYED_POLICY, public_pem
from webhook.core.errors import PolicyError, PolicyErrors
from webhook.policy.loader import load_directory
from webhook.policy.relocate import Relocation
from webhook.policy.snapshot import load_verified

KEY = public_pem(ec.generate_private_key(ec.SECP256R1()))
OTHER = public_pem(ec.generate_private_key(ec.SECP256R1()))
FILES = {
    "policy.yaml": policy_yaml().encode(),
    "keyed.yaml": KEYED_POLICY.encode(),
    "keys/signer.pub": KEY,
}


def on_disk(root: Path, files: dict[str, bytes]) -> Path:
    directory = root / "policies"
    for name, data in files.items():
        (directory / name).parent.mkdir(parents=True, exist_ok=True)
        (directory / name).write_bytes(data)
    return directory


def key_of(policy_set: object, name: str = "keyed") -> object:
    (policy,) = [p for p in policy_set.policies if p.name == name]  # type: ignore[attr-defined]
    return policy.signatures.authorities[0].key


def test_the_verified_bytes_load_not_what_the_directory_holds_now(tmp_path: Path) -> None:
    # Swapped after the check: the key file on disk is another key, and a policy is gone.
    directory = on_disk(tmp_path, {"keyed.yaml": KEYED_POLICY.encode(), "keys/signer.pub": OTHER})
    loaded = load_verified(directory, FILES)
    assert sorted(p.name for p in loaded.policies) == ["keyed", "production"]
    key = key_of(loaded)
    assert key.pem == KEY.decode()  # type: ignore[attr-defined]


def test_paths_name_the_real_directory_and_match_a_load_of_it(tmp_path: Path) -> None:
    directory = on_disk(tmp_path, FILES)
    copied = load_verified(directory, FILES)
    direct = load_directory(directory)
    real = os.path.abspath(directory)
    assert key_of(copied).file == f"{real}/keys/signer.pub"  # type: ignore[attr-defined]
    assert copied.files == direct.files == (f"{real}/keys/signer.pub",)
    assert copied.fingerprint == direct.fingerprint  # the same set, however it was read
    sources = {p.name: p.source for p in copied.policies}
    assert sources["keyed"] == f"{real}/keyed.yaml"


def test_errors_name_the_real_directory_and_the_copy_is_gone(tmp_path: Path) -> None:
    before = set(os.listdir(tempfile.gettempdir()))
    broken = {**FILES, "keys/signer.pub": b"not a key", "bad.yaml": b"kind: [unclosed"}
    directory = tmp_path / "policies"
    with pytest.raises(PolicyErrors) as caught:
        load_verified(directory, broken)
    text = str(caught.value)
    assert f"{os.path.abspath(directory)}/bad.yaml" in text
    assert f"{os.path.abspath(directory)}/keys/signer.pub" in text
    assert "trustgate-policies-" not in text
    assert set(os.listdir(tempfile.gettempdir())) - before == set()


def test_a_path_leaving_the_copy_is_refused(tmp_path: Path) -> None:
    with pytest.raises(PolicyError, match="normalized relative path"):
        load_verified(tmp_path, {**FILES, "../escape.yaml": b"x"})
    assert not (tmp_path.parent / "escape.yaml").exists()


def test_an_unwritable_temporary_directory_says_what_to_do(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    not_a_directory = tmp_path / "file"  # fails for root too, whom file modes do not stop
    not_a_directory.write_text("")
    monkeypatch.setattr(tempfile, "tempdir", str(not_a_directory))
    with pytest.raises(PolicyError, match=r"cannot write the private copy .* set TMPDIR"):
        load_verified(tmp_path, FILES)


@dataclass(frozen=True, slots=True)
class Computed:
    path: str
    twice: str = field(init=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "twice", self.path * 2)


def test_relocation_keeps_unchanged_parts_and_computed_fields() -> None:
    moving = Relocation(Path("/tmp/copy/set"), Path("/etc/policies"))
    unchanged = (Computed("/elsewhere"),)
    assert moving.value(unchanged) is unchanged
    moved = moving.value((Computed("/tmp/copy/set/a.pub"), Path("/tmp/copy/set"), 3))
    assert moved[0].path == "/etc/policies/a.pub"
    assert moved[0].twice == "/etc/policies/a.pub" * 2  # a field made at construction too
    assert moved[1:] == (Path("/etc/policies"), 3)
