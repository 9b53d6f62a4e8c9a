"""Compiled policies and engines built directly, for tests that need no files."""

from __future__ import annotations

from webhook.engine import Engine
from webhook.policy.globs import Glob
from webhook.policy.model import Match, Policy, PolicySet


def policy(
    name: str = "production",
    *,
    mode: str = "enforce",
    namespaces: tuple[str, ...] = ("prod-*",),
    exclude: tuple[str, ...] = (),
    kinds: tuple[str, ...] = (),
    images: tuple[str, ...] = ("**",),
    registries: tuple[str, ...] = ("registry.redhat.io/**", "quay.io/acme/**"),
    **kwargs: object,
) -> Policy:
    match = Match(
        namespaces=tuple(Glob(n) for n in namespaces),
        exclude_namespaces=tuple(Glob(n) for n in exclude),
        kinds=frozenset(kinds),
        images=tuple(Glob(i) for i in images),
    )
    return Policy(
        name=name,
        mode=mode,  # type: ignore[arg-type]
        match=match,
        registries=tuple(Glob(r) for r in registries),
        **kwargs,  # type: ignore[arg-type]
    )


def engine(*policies: Policy, no_match: str = "deny") -> Engine:
    policy_set = PolicySet(tuple(policies))
    return Engine(lambda: policy_set, no_match=no_match)  # type: ignore[arg-type]
