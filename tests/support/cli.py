"""Running the ``trustgate`` command line in-process, and the inputs its tests share.

Separate from any one test file because the tests of every command (and of
network failures told on the command line) run it the same way and use the same
images and ImagePolicyException documents.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest

from webhook.cli.main import main

#: The repository root: the shipped policies, docs and README the tests compare against.
REPO = Path(__file__).resolve().parents[2]
#: An image the test policies deny (and only warn about in the audit-mode namespace).
BAD = "docker.io/library/nginx:1.27"
#: An image the test policies allow.
GOOD = "quay.io/acme/api:1.0"
#: An image outside the registry allowlist, mounted as an image volume.
MODELS = "ghcr.io/acme/models:7"


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    """Run ``trustgate argv...`` through ``main``; its exit code, stdout and stderr."""
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def exception_yaml(name: str, expires: str, *, reason: str = "reason: vendor signs from Q3") -> str:
    """An ImagePolicyException waiving docker.io/library images in prod-* until ``expires``."""
    return f"""\
apiVersion: trustgate.dev/v1alpha1
kind: ImagePolicyException
metadata: {{name: {name}}}
spec:
  namespaces: ["prod-*"]
  images: ["docker.io/library/**"]
  policies: [production]
  {reason}
  owner: team-web
  expires: {expires}
"""


def days_from_today(days: int) -> str:
    """The UTC date ``days`` from today, as an ISO date (negative: in the past)."""
    return (dt.datetime.now(dt.UTC).date() + dt.timedelta(days=days)).isoformat()
