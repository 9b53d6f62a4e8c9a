"""Hostile policy directories, signature files, manifests, marks and keyless bundles.

The attacker here can write to the policy directory (its ConfigMap, or the
volume itself) but holds no authority's key. Each case must end in a refusal
that names the problem, quickly: never a set nobody signed, never a hang or a
crash of the reader. Git checkouts: test_signing_git_attacks.py.
"""

from __future__ import annotations

import base64
import copy
import json
import os
import shutil
import threading
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec

from tests.support.kube import policy_yaml
from tests.support.oddcerts import ODD_CASES, odd_certificates
from tests.support.policysigning import (
    FILES,
    KEYED_POLICY,
    policy_dir,
    public_pem,
    signed_set,
)
from tests.support.sigstore_services import SigstoreServices, sigstore_services
from webhook.cli.main import main
from webhook.core.errors import PolicyError
from webhook.policy.model import Keyless
from webhook.policy.signing.envelope import (
    SIGNATURE_FILE,
    TrustedKey,
    _read_signature,
    verify_directory,
    write_signature,
)
from webhook.policy.signing.gate import MarkError, PolicySignatureError, Verified
from webhook.policy.signing.manifest import MAX_VERSION, parse_manifest
from webhook.policy.signing.marks import checked_mark
from webhook.policy.signing.tree import MAX_FILES
from webhook.policy.signing.verifier import FileVerifier
from webhook.policy.snapshot import load_verified, uncovered
from webhook.policy.stamp import stamp
from webhook.policy.store import PolicyStore
from webhook.signatures.policyset import KeylessAuthority
from webhook.signatures.policysign import identity_token, load_instance, sign_keyless
from webhook.trust.keys import key_fingerprint, load_public_key
from webhook.trust.trustroot import load_trusted_root

TEAM = ec.generate_private_key(ec.SECP256R1())
AUTHORITY = TrustedKey("policy-team", load_public_key(public_pem(TEAM), source="test"))


def _refusal(directory: Path) -> PolicySignatureError:
    with pytest.raises(PolicySignatureError) as caught:
        verify_directory(directory, [AUTHORITY])
    return caught.value


def _in_time(call: Callable[[], object], seconds: float = 10.0) -> BaseException | None:
    """What ``call()`` raised (None if nothing), failing the test if it takes over ``seconds``."""
    outcome: list[BaseException | None] = []

    def run() -> None:
        try:
            call()
            outcome.append(None)
        except BaseException as exc:  # handed to the test
            outcome.append(exc)

    worker = threading.Thread(target=run, daemon=True)
    worker.start()
    worker.join(seconds)
    if worker.is_alive():
        pytest.fail(f"still running after {seconds}s: the reader blocked")
    return outcome[0]


# The signature file.


def test_a_fifo_swapped_in_as_the_signature_after_the_check_does_not_block(
    tmp_path: Path,
) -> None:
    # The window between is_file() and the read, entered directly.
    fifo = tmp_path / "signature.json"
    os.mkfifo(fifo)
    error = _in_time(lambda: _read_signature(fifo), 5.0)
    assert isinstance(error, PolicySignatureError)
    assert error.reason == "invalid"
    assert error.message.startswith("is not a regular file; sign the directory again")


def test_a_fifo_as_the_signature_is_unsigned(tmp_path: Path) -> None:
    directory = signed_set(tmp_path / "set", TEAM, 2)
    (directory / SIGNATURE_FILE).unlink()
    os.mkfifo(directory / SIGNATURE_FILE)
    error = _in_time(lambda: verify_directory(directory, [AUTHORITY]))
    assert isinstance(error, PolicySignatureError) and error.reason == "unsigned"


def test_a_huge_sparse_signature_is_refused_without_reading_it_all(tmp_path: Path) -> None:
    directory = signed_set(tmp_path / "set", TEAM, 2)
    with (directory / SIGNATURE_FILE).open("r+b") as handle:
        handle.truncate(1 << 40)  # 1 TiB, sparse
    started = time.monotonic()
    assert _refusal(directory).reason == "invalid"
    assert time.monotonic() - started < 5


@pytest.mark.parametrize(
    "document",
    [
        # Two "key" fields: json would keep the second silently.
        '{{"manifest": {m}, "key": {{"fingerprint": "x", "signature": "AA=="}}, "key": {k}}}',
        # A key signature and a keyless bundle in one file.
        '{{"manifest": {m}, "key": {k}, "bundle": {{"mediaType": "x"}}}}',
        # Two manifests: which one was signed?
        '{{"manifest": {m}, "manifest": {m}, "key": {k}}}',
    ],
)
def test_an_ambiguous_signature_document_is_refused(tmp_path: Path, document: str) -> None:
    directory = signed_set(tmp_path / "set", TEAM, 2)
    good = json.loads((directory / SIGNATURE_FILE).read_text())
    text = document.format(m=json.dumps(good["manifest"]), k=json.dumps(good["key"]))
    (directory / SIGNATURE_FILE).write_text(text)
    assert _refusal(directory).reason == "invalid"


# Manifests the authority's key signed, with hostile content (a signer's mistake,
# or bytes another tool wrote): refused, never read two ways.


def _sign_manifest(directory: Path, manifest: bytes) -> None:
    signature = TEAM.sign(manifest, ec.ECDSA(hashes.SHA256()))
    document = {
        "manifest": manifest.decode(),
        "key": {
            "fingerprint": key_fingerprint(TEAM.public_key()),
            "signature": base64.b64encode(signature).decode(),
        },
    }
    (directory / SIGNATURE_FILE).write_text(json.dumps(document))


def _manifest(version: str = "2", path: str = "policy.yaml", extra: str = "") -> bytes:
    digest = "0" * 64
    files = f'[{{"path":{json.dumps(path)},"sha256":"{digest}"}}]'
    return (
        f'{{"files":{files},"kind":"trustgate.dev/PolicyManifest/v1",'
        f'"signedAt":"2026-12-06T09:00:00Z","version":{version}{extra}}}'
    ).encode()


@pytest.mark.parametrize(
    "manifest",
    [
        _manifest("true"),
        _manifest('"7"'),
        _manifest("1e3"),
        _manifest("-1"),
        _manifest("0"),
        _manifest(str(2**63)),
        _manifest("9" * 5000),
        _manifest(extra=',"version":99'),
        *(_manifest(path=p) for p in ["../x", "./x", "a//b", "a/", "/etc/x", "a\x00b", "a\\b"]),
    ],
)
def test_a_signed_but_hostile_manifest_is_refused(tmp_path: Path, manifest: bytes) -> None:
    directory = signed_set(tmp_path / "set", TEAM, 2)
    _sign_manifest(directory, manifest)
    error = _refusal(directory)
    assert error.reason == "altered"
    assert any(
        why in error.message
        for why in ("is not a trustgate.dev/PolicyManifest/v1 document", "not a normalized")
    )
    with pytest.raises(PolicyError):
        parse_manifest(manifest)


def test_the_highest_version_round_trips_through_a_mark() -> None:
    assert parse_manifest(_manifest(str(MAX_VERSION))).version == MAX_VERSION
    assert checked_mark(str(MAX_VERSION), "sha256:ab", "mark").version == MAX_VERSION


@pytest.mark.parametrize(
    "value",
    ["9999999999999999999999", "-1", "1e3", "7 ", "\u0663", True, 2.0, -1, 2**63, 10**30],
)
def test_a_hostile_mark_value_is_an_error_not_a_version(value: object) -> None:
    # A mark above every version that can be signed would refuse every set as a
    # replay, telling the signer to sign a version it cannot: it is corrupt instead.
    with pytest.raises(MarkError, match="version is not a whole number"):
        checked_mark(value, "sha256:ab", "mark")


def test_unicode_and_case_twins_are_separate_files_each_signed(tmp_path: Path) -> None:
    nfc, nfd = "caf\u00e9.yaml", "cafe\u0301.yaml"
    files = {**FILES, nfc: "# one\n", "Policy.yaml": "# two\n"}
    directory = signed_set(tmp_path / "set", TEAM, 2, files)
    assert set(verify_directory(directory, [AUTHORITY]).files) == set(files)
    (directory / nfd).write_text("# a twin\n")
    error = _refusal(directory)
    assert error.reason == "altered"
    assert f"{nfd}: added after signing" in error.message


# The directory.


def test_a_loop_of_symbolic_links_is_refused_as_altered(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    directory = signed_set(tmp_path / "set", TEAM, 2)
    (directory / "a.yaml").symlink_to("b.yaml")
    (directory / "b.yaml").symlink_to("a.yaml")
    error = _refusal(directory)
    assert error.reason == "altered"
    assert "is a loop of symbolic links" in str(error)
    # policy verify says so and exits 1 (Python 3.11's RuntimeError was a traceback).
    (tmp_path / "team.pub").write_bytes(public_pem(TEAM))
    config = tmp_path / "trustgate.yaml"
    config.write_text(
        "policies:\n  signature:\n    authorities:\n"
        f"      - name: team\n        key: {{file: {tmp_path / 'team.pub'}}}\n"
    )
    assert main(["policy", "verify", str(directory), "--config", str(config)]) == 1
    assert "a.yaml: is a loop of symbolic links" in capsys.readouterr().err


def test_a_directory_crowded_with_empty_directories_is_refused_fast(tmp_path: Path) -> None:
    directory = signed_set(tmp_path / "set", TEAM, 2)
    for index in range(MAX_FILES + 1):
        (directory / f"d{index}").mkdir()
    started = time.monotonic()
    error = _refusal(directory)
    assert "more than 10000 directories" in error.message
    assert time.monotonic() - started < 5
    # The stamp taken at every check stats no entry of a crowded directory; it still
    # changes when one is added.
    before = stamp(directory)
    started = time.monotonic()
    assert stamp(directory) == before
    assert time.monotonic() - started < 1
    (directory / "one-more").mkdir()
    assert stamp(directory) != before


def test_a_policy_naming_a_key_outside_the_signed_directory_is_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    outside = tmp_path / "elsewhere.pub"
    outside.write_bytes(public_pem(ec.generate_private_key(ec.SECP256R1())))
    depth = "../" * len(Path(tempfile_dir()).parts)
    for name, reference in [("absolute", str(outside)), ("relative", f"{depth}{outside}")]:
        files = {**FILES, "keyed.yaml": KEYED_POLICY.replace("keys/signer.pub", reference)}
        directory = signed_set(tmp_path / name, TEAM, 2, files)
        verified = verify_directory(directory, [AUTHORITY])
        policy_set = load_verified(directory, verified.files or {})
        refusal = uncovered(policy_set, directory)
        assert refusal is not None, name
        assert refusal.reason == "unsigned"
        assert str(outside) in refusal.message and "copy each file into" in refusal.message
        store = PolicyStore(directory, verifier=FileVerifier([AUTHORITY]))
        assert not store.loaded
        assert store.signature is not None and store.signature.last_refusal is not None
        assert store.signature.last_refusal.reason == "unsigned"
    # policy verify agrees with the server.
    (tmp_path / "team.pub").write_bytes(public_pem(TEAM))
    config = tmp_path / "trustgate.yaml"
    config.write_text(
        "policies:\n  signature:\n    authorities:\n"
        f"      - name: team\n        key: {{file: {tmp_path / 'team.pub'}}}\n"
    )
    assert main(["policy", "verify", str(tmp_path / "absolute"), "--config", str(config)]) == 1
    assert f"the policies read {outside}, outside the signed" in capsys.readouterr().err
    inside = signed_set(tmp_path / "inside", TEAM, 2)
    assert main(["policy", "verify", str(inside), "--config", str(config)]) == 0
    verified = verify_directory(inside, [AUTHORITY])
    assert uncovered(load_verified(inside, verified.files or {}), inside) is None


def test_a_key_named_by_absolute_path_into_the_signed_directory_is_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Compiling would read such a key from the directory, not from the verified bytes:
    a key swapped in after the check would be the one that admits images."""
    directory = tmp_path / "set"
    key = directory / "keys" / "signer.pub"
    signed_key = public_pem(ec.generate_private_key(ec.SECP256R1()))
    files = {
        **FILES,
        "keyed.yaml": KEYED_POLICY.replace("keys/signer.pub", str(key)),
        "keys/signer.pub": signed_key.decode(),
    }
    signed_set(directory, TEAM, 2, files)
    verified = verify_directory(directory, [AUTHORITY])
    key.write_bytes(public_pem(ec.generate_private_key(ec.SECP256R1())))  # swapped after
    with pytest.raises(PolicySignatureError) as caught:
        load_verified(directory, verified.files or {})
    assert caught.value.reason == "unsigned"
    assert f"name {key} by an absolute path" in caught.value.message
    assert "relative to the policy" in caught.value.message
    # Put back, the set verifies and is still refused, by the server and by policy verify.
    key.write_bytes(signed_key)
    store = PolicyStore(directory, verifier=FileVerifier([AUTHORITY]))
    assert not store.loaded
    assert store.signature is not None and store.signature.last_refusal is not None
    assert store.signature.last_refusal.reason == "unsigned"
    (tmp_path / "team.pub").write_bytes(public_pem(TEAM))
    config = tmp_path / "trustgate.yaml"
    config.write_text(
        "policies:\n  signature:\n    authorities:\n"
        f"      - name: team\n        key: {{file: {tmp_path / 'team.pub'}}}\n"
    )
    assert main(["policy", "verify", str(directory), "--config", str(config)]) == 1
    assert "by an absolute path into" in capsys.readouterr().err


def tempfile_dir() -> str:
    import tempfile

    return os.path.join(tempfile.gettempdir(), "trustgate-policies-x", "set")


# Keyless: an identity that matches a regular expression only in part.

BOT = "policy-bot@trustgate.test"
OIDC = "https://oidc.trustgate.test"


@pytest.fixture(scope="module")
def keyless_set(
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[tuple[Path, SigstoreServices]]:
    tmp = tmp_path_factory.mktemp("keyless")
    with sigstore_services() as services:
        config = tmp / "trust-config.json"
        config.write_text(json.dumps(services.trust_config()))
        token = identity_token(services.oidc.token(BOT))

        def sign(data: bytes) -> tuple[str, Any]:
            return "bundle", sign_keyless(data, load_instance(trust_config=config), token).bundle

        directory = policy_dir(tmp)
        write_signature(directory, sign, version=2, now=datetime.now(UTC))
        yield directory, services


@pytest.mark.parametrize(
    ("field", "pattern"),
    [
        ("subject_regexp", "policy-bot@trustgate"),  # a prefix of the subject
        ("subject_regexp", r"bot@trustgate\.test"),  # a suffix
        ("subject_regexp", r"policy-bot@trustgate\.test|x"),  # an alternative that is whole
        ("issuer_regexp", "https://oidc"),  # a prefix of the issuer
    ],
)
def test_an_identity_matching_a_regular_expression_in_part_is_untrusted(
    keyless_set: tuple[Path, SigstoreServices], tmp_path: Path, field: str, pattern: str
) -> None:
    directory, services = keyless_set
    (tmp_path / "root.json").write_text(json.dumps(services.instance.trusted_root()))
    root = load_trusted_root("root.json", tmp_path)
    identity = {"subject": BOT, "issuer": OIDC, field.removesuffix("_regexp"): None, field: pattern}
    keyless = Keyless(trusted_root=root.name, root_digest=root.digest, root=root, **identity)
    authority = KeylessAuthority("ci", keyless)
    if pattern.endswith("|x"):  # the whole subject matches one alternative: it verifies
        assert verify_directory(directory, [authority]).authority == "ci"
        return
    with pytest.raises(PolicySignatureError) as caught:
        verify_directory(directory, [authority])
    assert caught.value.reason == "untrusted"
    assert "does not match" in str(caught.value)


def test_a_configmap_data_link_swapped_during_checks_never_loads_unsigned_content(
    tmp_path: Path,
) -> None:
    # The kubelet's layout: visible links into ..data, itself a link to a timestamped
    # directory. The attacker flips ..data between the signed set and a weaker one
    # that carries a copy of the good signature, as fast as it can.
    signed = signed_set(tmp_path / "signed", TEAM, 2, FILES)  # keys are flat in a ConfigMap
    mount = tmp_path / "mount"
    mount.mkdir()
    good = mount / "..2026_12_06_10_00_00.1"
    weak = mount / "..2026_12_06_10_00_00.2"
    for target in (good, weak):
        for path in signed.rglob("*"):
            if path.is_file():
                (target / path.relative_to(signed)).parent.mkdir(parents=True, exist_ok=True)
                (target / path.relative_to(signed)).write_bytes(path.read_bytes())
    (weak / "policy.yaml").write_text(policy_yaml(registries='["**"]'))
    (mount / "..data").symlink_to(good.name)
    for name in (*FILES, ".trustgate"):
        (mount / name).symlink_to(f"..data/{name}")
    stop = threading.Event()

    def flip() -> None:
        turn = 0
        while not stop.is_set():
            turn += 1
            swap = mount / "..data_tmp"
            swap.symlink_to((weak if turn % 2 else good).name)
            swap.replace(mount / "..data")

    flipper = threading.Thread(target=flip, daemon=True)
    flipper.start()
    outcomes: dict[str, int] = {}
    try:
        deadline = time.monotonic() + 2.0
        while time.monotonic() < deadline:
            try:
                verified = verify_directory(mount, [AUTHORITY])
            except PolicySignatureError as exc:
                outcomes[exc.reason] = outcomes.get(exc.reason, 0) + 1
                continue
            except PolicyError:
                outcomes["unreadable"] = outcomes.get("unreadable", 0) + 1
                continue
            assert verified.files is not None
            assert verified.files["policy.yaml"] == (good / "policy.yaml").read_bytes()
            policy_set = load_verified(mount, verified.files)
            production = next(p for p in policy_set.policies if p.name == "production")
            assert not any(
                glob.matches("docker.io/library/nginx") for glob in production.registries
            )
            outcomes["loaded"] = outcomes.get("loaded", 0) + 1
    finally:
        stop.set()
        flipper.join()
    # Both sides of the race were reached: some checks loaded, some refused.
    assert outcomes.get("loaded", 0) >= 1 and outcomes.get("altered", 0) >= 1, outcomes


# Certificates cryptography cannot read raise more than ValueError.


@pytest.mark.parametrize("case", ODD_CASES)
def test_a_bundle_whose_certificate_cryptography_cannot_read_is_invalid(
    keyless_set: tuple[Path, SigstoreServices], tmp_path: Path, case: str
) -> None:
    directory, services = keyless_set
    hostile = tmp_path / "set"
    shutil.copytree(directory, hostile)
    document = json.loads((hostile / SIGNATURE_FILE).read_text())
    material = document["bundle"]["verificationMaterial"]
    material["certificate"]["rawBytes"] = base64.b64encode(odd_certificates()[case]).decode()
    (hostile / SIGNATURE_FILE).write_text(json.dumps(document))
    (tmp_path / "root.json").write_text(json.dumps(services.instance.trusted_root()))
    root = load_trusted_root("root.json", tmp_path)
    keyless = Keyless(issuer=OIDC, subject=BOT, trusted_root=root.name, root=root)
    error = _refusal_by(hostile, KeylessAuthority("ci", keyless))
    assert error.reason == "invalid" and "malformed Sigstore bundle" in error.message


def _refusal_by(directory: Path, authority: KeylessAuthority) -> PolicySignatureError:
    with pytest.raises(PolicySignatureError) as caught:
        verify_directory(directory, [authority])
    return caught.value


def _paths(value: Any, path: tuple[str | int, ...] = ()) -> Iterator[tuple[str | int, ...]]:
    yield path
    items = value.items() if isinstance(value, dict) else enumerate(value)
    if isinstance(value, dict | list):
        for key, inner in items:
            yield from _paths(inner, (*path, key))


def _replaced(document: Any, path: tuple[str | int, ...], value: Any) -> Any:
    changed = copy.deepcopy(document)
    if not path:
        return value
    parent = changed
    for key in path[:-1]:
        parent = parent[key]
    parent[path[-1]] = value
    return changed


def test_every_field_of_a_signature_given_another_shape_is_a_refusal_not_a_crash(
    keyless_set: tuple[Path, SigstoreServices], tmp_path: Path
) -> None:
    # The signature file's every field, in turn, given a value of another JSON
    # shape ({} as a media type raised TypeError: unhashable type).
    _, services = keyless_set
    (tmp_path / "root.json").write_text(json.dumps(services.instance.trusted_root()))
    root = load_trusted_root("root.json", tmp_path)
    keyless = KeylessAuthority("ci", Keyless(issuer=OIDC, subject=BOT, root=root))
    outcomes: set[str] = set()
    for directory in (keyless_set[0], signed_set(tmp_path / "keyed", TEAM, 2)):
        hostile = tmp_path / f"hostile-{directory.name}"
        shutil.copytree(directory, hostile)
        good = json.loads((hostile / SIGNATURE_FILE).read_text())
        for path in list(_paths(good)):
            for value in ({}, [], None, 1, "x"):
                (hostile / SIGNATURE_FILE).write_text(json.dumps(_replaced(good, path, value)))
                try:
                    outcomes.add(verify_directory(hostile, [AUTHORITY, keyless]).authority)
                except PolicySignatureError as exc:  # anything else fails the test
                    outcomes.add(exc.reason)
    # Optional parts of a bundle (an RFC 3161 timestamp beside the log's time) may go.
    assert outcomes <= {"invalid", "untrusted", "altered", "ci", "policy-team"}, outcomes
    assert {"invalid", "untrusted"} <= outcomes


def test_a_verifier_defect_is_a_visible_refusal_and_the_last_good_set_stays(
    tmp_path: Path,
) -> None:
    # Each crash found above was a loader "defect" that left /readyz saying
    # verified; whatever the next one is, it must show as a refusal.
    directory = signed_set(tmp_path / "set", TEAM, 2)
    files = FileVerifier([AUTHORITY])
    crash = {"on": False}

    def verifier(path: Path) -> Verified:
        if crash["on"]:
            raise RuntimeError("Symlink loop from 'a.yaml'")
        return files(path)

    store = PolicyStore(directory, verifier=verifier)
    assert store.loaded and store.signature is not None and store.signature.valid
    crash["on"] = True
    (directory / "policy.yaml").write_text(policy_yaml(registries='["**"]'))
    assert store.reload() is False
    state = store.signature
    assert state is not None
    assert state.state == "refused" and not state.valid and state.version == 2
    assert state.last_refusal is not None and state.last_refusal.reason == "invalid"
    assert "RuntimeError: Symlink loop" in state.last_refusal.message


def test_a_huge_sparse_file_in_the_directory_is_refused_unread(tmp_path: Path) -> None:
    directory = signed_set(tmp_path / "set", TEAM, 2)
    with (directory / "huge.yaml").open("wb") as handle:
        handle.truncate(1 << 40)  # 1 TiB, sparse
    started = time.monotonic()
    error = _refusal(directory)
    assert error.reason == "altered" and "huge.yaml: holds more than 67,108,864 bytes" in str(error)
    assert time.monotonic() - started < 1
