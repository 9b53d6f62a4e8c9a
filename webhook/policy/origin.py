"""Where a policy document comes from, and the errors that point into it.

Shared by the compilers of a document's parts (``compile``, ``authorities``,
``notation``), so that each mistake names the file, the document and the
field, and trusted roots load relative to the file that names them.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from webhook.core.errors import PolicyError
from webhook.trust.trustroot import TrustRoot, TrustRoots, load_trusted_root


@dataclass(frozen=True, slots=True)
class Origin:
    """Where a document comes from: its file, its index there, and the roots to load."""

    file: Path
    document: int
    roots: TrustRoots | None = None

    def root(self, spec: str) -> TrustRoot:
        """The trusted root ``spec`` names, relative to this file; raises PolicyError."""
        if self.roots is None:
            return load_trusted_root(spec, self.file.parent)
        return self.roots.load(spec, self.file.parent)

    def error(self, message: str, field: str | None = None) -> PolicyError:
        """A PolicyError at ``field`` of this document."""
        return PolicyError(message, file=str(self.file), document=self.document, field=field)
