"""Google Artifact Registry and Container Registry logins from Application Default Credentials.

Both registries take the login ``oauth2accesstoken:<access token>``, where
the token is a short-lived OAuth token (about an hour) of the workload's
Google identity. google-auth finds that identity as every Google client
does (Application Default Credentials): a credential file named by
``GOOGLE_APPLICATION_CREDENTIALS`` (a workload identity federation
configuration, say), else the metadata server, which on GKE with Workload
Identity answers for the Kubernetes service account's bound Google service
account. trustgate asks for one token, keeps it until shortly before it
expires and renews it in the background (``webhook.credentials.renewal``).

google-auth makes its HTTP calls through the transport of
``webhook.credentials.googlehttp``, which bounds each in time and bytes.
google-auth is an optional extra (``trustgate[gcp]``), imported only when a
``gcp`` provider is configured (bench/credential_libraries.py measures it).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Hashable, Sequence
from datetime import UTC, datetime
from typing import Any, Final

from webhook.core.deadline import Deadline
from webhook.core.errors import ConfigError, UpstreamError
from webhook.core.observability import get_logger
from webhook.core.reference import ImageRef
from webhook.core.scope import Login

from .matching import parse_patterns
from .renewal import Expiring, Renewing

__all__ = ["SCOPES", "USERNAME", "GcpSource"]

_log = get_logger("credentials.gcp")

#: The user name Artifact Registry and Container Registry take with an access token.
USERNAME: Final = "oauth2accesstoken"
#: What the token may do: cloud-platform, as docker-credential-gcr asks.
SCOPES: Final = ("https://www.googleapis.com/auth/cloud-platform",)
#: Seconds any one call of google-auth may take, connecting and reading.
TIMEOUT: Final = 5.0
#: Bytes any one answer may bring (a token answer is under 2 KiB).
MAX_BYTES: Final = 64 * 1024
#: What a token lives when google-auth knows no expiry.
TOKEN_LIFE: Final = 3600.0
_LONGEST: Final = 500
#: The one key logins are cached by: the process has one Google identity.
_ADC: Final = "application-default"


class GcpSource:
    """Logins for the Google registries a ``gcp`` provider lists (``core.scope.LoginSource``).

    ``registries`` are host patterns (kubelet ``matchImages``). ``clock`` is
    ``time.time``; ``timeout`` and ``max_bytes`` bound each call google-auth makes.

    Raises:
        ConfigError: a pattern does not parse, or google-auth is not installed.
    """

    name: str = "gcp"
    kind: str = "gcp"

    def __init__(
        self,
        registries: Sequence[str],
        *,
        clock: Callable[[], float] = time.time,
        timeout: float = TIMEOUT,
        max_bytes: int = MAX_BYTES,
    ) -> None:
        self._patterns = parse_patterns(registries, "credentials.providers: gcp: registries")
        try:
            import google.auth
            import google.auth.exceptions

            from .googlehttp import BoundedRequest
        except ImportError:
            raise ConfigError(
                "credentials.providers: type gcp needs google-auth, which this installation "
                "lacks: install trustgate[gcp] (the container image has it)"
            ) from None
        self._auth = google.auth
        self._errors = google.auth.exceptions
        self._clock = clock
        self._transport = BoundedRequest(timeout, max_bytes)
        self._lock = threading.Lock()
        self._credentials: Any = None
        self._renewing: Renewing[Login] = Renewing(self.name, self._fetch, clock=clock)

    def matches(self, host: str) -> bool:
        """Whether ``host`` is one of the listed registries."""
        return self._patterns.matches_host(host)

    def logins(self, image: ImageRef, deadline: Deadline) -> Sequence[Login]:
        """The access-token login for ``image``'s registry, fetched within ``deadline`` if needed.

        Raises:
            UpstreamError: no Google credentials, a refused refresh, or no answer in time.
        """
        if not self._patterns.matches_image(image):
            return ()
        return (self._renewing.get(_ADC, deadline),)

    def _fetch(self, key: Hashable) -> Expiring[Login]:
        try:
            token, life = self._refresh()
        except UpstreamError as exc:
            _log.warning("gcp: no access token: %s", exc.message)
            raise
        expires_at = self._clock() + life
        _log.info("gcp: fetched an access token, valid for %d s", life)
        return Expiring(Login(USERNAME, token, source=self.name, kind=self.kind), expires_at)

    def _refresh(self) -> tuple[str, float]:
        """A new access token and its remaining life in seconds.

        Raises:
            UpstreamError: what failed and what to check; never a token.
        """
        errors = self._errors
        with self._lock:  # one fetch at a time: Renewing runs one per key, and there is one key
            try:
                credentials = self._credentials
                first = credentials is None
                if first:
                    credentials, _ = self._auth.default(scopes=SCOPES, request=self._transport)
                    self._credentials = credentials
                # default() refreshes a federated credential itself; a renewal always asks anew.
                if not (first and credentials.valid):
                    credentials.refresh(self._transport)
            except errors.DefaultCredentialsError as exc:
                raise UpstreamError(
                    f"found no Google credentials ({_short(exc)}): on GKE, bind trustgate's "
                    f"service account to a Google service account (Workload Identity); "
                    f"elsewhere, set GOOGLE_APPLICATION_CREDENTIALS to a workload identity "
                    f"federation file; see docs/clouds/gke.md"
                ) from None
            except (errors.RefreshError, errors.TransportError) as exc:
                raise UpstreamError(
                    f"the Google access token could not be refreshed ({_short(exc)}): check "
                    f"the Workload Identity binding of trustgate's service account; see "
                    f"docs/clouds/gke.md"
                ) from None
            except errors.GoogleAuthError as exc:
                raise UpstreamError(f"Google credentials failed: {_short(exc)}") from None
        token = getattr(credentials, "token", None)
        if not isinstance(token, str) or not token:
            raise UpstreamError("Google credentials refreshed without an access token")
        return token, _life(getattr(credentials, "expiry", None))


def _life(expiry: object) -> float:
    """Seconds until ``expiry`` (google-auth's naive UTC datetime), or ``TOKEN_LIFE`` if unknown."""
    if not isinstance(expiry, datetime):
        return TOKEN_LIFE
    if expiry.tzinfo is None:
        expiry = expiry.replace(tzinfo=UTC)
    return max(0.0, (expiry - datetime.now(UTC)).total_seconds())


def _short(exc: BaseException) -> str:
    """What google-auth says on one line, cut short (its messages quote whole answers).

    Its errors often carry a second argument (the response) and wrap one
    another: the message is the first argument of the innermost.
    """
    current: object = exc
    for _ in range(8):
        if not isinstance(current, BaseException) or not current.args:
            break
        current = current.args[0]
    line = " ".join(str(current).split()) or type(exc).__name__
    return line if len(line) <= _LONGEST else line[:_LONGEST] + "..."
