"""What each cloud identity's library costs to load: import time and resident memory.

trustgate loads boto3, google-auth or azure-identity only when a provider of
that kind is configured (webhook/credentials/ecr.py, gcp.py). This measures
what that costs a process: each case runs in a fresh interpreter, ``--runs``
times, and reports the medians of the time its imports take, of the whole
process's wall time (start to exit), and of how much its resident memory
(VmRSS) grows, against the baseline of a fresh interpreter that imports
nothing; the ratios ("x") are the whole process's time and memory over the
baseline's. A second table measures the same on top of trustgate's server
(``webhook.services`` and ``webhook.serving.app`` imported first, outside the
timing), what a ``trustgate serve`` worker pays, against trustgate with the
cloud libraries hidden (as if not installed). Its first rows show what merely
installing them costs: sigstore's TUF client imports securesystemslib's
signers, which import boto3 and azure-identity when present
(secure-systems-lab/securesystemslib#1198). Cases whose library is not
installed are skipped.

    python bench/credential_libraries.py [--runs 7] [--out FILE]
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path

#: (name, the module that must be installed, code to time)
CASES = [
    ("nothing", None, "pass"),
    ("boto3", "boto3", "import boto3"),
    (
        "boto3 + an ECR client",
        "boto3",
        "import boto3; boto3.session.Session().client('ecr', region_name='us-east-1')",
    ),
    (
        "google-auth (as the gcp source loads it)",
        "google.auth",
        "import google.auth, google.auth.compute_engine, google.auth.exceptions, "
        "google.auth.transport",
    ),
    ("azure-identity", "azure.identity", "import azure.identity"),
]

#: Runs in the fresh interpreter: time ``CODE``, read VmRSS before and after.
_PROBE = """
import json, sys, time

def rss():
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024

exec(sys.argv[2])
before = rss()
start = time.perf_counter()
exec(sys.argv[1])
seconds = time.perf_counter() - start
print(json.dumps({"seconds": seconds, "before": before, "after": rss()}))
"""


def _installed(module: str | None) -> bool:
    if module is None:
        return True
    try:
        return importlib.util.find_spec(module) is not None
    except ModuleNotFoundError:
        return False


#: What a trustgate server process has loaded before any provider is built.
TRUSTGATE = "import webhook.services, webhook.serving.app"
#: The same, as if no cloud library were installed (each import of them fails).
HIDDEN = (
    "import sys\n"
    "for name in ('boto3', 'botocore', 'azure.identity', 'azure.core', 'google.auth'):\n"
    "    sys.modules[name] = None\n" + TRUSTGATE
)


def _run(code: str, preload: str) -> dict[str, float]:
    root = str(Path(__file__).resolve().parents[1])
    started = time.perf_counter()
    out = subprocess.run(
        [sys.executable, "-c", _PROBE, code, preload],
        capture_output=True,
        text=True,
        check=True,
        timeout=120,
        env={"PYTHONPATH": root, "PATH": "/usr/bin:/bin", "AWS_EC2_METADATA_DISABLED": "true"},
    )
    result: dict[str, float] = json.loads(out.stdout)
    result["process"] = time.perf_counter() - started
    return result


def _row(name: str, code: str, preload: str, runs: int) -> dict[str, object]:
    samples = [_run(code, preload) for _ in range(runs)]
    return {
        "case": name,
        "seconds": statistics.median(s["seconds"] for s in samples),
        "process": statistics.median(s["process"] for s in samples),
        "rss_before": statistics.median(s["before"] for s in samples),
        "rss_growth": statistics.median(s["after"] - s["before"] for s in samples),
    }


def measure(runs: int, preload: str = "pass") -> list[dict[str, object]]:
    """Medians per case over ``runs`` fresh interpreters, each running ``preload`` first."""
    rows: list[dict[str, object]] = []
    for name, module, code in CASES:
        if not _installed(module):
            print(f"{name}: not installed, skipped")
            continue
        rows.append(_row(name, code, preload, runs))
    return rows


def report(rows: list[dict[str, object]], baseline: str) -> None:
    """One line per case: import ms, process ms and RSS growth, and their ratios to the baseline."""
    base = rows[0]
    base_process = float(base["process"])  # type: ignore[arg-type]
    base_rss = float(base["rss_before"]) + float(base["rss_growth"])  # type: ignore[arg-type]
    header = f"{'case':42} {'import ms':>9} {'process ms':>10} {'x':>5} {'RSS +MiB':>8} {'x':>5}"
    print(header)
    for row in rows:
        seconds = float(row["seconds"])  # type: ignore[arg-type]
        process = float(row["process"])  # type: ignore[arg-type]
        growth = float(row["rss_growth"])  # type: ignore[arg-type]
        total = float(row["rss_before"]) + growth  # type: ignore[arg-type]
        print(
            f"{row['case']:42} {seconds * 1000:9.1f} {process * 1000:10.1f} "
            f"{process / base_process:5.2f} {growth / 2**20:8.1f} {total / base_rss:5.2f}"
        )
    print(
        f"baseline: {baseline}, {base_process * 1000:.0f} ms from start to exit, "
        f"{base_rss / 2**20:.1f} MiB resident"
    )


def main() -> None:
    """Measure every installed library and print the table (and write it with --out)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=7)
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    bare = measure(args.runs)
    report(bare, "a fresh interpreter importing nothing")
    print()
    hidden = _row("trustgate, no cloud library installed", "pass", HIDDEN, args.runs)
    served = [hidden, *measure(args.runs, TRUSTGATE)]
    served[1]["case"] = "trustgate, the cloud libraries installed"
    report(served, "trustgate's server modules, no cloud library installed")
    if args.out is not None:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps({"bare": bare, "on_trustgate": served}, indent=2))


if __name__ == "__main__":
    main()
