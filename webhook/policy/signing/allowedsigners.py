"""``key: {allowedSigners: FILE}``: the signers of Git commits, in ssh-keygen's format.

The file ``git config gpg.ssh.allowedSignersFile`` names, one signer a line::

    alice@example.com,bob@example.com namespaces="git",valid-before="20270101Z" ssh-ed25519 AAAA...

An authority of this kind trusts a commit signed by any key of the file whose
options admit it: ``namespaces=`` must match ``git`` (the namespace Git signs
in), and the commit's committer time must lie within ``valid-after`` and
``valid-before``, as ``git verify-commit`` checks them. Times are UTC (pods run
in UTC; ssh-keygen would read one without ``Z`` in its local zone).
``cert-authority`` lines are refused when the file is read: trustgate does not
check SSH certificates, and dropping the line silently would hide a signer
the file's author meant to trust.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from webhook.core.errors import PolicyError
from webhook.policy.signing.sshsig import KEY_TYPES, load_ssh_public_key, ssh_key_blob
from webhook.policy.signing.tree import NotRegularFile, read_regular
from webhook.trust.keys import PublicKey

__all__ = [
    "Admission",
    "AllowedSigner",
    "AllowedSigners",
    "admit",
    "load_allowed_signers",
    "parse_allowed_signers",
]

#: Largest allowed-signers file read, and most signers in it.
MAX_FILE_BYTES = 1024 * 1024
MAX_SIGNERS = 10_000
_OPTIONS = ("cert-authority", "namespaces", "valid-after", "valid-before")
_TIME_FORMATS = {8: "%Y%m%d", 12: "%Y%m%d%H%M", 14: "%Y%m%d%H%M%S"}


@dataclass(frozen=True, slots=True)
class AllowedSigner:
    """One line of the file: whose key, for which namespaces, in which time window."""

    principals: str
    blob: bytes  # the key in SSH wire format, compared with the signature's
    key: PublicKey
    line: int
    namespaces: tuple[str, ...] | None = None  # None: every namespace
    valid_after: datetime | None = None
    valid_before: datetime | None = None


@dataclass(frozen=True, slots=True)
class AllowedSigners:
    """An authority of ``policies.signature``: its name and the signers of its file."""

    name: str
    source: str
    signers: tuple[AllowedSigner, ...]


@dataclass(frozen=True, slots=True)
class Admission:
    """The signer whose line admits a key now, or why each line with that key does not."""

    signer: AllowedSigner | None
    refusals: tuple[str, ...]


def load_allowed_signers(path: Path, name: str) -> AllowedSigners:
    """The authority ``name`` reading allowed-signers file ``path``.

    Raises:
        PolicyError: the file cannot be read, is too large, or a line is not
            a signer trustgate accepts (each message names the line).
    """
    try:
        raw = read_regular(path, MAX_FILE_BYTES)
    except NotRegularFile:
        raise PolicyError(f"allowed-signers file {path} is not a regular file") from None
    except OSError as exc:
        raise PolicyError(f"cannot read allowed-signers file {path}: {exc.strerror}") from None
    if len(raw) > MAX_FILE_BYTES:
        raise PolicyError(f"allowed-signers file {path} is larger than {MAX_FILE_BYTES} bytes")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise PolicyError(f"allowed-signers file {path} is not UTF-8 text") from None
    return AllowedSigners(name, str(path), parse_allowed_signers(text, source=str(path)))


def parse_allowed_signers(text: str, *, source: str) -> tuple[AllowedSigner, ...]:
    """The signers of allowed-signers ``text`` (``source`` names it in messages).

    Raises:
        PolicyError: a line cannot be read, uses ``cert-authority`` or an
            unknown option, names a refused key, or the file holds no signer.
    """
    signers: list[AllowedSigner] = []
    for number, line in enumerate(text.splitlines(), start=1):
        stripped = line.strip()
        if not stripped or stripped.startswith("#"):
            continue
        if len(signers) >= MAX_SIGNERS:
            raise PolicyError(f"{source}: more than {MAX_SIGNERS} signers")
        signers.append(_signer(stripped, f"{source} line {number}", number))
    if not signers:
        raise PolicyError(f"{source}: lists no signer (principals, options, key type, key)")
    return tuple(signers)


def _signer(line: str, where: str, number: int) -> AllowedSigner:
    fields = list(_fields(line, where))
    if len(fields) < 3:
        raise PolicyError(f"{where}: expected PRINCIPALS [OPTIONS] KEYTYPE BASE64-KEY")
    principals = fields[0].replace('"', "")
    options: dict[str, str] = {}
    rest = fields[1:]
    if rest[0] not in KEY_TYPES and not rest[0].startswith(("sk-", "ssh-", "ecdsa-")):
        options = _options(rest[0], where)
        rest = rest[1:]
    _, blob = ssh_key_blob(" ".join(rest), source=where)
    key = load_ssh_public_key(blob, source=where)
    namespaces = options.get("namespaces")
    return AllowedSigner(
        principals,
        blob,
        key,
        number,
        None if namespaces is None else tuple(p.strip() for p in namespaces.split(",")),
        _time(options, "valid-after", where),
        _time(options, "valid-before", where),
    )


def _fields(line: str, where: str) -> Iterator[str]:
    """Whitespace-separated fields; double quotes keep spaces and commas together."""
    field: list[str] = []
    quoted = False
    for char in line:
        if char == '"':
            quoted = not quoted
        if char.isspace() and not quoted:
            if field:
                yield "".join(field)
            field = []
            continue
        field.append(char)
    if quoted:
        raise PolicyError(f"{where}: a double quote is not closed")
    if field:
        yield "".join(field)


def _options(text: str, where: str) -> dict[str, str]:
    options: dict[str, str] = {}
    for item in re.findall(r'(?:[^,"]|"[^"]*")+', text):
        name, _, value = item.partition("=")
        name = name.strip().lower()
        if name == "cert-authority":
            raise PolicyError(
                f"{where}: cert-authority (SSH certificates) is not supported; "
                "list each signing key itself"
            )
        if name not in _OPTIONS:
            raise PolicyError(
                f"{where}: unknown option {name!r}; known: namespaces, valid-after, valid-before"
            )
        if name in options:
            raise PolicyError(f"{where}: option {name} is given twice")
        if not (len(value) >= 2 and value[0] == value[-1] == '"'):
            raise PolicyError(f'{where}: option {name} needs a quoted value ({name}="...")')
        options[name] = value[1:-1]
    return options


def _time(options: dict[str, str], name: str, where: str) -> datetime | None:
    text = options.get(name)
    if text is None:
        return None
    digits = text.removesuffix("Z")
    try:
        if len(digits) not in _TIME_FORMATS or not digits.isdigit():
            raise ValueError(text)
        return datetime.strptime(digits, _TIME_FORMATS[len(digits)]).replace(tzinfo=UTC)
    except ValueError:
        raise PolicyError(f'{where}: {name}="{text}" is not YYYYMMDD[HHMM[SS]][Z]') from None


def _matches(value: str, patterns: Sequence[str]) -> bool:
    """OpenSSH's pattern-list match: ``*`` and ``?`` wildcards, ``!`` negates and wins."""
    found = False
    for pattern in patterns:
        negated = pattern.startswith("!")
        body = pattern[1:] if negated else pattern
        expression = "".join(".*" if c == "*" else "." if c == "?" else re.escape(c) for c in body)
        if re.fullmatch(expression, value):
            if negated:
                return False
            found = True
    return found


def admit(
    signers: Sequence[AllowedSigner], blob: bytes, *, namespace: str, when: datetime
) -> Admission:
    """The first signer with key ``blob`` whose options admit ``namespace`` at ``when``."""
    refusals = []
    for signer in signers:
        if signer.blob != blob:
            continue
        line = f"line {signer.line} ({signer.principals})"
        if signer.namespaces is not None and not _matches(namespace, signer.namespaces):
            shown = ",".join(signer.namespaces)
            refusals.append(f'{line} allows namespaces="{shown}", not {namespace}')
        elif signer.valid_after is not None and when < signer.valid_after:
            refusals.append(f"{line} is valid after {signer.valid_after:%Y-%m-%dT%H:%M:%SZ} only")
        elif signer.valid_before is not None and when >= signer.valid_before:
            refusals.append(
                f"{line} was valid before {signer.valid_before:%Y-%m-%dT%H:%M:%SZ} only"
            )
        else:
            return Admission(signer, ())
    return Admission(None, tuple(refusals))
