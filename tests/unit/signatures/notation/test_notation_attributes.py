"""The rules both formats share: critical headers, signing schemes and times, the chain."""

from __future__ import annotations

import dataclasses
import datetime as dt
from typing import Any

import pytest

from tests.support import notation as signer
from webhook.signatures.notation import algorithms
from webhook.signatures.notation.attributes import (
    MAX_CHAIN,
    MAX_EXTENDED_TEXT,
    SignedAttributes,
    check_signed,
    read_chain,
    text,
)
from webhook.signatures.notation.model import PAYLOAD_TYPE, SIGNING_AUTHORITY, X509, NotationError

SCHEME = "io.cncf.notary.signingScheme"
EXPIRY = "io.cncf.notary.expiry"
AUTHENTIC = "io.cncf.notary.authenticSigningTime"
SIGNING_TIME = "io.cncf.notary.signingTime"
T0 = dt.datetime(2025, 1, 1, tzinfo=dt.UTC)
BASE = SignedAttributes(
    algorithm=algorithms.ALGORITHMS["ES256"],
    content_type=PAYLOAD_TYPE,
    critical=(SCHEME,),
    signing_scheme=X509,
    signing_time=T0,
)


def _signed(**changes: Any) -> SignedAttributes:
    return dataclasses.replace(BASE, **changes)


def test_notary_x509_and_signing_authority_attributes_pass() -> None:
    check_signed(BASE)
    check_signed(_signed(expiry=T0 + dt.timedelta(days=1), critical=(SCHEME, EXPIRY)))
    check_signed(
        _signed(
            signing_scheme=SIGNING_AUTHORITY,
            signing_time=None,
            authentic_signing_time=T0,
            critical=(AUTHENTIC, SCHEME),
        )
    )
    # signingTime is understood, so listing it critical is harmless
    check_signed(_signed(critical=(SCHEME, SIGNING_TIME)))
    # extended attributes need not be critical
    check_signed(
        _signed(extended={"io.example.note": "x", "io.cncf.notary.verificationPlugin": "p"})
    )


@pytest.mark.parametrize(
    ("changes", "pattern"),
    [
        (
            {"content_type": "application/json"},
            "the content type is application/json, not the Notation payload's",
        ),
        (
            {"signing_scheme": "notary.default.x509"},
            "the signing scheme is notary.default.x509; trustgate knows",
        ),
        (
            {"signing_time": None},
            "the notary.x509 signing scheme requires io.cncf.notary.signingTime",
        ),
        (
            {"authentic_signing_time": T0},
            "the notary.x509 signing scheme does not allow io.cncf.notary.authenticSigningTime",
        ),
        (
            {"signing_scheme": SIGNING_AUTHORITY, "critical": (SCHEME, AUTHENTIC)},
            "notary.x509.signingAuthority signing scheme requires "
            "io.cncf.notary.authenticSigningTime",
        ),
        (
            {
                "signing_scheme": SIGNING_AUTHORITY,
                "authentic_signing_time": T0,
                "critical": (SCHEME, AUTHENTIC),
            },
            "signingAuthority signing scheme does not allow io.cncf.notary.signingTime",
        ),
        (
            {
                "signing_scheme": SIGNING_AUTHORITY,
                "signing_time": None,
                "authentic_signing_time": T0,
            },
            "io.cncf.notary.authenticSigningTime must be listed in crit",
        ),
        ({"critical": None}, "has no crit list"),
        ({"critical": ()}, "has no crit list"),
        (
            {"critical": (EXPIRY,)},
            "crit names io.cncf.notary.expiry, which the protected header does not have",
        ),
        (
            {"critical": ("io.example.x",), "extended": {"io.example.x": 1}},
            "crit names io.example.x, which trustgate does not know",
        ),
        ({"critical": (SCHEME, "alg")}, "crit names alg, which trustgate does not know"),
        ({"critical": (SCHEME, SCHEME)}, "crit names io.cncf.notary.signingScheme twice"),
        (
            {
                "critical": (SCHEME, "io.cncf.notary.verificationPluginMinVersion"),
                "extended": {"io.cncf.notary.verificationPluginMinVersion": "1.0"},
            },
            "verificationPluginMinVersion critical: it must be verified by the Notation "
            "verification plugin, which trustgate does not run",
        ),
        ({"critical": ("\x1b[31mred",)}, 'crit names "\\\\u001b\\[31mred", which'),
        ({"expiry": T0 + dt.timedelta(days=1)}, "io.cncf.notary.expiry must be listed in crit"),
        (
            {"expiry": T0, "critical": (SCHEME, EXPIRY)},
            "the expiry 2025-01-01T00:00:00\\+00:00 is not after the signing time",
        ),
    ],
)
def test_rules(changes: dict[str, Any], pattern: str) -> None:
    with pytest.raises(NotationError, match=pattern):
        check_signed(_signed(**changes))


def test_read_chain() -> None:
    chain = signer.signing_chain("p256")
    assert read_chain(chain.ders) == chain.certificates
    with pytest.raises(NotationError, match="carries no certificate chain"):
        read_chain([])
    with pytest.raises(NotationError, match=f"11 certificates, over the limit of {MAX_CHAIN}"):
        read_chain(chain.ders * 3 + chain.ders[:2])
    for garbage in (b"", b"\x30\x03\x02\x01\x01", b"\xff" * 40, chain.ders[0][:-1]):
        with pytest.raises(
            NotationError, match=r"certificate 2 of the chain is not a DER X\.509 certificate"
        ):
            read_chain([chain.ders[0], garbage])


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("plain", "plain"),
        (42, "42"),
        ([1, "a", None], '[1,"a",null]'),
        ({1: b"\x00\x01", "k": (1, 2)}, '{"1":"AAE=","k":[1,2]}'),
        (T0, '"2025-01-01T00:00:00+00:00"'),
    ],
)
def test_extended_values_as_text(value: object, expected: str) -> None:
    assert text(value) == expected


def test_extended_text_is_bounded() -> None:
    assert len(text("x" * 5000)) == MAX_EXTENDED_TEXT
    assert len(text(["x" * 5000])) == MAX_EXTENDED_TEXT
    deep: list[object] = []
    for _ in range(5000):
        deep = [deep]
    assert text(deep) == "(nested too deeply to show)"
