"""``trustgate audit``: a dry run over manifests or a live cluster.

Separate from ``webhook.cli.audit``, which judges manifests and is shared with
the report formats: this module holds only the command, its flags, and the
cluster side (Kubernetes is imported only for ``--cluster``).
"""

from __future__ import annotations

import argparse
import os
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from webhook.cli import report
from webhook.cli.audit import Manifest, audit, read_manifests
from webhook.cli.common import engine_for, print_rows
from webhook.cli.policyreport import GROUPS, MANAGED_BY, reports
from webhook.cli.usage import about, output_option
from webhook.config import Config
from webhook.core.errors import TrustgateError

if TYPE_CHECKING:
    from webhook.kube.client import KubeClient


def add_audit(
    commands: argparse._SubParsersAction[argparse.ArgumentParser],
    common: argparse.ArgumentParser,
) -> None:
    """Add ``audit``, with its live-cluster and policy-report flags."""
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
    audit_cmd.set_defaults(handler=_audit)
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


def _audit(args: argparse.Namespace, config: Config) -> int:
    if args.cluster == bool(args.paths):
        raise TrustgateError("give manifest paths or --cluster, not both or neither")
    if args.write_reports and (not args.cluster or args.output != "policyreport"):
        raise TrustgateError("--write-reports needs --cluster and --output policyreport")
    engine = engine_for(args, config)
    if not args.cluster:
        rows = audit(engine, read_manifests(args.paths), namespace=args.namespace or "default")
        return print_rows(rows, args.output, args.report_group)
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
    return print_rows(rows, args.output, args.report_group)


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
