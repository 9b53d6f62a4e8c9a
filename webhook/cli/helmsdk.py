"""``helm template`` without a helm binary: the helm-python-sdk, run as a child process.

Where no ``helm`` is on PATH but the helm-python-sdk package is installed (Helm's
Go SDK behind a C ABI, in a wheel), ``trustgate audit`` renders a chart by running
this module as ``python -m webhook.cli.helmsdk CHART --namespace NS --values FILE...``.
It is a process of its own, not a call, so that the audit's time and output
limits hold for it as for kubectl: a template that loops or floods is killed,
and a crash in the native library cannot take the audit down.

It prints what ``helm template CHART`` prints (release ``release-name``, hooks
included, ``NOTES.txt`` left out) and exits 1 with Helm's message on failure.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

#: Same as webhook.cli.render.RELEASE_NAME; not imported, to keep this child's imports light.
_RELEASE = "release-name"


def merge(base: dict[str, Any], override: dict[str, Any]) -> dict[str, Any]:
    """``override`` over ``base``, maps merged key by key, as Helm merges ``--values`` files."""
    merged = dict(base)
    for key, value in override.items():
        current = merged.get(key)
        if isinstance(value, dict) and isinstance(current, dict):
            merged[key] = merge(current, value)
        else:
            merged[key] = value
    return merged


def main(argv: Sequence[str] | None = None) -> int:
    """Render a chart to standard output; 1 with Helm's message on standard error on failure."""
    parser = argparse.ArgumentParser(prog="python -m webhook.cli.helmsdk")
    parser.add_argument("chart", type=Path)
    parser.add_argument("--namespace", default="default")
    parser.add_argument("--values", "-f", type=Path, action="append", default=[])
    args = parser.parse_args(argv)

    import helm_python as helm

    try:
        values: dict[str, Any] = {}
        for file in args.values:
            values = merge(values, helm.values_from_yaml(file.read_text(encoding="utf-8")))
        manifests = helm.Chart.load(args.chart).render(
            values, name=_RELEASE, namespace=args.namespace, is_install=True
        )
    except (helm.HelmError, OSError, UnicodeDecodeError) as exc:
        print(f"Error: {exc}", file=sys.stderr)
        return 1
    for path, text in sorted(manifests.items()):
        if path.endswith("NOTES.txt") or not text.strip():
            continue
        sys.stdout.write(f"---\n# Source: {path}\n{text.rstrip()}\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
