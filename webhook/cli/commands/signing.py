"""``trustgate policy sign | verify``: sign a policy directory with a key, check it offline.

Separate from the other ``policy`` commands because these read keys and the
``policies.signature`` authorities, not the policies' meaning; ``policy lint``
borrows ``signature_status`` to report a directory's signature beside its
other findings.
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from webhook.cli.common import EXIT_DENIED, EXIT_OK, policy_directory, whole
from webhook.cli.usage import about
from webhook.config import Config
from webhook.config.policysig import PolicySignatureConfig
from webhook.core.errors import ConfigError, PolicyError
from webhook.policy.signing.envelope import (
    SIGNATURE_FILE,
    PolicySignatureError,
    previous_version,
    sign_directory,
    verify_directory,
)


def add_signing(
    policy_commands: argparse._SubParsersAction[argparse.ArgumentParser],
    common: argparse.ArgumentParser,
) -> None:
    """Add ``policy sign`` and ``policy verify``."""
    sign = policy_commands.add_parser(
        "sign",
        parents=[common],
        **about(
            f"sign a policy directory with a private key, writing DIR/{SIGNATURE_FILE}",
            "trustgate policy sign policies/ --key policy-signing.key",
            "signed",
            usage="an unreadable policy directory or key",
        ),
    )
    sign.set_defaults(handler=_sign)
    sign.add_argument("directory", nargs="?", type=Path, metavar="DIR", help="(--policies)")
    sign.add_argument(
        "--key", type=Path, required=True, metavar="PRIVATE.pem", help="PEM private key"
    )
    sign.add_argument(
        "--version",
        type=_version,
        metavar="N",
        help="the set's version, 1 or more (default: the previous signature's + 1)",
    )
    verify = policy_commands.add_parser(
        "verify",
        parents=[common],
        **about(
            "check that an authority of policies.signature signed the directory as it is now",
            "trustgate policy verify policies/ --config trustgate.yaml",
            "signed by a listed authority, and no file added, removed, renamed or changed",
            "unsigned, signed by another key, or altered since signing",
            usage="no policies.signature in the configuration, a missing directory",
        ),
    )
    verify.set_defaults(handler=_verify)
    verify.add_argument("directory", nargs="?", type=Path, metavar="DIR", help="(--policies)")


def _version(text: str) -> int:
    version = whole(text, 1)
    if version is None:
        raise argparse.ArgumentTypeError(f"must be a whole number, 1 or more (got {text!r})")
    return version


def _sign(args: argparse.Namespace, config: Config) -> int:
    directory: Path = args.directory or policy_directory(args)
    try:
        pem = args.key.read_bytes()
    except OSError as exc:
        raise PolicyError(f"cannot read key file {args.key}: {exc.strerror}") from None
    previous = previous_version(directory)
    version = args.version or previous + 1
    if version <= previous:
        print(
            f"warning: version {version} is not above the current signature's ({previous}); "
            "a server that refuses older sets will refuse this one",
            file=sys.stderr,
        )
    manifest = sign_directory(
        directory, pem, source=f"key file {args.key}", version=version, now=datetime.now(UTC)
    )
    print(
        f"signed {directory}: {len(manifest.files)} files, version {manifest.version}; "
        f"wrote {directory / SIGNATURE_FILE}"
    )
    return EXIT_OK


def _verify(args: argparse.Namespace, config: Config) -> int:
    directory: Path = args.directory or policy_directory(args)
    if config.policy_signature is None:
        raise ConfigError(
            "the configuration names no policies.signature authorities; "
            "pass --config trustgate.yaml with policies.signature.authorities"
        )
    try:
        authority, version, signed_at, count = _check(directory, config.policy_signature)
    except PolicySignatureError as exc:
        print(f"trustgate: not verified: {exc}", file=sys.stderr)
        return EXIT_DENIED
    print(
        f"{directory}: signed by {authority!r}, version {version}, "
        f"{signed_at:%Y-%m-%dT%H:%M:%SZ}; {count} files match"
    )
    return EXIT_OK


def _check(directory: Path, wanted: PolicySignatureConfig) -> tuple[str, str, datetime, int]:
    """Who signed ``directory``, which version, when, and how many files (files or git source).

    Raises:
        PolicySignatureError: as ``verify_directory`` or ``verify_checkout``.
    """
    if wanted.source == "git":
        # Imported here: libgit2 (pygit2) costs every other command ~45 ms to load.
        from webhook.signatures.gitsign import git_verifier

        verified = git_verifier(wanted)(directory)
        version = f"{verified.version} (commit {verified.digest.removeprefix('git:')})"
        return verified.authority, version, verified.signed_at, len(verified.files or ())
    signed = verify_directory(directory, wanted.authorities)
    manifest = signed.manifest
    return signed.authority, str(manifest.version), manifest.signed_at, len(manifest.files)


@dataclass(frozen=True, slots=True)
class SignatureStatus:
    """What ``policy lint`` says about a directory's signature."""

    valid: bool
    required: bool
    text: str

    def as_json(self) -> dict[str, object]:
        """The ``signature`` field of ``policy lint --output json``."""
        return {"valid": self.valid, "required": self.required, "message": self.text}


def signature_status(directory: Path, config: Config) -> SignatureStatus | None:
    """Whether ``directory`` is validly signed; None when the configuration asks nothing."""
    wanted = config.policy_signature
    if wanted is None or not directory.is_dir():
        return None
    try:
        authority, version, _, _ = _check(directory, wanted)
    except PolicySignatureError as exc:
        return SignatureStatus(False, wanted.required, f"signature: not valid: {exc}")
    text = f"signature: valid, signed by {authority!r}, version {version}"
    return SignatureStatus(True, wanted.required, text)
