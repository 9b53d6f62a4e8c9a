"""Sign a policy set's manifest keylessly: an OIDC token, a Fulcio certificate, a Rekor entry.

``trustgate policy sign --keyless`` hands the manifest bytes to
sigstore-python's ``Signer.sign_artifact``: an ephemeral P-256 key, a
certificate for it from Fulcio (for the identity of the OIDC token), a
``hashedrekord`` entry in Rekor, and a Sigstore bundle (v0.3) holding all
three, which the signature file carries under ``bundle``.

The instance is a sigstore ``ClientTrustConfig`` (signing config and trusted
root): ``production`` or ``staging``, read from the copies shipped with
sigstore-python (the same roots ``trust/trustroot.py`` verifies with, no TUF
round trip), or a file for a private deployment.

Time: sigstore-python 4.5.1 gives its Fulcio and Rekor requests no timeout
(requests waits forever); its timestamp authority requests 5 s and its OIDC
ones 30 s. So the whole signing runs in a worker thread that the caller waits
for at most ``timeout`` seconds; when it is late, the caller fails and the
process exits, abandoning the thread. The bundle is then checked against the
instance's trusted root before anything is written.
"""

from __future__ import annotations

import json
import os
import threading
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import requests
from sigstore.errors import Error as SigstoreError
from sigstore.models import Bundle, ClientTrustConfig
from sigstore.oidc import IdentityToken, detect_credential
from sigstore.sign import SigningContext
from sigstore.verify import Verifier

from webhook.core.errors import PolicyError
from webhook.core.redaction import hide_tokens
from webhook.policy.model import Keyless
from webhook.signatures.identity import (
    certificate_identities,
    certificate_issuer,
    identity_policy,
)
from webhook.signatures.keyless import sigstore_reason
from webhook.signatures.policyset import certificate_signer
from webhook.trust.trustroot import (
    PRODUCTION,
    STAGING,
    embedded_signing_config,
    embedded_trusted_root,
)

__all__ = [
    "DEFAULT_TIMEOUT",
    "TOKEN_VARIABLE",
    "Instance",
    "KeylessSignature",
    "identity_token",
    "load_instance",
    "sign_keyless",
]

#: Seconds the whole keyless signing (Fulcio, then Rekor) may take by default.
DEFAULT_TIMEOUT = 120.0
#: The environment variable holding an identity token (as for sigstore-python and cosign).
TOKEN_VARIABLE = "SIGSTORE_ID_TOKEN"
#: Largest --trust-config file read; real ones are a few KiB.
MAX_TRUST_CONFIG_BYTES = 1024 * 1024
_CONFIG_TYPE = "application/vnd.dev.sigstore.clienttrustconfig.v0.1+json"


@dataclass(frozen=True, slots=True)
class Instance:
    """A Sigstore instance to sign with: its name, and where its Fulcio and Rekor are."""

    name: str
    config: ClientTrustConfig = field(repr=False)
    fulcio: str = ""
    rekor: str = ""


@dataclass(frozen=True, slots=True)
class KeylessSignature:
    """A bundle over the manifest bytes, as JSON, and who it says signed."""

    bundle: dict[str, Any]
    signer: str


def load_instance(*, staging: bool = False, trust_config: Path | None = None) -> Instance:
    """The instance to sign with: a ``ClientTrustConfig`` file, staging, or production.

    Raises:
        PolicyError: the file cannot be read or is not a usable trust config.
    """
    if trust_config is not None:
        try:
            with trust_config.open("rb") as handle:
                raw = handle.read(MAX_TRUST_CONFIG_BYTES + 1)
        except OSError as exc:
            raise PolicyError(f"cannot read trust config {trust_config}: {exc.strerror}") from None
        if len(raw) > MAX_TRUST_CONFIG_BYTES:
            raise PolicyError(f"trust config {trust_config} is over {MAX_TRUST_CONFIG_BYTES} bytes")
        name = str(trust_config)
    else:
        name = STAGING if staging else PRODUCTION
        raw = _embedded(name)
    try:
        config = ClientTrustConfig.from_json(raw.decode("utf-8"))
        signing = config.signing_config
        config.trusted_root.get_fulcio_certs()
        fulcio = signing.get_fulcio().url
        rekor = str(getattr(signing.get_tlogs()[0], "url", ""))
    except (SigstoreError, ValueError, TypeError, KeyError, UnicodeDecodeError) as exc:
        message = (
            f"trust config {name} is not a usable Sigstore ClientTrustConfig "
            f"(signing config and trusted root): {sigstore_reason(exc)}"
        )
        raise PolicyError(message) from None
    return Instance(name, config, fulcio, rekor)


def _embedded(name: str) -> bytes:
    """The ClientTrustConfig of an instance shipped with sigstore-python."""
    document = {
        "mediaType": _CONFIG_TYPE,
        "trustedRoot": json.loads(embedded_trusted_root(name)),
        "signingConfig": json.loads(embedded_signing_config(name)),
    }
    return json.dumps(document).encode()


def identity_token(
    given: str | None,
    environ: Mapping[str, str] | None = None,
    *,
    timeout: float = DEFAULT_TIMEOUT,
) -> IdentityToken:
    """The OIDC token to sign with: ``given``, ``$SIGSTORE_ID_TOKEN``, or the CI's own.

    The CI's own is sigstore-python's ambient detection (GitHub Actions with
    ``permissions: id-token: write``, GitLab, Buildkite, CircleCI, Google Cloud),
    waited for at most ``timeout`` seconds: its requests time out after 30 s
    but urllib3 retries them. No browser flow: a CLI that signs policies runs
    in a pipeline.

    Raises:
        PolicyError: no token anywhere, or one that is not a usable OIDC token
            (malformed, expired, not for audience sigstore); never quoting it.
    """
    environ = os.environ if environ is None else environ
    raw = given or environ.get(TOKEN_VARIABLE, "").strip()
    if not raw:
        raw = _ambient(timeout)
    if not raw:
        raise PolicyError(
            f"no identity token for keyless signing: pass --identity-token, set "
            f"{TOKEN_VARIABLE}, or run in a CI that issues OIDC tokens (GitHub Actions: "
            "permissions: id-token: write)"
        )
    try:
        return IdentityToken(raw)
    except SigstoreError as exc:
        message = (
            f"the identity token is not usable ({_clean(str(exc), raw)}); it must be an OIDC "
            "token for audience sigstore, within its validity period"
        )
        raise PolicyError(message) from None


def _ambient(timeout: float) -> str:
    """The CI's identity token, or "" when this is no CI that issues one."""
    found: list[str] = []
    failed: list[BaseException] = []

    def detect() -> None:
        try:
            found.append(detect_credential() or "")
        except Exception as exc:  # id's errors, wrapped by sigstore or not
            failed.append(exc)

    worker = threading.Thread(target=detect, name="ambient-token", daemon=True)
    worker.start()
    worker.join(timeout)
    if worker.is_alive():
        raise PolicyError(
            f"no identity token: the CI's token endpoint did not answer within {timeout:g} s"
        )
    if failed:
        detail = _clean(sigstore_reason(failed[0]), "")
        raise PolicyError(f"no identity token: ambient detection failed: {detail}") from None
    return found[0] if found else ""


def _clean(text: str, token: str) -> str:
    """A message from a library or a server, one line, short, the token never in it."""
    if token:
        text = text.replace(token, "(token hidden)")
    return hide_tokens(" ".join(text.split()))[:300]


class _Progress:
    """Which service the worker thread is waiting on, for a message when it is late."""

    def __init__(self) -> None:
        self.stage = "Fulcio"
        self.bundle: Bundle | None = None
        self.error: BaseException | None = None


def sign_keyless(
    data: bytes, instance: Instance, token: IdentityToken, *, timeout: float = DEFAULT_TIMEOUT
) -> KeylessSignature:
    """A bundle of a message signature over ``data``, made and checked within ``timeout`` s.

    Raises:
        PolicyError: Fulcio or Rekor unreachable, refusing, late or answering
            nonsense, or a bundle the instance's own trusted root refuses.
    """
    progress = _Progress()
    worker = threading.Thread(
        target=_sign, args=(data, instance, token, progress), name="keyless-sign", daemon=True
    )
    worker.start()
    worker.join(timeout)
    url = instance.fulcio if progress.stage == "Fulcio" else instance.rekor
    if worker.is_alive():
        raise PolicyError(
            f"keyless signing did not finish within {timeout:g} s: {progress.stage} at {url} "
            "did not answer; try again, or raise --timeout"
        )
    if progress.error is not None or progress.bundle is None:
        error = progress.error
        detail = _clean(_failure(error), str(token)) if error else "no bundle"
        raise PolicyError(f"keyless signing failed at {progress.stage} ({url}): {detail}")
    bundle = progress.bundle
    cert = bundle.signing_certificate
    issuer = certificate_issuer(cert)
    names = certificate_identities(cert)
    if issuer is None or not names:
        raise PolicyError(f"Fulcio at {instance.fulcio} issued a certificate with no identity")
    try:
        policy = identity_policy(Keyless(issuer=issuer, subject=names[0]))
        Verifier(trusted_root=instance.config.trusted_root).verify_artifact(data, bundle, policy)
    except (SigstoreError, ValueError) as exc:
        raise PolicyError(
            f"the bundle Fulcio and Rekor of {instance.name} returned does not verify with its "
            f"trusted root: {_clean(sigstore_reason(exc), str(token))}"
        ) from None
    document: dict[str, Any] = json.loads(bundle.to_json())
    return KeylessSignature(document, certificate_signer(cert))


def _sign(data: bytes, instance: Instance, token: IdentityToken, progress: _Progress) -> None:
    """The worker: a certificate from Fulcio, then a signature logged in Rekor."""
    try:
        context = SigningContext.from_trust_config(instance.config)
        with context.signer(token) as signer:  # asks Fulcio for the certificate now
            progress.stage = "Rekor"
            progress.bundle = signer.sign_artifact(data)
    except Exception as exc:  # its client errors (FulcioClientError...) are bare Exceptions
        progress.error = exc


def _failure(exc: BaseException) -> str:
    """What went wrong, with the HTTP error under sigstore-python's (it often has no text)."""
    parts = [sigstore_reason(exc)]
    cause = exc.__cause__
    if cause is not None and not isinstance(exc, requests.RequestException):
        parts.append(sigstore_reason(cause))
    return ": ".join(parts)
