"""Loading a policy directory: schema, compilation, defaults and every error path."""

from __future__ import annotations

import json
import textwrap
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml
from jsonschema import Draft202012Validator

from tests.support.sigstore_instance import SigstoreInstance
from webhook.core.errors import PolicyError
from webhook.policy.globs import Glob
from webhook.policy.loader import (
    PolicyErrors,
    iter_documents,
    load_directory,
    load_file,
)
from webhook.policy.model import (
    Attestation,
    Authority,
    Freshness,
    Keyless,
    KeyRef,
    Match,
    Policy,
    Signatures,
)
from webhook.policy.schema import policy_schema, validate_document

REPO = Path(__file__).resolve().parents[3]
API = "trustgate.dev/v1alpha1"
PEM = (
    "-----BEGIN PUBLIC KEY-----\n"
    "MFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAEKc1QuK6Ok4LREdWOI3NGOYstRQB3\n"
    "U7Vn90rYlOKmJsgRat42nQWs1za20dYzZHYL1RvH2DJHHNjl5zJuYpzFRg==\n"
    "-----END PUBLIC KEY-----\n"
)


#: Another P-256 key: authorities of one list must hold distinct keys.
OTHER_PEM = (
    "-----BEGIN PUBLIC KEY-----\n"
    "MFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAEBQHWGcMhM6i8H9uQC7CsuLrS4fOT\n"
    "kEhh5/1MCJYIRxPxsXq4MdardzhSemcJ08waY0J4DV+y/lJmyEgWCxMc9g==\n"
    "-----END PUBLIC KEY-----\n"
)
PEM_FLOW = PEM.replace("\n", "\\n")
OTHER_PEM_FLOW = OTHER_PEM.replace("\n", "\\n")


def policy(name: str = "p", spec: str = "registries: [quay.io/acme/**]", *, head: str = "") -> str:
    """One ImagePolicy document; ``spec`` is the body of ``spec`` (dedented)."""
    body = textwrap.indent(textwrap.dedent(spec).strip("\n"), "  ")
    head = head or f"apiVersion: {API}\nkind: ImagePolicy\n"
    return f"{head}metadata: {{name: {name}}}\nspec:\n{body}\n"


def write(directory: Path, files: dict[str, str]) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    for name, text in files.items():
        path = directory / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return directory


FULL_SPEC = r"""
mode: audit
match:
  namespaces: ["prod-*", production]
  excludeNamespaces: [prod-sandbox]
  kinds: [Deployment, Pod]
  images: ["quay.io/**"]
registries: ["registry.redhat.io/**", "quay.io/acme/**"]
requireDigest: true
signatures:
  threshold: 2
  authorities:
    - name: release-key
      key: {file: keys/release.pub}
    - name: inline
      key:
        pem: |
          -----BEGIN PUBLIC KEY-----
          MFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAEBQHWGcMhM6i8H9uQC7CsuLrS4fOT
          kEhh5/1MCJYIRxPxsXq4MdardzhSemcJ08waY0J4DV+y/lJmyEgWCxMc9g==
          -----END PUBLIC KEY-----
    - name: ci
      keyless:
        issuer: https://token.actions.githubusercontent.com
        subjectRegExp: ^https://github\.com/acme/[^/]+/\.github/workflows/release\.yml@refs/tags/.*$
        trustedRoot: staging
freshness:
  minimumGrade: B
  sources: [{attestation: {authorities: [{name: scanner, key: {file: keys/release.pub}}]}}, pyxis]
  onUnknown: warn
  maxReportAge: 36h
  warnBeforeDays: 14
"""


# -- valid policies ---------------------------------------------------------


def test_minimal_policy_gets_the_defaults(tmp_path: Path) -> None:
    policy_set = load_directory(write(tmp_path, {"p.yaml": policy("minimal")}))
    assert policy_set.policies == (
        Policy(
            name="minimal",
            mode="enforce",
            match=Match(
                namespaces=(Glob("*"),),
                exclude_namespaces=(),
                kinds=frozenset(),
                images=(Glob("**"),),
            ),
            registries=(Glob("quay.io/acme/**"),),
            require_digest=False,
            signatures=None,
            freshness=None,
        ),
    )
    assert policy_set.policies[0].source == str(tmp_path / "p.yaml")


def test_full_policy_compiles_every_field(tmp_path: Path) -> None:
    write(tmp_path, {"prod.yaml": policy("production", FULL_SPEC), "keys/release.pub": PEM})
    (compiled,) = load_directory(tmp_path).policies
    assert compiled == Policy(
        name="production",
        mode="audit",
        match=Match(
            namespaces=(Glob("prod-*"), Glob("production")),
            exclude_namespaces=(Glob("prod-sandbox"),),
            kinds=frozenset({"Deployment", "Pod"}),
            images=(Glob("quay.io/**"),),
        ),
        registries=(Glob("registry.redhat.io/**"), Glob("quay.io/acme/**")),
        require_digest=True,
        pin_digest=True,  # the default of a policy that checks signatures
        signatures=Signatures(
            threshold=2,
            authorities=(
                Authority(
                    "release-key", key=KeyRef(pem=PEM, file=str(tmp_path / "keys/release.pub"))
                ),
                Authority("inline", key=KeyRef(pem=OTHER_PEM)),
                Authority(
                    "ci",
                    keyless=Keyless(
                        issuer="https://token.actions.githubusercontent.com",
                        subject_regexp=r"^https://github\.com/acme/[^/]+/\.github/workflows/"
                        r"release\.yml@refs/tags/.*$",
                        trusted_root="staging",
                    ),
                ),
            ),
        ),
        freshness=Freshness(
            minimum_grade="B",
            sources=("attestation", "pyxis"),
            on_unknown="warn",
            max_report_age_days=2,
            warn_before_days=14,
            report_authorities=(
                Authority("scanner", key=KeyRef(pem=PEM, file=str(tmp_path / "keys/release.pub"))),
            ),
        ),
    )


@pytest.mark.parametrize(
    ("section", "expected"),
    [
        (
            "signatures: {authorities: [{name: a, keyless: {issuer: i, subject: s}}]}",
            Signatures(1, (Authority("a", keyless=Keyless(issuer="i", subject="s")),)),
        ),
        ("freshness: {minimumGrade: A}", Freshness("A", ("pyxis",), "deny", None, None)),
        ("freshness: {minimumGrade: C, maxReportAge: 7d}", Freshness("C", max_report_age_days=7)),
        ("freshness: {minimumGrade: C, maxReportAge: 24h}", Freshness("C", max_report_age_days=1)),
        ("freshness: {minimumGrade: C, maxReportAge: 25h}", Freshness("C", max_report_age_days=2)),
        ("match: {namespaces: [dev]}", Match(namespaces=(Glob("dev"),))),
        ("match: {kinds: [CronJob]}", Match(kinds=frozenset({"CronJob"}))),
        ("match: {}", Match()),
    ],
)
def test_section_defaults(tmp_path: Path, section: str, expected: object) -> None:
    write(tmp_path, {"p.yaml": policy("p", f"registries: ['**']\n{section}")})
    (compiled,) = load_directory(tmp_path).policies
    got = {Signatures: compiled.signatures, Freshness: compiled.freshness, Match: compiled.match}
    assert got[type(expected)] == expected


@pytest.mark.parametrize(
    ("section", "expected"),
    [
        (
            "{authorities: [{name: a, key: {pem: '%s'}}]}",
            Signatures(1, (Authority("a", key=KeyRef(pem=PEM)),)),
        ),
        (
            "{authorities: [{name: a, key: {pem: '%s'}}], annotations: {team: web, env: prod},"
            " matchReference: true, perPlatform: true}",
            Signatures(
                1,
                (Authority("a", key=KeyRef(pem=PEM)),),
                annotations=(("env", "prod"), ("team", "web")),
                match_reference=True,
                per_platform=True,
            ),
        ),
        (
            "{authorities: [{name: a, key: {pem: '%s'}}], annotations: {}, matchReference: false}",
            Signatures(1, (Authority("a", key=KeyRef(pem=PEM)),)),
        ),
    ],
    ids=["defaults", "every constraint", "explicit defaults"],
)
def test_signature_constraints(tmp_path: Path, section: str, expected: Signatures) -> None:
    pem = PEM.replace("\n", "\\n")
    text = policy("p", "registries: ['**']\nsignatures: " + section.replace("%s", pem))
    write(tmp_path, {"p.yaml": text.replace("'", '"')})
    (compiled,) = load_directory(tmp_path).policies
    assert compiled.signatures == expected


def test_one_key_or_identity_may_serve_several_lists(tmp_path: Path) -> None:
    """Distinct keys are required within one list of authorities, not across lists."""
    key = f'key: {{pem: "{PEM_FLOW}"}}'
    spec = (
        "registries: ['**']\n"
        f"signatures: {{authorities: [{{name: a, {key}}}, "
        "{name: ci, keyless: {issuer: i, subject: s}}, "
        "{name: ci-any, keyless: {issuer: i, subjectRegExp: '.*'}}]}\n"
        f"attestations: [{{predicateType: 'https://x.dev/p', authorities: [{{name: a, {key}}}]}}]"
    )
    write(tmp_path, {"p.yaml": policy("p", spec)})
    (compiled,) = load_directory(tmp_path).policies
    assert compiled.signatures is not None and len(compiled.signatures.authorities) == 3


def test_key_with_tlog_required_loads_its_trusted_root(tmp_path: Path) -> None:
    authorities = (
        f'[{{name: logged, key: {{pem: "{PEM_FLOW}", tlog: required}}}}, '
        f'{{name: plain, key: {{pem: "{OTHER_PEM_FLOW}", tlog: optional}}}}]'
    )
    write(
        tmp_path,
        {"p.yaml": policy("p", f"registries: ['**']\nsignatures: {{authorities: {authorities}}}")},
    )
    signatures = load_directory(tmp_path).policies[0].signatures
    assert signatures is not None
    logged, plain = (authority.key for authority in signatures.authorities)
    assert logged is not None and plain is not None
    assert (logged.tlog_required, logged.trusted_root) == (True, "production")
    assert logged.root is not None and logged.root.log_ids
    assert logged.root_digest == logged.root.digest
    assert plain == KeyRef(pem=OTHER_PEM) and plain.root is None


def test_key_tlog_root_file_is_watched_and_fingerprinted(tmp_path: Path) -> None:
    root = tmp_path / "roots" / "trusted_root.json"
    root.parent.mkdir()
    root.write_text(SigstoreInstance().trusted_root_json())
    key = f'{{pem: "{PEM_FLOW}", tlog: required, trustedRoot: roots/trusted_root.json}}'
    spec = f"registries: ['**']\nsignatures: {{authorities: [{{name: a, key: {key}}}]}}"
    write(tmp_path, {"p.yaml": policy("p", spec)})
    before = load_directory(tmp_path)
    assert before.files == (str(root),)
    root.write_text(SigstoreInstance().trusted_root_json())
    assert load_directory(tmp_path).fingerprint != before.fingerprint


def test_attestations_compile(tmp_path: Path) -> None:
    spec = """
    registries: ['**']
    attestations:
      - predicateType: https://slsa.dev/provenance/v1
        authorities:
          - name: release
            key: {file: keys/release.pub}
      - predicateType: https://cosign.sigstore.dev/attestation/vuln/v1
        threshold: 2
        authorities:
          - name: scanner
            key: {file: keys/release.pub}
          - name: ci
            keyless: {issuer: i, subject: s}
    """
    write(tmp_path, {"p.yaml": policy("p", spec), "keys/release.pub": PEM})
    (compiled,) = load_directory(tmp_path).policies
    key = KeyRef(pem=PEM, file=str(tmp_path / "keys/release.pub"))
    assert compiled.attestations == (
        Attestation("https://slsa.dev/provenance/v1", (Authority("release", key=key),), 1),
        Attestation(
            "https://cosign.sigstore.dev/attestation/vuln/v1",
            (
                Authority("scanner", key=key),
                Authority("ci", keyless=Keyless(issuer="i", subject="s")),
            ),
            2,
        ),
    )
    assert compiled.signatures is None


def test_multi_document_files_tests_and_empty_documents(tmp_path: Path) -> None:
    test_doc = f"apiVersion: {API}\nkind: ImagePolicyTest\nmetadata: {{name: t}}\nspec: {{}}\n"
    text = "---\n# only a comment\n---\n" + policy("b") + "---\n" + test_doc + "---\n" + policy("a")
    write(tmp_path, {"many.yaml": text})
    policy_set = load_directory(tmp_path)
    assert [p.name for p in policy_set.policies] == ["a", "b"]
    assert [(f.name, i, d["kind"]) for f, i, d in iter_documents(tmp_path)] == [
        ("many.yaml", 2, "ImagePolicy"),
        ("many.yaml", 3, "ImagePolicyTest"),
        ("many.yaml", 4, "ImagePolicy"),
    ]


def test_reads_yaml_yml_and_json_at_the_top_only(tmp_path: Path) -> None:
    as_json = yaml.safe_load(policy("from-json"))
    write(
        tmp_path,
        {
            "a.yaml": policy("from-yaml"),
            "b.yml": policy("from-yml"),
            "c.json": json.dumps(as_json),
            "empty.yaml": "",
            "empty.json": "\n",
            "README.md": "not a policy",
            "release.pub": PEM,
            ".hidden.yaml": "{broken",
            "sub/nested.yaml": policy("nested"),
            "dir.yaml/x": "a directory named like a file",
        },
    )
    names = [p.name for p in load_directory(tmp_path).policies]
    assert names == ["from-json", "from-yaml", "from-yml"]


def test_configmap_layout_follows_symlinks_and_skips_hidden_dirs(tmp_path: Path) -> None:
    data = write(
        tmp_path / "..2026_01_01", {"prod.yaml": policy("prod", FULL_SPEC), "keys/release.pub": PEM}
    )
    (tmp_path / "..data").symlink_to(data.name)
    (tmp_path / "prod.yaml").symlink_to("..data/prod.yaml")
    (tmp_path / "keys").symlink_to("..data/keys")
    (compiled,) = load_directory(tmp_path).policies
    assert compiled.name == "prod"
    assert compiled.signatures is not None
    # The key path goes through the stable names, not the timestamped directory,
    # which kubelet deletes at the next update.
    assert compiled.signatures.authorities[0].key == KeyRef(
        pem=PEM, file=str(tmp_path / "keys/release.pub")
    )
    assert [f.name for f, _, _ in iter_documents(tmp_path)] == ["prod.yaml"]


def test_dangling_symlink_is_a_removed_file(tmp_path: Path) -> None:
    write(tmp_path, {"p.yaml": policy()})
    (tmp_path / "gone.yaml").symlink_to("..data/gone.yaml")
    assert len(load_directory(tmp_path)) == 1


def test_fingerprint_follows_names_and_content(tmp_path: Path) -> None:
    write(tmp_path, {"p.yaml": policy()})
    first = load_directory(tmp_path).fingerprint
    assert len(first) == 64
    assert load_directory(tmp_path).fingerprint == first
    (tmp_path / "p.yaml").write_text(policy() + "# a comment\n")
    second = load_directory(tmp_path).fingerprint
    assert second != first
    (tmp_path / "p.yaml").rename(tmp_path / "q.yaml")
    assert load_directory(tmp_path).fingerprint not in (first, second)


def test_load_file(tmp_path: Path) -> None:
    write(tmp_path, {"p.yaml": policy("a") + "---\n" + policy("b")})
    assert [p.name for p in load_file(tmp_path / "p.yaml")] == ["a", "b"]
    write(tmp_path, {"q.yaml": policy("a") + "---\n" + policy("a")})
    with pytest.raises(
        PolicyError, match=r"policy name 'a' is already used in .*q.yaml, document 1"
    ):
        load_file(tmp_path / "q.yaml")
    with pytest.raises(PolicyError, match="cannot read the file"):
        load_file(tmp_path / "missing.yaml")


def test_shipped_example_policies_load() -> None:
    names = [p.name for p in load_directory(REPO / "policies").policies]
    assert names == ["production", "rollout-audit"]


# -- broken policies --------------------------------------------------------


@dataclass(frozen=True)
class Broken:
    id: str
    files: dict[str, str]
    match: str
    file: str | None
    document: int | None = 1
    field: str | None = None


def _spec(spec: str, name: str = "p") -> dict[str, str]:
    return {"p.yaml": policy(name, spec)}


_KEYLESS = "keyless: {issuer: i, subject: s}"


def _signed(*authorities: str, threshold: int | None = None) -> dict[str, str]:
    """A policy whose authorities are the flow mappings ``authorities``."""
    section = f"threshold: {threshold}, " if threshold is not None else ""
    section += f"authorities: [{', '.join(authorities)}]"
    return _spec(f"registries: ['**']\nsignatures: {{{section}}}")


BROKEN = [
    Broken(
        "typo in a field name",
        _spec("registry: [quay.io/**]\nregistries: [quay.io/**]"),
        "unknown field; did you mean 'registries'",
        "p.yaml",
        field="spec.registry",
    ),
    Broken(
        "missing registries",
        _spec("mode: enforce"),
        "is required",
        "p.yaml",
        field="spec.registries",
    ),
    Broken(
        "empty registries",
        _spec("registries: []"),
        "must not be empty",
        "p.yaml",
        field="spec.registries",
    ),
    Broken(
        "bad mode",
        _spec("mode: dryrun\nregistries: ['**']"),
        r"must be one of enforce, audit \(got 'dryrun'\)",
        "p.yaml",
        field="spec.mode",
    ),
    Broken(
        "uppercase registry glob",
        _spec("registries: [quay.io/acme/**, Quay.io/**]"),
        "'Quay.io/\\*\\*' must be lowercase: image references are matched in lowercase",
        "p.yaml",
        field="spec.registries[1]",
    ),
    Broken(
        "empty registry glob",
        _spec("registries: ['']"),
        "must not be empty",
        "p.yaml",
        field="spec.registries[0]",
    ),
    Broken(
        "uppercase namespace glob",
        _spec("match: {namespaces: [Prod-*]}\nregistries: ['**']"),
        "'Prod-\\*' must be lowercase: Kubernetes namespace names are always lowercase$",
        "p.yaml",
        field="spec.match.namespaces[0]",
    ),
    Broken(
        "lowercase kind",
        _spec("match: {kinds: [deployment]}\nregistries: ['**']"),
        "must be a Kubernetes kind",
        "p.yaml",
        field="spec.match.kinds[0]",
    ),
    Broken(
        "registries not a list",
        _spec("registries: quay.io/**"),
        r"must be a list \(got 'quay.io/\*\*'\)",
        "p.yaml",
        field="spec.registries",
    ),
    Broken(
        "requireDigest not a boolean",
        _spec("registries: ['**']\nrequireDigest: 'yes'"),
        r"must be true or false \(got 'yes'\)",
        "p.yaml",
        field="spec.requireDigest",
    ),
    Broken(
        "wrong apiVersion",
        {"p.yaml": policy(head="apiVersion: trustgate.dev/v1\nkind: ImagePolicy\n")},
        r"must be trustgate.dev/v1alpha1 \(got 'trustgate.dev/v1'\)",
        "p.yaml",
        field="apiVersion",
    ),
    Broken(
        "missing apiVersion",
        {"p.yaml": policy(head="kind: ImagePolicy\n")},
        "is required",
        "p.yaml",
        field="apiVersion",
    ),
    Broken(
        "wrong kind",
        {"p.yaml": policy(head=f"apiVersion: {API}\nkind: Deployment\n")},
        r"must be ImagePolicy, ImagePolicyException or ImagePolicyTest \(got 'Deployment'\)",
        "p.yaml",
        field="kind",
    ),
    Broken(
        "test document with the wrong apiVersion",
        {"t.yaml": policy() + "---\napiVersion: v1\nkind: ImagePolicyTest\n"},
        "must be trustgate.dev/v1alpha1",
        "t.yaml",
        document=2,
        field="apiVersion",
    ),
    Broken(
        "uppercase policy name",
        _spec("registries: ['**']", name="Production"),
        "'Production' must be lowercase letters, digits",
        "p.yaml",
        field="metadata.name",
    ),
    Broken(
        "missing name",
        {"p.yaml": policy().replace("{name: p}", "{}")},
        "is required",
        "p.yaml",
        field="metadata.name",
    ),
    Broken(
        "bad grade",
        _spec("registries: ['**']\nfreshness: {minimumGrade: G}"),
        r"must be one of A, B, C, D, E, F \(got 'G'\)",
        "p.yaml",
        field="spec.freshness.minimumGrade",
    ),
    Broken(
        "unknown grade source",
        _spec("registries: ['**']\nfreshness: {minimumGrade: B, sources: [pyxis, trivy]}"),
        "must be one of pyxis, attestation, static",
        "p.yaml",
        field="spec.freshness.sources[1]",
    ),
    Broken(
        "repeated grade source",
        _spec("registries: ['**']\nfreshness: {minimumGrade: B, sources: [pyxis, pyxis]}"),
        "lists 'pyxis' more than once",
        "p.yaml",
        field="spec.freshness.sources",
    ),
    Broken(
        "bad duration",
        _spec("registries: ['**']\nfreshness: {minimumGrade: B, maxReportAge: 1w}"),
        "'1w' must be a whole number of days or hours",
        "p.yaml",
        field="spec.freshness.maxReportAge",
    ),
    Broken(
        "both key and keyless",
        _signed(f"{{name: a, key: {{file: release.pub}}, {_KEYLESS}}}"),
        "set only one of key and keyless",
        "p.yaml",
        field="spec.signatures.authorities[0]",
    ),
    Broken(
        "neither key nor keyless",
        _spec("registries: ['**']\nsignatures: {authorities: [{name: a}]}"),
        "needs one of key, keyless or notation",
        "p.yaml",
        field="spec.signatures.authorities[0]",
    ),
    Broken(
        "both key file and pem",
        _signed("{name: a, key: {file: k, pem: '-----BEGIN PUBLIC KEY-----'}}"),
        "set only one of file and pem",
        "p.yaml",
        field="spec.signatures.authorities[0].key",
    ),
    Broken(
        "keyless without a subject",
        _spec("registries: ['**']\nsignatures: {authorities: [{name: a, keyless: {issuer: i}}]}"),
        "needs one of subject or subjectRegExp",
        "p.yaml",
        field="spec.signatures.authorities[0].keyless",
    ),
    Broken(
        "keyless with a bad regular expression",
        _signed("{name: a, keyless: {issuer: i, subjectRegExp: '(['}}"),
        "is not a valid regular expression",
        "p.yaml",
        field="spec.signatures.authorities[0].keyless.subjectRegExp",
    ),
    Broken(
        "threshold too big",
        _signed(f"{{name: a, {_KEYLESS}}}", threshold=2),
        "is 2, more than the 1 authorities listed",
        "p.yaml",
        field="spec.signatures.threshold",
    ),
    Broken(
        "threshold zero",
        _signed(f"{{name: a, {_KEYLESS}}}", threshold=0),
        r"must be at least 1 \(got 0\)",
        "p.yaml",
        field="spec.signatures.threshold",
    ),
    Broken(
        "duplicate authority names",
        _signed(f"{{name: a, {_KEYLESS}}}", f"{{name: a, {_KEYLESS}}}"),
        "authority name 'a' is already used by authorities\\[0\\]",
        "p.yaml",
        field="spec.signatures.authorities[1].name",
    ),
    Broken(
        "two authorities holding one key, a file and inline",
        {
            **_signed(
                "{name: a, key: {file: keys/a.pub}}",
                f'{{name: b, key: {{pem: "{OTHER_PEM_FLOW}"}}}}',
                f'{{name: c, key: {{pem: "{PEM_FLOW}"}}}}',
                threshold=2,
            ),
            "keys/a.pub": PEM,
        },
        r"authority 'c' holds the same key \(sha256:[0-9a-f]{12}\.\.\.\) as authority 'a' "
        r"\(authorities\[0\]\); one signer counts once toward a threshold",
        "p.yaml",
        field="spec.signatures.authorities[2].key",
    ),
    Broken(
        "two authorities with one keyless identity, whatever the root",
        _signed(
            "{name: a, keyless: {issuer: i, subject: s}}",
            "{name: b, keyless: {issuer: i, subject: s, trustedRoot: staging}}",
        ),
        "authority 'b' holds the same keyless identity as authority 'a'",
        "p.yaml",
        field="spec.signatures.authorities[1].keyless",
    ),
    Broken(
        "two attestation authorities holding one key",
        _spec(
            "registries: ['**']\nattestations: [{predicateType: 'https://x.dev/p', "
            f'authorities: [{{name: a, key: {{pem: "{PEM_FLOW}"}}}}, '
            f'{{name: b, key: {{pem: "{PEM_FLOW}"}}}}]}}]'
        ),
        "authority 'b' holds the same key",
        "p.yaml",
        field="spec.attestations[0].authorities[1].key",
    ),
    Broken(
        "key trustedRoot without tlog: required",
        _signed(f'{{name: a, key: {{pem: "{PEM_FLOW}", trustedRoot: staging}}}}'),
        "only applies with tlog: required",
        "p.yaml",
        field="spec.signatures.authorities[0].key.trustedRoot",
    ),
    Broken(
        "key tlog in an attestation authority",
        _spec(
            "registries: ['**']\nattestations: [{predicateType: https://slsa.dev/provenance/v1, "
            "authorities: "
            "[{name: a, key: {pem: '-----BEGIN PUBLIC KEY-----', tlog: required}}]}]"
        ),
        "tlog is supported for spec.signatures authorities only",
        "p.yaml",
        field="spec.attestations[0].authorities[0].key.tlog",
    ),
    Broken(
        "key tlog with a missing trusted root",
        {
            **_signed(
                f'{{name: a, key: {{pem: "{PEM_FLOW}", tlog: required, trustedRoot: r.json}}}}'
            )
        },
        "cannot read trusted root .*r.json",
        "p.yaml",
        field="spec.signatures.authorities[0].key.trustedRoot",
    ),
    Broken(
        "missing key file",
        _spec(
            "registries: ['**']\nsignatures: {authorities: [{name: a, key: {file: keys/none.pub}}]}"
        ),
        "cannot read key file .*keys/none.pub: No such file or directory",
        "p.yaml",
        field="spec.signatures.authorities[0].key.file",
    ),
    Broken(
        "key file is a directory",
        {
            **_spec(
                "registries: ['**']\nsignatures: {authorities: [{name: a, key: {file: keys}}]}"
            ),
            "keys/x": "",
        },
        "key file .*keys is a directory",
        "p.yaml",
        field="spec.signatures.authorities[0].key.file",
    ),
    Broken(
        "duplicate policy names in two files",
        {"a.yaml": policy("prod"), "b.yaml": policy("other") + "---\n" + policy("prod")},
        "policy name 'prod' is already used in .*a.yaml, document 1",
        "b.yaml",
        document=2,
        field="metadata.name",
    ),
    Broken(
        "YAML syntax error",
        {"p.yaml": policy("a") + "---\nkind: ImagePolicy\nmetadata: {name: b\nspec: {}\n"},
        "not valid YAML at line 9, column 5: did not find expected ',' or '}'",
        "p.yaml",
        document=2,
    ),
    Broken(
        "duplicate YAML key",
        {"p.yaml": policy("a", "registries: [quay.io/**]\nregistries: ['**']")},
        "not valid YAML at line 6, column 3: found duplicate key 'registries'",
        "p.yaml",
    ),
    Broken(
        "JSON syntax error",
        {"p.json": '{"apiVersion": "trustgate.dev/v1alpha1",\n "kind": }'},
        "not valid JSON at line 2, column 10",
        "p.json",
    ),
    Broken(
        "annotation value not a string",
        _spec(
            "registries: ['**']\nsignatures: {authorities: "
            f"[{{name: a, {_KEYLESS}}}], annotations: {{env: 1}}}}"
        ),
        "must be a string",
        "p.yaml",
        field="spec.signatures.annotations.env",
    ),
    Broken(
        "matchReference not a boolean",
        _spec(
            "registries: ['**']\nsignatures: {authorities: "
            f"[{{name: a, {_KEYLESS}}}], matchReference: yes-please}}"
        ),
        "true or false",
        "p.yaml",
        field="spec.signatures.matchReference",
    ),
    Broken(
        "attestation threshold above its authorities",
        _spec(
            "registries: ['**']\nattestations: [{predicateType: 'https://x.dev/p', "
            f"threshold: 2, authorities: [{{name: a, {_KEYLESS}}}]}}]"
        ),
        "is 2, more than the 1 authorities listed",
        "p.yaml",
        field="spec.attestations[0].threshold",
    ),
    Broken(
        "attestation authority named twice",
        _spec(
            "registries: ['**']\nattestations: [{predicateType: 'https://x.dev/p', "
            f"authorities: [{{name: a, {_KEYLESS}}}, {{name: a, {_KEYLESS}}}]}}]"
        ),
        "authority name 'a' is already used by authorities\\[0\\]",
        "p.yaml",
        field="spec.attestations[0].authorities[1].name",
    ),
    Broken(
        "attestation predicate type not a URI",
        _spec(
            "registries: ['**']\nattestations: [{predicateType: slsa provenance, "
            f"authorities: [{{name: a, {_KEYLESS}}}]}}]"
        ),
        "must be a URI",
        "p.yaml",
        field="spec.attestations[0].predicateType",
    ),
    Broken(
        "attestation without authorities",
        _spec("registries: ['**']\nattestations: [{predicateType: 'https://x.dev/p'}]"),
        "is required",
        "p.yaml",
        field="spec.attestations[0].authorities",
    ),
    Broken(
        "attestations empty",
        _spec("registries: ['**']\nattestations: []"),
        "must not be empty",
        "p.yaml",
        field="spec.attestations",
    ),
    Broken(
        "non-mapping document",
        {"p.yaml": "- apiVersion: trustgate.dev/v1alpha1\n"},
        "a document must be a mapping, not list",
        "p.yaml",
    ),
    Broken(
        "spec left empty",
        {"p.yaml": f"apiVersion: {API}\nkind: ImagePolicy\nmetadata: {{name: p}}\nspec:\n"},
        r"must be a mapping \(got nothing\)",
        "p.yaml",
        field="spec",
    ),
    Broken(
        "not UTF-8",
        {"p.yaml": "\udcff"},
        r"not UTF-8 text \(byte 0\)",
        "p.yaml",
        document=None,
    ),
]


@pytest.mark.parametrize("case", BROKEN, ids=[case.id for case in BROKEN])
def test_broken_policies(tmp_path: Path, case: Broken) -> None:
    for name, text in case.files.items():
        path = tmp_path / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(text.encode("utf-8", "surrogateescape"))
    with pytest.raises(PolicyError, match=case.match) as raised:
        load_directory(tmp_path)
    error = raised.value
    assert error.file == (None if case.file is None else str(tmp_path / case.file))
    assert (error.document, error.field) == (case.document, case.field)
    assert str(error).startswith(error.location + ": ")


def test_every_error_of_a_directory_is_reported(tmp_path: Path) -> None:
    write(
        tmp_path,
        {
            "a.yaml": policy("a", "mode: dryrun\nregistries: ['**']"),
            "b.yaml": policy("b") + "---\n" + policy("c", "registries: [Quay.io/**]"),
            "c.yaml": "key: [unclosed\n",
            "d.yaml": policy("b") + "---\n" + policy("d", "mode: x\nregistries: ['**']"),
            "e.yaml": policy("fine"),
        },
    )
    with pytest.raises(PolicyErrors) as raised:
        load_directory(tmp_path)
    errors = raised.value.errors
    assert [(Path(e.file or "").name, e.document, e.field) for e in errors] == [
        ("a.yaml", 1, "spec.mode"),
        ("b.yaml", 2, "spec.registries[0]"),
        ("c.yaml", 1, None),
        ("d.yaml", 1, "metadata.name"),
        ("d.yaml", 2, "spec.mode"),
    ]
    lines = str(raised.value).splitlines()
    assert lines[0] == f"{len(errors)} policy errors:"
    assert lines[1:] == [f"  {e}" for e in errors]


@pytest.mark.parametrize(
    ("files", "match"),
    [
        ({}, "no ImagePolicy documents found in {dir}$"),
        ({"README.md": "# policies"}, "no ImagePolicy documents found in {dir}$"),
        (
            {"t.yaml": f"apiVersion: {API}\nkind: ImagePolicyTest\nmetadata: {{name: t}}\n"},
            "no ImagePolicy documents found in {dir}$",
        ),
    ],
    ids=["empty", "no policy files", "only test cases"],
)
def test_directory_without_policies(tmp_path: Path, files: dict[str, str], match: str) -> None:
    write(tmp_path, files)
    with pytest.raises(PolicyError, match=match.format(dir=tmp_path)) as raised:
        load_directory(tmp_path)
    assert raised.value.file is None


def test_missing_directory(tmp_path: Path) -> None:
    missing = tmp_path / "nope"
    with pytest.raises(
        PolicyError,
        match=f"no ImagePolicy documents found in {missing}: the directory does not exist",
    ):
        load_directory(missing)
    with pytest.raises(PolicyError, match="does not exist"):
        list(iter_documents(missing))


def test_a_file_is_not_a_directory(tmp_path: Path) -> None:
    file = write(tmp_path, {"p.yaml": policy()}) / "p.yaml"
    with pytest.raises(PolicyError, match="is not a directory"):
        load_directory(file)


def test_unreadable_file(tmp_path: Path) -> None:
    # A regular file whose read fails even for root: page 0 of a process's memory.
    (tmp_path / "p.yaml").symlink_to("/proc/self/mem")
    with pytest.raises(PolicyError, match=r"p\.yaml: cannot read the file: Input/output error"):
        load_directory(tmp_path)


def test_file_that_is_not_utf8(tmp_path: Path) -> None:
    (tmp_path / "p.yaml").write_bytes(b"apiVersion: \xff\n")
    with pytest.raises(PolicyError, match=r"p.yaml: not UTF-8 text \(byte 12\)"):
        load_directory(tmp_path)


# -- the schema -------------------------------------------------------------


def _properties(schema: Any, path: str = "") -> list[tuple[str, Any]]:
    """Every property schema, with its path, through $defs too."""
    found = []
    if isinstance(schema, dict):
        for name, sub in schema.get("properties", {}).items():
            found.append((f"{path}.{name}".lstrip("."), sub))
        for key, sub in schema.items():
            found.extend(_properties(sub, f"{path}.{key}".lstrip(".")))
    elif isinstance(schema, list):
        for number, sub in enumerate(schema):
            found.extend(_properties(sub, f"{path}[{number}]"))
    return found


def test_every_property_has_a_description() -> None:
    schema = policy_schema()
    properties = _properties(schema)
    assert len(properties) > 30
    missing = [path for path, sub in properties if not sub.get("description")]
    assert missing == []


def test_schema_is_valid_and_strict() -> None:
    schema = policy_schema()
    Draft202012Validator.check_schema(schema)
    assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"

    def objects(node: Any) -> list[dict[str, Any]]:
        if isinstance(node, list):
            return [o for item in node for o in objects(item)]
        if not isinstance(node, dict):
            return []
        own = [node] if node.get("type") == "object" else []
        return own + [o for value in node.values() for o in objects(value)]

    assert all(o.get("additionalProperties") is False for o in objects(schema))


def test_policy_schema_is_a_copy() -> None:
    policy_schema()["properties"].clear()
    assert "spec" in policy_schema()["properties"]


def test_validate_document_without_a_file() -> None:
    document = yaml.safe_load(policy("p", "registries: [Quay.io/**]"))
    with pytest.raises(PolicyError, match="must be lowercase") as raised:
        validate_document(document, file=None, document=None)
    assert raised.value.location == "field spec.registries[0]"
    validate_document(yaml.safe_load(policy()), file=None, document=None)


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("not a key\n", "key file .*release.pub"),
        ("-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----\n", "not a valid public key"),
    ],
)
def test_key_files_are_read_and_checked_at_load(tmp_path: Path, content: str, message: str) -> None:
    write(tmp_path, {"prod.yaml": policy("production", FULL_SPEC), "keys/release.pub": content})
    with pytest.raises(PolicyError, match=message) as info:
        load_directory(tmp_path)
    assert info.value.field == "spec.signatures.authorities[0].key.file"
