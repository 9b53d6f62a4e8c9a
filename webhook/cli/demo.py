"""``make demo``: an offline tour of signatures and freshness, start to finish.

It starts a real OCI registry (Debian's ``docker-registry``) on 127.0.0.1 and
pushes three images into it: ``demo/api`` signed and fresh, ``demo/tools``
fresh but unsigned, ``demo/legacy`` signed but stale. A grades file stands in
for Red Hat's catalog. Two policies use all of it: ``production`` enforces a
signature and grade B in ``prod-*`` namespaces, ``staging`` audits the same in
``staging``. Then it runs ``trustgate check``, ``grade``, ``review`` and
``audit`` as a person would, each command printed before its output, and stops
everything it started. No network beyond 127.0.0.1 is used.

Exit status 0 means every command answered as the tour expects.
"""

from __future__ import annotations

import json
import os
import shlex
import subprocess
import sys
import tempfile
import textwrap
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import yaml

from webhook.sandbox.cosign import (
    PrivateKey,
    generate_key,
    public_pem,
    sign_b64,
    signature_manifest,
    simple_signing_payload,
)
from webhook.sandbox.registry import (
    Registry,
    default_layer,
    push_artifact,
    push_image,
    start_registry,
)
from webhook.signatures.cosign import signature_tag

#: Each step: the arguments after ``trustgate`` and the exit status it should end with.
_STEPS: tuple[tuple[str, tuple[str, ...], int], ...] = (
    (
        "Three images in production: signed and fresh, unsigned, signed but stale.",
        ("check", "--namespace", "prod-web", "{api}", "{tools}", "{legacy}"),
        1,
    ),
    (
        "The stale one's grade, the fixes behind it, and since when it is below B.",
        ("grade", "--namespace", "prod-web", "{legacy}"),
        1,
    ),
    (
        "What the API server would be told about a Deployment of it (exit 1: denied).",
        ("review", "admission-review.json"),
        1,
    ),
    (
        "A dry run over a folder of manifests: allowed, warned (audit mode) and denied.",
        ("audit", "manifests/"),
        1,
    ),
)


@dataclass(frozen=True, slots=True)
class Stage:
    """Where the tour's files are, and the images it pushed."""

    directory: Path
    images: dict[str, str]


def _sign(registry: Registry, repository: str, digest: str, key: PrivateKey) -> None:
    payload = simple_signing_payload(f"{registry.host}/{repository}", digest)
    manifest, blobs = signature_manifest([(payload, sign_b64(key, payload))])
    push_artifact(registry, repository, signature_tag(digest), manifest, blobs)


def _policy(name: str, mode: str, namespaces: str, host: str) -> str:
    return textwrap.dedent(
        f"""\
        apiVersion: trustgate.dev/v1alpha1
        kind: ImagePolicy
        metadata: {{name: {name}}}
        spec:
          mode: {mode}
          match: {{namespaces: {namespaces}}}
          registries: ["{host}/demo/**"]
          signatures:
            authorities:
              - name: release
                key: {{file: keys/release.pub}}
          freshness:
            minimumGrade: B
            sources: [static]
        """
    )


def _deployment(name: str, namespace: str, image: str) -> str:
    return textwrap.dedent(
        f"""\
        apiVersion: apps/v1
        kind: Deployment
        metadata: {{name: {name}, namespace: {namespace}}}
        spec:
          selector: {{matchLabels: {{app: {name}}}}}
          template:
            metadata: {{labels: {{app: {name}}}}}
            spec:
              containers: [{{name: {name}, image: "{image}"}}]
        """
    )


def stage(directory: Path, registry: Registry, now: datetime) -> Stage:
    """Push the images, sign two of them, and write policies, grades and manifests."""
    key = generate_key()
    images: dict[str, str] = {}
    digests: dict[str, str] = {}
    for name, signed in (("api", True), ("tools", False), ("legacy", True)):
        repository = f"demo/{name}"
        layer = default_layer(content=f"trustgate demo: {name}\n".encode())
        digest = push_image(registry, repository, tag="1.0", layers=[layer])
        if signed:
            _sign(registry, repository, digest, key)
        images[name] = f"{registry.host}/{repository}:1.0"
        digests[name] = digest
    policies = directory / "policies"
    (policies / "keys").mkdir(parents=True)
    (policies / "keys" / "release.pub").write_text(public_pem(key))
    (policies / "production.yaml").write_text(
        _policy("production", "enforce", '["prod-*"]', registry.host)
    )
    (policies / "staging.yaml").write_text(
        _policy("staging", "audit", '["staging"]', registry.host)
    )
    released = (now - timedelta(days=60)).date().isoformat()
    (directory / "grades.yaml").write_text(
        textwrap.dedent(
            f"""\
            grades:
              - {{digest: "{digests["api"]}", grade: A}}
              - {{digest: "{digests["tools"]}", grade: A}}
              - digest: "{digests["legacy"]}"
                fixes:
                  - {{id: RHSA-DEMO:0001, severity: Critical, released: "{released}",
                     package: openssl}}
            """
        )
    )
    (directory / "trustgate.yaml").write_text(
        f'registries: {{"{registry.host}": {{insecure: true}}}}\n'
        "freshness: {static: {file: grades.yaml}}\n"
    )
    manifests = directory / "manifests"
    manifests.mkdir()
    (manifests / "api.yaml").write_text(_deployment("api", "prod-web", images["api"]))
    (manifests / "tools.yaml").write_text(_deployment("tools", "prod-web", images["tools"]))
    (manifests / "staging-tools.yaml").write_text(_deployment("tools", "staging", images["tools"]))
    (manifests / "legacy.yaml").write_text(_deployment("legacy", "prod-web", images["legacy"]))
    legacy = _review_of(_deployment("legacy", "prod-web", images["legacy"]))
    (directory / "admission-review.json").write_text(json.dumps(legacy, indent=2) + "\n")
    return Stage(directory, images)


def _review_of(manifest: str) -> dict[str, Any]:
    obj = yaml.safe_load(manifest)
    return {
        "apiVersion": "admission.k8s.io/v1",
        "kind": "AdmissionReview",
        "request": {
            "uid": "0b5f3c1e-demo-4f6a-9d1e-000000000001",
            "kind": {"group": "apps", "version": "v1", "kind": "Deployment"},
            "resource": {"group": "apps", "version": "v1", "resource": "deployments"},
            "name": obj["metadata"]["name"],
            "namespace": obj["metadata"]["namespace"],
            "operation": "CREATE",
            "userInfo": {"username": "demo"},
            "object": obj,
        },
    }


def _trustgate() -> list[str]:
    script = Path(sys.executable).with_name("trustgate")
    return [str(script)] if script.exists() else [sys.executable, "-m", "webhook.cli.main"]


def run_steps(world: Stage) -> int:
    """Run each command in the tour's directory; 0 if all exited as expected."""
    env = {
        **os.environ,
        "TRUSTGATE_POLICIES": "policies",
        "TRUSTGATE_CONFIG": "trustgate.yaml",
    }
    failures = 0
    for number, (title, template, expected) in enumerate(_STEPS, start=1):
        argv = [part.format(**world.images) for part in template]
        print(f"\n== {number}. {title}\n$ trustgate {shlex.join(argv)}", flush=True)
        done = subprocess.run(
            [*_trustgate(), *argv], cwd=world.directory, env=env, check=False, timeout=120
        )
        print(f"(exit {done.returncode})", flush=True)
        failures += done.returncode != expected
    return failures


def main() -> int:
    """Stage the tour in a temporary directory, run it, and stop the registry."""
    with tempfile.TemporaryDirectory(prefix="trustgate-demo-") as tmp:
        directory = Path(tmp)
        print("== Starting a local OCI registry (docker-registry) on 127.0.0.1 ...", flush=True)
        try:
            registry = start_registry(directory / "registry")
        except RuntimeError as exc:
            print(f"trustgate demo: {exc}", file=sys.stderr)
            return 2
        try:
            world = stage(directory / "tour", registry, datetime.now(UTC))
            print(f"   registry {registry.url}; files in {world.directory}")
            for name in ("policies/production.yaml", "grades.yaml", "trustgate.yaml"):
                print(f"\n--- {name}\n{(world.directory / name).read_text().rstrip()}")
            failures = run_steps(world)
        finally:
            registry.stop()
            print("\n== Stopped the registry and removed the demo's files.", flush=True)
    if failures:
        print(f"trustgate demo: {failures} commands did not answer as expected", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
