"""Registry host patterns (``*.azurecr.io``, ``matchImages``) matched as the kubelet matches them.

Cloud identities are configured per host pattern, and kubelet credential
plug-ins name the images they serve in ``matchImages``; both are read with the
kubelet's rules for registry keys (``keyring.parse_key``: one ``*`` globs
within one host label, ports compare exactly, a path is a prefix), so that a
pattern means here what it means on the node.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from webhook.core.errors import ConfigError
from webhook.core.reference import ImageRef
from webhook.core.untrusted import quoted

from .keyring import KeyPattern, parse_key


@dataclass(frozen=True, slots=True)
class Patterns:
    """Parsed patterns; an image or host matches when any of them does."""

    patterns: tuple[KeyPattern, ...]

    def matches_host(self, host: str) -> bool:
        """Whether some pattern names ``host[:port]``, whatever its path."""
        split = _split(host)
        if split is None:
            return False
        name, port = split
        return any(p.matches(name, port, p.path) for p in self.patterns)

    def matches_image(self, image: ImageRef) -> bool:
        """Whether some pattern covers ``image``: host, port, and its path as a prefix."""
        split = _split(image.domain)
        if split is None:
            return False
        name, port = split
        return any(p.matches(name, port, f"/{image.path}") for p in self.patterns)


def parse_patterns(patterns: Iterable[str], where: str, *, paths: bool = True) -> Patterns:
    """``patterns`` parsed; ``where`` names the setting in errors (``matchImages of ...``).

    Raises:
        ConfigError: a pattern that is not a registry host (with an optional
            port, and a path only when ``paths``), naming ``where`` and the pattern.
    """
    parsed = []
    for text in patterns:
        try:
            pattern = parse_key(text)
        except ValueError as exc:
            raise ConfigError(
                f"{where}: {quoted(text)} is not a registry host pattern: {exc}"
            ) from None
        if pattern.path and not paths:
            raise ConfigError(
                f"{where}: {quoted(text)} has a path; list registry hosts "
                f"(such as *.azurecr.io), each with a port if it has one"
            )
        parsed.append(pattern)
    return Patterns(tuple(parsed))


def _split(host: str) -> tuple[str, str] | None:
    """``host[:port]`` as the kubelet reads an image's registry (lowercased), or None."""
    try:
        key = parse_key(host)
    except ValueError:
        return None
    if key.path or "*" in host:
        return None
    return ".".join(key.labels), key.port
