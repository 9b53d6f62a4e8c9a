"""Keyless authorities in policy files: regexes, extensions and trusted roots at load time."""

from __future__ import annotations

import json
import textwrap
from pathlib import Path

import pytest

from tests.support.sigstore_instance import SigstoreInstance
from webhook.core.errors import PolicyErrors
from webhook.policy.loader import load_directory


def write(directory: Path, keyless: str) -> Path:
    (directory / "policy.yaml").write_text(
        textwrap.dedent(
            """\
            apiVersion: trustgate.dev/v1alpha1
            kind: ImagePolicy
            metadata: {name: keyless}
            spec:
              registries: ["**"]
              signatures:
                authorities:
                  - name: ci
                    keyless: %s
            """
        )
        % keyless
    )
    return directory


def test_keyless_authority_compiles_with_its_root(tmp_path: Path) -> None:
    instance = SigstoreInstance()
    (tmp_path / "roots").mkdir()
    (tmp_path / "roots" / "private.json").write_text(instance.trusted_root_json())
    policies = load_directory(
        write(
            tmp_path,
            '{issuer: "https://issuer.test", subjectRegExp: "dev@acme\\\\.test", '
            "trustedRoot: roots/private.json, extensions: {githubWorkflowRepository: acme/api}}",
        )
    )
    keyless = policies.policies[0].signatures.authorities[0].keyless  # type: ignore[union-attr]
    assert keyless is not None and keyless.root is not None
    assert keyless.trusted_root == str(tmp_path / "roots" / "private.json")
    assert keyless.subject_regexp == "dev@acme\\.test"
    assert keyless.extensions == (("githubWorkflowRepository", "acme/api"),)
    assert keyless.root_digest == keyless.root.digest


def test_production_is_the_default_root(tmp_path: Path) -> None:
    policies = load_directory(write(tmp_path, '{issuer: "https://i.test", subject: "a@b.test"}'))
    keyless = policies.policies[0].signatures.authorities[0].keyless  # type: ignore[union-attr]
    assert keyless is not None and keyless.trusted_root == "production"


@pytest.mark.parametrize(
    ("keyless", "message"),
    [
        (
            '{issuer: "https://i.test", subject: "a@b.test", trustedRoot: missing.json}',
            r"spec\.signatures\.authorities\[0\]\.keyless\.trustedRoot: cannot read trusted root "
            r".*missing\.json: No such file or directory",
        ),
        (
            '{issuer: "https://i.test", subject: "a@b.test", trustedRoot: broken.json}',
            r"keyless\.trustedRoot: trusted root .*broken\.json is not a usable Sigstore trusted "
            r"root: tlogs: Field required",
        ),
        (
            '{issuer: "https://i.test", subjectRegExp: "a(b"}',
            r"keyless\.subjectRegExp: is not a valid regular expression",
        ),
        (
            '{issuer: "https://i.test", subject: "a@b.test", extensions: {githubRepo: x}}',
            r"githubRepo",
        ),
    ],
)
def test_mistakes_fail_policy_loading(tmp_path: Path, keyless: str, message: str) -> None:
    root = {"mediaType": "application/vnd.dev.sigstore.trustedroot+json;version=0.1"}
    (tmp_path / "broken.json").write_text(json.dumps(root))
    with pytest.raises(PolicyErrors, match=message):
        load_directory(write(tmp_path, keyless))


def test_trusted_root_beside_the_policies_is_not_read_as_a_policy(tmp_path: Path) -> None:
    """A ConfigMap has no subdirectories: the root may sit next to the policy files."""
    (tmp_path / "trusted_root.json").write_text(SigstoreInstance().trusted_root_json())
    write(tmp_path, "{issuer: https://issuer.example, subject: a@example.com, "
                    "trustedRoot: trusted_root.json}")  # fmt: skip
    (policy,) = load_directory(tmp_path).policies
    assert policy.signatures is not None
    keyless = policy.signatures.authorities[0].keyless
    assert keyless is not None and keyless.trusted_root == str(tmp_path / "trusted_root.json")
    # Any other JSON without an apiVersion is still a mistake, said plainly.
    (tmp_path / "other.json").write_text(json.dumps({"mediaType": "application/json"}))
    with pytest.raises(PolicyErrors, match=r"other\.json.*apiVersion"):
        load_directory(tmp_path)
