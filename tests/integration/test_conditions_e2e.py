"""Attestation conditions end to end: a real registry, signed statements, `trustgate serve`.

The statements are signed with a key in cosign's ``.att`` layout, and keylessly
as Sigstore bundles attached as referrers; the policies' CEL conditions read
what they say. A condition that overruns its cost limit denies within the
review's deadline, and the server goes on answering.
"""

from __future__ import annotations

import re
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.integration.conftest import (
    Server,
    serve_config,
    serving,
    small_image,
    trustgate_command,
)
from tests.integration.test_keyless_e2e import push_referrer
from tests.support.cosign import dsse_envelope, generate_key, in_toto_statement, public_pem
from tests.support.registry import Registry
from tests.support.sigstore_instance import Identity, SigstoreInstance, bundle
from tests.unit.signatures.test_attestations import push_attestations
from webhook.core.untrusted import quoted

pytestmark = pytest.mark.e2e

RELEASE = generate_key("ecdsa-p256")
SLSA = "https://slsa.dev/provenance/v1"
ISSUER = "https://token.actions.githubusercontent.com"
SUBJECT = "https://github.com/acme/api/.github/workflows/release.yml@refs/heads/main"
BUILDER = Identity(SUBJECT, ISSUER)
SIGSTORE = SigstoreInstance("conditions")
CI = "https://ci.acme.test/runner"
#: Quadratic in the list: minutes over 5,000 numbers without a cost limit.
SLOW = (
    "predicate.numbers.all(x, (predicate.numbers + predicate.numbers"
    " + predicate.numbers).size() > 0)"
)

POLICIES = """\
apiVersion: trustgate.dev/v1alpha1
kind: ImagePolicy
metadata: {{name: built-by-ci}}
spec:
  match: {{namespaces: ["prod-*"]}}
  registries: ["{host}/**"]
  attestations:
    - predicateType: {slsa}
      authorities: [{{name: release, key: {{file: keys/release.pub}}}}]
      conditions:
        - "predicate.builder.id == '{ci}'"
        - "subject.exists(s, 'sha256:' + s.digest.sha256 == image.digest)"
        - "image.repository.startsWith('{host}/acme/')"
---
apiVersion: trustgate.dev/v1alpha1
kind: ImagePolicy
metadata: {{name: costly}}
spec:
  match: {{namespaces: ["cost-*"]}}
  registries: ["{host}/**"]
  attestations:
    - predicateType: {slsa}
      authorities: [{{name: release, key: {{file: keys/release.pub}}}}]
      conditions: ["{slow}"]
---
apiVersion: trustgate.dev/v1alpha1
kind: ImagePolicy
metadata: {{name: keyless-built-by-ci}}
spec:
  match: {{namespaces: ["keyless-*"]}}
  registries: ["{host}/**"]
  attestations:
    - predicateType: {slsa}
      authorities:
        - name: builder
          keyless: {{issuer: {issuer}, subject: {subject}, trustedRoot: keys/trusted_root.json}}
      conditions: ["predicate.builder.id == '{ci}'"]
"""


@pytest.fixture(scope="module")
def server(registry: Registry, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    files = {
        "keys/release.pub": public_pem(RELEASE),
        "keys/trusted_root.json": SIGSTORE.trusted_root_json(),
        "conditions.yaml": POLICIES.format(
            host=registry.host, slsa=SLSA, ci=CI, slow=SLOW, issuer=ISSUER, subject=SUBJECT
        ),
    }
    # One evaluator process per worker, and a cost limit below the default 0.5 s.
    config = serve_config(registry.host, extra="conditions: {costSeconds: 0.3, processes: 1}\n")
    with serving(tmp_path_factory.mktemp("conditions"), files, config) as running:
        yield running


def attest(registry: Registry, repository: str, digest: str, predicate: dict[str, Any]) -> None:
    statement = in_toto_statement(digest, f"{registry.host}/{repository}", SLSA, predicate)
    push_attestations(registry, repository, digest, [dsse_envelope(statement, RELEASE)])


def test_an_attestation_whose_conditions_hold_is_admitted(
    registry: Registry, server: Server
) -> None:
    ref, digest = small_image(registry, "acme/cel-ok")
    attest(registry, "acme/cel-ok", digest, {"builder": {"id": CI}})
    assert server.decide(ref)["allowed"] is True


def test_a_failed_condition_denies_naming_the_expression_and_the_value_it_saw(
    registry: Registry, server: Server
) -> None:
    ref, digest = small_image(registry, "acme/cel-other-builder")
    attest(registry, "acme/cel-other-builder", digest, {"builder": {"id": "laptop\n\x1b[2Jok"}})
    response = server.decide(ref)
    assert response["allowed"] is False
    assert response["status"]["message"] == (
        f'image {ref} denied by policy "built-by-ci": attestation check failed for predicate '
        f"type {SLSA}: 0 of the 1 required authorities verified (release: 2 of 3 conditions "
        f"held: condition \"predicate.builder.id == '{CI}'\" does not hold "
        '(saw predicate.builder.id = "laptop\\n\\u001b[2Jok"))'
    )


def test_the_image_is_part_of_what_conditions_read(registry: Registry, server: Server) -> None:
    ref, digest = small_image(registry, "elsewhere/cel")
    attest(registry, "elsewhere/cel", digest, {"builder": {"id": CI}})
    message = server.decide(ref)["status"]["message"]
    assert f'does not hold (saw image.repository = "{registry.host}/elsewhere/cel")' in message


def overruns(server: Server, reason: str) -> float:
    """``trustgate_condition_overruns_total{reason=...}`` as the server exposes it."""
    metrics = server.get("/metrics").text
    found = re.search(
        rf'^trustgate_condition_overruns_total{{reason="{reason}"}} (\S+)$', metrics, re.M
    )
    assert found is not None, metrics
    return float(found.group(1))


def test_a_condition_over_its_cost_limit_denies_within_the_deadline(
    registry: Registry, server: Server
) -> None:
    before = overruns(server, "cost")
    ref, digest = small_image(registry, "acme/cel-costly")
    attest(registry, "acme/cel-costly", digest, {"numbers": list(range(5000))})
    started = time.monotonic()
    response = server.decide(ref, namespace="cost-a")
    elapsed = time.monotonic() - started
    assert response["allowed"] is False
    assert response["status"]["message"] == (
        f'image {ref} denied by policy "costly": conditions {quoted(SLOW, 60)} did not '
        "finish within the cost limit of 0.3 s; the attestation does not count"
    )
    assert overruns(server, "cost") == before + 1
    assert overruns(server, "crashed") == overruns(server, "busy") == 0
    assert elapsed < 4.0  # the deadline is 5 s; unbounded, the expression runs for minutes
    # The evaluator was replaced: the next review decides at once.
    ok, ok_digest = small_image(registry, "acme/cel-after-cost")
    attest(registry, "acme/cel-after-cost", ok_digest, {"builder": {"id": CI}})
    started = time.monotonic()
    assert server.decide(ok)["allowed"] is True
    assert time.monotonic() - started < 4.0


def keyless_attest(registry: Registry, repository: str, digest: str, builder: str) -> None:
    statement = {
        "_type": "https://in-toto.io/Statement/v1",
        "subject": [{"name": f"{registry.host}/{repository}", "digest": {"sha256": digest[7:]}}],
        "predicateType": SLSA,
        "predicate": {"builder": {"id": builder}},
    }
    cert, envelope, entry = SIGSTORE.sign_dsse(BUILDER, statement)
    push_referrer(registry, repository, digest, bundle(cert, entry, envelope=envelope))


def test_keyless_bundle_attestations_meet_the_same_conditions(
    registry: Registry, server: Server
) -> None:
    ref, digest = small_image(registry, "acme/cel-keyless")
    keyless_attest(registry, "acme/cel-keyless", digest, CI)
    assert server.decide(ref, namespace="keyless-a")["allowed"] is True
    bad, bad_digest = small_image(registry, "acme/cel-keyless-bad")
    keyless_attest(registry, "acme/cel-keyless-bad", bad_digest, "https://evil.test")
    message = server.decide(bad, namespace="keyless-a")["status"]["message"]
    assert "(builder: 0 of 1 conditions held: condition" in message
    assert 'saw predicate.builder.id = "https://evil.test"' in message


def test_check_prints_which_conditions_held(
    registry: Registry, server: Server, tmp_path: Path
) -> None:
    ref, digest = small_image(registry, "acme/cel-check")
    attest(registry, "acme/cel-check", digest, {"builder": {"id": CI}})
    config = server.policies.parent / "trustgate.yaml"
    command = [*trustgate_command(), "check", ref, "--namespace", "prod-web"]
    command += ["--policies", str(server.policies), "--config", str(config)]
    result = subprocess.run(command, capture_output=True, text=True, timeout=60, check=False)
    assert result.returncode == 0, result.stdout + result.stderr
    assert (
        f"{SLSA} attested by release (conditions held: \"predicate.builder.id == '{CI}'\", "
        "\"subject.exists(s, 'sha256:' + s.digest.sha256 == image.digest)\", "
        f"\"image.repository.startsWith('{registry.host}/acme/')\")"
    ) in result.stdout
