"""Verification levels: what each of the five validations does at strict, permissive, audit, skip.

The Notary Project trust-policy specification ("Signature Verification
details") names five validations and four levels; each level says, per
validation, whether a failure is *enforced* (the signature is refused), only
*logged* (verification goes on) or the validation is *skipped*:

============  =========  ============  ===================  ======  ==========
level         integrity  authenticity  authentic timestamp  expiry  revocation
============  =========  ============  ===================  ======  ==========
strict        enforce    enforce       enforce              enforce enforce
permissive    enforce    enforce       log                  log     log
audit         enforce    log           log                  log     log
skip          skip       skip          skip                 skip    skip
============  =========  ============  ===================  ======  ==========

A level may be customised ("Custom Verification Level"): ``override`` maps a
validation to ``enforce`` or ``log`` (``revocation`` also to ``skip``, the
documented way to run without revocation in an air-gapped cluster);
integrity cannot be overridden and ``skip`` cannot be customised. Pure data:
the spelling of a policy file is checked here, once, at load.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Final


class Validation(StrEnum):
    """One of the five validations, named as in the specification's ``override`` keys."""

    INTEGRITY = "integrity"
    AUTHENTICITY = "authenticity"
    AUTHENTIC_TIMESTAMP = "authenticTimestamp"
    EXPIRY = "expiry"
    REVOCATION = "revocation"


class Action(StrEnum):
    """What a failed validation does: refuse the signature, be logged, or not be run."""

    ENFORCE = "enforce"
    LOG = "log"
    SKIP = "skip"


@dataclass(frozen=True, slots=True)
class Level:
    """A named level with its action for each validation (overrides applied)."""

    name: str
    actions: tuple[tuple[Validation, Action], ...]

    def action(self, validation: Validation) -> Action:
        """What a failure of ``validation`` does at this level."""
        return dict(self.actions)[validation]

    @property
    def skipped(self) -> bool:
        """Whether nothing is verified at all (level ``skip``)."""
        return self.name == "skip"


_E, _L, _S = Action.ENFORCE, Action.LOG, Action.SKIP
_ORDER: Final = tuple(Validation)
#: The specification's table, in the order of ``Validation``.
_TABLE: Final[dict[str, tuple[Action, ...]]] = {
    "strict": (_E, _E, _E, _E, _E),
    "permissive": (_E, _E, _L, _L, _L),
    "audit": (_E, _L, _L, _L, _L),
    "skip": (_S, _S, _S, _S, _S),
}
#: The level names a policy may use.
LEVELS: Final = tuple(_TABLE)
#: What each overridable validation may be set to.
_OVERRIDABLE: Final[dict[Validation, tuple[Action, ...]]] = {
    Validation.AUTHENTICITY: (_E, _L),
    Validation.AUTHENTIC_TIMESTAMP: (_E, _L),
    Validation.EXPIRY: (_E, _L),
    Validation.REVOCATION: (_E, _L, _S),
}


def level(name: str, override: Mapping[str, str] | None = None) -> Level:
    """The level called ``name``, with ``override`` (validation -> action) applied.

    Raises ValueError with a message naming the accepted values when ``name``
    is not a level, ``override`` names a validation that cannot be overridden
    or an action it cannot take, or customises ``skip``.
    """
    if name not in _TABLE:
        raise ValueError(f"unknown verification level {name!r}; use one of {', '.join(LEVELS)}")
    actions = dict(zip(_ORDER, _TABLE[name], strict=True))
    if override:
        if name == "skip":
            raise ValueError("level skip verifies nothing and cannot be customised with override")
        for key, value in override.items():
            validation = _validation(key)
            allowed = _OVERRIDABLE[validation]
            if value not in allowed:
                raise ValueError(
                    f"override {key}: {value!r} is not allowed; use one of "
                    + ", ".join(action.value for action in allowed)
                )
            actions[validation] = Action(value)
    return Level(name, tuple(actions.items()))


def _validation(key: str) -> Validation:
    names = ", ".join(validation.value for validation in _OVERRIDABLE)
    if key == Validation.INTEGRITY.value:
        raise ValueError(f"integrity is always enforced and cannot be overridden; override {names}")
    try:
        validation = Validation(key)
    except ValueError:
        raise ValueError(f"override names unknown validation {key!r}; use {names}") from None
    return validation
