"""What every ``trustgate`` command shares: exit codes, the handler shape, judging and printing.

Separate from ``main`` so the command modules can use it without importing the
module that imports them.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from webhook.cli import report
from webhook.cli.policyreport import Group
from webhook.config import Config
from webhook.core.errors import PolicyError
from webhook.engine import Engine
from webhook.policy.loader import load_directory
from webhook.services import build_engine, oneshot_pull_secrets

EXIT_OK, EXIT_DENIED, EXIT_USAGE = 0, 1, 2

#: A command: its parsed arguments and the global configuration in, its exit code out.
Handler = Callable[[argparse.Namespace, Config], int]


def whole(text: str, minimum: int) -> int | None:
    """``text`` as a whole number of at least ``minimum``, else None."""
    try:
        value = int(text)
    except ValueError:
        return None
    return value if value >= minimum else None


#: Where ``--policies`` came from (``args.policies_from``) when the flag is not given.
POLICIES_ENV, POLICIES_DEFAULT = "$TRUSTGATE_POLICIES", "default"


class PoliciesFlag(argparse.Action):
    """``--policies DIR``, remembering that the directory came from the flag."""

    def __call__(
        self,
        parser: argparse.ArgumentParser,
        namespace: argparse.Namespace,
        values: Any,
        option_string: str | None = None,
    ) -> None:
        setattr(namespace, self.dest, values)
        namespace.policies_from = option_string or "--policies"


def policy_directory(args: argparse.Namespace) -> Path:
    """``--policies``, checked to exist.

    Raises:
        PolicyError: when it does not, saying where the path came from (the flag,
            ``$TRUSTGATE_POLICIES`` or the default ``./policies``) and what to change.
    """
    directory: Path = args.policies
    if directory.exists():
        return directory
    where = getattr(args, "policies_from", POLICIES_DEFAULT)
    if where == POLICIES_ENV:
        hint = f"from {POLICIES_ENV}: set it to your policy directory, or pass --policies DIR"
    elif where == POLICIES_DEFAULT:
        hint = (
            f"the default, ./policies, relative to {Path.cwd()}: run trustgate from the "
            f"directory that holds policies/, pass --policies DIR or set {POLICIES_ENV}"
        )
    else:
        hint = f"from {where}: check the path"
    raise PolicyError(f"policy directory {directory} does not exist ({hint})")


def engine_for(args: argparse.Namespace, config: Config, directory: Path | None = None) -> Engine:
    """An engine over the policies of ``directory`` (default ``--policies``), loaded once.

    Raises PolicyError when the policies do not load, or when ``--policies`` does not exist.
    """
    policy_set = load_directory(directory or policy_directory(args))
    reader = oneshot_pull_secrets(
        config,
        kubeconfig=getattr(args, "kubeconfig", None),
        context=getattr(args, "context", None),
    )
    return build_engine(lambda: policy_set, config, pull_secrets=reader)


def print_rows(rows: list[Any], fmt: str, group: Group = "openreports") -> int:
    """Print ``rows``; exit 2 when a document could not be read, 1 when one is denied."""
    sys.stdout.write(report.render(rows, fmt, group=group))
    if any(r.decision == "error" for r in rows):
        return EXIT_USAGE
    return EXIT_DENIED if any(r.decision == "denied" for r in rows) else EXIT_OK
