"""ImagePolicyException documents and spec.breakGlass: loading, mistakes, expiry, lint warnings."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest

from tests.support.kube import policy_yaml
from webhook.core.errors import PolicyErrors
from webhook.core.reference import parse_reference
from webhook.policy.exceptions import breadth_warnings, end_of_day, expiry_warnings
from webhook.policy.loader import load_directory
from webhook.policy.model import BreakGlass

EXCEPTION = """\
apiVersion: trustgate.dev/v1alpha1
kind: ImagePolicyException
metadata:
  name: {name}
spec:
{spec}"""

SPEC = """\
  namespaces: ["billing", "prod-*"]
  images: ["quay.io/vendor/**"]
  policies: ["production"]
  reason: "the vendor signs from Q3 on"
  owner: team-billing
  expires: {expires}
"""


def exception_yaml(name: str = "legacy-billing", spec: str | None = None, **values: str) -> str:
    body = spec if spec is not None else SPEC.format(expires=values.get("expires", "2026-12-31"))
    return EXCEPTION.format(name=name, spec=body)


def load(tmp_path: Path, *documents: str):
    (tmp_path / "production.yaml").write_text(policy_yaml())
    (tmp_path / "exceptions.yaml").write_text("---\n".join(documents))
    return load_directory(tmp_path)


def errors_of(tmp_path: Path, *documents: str) -> list[tuple[str | None, str]]:
    with pytest.raises(PolicyErrors) as caught:
        load(tmp_path, *documents)
    return [(e.field, e.message) for e in caught.value.errors]


@pytest.mark.parametrize("expires", ["2026-12-31", '"2026-12-31"'])
def test_an_exception_compiles_with_its_end_at_midnight_utc_after_its_last_day(
    tmp_path: Path, expires: str
) -> None:
    (exception,) = load(tmp_path, exception_yaml(expires=expires)).exceptions
    assert exception.name == "legacy-billing"
    assert exception.policies == frozenset({"production"})
    assert exception.reason == "the vendor signs from Q3 on"
    assert exception.owner == "team-billing"
    assert exception.expires == dt.date(2026, 12, 31)
    assert exception.ends_at == dt.datetime(2027, 1, 1, tzinfo=dt.UTC)
    last = dt.datetime(2026, 12, 31, 23, 59, 59, 999999, tzinfo=dt.UTC)
    assert exception.active(last)
    assert not exception.active(exception.ends_at)
    # The same instant seen from another zone: it is the instant that counts.
    tokyo = dt.timezone(dt.timedelta(hours=9))
    assert not exception.active(dt.datetime(2027, 1, 1, 8, 0, tzinfo=tokyo) + dt.timedelta(hours=1))
    assert exception.active(dt.datetime(2027, 1, 1, 8, 59, tzinfo=tokyo))


def test_coverage_uses_the_policy_glob_grammar(tmp_path: Path) -> None:
    (exception,) = load(tmp_path, exception_yaml()).exceptions
    vendor = parse_reference("quay.io/vendor/tools/cli:1")
    assert exception.covers("billing", vendor)
    assert exception.covers("prod-web", vendor)
    assert not exception.covers("staging", vendor)
    assert not exception.covers("billing", parse_reference("quay.io/vendor-evil/cli:1"))
    assert not exception.covers("billing", parse_reference("evil.io/quay.io/vendor/cli:1"))
    assert exception.waives("production")
    assert not exception.waives("other")
    assert not exception.waives(None)  # defaults.noMatch needs allPolicies


def test_all_policies_waives_every_policy_and_no_match(tmp_path: Path) -> None:
    spec = SPEC.format(expires="2026-12-31").replace(
        'policies: ["production"]', "allPolicies: true"
    )
    (exception,) = load(tmp_path, exception_yaml(spec=spec)).exceptions
    assert exception.policies is None
    assert exception.waives("anything")
    assert exception.waives(None)


def _without(line: str) -> str:
    return "".join(x for x in SPEC.format(expires="2026-12-31").splitlines(True) if line not in x)


@pytest.mark.parametrize(
    ("spec", "field", "message"),
    [
        (_without("reason:"), "spec.reason", "is required"),
        (_without("expires:"), "spec.expires", "is required"),
        (
            _without("reason:") + '  reason: "   "\n',
            "spec.reason",
            "must say why the exception exists",
        ),
        (SPEC.format(expires='"2026-02-30"'), "spec.expires", "is not a valid date"),
        (SPEC.format(expires="2026-02-30"), None, "not valid YAML: day is out of range"),
        (SPEC.format(expires="2026-12-31T12:00:00Z"), "spec.expires", "without a time"),
        (SPEC.format(expires="next-friday"), "spec.expires", "must be a date, YYYY-MM-DD"),
        (SPEC.format(expires="2026-12-31") + "  allPolicies: true\n", "spec", "set only one"),
        (_without("policies:"), "spec", "needs one of policies or allPolicies"),
        (_without("images:"), "spec.images", "is required"),
        (SPEC.format(expires="2026-12-31") + "  expiry: 2027-01-01\n", "spec.expiry", "unknown"),
    ],
)
def test_mistakes_are_refused_naming_the_field(
    tmp_path: Path, spec: str, field: str, message: str
) -> None:
    ((got_field, got),) = errors_of(tmp_path, exception_yaml(spec=spec))
    assert got_field == field
    assert message in got


def test_an_exception_naming_a_missing_policy_is_refused(tmp_path: Path) -> None:
    spec = SPEC.format(expires="2026-12-31").replace(
        '["production"]', '["production", "prodution"]'
    )
    ((field, message),) = errors_of(tmp_path, exception_yaml(spec=spec))
    assert field == "spec.policies"
    assert "'prodution', which does not exist" in message


def test_an_exception_name_is_unique(tmp_path: Path) -> None:
    ((field, message),) = errors_of(tmp_path, exception_yaml(), exception_yaml())
    assert field == "metadata.name"
    assert "already used" in message


def test_exceptions_alone_are_not_a_policy_directory(tmp_path: Path) -> None:
    (tmp_path / "exceptions.yaml").write_text(
        exception_yaml(spec=_without("policies:") + "  allPolicies: true\n")
    )
    with pytest.raises(PolicyErrors, match="no ImagePolicy documents"):
        load_directory(tmp_path)


def test_editing_an_exception_changes_the_fingerprint(tmp_path: Path) -> None:
    first = load(tmp_path, exception_yaml()).fingerprint
    assert load(tmp_path, exception_yaml(expires="2027-01-31")).fingerprint != first


def test_lint_warnings_name_the_date(tmp_path: Path) -> None:
    documents = [
        exception_yaml("expired", expires="2026-03-01"),
        exception_yaml("soon", expires="2026-03-10"),
        exception_yaml("today", expires="2026-03-05"),
        exception_yaml("later", expires="2026-06-01"),
    ]
    exceptions = load(tmp_path, *documents).exceptions
    now = dt.datetime(2026, 3, 5, 12, 0, tzinfo=dt.UTC)
    warnings = expiry_warnings(exceptions, now, 14)
    assert len(warnings) == 3
    assert "'expired'" in warnings[0]
    assert "expired at the end of 2026-03-01 (UTC) and no longer applies" in warnings[0]
    assert "'today'" in warnings[1] and "2026-03-05 (UTC), today" in warnings[1]
    assert "'soon'" in warnings[2] and "2026-03-10 (UTC), in 5 days" in warnings[2]
    assert len(expiry_warnings(exceptions, now, 0)) == 2  # expired, and ending today
    assert len(expiry_warnings(exceptions, now, 4)) == 2
    assert len(expiry_warnings(exceptions, now, 5)) == 3
    assert len(expiry_warnings(exceptions, now, 90)) == 4


def test_end_of_day_is_utc_midnight() -> None:
    assert end_of_day(dt.date(2028, 2, 28)) == dt.datetime(2028, 2, 29, tzinfo=dt.UTC)


def test_break_glass_compiles_and_defaults_to_off(tmp_path: Path) -> None:
    extra = "  breakGlass: {allowed: true, groups: [oncall], users: [alice]}\n"
    (tmp_path / "a.yaml").write_text(policy_yaml("plain"))
    (tmp_path / "b.yaml").write_text(policy_yaml("glass", extra=extra))
    glass, plain = load_directory(tmp_path).policies
    assert plain.break_glass == BreakGlass()
    assert glass.break_glass == BreakGlass(True, frozenset({"oncall"}), frozenset({"alice"}))


@pytest.mark.parametrize(
    ("glass", "user", "groups", "permitted"),
    [
        (BreakGlass(), "alice", {"oncall"}, False),
        (BreakGlass(False, frozenset({"oncall"})), "alice", {"oncall"}, False),
        (BreakGlass(True), "anyone", set(), True),
        (BreakGlass(True, frozenset({"oncall"})), "bob", {"oncall", "dev"}, True),
        (BreakGlass(True, frozenset({"oncall"})), "bob", {"dev"}, False),
        (BreakGlass(True, frozenset({"oncall"})), "oncall", set(), False),
        (BreakGlass(True, users=frozenset({"alice"})), "alice", set(), True),
        (BreakGlass(True, users=frozenset({"alice"})), "alice-evil", {"alice"}, False),
    ],
)
def test_break_glass_permits(
    glass: BreakGlass, user: str, groups: set[str], permitted: bool
) -> None:
    assert glass.permits(user, frozenset(groups)) is permitted


@pytest.mark.parametrize(
    ("extra", "field"),
    [
        ("  breakGlass: {groups: [oncall]}\n", "spec.breakGlass.allowed"),
        ("  breakGlass: {allowed: yes-please}\n", "spec.breakGlass.allowed"),
        ("  breakGlass: {allowed: true, group: [oncall]}\n", "spec.breakGlass.group"),
    ],
)
def test_break_glass_mistakes(tmp_path: Path, extra: str, field: str) -> None:
    (tmp_path / "p.yaml").write_text(policy_yaml(extra=extra))
    with pytest.raises(PolicyErrors) as caught:
        load_directory(tmp_path)
    assert [e.field for e in caught.value.errors] == [field]


def test_the_set_finds_the_covering_exceptions_expired_or_not(tmp_path: Path) -> None:
    documents = [
        exception_yaml("a-old", expires="2020-01-01"),
        exception_yaml("b-new"),
        exception_yaml(
            "c-other",
            spec=SPEC.format(expires="2026-12-31").replace("quay.io/vendor/**", "x.io/**"),
        ),
    ]
    policy_set = load(tmp_path, *documents)
    vendor = parse_reference("quay.io/vendor/cli:1")
    for _ in range(2):  # the second answer comes from the memo, and is the same
        assert [e.name for e in policy_set.covering("billing", vendor)] == ["a-old", "b-new"]
        assert policy_set.covering("staging", vendor) == ()
    other = parse_reference("x.io/a/b")
    assert [e.name for e in policy_set.covering("prod-web", other)] == ["c-other"]


def test_lint_warns_about_an_exception_for_every_image(tmp_path: Path) -> None:
    wide = SPEC.format(expires="2026-12-31").replace('"quay.io/vendor/**"', '"quay.io/x", "**"')
    exceptions = load(tmp_path, exception_yaml(), exception_yaml("wide", spec=wide)).exceptions
    (warning,) = breadth_warnings(exceptions)
    assert warning.startswith("exception 'wide' (")
    assert 'covers every image (images: ["**"]) in namespaces billing, prod-*' in warning
