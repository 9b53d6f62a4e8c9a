"""The command blocks of the README and docs/*.md, as lines a test can run.

A fenced block of language ``sh`` holds commands, one per line (a trailing
backslash continues a line; ``# ...`` after a command is its comment). Words
after the language mark what a block needs that a test machine lacks:

- ``sh cluster``: a Kubernetes cluster (kind, kubectl, helm against a cluster);
- ``sh image``: a container runtime or registry holding a built image.

A ``console`` block is a transcript: ``$ command`` lines followed by the output
they print. Blocks may be indented (inside a list item).
"""

from __future__ import annotations

import re
import shlex
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
#: Every document a newcomer reads, in reading order.
DOCUMENTS = (
    REPO / "README.md",
    REPO / "certs" / "README.md",
    *sorted((REPO / "docs").glob("*.md")),
)
#: What a marked block may need that this machine lacks.
MARKS = frozenset({"cluster", "image"})

_FENCE = re.compile(
    r"^(?P<indent> *)```(?P<lang>[\w-]*)(?P<info>[^\n]*)\n(?P<body>.*?)^(?P=indent)```", re.M | re.S
)
_COMMENT = re.compile(r"\s+#(?:\s.*)?$")


@dataclass(frozen=True, slots=True)
class Block:
    """One fenced block: where it starts, its language, its marks and its text."""

    document: Path
    line: int
    lang: str
    marks: frozenset[str]
    body: str

    @property
    def where(self) -> str:
        """``docs/install.md:42``, for messages."""
        return f"{self.document.relative_to(REPO)}:{self.line}"


@dataclass(frozen=True, slots=True)
class Command:
    """One command line of a ``sh`` block, continuation lines joined, its comment apart."""

    block: Block
    text: str
    comment: str

    @property
    def argv(self) -> list[str]:
        """The words as a shell would split them."""
        return shlex.split(self.text)


def blocks(document: Path) -> list[Block]:
    """The fenced blocks of ``document``, in order, dedented."""
    text = document.read_text(encoding="utf-8")
    found = []
    for match in _FENCE.finditer(text):
        indent = len(match["indent"])
        body = "".join(line[indent:] for line in match["body"].splitlines(keepends=True))
        marks = frozenset(match["info"].split())
        unknown = marks - MARKS
        assert not unknown, f"{document}: unknown block marks {sorted(unknown)}"
        line = text.count("\n", 0, match.start()) + 1
        found.append(Block(document, line, match["lang"], marks, body))
    return found


def commands(block: Block) -> list[Command]:
    """The command lines of a ``sh`` block; whole-line comments and blank lines left out."""
    found = []
    for line in block.body.replace("\\\n", " ").splitlines():
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        comment = _COMMENT.search(line)
        text = line[: comment.start()] if comment else line
        note = comment.group().strip().lstrip("#").strip() if comment else ""
        found.append(Command(block, " ".join(text.split()), note))
    return found


def transcript(block: Block) -> list[tuple[str, str]]:
    """The ``(command, output)`` pairs of a ``console`` block."""
    pairs: list[tuple[str, list[str]]] = []
    for line in block.body.splitlines():
        if line.startswith("$ "):
            pairs.append((line[2:], []))
        else:
            assert pairs, f"{block.where}: output before the first $ command"
            pairs[-1][1].append(line)
    return [(command, "\n".join(out).strip("\n")) for command, out in pairs]
