"""The soak's attacker mix: what one tenant with pod-create rights can send (issue 17).

Beside the legitimate reviews, attacker threads run for the whole soak:

- framing shapes, each on its own connection: two Transfer-Encoding lines
  (``identity`` then ``chunked``; ``gzip`` then ``chunked``), Transfer-Encoding
  with Content-Length, and a head alone. The head goes at once, then the chunked
  body drips one byte every ``drip_seconds`` (the head alone sends nothing more)
  until the server answers or closes, or ``hold_seconds`` pass; then a new connection.
- a huge review: one Pod of ``huge_images`` distinct images (about 3 MB for 60,000),
  in a namespace only the allowlist governs, sent again and again;
- many digests: one Pod naming ``many_digests`` distinct digests (which do not
  exist) on the soak's healthy registry, in the namespace of the signed policy.

Each attempt's outcome is tallied apart from the legitimate reviews: the HTTP status
(with the decision for a 200), or what the connection did. Expected once issue 17 is
fixed: 400 for the framing shapes, a denial for the two big reviews.
"""

from __future__ import annotations

import json
import secrets
import socket
import ssl
import statistics
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import requests

from tests.support.kube import review, workload

#: Framing shape -> the lines of its head after the request line (CRLF-joined below).
SHAPES: dict[str, tuple[str, ...]] = {
    "TE identity, then TE chunked": ("Transfer-Encoding: identity", "Transfer-Encoding: chunked"),
    "TE gzip, then TE chunked": ("Transfer-Encoding: gzip", "Transfer-Encoding: chunked"),
    "TE chunked with Content-Length": ("Transfer-Encoding: chunked", "Content-Length: 64"),
    "head alone (TE identity, then chunked)": (
        "Transfer-Encoding: identity",
        "Transfer-Encoding: chunked",
    ),
}


@dataclass(frozen=True, slots=True)
class Options:
    """How hard the attackers push."""

    drippers: int = 20  # framing connections at once, the shapes in turn
    drip_seconds: float = 3.0
    hold_seconds: float = 30.0
    huge_images: int = 60_000
    many_digests: int = 2_000
    pause_seconds: float = 1.0  # between two big reviews of one attacker


@dataclass
class Tally:
    """Outcomes of attack requests by kind, and a few messages of each."""

    outcomes: dict[str, Counter[str]] = field(default_factory=dict)
    samples: dict[str, list[str]] = field(default_factory=dict)
    sizes: dict[str, int] = field(default_factory=dict)  # kind -> body bytes
    seconds: dict[str, list[float]] = field(default_factory=dict)  # kind -> answer times
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def add(self, kind: str, outcome: str, sample: str = "", took: float | None = None) -> None:
        with self._lock:
            self.outcomes.setdefault(kind, Counter())[outcome] += 1
            if took is not None:
                self.seconds.setdefault(kind, []).append(took)
            found = self.samples.setdefault(kind, [])
            if sample and len(found) < 3 and sample[:300] not in found:
                found.append(sample[:300])

    def figures(self) -> dict[str, object]:
        with self._lock:
            return {
                kind: {
                    "attempts": sum(counts.values()),
                    "outcomes": dict(counts.most_common()),
                    "samples": self.samples.get(kind, []),
                    **({"body_bytes": self.sizes[kind]} if kind in self.sizes else {}),
                    **_times(self.seconds.get(kind, [])),
                }
                for kind, counts in sorted(self.outcomes.items())
            }

    def print(self) -> None:
        print("attack requests (counted apart; expected: 400 for framing, denials for the rest):")
        for kind, figures in self.figures().items():
            assert isinstance(figures, dict)
            outcomes = ", ".join(f"{o} x {n}" for o, n in figures["outcomes"].items())
            times = (f"; answered in p50 {figures['p50_s']:.1f} s, max {figures['max_s']:.1f} s"
                     if "p50_s" in figures else "")  # fmt: skip
            print(f"  {kind:40s} {figures['attempts']:5d}: {outcomes}{times}")
            for sample in figures["samples"]:
                print(f"      e.g. {sample}")


@dataclass(frozen=True, slots=True)
class Target:
    """The server under attack and the soak's namespaces and registry."""

    port: int
    ca: Path
    registry_host: str  # the healthy registry the signed policy governs
    allowlist_namespace: str = "plain-soak"
    signed_namespace: str = "prod-soak"


def start(
    target: Target, options: Options, stop: threading.Event
) -> tuple[Tally, list[threading.Thread]]:
    """Start every attacker thread; they run until ``stop`` is set."""
    tally = Tally()
    huge = _pod_body(
        [f"quay.io/acme/a{i}:1" for i in range(options.huge_images)], target.allowlist_namespace
    )
    tally.sizes[f"huge review ({options.huge_images} images)"] = len(huge)
    threads = [
        threading.Thread(
            target=_drip_loop,
            args=(target, shape, options, tally, stop),
            daemon=True,
        )
        for shape in (list(SHAPES)[i % len(SHAPES)] for i in range(options.drippers))
    ]
    threads.append(threading.Thread(
        target=_review_loop,
        args=(target, f"huge review ({options.huge_images} images)", lambda: huge, options,
              tally, stop),
        daemon=True,
    ))  # fmt: skip

    def many() -> bytes:
        refs = [f"{target.registry_host}/soak/app0@sha256:{secrets.token_hex(32)}"
                for _ in range(options.many_digests)]  # fmt: skip
        return _pod_body(refs, target.signed_namespace)

    threads.append(threading.Thread(
        target=_review_loop,
        args=(target, f"many digests ({options.many_digests})", many, options, tally, stop),
        daemon=True,
    ))  # fmt: skip
    for thread in threads:
        thread.start()
    return tally, threads


def _times(seconds: list[float]) -> dict[str, float]:
    """p50 and the longest of ``seconds``, when there are any."""
    if not seconds:
        return {}
    return {"p50_s": round(statistics.median(seconds), 2), "max_s": round(max(seconds), 2)}


def _pod_body(refs: list[str], namespace: str) -> bytes:
    """An AdmissionReview of a Pod with one small container per reference."""
    spec = {"containers": [{"name": f"c{i}", "image": ref} for i, ref in enumerate(refs)]}
    return json.dumps(review(workload("Pod", spec, namespace=namespace))).encode()


def _review_loop(
    target: Target,
    kind: str,
    make: Callable[[], bytes],
    options: Options,
    tally: Tally,
    stop: threading.Event,
) -> None:
    """Post ``make()`` again and again until ``stop``; tally each answer."""
    session = requests.Session()
    url = f"https://127.0.0.1:{target.port}/validate"
    while not stop.is_set():
        body = make()
        tally.sizes.setdefault(kind, len(body))
        started = time.monotonic()
        try:
            answer = session.post(url, data=body, verify=str(target.ca), timeout=60,
                                  headers={"Content-Type": "application/json"})  # fmt: skip
        except requests.RequestException as exc:
            tally.add(kind, type(exc).__name__, str(exc), time.monotonic() - started)
        else:
            took = time.monotonic() - started
            try:
                response = answer.json()["response"]
                decision = "admitted" if response["allowed"] else "denied"
                # A denial names each image on a line of its own: the first one says why.
                why = response.get("status", {}).get("message", "").split("\n", 1)[0]
                tally.add(kind, f"{answer.status_code} {decision}",
                          f"{took:.1f} s, {decision}: {why}" if why else "", took)  # fmt: skip
            except (ValueError, KeyError, TypeError, AttributeError):
                tally.add(kind, f"HTTP {answer.status_code}", answer.text, took)
        stop.wait(options.pause_seconds)


def _drip_loop(
    target: Target, shape: str, options: Options, tally: Tally, stop: threading.Event
) -> None:
    """One framing shape, connection after connection, until ``stop``."""
    context = ssl.create_default_context(cafile=str(target.ca))
    body = json.dumps(review(workload("Pod", {"containers": [
        {"name": "c", "image": "quay.io/acme/api:1.0"}]}, namespace=target.allowlist_namespace,
    )))  # fmt: skip
    head = "\r\n".join([
        "POST /validate HTTP/1.1", "Host: 127.0.0.1", "Content-Type: application/json",
        *SHAPES[shape], "", "",
    ]).encode()  # fmt: skip
    # The chunked body, one byte per chunk; the head alone sends none of it.
    payload = b"" if shape.startswith("head alone") else b"".join(
        b"1\r\n" + bytes([byte]) + b"\r\n" for byte in body.encode()
    ) + b"0\r\n\r\n"  # fmt: skip
    while not stop.is_set():
        outcome = _drip_once(target, context, head, payload, options, stop)
        if outcome != "stopped":
            tally.add(shape, outcome)


def _drip_once(
    target: Target,
    context: ssl.SSLContext,
    head: bytes,
    payload: bytes,
    options: Options,
    stop: threading.Event,
) -> str:
    """Send ``head``, drip ``payload``; what the server did about it."""
    try:
        raw = socket.create_connection(("127.0.0.1", target.port), timeout=10)
    except OSError as exc:
        stop.wait(1)
        return f"connect failed ({type(exc).__name__})"
    try:
        with context.wrap_socket(raw, server_hostname="127.0.0.1") as tls:
            tls.sendall(head)
            tls.settimeout(options.drip_seconds)
            started = time.monotonic()
            sent = 0
            while time.monotonic() - started < options.hold_seconds and not stop.is_set():
                try:
                    data = tls.recv(4096)
                except TimeoutError:
                    data = None
                if data == b"":
                    return "closed without an answer"
                if data:
                    status = data.split(b"\r\n", 1)[0].split(b" ")
                    return f"HTTP {status[1].decode()}" if len(status) > 1 else "garbled answer"
                if sent < len(payload):
                    tls.sendall(payload[sent : sent + 1])
                    sent += 1
            return "stopped" if stop.is_set() else f"no answer in {options.hold_seconds:g} s"
    except (ssl.SSLError, ConnectionError) as exc:
        return f"connection dropped ({type(exc).__name__})"
    except OSError as exc:
        return f"connection error ({type(exc).__name__})"
    finally:
        raw.close()
