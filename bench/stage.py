"""What the benchmarks set up alike: signed images in a registry, policy directories, reviews.

Like timing.py, this expects the repository root on ``sys.path`` (each script puts it there
before importing its siblings).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from tests.cosign import PrivateKey, public_pem, push_signature
from tests.kube import pod_spec, review, workload
from tests.registry import Registry, default_layer, push_image

#: The ``signatures`` section that trusts the key written next to the policy as release.pub.
SIGNED_BY_RELEASE = (
    "  signatures:\n    authorities:\n      - {name: release, key: {file: release.pub}}\n"
)


def push_app(
    registry: Registry,
    repository: str,
    *,
    content: bytes | None = None,
    signed_by: PrivateKey | None = None,
    host: str | None = None,
) -> str:
    """Push a one-layer image tagged v1 and, with ``signed_by``, cosign's ``.sig`` for it.

    ``content`` is the layer's file (default: default_layer's); the signature names the
    repository under ``host`` (default: the registry's own host). Returns the digest.
    """
    layer = default_layer() if content is None else default_layer(content=content)
    digest = push_image(registry, repository, tag="v1", layers=[layer])
    if signed_by is not None:
        reference = f"{host or registry.host}/{repository}"
        push_signature(registry, repository, digest, signed_by, reference=reference)
    return digest


def policy_head(*hosts: str) -> str:
    """An ImagePolicy ``p`` for namespaces ``prod-*`` and every image on ``hosts``, no checks."""
    registries = ", ".join(f'"{host}/**"' for host in hosts)
    return (
        "apiVersion: trustgate.dev/v1alpha1\nkind: ImagePolicy\nmetadata: {name: p}\n"
        f'spec:\n  match: {{namespaces: ["prod-*"]}}\n  registries: [{registries}]\n'
    )


def write_policy(directory: Path, text: str, key: PrivateKey | None = None) -> Path:
    """Create ``directory`` holding ``p.yaml`` (``text``) and, with ``key``, ``release.pub``."""
    directory.mkdir(parents=True)
    if key is not None:
        (directory / "release.pub").write_text(public_pem(key))
    (directory / "p.yaml").write_text(text)
    return directory


def key_policies(tmp: Path, key: PrivateKey, *hosts: str) -> tuple[Path, Path]:
    """Two policy directories under ``tmp`` for ``hosts``: signed by ``key``, and allowlist-only.

    The allowlist-only one is the baseline each benchmark measures in the same run.
    """
    head = policy_head(*hosts)
    signed = write_policy(tmp / "signed", head + SIGNED_BY_RELEASE, key)
    plain = write_policy(tmp / "plain", head)
    return signed, plain


def insecure(*hosts: str) -> dict[str, Any]:
    """The configuration that reaches ``hosts`` over plain HTTP (the local registries)."""
    return {"registries": {host: {"insecure": True} for host in hosts}}


def pod_review(*refs: str, kind: str = "Pod", namespace: str = "prod-bench") -> dict[str, Any]:
    """An AdmissionReview of a ``kind`` running ``refs`` in ``namespace``."""
    return review(workload(kind, pod_spec(*refs), namespace=namespace))
