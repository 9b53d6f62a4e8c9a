"""Evaluating ``spec.attestations[].conditions`` within a cost limit.

Conditions are CEL expressions compiled when the policy loads
(``policy/cel.py``). They run in child processes (``celworker.py``), because no
CEL library on the package index can bound or interrupt an evaluation: the
native ones hold the GIL until they finish. ``Evaluator`` keeps up to
``processes`` children per webhook worker, started on first use, and gives one
statement's conditions at most ``cost_seconds`` of wall-clock time, and never
more than the review's deadline leaves. A child that overruns is killed
(SIGKILL) and replaced on the next use; so is one that dies (its rlimits cap
memory and CPU time). Either way the statement does not count and the review
is denied, saying which expressions exceeded the limit, and the evaluator's
``observer`` hears why the evaluation was cut (``OVERRUNS``): the server counts
them in a metric, as ``cost_seconds`` and ``processes`` come from trustgate.yaml.

A condition that does not hold is reported with the values it read: every
``predicate.a.b``-style path of the expression is looked up in the statement
and shown, bounded and escaped (``untrusted.py``).
"""

from __future__ import annotations

import json
import os
import queue
import re
import select
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from webhook.core.deadline import Deadline
from webhook.core.errors import CheckFailed
from webhook.core.observability import get_logger
from webhook.core.untrusted import quoted, shown
from webhook.policy.cel import VARIABLES, Condition
from webhook.signatures import celworker

log = get_logger(__name__)

#: Wall-clock seconds all conditions of one statement may take.
COST_SECONDS = 0.5
#: Child processes per webhook worker (concurrent evaluations).
PROCESSES = 2
#: Requests one child answers at most before it is replaced; fewer when so many cost
#: limits of CPU time could reach celworker.CPU_LIMIT: the rlimit never ends a request.
REQUESTS_PER_CHILD = 1000
#: Largest answer read from a child (results are a few bytes per condition).
_MAX_ANSWER = 64 * 1024
_WORKER = Path(__file__).with_name("celworker.py")

#: ``predicate.a.b``: a path from one of the variables, outside string literals.
_PATH = re.compile(r"(?<![\w.])(" + "|".join(VARIABLES) + r")((?:\.[A-Za-z_]\w*)*)")
_LITERAL = re.compile(r"'(?:[^'\\]|\\.)*'|\"(?:[^\"\\]|\\.)*\"")
_SHOWN_PATHS = 3
_SHOWN_VALUE = 80


#: Why an evaluation was cut: ``cost`` (it ran past the cost limit), ``deadline`` (past
#: what the review's deadline left, or the process did not start in it), ``busy`` (every
#: process was busy until then), ``crashed`` (the process died, e.g. at its memory rlimit,
#: or answered nonsense).
OVERRUNS = ("cost", "deadline", "busy", "crashed")
#: Hears the reason (one of OVERRUNS) of each evaluation cut; the server counts them.
OverrunObserver = Callable[[str], None]


class CostExceeded(CheckFailed):
    """Conditions ran past their cost limit; the statement does not count."""


@dataclass(frozen=True, slots=True)
class ConditionResult:
    """One condition over one statement: whether it held, else why not."""

    condition: Condition
    held: bool
    error: str | None = None


class _Child:
    """One evaluator process and the unread part of its output.

    The process says ``ready`` once it can evaluate; starting it (a new
    interpreter) is not charged to the cost limit of an evaluation, only to
    the review's deadline.
    """

    def __init__(self) -> None:
        self.process = subprocess.Popen(
            [sys.executable, "-P", str(_WORKER)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            close_fds=True,
            env=_child_env(),
        )
        assert self.process.stdin is not None and self.process.stdout is not None
        self._in = self.process.stdin.fileno()
        self._out = self.process.stdout.fileno()
        os.set_blocking(self._in, False)
        os.set_blocking(self._out, False)
        self._buffer = b""
        self.ready = False
        #: Whether its output ended or its input broke: the process died.
        self.ended = False
        self.answered = 0
        self.pid_of_parent = os.getpid()

    def start(self, seconds: float) -> bool:
        """Wait up to ``seconds`` for the process to be ready; whether it is."""
        if not self.ready:
            self.ready = self._line(time.monotonic() + seconds) == b"ready\n"
        return self.ready

    def ask(self, request: bytes, seconds: float) -> bytes | None:
        """Send one request line and read the answer line; None when time runs out."""
        end = time.monotonic() + seconds
        data = memoryview(request)
        try:
            while data:
                if not _ready(self._in, select.POLLOUT, end):
                    return None
                data = data[os.write(self._in, data) :]
        except OSError:  # a broken pipe: the child died
            self.ended = True
            return None
        return self._line(end)

    def _line(self, end: float) -> bytes | None:
        """The next line of output, or None at ``end``, at EOF or past _MAX_ANSWER."""
        while b"\n" not in self._buffer:
            if not _ready(self._out, select.POLLIN, end):
                return None
            try:
                chunk = os.read(self._out, 65536)
            except OSError:
                chunk = b""
            self.ended = not chunk
            if not chunk or len(self._buffer) + len(chunk) > _MAX_ANSWER:
                return None  # the child died, or talks nonsense
            self._buffer += chunk
        line, _, self._buffer = self._buffer.partition(b"\n")
        return line + b"\n"

    def kill(self) -> None:
        """End the process and reap it."""
        self.process.kill()
        self.process.wait()
        for pipe in (self.process.stdin, self.process.stdout):
            if pipe is not None:
                pipe.close()


def _ready(fd: int, event: int, end: float) -> bool:
    """Whether ``fd`` is ready for ``event`` (or closed) before ``end``; poll, not select,
    as a busy worker's descriptors may number above FD_SETSIZE."""
    left = end - time.monotonic()
    if left <= 0:
        return False
    poller = select.poll()
    poller.register(fd, event)
    return bool(poller.poll(max(1, int(left * 1000))))


def _child_env() -> dict[str, str]:
    """The child finds cel_expr_python where this process does; ``-P`` keeps the
    script's own directory off its path."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in sys.path if p)
    return env


class Evaluator:
    """Runs conditions in child processes, each evaluation within a cost limit."""

    def __init__(
        self,
        *,
        cost_seconds: float = COST_SECONDS,
        processes: int = PROCESSES,
        observer: OverrunObserver | None = None,
    ) -> None:
        self.cost_seconds = cost_seconds
        self._processes = processes
        self._observer = observer
        budget = int(0.8 * celworker.CPU_LIMIT / max(cost_seconds, 0.001))
        self._requests_per_child = max(1, min(REQUESTS_PER_CHILD, budget))
        self._idle: queue.LifoQueue[_Child] = queue.LifoQueue()
        self._started = 0
        self._lock = threading.Lock()
        self._pid = os.getpid()

    def evaluate(
        self, conditions: Sequence[Condition], data: Mapping[str, Any], deadline: Deadline
    ) -> tuple[ConditionResult, ...]:
        """Every condition over ``data`` (``statement_data``), all within the cost limit.

        Raises:
            CostExceeded: the conditions did not finish within ``cost_seconds``
                (or what is left of the deadline), or the evaluator died.
        """
        if not conditions:
            return ()
        texts = [c.text for c in conditions]
        request = (json.dumps({"conditions": texts, "data": data}) + "\n").encode()
        remaining = deadline.remaining()
        seconds = min(self.cost_seconds, remaining)
        child = self._acquire(seconds)
        if child is not None and not child.start(deadline.remaining()):
            self._discard(child)
            self._overran("crashed" if child.ended else "deadline")
            raise CostExceeded(
                "the condition evaluator did not start within the review's deadline",
                check="attestations",
            )
        seconds = min(self.cost_seconds, deadline.remaining())
        answer = None if child is None else child.ask(request, seconds)
        results = _parse(answer, len(conditions))
        costly = self.cost_seconds <= remaining
        reason = "" if results is not None else _overrun(child, answer, costly)
        if reason:
            self._overran(reason)
        if child is not None:
            child.answered += 1
            if results is None or child.answered >= self._requests_per_child:
                self._discard(child)
            else:
                self._idle.put(child)
        if results is None:
            log.warning(
                "condition evaluation cut (%s): conditions %s",
                reason,
                _listed(texts),
                extra={"check": "attestations", "outcome": "deny"},
            )
            raise CostExceeded(self._cut(reason, texts, costly), check="attestations")
        return tuple(
            ConditionResult(condition, held is True, error)
            for condition, (held, error) in zip(conditions, results, strict=True)
        )

    def _cut(self, reason: str, texts: Sequence[str], costly: bool) -> str:
        """The denial of an evaluation cut for ``reason`` (one of OVERRUNS); ``costly``
        when the cost limit, not the review's deadline, bounded it."""
        listed = _listed(texts)
        bound = f"the cost limit of {self.cost_seconds:g} s" if costly else "the review's deadline"
        if reason == "crashed":
            cause = f"the condition evaluator died evaluating conditions {listed} (at its memory "
            return cause + "or CPU limit, or killed); the attestation does not count"
        if reason == "busy":
            return (
                f"conditions {listed} found no free condition evaluator (all "
                f"{self._processes} busy; conditions.processes) within {bound}; "
                "the attestation does not count"
            )
        return f"conditions {listed} did not finish within {bound}; the attestation does not count"

    def _overran(self, reason: str) -> None:
        if self._observer is not None:
            self._observer(reason)

    def prestart(self) -> None:
        """Start one process now, so that the first review with conditions need not wait
        for it (call it in the process that will evaluate: children do not survive a fork)."""
        with self._lock:
            if self._started or self._pid != os.getpid():
                return
            try:
                self._idle.put(_Child())
            except OSError:
                return
            self._started = 1

    def _acquire(self, seconds: float) -> _Child | None:
        with self._lock:
            if self._pid != os.getpid():  # forked (gunicorn preload): children are not ours
                self._idle, self._started, self._pid = queue.LifoQueue(), 0, os.getpid()
            try:
                return self._idle.get_nowait()
            except queue.Empty:
                pass
            if self._started < self._processes:
                self._started += 1
                try:
                    return _Child()
                except OSError:
                    self._started -= 1
                    return None
        try:
            return self._idle.get(timeout=max(seconds, 0.0))
        except queue.Empty:
            return None

    def _discard(self, child: _Child) -> None:
        """Kill ``child`` and start its replacement now, so that it is ready when needed."""
        child.kill()
        with self._lock:
            if child.pid_of_parent != self._pid:
                return
            try:
                self._idle.put(_Child())
            except OSError:
                self._started -= 1

    def close(self) -> None:
        """End the idle children (those busy end when their pipes close)."""
        while True:
            try:
                child = self._idle.get_nowait()
            except queue.Empty:
                return
            child.kill()
            with self._lock:
                self._started -= 1


def _overrun(child: _Child | None, answer: bytes | None, costly: bool) -> str:
    """Why an evaluation without results was cut (one of OVERRUNS); ``costly`` when the
    cost limit, not the review's deadline, bounded it."""
    if child is None:
        return "busy"
    if answer is not None or child.ended or child.process.poll() is not None:
        return "crashed"
    return "cost" if costly else "deadline"


def _parse(answer: bytes | None, count: int) -> list[tuple[bool | None, str | None]] | None:
    if answer is None:
        return None
    try:
        results = json.loads(answer)["results"]
    except (ValueError, KeyError, TypeError):
        return None
    if not isinstance(results, list) or len(results) != count:
        return None
    parsed: list[tuple[bool | None, str | None]] = []
    for entry in results:
        if not isinstance(entry, list) or len(entry) != 2:
            return None
        held, error = entry
        parsed.append((held if isinstance(held, bool) else None, str(error) if error else None))
    return parsed


def _listed(texts: Sequence[str]) -> str:
    shown = ", ".join(quoted(text, 60) for text in texts[:3])
    return shown + (f" and {len(texts) - 3} more" if len(texts) > 3 else "")


def failure(result: ConditionResult, data: Mapping[str, Any]) -> str:
    """One line: the condition that did not hold, why, and the values it read."""
    text = quoted(result.condition.text, 120)
    if result.error is not None:
        return f"condition {text} failed: {shown(result.error, 160)}{_saw(result, data)}"
    return f"condition {text} does not hold{_saw(result, data)}"


def _saw(result: ConditionResult, data: Mapping[str, Any]) -> str:
    """`` (saw predicate.a = "x", ...)`` for the paths the expression reads."""
    code = _LITERAL.sub(lambda m: " " * len(m.group()), result.condition.text)
    paths = list(dict.fromkeys(m.group(0) for m in _PATH.finditer(code)))
    seen = list(dict.fromkeys(_value(path, data) for path in paths))[:_SHOWN_PATHS]
    return f" (saw {'; '.join(seen)})" if seen else ""


def _value(path: str, data: Mapping[str, Any]) -> str:
    """``path = value`` for the longest prefix of ``path`` present in ``data``."""
    value: Any = data
    walked: list[str] = []
    for part in path.split("."):
        if not isinstance(value, Mapping):
            break  # a method, e.g. predicate.id.startsWith
        if part not in value:
            where = ".".join([*walked, part])
            return f"{where} absent"
        value = value[part]
        walked.append(part)
    # JSON with ensure_ascii is printable ASCII: no control character gets through.
    text = json.dumps(value, sort_keys=True)
    if len(text) > _SHOWN_VALUE:
        text = text[:_SHOWN_VALUE] + "..."
    return f"{'.'.join(walked)} = {text}"


def statement_data(statement: Mapping[str, Any], repository: str, digest: str) -> dict[str, Any]:
    """What conditions read: the statement's fields and the image."""
    data: dict[str, Any] = {name: statement.get(name) for name in VARIABLES if name != "image"}
    data["image"] = {"repository": repository, "digest": digest}
    return data


def holding(
    evaluator: Evaluator,
    conditions: Sequence[Condition],
    statements: Sequence[Mapping[str, Any]],
    image: tuple[str, str],
    deadline: Deadline,
) -> tuple[list[int], str]:
    """The indexes of ``statements`` for which every condition holds, and why not for
    the first statement when none does.

    ``image`` is (repository, digest). Each distinct statement is evaluated once.

    Raises:
        CostExceeded: as Evaluator.evaluate.
    """
    if not conditions:
        return list(range(len(statements))), ""
    passed: list[int] = []
    reason = ""
    seen: dict[str, bool] = {}
    for index, statement in enumerate(statements):
        data = statement_data(statement, *image)
        key = json.dumps(data, sort_keys=True)
        if key not in seen:
            results = evaluator.evaluate(conditions, data, deadline)
            seen[key] = all(r.held for r in results)
            if not seen[key] and not reason:
                reason = _reason(results, data)
        if seen[key]:
            passed.append(index)
    return passed, reason


def _reason(results: Sequence[ConditionResult], data: Mapping[str, Any]) -> str:
    failed = [r for r in results if not r.held]
    more = f"; and {len(failed) - 2} more" if len(failed) > 2 else ""
    held = len(results) - len(failed)
    shown = "; ".join(failure(r, data) for r in failed[:2])
    return f"{held} of {len(results)} conditions held: {shown}{more}"


def held_note(conditions: Sequence[Condition]) -> str:
    """`` (conditions held: "a", "b")`` for a passing entry's note, or ""."""
    if not conditions:
        return ""
    return f" (conditions held: {', '.join(quoted(c.text, 80) for c in conditions)})"
