"""Run a credential plug-in once: bytes in on stdin, its answer out, bounded in time and size.

A plug-in is a program of the cluster's choosing, and trustgate must survive
whatever it does: hang, write without end, fork children that keep its
pipes open, exit early. So it runs without a shell, in a process group of
its own (killed whole when its time is up), with both pipes read as they fill
(so a full stderr cannot block it) and stdout capped: past the cap, or past
the deadline, the group is killed and the run fails.
"""

from __future__ import annotations

import contextlib
import os
import selectors
import signal
import subprocess
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Final

from webhook.core.errors import UpstreamError

#: What of stderr is kept, for the message of a failed run.
MAX_STDERR_BYTES: Final = 8 * 1024
_CHUNK: Final = 64 * 1024


class PluginRunError(UpstreamError):
    """The plug-in could not be started, timed out, wrote too much, or exited non-zero."""


@dataclass(frozen=True, slots=True)
class Finished:
    """A run that exited with status 0: what it wrote to stdout and stderr (stderr cut)."""

    stdout: bytes
    stderr: bytes


def run(
    argv: Sequence[str],
    data: bytes,
    env: Mapping[str, str],
    *,
    seconds: float,
    max_stdout: int,
) -> Finished:
    """Run ``argv`` with ``data`` on stdin, for at most ``seconds``, reading at most ``max_stdout``.

    Raises:
        PluginRunError: it could not start, did not finish in time, wrote more
            than ``max_stdout`` bytes to stdout, or exited non-zero (the message
            then ends with its last line of stderr).
    """
    expires_at = time.monotonic() + seconds
    try:
        process = subprocess.Popen(
            list(argv),
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env=dict(env),
            cwd="/",
            close_fds=True,
            start_new_session=True,
        )
    except OSError as exc:
        raise PluginRunError(f"cannot be started: {exc.strerror or exc}") from None
    try:
        stdout, stderr = _communicate(process, data, expires_at, seconds, max_stdout)
        try:
            status = process.wait(timeout=max(0.0, expires_at - time.monotonic()))
        except subprocess.TimeoutExpired:
            raise PluginRunError(_late(seconds)) from None
    finally:
        _kill(process)
    if status != 0:
        reason = f"killed by signal {-status}" if status < 0 else f"exited with status {status}"
        said = last_line(stderr)
        raise PluginRunError(f"{reason}{f': {said}' if said else ''}")
    return Finished(stdout, stderr)


def last_line(stderr: bytes) -> str:
    """The last non-empty line of ``stderr``, as printable text of at most 200 characters."""
    lines = [line.strip() for line in stderr.decode("utf-8", "replace").splitlines()]
    lines = [line for line in lines if line]
    if not lines:
        return ""
    text = "".join(c if c.isprintable() else "?" for c in lines[-1])
    return text if len(text) <= 200 else text[:200] + "..."


def _communicate(
    process: subprocess.Popen[bytes],
    data: bytes,
    expires_at: float,
    seconds: float,
    max_stdout: int,
) -> tuple[bytes, bytes]:
    """Feed stdin and drain stdout and stderr until both close, within the deadline."""
    assert process.stdin is not None and process.stdout is not None and process.stderr is not None
    out, err = bytearray(), bytearray()
    with selectors.DefaultSelector() as selector:
        if data:
            os.set_blocking(process.stdin.fileno(), False)
            selector.register(process.stdin, selectors.EVENT_WRITE, "in")
        else:
            process.stdin.close()
        selector.register(process.stdout, selectors.EVENT_READ, "out")
        selector.register(process.stderr, selectors.EVENT_READ, "err")
        pending = memoryview(data)
        while selector.get_map():
            left = expires_at - time.monotonic()
            if left <= 0:
                raise PluginRunError(_late(seconds))
            for key, _ in selector.select(left):
                if key.data == "in":
                    pending = _feed(selector, process, pending)
                    continue
                chunk = os.read(key.fd, _CHUNK)
                if not chunk:
                    selector.unregister(key.fileobj)
                elif key.data == "out":
                    out += chunk
                    if len(out) > max_stdout:
                        raise PluginRunError(f"wrote more than {max_stdout} bytes to stdout")
                elif len(err) < MAX_STDERR_BYTES:
                    err += chunk[: MAX_STDERR_BYTES - len(err)]
    return bytes(out), bytes(err)


def _feed(
    selector: selectors.BaseSelector, process: subprocess.Popen[bytes], pending: memoryview
) -> memoryview:
    """Write what the pipe takes of ``pending``; close stdin when all is written or unwanted."""
    assert process.stdin is not None
    try:
        written = os.write(process.stdin.fileno(), pending)
    except (BrokenPipeError, BlockingIOError) as exc:
        written = 0 if isinstance(exc, BlockingIOError) else len(pending)
    pending = pending[written:]
    if not pending:
        selector.unregister(process.stdin)
        process.stdin.close()
    return pending


def _kill(process: subprocess.Popen[bytes]) -> None:
    """Kill the plug-in's whole process group unless it was reaped, reap it, close the pipes.

    An unreaped leader (even a zombie) keeps its group's ID from being reused,
    so the signal reaches its children and nothing else.
    """
    if process.returncode is None:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(process.pid, signal.SIGKILL)
    for pipe in (process.stdin, process.stdout, process.stderr):
        if pipe is not None:
            with contextlib.suppress(OSError):
                pipe.close()
    process.wait()


def _late(seconds: float) -> str:
    return f"did not finish within {seconds:.3g}s and was killed"
