"""Where grades come from: Pyxis, a grades file, signed vulnerability reports.

Each source answers a ``GradeReport`` (a schedule of grades, and the fixes
behind it when known) or ``Unknown`` with the reason it does not know the
image; a source that fails raises an UpstreamError. The freshness check tries
a policy's sources in order and the first that knows the image wins.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from webhook.core.deadline import Deadline
from webhook.core.errors import ConfigError
from webhook.freshness.grades import Fix, Window, combine
from webhook.freshness.pyxis import (
    DEFAULT_TIMEOUT,
    DEFAULT_URL,
    ArchitectureGrades,
    PyxisClient,
    PyxisSettings,
)
from webhook.freshness.static import StaticGrades, load_grades
from webhook.registry.network import Network

#: How each source is named in messages.
LABELS = {"pyxis": "Pyxis", "attestation": "signed vulnerability report", "static": "grades file"}


@dataclass(frozen=True, slots=True)
class GradeReport:
    """What one source knows about one image: its grade schedule and why.

    ``fixes`` are the unapplied fixes the schedule was computed from (empty for
    Pyxis and for a fixed grade); ``detail`` says where the answer came from
    (architectures, report scanner); ``scanned`` is a report's scan time.
    """

    source: str
    windows: tuple[Window, ...]
    fixes: tuple[Fix, ...] = ()
    detail: str = ""
    scanned: datetime | None = None

    @property
    def label(self) -> str:
        """The source as messages name it: Pyxis, grades file, signed vulnerability report."""
        return LABELS.get(self.source, self.source)


@dataclass(frozen=True, slots=True)
class Unknown:
    """A source does not know the image's grade; ``reason`` says why, for the message."""

    source: str
    reason: str
    failed: bool = False


@dataclass(frozen=True, slots=True)
class FreshnessSettings:
    """``freshness:`` of trustgate.yaml: how to reach Pyxis, and the grades file."""

    pyxis: PyxisSettings = field(default_factory=PyxisSettings)
    static_file: Path | None = None

    @classmethod
    def from_config(cls, raw: Mapping[str, Any]) -> FreshnessSettings:
        """Read ``freshness:`` (already checked against the configuration schema).

        Raises:
            ConfigError: the API key file cannot be read.
        """
        pyxis = raw.get("pyxis", {})
        api_key = pyxis.get("apiKey")
        key_file = pyxis.get("apiKeyFile")
        if key_file is not None:
            try:
                api_key = Path(key_file).read_text(encoding="utf-8").strip()
            except (OSError, UnicodeDecodeError) as exc:
                raise ConfigError(
                    f"freshness.pyxis.apiKeyFile: cannot read {key_file}: {exc}"
                ) from None
        static = raw.get("static", {})
        return cls(
            pyxis=PyxisSettings(
                url=str(pyxis.get("url", DEFAULT_URL)),
                api_key=api_key or None,
                timeout=float(pyxis.get("timeoutSeconds", DEFAULT_TIMEOUT)),
            ),
            static_file=Path(static["file"]) if "file" in static else None,
        )


class FreshnessSources:
    """The Pyxis client and the grades file one engine uses, built once."""

    def __init__(self, settings: FreshnessSettings, network: Network | None = None) -> None:
        self.settings = settings
        self.pyxis = PyxisClient(settings.pyxis, network)
        self.static: StaticGrades | None = (
            None if settings.static_file is None else load_grades(settings.static_file)
        )

    def from_pyxis(self, digest: str, deadline: Deadline) -> GradeReport | Unknown:
        """The grade schedule Pyxis publishes; the worst architecture's at every moment.

        Raises:
            UpstreamError: Pyxis failed or timed out.
        """
        found = self.pyxis.grades(digest, deadline)
        if not found:
            return Unknown("pyxis", f"Pyxis at {self.pyxis.url} does not know {digest}")
        graded = [arch for arch in found if arch.windows]
        if not graded:
            return Unknown(
                "pyxis", f"Pyxis knows {digest} but publishes no freshness grades for it"
            )
        return GradeReport("pyxis", combine([a.windows for a in graded]), detail=_arches(graded))

    def from_static(self, repository: str, digest: str) -> GradeReport | Unknown:
        """The grades file's entry for the image."""
        if self.static is None:
            return Unknown("static", "no grades file is configured (freshness.static.file)")
        entry = self.static.lookup(repository, digest)
        if entry is None:
            return Unknown("static", f"the grades file {self.static.path} has no entry for it")
        return GradeReport("static", entry.windows, entry.fixes, detail=f"entry {entry.match}")


def _arches(graded: list[ArchitectureGrades]) -> str:
    names = sorted({arch.architecture for arch in graded})
    return "architecture " + names[0] if len(names) == 1 else "architectures " + ", ".join(names)
