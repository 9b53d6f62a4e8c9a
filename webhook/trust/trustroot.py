"""Sigstore trusted roots, loaded and checked when policies load.

A trusted root (``trusted_root.json``, media type
``application/vnd.dev.sigstore.trustedroot+json;version=0.1``) names the
Fulcio certificate authorities, the transparency logs and the certificate
transparency logs of one Sigstore instance. Keyless verification trusts
exactly what it lists.

``production`` is the public-good Sigstore root that ships inside
sigstore-python (``staging``, Sigstore's staging instance, ships there too).
It is read from the installed package, offline: admission never waits on a
TUF round trip, and a cluster without egress verifies the same way as one
with it. Upgrading sigstore-python updates it.

A root that cannot be read, parsed or used raises PolicyError here, at
policy load, so a broken root never turns into denials at admission time.

``TrustRoots`` is what policy loading asks for roots: the same as
``load_trusted_root``, except that a production root fetched by a refresh
(``refresher.py``) replaces the shipped one once installed.
"""

from __future__ import annotations

import functools
import hashlib
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from importlib import resources
from pathlib import Path

from pydantic import ValidationError
from sigstore._internal.trust import CertificateAuthority, Key, KeyringPurpose, RekorKeyring
from sigstore.errors import Error as SigstoreError
from sigstore.models import TrustedRoot
from sigstore.verify import Verifier
from sigstore_models.trustroot import v1 as trustroot_v1

from webhook.core.errors import PolicyError
from webhook.core.x509read import CERTIFICATE_ERRORS, readable

PRODUCTION = "production"
STAGING = "staging"
#: The roots embedded in sigstore-python, by name: the directory of their TUF repository.
_EMBEDDED = {
    PRODUCTION: "https%3A%2F%2Ftuf-repo-cdn.sigstore.dev",
    STAGING: "https%3A%2F%2Ftuf-repo-cdn.sigstage.dev",
}
#: The root names that mean a root shipped with sigstore-python rather than a file.
EMBEDDED_ROOTS = frozenset(_EMBEDDED)
#: Trusted roots larger than this are refused; real ones are a few KiB.
MAX_ROOT_BYTES = 1024 * 1024


@dataclass(frozen=True, slots=True)
class KeyWindow:
    """When a root trusts one log key (``validFor``): from ``start``, until ``end`` if set."""

    log: str  # the log's baseUrl
    start: datetime
    end: datetime | None

    def covers(self, moment: datetime) -> bool:
        """Whether the root trusts the key at ``moment``."""
        return self.start <= moment and (self.end is None or moment <= self.end)


@dataclass(frozen=True, slots=True)
class TrustRoot:
    """One loaded trusted root and the sigstore-python Verifier built on it.

    ``name`` is ``production`` or the file's absolute path; ``digest`` is the
    SHA-256 of the JSON read, so a changed file is a different root (and
    different cache keys). The Verifier keeps no per-call state and is shared
    by every request thread. ``rekor`` holds the transparency logs' keys and
    ``log_ids`` their IDs (SHA-256 of each key), for the log entries of
    key-signed signatures; ``timestamp_authorities`` the RFC 3161 authorities whose
    signed timestamps key-signed bundles may carry; ``certificate_authorities`` the
    Fulcio CAs with the time each is trusted for, ``log_keys`` and ``ct_keys`` the
    transparency and CT logs' keys' (by the key ID sigstore-python looks keys up
    by). sigstore-python's Verifier holds no signing time against a CA's or a log
    key's end; ``signatures/cawindow.py`` does.
    """

    name: str
    digest: str
    verifier: Verifier = field(compare=False, repr=False)
    rekor: RekorKeyring = field(compare=False, repr=False)
    log_ids: frozenset[bytes] = field(compare=False, repr=False)
    timestamp_authorities: tuple[CertificateAuthority, ...] = field(
        default=(), compare=False, repr=False
    )
    certificate_authorities: tuple[CertificateAuthority, ...] = field(
        default=(), compare=False, repr=False
    )
    log_keys: Mapping[bytes, KeyWindow] = field(default_factory=dict, compare=False, repr=False)
    ct_keys: Mapping[bytes, KeyWindow] = field(default_factory=dict, compare=False, repr=False)


class TrustRoots:
    """The roots policies load, the ``production`` one replaceable by a fresher copy.

    Owned by the app (``create_app``); installing swaps one attribute, so
    loads on other threads see the old root or the new one, never a mix.
    """

    def __init__(self) -> None:
        self._production: bytes | None = None

    @property
    def fingerprint(self) -> str:
        """SHA-256 of the installed production root; empty while the shipped one is in use."""
        raw = self._production
        return "" if raw is None else hashlib.sha256(raw).hexdigest()

    def install_production(self, raw: bytes) -> TrustRoot:
        """Use ``raw`` (a trusted_root.json) as the production root from now on.

        Raises:
            PolicyError: ``raw`` is not a usable trusted root; the current one stays.
        """
        root = _parse(PRODUCTION, raw)
        self._production = raw
        return root

    def load(self, spec: str, base: Path) -> TrustRoot:
        """As ``load_trusted_root``, with the installed production root if there is one.

        Raises:
            PolicyError: as ``load_trusted_root``.
        """
        raw = self._production
        if spec == PRODUCTION and raw is not None:
            return _parse(PRODUCTION, raw)
        return load_trusted_root(spec, base)


def embedded_tuf_root() -> bytes:
    """The TUF ``root.json`` of Sigstore's production repository shipped with sigstore-python.

    Raises:
        OSError: a broken installation.
    """
    return (resources.files("sigstore._store") / _EMBEDDED[PRODUCTION] / "root.json").read_bytes()


def embedded_signing_config(spec: str) -> bytes:
    """The ``signing_config.v0.2.json`` (Fulcio, Rekor, TSA addresses) of an embedded instance.

    ``spec`` is ``production`` or ``staging``: what ``trustgate policy sign
    --keyless`` signs with, offline of TUF, beside ``embedded_trusted_root``.

    Raises:
        OSError: a broken installation.
    """
    return (
        resources.files("sigstore._store") / _EMBEDDED[spec] / "signing_config.v0.2.json"
    ).read_bytes()


def embedded_trusted_root(spec: str) -> bytes:
    """The ``trusted_root.json`` shipped with sigstore-python for ``production`` or ``staging``.

    Raises:
        OSError: a broken installation.
    """
    return (resources.files("sigstore._store") / _EMBEDDED[spec] / "trusted_root.json").read_bytes()


def load_trusted_root(spec: str, base: Path) -> TrustRoot:
    """The trusted root ``spec`` names: ``production``, ``staging`` or a path relative to ``base``.

    Raises:
        PolicyError: the file cannot be read, is not a trusted root, or lacks
            Fulcio certificates, transparency log keys or CT log keys.
    """
    if spec in _EMBEDDED:
        data = resources.files("sigstore._store") / _EMBEDDED[spec] / "trusted_root.json"
        try:
            raw = data.read_bytes()
        except OSError as exc:  # a broken installation
            message = f"the {spec} trusted root of sigstore-python cannot be read: {exc}"
            raise PolicyError(message) from exc
        return _parse(spec, raw)
    # Relative to the policy file as named, not to its symlink's target (ConfigMaps).
    path = Path(os.path.abspath(base / spec))
    try:
        with path.open("rb") as handle:
            raw = handle.read(MAX_ROOT_BYTES + 1)
    except IsADirectoryError as exc:
        raise PolicyError(f"trusted root {path} is a directory, not a JSON file") from exc
    except OSError as exc:
        raise PolicyError(f"cannot read trusted root {path}: {exc.strerror}") from exc
    if len(raw) > MAX_ROOT_BYTES:
        raise PolicyError(f"trusted root {path} is over {MAX_ROOT_BYTES} bytes")
    return _parse(str(path), raw)


#: What sigstore-python and cryptography raise for a root they cannot use.
_UNUSABLE: tuple[type[Exception], ...] = (SigstoreError, TypeError, KeyError, *CERTIFICATE_ERRORS)


@functools.lru_cache(maxsize=32)
def _parse(name: str, raw: bytes) -> TrustRoot:
    """Parse and check one root; cached so policies sharing a root share one Verifier."""
    what = f"the {name} trusted root" if name in _EMBEDDED else f"trusted root {name}"
    try:
        inner = trustroot_v1.TrustedRoot.from_json(raw)
        root = TrustedRoot(inner)
        # Each call raises when the root lacks what keyless verification needs.
        for ca in root.get_fulcio_certs():
            readable(ca)
        rekor = root.rekor_keyring(KeyringPurpose.VERIFY)
        root.ct_keyring(KeyringPurpose.VERIFY)
        verifier = Verifier(trusted_root=root)
    except _UNUSABLE as exc:
        message = f"{what} is not a usable Sigstore trusted root: {_first_line(exc)}"
        raise PolicyError(message) from None
    return TrustRoot(
        name=name,
        digest=hashlib.sha256(raw).hexdigest(),
        verifier=verifier,
        rekor=rekor,
        log_ids=frozenset(bytes(log.log_id.key_id) for log in inner.tlogs),
        timestamp_authorities=tuple(root.get_timestamp_authorities()),
        certificate_authorities=tuple(
            CertificateAuthority(ca) for ca in inner.certificate_authorities
        ),
        log_keys=_windows(inner.tlogs),
        ct_keys=_windows(inner.ctlogs),
    )


def _windows(logs: Sequence[trustroot_v1.TransparencyLogInstance]) -> dict[bytes, KeyWindow]:
    """Each usable log key's window, by its key ID (SHA-256 of the key, as Keyring keys it)."""
    found = {}
    for log in logs:
        try:
            key_id = Key(log.public_key).key_id
        except (SigstoreError, ValueError, TypeError):
            continue  # a key sigstore-python does not load either
        valid = log.public_key.valid_for
        start = valid.start if valid is not None else datetime.min.replace(tzinfo=UTC)
        found[bytes(key_id)] = KeyWindow(log.base_url, start, valid.end if valid else None)
    return found


def _first_line(exc: BaseException) -> str:
    """What is wrong, in one line: the first field pydantic refused, or the message."""
    if isinstance(exc, ValidationError) and exc.errors():
        first = exc.errors()[0]
        where = ".".join(str(part) for part in first.get("loc", ())) or "document"
        more = f" (and {exc.error_count() - 1} more problems)" if exc.error_count() > 1 else ""
        return f"{where}: {first.get('msg', 'invalid')}{more}"[:300]
    text = str(exc).strip().splitlines()
    shown = text[0] if text else type(exc).__name__
    return shown[:300]
