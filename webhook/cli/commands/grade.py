"""``trustgate grade``: the freshness grade of images, with fixes and schedule.

Separate because it asks the freshness sources alone, not the whole review:
no Pod is built and no signature is checked.
"""

from __future__ import annotations

import argparse
import json
from datetime import UTC, datetime

from webhook.cli.common import EXIT_DENIED, EXIT_OK, policy_directory
from webhook.cli.usage import about, output_option
from webhook.config import Config
from webhook.policy.loader import load_directory


def add_grade(
    commands: argparse._SubParsersAction[argparse.ArgumentParser],
    common: argparse.ArgumentParser,
) -> None:
    """Add ``grade``."""
    grade = commands.add_parser(
        "grade",
        parents=[common],
        **about(
            "freshness grade, its fixes and schedule, per image",
            "trustgate grade --namespace prod-web registry.access.redhat.com/ubi9/ubi:latest",
            "every grade known and at or above the governing policy's minimum",
            "a grade unknown or below the minimum",
        ),
    )
    grade.set_defaults(handler=_grade)
    output_option(grade, ("table", "json"))
    grade.add_argument("images", nargs="+", metavar="IMAGE")
    grade.add_argument("--namespace", "-n", default="default", help="namespace policies see")
    grade.add_argument("--kind", default="Pod", help="the object kind policies see (default Pod)")
    grade.add_argument(
        "--sources",
        type=lambda text: tuple(s for s in text.split(",") if s),
        default=(),
        help="grade sources in order, e.g. pyxis,static (default: the governing policy's)",
    )


def _grade(args: argparse.Namespace, config: Config) -> int:
    from webhook.services import build_grader

    policy_set = load_directory(policy_directory(args))
    grader = build_grader(config)
    now = datetime.now(UTC)
    results = [
        grader.grade(
            image,
            policy_set,
            namespace=args.namespace,
            kind=args.kind,
            sources=args.sources,
            now=now,
        )
        for image in args.images
    ]
    if args.output == "json":
        print(json.dumps([r.as_json() for r in results], indent=2))
    else:
        print("\n".join(line for r in results for line in r.lines()))
    return EXIT_OK if all(r.passes for r in results) else EXIT_DENIED
