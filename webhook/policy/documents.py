"""Policy files: which files a directory holds, and their documents as plain data.

Every ``*.yaml``, ``*.yml`` and ``*.json`` file at the top of the directory is
read, in name order. Hidden entries are skipped, which covers the ``..data`` and
``..<timestamp>`` directories of a Kubernetes ConfigMap mount (its visible files
are symlinks into ``..data/`` and are followed). A YAML file may hold several
documents.

Whatever a file holds, reading it raises nothing but ``PolicyError``: a YAML
or JSON syntax error, a key given twice, a date Python cannot represent, a
number too long to convert, nesting too deep for the parser, an alias bomb
(a few lines whose aliases expand to billions of nodes), a YAML tag that makes
something other than plain data (``!!binary``, ``!!set``), a key that is not a
string, or text that is not valid Unicode. Past this module a document is
made of dicts with string keys, lists, strings, numbers, booleans, None and
dates (an unquoted ``2026-12-31``), no deeper than ``MAX_DEPTH`` and of at most
``MAX_NODES`` values counted with every alias expanded, so the schema check
and the compiler never meet a shape they cannot walk.
"""

from __future__ import annotations

import datetime as dt
import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import yaml

from webhook.core.errors import PolicyError
from webhook.core.untrusted import unique_keys
from webhook.core.yamltags import check_timestamps

SUFFIXES = frozenset({".yaml", ".yml", ".json"})
#: Deepest nesting a document may have; a policy needs about 8, a test case's
#: resource or attestation a few more.
MAX_DEPTH = 64
#: Most values a document may hold, counting each alias as many times as it is used.
MAX_NODES = 200_000

try:
    from yaml import CSafeLoader as _SafeLoader
except ImportError:  # PyYAML built without libyaml
    from yaml import SafeLoader as _SafeLoader  # type: ignore[assignment]


class _Loader(_SafeLoader):
    """The safe loader, refusing a key given twice in one mapping.

    Plain PyYAML keeps the last of two ``registries:`` keys without a word;
    in a security policy a silently dropped line is a mistake worth stopping for.
    """

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: set[tuple[str, str]] = set()
        for key_node, _ in node.value:
            if not isinstance(key_node, yaml.ScalarNode) or key_node.tag.endswith(":merge"):
                continue
            key = (key_node.tag, key_node.value)
            if key in seen:
                raise yaml.constructor.ConstructorError(
                    "while constructing a mapping",
                    node.start_mark,
                    f"found duplicate key {key_node.value!r}",
                    key_node.start_mark,
                )
            seen.add(key)
        return super().construct_mapping(node, deep=deep)


check_timestamps(_Loader)


def iter_documents(path: Path) -> Iterator[tuple[Path, int, Any]]:
    """Every non-empty document of the policy files in directory ``path``, or of file ``path``.

    Yields ``(file, index, document)``, ``index`` counting from 1 within the file.

    Raises:
        PolicyError: when the directory or a file cannot be read or parsed.
    """
    for file in [path] if path.is_file() else policy_files(path):
        yield from parse(file, read(file))


def policy_files(directory: Path) -> list[Path]:
    """The policy files of ``directory``, in name order.

    Raises:
        PolicyError: when the directory does not exist or cannot be listed.
    """
    try:
        names = os.listdir(directory)
    except FileNotFoundError as exc:
        message = f"no ImagePolicy documents found in {directory}: the directory does not exist"
        raise PolicyError(message) from exc
    except NotADirectoryError as exc:
        raise PolicyError(f"{directory} is not a directory") from exc
    except OSError as exc:
        raise PolicyError(f"cannot read policy directory {directory}: {exc.strerror}") from exc
    files = []
    for name in sorted(names):
        file = directory / name
        # is_file() follows symlinks; a dangling one is a file kubelet is removing.
        if not name.startswith(".") and file.suffix in SUFFIXES and file.is_file():
            files.append(file)
    return files


def read(file: Path) -> bytes:
    """The bytes of ``file``; raises PolicyError when it cannot be read."""
    try:
        return file.read_bytes()
    except OSError as exc:
        raise PolicyError(f"cannot read the file: {exc.strerror}", file=str(file)) from exc


def parse(file: Path, data: bytes) -> Iterator[tuple[Path, int, Any]]:
    """The non-empty documents of ``file`` (whose content is ``data``) as plain data.

    Yields ``(file, index, document)``.

    Raises:
        PolicyError: at the first document that cannot be parsed or is not plain data.
    """
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise PolicyError(f"not UTF-8 text (byte {exc.start})", file=str(file)) from exc
    if file.suffix == ".json":
        if text.strip():
            document = _json(text, file)
            if document is not None:
                _check_plain(document, file, 1)
                yield file, 1, document
        return
    index = 0
    documents = yaml.load_all(text, Loader=_Loader)
    while True:
        try:
            document = next(documents)
        except StopIteration:
            return
        except yaml.YAMLError as exc:
            raise PolicyError(_yaml_message(exc), file=str(file), document=index + 1) from exc
        except ValueError as exc:
            # PyYAML builds timestamps with datetime, which refuses 2026-02-30 this
            # way, and ints with int(), which refuses more than 4,300 digits.
            message = f"not valid YAML: {exc}"
            raise PolicyError(message, file=str(file), document=index + 1) from exc
        except RecursionError as exc:
            raise _too_deep(file, index + 1) from exc
        index += 1
        if document is not None:
            _check_plain(document, file, index)
            yield file, index, document


def load_yaml(text: str, source: str) -> Any:
    """The one YAML document of ``text`` (from ``source``), read as policy files are.

    A key given twice is refused, and a syntax error is reported by line and
    column without quoting the text: a configuration file holds secrets.

    Raises:
        PolicyError: naming ``source``, the line and the column.
    """
    try:
        document = yaml.load(text, Loader=_Loader)  # _Loader is a safe loader
    except yaml.YAMLError as exc:
        raise PolicyError(_yaml_message(exc), file=source) from None
    except ValueError as exc:
        raise PolicyError(f"not valid YAML: {exc}", file=source) from None
    except RecursionError:
        raise _too_deep(Path(source), None) from None
    _check_plain(document, Path(source), None)
    return document


def _json(text: str, file: Path) -> Any:
    try:
        return json.loads(text, object_pairs_hook=unique_keys)
    except json.JSONDecodeError as exc:
        message = f"not valid JSON at line {exc.lineno}, column {exc.colno}: {exc.msg}"
        raise PolicyError(message, file=str(file), document=1) from exc
    except ValueError as exc:  # a duplicate key, or an integer of more than 4,300 digits
        raise PolicyError(f"not valid JSON: {exc}", file=str(file), document=1) from exc
    except RecursionError as exc:
        raise _too_deep(file, 1) from exc


def _too_deep(file: Path, document: int | None) -> PolicyError:
    message = f"nested too deeply to read (a policy document needs at most {MAX_DEPTH} levels)"
    return PolicyError(message, file=str(file), document=document)


_SCALARS = (str, bool, int, float, dt.date, type(None))  # dt.datetime is a dt.date


def _check_plain(document: Any, file: Path, index: int | None) -> None:
    """Refuse what is not plain data, too deep, or too large once aliases are expanded.

    Walks with its own stack and stops at ``MAX_NODES`` visits, so an alias
    bomb or a recursive alias costs at most that many steps.
    """
    stack: list[tuple[Any, str, int]] = [(document, "", 0)]
    visits = 0
    while stack:
        value, where, depth = stack.pop()
        visits += 1
        if visits > MAX_NODES:
            raise PolicyError(
                f"holds more than {MAX_NODES:,} values (counting each use of a YAML alias); "
                "a policy document is far smaller",
                file=str(file),
                document=index,
            )
        if depth > MAX_DEPTH:
            raise PolicyError(
                f"is nested more than {MAX_DEPTH} levels deep",
                file=str(file),
                document=index,
                field=where or None,
            )
        if isinstance(value, dict):
            for key, item in value.items():
                if not isinstance(key, str):
                    raise PolicyError(
                        f"has the key {_shown(key)}, which is not a string "
                        "(YAML reads unquoted numbers, dates, yes/no and null as values: quote it)",
                        file=str(file),
                        document=index,
                        field=where or None,
                    )
                _check_text(key, file, index, where)
                stack.append((item, f"{where}.{key}" if where else key, depth + 1))
        elif isinstance(value, list):
            for number, item in enumerate(value):
                stack.append((item, f"{where}[{number}]", depth + 1))
        elif isinstance(value, str):
            _check_text(value, file, index, where)
        elif not isinstance(value, _SCALARS):
            raise PolicyError(
                f"holds a {type(value).__name__} value, which a policy document cannot use "
                "(YAML tags such as !!binary, !!set, !!omap and !!pairs make them)",
                file=str(file),
                document=index,
                field=where or None,
            )


def _check_text(text: str, file: Path, index: int | None, where: str) -> None:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as exc:
        message = (
            f"holds text that is not valid Unicode (a lone surrogate at character {exc.start})"
        )
        raise PolicyError(message, file=str(file), document=index, field=where or None) from None


def _shown(key: object) -> str:
    text = repr(key)
    return text if len(text) <= 40 else text[:37] + "..."


def _yaml_message(exc: yaml.YAMLError) -> str:
    if isinstance(exc, yaml.MarkedYAMLError) and exc.problem_mark is not None:
        mark = exc.problem_mark
        problem = exc.problem or "syntax error"
        context = f" ({exc.context})" if exc.context else ""
        return (
            f"not valid YAML at line {mark.line + 1}, column {mark.column + 1}: {problem}{context}"
        )
    return f"not valid YAML: {exc}"
