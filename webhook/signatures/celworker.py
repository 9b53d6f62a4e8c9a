"""The process that evaluates CEL conditions, apart from the webhook.

CEL evaluators written in C++ or Rust hold the GIL and cannot be interrupted,
and none of those on the package index bounds the cost of an evaluation: an
expression such as ``l.all(x, (l + l).size() > 0)`` over a few thousand numbers
runs for minutes. So conditions run here, in a child process that ``conditions.Evaluator``
kills when an evaluation outlives its cost limit, and whose memory and CPU
time are capped by rlimits.

Protocol: the process writes ``ready`` once the library is loaded; then for
each JSON object on a line of stdin, ``{"conditions": [...], "data": {...}}``,
it writes one on stdout, ``{"results": [[held, error], ...]}``, with ``held``
true, false or null (an error). The process ends at the
end of its input, so it never outlives the webhook worker that started it.

This file is run by path and imports nothing of the webhook package, so that
it starts in milliseconds.
"""

from __future__ import annotations

import json
import resource
import sys
from collections.abc import Callable
from typing import Any

#: The variables a condition may name: the statement's fields and the image.
VARIABLES = ("predicateType", "subject", "predicate", "image")
#: Address space of the process; an expression building huge lists fails, not the host.
MEMORY_LIMIT = 1024 * 1024 * 1024
#: Total CPU seconds of the process; a runaway one dies and is replaced.
CPU_LIMIT = 600
#: Compiled expressions kept, by text.
_PROGRAMS = 256
#: Error messages are cut to this many characters.
_ERROR_LENGTH = 300


def _limit() -> None:
    for which, value in ((resource.RLIMIT_AS, MEMORY_LIMIT), (resource.RLIMIT_CPU, CPU_LIMIT)):
        _, hard = resource.getrlimit(which)
        soft = value if hard == resource.RLIM_INFINITY else min(value, hard)
        resource.setrlimit(which, (soft, hard))


def _evaluator() -> Callable[[list[str], dict[str, Any]], list[list[Any]]]:
    from cel_expr_python import cel

    env = cel.NewEnv(variables={name: cel.Type.DYN for name in VARIABLES})
    programs: dict[str, Any] = {}

    def evaluate(conditions: list[str], data: dict[str, Any]) -> list[list[Any]]:
        results: list[list[Any]] = []
        for text in conditions:
            try:
                program = programs.get(text)
                if program is None:
                    if len(programs) >= _PROGRAMS:
                        programs.clear()
                    program = programs[text] = env.compile(text)
                result = program.eval(data=data)
                value = result.value()
                if result.type().name().lower() == "error":
                    raise RuntimeError(str(value))
            except (RuntimeError, TypeError, ValueError, MemoryError) as exc:
                results.append([None, str(exc)[:_ERROR_LENGTH]])
                continue
            if isinstance(value, bool):
                results.append([value, None])
            else:
                results.append([None, f"evaluated to {type(value).__name__}, not a bool"])
        return results

    return evaluate


def main() -> None:
    """Answer requests on stdin until it closes."""
    _limit()
    evaluate = _evaluator()
    out = sys.stdout
    out.write("ready\n")
    out.flush()
    for line in sys.stdin.buffer:
        try:
            request = json.loads(line)
            results = evaluate(list(request["conditions"]), dict(request["data"]))
            answer = json.dumps({"results": results})
        except (ValueError, KeyError, TypeError) as exc:
            answer = json.dumps({"error": f"bad request: {exc}"[:_ERROR_LENGTH]})
        out.write(answer + "\n")
        out.flush()


if __name__ == "__main__":
    main()
