"""A trusted root whose Fulcio CA certificate cryptography cannot read is a PolicyError."""

from __future__ import annotations

import base64
import json
from pathlib import Path

import pytest

from tests.support.oddcerts import ODD_CASES, odd_certificates
from tests.support.sigstore_instance import SigstoreInstance
from webhook.core.errors import PolicyError
from webhook.trust.trustroot import load_trusted_root


@pytest.mark.parametrize("case", ODD_CASES)
def test_a_root_with_an_unreadable_ca_certificate_is_refused(tmp_path: Path, case: str) -> None:
    document = SigstoreInstance().trusted_root()
    chain = document["certificateAuthorities"][0]["certChain"]["certificates"]
    chain[0]["rawBytes"] = base64.b64encode(odd_certificates()[case]).decode()
    (tmp_path / "root.json").write_text(json.dumps(document))
    with pytest.raises(PolicyError, match="is not a usable Sigstore trusted root: "):
        load_trusted_root("root.json", tmp_path)
