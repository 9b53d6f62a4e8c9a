"""A start-up refresh of the production Sigstore trusted root, off the request path.

Admission always verifies offline against a root held in memory. With
``sigstore.refreshTrustedRoot`` in the configuration, ``create_app`` starts a
``RootRefresher``: a daemon thread asks Sigstore's TUF repository (through
sigstore-python's TUF client, bootstrapped from the TUF root shipped with
it) for the current ``trusted_root.json``, within ``refreshTimeoutSeconds``.
On success the root is installed in the app's ``TrustRoots`` and the
policies are reloaded, so ``production`` authorities verify against it; on
failure a warning is logged and the shipped root stays in use. Start-up
never waits for it, and nothing is retried.

sigstore-python's TUF client takes no timeout, so the fetch runs in a thread
of its own that is abandoned (and its late result ignored) at the deadline.
It keeps its TUF metadata under the user's data and cache directories
(``$XDG_DATA_HOME`` and ``$XDG_CACHE_HOME``); they must be writable.
"""

from __future__ import annotations

import tempfile
import threading
from collections.abc import Callable
from pathlib import Path

from webhook.core.errors import PolicyError
from webhook.core.observability import get_logger
from webhook.trust.trustroot import TrustRoots, embedded_tuf_root

log = get_logger(__name__)


def fetch_from_tuf(url: str) -> bytes:
    """The current ``trusted_root.json`` of the TUF repository at ``url``, verified by TUF.

    Raises:
        Exception: whatever sigstore-python's TUF client raises (TUFError for an
            unreachable or broken repository, OSError for unwritable caches).
    """
    from sigstore._internal.tuf import TrustUpdater

    with tempfile.TemporaryDirectory(prefix="trustgate-tuf-") as directory:
        bootstrap = Path(directory) / "root.json"
        bootstrap.write_bytes(embedded_tuf_root())
        updater = TrustUpdater(url, offline=False, bootstrap_root=bootstrap)
        return Path(updater.get_trusted_root_path()).read_bytes()


class RootRefresher:
    """Refresh the production root of ``roots`` once, then call ``on_refresh``."""

    def __init__(
        self,
        roots: TrustRoots,
        *,
        url: str,
        timeout: float,
        on_refresh: Callable[[], object],
        fetch: Callable[[str], bytes] = fetch_from_tuf,
    ) -> None:
        self._roots = roots
        self._url = url
        self._timeout = timeout
        self._on_refresh = on_refresh
        self._fetch = fetch

    def start(self) -> threading.Thread:
        """Refresh in a daemon thread; returns it (tests join it)."""
        thread = threading.Thread(target=self.refresh, name="trustgate-root-refresh", daemon=True)
        thread.start()
        return thread

    def refresh(self) -> bool:
        """Fetch, install and reload, within the timeout; True when the new root is in use.

        Never raises: every failure is logged as a warning and the root in use stays.
        """
        outcome: list[bytes | BaseException] = []
        worker = threading.Thread(
            target=self._fetch_into, args=(outcome,), name="trustgate-tuf-fetch", daemon=True
        )
        worker.start()
        worker.join(self._timeout)
        if not outcome:
            self._keep(f"no answer within {self._timeout:g} seconds")
            return False
        result = outcome[0]
        if isinstance(result, BaseException):
            self._keep(_describe(result))
            return False
        try:
            root = self._roots.install_production(result)
        except PolicyError as exc:
            self._keep(exc.message)
            return False
        log.info(
            "production trusted root refreshed from %s (sha256 %s)",
            self._url,
            root.digest,
            extra={"outcome": "ok"},
        )
        self._on_refresh()
        return True

    def _fetch_into(self, outcome: list[bytes | BaseException]) -> None:
        # The boundary of a third-party network client in a thread of its own:
        # whatever it raises becomes the warning's reason.
        try:
            outcome.append(self._fetch(self._url))
        except Exception as exc:
            outcome.append(exc)

    def _keep(self, reason: str) -> None:
        log.warning(
            "trusted root refresh from %s failed, keeping the production root shipped with "
            "sigstore-python: %s",
            self._url,
            reason,
            extra={"outcome": "error"},
        )


def _describe(exc: BaseException) -> str:
    """The exception and its causes, on one line."""
    parts: list[str] = []
    current: BaseException | None = exc
    while current is not None and len(parts) < 4:
        text = str(current).strip().splitlines()
        parts.append(f"{type(current).__name__}: {text[0] if text else ''}".strip())
        current = current.__cause__ or current.__context__
    return "; caused by ".join(parts)[:500]
