"""How each ``trustgate`` command describes itself: help, example, exit codes, --output.

Every subcommand's ``--help`` says what it does, shows one command line that
works, and lists its exit codes; ``--output`` lists only the formats the
command writes, so no flag is silently ignored.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from importlib import metadata
from typing import Any


def output_option(parser: argparse.ArgumentParser, formats: Sequence[str]) -> None:
    """Add ``--output`` to ``parser``, offering only the formats the command writes."""
    parser.add_argument(
        "--output",
        "-o",
        choices=formats,
        default=formats[0],
        help=f"output format: {', '.join(formats)} (default {formats[0]})",
    )


_USAGE_ERROR = "a policy that does not load, an unreadable file"


def about(summary: str, example: str, *exits: str, usage: str = _USAGE_ERROR) -> dict[str, Any]:
    """``add_parser`` keywords: the help line, a description, an example and the exit codes.

    ``exits`` are the meanings of exit codes 0, 1, ... ; 2 is always bad usage or input,
    ``usage`` saying which (by default, policies that do not load and unreadable files:
    commands that read no policies say what else).
    """
    codes = {**dict(enumerate(exits)), 2: f"bad usage or input: {usage}"}
    lines = "\n".join(f"  {code}  {text}" for code, text in codes.items())
    return {
        "help": summary,
        "description": summary[0].upper() + summary[1:] + ".",
        "epilog": f"example:\n  {example}\n\nexit codes:\n{lines}",
        "formatter_class": argparse.RawDescriptionHelpFormatter,
    }


def installed_version() -> str:
    """The installed distribution's version (what ``trustgate --version`` prints)."""
    try:
        return metadata.version("trustgate")
    except metadata.PackageNotFoundError:
        return "unknown (not installed)"
