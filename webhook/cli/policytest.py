"""Policy test cases kept beside the policies (``kind: ImagePolicyTest``).

A case names an image (or a whole resource), a namespace and the expected
decision; ``trustgate policy test DIR`` runs every case through the same
``decide`` as the webhook, so a green run means the deployed webhook agrees.

A case may also supply ``attestations``: in-toto statements taken as verified
for its images, in place of what the registry holds. The policy's attestation
entries then read them, predicate type and ``conditions`` alike, through the
same evaluator as the webhook; signatures are not checked for them, so such a
case tests the policy's rules, not the signing.

A case may name who asks: ``user`` and ``groups`` become the request's
``userInfo``, so that a policy's ``breakGlass`` can be tested with a
``resource`` carrying the annotation. Without them the request has no user
and no groups, as ``trustgate review`` of a review without ``userInfo``; only
a policy that lets every user break glass honours the annotation then. A case
may expect ``waived: break-glass`` (or ``exception``): admitted with warnings
because that waiver set aside a denial.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any
from xml.etree import ElementTree as ET

from jsonschema import Draft202012Validator

from webhook.admission.review import decide
from webhook.checks import CheckContext
from webhook.cli.audit import pod_for_images, request_for
from webhook.core.errors import CheckFailed, PolicyError, PolicyErrors
from webhook.core.reference import ImageRef
from webhook.engine import Engine
from webhook.policy.documents import parse, policy_files, read
from webhook.policy.model import Policy
from webhook.policy.schema import schema_errors
from webhook.signatures.conditions import Evaluator, held_note, holding

#: What a case may expect to have waived a denial (``Waiver.by``).
WAIVED_BY = ("break-glass", "exception")

_CASE = {
    "type": "object",
    "additionalProperties": False,
    "required": ["name", "expect"],
    "properties": {
        "name": {"type": "string", "minLength": 1},
        "namespace": {"type": "string"},
        "kind": {"type": "string", "minLength": 1},
        "image": {"type": "string", "minLength": 1},
        "images": {"type": "array", "items": {"type": "string"}, "minItems": 1},
        "resource": {"type": "object", "required": ["kind"]},
        "file": {"type": "string", "minLength": 1},
        "expect": {"enum": ["allowed", "warned", "denied"]},
        "reason": {"type": "string", "minLength": 1},
        "user": {"type": "string", "minLength": 1},
        "groups": {"type": "array", "items": {"type": "string", "minLength": 1}},
        "waived": {"enum": list(WAIVED_BY)},
        "attestations": {
            "type": "array",
            "minItems": 1,
            "items": {
                "type": "object",
                "additionalProperties": False,
                "required": ["predicateType", "predicate"],
                "properties": {
                    "predicateType": {"type": "string", "minLength": 1},
                    "subject": {"type": "array"},
                    "predicate": {"type": "object"},
                },
            },
        },
    },
    "oneOf": [
        {"required": ["image"]},
        {"required": ["images"]},
        {"required": ["resource"]},
        {"required": ["file"]},
    ],
    # A waiver admits with a warning; any other expectation contradicts it.
    "if": {"required": ["waived"]},
    "then": {"properties": {"expect": {"const": "warned"}}},
}
_SCHEMA = {
    "type": "object",
    "required": ["apiVersion", "kind", "metadata", "spec"],
    "properties": {
        "metadata": {"type": "object", "required": ["name"]},
        "spec": {
            "type": "object",
            "additionalProperties": False,
            "required": ["cases"],
            "properties": {"cases": {"type": "array", "minItems": 1, "items": _CASE}},
        },
    },
}


@dataclass(frozen=True, slots=True)
class Case:
    """One test case, ready to run."""

    suite: str
    name: str
    file: str
    namespace: str
    kind: str
    object: Mapping[str, Any]
    expect: str
    reason: str | None
    attestations: tuple[Mapping[str, Any], ...] = ()
    user: str = ""
    groups: tuple[str, ...] = ()
    waived: str | None = None

    @property
    def expected(self) -> str:
        """The expectation as failures show it: ``warned waived by break-glass with "..."``."""
        want = self.expect
        if self.waived:
            want += f" waived by {self.waived}"
        if self.reason:
            want += f' with "{self.reason}"'
        return want


@dataclass(frozen=True, slots=True)
class CaseResult:
    """What one case expected and what the policies decided."""

    case: Case
    got: str
    messages: tuple[str, ...]
    #: What waived a denial in the decision: ``break-glass``, ``exception``.
    waived: tuple[str, ...] = ()

    @property
    def passed(self) -> bool:
        """The decision matches, the expected waiver (if any) admitted the
        object, and the reason (if any) appears in a message."""
        if self.got != self.case.expect:
            return False
        if self.case.waived is not None and self.case.waived not in self.waived:
            return False
        return self.case.reason is None or any(self.case.reason in m for m in self.messages)

    @property
    def outcome(self) -> str:
        """What was decided, as failures show it: ``warned waived by exception``."""
        if self.waived:
            return f"{self.got} waived by {' and '.join(self.waived)}"
        return self.got


def _resource(case: Mapping[str, Any], file: Path, index: int, field: str) -> Mapping[str, Any]:
    if "resource" in case:
        return dict(case["resource"])
    if "file" in case:
        path = file.parent / case["file"]
        try:
            documents = [document for _, _, document in parse(path, read(path))]
        except PolicyError as exc:
            message = f"cannot read resource file {path}: {exc.message}"
            raise PolicyError(message, file=str(file), document=index, field=field) from exc
        loaded = documents[0] if len(documents) == 1 else None
        if not isinstance(loaded, dict) or "kind" not in loaded:
            message = f"{path} must hold one Kubernetes object"
            raise PolicyError(message, file=str(file), document=index, field=field)
        return loaded
    images = case.get("images") or [case["image"]]
    return pod_for_images(images, namespace=case.get("namespace", "default"))


def load_cases(directory: Path) -> list[Case]:
    """Every ImagePolicyTest case in ``directory``, or in the one file ``directory`` names.

    Every file and every case is read before anything is raised, so that
    ``policy lint`` shows all the mistakes of a run at once.

    Raises:
        PolicyError: naming the file, document and field of an invalid case;
            PolicyErrors listing each, in file order, when there are several.
    """
    cases: list[Case] = []
    errors: list[PolicyError] = []
    validator = Draft202012Validator(_SCHEMA)
    files = [directory] if directory.is_file() else policy_files(directory)
    for file in files:
        try:
            for _, index, document in parse(file, read(file)):
                if isinstance(document, dict) and document.get("kind") == "ImagePolicyTest":
                    cases.extend(_suite(validator, document, file, index, errors))
        except PolicyError as exc:
            errors.append(exc)
    if errors:
        raise errors[0] if len(errors) == 1 else PolicyErrors(errors)
    return cases


def _suite(
    validator: Draft202012Validator,
    document: dict[str, Any],
    file: Path,
    index: int,
    errors: list[PolicyError],
) -> list[Case]:
    """The cases of one ImagePolicyTest document; its mistakes go to ``errors``."""
    found = schema_errors(validator, document, file=str(file), document=index)
    if found:
        errors.extend(found)
        return []
    cases = []
    suite = str(document["metadata"]["name"])
    for number, raw in enumerate(document["spec"]["cases"]):
        try:
            obj = _resource(raw, file, index, f"spec.cases[{number}]")
        except PolicyError as exc:
            errors.append(exc)
            continue
        cases.append(
            Case(
                suite=suite,
                name=raw["name"],
                file=str(file),
                namespace=raw.get("namespace", "default"),
                kind=raw.get("kind", str(obj.get("kind", "Pod"))),
                object=obj,
                expect=raw["expect"],
                reason=raw.get("reason"),
                attestations=tuple(raw.get("attestations", ())),
                user=raw.get("user", ""),
                groups=tuple(raw.get("groups", ())),
                waived=raw.get("waived"),
            )
        )
    return cases


def run_case(engine: Engine, case: Case) -> CaseResult:
    """Decide ``case`` exactly as the webhook would, asked by the case's user."""
    request = request_for(case.object, namespace=case.namespace, uid=f"test-{case.name}")
    request = replace(request, kind=case.kind, user=case.user, groups=case.groups)
    decision = decide(engine, request)
    messages = tuple(m for v in decision.verdicts for m in v.denials + v.warnings)
    if not decision.verdicts and decision.message:
        messages = (decision.message,)
    waived = tuple(dict.fromkeys(w.by for w in decision.waivers))
    return CaseResult(case, decision.label, messages, waived)


class SuppliedAttestations:
    """The attestation check of a case that supplies its statements.

    Each ``spec.attestations`` entry needs a supplied statement of its
    predicate type for which every condition holds; the statement's subject
    defaults to the image's digest.
    """

    name = "attestations"
    pure = False

    def __init__(self, statements: Sequence[Mapping[str, Any]], evaluator: Evaluator) -> None:
        self._statements = statements
        self._evaluator = evaluator

    def run(self, image: ImageRef, policy: Policy, context: CheckContext) -> str | None:
        """Return which entries the supplied statements meet; raise CheckFailed naming
        the first entry they do not meet and why."""
        digest = image.digest or context.resolve()
        notes = []
        for requirement in policy.attestations:
            kind = requirement.predicate_type
            statements = [
                _statement(raw, image.repository, digest)
                for raw in self._statements
                if raw["predicateType"] == kind
            ]
            if not statements:
                raise CheckFailed(
                    f"attestation check failed for predicate type {kind}: "
                    "the test case supplies no statement of this type",
                    check=self.name,
                )
            kept, reason = holding(
                self._evaluator,
                requirement.conditions,
                statements,
                (image.repository, digest),
                context.deadline,
            )
            if not kept:
                raise CheckFailed(
                    f"attestation check failed for predicate type {kind}: {reason}",
                    check=self.name,
                )
            notes.append(f"{kind} supplied by the test case{held_note(requirement.conditions)}")
        return "; ".join(notes) or None


def _statement(raw: Mapping[str, Any], repository: str, digest: str) -> dict[str, Any]:
    algorithm, _, value = digest.partition(":")
    subject = [{"name": repository, "digest": {algorithm: value}}]
    return {
        "_type": "https://in-toto.io/Statement/v1",
        "subject": raw.get("subject", subject),
        "predicateType": raw["predicateType"],
        "predicate": raw["predicate"],
    }


def junit(results: Sequence[CaseResult]) -> str:
    """``results`` as a JUnit XML report: one test case per case, failed when it did not pass."""
    failures = [r for r in results if not r.passed]
    suite = ET.Element(
        "testsuite",
        name="trustgate policy test",
        tests=str(len(results)),
        failures=str(len(failures)),
        errors="0",
        skipped="0",
    )
    for result in results:
        case = ET.SubElement(
            suite, "testcase", classname=f"{result.case.file}:{result.case.suite}",
            name=result.case.name,
        )  # fmt: skip
        if not result.passed:
            message = f"expected {result.case.expected}, got {result.outcome}"
            failure = ET.SubElement(case, "failure", message=message)
            failure.text = "\n".join(result.messages)
        elif result.messages:
            ET.SubElement(case, "system-out").text = "\n".join(result.messages)
    ET.indent(suite)
    return (
        '<?xml version="1.0" encoding="UTF-8"?>\n' + ET.tostring(suite, encoding="unicode") + "\n"
    )
