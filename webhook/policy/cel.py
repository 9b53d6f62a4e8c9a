"""CEL conditions of ``spec.attestations[].conditions``, compiled when policies load.

A condition is a CEL expression (the language of Kubernetes
ValidatingAdmissionPolicy and Kyverno's image policies) over the verified
in-toto statement (``predicateType``, ``subject``, ``predicate``) and the image
(``image.repository``, ``image.digest``). It is parsed and type-checked here,
through Google's CEL runtime (``cel-expr-python``, cel-cpp), so that a policy
whose expression does not compile, names an unknown variable or cannot be a
bool does not load, with the line and column of the mistake.

Compiling is cheap and bounded (the parser refuses nesting deeper than 32 and
the text is at most MAX_LENGTH characters). Evaluating is not, so it happens
in a separate process with a cost limit (``signatures/conditions.py``).
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass
from typing import Any

#: The variables a condition may name; signatures/celworker.py declares the same.
VARIABLES = ("predicateType", "subject", "predicate", "image")
#: Characters of one expression.
MAX_LENGTH = 2048
#: Conditions of one attestation entry.
MAX_CONDITIONS = 32

_POSITION = re.compile(r"ERROR: <input>:(-?\d+):(-?\d+): ([^\n]*)")
_STATUS = re.compile(r"^[A-Z_]+: |\s*\[[A-Z_]+\]$")


@dataclass(frozen=True, slots=True)
class Condition:
    """One compiled condition; ``text`` is what the policy says, shown in every message."""

    text: str


class ConditionError(ValueError):
    """An expression that does not compile, with where (1-based line and column)."""

    def __init__(self, message: str, line: int | None = None, column: int | None = None) -> None:
        where = f"line {line}, column {column}: " if line and column else ""
        super().__init__(where + message)
        self.line = line
        self.column = column


@functools.cache
def _env() -> Any:
    from cel_expr_python import cel

    return cel.NewEnv(variables={name: cel.Type.DYN for name in VARIABLES})


def compile_condition(text: str) -> Condition:
    """Parse and type-check ``text``.

    Raises:
        ConditionError: the expression is too long, does not parse, names an
            unknown variable or function, or has a type other than bool.
    """
    if len(text) > MAX_LENGTH:
        raise ConditionError(f"the expression is {len(text)} characters; at most {MAX_LENGTH}")
    if not text.strip():
        raise ConditionError("the expression is empty")
    try:
        compiled = _env().compile(text)
    except RuntimeError as exc:
        raise _error(str(exc)) from None
    kind = compiled.return_type().name().lower()
    if kind not in ("bool", "dyn"):
        raise ConditionError(f"the expression is of type {kind}, not bool")
    return Condition(text)


def _error(message: str) -> ConditionError:
    """The first error of cel-cpp's message, with its position."""
    found = _POSITION.search(message)
    if found is None:
        # e.g. "CANCELLED: Expression recursion limit exceeded. limit: 32 [CANCELLED]"
        first = message.strip().splitlines()[0] if message.strip() else "invalid expression"
        return ConditionError(_STATUS.sub("", first).strip())
    line, column = int(found.group(1)), int(found.group(2))
    if line < 1 or column < 1:
        return ConditionError(found.group(3).strip())
    return ConditionError(found.group(3).strip(), line, column)
