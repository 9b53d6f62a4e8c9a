"""The ``trustgate`` command: assemble the subcommands, then run the one asked for.

Exit codes: 0 admitted / clean, 1 denied / failing, 2 bad usage or input
(a policy directory that does not load, an unreadable file).

Each command group lives in its own module under ``webhook.cli.commands``,
which adds its subcommands to the parser and holds their handlers.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path

from webhook.cli.commands.audit import add_audit
from webhook.cli.commands.certs import add_certs
from webhook.cli.commands.grade import add_grade
from webhook.cli.commands.policy import add_policy
from webhook.cli.commands.review import add_check, add_review
from webhook.cli.commands.serve import add_serve
from webhook.cli.common import (
    EXIT_USAGE,
    POLICIES_DEFAULT,
    POLICIES_ENV,
    Handler,
    PoliciesFlag,
)
from webhook.cli.usage import installed_version
from webhook.config import load_config
from webhook.core.errors import TrustgateError
from webhook.core.observability import configure_logging


def _common(env: Mapping[str, str]) -> argparse.ArgumentParser:
    """The flags of every command that reads policies: --policies and --config."""
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "--policies",
        type=Path,
        action=PoliciesFlag,
        default=Path(env.get("TRUSTGATE_POLICIES", "policies")),
        help="policy directory (default: $TRUSTGATE_POLICIES or ./policies)",
    )
    # Where --policies came from, for the message when the directory is missing.
    common.set_defaults(
        policies_from=POLICIES_ENV if env.get("TRUSTGATE_POLICIES") else POLICIES_DEFAULT
    )
    common.add_argument(
        "--config",
        type=Path,
        default=Path(env["TRUSTGATE_CONFIG"]) if env.get("TRUSTGATE_CONFIG") else None,
        help="global configuration file, trustgate.yaml (default: $TRUSTGATE_CONFIG)",
    )
    return common


#: 128 + SIGPIPE, what a shell reports for a writer whose reader went away.
EXIT_BROKEN_PIPE = 141


def build_parser(env: os._Environ[str] | dict[str, str] | None = None) -> argparse.ArgumentParser:
    """The argument parser; ``env`` gives the defaults of --policies, --config, --cpu-request."""
    env_map = os.environ if env is None else env
    common = _common(env_map)
    parser = argparse.ArgumentParser(
        prog="trustgate",
        description="Admit only container images from trusted sources.",
        epilog="Each command's --help gives an example and its exit codes.",
    )
    parser.add_argument("--version", action="version", version=f"trustgate {installed_version()}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    # The order here is the order of the commands in --help.
    add_serve(commands, common, env_map)
    add_review(commands, common)
    add_check(commands, common)
    add_audit(commands, common)
    add_policy(commands, common)
    add_grade(commands, common)
    add_certs(commands)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit code."""
    args = build_parser().parse_args(argv)
    handler: Handler = args.handler  # set by the subcommand's add_* function
    try:
        config = load_config(getattr(args, "config", None))
        # Commands other than serve keep the decision log quiet unless something is wrong.
        level = config.log_level if args.command == "serve" else "warning"
        configure_logging(config.log_format, level)
        return handler(args, config)
    except TrustgateError as exc:
        print(f"trustgate: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except BrokenPipeError:
        # The reader left (``trustgate audit ... | head``): nothing more to say, and no
        # traceback. Standard output goes to /dev/null so that Python's own flush at exit
        # does not fail again; the exit code is the shell's for a closed pipe.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return EXIT_BROKEN_PIPE


if __name__ == "__main__":
    sys.exit(main())
