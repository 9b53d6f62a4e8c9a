"""The cloud SDKs load only where trustgate uses them, not with sigstore."""

from __future__ import annotations

import subprocess
import sys

import pytest

PROBE = """
import sys
import webhook.signatures.check, webhook.trust.trustroot, webhook.serving.app
loaded = sorted(m for m in ("boto3", "botocore", "azure.identity") if m in sys.modules)
print("after sigstore:", loaded)
from securesystemslib.signer import _azure_signer
assert _azure_signer.AZURE_IMPORT_ERROR, "the KMS signer got the SDK"
{then}
"""


def run(then: str = "") -> str:
    done = subprocess.run(
        [sys.executable, "-c", PROBE.format(then=then)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


def test_sigstore_does_not_bring_the_cloud_sdks_along() -> None:
    assert "after sigstore: []" in run()


@pytest.mark.parametrize(
    ("then", "loaded"),
    [
        ("import boto3; print('boto3' in sys.modules)", "True"),
        (
            "from webhook.credentials.acr import AcrSource\n"
            "AcrSource(['*.azurecr.io'])\n"
            "import azure.identity; print('azure.identity' in sys.modules)",
            "True",
        ),
    ],
)
def test_everyone_else_still_gets_them(then: str, loaded: str) -> None:
    assert run(then).splitlines()[-1] == loaded
