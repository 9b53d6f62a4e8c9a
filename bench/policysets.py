"""What verifying a signed policy set costs the policy store, against the same set unsigned.

For a realistic set (20 policies, 10 of them naming one of 2 key files, 5
exceptions, a tests file: 28 files) and a large one (450 policies, 47
exceptions, 2 key files, a tests file: 500 files), the same policies are
staged four ways, signing done once before anything is timed:

- unsigned: the baseline;
- key: ``DIR/.trustgate/signature.json`` signed with an ECDSA P-256 key;
- keyless: the same file holding a Sigstore bundle, signed through the
  in-process Fulcio and Rekor of ``tests/support/sigstore_services.py`` and
  verified offline against its trusted root;
- git: an SSH-signed commit (real ``git commit -S`` and ``ssh-keygen``)
  checked out the way git-sync v4 does (``tests/support/gitsigning.py``).

It measures, rounds interleaved (each round times every variant once, in
turn, so load from elsewhere on the machine falls on all of them):

- a full load: a new ``PolicyStore`` (stamp, verification, the private copy
  of the verified bytes, compilation), p50 and the ratio to unsigned;
- the idle reload check: ``store.check()`` with nothing changed, what every
  worker runs every ``interval`` (2 s) forever: microseconds per check (p50
  of per-round means) and the ratio to unsigned;
- memory: the tracemalloc peak of a load and what the store keeps after it
  (allocations by Python code; libgit2's and OpenSSL's own are not seen).

    python bench/policysets.py [--rounds 15] [--checks 200] [--out bench/results/policysets.json]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
import tracemalloc
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from cryptography.hazmat.primitives.asymmetric import ec  # noqa: E402

from tests.support.gitsigning import commit, public_line, source_repo, ssh_key, sync  # noqa: E402
from tests.support.kube import policy_yaml  # noqa: E402
from tests.support.policysigning import TESTS, private_pem, public_pem  # noqa: E402
from tests.support.sigstore_services import sigstore_services  # noqa: E402
from webhook.policy.model import Keyless  # noqa: E402
from webhook.policy.signing.allowedsigners import AllowedSigners  # noqa: E402
from webhook.policy.signing.envelope import (  # noqa: E402
    SetAuthority,
    TrustedKey,
    sign_directory,
    write_signature,
)
from webhook.policy.signing.gate import SetVerifier  # noqa: E402
from webhook.policy.signing.sshsig import load_ssh_public_key, ssh_key_blob  # noqa: E402
from webhook.policy.signing.verifier import FileVerifier  # noqa: E402
from webhook.policy.store import PolicyStore  # noqa: E402
from webhook.signatures.gitsign import git_verifier  # noqa: E402
from webhook.signatures.policyset import KeylessAuthority  # noqa: E402
from webhook.signatures.policysign import identity_token, load_instance, sign_keyless  # noqa: E402
from webhook.trust.keys import load_public_key  # noqa: E402
from webhook.trust.trustroot import load_trusted_root  # noqa: E402

VARIANTS = ("unsigned", "key", "keyless", "git")
SIZES = {"realistic": (20, 5), "large": (450, 47)}
EMAIL = "policy-bot@trustgate.test"
ISSUER = "https://oidc.trustgate.test"
NOW = datetime(2026, 12, 1, tzinfo=UTC)


def keyed(number: int) -> str:
    """``signatures:`` of every other policy: one of the two key files of the set."""
    if number % 2:
        return ""
    key = "keys/release.pub" if number % 4 == 0 else "keys/hotfix.pub"
    return f"  signatures:\n    authorities:\n      - name: release\n        key: {{file: {key}}}\n"


def exception(number: int, policies: int) -> str:
    return f"""\
apiVersion: trustgate.dev/v1alpha1
kind: ImagePolicyException
metadata: {{name: vendor-{number}}}
spec:
  namespaces: ["team-{number % policies}-*"]
  images: ["quay.io/vendor-{number}/**"]
  policies: [team-{number % policies}]
  reason: benchmark
  owner: team-billing
  expires: 2999-12-31
"""


def set_files(policies: int, exceptions: int) -> dict[str, str]:
    """The files of a set: policies, exceptions, two key files and a tests file."""
    files = {
        f"team-{n:03d}.yaml": policy_yaml(
            f"team-{n}",
            namespaces=f'["team-{n}-*"]',
            registries=f'["quay.io/team-{n}/**", "registry.redhat.io/**"]',
            extra=keyed(n),
        )
        for n in range(policies)
    }
    files |= {f"exception-{n:03d}.yaml": exception(n, policies) for n in range(exceptions)}
    for name in ("release", "hotfix"):
        files[f"keys/{name}.pub"] = public_pem(ec.generate_private_key(ec.SECP256R1())).decode()
    files["tests.yaml"] = TESTS.replace("prod-web", "team-0-web").replace("acme", "team-0")
    return files


def write(directory: Path, files: dict[str, str]) -> Path:
    for name, text in files.items():
        (directory / name).parent.mkdir(parents=True, exist_ok=True)
        (directory / name).write_text(text)
    return directory


@dataclass(frozen=True)
class _GitConfig:
    """What ``git_verifier`` reads of ``policies.signature``."""

    authorities: Sequence[SetAuthority]
    allowed_signers: Sequence[AllowedSigners] = field(default=())


@dataclass
class Staged:
    """One set staged each way: the directory each variant loads, and its verifier."""

    directories: dict[str, Path]
    verifiers: dict[str, SetVerifier | None]


def stage(root: Path, files: dict[str, str], signers: dict[str, Any]) -> Staged:
    """``files`` written unsigned, key-signed, keyless-signed and committed with an SSH key."""
    directories: dict[str, Path] = {}
    for variant in ("unsigned", "key", "keyless"):
        (root / variant).mkdir()
        directories[variant] = write(root / variant, files)
    sign_directory(directories["key"], signers["key_pem"], source="bench key", version=1, now=NOW)
    write_signature(directories["keyless"], signers["keyless"], version=1, now=NOW)
    repo = source_repo(root)
    commit(repo, files, key=signers["ssh_key"])
    directories["git"] = sync(repo, root)
    return Staged(directories, signers["verifiers"])


def signers(home: Path, services: Any) -> dict[str, Any]:
    """The keys and identities that sign, and the verifier of each variant."""
    key = ec.generate_private_key(ec.SECP256R1())
    trust_config = home / "trust-config.json"
    trust_config.write_text(json.dumps(services.trust_config()))
    instance = load_instance(trust_config=trust_config)

    def keyless(data: bytes) -> tuple[str, Any]:
        token = identity_token(services.oidc.token(EMAIL))
        return "bundle", sign_keyless(data, instance, token).bundle

    (home / "root.json").write_text(json.dumps(services.instance.trusted_root()))
    root = load_trusted_root("root.json", home)
    identity = Keyless(
        issuer=ISSUER, subject=EMAIL, trusted_root=root.name, root_digest=root.digest, root=root
    )
    ssh = ssh_key(home, "policy-team")
    _, blob = ssh_key_blob(public_line(ssh), source="bench")
    ssh_authority = TrustedKey("policy-team", load_ssh_public_key(blob, source="bench"))
    verifiers: dict[str, SetVerifier | None] = {
        "unsigned": None,
        "key": FileVerifier(
            [TrustedKey("release", load_public_key(public_pem(key), source="bench"))]
        ),
        "keyless": FileVerifier([KeylessAuthority("ci", identity)]),
        "git": git_verifier(_GitConfig([ssh_authority])),
    }
    return {
        "key_pem": private_pem(key),
        "keyless": keyless,
        "ssh_key": ssh,
        "verifiers": verifiers,
    }


def load(staged: Staged, variant: str) -> PolicyStore:
    store = PolicyStore(staged.directories[variant], verifier=staged.verifiers[variant])
    assert store.loaded, store.status.last_error
    if variant != "unsigned":
        assert store.signature is not None and store.signature.valid, store.signature
    return store


def interleaved(rounds: int, runs: dict[str, Callable[[], float]]) -> dict[str, list[float]]:
    """``rounds`` samples of each run, every round taking each in turn (rotated)."""
    names = list(runs)
    samples: dict[str, list[float]] = {name: [] for name in names}
    for index in range(rounds):
        shift = index % len(names)
        for name in names[shift:] + names[:shift]:
            samples[name].append(runs[name]())
    return samples


def timed_load(staged: Staged, variant: str) -> Callable[[], float]:
    def run() -> float:
        started = time.perf_counter()
        load(staged, variant)
        return time.perf_counter() - started

    return run


def timed_checks(store: PolicyStore, checks: int) -> Callable[[], float]:
    def run() -> float:
        started = time.perf_counter()
        for _ in range(checks):
            if store.check():
                raise AssertionError("an idle check installed a new set")
        return (time.perf_counter() - started) / checks

    return run


def memory(staged: Staged, variant: str) -> dict[str, float]:
    """The tracemalloc peak of one load, and what stays allocated while the store lives."""
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        store = load(staged, variant)
        kept, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    del store
    return {"peak_kib": round((peak - before) / 1024), "kept_kib": round((kept - before) / 1024)}


def measure(staged: Staged, rounds: int, checks: int) -> dict[str, Any]:
    for variant in VARIANTS:  # warm: imports, first-use caches
        load(staged, variant)
    loads = interleaved(rounds, {v: timed_load(staged, v) for v in VARIANTS})
    stores = {variant: load(staged, variant) for variant in VARIANTS}
    for store in stores.values():
        store.check()  # the first check may re-stamp files read before their stamp
    idle = interleaved(rounds, {v: timed_checks(stores[v], checks) for v in VARIANTS})
    base_load = statistics.median(loads["unsigned"])
    base_idle = statistics.median(idle["unsigned"])
    result: dict[str, Any] = {}
    for variant in VARIANTS:
        load_p50 = statistics.median(loads[variant])
        idle_p50 = statistics.median(idle[variant])
        result[variant] = {
            "load_p50_ms": round(load_p50 * 1000, 2),
            "load_ratio": round(load_p50 / base_load, 2),
            "idle_check_us": round(idle_p50 * 1e6, 1),
            "idle_ratio": round(idle_p50 / base_idle, 2),
            "watched": len(stores[variant]._watched),
            **memory(staged, variant),
        }
    for variant in VARIANTS:
        mem = result[variant]
        mem["peak_ratio"] = round(mem["peak_kib"] / max(result["unsigned"]["peak_kib"], 1), 2)
    return result


def show(size: str, files: int, result: dict[str, Any]) -> None:
    print(f"\n{size}: {files} files")
    print(
        f"{'variant':9s} {'load p50':>10s} {'ratio':>6s} {'idle check':>11s} {'ratio':>6s} "
        f"{'watched':>8s} {'peak KiB':>9s} {'ratio':>6s} {'kept KiB':>9s}"
    )
    for variant in VARIANTS:
        r = result[variant]
        print(
            f"{variant:9s} {r['load_p50_ms']:8.2f}ms {r['load_ratio']:6.2f} "
            f"{r['idle_check_us']:9.1f}us {r['idle_ratio']:6.2f} {r['watched']:8d} "
            f"{r['peak_kib']:9d} {r['peak_ratio']:6.2f} {r['kept_kib']:9d}"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument("--checks", type=int, default=200, help="idle checks per round")
    parser.add_argument("--sizes", nargs="+", default=list(SIZES), choices=list(SIZES))
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "policysets.json")
    args = parser.parse_args()
    summary: dict[str, Any] = {"rounds": args.rounds, "checks_per_round": args.checks}
    with tempfile.TemporaryDirectory() as tmp, sigstore_services() as services:
        home = Path(tmp, "signers")
        home.mkdir()
        keys = signers(home, services)
        staged = {}
        for size in args.sizes:
            root = Path(tmp, size)
            root.mkdir()
            files = set_files(*SIZES[size])
            staged[size] = (len(files), stage(root, files, keys))
        services.stop()  # verification is offline: nothing is signed from here on
        for size, (count, sets) in staged.items():
            summary[size] = {"files": count, **measure(sets, args.rounds, args.checks)}
            show(size, count, summary[size])
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(summary, indent=2) + "\n")
    print(f"\nwritten to {args.out}")


if __name__ == "__main__":
    main()
