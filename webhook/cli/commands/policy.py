"""``trustgate policy lint | test | schema``: work on policies without judging images.

Separate because these commands read policy files and their test cases, not
workloads: they validate, run ImagePolicyTest cases, or print the schema.
"""

from __future__ import annotations

import argparse
import json
import sys
from datetime import UTC, datetime
from pathlib import Path

from webhook.cli.commands.signing import add_signing, signature_status
from webhook.cli.common import EXIT_DENIED, EXIT_OK, EXIT_USAGE, policy_directory, whole
from webhook.cli.policytest import Case, SuppliedAttestations, junit, load_cases, run_case
from webhook.cli.usage import about, output_option
from webhook.config import Config
from webhook.core.counts import counted
from webhook.core.errors import PolicyError, PolicyErrors, TrustgateError
from webhook.engine import Engine
from webhook.policy.exceptions import WARN_DAYS, breadth_warnings, expiry_warnings
from webhook.policy.loader import load_directory, load_file
from webhook.policy.model import Policy, PolicyException
from webhook.policy.schema import policy_schema
from webhook.services import build_engine, build_evaluator


def add_policy(
    commands: argparse._SubParsersAction[argparse.ArgumentParser],
    common: argparse.ArgumentParser,
) -> None:
    """Add ``policy`` and its subcommands ``lint``, ``test`` and ``schema``."""
    policy = commands.add_parser(
        "policy",
        **about(
            "lint, test, sign, verify or describe policies",
            "trustgate policy lint policies/",
            "the command succeeded",
            "see the command's own --help",
            usage="an unknown flag; see the command's own --help",
        ),
    )
    policy_commands = policy.add_subparsers(dest="policy_command", required=True)
    lint = policy_commands.add_parser(
        "lint",
        parents=[common],
        **about(
            "validate the policies, exceptions and test cases of a directory, or of one file",
            "trustgate policy lint policies/production.yaml",
            "valid",
            "the signature is not valid and policies.signature.required is true",
        ),
    )
    lint.set_defaults(handler=_lint)
    lint.add_argument(
        "directory", nargs="?", type=Path, metavar="PATH", help="directory or file (--policies)"
    )
    lint.add_argument(
        "--warn-days",
        type=_days,
        default=WARN_DAYS,
        metavar="N",
        help=f"warn about exceptions that expire within N days (default {WARN_DAYS})",
    )
    output_option(lint, ("table", "json"))
    test = policy_commands.add_parser(
        "test",
        parents=[common],
        **about(
            "run ImagePolicyTest cases: those of a directory against its policies, or those "
            "of one file against the policies of the directory holding it",
            "trustgate policy test policies/ --output junit > policy-tests.xml",
            "every case passed",
            "a case failed, or there are none",
        ),
    )
    test.set_defaults(handler=_test)
    test.add_argument(
        "directory", nargs="?", type=Path, metavar="PATH", help="directory or file (--policies)"
    )
    output_option(test, ("table", "json", "junit"))
    schema = policy_commands.add_parser(
        "schema",
        **about(
            "print the ImagePolicy JSON Schema (draft 2020-12), for editors",
            "trustgate policy schema > docs/policy.schema.json",
            "printed",
            usage="an unknown flag",
        ),
    )
    schema.set_defaults(handler=_schema)
    add_signing(policy_commands, common)


def _days(text: str) -> int:
    days = whole(text, 0)
    if days is None:
        raise argparse.ArgumentTypeError(
            f"must be a whole number of days, 0 or more (got {text!r})"
        )
    return days


def _lint(args: argparse.Namespace, config: Config) -> int:
    try:
        directory = args.directory or policy_directory(args)
        policies, exceptions, cases = _linted(directory)
    except TrustgateError as exc:
        if args.output != "json":
            raise
        # A JSON consumer gets JSON on failure too: every mistake, where it is, what it is.
        print(json.dumps({"valid": False, "errors": _as_json(exc), "warnings": []}))
        return EXIT_USAGE
    warnings = expiry_warnings(exceptions, datetime.now(UTC), args.warn_days)
    warnings += breadth_warnings(exceptions)
    signature = signature_status(directory, config)
    failed = signature is not None and signature.required and not signature.valid
    if args.output == "json":
        print(
            json.dumps(
                {
                    "valid": True,
                    "errors": [],
                    "policies": [p.name for p in policies],
                    "exceptions": [e.name for e in exceptions],
                    "testCases": len(cases),
                    "warnings": warnings,
                    **({"signature": signature.as_json()} if signature else {}),
                }
            )
        )
    else:
        found = counted(len(policies), "policy", "policies")
        if exceptions:
            found += f", {counted(len(exceptions), 'exception')}"
        print(f"{directory}: {found} and {counted(len(cases), 'test case')} are valid")
        for warning in warnings:
            print(f"warning: {warning}")
        if signature is not None:
            print(signature.text)
    return EXIT_DENIED if failed else EXIT_OK


def _linted(
    directory: Path,
) -> tuple[list[Policy], tuple[PolicyException, ...], list[Case]]:
    """The policies, exceptions and test cases of ``directory`` (or of one file).

    Policies and test cases are both read before anything is raised, so one run
    shows every mistake of every file.

    Raises:
        PolicyError: the one mistake; PolicyErrors listing each, in file order.
        TrustgateError: neither policies nor test cases were found.
    """
    errors: list[PolicyError] = []
    cases: list[Case] = []
    policies: list[Policy] = []
    exceptions: tuple[PolicyException, ...] = ()
    try:
        cases = load_cases(directory)
    except PolicyError as exc:
        errors.extend(_each(exc))
    try:
        if directory.is_file():
            policies = load_file(directory)
        else:
            policy_set = load_directory(directory)
            policies, exceptions = list(policy_set.policies), policy_set.exceptions
    except PolicyError as exc:
        errors.extend(_each(exc))
    # A file that does not parse is reported by both readers: once is enough.
    unique = list({str(error): error for error in errors}.values())
    unique.sort(key=lambda error: (error.file or "", error.document or 0))
    if unique:
        raise unique[0] if len(unique) == 1 else PolicyErrors(unique)
    if not policies and not cases:
        raise TrustgateError(f"{directory}: no ImagePolicy or ImagePolicyTest documents")
    return policies, exceptions, cases


def _each(error: PolicyError) -> list[PolicyError]:
    return error.errors if isinstance(error, PolicyErrors) else [error]


def _as_json(error: TrustgateError) -> list[dict[str, object]]:
    if not isinstance(error, PolicyError):
        return [{"file": None, "document": None, "field": None, "message": str(error)}]
    return [
        {"file": e.file, "document": e.document, "field": e.field, "message": e.message}
        for e in _each(error)
    ]


def _test(args: argparse.Namespace, config: Config) -> int:
    directory = args.directory or policy_directory(args)
    # One file's cases run against the policies deployed beside it: its directory's.
    policy_set = load_directory(directory.parent if directory.is_file() else directory)
    engine = build_engine(lambda: policy_set, config)
    evaluator = build_evaluator(config)

    def engine_for(case: Case) -> Engine:
        if not case.attestations:
            return engine
        supplied = SuppliedAttestations(case.attestations, evaluator)
        return build_engine(lambda: policy_set, config, replace={"attestations": supplied})

    try:
        results = [run_case(engine_for(case), case) for case in load_cases(directory)]
    finally:
        evaluator.close()
    failed = [r for r in results if not r.passed]
    if args.output == "junit":
        sys.stdout.write(junit(results))
    elif args.output == "json":
        print(
            json.dumps(
                [
                    {
                        "suite": r.case.suite,
                        "case": r.case.name,
                        "expect": r.case.expect,
                        "got": r.got,
                        "waived": list(r.waived),
                        "passed": r.passed,
                        "messages": list(r.messages),
                    }
                    for r in results
                ],
                indent=2,
            )
        )
    else:
        for r in results:
            status = "PASS" if r.passed else "FAIL"
            line = f"{status}  {r.case.suite} / {r.case.name}"
            if not r.passed:
                line += f": expected {r.case.expected}, got {r.outcome}"
                line += "".join(f"\n        {m}" for m in r.messages)
            print(line)
        print(f"{len(results) - len(failed)} passed, {len(failed)} failed")
    if not results:
        print(f"no ImagePolicyTest cases found in {directory}", file=sys.stderr)
        return EXIT_DENIED
    return EXIT_DENIED if failed else EXIT_OK


def _schema(args: argparse.Namespace, config: Config) -> int:
    print(json.dumps(policy_schema(), indent=2))
    return EXIT_OK
