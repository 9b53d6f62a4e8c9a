"""Notation authorities in policy files: stores, identities and levels read at load time.

Every mistake is a PolicyError at its field, collected so that ``policy lint``
lists them all; a changed trust store is another policy set; the example
policy lints.
"""

from __future__ import annotations

import json
import os
import textwrap
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.serialization import Encoding

from tests.support.cosign import generate_key, public_pem
from tests.support.docblocks import blocks
from tests.support.notation_pki import FIXTURES, Authority, self_signed
from webhook.cli.main import main
from webhook.core.errors import PolicyError, PolicyErrors
from webhook.policy.loader import load_directory
from webhook.policy.model import NotationRef, PolicySet
from webhook.policy.store import PolicyStore
from webhook.signatures.check import trust_fingerprint
from webhook.trust.notation.levels import Action, Validation
from webhook.trust.notation.truststore import MAX_FILE_BYTES

REPO = Path(__file__).resolve().parents[3]
ROOT = Authority.root("wabbit root")
OTHER = Authority.root("other root")
SIGNING_AUTHORITY = Authority.root("signing authority root")
IDENTITY = "x509.subject: C=US, ST=WA, O=acme-rabbits, CN=builder"
WHERE = "spec.signatures.authorities[0].notation"


def pem(*authorities: Authority) -> str:
    return "".join(a.cert.public_bytes(Encoding.PEM).decode() for a in authorities)


def policy(*authorities: str, threshold: int = 1, name: str = "wabbit") -> str:
    """A policy whose spec.signatures lists ``authorities`` (YAML flow mappings)."""
    listed = "".join(f"\n      - {authority}" for authority in authorities)
    return textwrap.dedent(
        f"""\
        apiVersion: trustgate.dev/v1alpha1
        kind: ImagePolicy
        metadata: {{name: {name}}}
        spec:
          registries: ["**"]
          signatures:
            threshold: {threshold}
            authorities:"""
    ) + listed + "\n"  # fmt: skip


def notation(section: str, name: str = "wabbit") -> str:
    return f"{{name: {name}, notation: {section}}}"


def directory(tmp_path: Path, *authorities: str, **files: str | bytes) -> Path:
    """``tmp_path`` with the policy (when given) and ``files`` (``certs__ca_pem`` is
    certs/ca.pem)."""
    if authorities:
        (tmp_path / "policy.yaml").write_text(policy(*authorities))
    for spelt, content in files.items():
        path = tmp_path / spelt.replace("__", "/").replace("_pem", ".pem").replace("_cer", ".cer")
        path.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(content, bytes):
            path.write_bytes(content)
        else:
            path.write_text(content)
    return tmp_path


def loaded(policies: PolicySet, number: int = 0) -> NotationRef:
    signatures = policies.policies[0].signatures
    assert signatures is not None
    ref = signatures.authorities[number].notation
    assert ref is not None
    return ref


# -- what loads ---------------------------------------------------------------


def test_the_contract_loads_with_its_store_identities_and_level(tmp_path: Path) -> None:
    section = f'{{trustStore: certs/ca.pem, trustedIdentities: ["{IDENTITY}"], level: strict}}'
    policies = load_directory(directory(tmp_path, notation(section), certs__ca_pem=pem(ROOT)))
    ref = loaded(policies)
    assert ref.store.ca == (ROOT.cert,)
    assert ref.store.signing_authority == () and ref.store.tsa == ()
    assert not ref.identities.any
    assert [p.text for p in ref.identities.patterns] == [IDENTITY]
    assert ref.level.name == "strict"
    assert ref.level.action(Validation.REVOCATION) is Action.ENFORCE
    assert ref.verify_timestamp == "always"
    assert ref.files == (str(tmp_path / "certs" / "ca.pem"),)
    assert ref.store_digest.startswith("sha256:")
    assert policies.files == ref.files, "the store is watched like a key file"


def test_lists_der_inline_pem_and_the_other_store_kinds(tmp_path: Path) -> None:
    der = OTHER.cert.public_bytes(Encoding.DER)
    inline = json.dumps(pem(Authority.root("inline")))
    signing = json.dumps(pem(SIGNING_AUTHORITY))
    tsa = FIXTURES / "globalsignRoot.cer"
    section = (
        f"{{trustStore: [certs/ca.pem, certs/other.cer, {{pem: {inline}}}], "
        f"signingAuthorityStore: {{pem: {signing}}}, tsaStore: [{tsa}], "
        'trustedIdentities: ["*"], verifyTimestamp: afterCertExpiry}'
    )
    files = {"certs__ca_pem": pem(ROOT, ROOT), "certs__other_cer": der}
    ref = loaded(load_directory(directory(tmp_path, notation(section), **files)))
    assert ref.store.ca[:2] == (ROOT.cert, OTHER.cert) and len(ref.store.ca) == 3
    assert ref.store.signing_authority == (SIGNING_AUTHORITY.cert,)
    assert len(ref.store.tsa) == 1 and "GlobalSign" in ref.store.tsa[0].subject.rfc4514_string()
    assert ref.identities.any
    assert ref.verify_timestamp == "afterCertExpiry"
    # Inline PEM is no file to watch; the files are, by absolute path.
    certs = tmp_path / "certs"
    tsa = str(FIXTURES / "globalsignRoot.cer")
    assert ref.files == (str(certs / "ca.pem"), str(certs / "other.cer"), tsa)


def test_a_signing_authority_store_alone_suffices(tmp_path: Path) -> None:
    section = '{signingAuthorityStore: sa.pem, trustedIdentities: ["*"]}'
    files = directory(tmp_path, notation(section), sa_pem=pem(SIGNING_AUTHORITY))
    ref = loaded(load_directory(files))
    assert ref.store.ca == () and ref.store.signing_authority == (SIGNING_AUTHORITY.cert,)


def test_a_self_signed_signing_certificate_may_be_the_store(tmp_path: Path) -> None:
    signing = self_signed("alpine")
    text = signing.chain[0].public_bytes(Encoding.PEM).decode()
    section = '{trustStore: alpine.pem, trustedIdentities: ["*"]}'
    ref = loaded(load_directory(directory(tmp_path, notation(section), alpine_pem=text)))
    assert ref.store.ca == signing.chain


@pytest.mark.parametrize(
    ("spelling", "level", "changed"),
    [
        ("", "strict", {}),
        ("level: permissive", "permissive", {Validation.REVOCATION: Action.LOG}),
        ("level: audit", "audit", {Validation.AUTHENTICITY: Action.LOG}),
        (
            "level: strict, override: {revocation: skip}",
            "strict",
            {Validation.REVOCATION: Action.SKIP, Validation.EXPIRY: Action.ENFORCE},
        ),
        (
            "level: audit, override: {authenticity: enforce, expiry: enforce}",
            "audit",
            {Validation.AUTHENTICITY: Action.ENFORCE, Validation.REVOCATION: Action.LOG},
        ),
    ],
)
def test_levels_and_overrides(
    tmp_path: Path, spelling: str, level: str, changed: dict[Validation, Action]
) -> None:
    extra = f", {spelling}" if spelling else ""
    section = f'{{trustStore: ca.pem, trustedIdentities: ["*"]{extra}}}'
    ref = loaded(load_directory(directory(tmp_path, notation(section), ca_pem=pem(ROOT))))
    assert ref.level.name == level
    assert ref.level.action(Validation.INTEGRITY) is Action.ENFORCE
    for validation, action in changed.items():
        assert ref.level.action(validation) is action


def test_level_skip_takes_nothing_and_trusts_nobody(tmp_path: Path) -> None:
    ref = loaded(load_directory(directory(tmp_path, notation("{level: skip}"))))
    assert ref.level.skipped
    assert ref.store.anchors("notary.x509") == () and ref.files == ()
    assert not ref.identities.any and ref.identities.patterns == ()


def test_one_threshold_across_key_keyless_and_notation(tmp_path: Path) -> None:
    authorities = (
        "{name: release, key: {file: release.pub}}",
        "{name: ci, keyless: {issuer: https://issuer.test, subject: ci@acme.test}}",
        notation('{trustStore: ca.pem, trustedIdentities: ["*"]}'),
    )
    (tmp_path / "policy.yaml").write_text(policy(*authorities, threshold=3))
    (tmp_path / "release.pub").write_text(public_pem(generate_key("ecdsa-p256")))
    (tmp_path / "ca.pem").write_text(pem(ROOT))
    signatures = load_directory(tmp_path).policies[0].signatures
    assert signatures is not None and signatures.threshold == 3
    kinds = [(a.key, a.keyless, a.notation) for a in signatures.authorities]
    assert [tuple(part is not None for part in kind) for kind in kinds] == [
        (True, False, False),
        (False, True, False),
        (False, False, True),
    ]


def test_stores_resolve_against_the_policy_file_as_named(tmp_path: Path) -> None:
    """A ConfigMap mount: policy and certificate are links into ``..data``, which moves."""
    data = tmp_path / "..2026_12_06"
    data.mkdir()
    section = '{trustStore: ca.pem, trustedIdentities: ["*"]}'
    (data / "policy.yaml").write_text(policy(notation(section)))
    (data / "ca.pem").write_text(pem(ROOT))
    (tmp_path / "..data").symlink_to(data.name)
    for name in ("policy.yaml", "ca.pem"):
        (tmp_path / name).symlink_to(f"..data/{name}")
    policies = load_directory(tmp_path)
    assert policies.files == (str(tmp_path / "ca.pem"),)


# -- what does not load --------------------------------------------------------


@dataclass(frozen=True)
class Broken:
    """A notation section (or whole authority) that fails, where, and why."""

    id: str
    authority: str
    field: str
    message: str
    files: dict[str, str | bytes] = field(default_factory=dict)


CA = {"ca_pem": pem(ROOT)}
BROKEN = [
    Broken(
        "key and notation",
        '{name: wabbit, key: {pem: "-----BEGIN PUBLIC KEY-----"}, notation: {level: skip}}',
        "spec.signatures.authorities[0]",
        "set only one of key and notation",
    ),
    Broken(
        "keyless and notation",
        "{name: w, keyless: {issuer: https://i.test, subject: a@b.test}, notation: {level: skip}}",
        "spec.signatures.authorities[0]",
        "set only one of keyless and notation",
    ),
    Broken(
        "missing file",
        notation('{trustStore: certs/missing.pem, trustedIdentities: ["*"]}'),
        f"{WHERE}.trustStore",
        r"cannot read trust store .*certs/missing\.pem: No such file or directory; check the path",
    ),
    Broken(
        "missing file in a list",
        notation('{trustStore: [ca.pem, gone.pem], trustedIdentities: ["*"]}'),
        f"{WHERE}.trustStore[1]",
        r"cannot read trust store .*gone\.pem",
        CA,
    ),
    Broken(
        "a directory",
        notation('{trustStore: certs, trustedIdentities: ["*"]}'),
        f"{WHERE}.trustStore",
        r"trust store .*certs is a directory; name a certificate file",
        {"certs__ca_pem": pem(ROOT)},
    ),
    Broken(
        "not a certificate",
        notation('{tsaStore: tsa.pem, trustStore: ca.pem, trustedIdentities: ["*"]}'),
        f"{WHERE}.tsaStore",
        r"tsa\.pem: neither PEM certificates nor a DER certificate",
        {**CA, "tsa_pem": "hello\n"},
    ),
    Broken(
        "an empty file",
        notation('{trustStore: ca.pem, trustedIdentities: ["*"]}'),
        f"{WHERE}.trustStore",
        r"trust store .*ca\.pem is empty",
        {"ca_pem": "\n"},
    ),
    Broken(
        "a file too large",
        notation('{trustStore: ca.pem, trustedIdentities: ["*"]}'),
        f"{WHERE}.trustStore",
        rf"trust store .*ca\.pem is over {MAX_FILE_BYTES} bytes",
        {"ca_pem": pem(ROOT) + "#" * MAX_FILE_BYTES},
    ),
    Broken(
        "a leaf that anchors nothing",
        notation('{trustStore: leaf.pem, trustedIdentities: ["*"]}'),
        f"{WHERE}.trustStore",
        r"ca certificate .*CN=builder.* is neither a CA nor self-signed",
        {"leaf_pem": ROOT.leaf("builder").chain[0].public_bytes(Encoding.PEM).decode()},
    ),
    Broken(
        "inline PEM that is no certificate",
        notation(
            '{trustStore: {pem: "-----BEGIN CERTIFICATE-----\\nAAAA\\n-----END CERTIFICATE-----"}, '
            'trustedIdentities: ["*"]}'
        ),
        f"{WHERE}.trustStore.pem",
        r"inline PEM: no valid PEM CERTIFICATE block",
    ),
    Broken(
        "inline text that is no PEM",
        notation('{trustStore: {pem: "MIIB..."}, trustedIdentities: ["*"]}'),
        f"{WHERE}.trustStore.pem",
        r"must be PEM certificates",
    ),
    Broken(
        "an empty list",
        notation('{trustStore: [], trustedIdentities: ["*"]}'),
        f"{WHERE}.trustStore",
        "must not be empty",
    ),
    Broken(
        "a number",
        notation('{trustStore: 5, trustedIdentities: ["*"]}'),
        f"{WHERE}.trustStore",
        "must be a string or a mapping or a list",
    ),
    Broken(
        "no store that anchors signatures",
        notation('{tsaStore: ca.pem, trustedIdentities: ["*"]}'),
        WHERE,
        "needs trustStore .* or signingAuthorityStore",
        CA,
    ),
    Broken(
        "no identities",
        notation("{trustStore: ca.pem}"),
        f"{WHERE}.trustedIdentities",
        r'is required: the x509.subject identities to trust .* or \["\*"\]',
        CA,
    ),
    Broken(
        "an identity without O",
        notation('{trustStore: ca.pem, trustedIdentities: ["*", "x509.subject: C=US, ST=WA"]}'),
        f"{WHERE}.trustedIdentities[1]",
        "has no O; it must name C, ST",
        CA,
    ),
    Broken(
        "an identity without its prefix",
        notation('{trustStore: ca.pem, trustedIdentities: ["CN=builder, O=acme, C=US, ST=WA"]}'),
        f"{WHERE}.trustedIdentities[0]",
        "is neither",
        CA,
    ),
    Broken(
        "the wildcard beside an identity",
        notation(f'{{trustStore: ca.pem, trustedIdentities: ["*", "{IDENTITY}"]}}'),
        f"{WHERE}.trustedIdentities",
        "cannot be listed with others",
        CA,
    ),
    Broken(
        "overlapping identities",
        notation(
            '{trustStore: ca.pem, trustedIdentities: ["x509.subject: C=US, ST=WA, O=acme-rabbits", '
            f'"{IDENTITY}"]}}'
        ),
        f"{WHERE}.trustedIdentities",
        "overlap",
        CA,
    ),
    Broken(
        "an unknown level",
        notation('{trustStore: ca.pem, trustedIdentities: ["*"], level: strictest}'),
        f"{WHERE}.level",
        "must be one of strict, permissive, audit, skip",
        CA,
    ),
    Broken(
        "integrity overridden",
        notation('{trustStore: ca.pem, trustedIdentities: ["*"], override: {integrity: log}}'),
        f"{WHERE}.override.integrity",
        "integrity is always enforced and cannot be overridden",
        CA,
    ),
    Broken(
        "authenticity skipped",
        notation('{trustStore: ca.pem, trustedIdentities: ["*"], override: {authenticity: skip}}'),
        f"{WHERE}.override.authenticity",
        "must be one of enforce, log",
        CA,
    ),
    Broken(
        "a misspelt override",
        notation('{trustStore: ca.pem, trustedIdentities: ["*"], override: {revocaton: skip}}'),
        f"{WHERE}.override.revocaton",
        "did you mean 'revocation'",
        CA,
    ),
    Broken(
        "a misspelt store",
        notation('{trustStores: ca.pem, trustedIdentities: ["*"]}'),
        f"{WHERE}.trustStores",
        "did you mean 'trustStore'",
        CA,
    ),
    Broken(
        "skip with a store",
        notation('{level: skip, trustStore: ca.pem, trustedIdentities: ["*"]}'),
        f"{WHERE}.trustStore",
        "level skip verifies nothing, so it takes no trustStore, trustedIdentities",
        CA,
    ),
    Broken(
        "skip customised",
        notation("{level: skip, override: {revocation: log}}"),
        f"{WHERE}.override",
        "level skip verifies nothing and cannot be customised",
    ),
    Broken(
        "verifyTimestamp without a TSA",
        notation('{trustStore: ca.pem, trustedIdentities: ["*"], verifyTimestamp: always}'),
        f"{WHERE}.verifyTimestamp",
        "only applies with tsaStore",
        CA,
    ),
]


@pytest.mark.parametrize("case", BROKEN, ids=[case.id for case in BROKEN])
def test_mistakes_name_their_field(tmp_path: Path, case: Broken) -> None:
    with pytest.raises(PolicyError, match=case.message) as raised:
        load_directory(directory(tmp_path, case.authority, **case.files))
    error = raised.value
    assert str(error).count("\n") == 0, f"one mistake, said once: {error}"
    assert (error.file, error.document, error.field) == (
        str(tmp_path / "policy.yaml"),
        1,
        case.field,
    )


def test_a_fifo_is_refused_without_blocking(tmp_path: Path) -> None:
    os.mkfifo(tmp_path / "ca.pem")
    section = '{trustStore: ca.pem, trustedIdentities: ["*"]}'
    with pytest.raises(PolicyError, match=r"ca\.pem is not a regular file") as raised:
        load_directory(directory(tmp_path, notation(section)))
    assert raised.value.field == f"{WHERE}.trustStore"


HEAD = """\
apiVersion: trustgate.dev/v1alpha1
kind: ImagePolicy
metadata: {name: attested}
spec:
  registries: ["**"]
"""


@pytest.mark.parametrize(
    ("section", "field"),
    [
        (
            "  attestations:\n    - predicateType: https://slsa.dev/provenance/v1\n"
            "      authorities: [%s]\n",
            "spec.attestations[0].authorities[0].notation",
        ),
        (
            "  freshness:\n    minimumGrade: B\n"
            "    sources: [{attestation: {authorities: [%s]}}]\n",
            "spec.freshness.sources[0].attestation.authorities[0].notation",
        ),
    ],
)
def test_attestations_signed_with_notation_are_refused_plainly(
    tmp_path: Path, section: str, field: str
) -> None:
    (tmp_path / "ca.pem").write_text(pem(ROOT))
    authority = notation('{trustStore: ca.pem, trustedIdentities: ["*"]}')
    (tmp_path / "policy.yaml").write_text(HEAD + section % authority)
    with pytest.raises(PolicyError, match="notation authorities verify image signatures") as raised:
        load_directory(tmp_path)
    assert raised.value.field == field
    assert "not read yet" in raised.value.message


def test_two_authorities_trusting_one_signer_are_refused(tmp_path: Path) -> None:
    """The same roots (as certificates, whatever the file) and identities: one signer."""
    (tmp_path / "a.pem").write_text(pem(ROOT))
    (tmp_path / "b.cer").write_bytes(ROOT.cert.public_bytes(Encoding.DER))
    first = notation(f'{{trustStore: a.pem, trustedIdentities: ["{IDENTITY}"]}}', "one")
    second = notation(
        f'{{trustStore: b.cer, trustedIdentities: ["{IDENTITY}"], level: audit}}', "two"
    )
    (tmp_path / "policy.yaml").write_text(policy(first, second))
    with pytest.raises(PolicyError, match="the same Notation trust store") as raised:
        load_directory(tmp_path)
    assert raised.value.field == "spec.signatures.authorities[1].notation"
    # Another identity is another signer.
    other = notation('{trustStore: b.cer, trustedIdentities: ["*"]}', "two")
    (tmp_path / "policy.yaml").write_text(policy(first, other))
    assert len(load_directory(tmp_path).policies) == 1


# -- every mistake, at once -------------------------------------------------------

MANY = (
    notation('{trustStore: [ca.pem, gone.pem], trustedIdentities: ["x509.subject: C=US"]}'),
    notation("{trustStore: ca.pem, trustedIdentities: ['*'], override: {integrity: log}}", "b"),
    "{name: release, key: {file: missing.pub}}",
)
MANY_FIELDS = [
    "spec.signatures.authorities[0].notation.trustStore[1]",
    "spec.signatures.authorities[0].notation.trustedIdentities[0]",
    "spec.signatures.authorities[1].notation.override.integrity",
    "spec.signatures.authorities[2].key.file",
]


def test_every_mistake_of_every_authority_is_reported(tmp_path: Path) -> None:
    (tmp_path / "ca.pem").write_text(pem(ROOT))
    (tmp_path / "policy.yaml").write_text(policy(*MANY))
    with pytest.raises(PolicyErrors) as raised:
        load_directory(tmp_path)
    assert [error.field for error in raised.value.errors] == MANY_FIELDS


def test_policy_lint_lists_them_all(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "ca.pem").write_text(pem(ROOT))
    (tmp_path / "policy.yaml").write_text(policy(*MANY))
    assert main(["policy", "lint", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert "4 policy errors" in err
    for where in MANY_FIELDS:
        assert f"policy.yaml, document 1, field {where}: " in err
    assert "gone.pem: No such file or directory" in err
    assert "has no ST; it must name C, ST (or S) and O" in err

    assert main(["policy", "lint", str(tmp_path), "--output", "json"]) == 2
    report = json.loads(capsys.readouterr().out)
    assert [error["field"] for error in report["errors"]] == MANY_FIELDS


def test_the_example_policy_lints(capsys: pytest.CaptureFixture[str]) -> None:
    examples = REPO / "policies" / "examples"
    assert main(["policy", "lint", str(examples)]) == 0
    assert "are valid" in capsys.readouterr().out
    example = next(p for p in load_directory(examples).policies if p.name == "wabbit-networks")
    assert example.signatures is not None
    kinds = {a.name: a.notation for a in example.signatures.authorities}
    ref = kinds["wabbit-build"]
    assert ref is not None and ref.level.name == "strict"
    assert ref.files == (str(examples / "certs" / "wabbit-networks-ca.pem"),)
    subject = ref.store.ca[0].subject.rfc4514_string()
    assert subject.endswith("O=wabbit-networks.io,L=Seattle,ST=WA,C=US")
    assert kinds["release-workflow"] is None, "a cosign keyless authority in the same threshold"


# -- fingerprints ------------------------------------------------------------------


def test_a_changed_store_is_another_policy_set(tmp_path: Path) -> None:
    section = '{trustStore: ca.pem, trustedIdentities: ["*"]}'
    directory(tmp_path, notation(section), ca_pem=pem(ROOT))
    first = load_directory(tmp_path)
    again = load_directory(tmp_path)
    assert again.fingerprint == first.fingerprint, "the same content is the same set"

    (tmp_path / "ca.pem").write_text(pem(OTHER))
    rotated = load_directory(tmp_path)
    assert rotated.fingerprint != first.fingerprint
    assert loaded(rotated).store_digest != loaded(first).store_digest
    # Cached outcomes are keyed by the section: the old store's answer is not reused.
    old, new = first.policies[0].signatures, rotated.policies[0].signatures
    assert old is not None and new is not None
    assert old != new
    assert trust_fingerprint(old, old.authorities) != trust_fingerprint(new, new.authorities)

    # Another bundle order, the same certificates: the same trust.
    (tmp_path / "ca.pem").write_text(pem(OTHER, ROOT))
    both = load_directory(tmp_path)
    (tmp_path / "ca.pem").write_text(pem(OTHER, ROOT) + "\n# a comment\n")
    assert loaded(load_directory(tmp_path)).store_digest == loaded(both).store_digest


def test_a_changed_tsa_store_changes_the_fingerprint_too(tmp_path: Path) -> None:
    section = '{trustStore: ca.pem, tsaStore: tsa.pem, trustedIdentities: ["*"]}'
    directory(tmp_path, notation(section), ca_pem=pem(ROOT), tsa_pem=pem(OTHER))
    first = load_directory(tmp_path)
    assert first.files == (str(tmp_path / "ca.pem"), str(tmp_path / "tsa.pem"))
    (tmp_path / "tsa.pem").write_text(pem(SIGNING_AUTHORITY))
    assert load_directory(tmp_path).fingerprint != first.fingerprint


def test_the_level_is_part_of_the_cache_key(tmp_path: Path) -> None:
    strict = '{trustStore: ca.pem, trustedIdentities: ["*"]}'
    relaxed = '{trustStore: ca.pem, trustedIdentities: ["*"], override: {revocation: skip}}'
    first = load_directory(directory(tmp_path, notation(strict), ca_pem=pem(ROOT)))
    (tmp_path / "policy.yaml").write_text(policy(notation(relaxed)))
    second = load_directory(tmp_path)
    old, new = first.policies[0].signatures, second.policies[0].signatures
    assert old is not None and new is not None
    assert trust_fingerprint(old, old.authorities) != trust_fingerprint(new, new.authorities)


def test_the_store_reloads_when_a_trust_store_file_changes(tmp_path: Path) -> None:
    """A CA rotated in place (a subdirectory the directory stamp does not list) reloads."""
    section = '{trustStore: certs/ca.pem, trustedIdentities: ["*"]}'
    directory(tmp_path, notation(section), certs__ca_pem=pem(ROOT))
    store = PolicyStore(tmp_path)
    first = store.current
    assert store.check() is False
    ca = tmp_path / "certs" / "ca.pem"
    ca.write_text(pem(OTHER))
    stat = ca.stat()
    os.utime(ca, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000_000))
    assert store.check() is True
    assert loaded(store.current).store.ca == (OTHER.cert,)
    assert store.current.fingerprint != first.fingerprint


def test_the_documented_grammar_loads(tmp_path: Path) -> None:
    """docs/policies.md's Notation example is a policy that loads, every field as shown."""
    (example,) = [
        b.body for b in blocks(REPO / "docs" / "policies.md") if "signingAuthorityStore:" in b.body
    ]
    head = "apiVersion: trustgate.dev/v1alpha1\nkind: ImagePolicy\nmetadata: {name: documented}\n"
    spec = example.replace("spec:\n", 'spec:\n  registries: ["**"]\n', 1)
    (tmp_path / "policy.yaml").write_text(head + spec)
    directory(
        tmp_path,
        certs__ca_pem=pem(ROOT),
        certs__sa_pem=pem(SIGNING_AUTHORITY),
        certs__tsa_pem=(FIXTURES / "globalsignRoot.cer").read_bytes(),
    )
    ref = loaded(load_directory(tmp_path))
    assert ref.level.action(Validation.REVOCATION) is Action.SKIP
    assert len(ref.store.ca) == len(ref.store.signing_authority) == len(ref.store.tsa) == 1
