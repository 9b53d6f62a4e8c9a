"""``trustgate audit``: a dry run over manifests or a live cluster.

Separate from ``webhook.cli.audit``, which judges manifests and is shared with
the report formats: this module holds only the command, its flags, and the
cluster side (Kubernetes is imported only for ``--cluster``).
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Iterable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from webhook.cli import report
from webhook.cli.audit import Manifest, Row, assumes_namespace, audit, read_manifests, request_for
from webhook.cli.common import EXIT_USAGE, engine_for, print_rows
from webhook.cli.policyreport import GROUPS, MANAGED_BY, reports
from webhook.cli.render import find_renderers, refusal
from webhook.cli.tree import Base, Plan, plan
from webhook.cli.usage import about, output_option
from webhook.config import Config
from webhook.core.counts import counted
from webhook.core.errors import ManifestError, TrustgateError

if TYPE_CHECKING:
    from webhook.engine import Engine
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
            "dry-run: judge manifests, kustomizations and charts (files, directories, -) "
            "or a live cluster (--cluster)",
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
        help="manifests: namespace of objects that name none, and of rendered charts "
        "(default: default, with a warning); --cluster: audit only this namespace",
    )
    _add_tree_flags(audit_cmd)
    _add_cluster_flags(audit_cmd)
    _add_report_flags(audit_cmd)


def _add_tree_flags(audit_cmd: argparse.ArgumentParser) -> None:
    tree = audit_cmd.add_argument_group(
        "kustomizations and charts",
        "A directory with a kustomization.yaml is judged as `kubectl kustomize` renders it,\n"
        "one with a Chart.yaml as `helm template` renders it.",
    )
    tree.add_argument(
        "--values",
        "-f",
        type=Path,
        action="append",
        default=[],
        metavar="FILE",
        help="values file for the chart among the paths, as helm template -f (repeatable; "
        "later files win)",
    )
    tree.add_argument(
        "--include-bases",
        action="store_true",
        help="also judge, on its own, each kustomization that another one below the same "
        "PATH builds on (by default a base is judged only as its overlays render it)",
    )


def _add_cluster_flags(audit_cmd: argparse.ArgumentParser) -> None:
    cluster = audit_cmd.add_argument_group("live cluster")
    cluster.add_argument(
        "--cluster", action="store_true", help="list workloads through the Kubernetes API"
    )
    cluster.add_argument(
        "--kubeconfig",
        type=Path,
        help="kubeconfig file (default: kubernetes.kubeconfig of the configuration, "
        "$KUBECONFIG, then in-cluster, then ~/.kube/config)",
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
    if args.cluster and (args.values or args.include_bases):
        raise TrustgateError("--values and --include-bases read manifest paths, not --cluster")
    engine = engine_for(args, config)
    if not args.cluster:
        return _audit_manifests(engine, args)
    from webhook.kube.client import KubeClient
    from webhook.kube.credentials import load_credentials
    from webhook.kube.workloads import cluster_workloads

    credentials = load_credentials(
        args.kubeconfig or config.kubernetes.kubeconfig,
        args.context or config.kubernetes.context,
        os.environ,
    )
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


def _audit_manifests(engine: Engine, args: argparse.Namespace) -> int:
    """Judge the manifests of ``args.paths``, kustomizations and charts rendered first.

    Nothing is judged when a kustomization or chart cannot be rendered here; an
    audit that finds no image to judge exits 2, since an empty result is no pass.
    """
    namespace = args.namespace or "default"
    sources = plan(args.paths, include_bases=args.include_bases)
    _check_values(sources, args.values)
    renderers = find_renderers(os.environ)
    refused = refusal(sources.sources, renderers, args.values, namespace)
    if refused:
        raise ManifestError(refused)
    for base in sources.bases:
        _say(_left_out(base))
    unnamed = _Unnamespaced()
    manifests = read_manifests(sources.sources, renderers, values=args.values, namespace=namespace)
    rows = audit(engine, unnamed.watch(manifests), namespace=namespace)
    code = print_rows(rows, args.output, args.report_group)
    if not args.namespace:
        _warn_assumed(unnamed.rows(rows), [s.name for s in sources.sources if s.kind == "chart"])
    if not rows:
        _say(
            f"no workload images found in {' '.join(args.paths)}: nothing was judged, and that "
            "is no pass. Give the files or directories that hold the workloads (a directory "
            "with a kustomization.yaml or a Chart.yaml is rendered first), or render them "
            "yourself and pipe them in: ... | trustgate audit -"
        )
        return EXIT_USAGE
    return code


def _check_values(sources: Plan, values: list[Path]) -> None:
    """Refuse ``--values`` that no chart, or more than one chart, would read."""
    if not values:
        return
    charts = [s.name for s in sources.sources if s.kind == "chart"]
    if not charts:
        raise TrustgateError(
            "--values is for a Helm chart, and the paths hold none (a directory with a Chart.yaml)"
        )
    if len(charts) > 1:
        raise TrustgateError(
            f"--values is for one chart, and the paths hold {len(charts)} ({', '.join(charts)}): "
            "audit each chart with its own values"
        )
    for file in values:
        if not file.is_file():
            raise TrustgateError(f"--values {file}: no such file")


def _left_out(base: Base) -> str:
    if not base.used_by:
        return f"{base.path}: a kustomize Component, judged only through what uses it"
    users = ", ".join(str(u) for u in base.used_by)
    return (
        f"{base.path}: not judged on its own, but as {users} render it (a base; "
        "--include-bases judges it on its own too)"
    )


class _Unnamespaced:
    """Remembers the objects that name no namespace as they pass into the audit."""

    def __init__(self) -> None:
        self._keys: set[tuple[str, str, str]] = set()

    def watch(self, manifests: Iterable[Manifest]) -> Iterator[Manifest]:
        for manifest in manifests:
            if assumes_namespace(manifest):
                request = request_for(manifest.object, namespace="", uid="")
                self._keys.add((manifest.source, request.kind, request.name))
            yield manifest

    def rows(self, rows: Iterable[Row]) -> list[str]:
        """The workloads (``Kind/name``) of ``rows`` judged in the assumed namespace."""
        found = {
            r.resource if r.name else f"{r.kind} (no name)": None
            for r in rows
            if (r.source, r.kind, r.name) in self._keys
        }
        return list(found)


def _warn_assumed(workloads: list[str], charts: list[str]) -> None:
    subjects = []
    if workloads:
        shown = ", ".join(workloads[:3]) + (", ..." if len(workloads) > 3 else "")
        noun = "workload that names" if len(workloads) == 1 else "workloads that name"
        subjects.append(f"{len(workloads)} {noun} no namespace ({shown})")
    if charts:
        subjects.append(f"the release of {', '.join(charts)}")
    if subjects:
        _say(
            f'warning: judged {" and ".join(subjects)} in namespace "default", which the '
            "audit assumed: give --namespace NS to judge them in the namespace they will run in"
        )


def _say(line: str) -> None:
    print(f"trustgate: {line}", file=sys.stderr)


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
        f"trustgate: wrote {counted(written, names.kind + ' object')} ({names.api_version}), "
        f"deleted {deleted} of workloads that are gone",
        file=sys.stderr,
    )
