"""Trust stores from files and PEM, and the messages for those that cannot be used."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.serialization import Encoding

from tests.support.notation_pki import FIXTURES, Authority, self_signed
from webhook.core.errors import PolicyError
from webhook.signatures.notation.model import SIGNING_AUTHORITY, X509
from webhook.trust.notation.truststore import (
    MAX_FILE_BYTES,
    fingerprint,
    load_store,
    parse_certificates,
)


def _pem(*authorities: Authority) -> bytes:
    return b"".join(a.cert.public_bytes(Encoding.PEM) for a in authorities)


def test_pem_der_lists_and_inline_pem(tmp_path: Path) -> None:
    one, two, three = Authority.root("one"), Authority.root("two"), Authority.root("three")
    (tmp_path / "bundle.pem").write_bytes(_pem(one, two))
    (tmp_path / "three.cer").write_bytes(three.cert.public_bytes(Encoding.DER))
    sa = Authority.root("sa")
    store = load_store(
        ca=["bundle.pem", str(tmp_path / "three.cer")],
        signing_authority=_pem(sa).decode(),
        tsa=str(FIXTURES / "globalsignRoot.cer"),
        base=tmp_path,
    )
    assert store.ca == (one.cert, two.cert, three.cert)
    assert store.anchors(X509) == store.ca
    assert store.anchors(SIGNING_AUTHORITY) == (sa.cert,)
    assert store.anchors("notary.other") == ()
    assert store.tsa[0].subject.rfc4514_string().startswith("CN=GlobalSign")
    assert store.kinds == ("ca", "signingAuthority", "tsa")
    assert store.origins == (
        str(tmp_path / "bundle.pem"),
        str(tmp_path / "three.cer"),
        "inline PEM",
        str(FIXTURES / "globalsignRoot.cer"),
    )


def test_the_same_certificate_twice_is_kept_once(tmp_path: Path) -> None:
    root = Authority.root()
    (tmp_path / "a.pem").write_bytes(_pem(root, root))
    assert load_store(ca="a.pem", base=tmp_path).ca == (root.cert,)


def test_a_self_signed_signing_certificate_may_be_trusted() -> None:
    signing = self_signed()
    store = load_store(ca=signing.chain[0].public_bytes(Encoding.PEM).decode())
    assert store.ca == signing.chain


def test_a_link_is_followed(tmp_path: Path) -> None:
    # Kubernetes mounts ConfigMap and Secret files through symbolic links.
    root = Authority.root()
    (tmp_path / "..data").mkdir()
    (tmp_path / "..data" / "ca.pem").write_bytes(_pem(root))
    (tmp_path / "ca.pem").symlink_to(tmp_path / "..data" / "ca.pem")
    assert load_store(ca="ca.pem", base=tmp_path).ca == (root.cert,)


def test_a_fingerprint_names_a_certificate() -> None:
    root = Authority.root()
    assert fingerprint(root.cert) == "sha256:" + root.cert.fingerprint(hashes.SHA256()).hex()


@pytest.mark.parametrize(
    ("setup", "message"),
    [
        (lambda d: None, r"cannot read trust store .*missing.pem: No such file or directory"),
        (lambda d: (d / "missing.pem").mkdir(), "is a directory; name a certificate file"),
        (lambda d: os.mkfifo(d / "missing.pem"), "is not a regular file"),
        (lambda d: (d / "missing.pem").write_bytes(b"  \n"), "is empty; it should hold"),
        (
            lambda d: (d / "missing.pem").write_bytes(b"not a certificate"),
            "neither PEM certificates",
        ),
        (
            lambda d: (d / "missing.pem").write_bytes(b"-----BEGIN CERTIFICATE-----\nAAAA\n"),
            "no valid PEM CERTIFICATE block",
        ),
        (
            lambda d: (d / "missing.pem").write_bytes(b"x" * (MAX_FILE_BYTES + 1)),
            f"is over {MAX_FILE_BYTES} bytes",
        ),
    ],
)
def test_unusable_files_are_refused_with_their_path(
    setup: Callable[[Path], object], message: str, tmp_path: Path
) -> None:
    setup(tmp_path)
    with pytest.raises(PolicyError, match=message) as caught:
        load_store(ca=["missing.pem"], base=tmp_path)
    assert str(tmp_path / "missing.pem") in str(caught.value)


def test_a_path_through_a_file_says_why(tmp_path: Path) -> None:
    (tmp_path / "file").write_bytes(b"x")
    with pytest.raises(PolicyError, match=r"cannot read trust store .*: Not a directory; check"):
        load_store(ca=str(tmp_path / "file" / "ca.pem"))


def test_a_leaf_that_is_neither_ca_nor_self_signed_is_refused() -> None:
    leaf = Authority.root().leaf("builder").chain[0]
    with pytest.raises(PolicyError, match=r"ca certificate 'CN=builder,.*' is neither a CA nor"):
        load_store(ca=leaf.public_bytes(Encoding.PEM).decode())


def test_an_empty_entry_is_refused() -> None:
    with pytest.raises(PolicyError, match="a trust store entry is empty"):
        load_store(tsa=[" "])


def test_parse_certificates_reads_pem_bundles_and_der() -> None:
    one, two = Authority.root("one"), Authority.root("two")
    assert parse_certificates(_pem(one, two), "x") == (one.cert, two.cert)
    assert parse_certificates(one.cert.public_bytes(Encoding.DER), "x") == (one.cert,)
