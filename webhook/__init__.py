"""trustgate: a Kubernetes admission webhook that admits only trusted images.

The public surface is four names. They are imported on first use, so that
``import webhook.core.reference`` (or the CLI's lighter commands) does not pull in
Flask and the whole server.
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

from webhook.core import cloudimports

if TYPE_CHECKING:
    from webhook.core.errors import TrustgateError as TrustgateError
    from webhook.engine import Engine as Engine
    from webhook.engine import Verdict as Verdict
    from webhook.serving.app import create_app as create_app

__all__ = ["Engine", "TrustgateError", "Verdict", "create_app"]

# Before anything imports sigstore: see webhook.core.cloudimports.
cloudimports.install()

_EXPORTS = {
    "create_app": "webhook.serving.app",
    "Engine": "webhook.engine",
    "Verdict": "webhook.engine",
    "TrustgateError": "webhook.core.errors",
}


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'webhook' has no attribute {name!r}")
    return getattr(import_module(module), name)
