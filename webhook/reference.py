"""Image references: the distribution/reference grammar and its normalisation.

(Interface placeholder: the full grammar is being written.)
"""

from __future__ import annotations

from dataclasses import dataclass

from webhook.errors import ImageReferenceError


@dataclass(frozen=True, slots=True)
class ImageRef:
    """A parsed, normalised image reference."""

    domain: str
    path: str
    tag: str | None = None
    digest: str | None = None

    @property
    def repository(self) -> str:
        """``domain/path``: what allowlists and image globs match."""
        return f"{self.domain}/{self.path}"

    def __str__(self) -> str:
        text = self.repository
        if self.tag is not None:
            text += f":{self.tag}"
        if self.digest is not None:
            text += f"@{self.digest}"
        return text


def parse_reference(text: str) -> ImageRef:
    """Parse and normalise ``text``; raise ImageReferenceError when invalid."""
    if "/" not in text:
        return ImageRef("docker.io", f"library/{text}", "latest")
    domain, _, path = text.partition("/")
    if not path:
        raise ImageReferenceError("empty path", image=text)
    name, _, tag = path.partition(":")
    return ImageRef(domain, name, tag or "latest")
