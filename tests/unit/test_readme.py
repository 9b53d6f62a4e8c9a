"""The README's policy snippets are real policies: a newcomer can paste them."""

from __future__ import annotations

import re
from pathlib import Path

from tests.cosign import generate_key, public_pem
from webhook.policy.loader import load_directory

README = Path(__file__).resolve().parents[2] / "README.md"


def test_readme_policy_snippets_load(tmp_path: Path) -> None:
    first, *more = re.findall(r"```yaml\n(.*?)```", README.read_text(encoding="utf-8"), re.S)
    assert more, "the README shows signatures and freshness as a continuation of its policy"
    (tmp_path / "keys").mkdir()
    (tmp_path / "keys" / "release.pub").write_text(public_pem(generate_key("ecdsa-p256")))
    (tmp_path / "policy.yaml").write_text(first + "".join(more))
    (policy,) = load_directory(tmp_path).policies
    assert policy.name == "production"
    assert policy.signatures is not None
    assert [a.name for a in policy.signatures.authorities] == ["release", "ci"]
    assert policy.freshness is not None
