"""Image references: the distribution/reference grammar and its normalisation.

Allowlists match ``ImageRef.repository`` as text, so the parse has to agree
with what the container runtime will pull. The grammar is distribution/
reference's, the normalisation docker's (``nginx`` is
``docker.io/library/nginx:latest``), and every spelling a runtime could read
differently from us is rejected instead of guessed at: non-ASCII look-alikes,
whitespace, single-label hosts that are hosts only because of their case, bare
image IDs, and digests other than full sha256/sha512.
"""

from __future__ import annotations

import dataclasses
import ipaddress
import re
import unicodedata
from dataclasses import dataclass

from webhook.core.errors import ImageReferenceError
from webhook.core.untrusted import quoted, shown

_DOCKER_HUB = "docker.io"
#: Host names that all mean Docker Hub (docker.io in normalised references).
DOCKER_HUB_ALIASES = frozenset({"docker.io", "index.docker.io", "registry-1.docker.io"})
_NAME_MAX = 255
_TAG_MAX = 128
_SHOWN_MAX = 64
_DIGEST_HEX_LENGTHS = {"sha256": 64, "sha512": 128}

_DOMAIN_COMPONENT = r"[a-zA-Z0-9](?:[a-zA-Z0-9-]*[a-zA-Z0-9])?"
_DOMAIN_NAME = re.compile(rf"{_DOMAIN_COMPONENT}(?:\.{_DOMAIN_COMPONENT})*")
_IPV6_HOST = re.compile(r"\[[0-9a-fA-F:]+\]")
_PORT = re.compile(r"[1-9][0-9]{0,4}")
_PATH_COMPONENT = re.compile(r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*")
_TAG = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]*")
_LOWER_HEX = re.compile(r"[0-9a-f]+")
# What containerd and docker resolve as a local image ID rather than a name.
_IMAGE_ID = re.compile(r"(?:sha256|sha384|sha512):[0-9a-fA-F]+|[0-9a-f]{64}")
# A URL's scheme, which a reference copied from a browser or a registry's web page carries.
_SCHEME = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*://")


@dataclass(frozen=True, slots=True)
class ImageRef:
    """A parsed, normalised image reference.

    ``domain`` is lowercase and Docker Hub is always ``docker.io``. When both
    ``tag`` and ``digest`` are set the runtime pulls by digest and ignores the
    tag: the digest is what runs, and the tag is kept only to show what was
    written.
    """

    domain: str
    path: str
    tag: str | None = None
    digest: str | None = None

    @property
    def repository(self) -> str:
        """``domain/path``: what allowlists and image globs match."""
        return f"{self.domain}/{self.path}"

    @property
    def pinned(self) -> bool:
        """Whether a digest fixes the content, whatever the tag says."""
        return self.digest is not None

    def with_digest(self, digest: str) -> ImageRef:
        """This reference pinned to ``digest``, keeping the tag.

        Raises ImageReferenceError when ``digest`` is not a full sha256 or
        sha512 digest.
        """
        try:
            _check_digest(digest)
        except ImageReferenceError as exc:
            raise ImageReferenceError(exc.message, image=str(self)) from None
        return dataclasses.replace(self, digest=digest)

    def __str__(self) -> str:
        text = self.repository
        if self.tag is not None:
            text += f":{self.tag}"
        if self.digest is not None:
            text += f"@{self.digest}"
        return text


def parse_reference(text: str) -> ImageRef:
    """Parse and normalise ``text`` as ``name[:tag][@digest]``.

    A reference with neither tag nor digest gets the tag ``latest``. ``str()``
    of the result parses back to an equal ImageRef.

    Raises ImageReferenceError, whose message says what is wrong, for anything
    outside the grammar or anything a runtime might read differently.
    """
    try:
        return _parse(text)
    except ImageReferenceError as exc:
        raise ImageReferenceError(
            exc.message, image=shown(text, _SHOWN_MAX, verbatim=_NAME_MAX)
        ) from None


def _parse(text: str) -> ImageRef:
    if not text:
        raise ImageReferenceError("image reference is empty")
    _check_characters(text)
    scheme = _SCHEME.match(text)
    if scheme is not None:
        raise ImageReferenceError(
            f"{_quote(text)} starts with a URL scheme ({scheme.group()}), which an image "
            f"reference does not have: write {_quote(text[scheme.end() :])}"
        )
    if _IMAGE_ID.fullmatch(text):
        raise ImageReferenceError(
            f"{_quote(text)} looks like an image ID, which a runtime may resolve to a local "
            "image; name the repository, e.g. registry.example.com/app@sha256:<digest>"
        )
    rest, at, digest = text.partition("@")
    if at:
        if not digest:
            raise ImageReferenceError('"@" must be followed by a digest, e.g. sha256:<64 hex>')
        _check_digest(digest)
    name, tag = _split_tag(rest)
    if not name:
        raise ImageReferenceError("image reference has no repository name")
    _check_length(name)
    domain, path = _split_domain(name)
    domain = _check_domain(domain)
    _check_path(path)
    if domain in DOCKER_HUB_ALIASES:
        domain = _DOCKER_HUB
        if "/" not in path:
            path = f"library/{path}"
    _check_length(f"{domain}/{path}")
    if tag is None and not at:
        tag = "latest"
    return ImageRef(domain, path, tag, digest if at else None)


def _check_characters(text: str) -> None:
    """Reject non-ASCII, whitespace and control characters, naming the first."""
    if text.isascii() and text.isprintable() and " " not in text:
        return
    for offset, char in enumerate(text):
        if not char.isascii():
            name = unicodedata.name(char, "unnamed")
            raise ImageReferenceError(
                f"non-ASCII character {char!a} ({name}) at offset {offset}; image references "
                "are ASCII only, and look-alike letters and fullwidth forms are rejected"
            )
        if char == " " or not char.isprintable():
            raise ImageReferenceError(
                f"whitespace or control character {char!r} at offset {offset}; image "
                "references contain neither"
            )


def _split_tag(rest: str) -> tuple[str, str | None]:
    """Split ``name[:tag]``: the tag follows the last ':' after the last '/'."""
    colon = rest.rfind(":")
    if colon <= rest.rfind("/"):
        return rest, None
    name, tag = rest[:colon], rest[colon + 1 :]
    if not tag:
        raise ImageReferenceError('":" must be followed by a tag')
    if len(tag) > _TAG_MAX:
        raise ImageReferenceError(f"tag is {len(tag)} characters long; the limit is {_TAG_MAX}")
    if not _TAG.fullmatch(tag):
        raise ImageReferenceError(
            f'tag {_quote(tag)} is invalid: use letters, digits, "_", "." and "-", '
            'starting with a letter, digit or "_"'
        )
    return name, tag


def _split_domain(name: str) -> tuple[str, str]:
    """Docker's rule: the first component is a host only if it looks like one."""
    first, slash, remainder = name.partition("/")
    if slash and ("." in first or ":" in first or first == "localhost" or first != first.lower()):
        return first, remainder
    return _DOCKER_HUB, name


def _check_domain(domain: str) -> str:
    """Validate ``host[:port]`` and return it lowercased."""
    if domain.startswith("["):
        end = domain.find("]") + 1
        host, port_part = domain[:end], domain[end:]
        if not end or not _IPV6_HOST.fullmatch(host) or not _is_ipv6(host[1:-1]):
            raise ImageReferenceError(
                f"registry host {_quote(domain)} is not a valid bracketed IPv6 address"
            )
        if port_part and not port_part.startswith(":"):
            raise ImageReferenceError(f"{_quote(domain)}: only a :port may follow an IPv6 address")
        if port_part:
            _check_port(port_part[1:])
    else:
        host, colon, port = domain.partition(":")
        if host.endswith("."):
            raise ImageReferenceError(f"registry host {_quote(host)} must not end with '.'")
        if not _DOMAIN_NAME.fullmatch(host):
            raise ImageReferenceError(
                f"registry host {_quote(host)} is invalid: use labels of letters, digits and "
                "inner '-', separated by single dots"
            )
        if colon:
            _check_port(port)
    lowered = domain.lower()
    if "." not in lowered and ":" not in lowered and lowered != "localhost":
        raise ImageReferenceError(
            f"registry host {_quote(domain)} is a host only because of its uppercase letters; "
            "repository names must be lowercase, and a registry host needs a '.' or a port"
        )
    return lowered


def _is_ipv6(text: str) -> bool:
    try:
        ipaddress.IPv6Address(text)
    except ValueError:
        return False
    return True


def _check_port(port: str) -> None:
    if not _PORT.fullmatch(port) or int(port) > 65535:
        raise ImageReferenceError(
            f"port {_quote(port)} must be a number from 1 to 65535 without leading zeros"
        )


def _check_path(path: str) -> None:
    if path != path.lower():
        raise ImageReferenceError(f"repository name {_quote(path)} must be lowercase")
    for component in path.split("/"):
        if not component:
            raise ImageReferenceError(
                f"repository path {_quote(path)} has an empty component "
                "(a leading, trailing or doubled '/')"
            )
        if not _PATH_COMPONENT.fullmatch(component):
            raise ImageReferenceError(
                f"path component {_quote(component)} is invalid: use lowercase letters and "
                "digits, separated by '.', '_', '__' or dashes, not at either end"
            )


def _check_length(name: str) -> None:
    if len(name) > _NAME_MAX:
        raise ImageReferenceError(
            f"repository name is {len(name)} characters long; the limit is {_NAME_MAX}"
        )


def _check_digest(digest: str) -> None:
    """Accept only full lowercase sha256 and sha512 digests."""
    algorithm, colon, encoded = digest.partition(":")
    if not colon or not algorithm:
        raise ImageReferenceError(
            f"digest {_quote(digest)} must be <algorithm>:<hex>, e.g. sha256:<64 hex>"
        )
    expected = _DIGEST_HEX_LENGTHS.get(algorithm)
    if expected is None:
        raise ImageReferenceError(
            f"digest algorithm {_quote(algorithm)} is not accepted; use sha256 or sha512"
        )
    if not _LOWER_HEX.fullmatch(encoded):
        raise ImageReferenceError(
            f"digest {_quote(digest)} must be lowercase hex (0-9, a-f) after {algorithm}:"
        )
    if len(encoded) != expected:
        raise ImageReferenceError(
            f"digest {_quote(digest)} must have {expected} hex characters, not {len(encoded)}"
        )


def _quote(text: str) -> str:
    return quoted(text, _SHOWN_MAX)
