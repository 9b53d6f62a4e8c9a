"""Whatever a policy directory holds, loading it raises nothing but PolicyError.

Hypothesis writes ImagePolicy, ImagePolicyException and ImagePolicyTest
documents: valid ones with one field replaced by a random value (any type,
far dates, huge numbers, odd strings, deep structures, non-string keys),
random structures, and YAML text with hostile shapes spliced in (alias bombs,
recursive aliases, 3,000 levels of nesting, duplicate keys, tags). The loader,
the test-case reader and lint's message must end in a PolicyError or a
policy set, never in another exception, and quickly: an alias bomb expanded
would take hours.
"""

from __future__ import annotations

import copy
import datetime as dt
import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.support.cosign import generate_key, public_pem
from webhook.cli.policytest import load_cases
from webhook.core.errors import PolicyError
from webhook.policy.documents import MAX_DEPTH, MAX_NODES
from webhook.policy.loader import load_directory

API = "trustgate.dev/v1alpha1"
PEM = public_pem(generate_key("ecdsa-p256"))

POLICY: dict[str, Any] = {
    "apiVersion": API,
    "kind": "ImagePolicy",
    "metadata": {"name": "production"},
    "spec": {
        "mode": "enforce",
        "match": {"namespaces": ["prod-*"], "images": ["**"], "kinds": ["Pod"]},
        "registries": ["quay.io/acme/**"],
        "requireDigest": False,
        "freshness": {
            "minimumGrade": "B",
            "sources": ["pyxis"],
            "onUnknown": "deny",
            "maxReportAge": "7d",
            "warnBeforeDays": 3,
        },
        "breakGlass": {"allowed": True, "groups": ["sre"]},
        "signatures": {
            "threshold": 1,
            "annotations": {"env": "prod"},
            "authorities": [
                {"name": "release", "key": {"pem": PEM}},
                {
                    "name": "ci",
                    "keyless": {
                        "issuer": "https://token.actions.githubusercontent.com",
                        "subjectRegExp": "https://github\\.com/acme/.*",
                    },
                },
            ],
        },
        "attestations": [
            {
                "predicateType": "https://slsa.dev/provenance/v1",
                "authorities": [{"name": "release", "key": {"pem": PEM}}],
                "conditions": ["predicate.builder.id == 'ci'"],
            }
        ],
    },
}
EXCEPTION: dict[str, Any] = {
    "apiVersion": API,
    "kind": "ImagePolicyException",
    "metadata": {"name": "legacy"},
    "spec": {
        "namespaces": ["billing"],
        "images": ["quay.io/vendor/**"],
        "policies": ["production"],
        "reason": "the vendor signs from Q3 on",
        "owner": "team-billing",
        "expires": dt.date(2026, 12, 31),
    },
}
TEST: dict[str, Any] = {
    "apiVersion": API,
    "kind": "ImagePolicyTest",
    "metadata": {"name": "cases"},
    "spec": {
        "cases": [
            {
                "name": "acme runs",
                "namespace": "prod-a",
                "image": "quay.io/acme/api:1",
                "expect": "allowed",
                "user": "alice",
                "groups": ["sre"],
            },
            {
                "name": "a Deployment with a provenance statement",
                "namespace": "prod-a",
                "expect": "warned",
                "reason": "attestation",
                "waived": "exception",
                "resource": {
                    "apiVersion": "apps/v1",
                    "kind": "Deployment",
                    "metadata": {"name": "web"},
                    "spec": {"template": {"spec": {"containers": [{"image": "quay.io/acme/x"}]}}},
                },
                "attestations": [
                    {"predicateType": "https://slsa.dev/provenance/v1", "predicate": {"a": [1]}}
                ],
            },
        ]
    },
}
TEMPLATES = (POLICY, EXCEPTION, TEST)

ODD_STRINGS = st.sampled_from(
    [
        "",
        " ",
        "\x00",
        "\u202e",
        "*",
        "**",
        "[",
        "a" * 10_000,
        "9999-12-31",
        "0000-00-00",
        "+10000-01-01",
        "9999-12-31T23:59:59Z",
        "2026-02-30",
        "99999999999999999999999999d",
        "0h",
        "-1d",
        "enforce",
        "F",
        "quay.io/acme/**",
        "https://evil/x",
        "size(x) > 1 ? 'a' : [",
        "(" * 500,
        "[" * 3000,
        "a." * 2000 + "b",
        "size(" * 300 + "x" + ")" * 300,
        "[z-a]",
        "${HOME}",
    ]
)
NUMBERS = st.one_of(
    st.integers(),
    st.sampled_from([2**63, -(2**63), 10**300, -(10**4000), 10**4000]),
    st.floats(allow_nan=True, allow_infinity=True),
)
DATES = st.one_of(
    st.dates(),
    st.sampled_from([dt.date.max, dt.date.min, dt.date(9999, 12, 30)]),
    st.datetimes(timezones=st.sampled_from([dt.UTC, dt.timezone(dt.timedelta(hours=-23))])),
)
SCALARS = st.one_of(
    st.none(),
    st.booleans(),
    NUMBERS,
    st.text(max_size=30),
    ODD_STRINGS,
    DATES,
    st.binary(max_size=4),
)
KEYS = st.one_of(
    st.text(max_size=12),
    st.sampled_from(["spec", "name", "expires"]),
    st.integers(),
    DATES,
    st.none(),
)
VALUES = st.recursive(
    SCALARS,
    lambda children: st.one_of(
        st.lists(children, max_size=4),
        st.dictionaries(KEYS, children, max_size=4),
        st.frozensets(st.integers(), max_size=3),
    ),
    max_leaves=20,
)


def _paths(value: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    """Every path into ``value``: its mapping keys and list indexes."""
    found = [prefix]
    if isinstance(value, dict):
        for key, item in value.items():
            found += _paths(item, (*prefix, key))
    elif isinstance(value, list):
        for number, item in enumerate(value):
            found += _paths(item, (*prefix, number))
    return found


@st.composite
def mutated(draw: st.DrawFn) -> Any:
    """A valid document with the value at one path replaced, or a random structure."""
    if draw(st.integers(0, 9)) == 0:
        return draw(VALUES)
    document = copy.deepcopy(draw(st.sampled_from(TEMPLATES)))
    for _ in range(draw(st.integers(1, 3))):
        path = draw(st.sampled_from(_paths(document)))
        if not path:
            continue
        parent = document
        for part in path[:-1]:
            parent = parent[part]
        parent[path[-1]] = draw(VALUES)
    return document


def _python_data(value: Any) -> Any:
    """``value`` with frozensets as sets: YAML writes those as !!set."""
    if isinstance(value, frozenset):
        return set(value)
    if isinstance(value, dict):
        return {k: _python_data(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_python_data(v) for v in value]
    return value


def _as_yaml(document: Any) -> str | None:
    try:
        return yaml.safe_dump(_python_data(document), allow_unicode=True)
    except (ValueError, yaml.YAMLError):  # a number past the conversion limit
        return None


def _as_json(document: Any) -> str | None:
    try:
        return json.dumps(document, default=str)
    except (TypeError, ValueError):
        return None


#: YAML shapes spliced into a valid document's text in place of a value.
HOSTILE = [
    # Nine levels of ten aliases: 10**9 strings once expanded.
    "&a0 [x, x, x, x, x, x, x, x, x, x]\n"
    + "".join(f"x{n}: &a{n} [{', '.join([f'*a{n - 1}'] * 10)}]\n" for n in range(1, 10)),
    "&r [*r, *r]",
    "&m {a: *m}",
    "[" * 3000 + "]" * 3000,
    "{a: " * 3000 + "b" + "}" * 3000,
    "- " * 900 + "x",
    "1" * 5000,
    "!!binary aGVsbG8=",
    "!!set {a, b}",
    "!!omap [a: 1, b: 2]",
    "!!pairs [a: 1, a: 2]",
    "!!python/object:os.system {}",
    "!!timestamp 9999-12-31T23:59:59-23:59",
    "9999-12-31",
    "0000-01-01",
    "10000-01-01",
    "2026-02-30",
    ".inf",
    ".nan",
    "0x7fffffffffffffffffffffff",
    '"\\ud800"',
    "{? [a, b]: c}",
    "{1: a, true: b, null: c, 2026-01-01: d}",
    "{a: 1, a: 2}",
    "*undefined",
    "!custom x",
]
HOSTILE_TEXT = [
    "a: &x {b: 1}\nc:\n  <<: *x\n  <<: *x\n",
    '{"a": "\\ud800"}',
    "[" * 100_000,
    "\ufeff\ufeff",
]


@st.composite
def spliced(draw: st.DrawFn) -> str:
    """A valid document's YAML with one value replaced by a hostile shape."""
    template = draw(st.sampled_from(TEMPLATES))
    text = yaml.safe_dump(template)
    lines = text.splitlines()
    candidates = [
        n for n, line in enumerate(lines) if ": " in line or line.lstrip().startswith("- ")
    ]
    number = draw(st.sampled_from(candidates))
    line = lines[number]
    shape = draw(st.sampled_from(HOSTILE))
    head = line.split(": ", 1)[0] + ": " if ": " in line else line.split("- ", 1)[0] + "- "
    if "\n" in shape:  # a block of definitions: put it first, use its last anchor here
        return shape + "---\n" + "\n".join([*lines[:number], head + "*a9", *lines[number + 1 :]])
    return "\n".join([*lines[:number], head + shape, *lines[number + 1 :]])


def _load_everything(directory: Path) -> None:
    """Load as the server and lint do; only PolicyError may escape, and its text must print."""
    for reader in (load_directory, load_cases):
        try:
            reader(directory)
        except PolicyError as exc:
            str(exc).encode("utf-8")


def _write(directory: Path, name: str, text: str) -> None:
    for old in directory.iterdir():
        old.unlink()
    (directory / name).write_text(text, encoding="utf-8", errors="surrogatepass")


#: Generous: a document here loads in milliseconds; an expanded alias bomb takes hours.
_BOUND = 30.0
_SETTINGS = settings(
    max_examples=150,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)


@_SETTINGS
@given(document=mutated(), as_json=st.booleans())
def test_a_mutated_document_raises_only_policy_errors(
    tmp_path_factory: pytest.TempPathFactory, document: Any, as_json: bool
) -> None:
    directory = tmp_path_factory.mktemp("policies")
    text = _as_json(document) if as_json else _as_yaml(document)
    if text is None:
        return
    _write(directory, "p.json" if as_json else "p.yaml", text)
    started = time.monotonic()
    _load_everything(directory)
    assert time.monotonic() - started < _BOUND


@_SETTINGS
@given(text=st.one_of(spliced(), st.sampled_from(HOSTILE_TEXT)), as_json=st.booleans())
def test_hostile_yaml_raises_only_policy_errors(
    tmp_path_factory: pytest.TempPathFactory, text: str, as_json: bool
) -> None:
    directory = tmp_path_factory.mktemp("policies")
    _write(directory, "p.json" if as_json else "p.yaml", text)
    started = time.monotonic()
    _load_everything(directory)
    assert time.monotonic() - started < _BOUND


def _errors(tmp_path: Path, text: str) -> str:
    (tmp_path / "p.yaml").write_text(text)
    with pytest.raises(PolicyError) as caught:
        load_directory(tmp_path)
    return str(caught.value)


def _policy_with(field_line: str) -> str:
    text = yaml.safe_dump(POLICY)
    return text.replace("  requireDigest: false", f"  requireDigest: {field_line}")


@pytest.mark.parametrize(
    ("shape", "says"),
    [
        (HOSTILE[0].replace("\n", "\n  "), "values (counting each use of a YAML alias)"),
        ("&r [*r, *r]", "nested more than"),
        ("[" * 3000 + "]" * 3000, "nesting depth"),
        ("[" * 990 + "]" * 990, "nested"),
        ("[" * (MAX_DEPTH + 1) + "]" * (MAX_DEPTH + 1), "nested more than 64 levels"),
        ("!!binary aGVsbG8=", "holds a bytes value"),
        ("!!set {a, b}", "holds a set value"),
        ("{1: a}", "has the key 1, which is not a string"),
        ('"\\ud800"', "invalid Unicode"),
        ("1" * 5000, "not valid YAML"),
    ],
)
def test_each_hostile_shape_has_a_message_naming_the_file(
    tmp_path: Path, shape: str, says: str
) -> None:
    message = _errors(tmp_path, _policy_with(shape))
    assert says in message
    assert str(tmp_path / "p.yaml") in message


def test_a_lone_surrogate_in_json_is_refused(tmp_path: Path) -> None:
    (tmp_path / "p.json").write_text(json.dumps(POLICY).replace("prod-*", "\\ud800"))
    with pytest.raises(
        PolicyError, match=r"field spec.match.namespaces\[0\]: holds text that is not valid Unicode"
    ):
        load_directory(tmp_path)


def test_the_node_bound_is_far_above_a_real_policy() -> None:
    assert MAX_NODES >= 100_000
    assert MAX_DEPTH >= 32


def _exception_yaml(expires: str) -> str:
    text = yaml.safe_dump(POLICY) + "---\n" + yaml.safe_dump(EXCEPTION)
    return text.replace("expires: 2026-12-31", f"expires: {expires}")


@pytest.mark.parametrize("expires", ["9999-12-31", "'9999-12-31'"])
def test_a_far_expiry_is_a_policy_error_naming_the_field(tmp_path: Path, expires: str) -> None:
    message = _errors(tmp_path, _exception_yaml(expires))
    assert "document 2, field spec.expires: 9999-12-31 is too far ahead" in message


def test_the_day_before_the_last_representable_one_loads(tmp_path: Path) -> None:
    (tmp_path / "p.yaml").write_text(_exception_yaml("9999-12-30"))
    (exception,) = load_directory(tmp_path).exceptions
    assert exception.ends_at == dt.datetime(9999, 12, 31, tzinfo=dt.UTC)


def test_lint_of_a_far_expiry_exits_2_without_a_traceback(tmp_path: Path) -> None:
    (tmp_path / "p.yaml").write_text(_exception_yaml("9999-12-31"))
    done = subprocess.run(
        [sys.executable, "-m", "webhook.cli.main", "policy", "lint", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 2, done.stderr
    assert "Traceback" not in done.stderr
    assert "field spec.expires: 9999-12-31 is too far ahead" in done.stderr


@_SETTINGS
@given(expires=st.one_of(DATES, ODD_STRINGS, NUMBERS, st.text(max_size=12)))
def test_any_expiry_loads_or_is_a_policy_error_on_spec_expires(
    tmp_path_factory: pytest.TempPathFactory, expires: Any
) -> None:
    directory = tmp_path_factory.mktemp("policies")
    exception = {**EXCEPTION, "spec": {**EXCEPTION["spec"], "expires": expires}}
    text = _as_yaml(POLICY) + "---\n" + (_as_yaml(exception) or "")
    _write(directory, "p.yaml", text)
    try:
        load_directory(directory)
    except PolicyError as exc:
        assert "spec.expires" in str(exc) or "not valid YAML" in str(exc)


@pytest.mark.parametrize(
    ("field", "value", "says"),
    [
        (
            "warnBeforeDays",
            "10000000000",
            "field spec.freshness.warnBeforeDays: must be at most 36500",
        ),
        ("maxReportAge", "9999999999d", "field spec.freshness.maxReportAge: '9999999999d' must be"),
    ],
)
def test_numbers_no_review_could_use_are_policy_errors(
    tmp_path: Path, field: str, value: str, says: str
) -> None:
    """Such a value loaded, then failed every review it applied to (timedelta overflows)."""
    text = yaml.safe_dump(POLICY).replace(f"    {field}: ", f"    {field}: {value} #")
    assert says in _errors(tmp_path, text)
