"""CPU per request of finding where a request ends: trustgate's framer against h11.

The event loop of each worker (webhook/serving/worker.py) frames every request before a
thread serves it, so the framer's cost is paid once per review, in the one
thread that all connections of a worker share. This compares, on realistic
AdmissionReview requests as kube-apiserver sends them (Content-Length, and the
same body chunked), the framer of the tree (``webhook.serving.framing.RequestFramer``)
with h11 used as a framer (``h11.Connection`` fed the same bytes, events read
until ``EndOfMessage``). Each request is fed whole, and in 16 KiB pieces as TLS
records arrive.

    python bench/framing.py [--rounds 25] [--number 200]

It prints microseconds per request (best of the rounds) and h11's cost as a
ratio of the framer's; the figures are for choosing, not a pass/fail line.
"""

from __future__ import annotations

import argparse
import json
import sys
import timeit
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import h11  # noqa: E402

from tests.support.kube import pod_spec, review, workload  # noqa: E402
from webhook.serving.framing import RequestFramer  # noqa: E402

RECORD = 16 * 1024
MAX_HEAD = 64 * 1024
MAX_BODY = 4 * 1024 * 1024


def request(body: bytes, *, chunked: bool = False) -> bytes:
    """A POST of ``body`` with the head kube-apiserver sends."""
    head = (
        b"POST /validate?timeout=10s HTTP/1.1\r\nHost: trustgate.trustgate.svc:443\r\n"
        b"User-Agent: kube-apiserver-admission\r\nAccept: application/json, */*\r\n"
        b"Content-Type: application/json\r\nAccept-Encoding: gzip\r\n"
    )
    if chunked:
        return head + b"Transfer-Encoding: chunked\r\n\r\n%x\r\n%s\r\n0\r\n\r\n" % (len(body), body)
    return head + b"Content-Length: %d\r\n\r\n%s" % (len(body), body)


def pieces(data: bytes, size: int) -> list[bytes]:
    return [data[i : i + size] for i in range(0, len(data), size)]


def by_framer(parts: list[bytes]) -> int | None:
    framer = RequestFramer(MAX_HEAD, MAX_BODY)
    buf = bytearray()
    for part in parts:
        buf += part
        end = framer.feed(buf)
        if end is not None:
            return end
    return None


def by_h11(parts: list[bytes]) -> int | None:
    conn = h11.Connection(h11.SERVER, max_incomplete_event_size=MAX_HEAD)
    fed = 0
    for part in parts:
        conn.receive_data(part)
        fed += len(part)
        while (event := conn.next_event()) is not h11.NEED_DATA:
            if isinstance(event, h11.EndOfMessage):
                return fed - len(conn.trailing_data[0])
    return None


def best_us(
    fn: Callable[[list[bytes]], int | None], parts: list[bytes], rounds: int, n: int
) -> float:
    return min(timeit.repeat(lambda: fn(parts), number=n, repeat=rounds)) / n * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=25)
    parser.add_argument("--number", type=int, default=200)
    args = parser.parse_args()
    images = [f"registry.example.com/team/app-{i}:v{i}" for i in range(60)]
    bodies = {
        "1 container": json.dumps(
            review(workload("Deployment", pod_spec("registry.redhat.io/ubi9/ubi-minimal:9.4")))
        ).encode(),
        "60 containers": json.dumps(review(workload("Deployment", pod_spec(*images)))).encode(),
    }
    print(f"{'request':<34}{'bytes':>8}{'framer µs':>11}{'h11 µs':>9}{'h11/framer':>12}")
    for name, body in bodies.items():
        for chunked in (False, True):
            data = request(body, chunked=chunked)
            for split in sorted({len(data), min(len(data), RECORD)}, reverse=True):
                parts = pieces(data, split)
                assert by_framer(parts) == by_h11(parts) == len(data)
                number = args.number if len(parts) == 1 else max(1, args.number // 4)
                ours = best_us(by_framer, parts, args.rounds, number)
                theirs = best_us(by_h11, parts, args.rounds, number)
                label = f"{name}, {'chunked' if chunked else 'length'}, {len(parts)} piece(s)"
                print(f"{label:<34}{len(data):>8}{ours:>11.1f}{theirs:>9.1f}{theirs / ours:>12.1f}")


if __name__ == "__main__":
    main()
