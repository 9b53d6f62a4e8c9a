"""The verification levels: the specification's table, and overrides."""

from __future__ import annotations

import pytest

from webhook.trust.notation.levels import LEVELS, Action, Validation, level

E, L, S = Action.ENFORCE, Action.LOG, Action.SKIP
IN, AU, TS, EX, RV = tuple(Validation)


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("strict", {IN: E, AU: E, TS: E, EX: E, RV: E}),
        ("permissive", {IN: E, AU: E, TS: L, EX: L, RV: L}),
        ("audit", {IN: E, AU: L, TS: L, EX: L, RV: L}),
        ("skip", {IN: S, AU: S, TS: S, EX: S, RV: S}),
    ],
)
def test_the_specification_table(name: str, expected: dict[Validation, Action]) -> None:
    chosen = level(name)
    assert {validation: chosen.action(validation) for validation in Validation} == expected
    assert chosen.skipped == (name == "skip")


def test_the_level_names() -> None:
    assert LEVELS == ("strict", "permissive", "audit", "skip")


def test_an_override_changes_only_what_it_names() -> None:
    chosen = level("strict", {"revocation": "skip", "expiry": "log"})
    assert chosen.action(RV) is S
    assert chosen.action(EX) is L
    assert chosen.action(AU) is E and chosen.action(TS) is E and chosen.action(IN) is E


def test_audit_may_enforce_authenticity() -> None:
    assert level("audit", {"authenticity": "enforce"}).action(AU) is E


@pytest.mark.parametrize(
    ("name", "override", "message"),
    [
        ("lenient", None, "unknown verification level 'lenient'; use one of strict"),
        ("strict", {"integrity": "log"}, "integrity is always enforced"),
        ("strict", {"authenticity": "skip"}, "override authenticity: 'skip' is not allowed"),
        ("strict", {"expiry": "skip"}, "use one of enforce, log"),
        ("strict", {"signature": "log"}, "unknown validation 'signature'"),
        ("skip", {"revocation": "log"}, "level skip verifies nothing"),
        ("permissive", {"revocation": "ignore"}, "use one of enforce, log, skip"),
    ],
)
def test_refusals_say_what_is_accepted(
    name: str, override: dict[str, str] | None, message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        level(name, override)
