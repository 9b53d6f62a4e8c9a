"""The policy directory the command tests judge against, shared across tests/unit/cli."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.support.kube import policy_yaml


@pytest.fixture
def policies(tmp_path: Path) -> Path:
    """A production policy, plus an audit-mode one for the staging namespace."""
    directory = tmp_path / "policies"
    directory.mkdir()
    (directory / "prod.yaml").write_text(policy_yaml())
    (directory / "audit.yaml").write_text(
        policy_yaml("staging", mode="audit", namespaces='["staging"]')
    )
    return directory
