"""``trustgate certs generate``: a CA and a serving certificate for the webhook.

Separate because it needs no policies and no configuration: it only writes
files, through ``webhook.core.certs``.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from webhook.cli.common import EXIT_OK
from webhook.cli.usage import about, output_option
from webhook.config import Config
from webhook.core import certs

#: The namespace docs/install.md installs the chart into.
NAMESPACE = "trustgate-system"
_USAGE = "an unknown flag, a file that exists already (--force) or cannot be written"


def add_certs(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``certs`` and its subcommand ``generate``."""
    certs_cmd = commands.add_parser(
        "certs",
        **about(
            "certificates for the webhook",
            "trustgate certs generate --out certs --san localhost --san 127.0.0.1",
            "written",
            usage=_USAGE,
        ),
    )
    certs_commands = certs_cmd.add_subparsers(dest="certs_command", required=True)
    generate = certs_commands.add_parser(
        "generate",
        **about(
            "write a new CA (ca.crt) and a serving certificate (tls.crt, tls.key)",
            "trustgate certs generate --out certs --service trustgate --namespace " + NAMESPACE,
            "written",
            usage=_USAGE,
        ),
    )
    generate.set_defaults(handler=_certs)
    output_option(generate, ("table", "json"))
    generate.add_argument("--out", type=Path, default=Path("certs"))
    generate.add_argument("--service", default="trustgate")
    generate.add_argument(
        "--namespace",
        default=NAMESPACE,
        help=f"the Service's namespace, for its DNS names (default {NAMESPACE})",
    )
    generate.add_argument(
        "--san", action="append", default=[], help="extra DNS name or IP address (repeatable)"
    )
    generate.add_argument("--days", type=int, default=365)
    generate.add_argument("--force", action="store_true", help="overwrite existing files")


def _certs(args: argparse.Namespace, config: Config) -> int:
    paths = certs.generate(
        args.out,
        service=args.service,
        namespace=args.namespace,
        extra_sans=args.san,
        days=args.days,
        overwrite=args.force,
    )
    if args.output == "json":
        print(json.dumps({"ca": str(paths.ca), "cert": str(paths.cert), "key": str(paths.key)}))
    else:
        print(f"wrote {paths.ca}, {paths.cert} and {paths.key}")
    return EXIT_OK
