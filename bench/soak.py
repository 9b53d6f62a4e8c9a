"""Soak `trustgate serve`: minutes of mixed reviews, with a registry that never answers in the mix.

Starts Debian's docker-registry with signed and unsigned images, a registry that accepts
connections and then drips its answer one byte at a time, and `trustgate serve` over TLS
(gunicorn, its defaults). Client threads post Pod reviews in a closed loop, in a fixed mix:

- allowlist-only: an image only the allowlist governs (no network), admitted;
- signed: an image with a valid cosign signature, admitted;
- unsigned: an image without one, denied;
- slow: an image on the dripping registry, denied (deadline, then the circuit breaker).

With ``--attackers`` (``make soak`` passes it), attacker threads run beside them for the whole
soak (bench/attackers.py): framing shapes dripped slowly (two Transfer-Encoding lines,
Transfer-Encoding with Content-Length, a head alone), a huge review (a Pod of 60,000 images)
and a Pod naming 2,000 distinct digests on the healthy registry, each sent again and again.
Their answers are counted apart, by status code; they are expected to be refused or denied.

Every minute it prints the requests, errors (a non-200 answer, a wrong decision, a client
timeout), answers slower than the review deadline, p50/p99 latency, and the workers' RSS (the
median of samples taken every 5 s: one sample rides on whatever is in flight); at the end the
growth of that median from the first minute to the last, and the server's CPU time per request
(master and workers). Goal: 0 errors, 0 answers over the deadline, worker RSS growth under
10%: with the attackers too.

    python bench/soak.py [--minutes 10] [--clients 8] [--attackers] [--out bench/results/soak.json]
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import requests

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import attackers  # noqa: E402  (bench/, the script's own directory)
from serving import free_port, usage, wait_ready  # noqa: E402
from stage import SIGNED_BY_RELEASE, push_app  # noqa: E402

from tests.support.cosign import generate_key, public_pem  # noqa: E402
from tests.support.kube import pod_spec, review, workload  # noqa: E402
from tests.support.registry import start_registry  # noqa: E402
from webhook.core import certs  # noqa: E402

DEADLINE_SECONDS = 4.0
#: kind -> share of the requests, and whether the review must admit.
MIX = {"allowlist": (4, True), "signed": (3, True), "unsigned": (2, False), "slow": (1, False)}


class DrippingRegistry:
    """Accepts connections, reads a request, then sends a status line one byte every half second.

    At most ``limit`` connections are served at once; the rest are closed at once. Each
    connection ends after ``lifetime`` seconds, so the benchmark cleans up after itself.
    """

    def __init__(self, limit: int = 256, lifetime: float = 120.0) -> None:
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.host = f"127.0.0.1:{self._listener.getsockname()[1]}"
        self._slots = threading.BoundedSemaphore(limit)
        self._lifetime = lifetime
        self._stopped = threading.Event()
        self.connections = 0
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while not self._stopped.is_set():
            try:
                conn, _ = self._listener.accept()
            except OSError:
                return
            if not self._slots.acquire(blocking=False):
                conn.close()
                continue
            self.connections += 1
            threading.Thread(target=self._drip, args=(conn,), daemon=True).start()

    def _drip(self, conn: socket.socket) -> None:
        end = time.monotonic() + self._lifetime
        try:
            conn.settimeout(5)
            conn.recv(65536)
            for byte in b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n" * 100:
                if self._stopped.is_set() or time.monotonic() > end:
                    break
                conn.sendall(bytes([byte]))
                time.sleep(0.5)
        except OSError:
            pass
        finally:
            conn.close()
            self._slots.release()

    def stop(self) -> None:
        self._stopped.set()
        self._listener.close()


@dataclass
class Minute:
    """What the clients saw in one minute."""

    latencies: list[float] = field(default_factory=list)
    errors: int = 0
    over_deadline: int = 0
    by_kind: dict[str, int] = field(default_factory=dict)
    errors_by_kind: dict[str, int] = field(default_factory=dict)
    samples: list[str] = field(default_factory=list)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--minutes", type=float, default=10.0)
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "soak.json")
    attack = parser.add_argument_group("attackers (bench/attackers.py)")
    attack.add_argument("--attackers", action="store_true", help="add the attacker mix")
    defaults = attackers.Options()
    attack.add_argument("--drippers", type=int, default=defaults.drippers,
                        help="framing connections at once")  # fmt: skip
    attack.add_argument("--drip-seconds", type=float, default=defaults.drip_seconds)
    attack.add_argument("--hold-seconds", type=float, default=defaults.hold_seconds,
                        help="a framing connection without an answer ends then")  # fmt: skip
    attack.add_argument("--huge-images", type=int, default=defaults.huge_images)
    attack.add_argument("--many-digests", type=int, default=defaults.many_digests)
    args = parser.parse_args()
    options = attackers.Options(args.drippers, args.drip_seconds, args.hold_seconds,
                                args.huge_images, args.many_digests)  # fmt: skip

    tmp = Path(tempfile.mkdtemp(prefix="trustgate-soak-"))
    registry = start_registry(tmp / "registry")
    dripping = DrippingRegistry()
    process: subprocess.Popen[bytes] | None = None
    attacking = threading.Event()  # set: the attackers stop
    tally: attackers.Tally | None = None
    attack_threads: list[threading.Thread] = []
    try:
        key = generate_key("ecdsa-p256")
        signed, unsigned = [], []
        for i in range(8):
            repository = f"soak/app{i}"
            signer = key if i < 5 else None
            push_app(registry, repository, content=f"soak {i}\n".encode(), signed_by=signer)
            (signed if i < 5 else unsigned).append(f"{registry.host}/{repository}:v1")

        policies = tmp / "policies"
        policies.mkdir()
        (policies / "release.pub").write_text(public_pem(key))
        for name, namespace, registries, extra in (
            ("plain", "plain-*", '"quay.io/acme/**"', ""),
            ("signed", "prod-*", f'"{registry.host}/**"', SIGNED_BY_RELEASE),
            ("slow", "slow-*", f'"{dripping.host}/**"', SIGNED_BY_RELEASE),
        ):
            (policies / f"{name}.yaml").write_text(
                "apiVersion: trustgate.dev/v1alpha1\nkind: ImagePolicy\n"
                f"metadata: {{name: {name}}}\nspec:\n  mode: enforce\n"
                f'  match: {{namespaces: ["{namespace}"]}}\n  registries: [{registries}]\n{extra}'
            )
        config = tmp / "trustgate.yaml"
        config.write_text(
            f"deadlineSeconds: {DEADLINE_SECONDS}\n"
            f"registries:\n  '{registry.host}': {{insecure: true}}\n"
            f"  '{dripping.host}': {{insecure: true}}\n"
        )
        paths = certs.generate(tmp / "certs", service="trustgate", namespace="soak",
                               extra_sans=["127.0.0.1"])  # fmt: skip
        port = free_port()
        log = tmp / "server.log"
        trustgate = Path(sys.executable).with_name("trustgate")
        env = {
            **os.environ,
            "PYTHONPATH": os.pathsep.join(filter(None, [os.environ.get("PYTHONPATH"), str(ROOT)])),
        }
        process = subprocess.Popen(
            [str(trustgate), "serve", "--policies", str(policies), "--config", str(config),
             "--cert", str(paths.cert), "--key", str(paths.key),
             "--host", "127.0.0.1", "--port", str(port)],
            stdout=log.open("wb"), stderr=subprocess.STDOUT, env=env,
        )  # fmt: skip
        url = f"https://127.0.0.1:{port}/validate"
        wait_ready(f"https://127.0.0.1:{port}", paths.ca, process, log)
        if args.attackers:
            # From the warm-up on, so the RSS at the start already includes what they cost.
            target = attackers.Target(port, paths.ca, registry.host)
            tally, attack_threads = attackers.start(target, options, attacking)

        def body(kind: str, n: int) -> bytes:
            if kind == "allowlist":
                image, namespace = "quay.io/acme/api:1.0", "plain-soak"
            elif kind == "signed":
                image, namespace = signed[n % len(signed)], "prod-soak"
            elif kind == "unsigned":
                image, namespace = unsigned[n % len(unsigned)], "prod-soak"
            else:
                image, namespace = f"{dripping.host}/soak/slow{n % 3}:v1", "slow-soak"
            pod = workload("Pod", pod_spec(image), namespace=namespace)
            return json.dumps(review(pod)).encode()

        schedule = [kind for kind, (share, _) in MIX.items() for _ in range(share)]
        minutes: list[Minute] = []
        lock = threading.Lock()
        stop_at = [0.0]

        def client(index: int) -> None:
            session = requests.Session()
            n = index
            while time.monotonic() < stop_at[0]:
                kind = schedule[n % len(schedule)]
                n += 1
                started = time.monotonic()
                problem = ""
                try:
                    answer = session.post(url, data=body(kind, n), timeout=DEADLINE_SECONDS * 3,
                                          verify=str(paths.ca),
                                          headers={"Content-Type": "application/json"})  # fmt: skip
                    if answer.status_code != 200:
                        problem = f"{kind}: HTTP {answer.status_code}"
                    elif answer.json()["response"]["allowed"] != MIX[kind][1]:
                        problem = f"{kind}: wrong decision {answer.json()['response']}"
                except (requests.RequestException, ValueError, KeyError) as exc:
                    problem = f"{kind}: {type(exc).__name__}: {exc}"
                elapsed = time.monotonic() - started
                slot = int((started - start) // 60)
                with lock:
                    while len(minutes) <= slot:
                        minutes.append(Minute())
                    minute = minutes[slot]
                    minute.latencies.append(elapsed)
                    minute.by_kind[kind] = minute.by_kind.get(kind, 0) + 1
                    if elapsed > DEADLINE_SECONDS:
                        minute.over_deadline += 1
                    if problem:
                        minute.errors += 1
                        minute.errors_by_kind[kind] = minute.errors_by_kind.get(kind, 0) + 1
                        if len(minute.samples) < 3:
                            minute.samples.append(problem[:300])

        # Warm-up: imports, TLS, caches, and the breaker meeting the slow registry.
        stop_at[0] = time.monotonic() + 15
        start = time.monotonic()
        warm = [threading.Thread(target=client, args=(i,)) for i in range(args.clients)]
        for thread in warm:
            thread.start()
        for thread in warm:
            thread.join()
        before = usage(process.pid)
        minutes.clear()

        start = time.monotonic()
        stop_at[0] = start + args.minutes * 60
        threads = [threading.Thread(target=client, args=(i,)) for i in range(args.clients)]
        for thread in threads:
            thread.start()
        printed = 0
        print("minute  requests  errors  over-deadline  p50 ms   p99 ms   RSS MiB  mix")
        # Worker RSS sampled every 5 s: one sample rides on whatever is in flight (a
        # 3 MB review parses into tens of MiB for a moment), so each minute's median is
        # what its growth is judged by, first minute against last.
        rss_by_minute: list[float] = []
        samples: list[float] = []

        def worker_rss() -> float:
            now = usage(process.pid).rss_bytes
            return sum(v for pid, v in now.items() if pid != process.pid) / 2**20

        next_sample = time.monotonic()
        while any(t.is_alive() for t in threads):
            time.sleep(1)
            if time.monotonic() >= next_sample:
                samples.append(worker_rss())
                next_sample += 5
            with lock:
                done = int((time.monotonic() - start) // 60)
                while printed < min(done, len(minutes)):
                    rss_by_minute.append(round(statistics.median(samples or [worker_rss()]), 1))
                    samples.clear()
                    _print_minute(printed, minutes[printed], rss_by_minute[-1])
                    printed += 1
        for thread in threads:
            thread.join()
        after = usage(process.pid)
        attacking.set()
        for thread in attack_threads:
            thread.join(timeout=max(options.drip_seconds, 5))
        with lock:
            while printed < len(minutes):
                rss_by_minute.append(round(statistics.median(samples or [worker_rss()]), 1))
                samples.clear()
                _print_minute(printed, minutes[printed], rss_by_minute[-1])
                printed += 1
    finally:
        attacking.set()
        if process is not None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()
        dripping.stop()
        registry.stop()

    total = sum(len(m.latencies) for m in minutes)
    failed: dict[str, int] = {}
    for minute in minutes:
        for kind, count in minute.errors_by_kind.items():
            failed[kind] = failed.get(kind, 0) + count
    errors = sum(m.errors for m in minutes)
    over = sum(m.over_deadline for m in minutes)
    workers = sorted(set(before.rss_bytes) & set(after.rss_bytes) - {process.pid})
    rss_before = sum(before.rss_bytes[w] for w in workers)
    rss_after = sum(after.rss_bytes[w] for w in workers)
    # Growth: the last minute's median RSS against the first's (both with the same load
    # in flight); the single samples at the start and end are printed beside it.
    if len(rss_by_minute) >= 2 and rss_by_minute[0]:
        growth = rss_by_minute[-1] / rss_by_minute[0] - 1
    else:
        growth = (rss_after / rss_before - 1) if rss_before else float("nan")
    cpu_ms = (after.cpu_seconds - before.cpu_seconds) / max(total, 1) * 1000
    summary = {
        "minutes": [_figures(m) for m in minutes],
        "requests": total,
        "errors": errors,
        "errors_by_kind": failed,
        "over_deadline": over,
        "deadline_seconds": DEADLINE_SECONDS,
        "worker_rss_mib": {
            "start": round(rss_before / 2**20, 1),
            "end": round(rss_after / 2**20, 1),
            "by_minute": rss_by_minute,
        },
        "worker_rss_growth": round(growth, 4),
        "server_cpu_ms_per_request": round(cpu_ms, 3),
        "slow_registry_connections": dripping.connections,
        "attackers": tally.figures() if tally is not None else None,
        "goal": {"errors": 0, "over_deadline": 0, "worker_rss_growth": "< 0.10"},
        "met": errors == 0 and over == 0 and growth < 0.10,
    }
    print(f"requests {total}, errors {errors}, "
          f"answers over the {DEADLINE_SECONDS:g} s deadline {over}")  # fmt: skip
    if failed:
        print("errors by kind: " + ", ".join(f"{k}={n}" for k, n in sorted(failed.items())))
    first, last = (rss_by_minute[0], rss_by_minute[-1]) if rss_by_minute else (0.0, 0.0)
    print(f"worker RSS, median of each minute: {first:.1f} MiB in the first, {last:.1f} MiB in "
          f"the last ({growth:+.1%}; goal < +10%); single samples {rss_before / 2**20:.1f} MiB "
          f"at the start, {rss_after / 2**20:.1f} MiB at the end")  # fmt: skip
    print(f"server CPU {cpu_ms:.2f} ms per request (master and workers), "
          f"{dripping.connections} connections reached the dripping registry")  # fmt: skip
    if tally is not None:
        tally.print()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(summary, indent=2) + "\n")
    print(f"wrote {args.out}")


def _figures(minute: Minute) -> dict[str, object]:
    ordered = sorted(minute.latencies)
    p99 = ordered[min(len(ordered) - 1, round(0.99 * (len(ordered) - 1)))] if ordered else 0.0
    return {
        "requests": len(ordered),
        "errors": minute.errors,
        "over_deadline": minute.over_deadline,
        "p50_ms": round(statistics.median(ordered) * 1000, 2) if ordered else 0.0,
        "p99_ms": round(p99 * 1000, 2),
        "by_kind": minute.by_kind,
        "errors_by_kind": minute.errors_by_kind,
        "error_samples": minute.samples,
    }


def _print_minute(index: int, minute: Minute, rss_mib: float) -> None:
    f = _figures(minute)
    mix = " ".join(f"{k}={v}" for k, v in sorted(minute.by_kind.items()))
    print(f"{index + 1:6d}  {f['requests']:8d}  {f['errors']:6d}  {f['over_deadline']:13d}  "
          f"{f['p50_ms']:7.2f}  {f['p99_ms']:7.2f}  {rss_mib:7.1f}  {mix}", flush=True)  # fmt: skip
    for sample in minute.samples:
        print(f"        error: {sample}")


if __name__ == "__main__":
    main()
