"""A ``!!timestamp`` that is not one is a YAML error in every reader of untrusted YAML.

PyYAML's own constructor fails on it with an AttributeError, which no
``except yaml.YAMLError`` catches: a policy file, a manifest given to
``audit`` or a credential plug-in configuration could end a command with a
traceback, or a policy reload with a loader defect.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from webhook.cli.audit import parse_manifests
from webhook.core.errors import ConfigError, PolicyError
from webhook.core.yamltags import check_timestamps
from webhook.credentials.pluginconfig import read_config
from webhook.policy.documents import load_yaml

BAD = ["!!timestamp x", "!!timestamp 2026-1", '!!timestamp ""', "!!timestamp 12:00"]


@pytest.mark.parametrize("value", BAD)
def test_policy_documents(value: str) -> None:
    with pytest.raises(PolicyError, match=r"line 1, column 4: a !!timestamp value that is not"):
        load_yaml(f"a: {value}", "policy.yaml")


@pytest.mark.parametrize("value", BAD)
def test_manifests_for_audit(value: str) -> None:
    (manifest,) = parse_manifests(f"kind: Pod\nmetadata: {{name: {value}}}\n", "pod.yaml")
    assert manifest.error is not None
    assert "a !!timestamp value that is not a timestamp" in manifest.error


def test_credential_plugin_configuration(tmp_path: Path) -> None:
    config = tmp_path / "providers.yaml"
    config.write_text("apiVersion: !!timestamp x\n")
    with pytest.raises(ConfigError, match="not valid YAML or JSON at line 1"):
        read_config(config)


def test_real_timestamps_still_read() -> None:
    document = load_yaml("a: !!timestamp 2026-12-06T09:00:00Z\nb: 2026-12-06", "policy.yaml")
    assert document["a"].year == 2026
    assert str(document["b"]) == "2026-12-06"


def test_pyyaml_s_own_loader_is_left_alone() -> None:
    with pytest.raises(ValueError, match="subclass"):
        check_timestamps(yaml.SafeLoader)
    with pytest.raises(AttributeError):  # what the repair is for: PyYAML's own behaviour
        yaml.load("a: !!timestamp x", Loader=yaml.SafeLoader)
