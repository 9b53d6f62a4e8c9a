"""Which pull-secret credentials to try for an image, and in what order, as the kubelet does.

trustgate must authenticate with what the node will pull with: a credential
the kubelet would not use for an image must not verify it, and one it would
use must not be missed. The rules are those of the kubelet's
``BasicDockerKeyring`` (pkg/credentialprovider/keyring.go, ``Add``, ``Lookup``
and ``URLsMatch``), also described for ``matchImages`` on
https://kubernetes.io/docs/reference/config-api/kubelet-config.v1/:

K1. A key's ``http://`` or ``https://`` is dropped, and a path that starts with
    ``/v1/`` or ``/v2/`` loses that segment: ``https://index.docker.io/v1/``
    is ``index.docker.io``, ``quay.io/v2/team`` is ``quay.io/team``.
K2. Host labels match one to one: the key and the image have as many labels,
    and each key label is a glob of the image's (``*`` any run of characters
    within the label: ``*.example.com``, ``app*.k8s.io``). So ``*.example.com``
    matches ``a.example.com`` but neither ``example.com`` nor
    ``a.b.example.com``, and ``quay.io`` never matches ``quay.io.evil.com``.
    (``?`` is no glob in practice: the kubelet parses the key as a URL first,
    where ``?`` starts a query.)
K3. Ports must be equal: ``host`` does not match ``host:5000``, nor the reverse.
K4. The key's path is a prefix of the image's repository path, as text (a key
    ``quay.io/team`` also covers ``quay.io/team-b/app``: same host, so the
    credential still reaches only quay.io).
K5. Every matching key contributes, most specific first: keys in reverse
    lexical order (``quay.io/team`` before ``quay.io``, a literal label before
    ``*``); under one key, credentials in the order added (secrets in the pod's
    order, then their entries as written).
K6. Docker Hub: images are ``docker.io/...``; keys for ``index.docker.io``
    (the form ``docker login`` writes), ``docker.io`` and
    ``registry-1.docker.io`` are all Docker Hub. The kubelet reaches the first
    through a fallback used when no other key matched; treating all three as
    ``docker.io`` yields the same credentials, plus those of a
    ``registry-1.docker.io`` key, which names Docker Hub's own endpoint.

Deliberately narrower than the kubelet, where it would parse a key as a URL
in ways a person would not read it: a key with ``user@``, ``?``, ``#``,
whitespace, another scheme, a character class ``[...]`` or an empty label
matches nothing and is listed in ``Keyring.ignored``. Hosts compare
lowercased (DNS is case-insensitive; image hosts are already lowercase).
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Final

from webhook.core.reference import DOCKER_HUB_ALIASES, ImageRef, parse_reference

from .dockerconfig import DockerConfig, shown_key

_DOCKER_HUB: Final = "docker.io"
_SCHEMES: Final = ("https://", "http://")
_VERSION_PREFIXES: Final = ("/v1/", "/v2/")
_LABEL: Final = re.compile(r"[a-z0-9*_-]+")
_PORT: Final = re.compile(r"[0-9]{1,5}")
_IPV6: Final = re.compile(r"\[[0-9a-f:.]+\]")


@dataclass(frozen=True, slots=True)
class Credential:
    """A username and password to try for an image, with where it came from.

    ``source`` names the secret (``secret team-a/regcred``) and ``key`` the
    registry key as written: what ``check`` and the decision log may show.
    The password is kept out of ``repr``.
    """

    username: str
    password: str = field(repr=False)
    source: str
    key: str


@dataclass(frozen=True, slots=True)
class IgnoredKey:
    """A registry key that matches no image, and why (shown with ``shown_key``)."""

    source: str
    key: str
    reason: str


@dataclass(frozen=True, slots=True)
class KeyPattern:
    """A registry key as the kubelet reads it (K1, K6): host labels, port and path.

    ``text`` is ``host[:port][/path]``, the string the order (K5) sorts.
    """

    text: str
    labels: tuple[str, ...]
    port: str
    path: str

    def matches(self, host: str, port: str, path: str) -> bool:
        """Whether an image at ``host[:port]/path`` falls under this key (K2, K3, K4)."""
        if port != self.port:
            return False
        labels = host.split(".")
        if len(labels) != len(self.labels):
            return False
        if not path.startswith(self.path):
            return False
        pairs = zip(self.labels, labels, strict=True)
        return all(_label_matches(glob, label) for glob, label in pairs)

    def covers_host(self, host: str) -> bool:
        """Whether this key applies to every repository on ``host[:port]``.

        A login configured per host (``registries.<host>.credentials``) serves all
        of its repositories, so only a key without a path (K4) may give it: one
        that matches the host (K2, K3), Docker Hub's names included (K6). False
        for a host that is not ``host[:port]``.
        """
        try:
            name, port = _split_port(host.lower())
        except ValueError:
            return False
        if name in DOCKER_HUB_ALIASES and not port:
            name = _DOCKER_HUB
        return not self.path and self.matches(name, port, "")


def parse_key(key: str) -> KeyPattern:
    """``key`` as a pattern (K1, K6).

    Raises:
        ValueError: the key is not a registry host, port and path one would
            write (the message says which part, and never echoes user info).
    """
    text = key
    for scheme in _SCHEMES:
        if text[: len(scheme)].lower() == scheme:
            text = text[len(scheme) :]
            break
    if "://" in text:
        raise ValueError("only http:// and https:// keys name a registry")
    for char, what in (("@", "user info"), ("?", "a query"), ("#", "a fragment")):
        if char in text:
            raise ValueError(f"a registry key has no {what} ({char!r})")
    if not text.isascii() or not text.isprintable() or " " in text:
        raise ValueError("a registry key is printable ASCII without spaces")
    authority, slash, rest = text.partition("/")
    path = slash + rest
    if path.startswith(_VERSION_PREFIXES):
        path = path[3:]
    if path == "/":
        path = ""
    host, port = _split_port(authority.lower())
    if host in DOCKER_HUB_ALIASES and not port:
        host = _DOCKER_HUB
    labels = tuple(host.split("."))
    if not host.startswith("[") and not all(_LABEL.fullmatch(label) for label in labels):
        raise ValueError(
            "each host label is letters, digits, '-' or the glob '*', "
            "and labels are separated by single dots"
        )
    authority = f"{host}:{port}" if port else host
    return KeyPattern(f"{authority}{path}", labels, port, path)


class Keyring:
    """The credentials of some pull secrets, indexed for ``lookup``.

    Built once from parsed secrets (in the pod's order, then its service
    account's), immutable after: a lookup is a pure function of the image.
    """

    def __init__(self, configs: Iterable[DockerConfig]) -> None:
        by_key: dict[str, tuple[KeyPattern, list[Credential]]] = {}
        ignored: list[IgnoredKey] = []
        for config in configs:
            for entry in config.entries:
                try:
                    pattern = parse_key(entry.key)
                except ValueError as exc:
                    ignored.append(IgnoredKey(config.source, entry.key, str(exc)))
                    continue
                credential = Credential(entry.username, entry.password, config.source, entry.key)
                by_key.setdefault(pattern.text, (pattern, []))[1].append(credential)
        # K5: reverse lexical order puts longer paths and literal labels first.
        self._index: tuple[tuple[KeyPattern, tuple[Credential, ...]], ...] = tuple(
            (pattern, tuple(credentials))
            for _, (pattern, credentials) in sorted(
                by_key.items(), key=lambda item: item[0], reverse=True
            )
        )
        self.ignored: tuple[IgnoredKey, ...] = tuple(ignored)

    def __len__(self) -> int:
        return sum(len(credentials) for _, credentials in self._index)

    def lookup(self, image: ImageRef | str) -> list[Credential]:
        """The credentials to try for ``image``, in order; empty when none applies.

        ``image`` is a parsed reference or text (``nginx`` is
        ``docker.io/library/nginx``); its tag and digest play no part.

        Raises:
            ImageReferenceError: ``image`` is text that does not parse.
        """
        ref = parse_reference(image) if isinstance(image, str) else image
        host, port = _split_port(ref.domain)
        path = f"/{ref.path}"
        found: list[Credential] = []
        for pattern, credentials in self._index:
            if pattern.matches(host, port, path):
                found.extend(credentials)
        return found

    def for_host(self, host: str) -> list[Credential]:
        """The credentials of keys that cover every repository on ``host[:port]``, in order.

        ``KeyPattern.covers_host`` says which keys; the order is ``lookup``'s (K5).
        """
        found: list[Credential] = []
        for pattern, credentials in self._index:
            if pattern.covers_host(host):
                found.extend(credentials)
        return found

    def describe_ignored(self) -> list[str]:
        """One line per ignored key, for ``check`` and the logs: no secret in any."""
        return [f"{item.source}: key {shown_key(item.key)}: {item.reason}" for item in self.ignored]


def _split_port(authority: str) -> tuple[str, str]:
    """``host[:port]`` as ``(host, port)``, as Go's net.SplitHostPort; IPv6 in brackets.

    Raises:
        ValueError: a port that is not a number, or a malformed IPv6 host.
    """
    if authority.startswith("["):
        end = authority.find("]") + 1
        host, rest = authority[:end], authority[end:]
        if not end or not _IPV6.fullmatch(host) or (rest and not rest.startswith(":")):
            raise ValueError("an IPv6 registry host is written [address] or [address]:port")
        port = rest[1:]
    else:
        host, _, port = authority.partition(":")
    if port and (not _PORT.fullmatch(port) or not 0 < int(port) < 65536):
        raise ValueError("the port is a number from 1 to 65535")
    if not host:
        raise ValueError("the key names no host")
    return host, port


def _label_matches(glob: str, label: str) -> bool:
    """One host label against one glob label, where ``*`` is any run of characters (K2)."""
    if "*" not in glob:
        return glob == label
    pattern = ".*".join(re.escape(part) for part in glob.split("*"))
    return re.fullmatch(pattern, label) is not None
