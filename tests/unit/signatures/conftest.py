"""The test Sigstore instance and its trusted root, shared by the keyless, key bundle and
transparency log tests."""

from __future__ import annotations

import pytest

from tests.support.sigstore_instance import SigstoreInstance
from webhook.trust.trustroot import TrustRoot, load_trusted_root


@pytest.fixture(scope="module")
def instance() -> SigstoreInstance:
    return SigstoreInstance()


@pytest.fixture(scope="module")
def root(instance: SigstoreInstance, tmp_path_factory: pytest.TempPathFactory) -> TrustRoot:
    """``instance``'s trusted_root.json, loaded as the webhook loads it."""
    directory = tmp_path_factory.mktemp("root")
    (directory / "trusted_root.json").write_text(instance.trusted_root_json())
    return load_trusted_root("trusted_root.json", directory)
