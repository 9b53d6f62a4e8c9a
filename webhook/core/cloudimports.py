"""Keep the cloud SDKs out of processes that do not use them.

sigstore's TUF client imports securesystemslib's signer package, which
imports boto3 and azure-identity at once whenever they are installed, for
KMS signers trustgate never uses (secure-systems-lab/securesystemslib#1198).
The container image installs every cloud extra, so without this each
trustgate process would load them whether a provider is configured or not:
about 120 ms of start-up and 20 MiB per process (bench/credential_libraries.py).

``install()`` adds an import finder that refuses those SDKs to
securesystemslib's signer modules only, which catch the ImportError and mark
their KMS signers unavailable. Every other importer, trustgate's own
credential sources included, gets the SDK as usual. The finder costs
nothing until one of those names is imported.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from importlib.abc import MetaPathFinder
from importlib.machinery import ModuleSpec
from types import FrameType, ModuleType
from typing import Final

#: The SDKs refused, by top-level name or dotted prefix.
GUARDED: Final = ("boto3", "botocore", "azure", "google.cloud")
#: Whose imports of them are refused.
IMPORTERS: Final = "securesystemslib.signer"
#: Frames walked up from the finder to the importing module's.
_MAX_DEPTH: Final = 40


class _Refuse(MetaPathFinder):
    """Refuses ``GUARDED`` modules when ``IMPORTERS`` imports them."""

    def find_spec(
        self,
        fullname: str,
        path: Sequence[str] | None,
        target: ModuleType | None = None,
    ) -> ModuleSpec | None:
        if not any(fullname == g or fullname.startswith(g + ".") for g in GUARDED):
            return None
        frame: FrameType | None = sys._getframe(1)
        for _ in range(_MAX_DEPTH):
            if frame is None:
                break
            module = frame.f_globals.get("__name__", "")
            if isinstance(module, str) and not module.startswith(("importlib", "_frozen")):
                if module.startswith(IMPORTERS):
                    raise ModuleNotFoundError(
                        f"{fullname} is not loaded for {module}: trustgate uses no KMS signer",
                        name=fullname,
                    )
                return None
            frame = frame.f_back
        return None


_FINDER: Final = _Refuse()


def install() -> None:
    """Add the finder (once): before anything imports sigstore."""
    if _FINDER not in sys.meta_path:
        sys.meta_path.insert(0, _FINDER)
