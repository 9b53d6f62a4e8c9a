"""The ``trustgate`` command: parse arguments, call the library, print.

Exit codes: 0 admitted / clean, 1 denied / failing, 2 bad usage or input
(a policy directory that does not load, an unreadable file).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Sequence
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from webhook.admission.mutation import mutation_review
from webhook.admission.review import decide
from webhook.admission.review import review as review_body
from webhook.cli import report
from webhook.cli.audit import (
    Manifest,
    audit,
    pod_for_images,
    read_manifests,
    request_for,
    rows_for,
)
from webhook.cli.policyreport import GROUPS, MANAGED_BY, Group, reports
from webhook.cli.policytest import Case, SuppliedAttestations, junit, load_cases, run_case
from webhook.cli.usage import about, installed_version, output_option
from webhook.config import Config, load_config
from webhook.core import certs
from webhook.core.errors import TrustgateError
from webhook.core.observability import configure_logging, get_logger
from webhook.engine import Engine, display
from webhook.policy.exceptions import WARN_DAYS, breadth_warnings, expiry_warnings
from webhook.policy.loader import load_directory, load_file
from webhook.policy.model import PolicyException
from webhook.policy.schema import policy_schema
from webhook.services import build_engine, build_evaluator
from webhook.serving.cpus import MAX_AUTO_WORKERS, WorkerCount, auto_workers

if TYPE_CHECKING:
    from webhook.kube.client import KubeClient

EXIT_OK, EXIT_DENIED, EXIT_USAGE = 0, 1, 2

_log = get_logger("cli")


def _whole(text: str, minimum: int) -> int | None:
    """``text`` as a whole number of at least ``minimum``, else None."""
    try:
        value = int(text)
    except ValueError:
        return None
    return value if value >= minimum else None


def _workers(text: str) -> int | str:
    """``--workers``: ``auto`` or a whole number of at least 1."""
    value = "auto" if text == "auto" else _whole(text, 1)
    if value is None:
        raise argparse.ArgumentTypeError(
            f"must be auto or a whole number of at least 1, got {text!r}"
        )
    return value


def _millicores(text: str) -> int:
    """``--cpu-request``: millicores, as the Downward API gives them with ``divisor: 1m``."""
    value = _whole(text, 0)
    if value is None:
        raise argparse.ArgumentTypeError(f"must be a whole number of millicores, got {text!r}")
    return value


def _common(env: os._Environ[str] | dict[str, str]) -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "--policies",
        type=Path,
        default=Path(env.get("TRUSTGATE_POLICIES", "policies")),
        help="policy directory (default: $TRUSTGATE_POLICIES or ./policies)",
    )
    common.add_argument(
        "--config",
        type=Path,
        default=Path(env["TRUSTGATE_CONFIG"]) if env.get("TRUSTGATE_CONFIG") else None,
        help="global configuration file, trustgate.yaml (default: $TRUSTGATE_CONFIG)",
    )
    return common


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

    serve = commands.add_parser(
        "serve",
        parents=[common],
        **about(
            "run the admission webhook (gunicorn over TLS)",
            "trustgate serve --policies policies --cert certs/tls.crt --key certs/tls.key",
            "stopped cleanly (SIGTERM)",
        ),
    )
    serve.add_argument("--cert", type=Path, help="TLS certificate (PEM)")
    serve.add_argument("--key", type=Path, help="TLS private key (PEM)")
    serve.add_argument("--host", default="0.0.0.0", help="address to listen on")
    serve.add_argument("--port", type=int, default=8443)
    serve.add_argument(
        "--workers",
        type=_workers,
        default="auto",
        metavar="N|auto",
        help="worker processes; auto (the default) starts one per CPU this process may use "
        "(the cgroup CPU limit, else --cpu-request, else the CPU affinity), 1 to "
        f"{MAX_AUTO_WORKERS}",
    )
    serve.add_argument(
        "--cpu-request",
        type=_millicores,
        default=env_map.get("TRUSTGATE_CPU_REQUEST_MILLICORES") or None,
        metavar="MILLICORES",
        help="the pod's CPU request, which --workers auto counts when there is no CPU limit "
        "(default: $TRUSTGATE_CPU_REQUEST_MILLICORES, which the chart sets)",
    )
    serve.add_argument("--threads", type=int, default=16, help="threads per worker")
    serve.add_argument(
        "--client-timeout",
        type=float,
        default=10.0,
        metavar="SECONDS",
        help="time a client has to send a complete request (TLS handshake, head and body) "
        "from connecting, or from the first byte of its next request on a kept-alive "
        "connection; also bounds each write of a response (default 10)",
    )
    serve.add_argument(
        "--max-connections",
        type=int,
        default=4096,
        metavar="N",
        help="open connections per worker; at this many, the oldest that has not sent a "
        "complete request is closed for a new one (default 4096)",
    )
    serve.add_argument(
        "--metrics-port",
        type=int,
        default=None,
        metavar="PORT",
        help="serve GET /metrics on this port alone (same address and TLS), and answer 404 "
        "for /metrics on --port (default: /metrics on --port)",
    )
    serve.add_argument(
        "--insecure-http", action="store_true", help="serve plain HTTP (local testing only)"
    )

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
    review.add_argument("file", help="AdmissionReview JSON file, or - for standard input")
    review.add_argument(
        "--mutate",
        action="store_true",
        help="answer as POST /mutate does: the patch that pins verified digests "
        "(printed decoded on standard error)",
    )

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
    check.add_argument("--kind", default="Pod", help="the object kind policies see (default Pod)")

    audit_cmd = commands.add_parser(
        "audit",
        parents=[common],
        **about(
            "dry-run: judge manifests (files, directories, -) or a live cluster (--cluster)",
            "trustgate audit examples/ --output junit > trustgate.xml",
            "nothing would be denied",
            "something would be denied",
        ),
    )
    output_option(audit_cmd, report.FORMATS)
    audit_cmd.add_argument("paths", nargs="*", metavar="PATH")
    audit_cmd.add_argument(
        "--namespace",
        "-n",
        help="manifests: namespace of objects that name none (default: default); "
        "--cluster: audit only this namespace",
    )
    _add_cluster_flags(audit_cmd)
    _add_report_flags(audit_cmd)

    policy = commands.add_parser(
        "policy",
        **about(
            "lint, test or describe policies",
            "trustgate policy lint policies/",
            "the command succeeded",
            "see the command's own --help",
        ),
    )
    policy_commands = policy.add_subparsers(dest="policy_command", required=True)
    lint = policy_commands.add_parser(
        "lint",
        parents=[common],
        **about(
            "validate the policies, exceptions and test cases of a directory, or of one file",
            "trustgate policy lint policies/production.yaml",
            "valid",
        ),
    )
    lint.add_argument(
        "directory", nargs="?", type=Path, metavar="PATH", help="directory or file (--policies)"
    )
    lint.add_argument(
        "--warn-days",
        type=_days,
        default=WARN_DAYS,
        metavar="N",
        help=f"warn about exceptions that expire within N days (default {WARN_DAYS})",
    )
    output_option(lint, ("table", "json"))
    test = policy_commands.add_parser(
        "test",
        parents=[common],
        **about(
            "run ImagePolicyTest cases: those of a directory against its policies, or those "
            "of one file against the policies of the directory holding it",
            "trustgate policy test policies/ --output junit > policy-tests.xml",
            "every case passed",
            "a case failed, or there are none",
        ),
    )
    test.add_argument(
        "directory", nargs="?", type=Path, metavar="PATH", help="directory or file (--policies)"
    )
    output_option(test, ("table", "json", "junit"))
    policy_commands.add_parser(
        "schema",
        **about(
            "print the ImagePolicy JSON Schema (draft 2020-12), for editors",
            "trustgate policy schema > docs/policy.schema.json",
            "printed",
        ),
    )

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

    certs_cmd = commands.add_parser(
        "certs",
        **about(
            "certificates for the webhook",
            "trustgate certs generate --out certs --san localhost --san 127.0.0.1",
            "written",
        ),
    )
    certs_commands = certs_cmd.add_subparsers(dest="certs_command", required=True)
    generate = certs_commands.add_parser(
        "generate",
        **about(
            "write a new CA (ca.crt) and a serving certificate (tls.crt, tls.key)",
            "trustgate certs generate --out certs --service trustgate --namespace trustgate",
            "written",
        ),
    )
    output_option(generate, ("table", "json"))
    generate.add_argument("--out", type=Path, default=Path("certs"))
    generate.add_argument("--service", default="trustgate")
    generate.add_argument("--namespace", default="trustgate")
    generate.add_argument(
        "--san", action="append", default=[], help="extra DNS name or IP address (repeatable)"
    )
    generate.add_argument("--days", type=int, default=365)
    generate.add_argument("--force", action="store_true", help="overwrite existing files")
    return parser


def _days(text: str) -> int:
    days = _whole(text, 0)
    if days is None:
        raise argparse.ArgumentTypeError(
            f"must be a whole number of days, 0 or more (got {text!r})"
        )
    return days


def _add_cluster_flags(audit_cmd: argparse.ArgumentParser) -> None:
    cluster = audit_cmd.add_argument_group("live cluster")
    cluster.add_argument(
        "--cluster", action="store_true", help="list workloads through the Kubernetes API"
    )
    cluster.add_argument(
        "--kubeconfig",
        type=Path,
        help="kubeconfig file (default: $KUBECONFIG, then in-cluster, then ~/.kube/config)",
    )
    cluster.add_argument("--context", help="kubeconfig context (default: current-context)")
    cluster.add_argument(
        "--exclude-namespace",
        action="append",
        default=[],
        metavar="NS",
        help="skip a namespace, as the webhook's namespaceSelector does (repeatable)",
    )


def _add_report_flags(audit_cmd: argparse.ArgumentParser) -> None:
    reports = audit_cmd.add_argument_group("policy reports (--output policyreport)")
    reports.add_argument(
        "--report-group",
        choices=tuple(GROUPS),
        default="openreports",
        help="API group of the reports: openreports (openreports.io/v1alpha1 Report, "
        "the default) or wgpolicyk8s (wgpolicyk8s.io/v1alpha2 PolicyReport)",
    )
    reports.add_argument(
        "--write-reports",
        action="store_true",
        help="with --cluster: also write the reports to the cluster (server-side apply) and "
        "delete those of workloads that are gone; needs list, patch and delete on them",
    )


def _engine(args: argparse.Namespace, config: Config, directory: Path | None = None) -> Engine:
    policy_set = load_directory(directory or args.policies)
    return build_engine(lambda: policy_set, config)


def _print_rows(rows: list[Any], fmt: str, group: Group = "openreports") -> int:
    """Print ``rows``; exit 2 when a document could not be read, 1 when one is denied."""
    sys.stdout.write(report.render(rows, fmt, group=group))
    if any(r.decision == "error" for r in rows):
        return EXIT_USAGE
    return EXIT_DENIED if any(r.decision == "denied" for r in rows) else EXIT_OK


def _serve(args: argparse.Namespace, config: Config) -> int:
    from flask import Flask

    from webhook.serving.app import Settings, create_app
    from webhook.serving.server import ServeOptions, serve

    if not args.insecure_http and (args.cert is None or args.key is None):
        raise TrustgateError("--cert and --key are required (or --insecure-http for local tests)")
    load_directory(args.policies)  # fail fast, before any worker starts
    settings = Settings(policies=args.policies, config=config)
    options = ServeOptions(
        host=args.host,
        port=args.port,
        certfile=None if args.insecure_http else args.cert,
        keyfile=None if args.insecure_http else args.key,
        workers=_worker_count(args),
        threads=args.threads,
        max_body_bytes=config.max_request_bytes,
        client_timeout=args.client_timeout,
        max_connections=args.max_connections,
        metrics_port=args.metrics_port,
    )

    def worker_app() -> Flask:
        # Called in each worker after the fork: the log writer thread starts there.
        configure_logging(config.log_format, config.log_level, background=True)
        return create_app(settings)

    serve(worker_app, options)
    return EXIT_OK


def _worker_count(args: argparse.Namespace) -> int:
    """``--workers``, with ``auto`` resolved from the CPUs available; logged either way."""
    if args.workers == "auto":
        count = auto_workers(request_millicores=args.cpu_request)
    else:
        count = WorkerCount(args.workers, "set by --workers")
    _log.info("%s", count)
    return count.workers


def _review(args: argparse.Namespace, config: Config) -> int:
    engine = _engine(args, config)
    try:
        text = sys.stdin.read() if args.file == "-" else Path(args.file).read_text("utf-8")
        body = json.loads(text)
    except OSError as exc:
        raise TrustgateError(f"cannot read {args.file}: {exc.strerror}") from exc
    except ValueError as exc:
        raise TrustgateError(f"{args.file} is not valid JSON: {exc}") from exc
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
    engine = _engine(args, config)
    pod = pod_for_images(args.images, namespace=args.namespace, volumes=args.volume)
    request = request_for(pod, namespace=args.namespace, uid="check")
    if args.kind != "Pod":
        request = replace(request, kind=args.kind)
    return _print_rows(rows_for("command line", request, decide(engine, request)), args.output)


def _audit(args: argparse.Namespace, config: Config) -> int:
    if args.cluster == bool(args.paths):
        raise TrustgateError("give manifest paths or --cluster, not both or neither")
    if args.write_reports and (not args.cluster or args.output != "policyreport"):
        raise TrustgateError("--write-reports needs --cluster and --output policyreport")
    engine = _engine(args, config)
    if not args.cluster:
        rows = audit(engine, read_manifests(args.paths), namespace=args.namespace or "default")
        return _print_rows(rows, args.output, args.report_group)
    from webhook.kube.client import KubeClient
    from webhook.kube.credentials import load_credentials
    from webhook.kube.workloads import cluster_workloads

    credentials = load_credentials(args.kubeconfig, args.context, os.environ)
    print(f"trustgate: auditing {credentials.server} ({credentials.source})", file=sys.stderr)
    with KubeClient(credentials) as client:
        listed = cluster_workloads(
            client,
            namespace=args.namespace,
            exclude_namespaces=frozenset(args.exclude_namespace),
            progress=lambda line: print(f"trustgate: {line}", file=sys.stderr, flush=True),
        )
        manifests = (Manifest("cluster", w.number, w.object) for w in listed)
        rows = audit(engine, manifests, namespace=args.namespace or "default")
        if args.write_reports:
            _write_reports(client, rows, args)
    return _print_rows(rows, args.output, args.report_group)


def _write_reports(client: KubeClient, rows: list[Any], args: argparse.Namespace) -> None:
    from webhook.kube.client import Resource
    from webhook.kube.reports import write_reports

    names = GROUPS[args.report_group]
    objects = reports(rows, group=args.report_group, now=datetime.now(UTC))
    written, deleted = write_reports(
        client,
        Resource(names.kind, names.api_version, names.plural),
        [o for o in objects if o["metadata"].get("namespace")],
        labels=MANAGED_BY,
        namespace=args.namespace,
        exclude_namespaces=frozenset(args.exclude_namespace),
    )
    print(
        f"trustgate: wrote {written} {names.kind} objects ({names.api_version}), "
        f"deleted {deleted} of workloads that are gone",
        file=sys.stderr,
    )


def _lint(args: argparse.Namespace, config: Config) -> int:
    directory = args.directory or args.policies
    cases = load_cases(directory)
    exceptions: tuple[PolicyException, ...] = ()
    if directory.is_file():
        policies = load_file(directory)
    else:
        policy_set = load_directory(directory)
        policies, exceptions = list(policy_set.policies), policy_set.exceptions
    if not policies and not cases:
        raise TrustgateError(f"{directory}: no ImagePolicy or ImagePolicyTest documents")
    warnings = expiry_warnings(exceptions, datetime.now(UTC), args.warn_days)
    warnings += breadth_warnings(exceptions)
    if args.output == "json":
        print(
            json.dumps(
                {
                    "valid": True,
                    "policies": [p.name for p in policies],
                    "exceptions": [e.name for e in exceptions],
                    "testCases": len(cases),
                    "warnings": warnings,
                }
            )
        )
    else:
        counted = f"{len(policies)} policies"
        if exceptions:
            counted += f", {len(exceptions)} exceptions"
        print(f"{directory}: {counted} and {len(cases)} test cases are valid")
        for warning in warnings:
            print(f"warning: {warning}")
    return EXIT_OK


def _test(args: argparse.Namespace, config: Config) -> int:
    directory = args.directory or args.policies
    # One file's cases run against the policies deployed beside it: its directory's.
    policy_set = load_directory(directory.parent if directory.is_file() else directory)
    engine = build_engine(lambda: policy_set, config)
    evaluator = build_evaluator(config)

    def engine_for(case: Case) -> Engine:
        if not case.attestations:
            return engine
        supplied = SuppliedAttestations(case.attestations, evaluator)
        return build_engine(lambda: policy_set, config, replace={"attestations": supplied})

    try:
        results = [run_case(engine_for(case), case) for case in load_cases(directory)]
    finally:
        evaluator.close()
    failed = [r for r in results if not r.passed]
    if args.output == "junit":
        sys.stdout.write(junit(results))
    elif args.output == "json":
        print(
            json.dumps(
                [
                    {
                        "suite": r.case.suite,
                        "case": r.case.name,
                        "expect": r.case.expect,
                        "got": r.got,
                        "waived": list(r.waived),
                        "passed": r.passed,
                        "messages": list(r.messages),
                    }
                    for r in results
                ],
                indent=2,
            )
        )
    else:
        for r in results:
            status = "PASS" if r.passed else "FAIL"
            line = f"{status}  {r.case.suite} / {r.case.name}"
            if not r.passed:
                line += f": expected {r.case.expected}, got {r.outcome}"
                line += "".join(f"\n        {m}" for m in r.messages)
            print(line)
        print(f"{len(results) - len(failed)} passed, {len(failed)} failed")
    if not results:
        print(f"no ImagePolicyTest cases found in {directory}", file=sys.stderr)
        return EXIT_DENIED
    return EXIT_DENIED if failed else EXIT_OK


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


def _grade(args: argparse.Namespace, config: Config) -> int:
    from webhook.services import build_grader

    policy_set = load_directory(args.policies)
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


def _schema(args: argparse.Namespace, config: Config) -> int:
    print(json.dumps(policy_schema(), indent=2))
    return EXIT_OK


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit code."""
    args = build_parser().parse_args(argv)
    handlers = {
        "serve": _serve,
        "review": _review,
        "check": _check,
        "audit": _audit,
        "lint": _lint,
        "test": _test,
        "schema": _schema,
        "generate": _certs,
        "grade": _grade,
    }
    name = getattr(args, "policy_command", None) or getattr(args, "certs_command", None)
    handler = handlers[name or args.command]
    try:
        config = load_config(getattr(args, "config", None))
        # Commands other than serve keep the decision log quiet unless something is wrong.
        level = config.log_level if args.command == "serve" else "warning"
        configure_logging(config.log_format, level)
        return handler(args, config)
    except TrustgateError as exc:
        print(f"trustgate: {exc}", file=sys.stderr)
        return EXIT_USAGE


if __name__ == "__main__":
    sys.exit(main())
