"""The policy's signature rules, as each signature form must meet them."""

from __future__ import annotations

from typing import Any

import pytest

from webhook.signatures.rules import (
    annotations_problem,
    message_signature_problem,
    reference_problem,
    statement_problem,
)

DIGEST = "sha256:" + "a" * 64
OTHER = "sha256:" + "b" * 64
REPO = "registry.acme.test/acme/api"
ENV = {"env": "prod"}


def subject(name: str | None = REPO, digest: str = DIGEST, **annotations: Any) -> dict[str, Any]:
    entry: dict[str, Any] = {"digest": {"sha256": digest[7:]}}
    if name is not None:
        entry["name"] = name
    if annotations:
        entry["annotations"] = annotations
    return entry


def statement(*subjects: dict[str, Any]) -> dict[str, Any]:
    return {"_type": "https://in-toto.io/Statement/v1", "subject": list(subjects)}


@pytest.mark.parametrize(
    ("subjects", "annotations", "reference", "problem"),
    [
        ([subject(env="prod")], ENV, True, None),
        ([subject(f"{REPO}:v1", env="prod", team="web")], ENV, True, None),
        ([subject(None)], {}, False, None),
        ([subject(None)], {}, True, f"signed statement names repository none, not {REPO}"),
        (
            [subject("registry.acme.test/acme/other", env="prod")],
            ENV,
            True,
            f"signed statement names repository registry.acme.test/acme/other, not {REPO}",
        ),
        ([subject()], ENV, False, "signed statement missing annotation env=prod"),
        ([subject(env="dev")], ENV, False, "signed statement annotation env=dev, not env=prod"),
        ([subject(env=1)], ENV, False, "env=a non-string value, not env=prod"),
        # The name and annotations must be those of the entry naming the digest.
        (
            [subject("registry.acme.test/acme/other", env="prod"), subject(digest=OTHER)],
            ENV,
            True,
            "names repository registry.acme.test/acme/other",
        ),
        ([subject(digest=OTHER, env="prod")], ENV, True, f"about another subject, not {DIGEST}"),
        # Any one entry meeting every rule is enough.
        ([subject(env="dev"), subject(env="prod")], ENV, True, None),
    ],
)
def test_statement_problem(
    subjects: list[dict[str, Any]],
    annotations: dict[str, str],
    reference: bool,
    problem: str | None,
) -> None:
    found = statement_problem(
        statement(*subjects),
        image_digest=DIGEST,
        repository=REPO,
        required_annotations=annotations,
        check_reference=reference,
    )
    if problem is None:
        assert found is None
    else:
        assert found is not None and problem in found


def test_message_signature_counts_only_without_rules_it_cannot_carry() -> None:
    assert message_signature_problem(required_annotations={}, check_reference=False) is None
    assert message_signature_problem(required_annotations=ENV, check_reference=False) == (
        "a message-signature bundle carries no annotations, and the policy requires env=prod"
    )
    assert message_signature_problem(required_annotations={}, check_reference=True) == (
        "a message-signature bundle names no repository, and the policy sets matchReference"
    )


def test_annotations_and_reference_problems() -> None:
    assert annotations_problem({"env": "prod", "x": "y"}, ENV) is None
    assert annotations_problem({}, ENV) == "missing annotation env=prod"
    assert reference_problem(f"{REPO}@{DIGEST}", REPO) is None
    assert reference_problem("", REPO) == f"signed for no repository, not {REPO}"
    assert reference_problem("not a reference!", REPO) is not None
