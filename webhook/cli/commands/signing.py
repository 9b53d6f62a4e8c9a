"""``trustgate policy sign | verify``: sign a policy directory (key or keyless), check it offline.

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
from webhook.policy.signedset import check_minimum
from webhook.policy.signing.envelope import (
    SIGNATURE_FILE,
    PolicySignatureError,
    check_directory,
    previous_version,
    sign_directory,
    write_signature,
)
from webhook.policy.signing.gate import Verified
from webhook.policy.signing.manifest import Manifest
from webhook.policy.snapshot import load_verified, uncovered
from webhook.signatures.policysign import (
    DEFAULT_TIMEOUT,
    TOKEN_VARIABLE,
    identity_token,
    load_instance,
    sign_keyless,
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
            "sign a policy directory with a private key, or keylessly with Sigstore, "
            f"writing DIR/{SIGNATURE_FILE}",
            "trustgate policy sign policies/ --keyless",
            "signed",
            usage="an unreadable policy directory or key, no identity token, Fulcio or "
            "Rekor unreachable or refusing",
        ),
    )
    sign.set_defaults(handler=_sign)
    sign.add_argument("directory", nargs="?", type=Path, metavar="DIR", help="(--policies)")
    how = sign.add_mutually_exclusive_group(required=True)
    how.add_argument("--key", type=Path, metavar="PRIVATE.pem", help="PEM private key")
    how.add_argument(
        "--keyless",
        action="store_true",
        help="a Fulcio certificate for an OIDC identity, logged in Rekor (Sigstore)",
    )
    sign.add_argument(
        "--identity-token",
        metavar="TOKEN",
        help=f"the OIDC token (default: ${TOKEN_VARIABLE}, else the CI's own); --keyless only",
    )
    instance = sign.add_mutually_exclusive_group()
    instance.add_argument(
        "--staging", action="store_true", help="Sigstore's staging instance (--keyless)"
    )
    instance.add_argument(
        "--trust-config",
        type=Path,
        metavar="FILE",
        help="a Sigstore ClientTrustConfig JSON (signing config and trusted root) of a "
        "private instance (--keyless; default: the production instance)",
    )
    sign.add_argument(
        "--timeout",
        type=_seconds,
        default=DEFAULT_TIMEOUT,
        metavar="SECONDS",
        help=f"most time keyless signing may wait for the CI's token, then for Fulcio and "
        f"Rekor together (default {DEFAULT_TIMEOUT:g})",
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


def _seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = 0.0
    if not 0 < value <= 3600:
        raise argparse.ArgumentTypeError(
            f"must be seconds, above 0 and at most 3600 (got {text!r})"
        )
    return value


def _sign(args: argparse.Namespace, config: Config) -> int:
    directory: Path = args.directory or policy_directory(args)
    keyless_only = args.identity_token or args.staging or args.trust_config
    if keyless_only and not args.keyless:
        raise PolicyError("--identity-token, --staging and --trust-config go with --keyless")
    pem = b""
    if not args.keyless:
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
    now = datetime.now(UTC)
    signer = ""
    if args.keyless:
        manifest, signer = _sign_keyless(directory, args, version, now)
    else:
        manifest = sign_directory(
            directory, pem, source=f"key file {args.key}", version=version, now=now
        )
    by = f" as {signer}" if signer else ""
    print(
        f"signed {directory}{by}: {len(manifest.files)} files, version {manifest.version}; "
        f"wrote {directory / SIGNATURE_FILE}"
    )
    return EXIT_OK


def _sign_keyless(
    directory: Path, args: argparse.Namespace, version: int, now: datetime
) -> tuple[Manifest, str]:
    """Sign with a Fulcio certificate: the token and the instance first, then the network."""
    token = identity_token(args.identity_token, timeout=args.timeout)
    instance = load_instance(staging=args.staging, trust_config=args.trust_config)
    signers: list[str] = []

    def signed(data: bytes) -> tuple[str, object]:
        signature = sign_keyless(data, instance, token, timeout=args.timeout)
        signers.append(signature.signer)
        return "bundle", signature.bundle

    manifest = write_signature(directory, signed, version=version, now=now)
    return manifest, f"{signers[0]} ({instance.name} Sigstore)"


def _verify(args: argparse.Namespace, config: Config) -> int:
    directory: Path = args.directory or policy_directory(args)
    if config.policy_signature is None:
        raise ConfigError(
            "the configuration names no policies.signature authorities; "
            "pass --config trustgate.yaml with policies.signature.authorities"
        )
    try:
        verified, signer, version = _check(directory, config.policy_signature)
    except PolicySignatureError as exc:
        print(f"trustgate: not verified: {exc}", file=sys.stderr)
        return EXIT_DENIED
    print(
        f"{directory}: {_signed_by(verified.authority, signer)}, version {version}, "
        f"{verified.signed_at:%Y-%m-%dT%H:%M:%SZ}; {len(verified.files or ())} files match"
    )
    return EXIT_OK


def _check(directory: Path, wanted: PolicySignatureConfig) -> tuple[Verified, str, str]:
    """Who signed ``directory`` (files or git source), who that is in words, and the version.

    Raises:
        PolicySignatureError: as ``verify_directory`` or ``verify_checkout``, or a
            version below ``minimumVersion`` (as the server refuses it).
    """
    if wanted.source == "git":
        # Imported here: libgit2 (pygit2) costs every other command ~45 ms to load.
        from webhook.signatures.gitsign import git_verifier

        verified = git_verifier(wanted)(directory)
        check_minimum(verified, wanted.minimum_version)
        version = f"{verified.version} (commit {verified.digest.removeprefix('git:')})"
        _covered(directory, verified)
        return verified, "", version
    checked = check_directory(directory, wanted.authorities)
    check_minimum(checked.verified, wanted.minimum_version)
    _covered(directory, checked.verified)
    return checked.verified, checked.signer, str(checked.verified.version)


def _covered(directory: Path, verified: Verified) -> None:
    """Refuse, as the server does, a signed set whose policies read files outside it.

    Raises:
        PolicySignatureError: ``unsigned``, naming the files (``snapshot.uncovered``).
    """
    if verified.files is None:
        return
    try:
        policy_set = load_verified(directory, verified.files)
    except PolicySignatureError:
        raise
    except PolicyError:
        return  # a set that does not compile: policy lint says why, the server refuses it
    refusal = uncovered(policy_set, directory)
    if refusal is not None:
        raise refusal


def _signed_by(authority: str, signer: str) -> str:
    return f"signed by {authority!r} ({signer})" if signer else f"signed by {authority!r}"


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
        verified, signer, version = _check(directory, wanted)
    except PolicySignatureError as exc:
        return SignatureStatus(False, wanted.required, f"signature: not valid: {exc}")
    text = f"signature: valid, {_signed_by(verified.authority, signer)}, version {version}"
    return SignatureStatus(True, wanted.required, text)
