"""``trustgate review`` and ``trustgate check``: judge one request without a server.

Together because both answer a single admission request on the spot: ``review``
from an AdmissionReview file, ``check`` from images named on the command line.
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import replace
from pathlib import Path

from webhook.admission.mutation import mutation_review
from webhook.admission.review import decide
from webhook.admission.review import review as review_body
from webhook.cli import report
from webhook.cli.audit import pod_for_images, request_for, rows_for
from webhook.cli.common import EXIT_DENIED, EXIT_OK, engine_for, print_rows
from webhook.cli.usage import about, output_option
from webhook.config import Config
from webhook.core.errors import TrustgateError
from webhook.core.reference import parse_reference
from webhook.engine import display


def add_review(
    commands: argparse._SubParsersAction[argparse.ArgumentParser],
    common: argparse.ArgumentParser,
) -> None:
    """Add ``review``: answer an AdmissionReview JSON file."""
    review = commands.add_parser(
        "review",
        parents=[common],
        **about(
            "answer an AdmissionReview JSON file without a server; prints the response JSON",
            "trustgate review docs/examples/admission-review.json",
            "admitted",
            "denied",
        ),
    )
    review.set_defaults(handler=_review)
    review.add_argument("file", help="AdmissionReview JSON file, or - for standard input")
    review.add_argument(
        "--mutate",
        action="store_true",
        help="answer as POST /mutate does: the patch that pins verified digests "
        "(printed decoded on standard error)",
    )


def add_check(
    commands: argparse._SubParsersAction[argparse.ArgumentParser],
    common: argparse.ArgumentParser,
) -> None:
    """Add ``check``: judge images as the containers of one Pod."""
    check = commands.add_parser(
        "check",
        parents=[common],
        **about(
            "judge images as the containers of one Pod would be, against the registries",
            "trustgate check --namespace prod-web quay.io/acme/api:1.2 nginx",
            "every image admitted",
            "an image denied",
        ),
    )
    check.set_defaults(handler=_check)
    output_option(check, report.FORMATS)
    check.add_argument("images", nargs="*", metavar="IMAGE")
    check.add_argument(
        "--volume",
        action="append",
        default=[],
        metavar="IMAGE",
        help="also judge IMAGE mounted as an image volume (repeatable)",
    )
    check.add_argument("--namespace", "-n", default="default")
    check.add_argument(
        "--service-account",
        metavar="NAME",
        help="the Pod's service account, whose pull secrets are used after --pull-secret's "
        "(with credentials.pullSecrets; default: default)",
    )
    check.add_argument(
        "--pull-secret",
        action="append",
        default=[],
        metavar="NAME",
        help="a pull secret of the Pod, in the namespace (repeatable, in order; "
        "with credentials.pullSecrets)",
    )
    check.add_argument("--kind", default="Pod", help="the object kind policies see (default Pod)")


#: What to run instead of ``review`` on manifests.
_AUDIT_HINT = "to judge Kubernetes manifests (YAML or JSON), run: trustgate audit {file}"


def _review(args: argparse.Namespace, config: Config) -> int:
    engine = engine_for(args, config)
    try:
        text = sys.stdin.read() if args.file == "-" else Path(args.file).read_text("utf-8")
        body = json.loads(text)
    except OSError as exc:
        raise TrustgateError(f"cannot read {args.file}: {exc.strerror}") from exc
    except ValueError as exc:
        raise TrustgateError(
            f"{args.file} is not valid JSON ({exc}): review answers one AdmissionReview in "
            f"JSON, as the API server sends it; {_AUDIT_HINT.format(file=args.file)}"
        ) from exc
    kind = body.get("kind") if isinstance(body, dict) else None
    if isinstance(kind, str) and kind != "AdmissionReview":
        raise TrustgateError(
            f"{args.file} holds a {kind}, not an AdmissionReview; "
            + _AUDIT_HINT.format(file=args.file)
        )
    recheck = config.recheck_unchanged_images
    if args.mutate:
        answer, mutation, _ = mutation_review(engine, body, recheck_unchanged_images=recheck)
        print(json.dumps(answer, indent=2))
        for pin in mutation.pins:
            print(f"pinned {display(pin.image)} -> {display(pin.pinned)}", file=sys.stderr)
        for image, reason in mutation.skipped:
            print(f"not pinned {image}: {reason}", file=sys.stderr)
        if mutation.note:
            print(f"not pinned: {mutation.note}", file=sys.stderr)
        if mutation.pins:
            print(f"patch: {json.dumps(mutation.patch, indent=2)}", file=sys.stderr)
        return EXIT_OK  # /mutate never denies; /validate decides
    answer, decision, _ = review_body(engine, body, recheck_unchanged_images=recheck)
    print(json.dumps(answer, indent=2))
    return EXIT_OK if decision.allowed else EXIT_DENIED


def _check(args: argparse.Namespace, config: Config) -> int:
    if not args.images and not args.volume:
        raise TrustgateError("give at least one IMAGE or --volume IMAGE")
    for image in (*args.images, *args.volume):
        # Raises ImageReferenceError: a typo on the command line is bad input (exit 2),
        # not a denial (exit 1).
        parse_reference(image)
    if (args.service_account or args.pull_secret) and not config.credentials.pull_secrets:
        print(
            "trustgate: --service-account and --pull-secret are unused: "
            "credentials.pullSecrets is not on in the configuration",
            file=sys.stderr,
        )
    engine = engine_for(args, config)
    pod = pod_for_images(
        args.images,
        namespace=args.namespace,
        volumes=args.volume,
        service_account=args.service_account,
        pull_secrets=args.pull_secret,
    )
    request = request_for(pod, namespace=args.namespace, uid="check")
    if args.kind != "Pod":
        request = replace(request, kind=args.kind)
    return print_rows(rows_for("command line", request, decide(engine, request)), args.output)
