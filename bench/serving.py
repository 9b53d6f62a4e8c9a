"""Servers the benchmarks start and measure: readiness, and a process tree's CPU time and memory."""

from __future__ import annotations

import os
import socket
import ssl
import subprocess
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path

_TICKS = os.sysconf("SC_CLK_TCK")
_PAGE = os.sysconf("SC_PAGE_SIZE")


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_ready(url: str, ca: Path, process: subprocess.Popen[bytes], log: Path) -> None:
    """Wait until ``url``/healthz answers over TLS; exit with the server's log if it never does."""
    context = ssl.create_default_context(cafile=str(ca))
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise SystemExit(f"server exited early:\n{log.read_text()}")
        try:
            with urllib.request.urlopen(f"{url}/healthz", context=context, timeout=2):
                return
        except OSError:
            time.sleep(0.1)
    raise SystemExit(f"server not ready within 30 s:\n{log.read_text()}")


def tree(pid: int) -> list[int]:
    """``pid`` and its descendants (gunicorn's master and workers), from /proc."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            ppid = int(_stat(int(entry))[1])
        except (OSError, IndexError, ValueError):
            continue
        children.setdefault(ppid, []).append(int(entry))
    found, todo = [], [pid]
    while todo:
        current = todo.pop()
        found.append(current)
        todo.extend(children.get(current, []))
    return found


def _stat(pid: int) -> list[str]:
    """Fields of /proc/PID/stat after the command name (field 3 onwards)."""
    text = Path(f"/proc/{pid}/stat").read_text()
    return text[text.rindex(")") + 2 :].split()


@dataclass(frozen=True, slots=True)
class Usage:
    """CPU seconds (user + system) of a process tree, and each process's resident memory."""

    cpu_seconds: float
    rss_bytes: dict[int, int]


def usage(pid: int) -> Usage:
    """The CPU time and RSS of ``pid`` and its descendants, now."""
    cpu = 0.0
    rss: dict[int, int] = {}
    for member in tree(pid):
        try:
            fields = _stat(member)
        except OSError:
            continue
        # After the name: state(0) ppid(1) ... utime(11) stime(12) ... rss(21), in pages.
        cpu += (int(fields[11]) + int(fields[12])) / _TICKS
        rss[member] = int(fields[21]) * _PAGE
    return Usage(cpu, rss)
