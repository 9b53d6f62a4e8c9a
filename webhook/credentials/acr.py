"""Azure Container Registry logins from trustgate's own Entra ID identity.

On AKS a workload reaches ACR with its Entra ID identity, never a password:

1. an Entra ID access token for ACR (scope ``ACR_SCOPE``) from azure-identity:
   ``WorkloadIdentityCredential`` when the pod runs with workload identity
   (``AZURE_FEDERATED_TOKEN_FILE``, ``AZURE_TENANT_ID`` and ``AZURE_CLIENT_ID``
   set by the workload identity webhook), else ``ManagedIdentityCredential``
   (the node's or an assigned identity, picked by ``clientId``). Sovereign
   clouds (Azure China, Azure US Government) differ in their authority host
   (``AZURE_AUTHORITY_HOST``, which azure-identity reads); ACR's audience is
   the same in every cloud;
2. that token exchanged at ``https://<registry>/oauth2/exchange`` for a
   registry refresh token (ACR's own protocol, ``grant_type=access_token``);
3. the login ``00000000-0000-0000-0000-000000000000`` / refresh token, which
   the registry client takes through the registry's usual token flow.

Step 2 is written here, as one form POST: azure-containerregistry does the
exchange only inside its private ``_exchange_client`` module and exposes no
public call for it (nor the refresh token), and azure-identity stops at the
Entra ID token. The POST reaches the registry's own host only
(``formpost``: no redirect followed, TLS verified, bounded).

The authority is the one the environment names: instance discovery (msal's
call to login.microsoftonline.com to vouch for an unknown authority host) is
off, so the federated token goes to the configured authority and nowhere
else, and a private cloud's authority works without it.

Refresh tokens are kept per registry host by ``renewal.Renewing``, until
their JWT ``exp`` (3 hours when unreadable), renewed in the background once
three quarters of that life has passed. azure.identity is imported on the
first fetch, so a configuration without ``acr`` never loads it.
"""

from __future__ import annotations

import base64
import binascii
import importlib.util
import json
import os
import threading
import time
from collections.abc import Callable, Hashable, Sequence
from typing import TYPE_CHECKING, Any, Final

from webhook.core.errors import ConfigError, UpstreamError
from webhook.core.redaction import hide_tokens
from webhook.core.scope import Login
from webhook.core.untrusted import json_value, unique_keys

from .formpost import post_form
from .matching import parse_patterns
from .renewal import Expiring, Renewing

if TYPE_CHECKING:
    from azure.core.credentials import TokenCredential

    from webhook.core.deadline import Deadline
    from webhook.core.reference import ImageRef

#: The Entra ID scope of ACR tokens: ACR's own audience, the same in every cloud.
ACR_SCOPE: Final = "https://containerregistry.azure.net/.default"
#: The username ACR expects with a refresh token.
USERNAME: Final = "00000000-0000-0000-0000-000000000000"
#: A refresh token's life when its ``exp`` cannot be read (ACR issues them for 3 hours).
REFRESH_LIFETIME: Final = 3 * 3600.0
#: The exchange's budget, connection and answer together.
EXCHANGE_SECONDS: Final = 15.0
#: The exchange's answer is one refresh token: a few kB.
MAX_ANSWER_BYTES: Final = 64 * 1024
#: azure-identity's HTTP timeouts (connection, each read) and retries for the authority.
IDENTITY_TIMEOUT: Final = 10
IDENTITY_RETRIES: Final = 3
_MAX_TOKEN_CHARS: Final = 16 * 1024
_FEDERATED = "AZURE_FEDERATED_TOKEN_FILE"
_WHERE = "credentials.providers (type acr)"


class AcrSource:
    """A ``core.scope.LoginSource`` for ACR registries (``registries``: host patterns).

    Raises ConfigError when built without azure-identity installed, with a
    pattern that is not a host, or with workload identity half configured.
    """

    name = "acr"
    kind = "acr"

    def __init__(
        self,
        registries: Sequence[str],
        *,
        client_id: str | None = None,
        scope: str = ACR_SCOPE,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._patterns = parse_patterns(registries, f"{_WHERE}.registries", paths=False)
        if importlib.util.find_spec("azure.identity") is None:
            raise ConfigError(
                f"{_WHERE}: needs azure-identity, which is not installed: "
                f"install trustgate with its azure extra (pip install 'trustgate[azure]')"
            )
        self._workload = bool(os.environ.get(_FEDERATED))
        self._client_id = client_id or os.environ.get("AZURE_CLIENT_ID") or None
        self._tenant = os.environ.get("AZURE_TENANT_ID") or None
        if self._workload and not (self._tenant and self._client_id):
            raise ConfigError(
                f"{_WHERE}: {_FEDERATED} is set but AZURE_TENANT_ID or the client ID is "
                f'not: label the pod azure.workload.identity/use: "true" and annotate its '
                f"service account with azure.workload.identity/client-id (or set clientId)"
            )
        self._scope = scope
        self._clock = clock
        self.label = "acr workload identity" if self._workload else "acr managed identity"
        self._credential: TokenCredential | None = None
        self._lock = threading.Lock()
        self._renewing: Renewing[str] = Renewing("acr", self._fetch, clock=clock)

    def matches(self, host: str) -> bool:
        """Whether ``host`` is one of the configured registries."""
        return self._patterns.matches_host(host)

    def logins(self, image: ImageRef, deadline: Deadline) -> Sequence[Login]:
        """The refresh-token login for ``image``'s registry, fetched or renewed within ``deadline``.

        Raises:
            UpstreamError: no Entra ID token, or the registry refused it, in time.
        """
        if not self.matches(image.domain):
            return ()
        refresh = self._renewing.get(image.domain, deadline)
        return (Login(USERNAME, refresh, self.label, self.kind),)

    def _fetch(self, key: Hashable) -> Expiring[str]:
        host = str(key)
        token = self._entra_token()
        tenant = self._tenant or _claim(token, "tid")
        refresh = exchange(host, token, tenant)
        return Expiring(refresh, _expiry(refresh, host, self._clock()))

    def _entra_token(self) -> str:
        credential = self._identity()
        try:
            token: str = credential.get_token(self._scope).token
        except Exception as exc:
            raise UpstreamError(
                f"acr: cannot get an Entra ID token with {self.label.removeprefix('acr ')}: "
                f"{_first_line(exc)}"
            ) from None
        return token

    def _identity(self) -> TokenCredential:
        """The azure-identity credential, built (and azure.identity imported) on first use."""
        with self._lock:
            if self._credential is None:
                from azure.identity import ManagedIdentityCredential, WorkloadIdentityCredential

                if self._workload:
                    self._credential = WorkloadIdentityCredential(
                        client_id=self._client_id,
                        disable_instance_discovery=True,
                        connection_timeout=IDENTITY_TIMEOUT,
                        read_timeout=IDENTITY_TIMEOUT,
                        retry_total=IDENTITY_RETRIES,
                    )
                else:
                    # IMDS keeps its own retry policy (it answers 410 while it starts).
                    self._credential = ManagedIdentityCredential(
                        client_id=self._client_id, read_timeout=IDENTITY_TIMEOUT
                    )
            return self._credential


def exchange(host: str, access_token: str, tenant: str | None) -> str:
    """The refresh token ``https://<host>/oauth2/exchange`` gives for an Entra ID ``access_token``.

    Raises:
        UpstreamError: the registry is unreachable, refused the token, redirected
            the call, or answered something that is not a refresh token. The
            message never holds either token.
    """
    fields = {"grant_type": "access_token", "service": host, "access_token": access_token}
    if tenant:
        fields["tenant"] = tenant
    url = f"https://{host}/oauth2/exchange"
    reply = post_form(url, fields, seconds=EXCHANGE_SECONDS, max_bytes=MAX_ANSWER_BYTES)
    where = f"acr: {host}/oauth2/exchange"
    if 300 <= reply.status < 400:
        raise UpstreamError(
            f"{where} answered a redirect (HTTP {reply.status}); the Entra ID token is "
            f"sent to the registry's own host only: check that {host} is the registry's "
            f"login server"
        )
    if reply.status in (401, 403):
        raise UpstreamError(
            f"{where} refused the Entra ID token (HTTP {reply.status}{_code(reply.body)}): "
            f"check that the identity has the AcrPull role on the registry"
        )
    if reply.status != 200:
        raise UpstreamError(f"{where} failed (HTTP {reply.status}{_code(reply.body)})")
    try:
        answer = json_value(reply.body, object_pairs_hook=unique_keys)
    except ValueError:
        answer = None
    refresh = answer.get("refresh_token") if isinstance(answer, dict) else None
    if not isinstance(refresh, str) or not _token_text(refresh):
        raise UpstreamError(f"{where} answered no refresh token")
    return refresh


def _token_text(token: str) -> bool:
    """Whether ``token`` can travel in a Basic authorization header."""
    return 0 < len(token) <= _MAX_TOKEN_CHARS and token.isascii() and token.isprintable()


def _code(body: bytes) -> str:
    """``, CODE`` of ACR's ``{"errors": [{"code": ...}]}``, not its message (which may echo)."""
    try:
        answer = json_value(body)
        code = answer["errors"][0]["code"]
    except (ValueError, TypeError, KeyError, IndexError):
        return ""
    if isinstance(code, str) and 0 < len(code) <= 40 and code.replace("_", "").isalnum():
        return f", {code}"
    return ""


def _claim(token: str, name: str) -> Any:
    """A claim of a JWT's payload, read without verification (None when unreadable).

    Only for what the token's holder may know anyway: its tenant, its expiry.
    """
    parts = token.split(".")
    if len(parts) != 3:
        return None
    payload = parts[1] + "=" * (-len(parts[1]) % 4)
    try:
        claims = json.loads(base64.urlsafe_b64decode(payload))
    except (binascii.Error, ValueError, RecursionError):
        return None
    return claims.get(name) if isinstance(claims, dict) else None


def _expiry(refresh: str, host: str, now: float) -> float:
    """When ``refresh`` expires: its ``exp``, else ``REFRESH_LIFETIME`` from ``now``.

    Raises:
        UpstreamError: it has already expired (a clock far off, here or at the registry).
    """
    exp = _claim(refresh, "exp")
    if not isinstance(exp, int | float) or isinstance(exp, bool):
        return now + REFRESH_LIFETIME
    if exp <= now:
        raise UpstreamError(
            f"acr: {host} answered a refresh token that has already expired: "
            f"check this machine's clock"
        )
    return float(exp)


def _first_line(exc: BaseException) -> str:
    """The first line of an identity library's error, any JWT in it hidden, shortened."""
    lines = str(exc).strip().splitlines()
    text = hide_tokens(lines[0]) if lines else type(exc).__name__
    return text if len(text) <= 300 else text[:300] + "..."
