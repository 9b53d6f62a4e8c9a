"""ssh-keygen's ALLOWED SIGNERS files: what is read, what is refused, what admits a key when."""

from __future__ import annotations

import os
from datetime import UTC, datetime
from pathlib import Path

import pytest

from tests.support.gitsigning import public_line, ssh_key
from webhook.core.errors import PolicyError
from webhook.policy.signing.allowedsigners import (
    MAX_FILE_BYTES,
    admit,
    load_allowed_signers,
    parse_allowed_signers,
)

JAN_15 = datetime(2027, 1, 15, 8, tzinfo=UTC)


@pytest.fixture(scope="module")
def keys(tmp_path_factory: pytest.TempPathFactory) -> list[str]:
    home = tmp_path_factory.mktemp("signers")
    return [public_line(ssh_key(home, "a")), public_line(ssh_key(home, "b", "ecdsa", 256))]


def test_lines_with_and_without_options_are_read(keys: list[str]) -> None:
    text = (
        "# the policy maintainers\n\n"
        f"alice@example.com {keys[0]}\n"
        f'"bob@example.com,carol@example.com" namespaces="git,file",'
        f'valid-after="20260101",VALID-BEFORE="202801010000Z" {keys[1]}\n'
    )
    first, second = parse_allowed_signers(text, source="allowed_signers")
    assert (first.principals, first.line, first.namespaces) == ("alice@example.com", 3, None)
    assert second.principals == "bob@example.com,carol@example.com"
    assert second.namespaces == ("git", "file")
    assert second.valid_after == datetime(2026, 1, 1, tzinfo=UTC)
    assert second.valid_before == datetime(2028, 1, 1, tzinfo=UTC)


@pytest.mark.parametrize(
    ("options", "says"),
    [
        ("cert-authority", "cert-authority (SSH certificates) is not supported"),
        ('verify-required,namespaces="git"', "unknown option 'verify-required'"),
        ('namespaces="git",namespaces="file"', "option namespaces is given twice"),
        ("namespaces=git", "option namespaces needs a quoted value"),
        ('valid-before="2027-01-01"', 'valid-before="2027-01-01" is not YYYYMMDD[HHMM[SS]][Z]'),
        ('namespaces="git', "a double quote is not closed"),
    ],
)
def test_refused_options_name_the_line(keys: list[str], options: str, says: str) -> None:
    text = f"# header\nalice@example.com {options} {keys[0]}\n"
    with pytest.raises(PolicyError) as caught:
        parse_allowed_signers(text, source="signers")
    assert str(caught.value).startswith("signers line 2: ") and says in str(caught.value)


@pytest.mark.parametrize(
    ("text", "says"),
    [
        ("# only a comment\n", "lists no signer"),
        ("alice@example.com\n", "expected PRINCIPALS [OPTIONS] KEYTYPE BASE64-KEY"),
        ("alice@example.com ssh-dss AAAAB3NzaC1kc3M=\n", "key type 'ssh-dss' not accepted"),
    ],
)
def test_refused_files(text: str, says: str) -> None:
    with pytest.raises(PolicyError, match=r".*") as caught:
        parse_allowed_signers(text, source="signers")
    assert says in str(caught.value)


def test_a_file_too_large_or_missing_is_refused(tmp_path: Path) -> None:
    big = tmp_path / "big"
    big.write_bytes(b"#" * (MAX_FILE_BYTES + 1))
    with pytest.raises(PolicyError, match="larger than"):
        load_allowed_signers(big, "team")
    with pytest.raises(PolicyError, match="cannot read allowed-signers file"):
        load_allowed_signers(tmp_path / "absent", "team")


def test_a_fifo_is_refused_not_waited_on(tmp_path: Path) -> None:
    """Opened for reading, a FIFO waits for a writer: loading the configuration would hang."""
    import threading

    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    raised: list[BaseException] = []

    def load() -> None:
        try:
            load_allowed_signers(fifo, "team")
        except BaseException as exc:  # the outcome is the assertion below
            raised.append(exc)

    worker = threading.Thread(target=load, daemon=True)
    worker.start()
    worker.join(5)
    if worker.is_alive():  # let the hung reader go before failing
        with open(fifo, "wb"):
            pass
    assert not worker.is_alive(), "reading a FIFO as the allowed-signers file hung"
    assert len(raised) == 1 and isinstance(raised[0], PolicyError)
    assert f"allowed-signers file {fifo} is not a regular file" in str(raised[0])


def test_a_file_is_loaded_as_a_named_authority(tmp_path: Path, keys: list[str]) -> None:
    path = tmp_path / "allowed_signers"
    path.write_text(f"alice@example.com {keys[0]}\n")
    authority = load_allowed_signers(path, "maintainers")
    assert (authority.name, authority.source, len(authority.signers)) == (
        "maintainers",
        str(path),
        1,
    )


@pytest.mark.parametrize(
    ("options", "admitted"),
    [
        ("", True),
        ('namespaces="*"', True),
        ('namespaces="g?t"', True),
        ('namespaces="file,git"', True),
        ('namespaces="file"', False),
        ('namespaces="*,!git"', False),
        ('valid-after="20270115080000Z"', True),
        ('valid-after="20270115080001"', False),
        ('valid-before="20270115080001Z"', True),
        ('valid-before="20270115080000Z"', False),
    ],
)
def test_admission_by_namespace_and_time(keys: list[str], options: str, admitted: bool) -> None:
    (signer,) = parse_allowed_signers(f"alice@example.com {options} {keys[0]}", source="s")
    admission = admit([signer], signer.blob, namespace="git", when=JAN_15)
    assert (admission.signer is not None) is admitted
    assert bool(admission.refusals) is not admitted


def test_a_later_line_of_the_same_key_can_admit_it(keys: list[str]) -> None:
    text = (
        f'old@example.com valid-before="20260101" {keys[0]}\n'
        f'new@example.com valid-after="20260101" {keys[0]}\n'
    )
    signers = parse_allowed_signers(text, source="s")
    admission = admit(signers, signers[0].blob, namespace="git", when=JAN_15)
    assert admission.signer is not None and admission.signer.principals == "new@example.com"


def test_an_unlisted_key_is_not_admitted_and_no_line_is_blamed(keys: list[str]) -> None:
    signers = parse_allowed_signers(f"alice@example.com {keys[0]}", source="s")
    other = parse_allowed_signers(f"bob@example.com {keys[1]}", source="s")[0].blob
    assert admit(signers, other, namespace="git", when=JAN_15).refusals == ()
    assert admit(signers, other, namespace="git", when=JAN_15).signer is None
