"""Sign images in the test registry with Notation, as ``notation sign`` would, end to end.

Joins the pieces other helpers make: a chain (tests/support/notation_pki.py,
or tests/support/notation_revocation.py for one its responder serves), an
envelope (tests/support/notation.py, JWS or COSE, with an RFC 3161
timestamp over its signature value when a TSA is given) and the signature
manifest pushed as a referrer of the image (tests/support/notation_referrers.py),
annotated with the chain's thumbprints and the signing time as notation does.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from collections.abc import Mapping, Sequence
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes

from tests.support import notation
from tests.support.notation_pki import Signing, TimestampAuthority
from tests.support.notation_referrers import push_signature
from tests.support.registry import Registry, manifest_descriptor

JWS = notation.JWS
COSE = notation.COSE


def signing_chain(key: Any, chain: Sequence[x509.Certificate]) -> notation.SigningChain:
    """The envelope signer of ``key`` with ``chain`` (signing certificate first)."""
    return notation.SigningChain(key, tuple(chain))


def of(signing: Signing) -> notation.SigningChain:
    """The envelope signer of a notation_pki ``Signing``."""
    return signing_chain(signing.key, signing.chain)


def thumbprints(chain: Sequence[x509.Certificate]) -> list[str]:
    """The SHA-256 thumbprints notation annotates a signature manifest with."""
    return [cert.fingerprint(hashes.SHA256()).hex() for cert in chain]


def envelope(
    signer: notation.SigningChain,
    target: Mapping[str, Any],
    *,
    media_type: str = JWS,
    tsa: TimestampAuthority | None = None,
    stamped_at: dt.datetime | None = None,
    **overrides: Any,
) -> bytes:
    """A JWS or COSE envelope of ``target``; with ``tsa``, timestamped (at ``stamped_at``).

    The token covers the signature value, which exists only once signed: the
    envelope is signed once to learn it, then built again around it.
    """
    if tsa is None:
        return notation.sign(media_type, signer, target, **overrides)
    values: list[bytes] = []
    names = {field.name for field in dataclasses.fields(notation.Attributes)}
    attrs = notation.attributes(signer, **{k: v for k, v in overrides.items() if k in names})

    def capture(data: bytes) -> bytes:
        values.append(notation.raw_signature(signer.key, attrs.alg, data))
        return values[-1]

    notation.sign(media_type, signer, target, sign=capture, **overrides)
    token = tsa.token(values[0], when=stamped_at)
    return notation.sign(
        media_type, signer, target, sign=lambda _data: values[0], timestamp=token, **overrides
    )


def sign_image(
    registry: Registry,
    repository: str,
    digest: str,
    signer: notation.SigningChain,
    *,
    media_type: str = JWS,
    target: Mapping[str, Any] | None = None,
    tsa: TimestampAuthority | None = None,
    stamped_at: dt.datetime | None = None,
    created: dt.datetime | None = None,
    annotate: bool = True,
    tag_index: bool = True,
    **overrides: Any,
) -> str:
    """Sign ``digest`` and push the signature as its referrer; the signature manifest's digest.

    ``target`` replaces the descriptor signed (default: the image's own);
    ``overrides`` go to the envelope's attributes (tests/support/notation.py).
    """
    signed = (
        dict(target) if target is not None else manifest_descriptor(registry, repository, digest)
    )
    body = envelope(
        signer, signed, media_type=media_type, tsa=tsa, stamped_at=stamped_at, **overrides
    )
    return push_signature(
        registry,
        repository,
        digest,
        body,
        media_type=media_type,
        created=created or dt.datetime.now(dt.UTC),
        thumbprints=thumbprints(signer.certificates) if annotate else (),
        tag_index=tag_index,
    )
