"""Logging: JSON lines, written in batches by a thread of their own.

Loggers are children of ``trustgate``; only ``server.py`` and ``cli.py`` attach
handlers. The Prometheus metrics live in ``metrics``.
"""

from __future__ import annotations

import atexit
import json
import logging
import sys
import threading
import time
from collections import deque
from collections.abc import Callable
from typing import Any, TextIO

import orjson

from webhook.core.tally import take

_ROOT = "trustgate"
#: Lines waiting for the writer thread; past this, new ones are dropped.
_QUEUE_SIZE = 10_000
#: Characters (bytes, for the ASCII that JSON lines mostly are) waiting for the
#: writer thread; past this, new lines are dropped. A stalled log sink then
#: holds at most this much of a worker's memory, however large the lines.
_QUEUE_BYTES = 8 * 1024 * 1024
#: How long a line waits for the writer thread at most, in seconds.
_FLUSH_SECONDS = 0.05
#: Lines waiting that wake the writer before its time.
_WAKE_BACKLOG = 1000
#: LogRecord attributes that are not structured fields.
_STANDARD = frozenset(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {
    "message",
    "asctime",
    "taskName",
}


def get_logger(name: str) -> logging.Logger:
    """The logger ``trustgate.<name>`` (``name`` without a leading ``webhook.``).

    Every log line carries the logger's name, so it is part of what operators
    filter on: modules name theirs explicitly where it differs from their path
    (``get_logger("admission")``), and a module that moves keeps its name.
    """
    short = name.removeprefix("webhook.")
    return logging.getLogger(f"{_ROOT}.{short}")


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message and every ``extra`` field.

    ``extra={"fields": {...}}`` is merged into the top level, so a record may carry
    keys such as ``name`` that would clash with LogRecord's own attributes.

    The line is encoded by orjson, several times faster than the standard
    library's encoder on a decision-log entry. Values json.dumps would not encode
    (dataclasses, dates, anything else) are written as ``str()`` gives them, as
    ``json.dumps(default=str)`` would; what orjson refuses (integers past 64
    bits) goes to the standard library. orjson writes non-ASCII text as UTF-8
    rather than ``\\u`` escapes: the same JSON.
    """

    def __init__(self) -> None:
        super().__init__()
        # One tuple, replaced whole: request threads format concurrently.
        self._stamp: tuple[int, str] = (-1, "")

    def format(self, record: logging.LogRecord) -> str:
        """Render ``record`` as a JSON line."""
        entry = self._entry(record.created, int(record.msecs), record.levelname, record.name,
                            record.getMessage())  # fmt: skip
        for key in record.__dict__.keys() - _STANDARD:
            value = record.__dict__[key]
            if key == "fields" and isinstance(value, dict):
                entry.update(value)
            elif not key.startswith("_"):
                entry[key] = value
        if record.exc_info:
            entry["exc"] = self.formatException(record.exc_info)
        return self._encode(entry)

    def line(
        self, created: float, level: int, logger: str, msg: str, fields: dict[str, Any]
    ) -> str:
        """The line :meth:`format` writes for a record with these attributes and ``fields``.

        Its own dict rather than :meth:`format`'s steps: it runs once per review.
        """
        msecs = int((created - int(created)) * 1000)  # as LogRecord computes it
        entry = {
            "time": f"{self._timestamp(created)}.{msecs:03d}Z",
            "level": _LEVELS[level],
            "logger": logger,
            "msg": msg,
            **fields,
        }
        try:
            return orjson.dumps(entry, default=str, option=_ORJSON_OPTIONS).decode()
        except (TypeError, orjson.JSONEncodeError):
            return self._encode(entry)

    def _entry(
        self, created: float, msecs: int, level: str, logger: str, msg: str
    ) -> dict[str, Any]:
        return {
            "time": f"{self._timestamp(created)}.{msecs:03d}Z",
            "level": level.lower(),
            "logger": logger,
            "msg": msg,
        }

    @staticmethod
    def _encode(entry: dict[str, Any]) -> str:
        try:
            return orjson.dumps(entry, default=str, option=_ORJSON_OPTIONS).decode()
        except (TypeError, orjson.JSONEncodeError):
            # Keys that are not strings, integers past 64 bits: what orjson refuses.
            return json.dumps(entry, default=str, separators=(",", ":"))

    def _timestamp(self, created: float) -> str:
        """``created``'s UTC date and time to the second, computed once per second."""
        second = int(created)
        stamp = self._stamp
        if stamp[0] != second:
            stamp = (second, time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(second)))
            self._stamp = stamp
        return stamp[1]


#: Level numbers to the names JSON lines give them.
_LEVELS = {
    level: logging.getLevelName(level).lower()
    for level in (logging.DEBUG, logging.INFO, logging.WARNING, logging.ERROR, logging.CRITICAL)
}

#: Types orjson would encode its own way, left to ``default=str`` as json.dumps does.
_ORJSON_OPTIONS = (
    orjson.OPT_PASSTHROUGH_DATACLASS
    | orjson.OPT_PASSTHROUGH_DATETIME
    | orjson.OPT_PASSTHROUGH_SUBCLASS
    | orjson.OPT_NON_STR_KEYS
)


class _BatchingHandler(logging.Handler):
    """Formats a record where it is logged; a writer thread writes the lines in batches.

    A request thread formats its line (a few microseconds with orjson) and
    appends it to a deque: no lock taken, no thread woken. The writer wakes
    every ``_FLUSH_SECONDS`` (or at once when a backlog builds) and writes what
    arrived in one call, without the GIL for the write itself. Waking a thread
    per record, as a ``QueueListener`` does, costs a futex wake-up and a GIL
    hand-over per review, more than formatting the line; formatting a batch in
    the writer instead would hold the GIL for a whole batch, which request
    threads then wait for in 5 ms switch intervals. Lines wait at most
    ``_FLUSH_SECONDS``; :meth:`close` writes what is left.

    A request thread never waits on a slow log sink: the review's deadline
    matters more than one log line. Past ``_QUEUE_SIZE`` waiting lines, or
    ``_QUEUE_BYTES`` waiting characters, new ones are dropped, counted (the
    drop observer, see :func:`observe_drops`) and reported in the log itself
    once the sink takes lines again: never written from the request thread,
    since the sink that is behind is often stderr itself.
    """

    def __init__(self, target: logging.Handler) -> None:
        super().__init__()
        self.target = target
        self.dropped = 0
        self._reported = 0  # drops already noted in the log
        #: Characters of the lines waiting; changed under ``_size_lock`` only.
        self.backlog_bytes = 0
        self._size_lock = threading.Lock()
        self._lines: deque[str] = deque()
        self._wake = threading.Event()
        self._stopping = False
        #: The logger it serves, and its formatter when lines can skip the
        #: LogRecord (see :func:`log_fields`); set by configure_logging.
        self.owner: logging.Logger | None = None
        self.direct: JsonFormatter | None = None
        self._writer = threading.Thread(target=self._run, name="trustgate-log-writer", daemon=True)
        self._writer.start()

    def handle(self, record: logging.LogRecord) -> bool:
        """Format ``record`` and queue its line (no handler lock: the deque is thread-safe)."""
        if not self.filter(record):
            return False
        self.emit(record)
        return True

    def emit(self, record: logging.LogRecord) -> None:
        """Queue ``record``'s line for the writer."""
        if len(self._lines) >= _QUEUE_SIZE:
            self._drop()  # not even formatted
            return
        try:
            line = self.target.format(record)
        except Exception:
            self.handleError(record)
            return
        self.queue(line)

    def queue(self, line: str) -> None:
        """Queue a formatted line for the writer (dropped and counted when it is behind)."""
        size = len(line)
        with self._size_lock:  # uncontended: well under a microsecond
            backlog = len(self._lines)
            full = backlog >= _QUEUE_SIZE or self.backlog_bytes + size > _QUEUE_BYTES
            if not full:
                self.backlog_bytes += size
                self._lines.append(line)
        if full:
            self._drop()
        elif backlog >= _WAKE_BACKLOG and not self._wake.is_set():
            self._wake.set()

    def _drop(self) -> None:
        self.dropped += 1
        observer = _drop_observer
        if observer is not None:
            observer()

    def _drop_note(self) -> str | None:
        """A line saying how many lines were dropped since the last such line, if any were."""
        dropped = self.dropped
        new, self._reported = dropped - self._reported, dropped
        if new <= 0:
            return None
        msg = f"the log writer fell behind; {new} lines dropped ({dropped} in all)"
        fields = {"dropped": new, "droppedTotal": dropped}
        if self.direct is not None:
            return self.direct.line(time.time(), logging.WARNING, _ROOT, msg, fields)
        return f"trustgate: {msg}"

    def _run(self) -> None:
        while not self._stopping:
            self._wake.wait(_FLUSH_SECONDS)
            self._wake.clear()
            self._write_batch()

    def _write_batch(self) -> None:
        batch = list(take(self._lines))  # in C: the GIL is held for microseconds
        if not batch:
            return
        taken = sum(map(len, batch))
        note = self._drop_note()
        if note is not None:
            batch.append(note)
        batch.append("")
        try:
            stream = self.target.stream  # type: ignore[attr-defined]
            stream.write("\n".join(batch))
            stream.flush()
        except Exception:
            # As logging does when a stream fails: say so on stderr, go on.
            if logging.raiseExceptions:
                sys.stderr.write("trustgate: writing the log failed\n")
        finally:
            # Counted until written: a batch stuck in a stalled sink is backlog too.
            with self._size_lock:
                self.backlog_bytes -= taken

    def close(self) -> None:
        """Stop the writer and write every line still waiting."""
        self._stopping = True
        self._wake.set()
        if self._writer.is_alive() and self._writer is not threading.current_thread():
            self._writer.join()
        self._write_batch()
        super().close()


_writer: _BatchingHandler | None = None
#: Called once per dropped log line (the metric trustgate_log_lines_dropped_total).
_drop_observer: Callable[[], None] | None = None


def observe_drops(observer: Callable[[], None] | None) -> None:
    """Have ``observer`` called for every log line dropped because the writer is behind.

    Process-wide, like the writer it watches: the metrics of the process set it
    once (see ``metrics.Metrics``); it outlives a reconfigured writer.
    """
    global _drop_observer
    _drop_observer = observer


def _stop_writer() -> None:
    global _writer
    if _writer is not None:
        _writer.close()
        _writer = None


def log_fields(logger: logging.Logger, level: int, msg: str, fields: dict[str, Any]) -> None:
    """``logger.log(level, msg, extra={"fields": fields})``, cheaper where it can be.

    The decision log writes a line per review. When the line goes only to the
    background JSON writer (as under ``trustgate serve``), it is formatted here
    and queued, the same line :class:`JsonFormatter` writes for the record,
    without building a LogRecord and walking the handler chain: a third of
    what logging a review costs. Anywhere else (another handler or filter on
    the way, text logs, a test capturing records) it is logged as usual.
    """
    if not logger.isEnabledFor(level):
        return
    writer = _writer
    owner = writer.owner if writer is not None else None
    if (
        writer is not None
        and owner is not None
        and writer.direct is not None
        and level in _LEVELS
        and not logger.handlers
        and not logger.filters
        and logger.parent is owner
        and owner.handlers == [writer]
        and not owner.filters
        and not writer.filters
    ):
        writer.queue(writer.direct.line(time.time(), level, logger.name, msg, fields))
        return
    logger.log(level, msg, extra={"fields": fields})


def configure_logging(
    fmt: str = "json",
    level: str = "info",
    stream: TextIO | None = None,
    *,
    background: bool = False,
) -> None:
    """Attach one handler to the ``trustgate`` logger, replacing any earlier one.

    With ``background``, lines are written by a thread of their own, in
    batches (see :class:`_BatchingHandler`), so request threads never wait on
    or contend for the stream (the decision log writes a line per review).
    Call it in the process that logs: a thread does not survive a fork, so a
    server calls it in each worker.
    """
    global _writer
    logger = logging.getLogger(_ROOT)
    for old in list(logger.handlers):
        logger.removeHandler(old)
    _stop_writer()
    handler: logging.Handler = logging.StreamHandler(stream or sys.stderr)
    if fmt == "json":
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s %(message)s"))
    if background:
        _writer = _BatchingHandler(handler)
        _writer.owner = logger
        formatter = handler.formatter
        _writer.direct = formatter if isinstance(formatter, JsonFormatter) else None
        atexit.register(_stop_writer)
        handler = _writer
        # Nothing here prints thread names; not collecting them saves work on
        # every record of a log that writes a line per review. Process ids stay:
        # these switches are global, and gunicorn's own log prints %(process)d.
        logging.logThreads = False
        logging.logMultiprocessing = False
        # Nor the caller's file and line (a walk up the stack per record): the
        # logging HOWTO's documented switch for it.
        logging._srcfile = None
    logger.addHandler(handler)
    logger.setLevel(level.upper())
    logger.propagate = False
