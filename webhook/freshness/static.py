"""A grades file: grades decided elsewhere, for air-gapped clusters and CI pipelines.

```yaml
grades:
  - digest: sha256:4f2a...        # one image, exactly
    grade: B
  - image: quay.io/acme/**         # a repository glob, as in policies
    fixes:                         # or the unapplied fixes, graded here
      - {id: RHSA-2024:1234, severity: Critical, released: "2024-05-01"}
```

A digest entry wins over any glob; among globs the first that matches wins.
The file is read once, when the engine is built: the request path opens no files.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from webhook.core.errors import ConfigError
from webhook.freshness.grades import GRADES, Fix, Grade, Window, parse_date, schedule
from webhook.freshness.reports import severity
from webhook.policy.globs import Glob


@dataclass(frozen=True, slots=True)
class StaticEntry:
    """One entry: what it matches, and its schedule (fixed grade or graded fixes)."""

    match: str
    windows: tuple[Window, ...]
    fixes: tuple[Fix, ...] = ()


class StaticGrades:
    """The entries of one grades file, indexed for lookup."""

    def __init__(
        self, path: Path, digests: dict[str, StaticEntry], globs: list[tuple[Glob, StaticEntry]]
    ):
        self.path = path
        self._digests = digests
        self._globs = globs

    def lookup(self, repository: str, digest: str) -> StaticEntry | None:
        """The entry for the image, by digest first and then by repository glob."""
        entry = self._digests.get(digest)
        if entry is not None:
            return entry
        return next((e for glob, e in self._globs if glob.matches(repository)), None)


def load_grades(path: Path) -> StaticGrades:
    """Read and check a grades file (YAML or JSON).

    Raises:
        ConfigError: naming the file, the entry and the field that is wrong.
    """
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"freshness.static.file: cannot read {path}: {exc}") from None
    try:
        data = json.loads(text) if path.suffix == ".json" else yaml.safe_load(text)
    except (ValueError, yaml.YAMLError) as exc:
        raise ConfigError(f"freshness.static.file: {path} is not valid YAML/JSON: {exc}") from None
    entries = data.get("grades") if isinstance(data, Mapping) else None
    if not isinstance(entries, list):
        raise ConfigError(f"{path}: expected a mapping with a list under grades:")
    digests: dict[str, StaticEntry] = {}
    globs: list[tuple[Glob, StaticEntry]] = []
    for number, raw in enumerate(entries):
        where = f"{path}: grades[{number}]"
        entry = _entry(raw, where)
        if isinstance(raw.get("digest"), str):
            digests[raw["digest"]] = entry
        else:
            globs.append((Glob(raw["image"]), entry))
    return StaticGrades(path, digests, globs)


def _entry(raw: Any, where: str) -> StaticEntry:
    if not isinstance(raw, Mapping):
        raise ConfigError(f"{where} must be a mapping")
    digest, image = raw.get("digest"), raw.get("image")
    if (digest is None) == (image is None):
        raise ConfigError(f"{where}: give exactly one of digest and image")
    if digest is not None and (not isinstance(digest, str) or not digest.startswith("sha256:")):
        raise ConfigError(f"{where}.digest must be sha256:<hex>")
    if image is not None and (not isinstance(image, str) or not image or image != image.lower()):
        raise ConfigError(f"{where}.image must be a lowercase repository glob")
    match = str(digest if digest is not None else image)
    grade, fixes = raw.get("grade"), raw.get("fixes")
    if (grade is None) == (fixes is None):
        raise ConfigError(f"{where}: give exactly one of grade and fixes")
    if grade is not None:
        if grade not in GRADES:
            raise ConfigError(f"{where}.grade must be one of A, B, C, D, E, F (got {grade!r})")
        fixed: Grade = grade
        return StaticEntry(match, (Window(fixed),))
    if not isinstance(fixes, list):
        raise ConfigError(f"{where}.fixes must be a list")
    parsed = tuple(_fix(fix, f"{where}.fixes[{n}]") for n, fix in enumerate(fixes))
    return StaticEntry(match, schedule(parsed), parsed)


def _fix(raw: Any, where: str) -> Fix:
    if not isinstance(raw, Mapping):
        raise ConfigError(f"{where} must be a mapping with id, severity and released")
    level = severity(raw.get("severity"))
    if level is None:
        raise ConfigError(f"{where}.severity must be Critical, Important, Moderate or Low")
    released_raw = raw.get("released")
    released = parse_date(str(released_raw) if released_raw is not None else None)
    if released is None:
        raise ConfigError(f"{where}.released must be a date, e.g. 2024-05-01")
    return Fix(str(raw.get("id", "?")), level, released, str(raw.get("package", "")))
