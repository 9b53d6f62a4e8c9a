"""CLI conventions: help, examples, exit codes, --version, and --output only where honoured."""

from __future__ import annotations

import argparse
import json
import shlex
from pathlib import Path
from xml.etree import ElementTree as ET

import pytest

from tests.support.cli import REPO, run
from tests.unit.core.test_failures import closed_port
from webhook.cli.main import build_parser


def _commands(
    parser: argparse.ArgumentParser, path: tuple[str, ...] = ()
) -> list[tuple[tuple[str, ...], argparse.ArgumentParser]]:
    found = []
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                found.append(((*path, name), sub))
                found.extend(_commands(sub, (*path, name)))
    return found


COMMANDS = _commands(build_parser({}))


def _options(parser: argparse.ArgumentParser) -> set[str]:
    return {flag for action in parser._actions for flag in action.option_strings}


def test_every_command_is_listed() -> None:
    names = {" ".join(path) for path, _ in COMMANDS}
    assert {"serve", "review", "check", "audit", "grade", "policy lint", "policy test"} <= names
    assert {"policy schema", "certs generate"} <= names


@pytest.mark.parametrize(("path", "parser"), COMMANDS, ids=[" ".join(p) for p, _ in COMMANDS])
def test_help_has_a_description_an_example_and_exit_codes(
    path: tuple[str, ...], parser: argparse.ArgumentParser
) -> None:
    assert parser.description and parser.description.endswith(".")
    text = parser.format_help()
    assert "\nexample:\n  trustgate " in text
    assert "\nexit codes:\n  0  " in text and "\n  2  bad usage or input" in text
    # Exit code 2 names what can go wrong with this command: policies only where it reads them.
    reads_policies = any("--policies" in a.option_strings for a in parser._actions)
    codes = text.split("\nexit codes:\n")[1]
    assert ("polic" in codes.split("\n  2  ")[1]) == reads_policies, codes
    # The example is a command line this parser accepts, for this very command.
    example = text.split("example:\n  ")[1].splitlines()[0]
    argv = shlex.split(example.split(" > ")[0])[1:]
    assert tuple(argv[: len(path)]) == path
    if not any(isinstance(a, argparse._SubParsersAction) for a in parser._actions):
        build_parser({}).parse_args(argv)


def test_version(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        build_parser({}).parse_args(["--version"])
    assert exited.value.code == 0
    out = capsys.readouterr().out
    assert out.startswith("trustgate ") and out.strip() != "trustgate"


@pytest.mark.parametrize(
    ("command", "flags"),
    [
        ("review", {"--output"}),
        ("serve", {"--output"}),
        ("policy schema", {"--output", "--policies", "--config"}),
        ("certs generate", {"--policies", "--config"}),
    ],
)
def test_flags_only_where_they_apply(command: str, flags: set[str]) -> None:
    parser = dict((" ".join(p), s) for p, s in COMMANDS)[command]
    assert not flags & _options(parser)


def _write_policies(tmp_path: Path) -> Path:
    policies = tmp_path / "policies"
    policies.mkdir()
    (policies / "p.yaml").write_text(
        "apiVersion: trustgate.dev/v1alpha1\nkind: ImagePolicy\nmetadata: {name: p}\n"
        "spec:\n  match: {namespaces: [prod-*]}\n  registries: [quay.io/acme/**]\n"
        "---\napiVersion: trustgate.dev/v1alpha1\nkind: ImagePolicyTest\nmetadata: {name: t}\n"
        "spec:\n  cases:\n"
        "    - {name: refused, namespace: prod-a, image: nginx, expect: denied}\n"
        "    - {name: wrong, namespace: prod-a, image: nginx, expect: allowed}\n"
    )
    return policies


def _argv(command: str, tmp_path: Path, policies: Path) -> list[str]:
    image = f"127.0.0.1:{closed_port()}/acme/api:1"
    return {
        "check": ["check", "-n", "prod-a", "nginx", "--policies", str(policies)],
        "audit": ["audit", str(REPO / "examples"), "--policies", str(policies)],
        "grade": ["grade", image, "--policies", str(policies)],
        "policy lint": ["policy", "lint", str(policies)],
        "policy test": ["policy", "test", str(policies)],
        "certs generate": ["certs", "generate", "--out", str(tmp_path / "certs"), "--force"],
    }[command]


OUTPUTS = [
    (" ".join(path), fmt)
    for path, parser in COMMANDS
    for action in parser._actions
    if "--output" in action.option_strings
    for fmt in action.choices or ()
]


@pytest.mark.parametrize(("command", "fmt"), OUTPUTS)
def test_every_listed_output_format_is_honoured(
    command: str, fmt: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = _argv(command, tmp_path, _write_policies(tmp_path))
    _, out, _ = run(capsys, *argv, "--output", fmt)
    assert out.strip(), (command, fmt)
    if fmt == "json":
        json.loads(out)
    elif fmt == "junit":
        assert ET.fromstring(out.encode()).tag == "testsuite"
    else:
        with pytest.raises(ValueError):
            json.loads(out)
        assert not out.startswith("<?xml")


def test_policy_test_junit_names_failures(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    policies = _write_policies(tmp_path)
    code, out, _ = run(capsys, "policy", "test", str(policies), "-o", "junit")
    assert code == 1
    suite = ET.fromstring(out.encode())
    assert (suite.get("tests"), suite.get("failures")) == ("2", "1")
    (failure,) = suite.iter("failure")
    assert failure.get("message") == "expected allowed, got denied"
    assert "not in the registry allowlist" in (failure.text or "")


def test_lint_and_test_take_one_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    policies = _write_policies(tmp_path)
    (policies / "other.yaml").write_text("not: [valid")  # another file's mistake is not this one's
    code, out, _ = run(capsys, "policy", "lint", str(policies / "p.yaml"))
    assert (code, out) == (0, f"{policies / 'p.yaml'}: 1 policy and 2 test cases are valid\n")
    cases = REPO / "policies" / "tests.yaml"
    code, out, _ = run(capsys, "policy", "test", str(cases))
    assert code == 0 and " 0 failed" in out
    code, _, err = run(capsys, "policy", "lint", str(policies / "other.yaml"))
    assert code == 2 and "other.yaml" in err
