"""Secrets kept out of error messages and logs.

The configuration holds a few secrets: ``freshness.pyxis.apiKey``, a Redis URL
with a password in ``cache.shared.url``, ``registries.<host>.password``.
jsonschema's messages print the offending value, and for a rule on a whole
section (``not``, ``type``) the whole section with every secret in it; a
start-up error then lands the key in a pod log anyone with ``get pods/log``
reads. ``schema_message`` keeps jsonschema's wording where nothing secret is
involved and says what is wrong without the value where something is.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any
from urllib.parse import urlsplit

from jsonschema.exceptions import ValidationError

#: Field names whose values are secrets, wherever they appear.
_SECRET_NAME = re.compile(r"password|passwd|apikey|api_key|token|secret|credential", re.IGNORECASE)
#: Fields that name a file holding a secret: the path is not one.
_FILE_NAME = re.compile(r"file$", re.IGNORECASE)
#: A JWT, or the start of one (an access token, a service account token), in free text.
_JWT = re.compile(r"eyJ[\w-]*\.[\w-]*(?:\.[\w-]*)?")
#: A word long enough and mixed enough to be a random credential (base64, hex with case).
_WORD = re.compile(r"[A-Za-z0-9+/=_-]{32,}")


def is_secret_field(name: object) -> bool:
    """Whether a field called ``name`` holds a secret (``apiKey``, not ``apiKeyFile``)."""
    text = str(name)
    return bool(_SECRET_NAME.search(text)) and not _FILE_NAME.search(text)


def hide_tokens(text: str) -> str:
    """``text`` with every JWT, and every word that looks random, replaced by ``(token hidden)``.

    For what another program or server says when it fails (a credential
    plug-in's stderr, an identity library's error): it may quote the token
    it was given or refused, and its words are shown to people. A word of 32
    or more base64 characters with a digit, a lower- and an upper-case letter
    is taken for a credential (ECR's and Google's tokens are such); paths and
    names rarely are.
    """
    return _WORD.sub(_random_word, _JWT.sub("(token hidden)", text))


def _random_word(match: re.Match[str]) -> str:
    word = match.group(0)
    mixed = (
        any(c.isdigit() for c in word)
        and any(c.islower() for c in word)
        and any(c.isupper() for c in word)
    )
    return "(token hidden)" if mixed else word


def redacted_url(url: str) -> str:
    """``url`` without its user, password and query, for logs, errors and /readyz.

    Raises:
        ValueError: the URL does not parse (its port is not a number, say).
    """
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc.rpartition('@')[2]}{parts.path}"


def url_has_secret(text: str) -> bool:
    """Whether ``text`` looks like a URL carrying a password (``redis://:pw@host``)."""
    if "://" not in text or "@" not in text:
        return False
    try:
        return urlsplit(text).password is not None
    except ValueError:  # malformed: assume the worst
        return True


def holds_secret(value: Any, path: Iterable[object] = ()) -> bool:
    """Whether ``value``, found at ``path``, is or contains a secret."""
    if any(is_secret_field(part) for part in path):
        return True
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, dict):
            for key, child in item.items():
                if is_secret_field(key):
                    return True
                stack.append(child)
        elif isinstance(item, list):
            stack.extend(item)
        elif isinstance(item, str) and url_has_secret(item):
            return True
    return False


def schema_message(error: ValidationError) -> str:
    """``error`` in words, without any value that is or holds a secret.

    Two fields of which only one may be set (``not: {required: [a, b]}``) are
    named as such, secret or not: jsonschema would print the whole section.
    """
    names = _exclusive(error.validator_value) if error.validator == "not" else None
    if names is not None:
        return f"set only one of {' and '.join(names)}"
    if not _may_reveal(error):
        return str(error.message)
    hidden = "(the value is not shown: it is or holds a secret)"
    if error.validator == "type":
        return f"is not of type {error.validator_value!r} {hidden}"
    if error.validator == "pattern":
        return f"does not match {error.validator_value!r} {hidden}"
    if error.validator in ("required", "additionalProperties"):
        return str(error.message)  # names fields, never values
    return f"is not valid: it fails the schema's {error.validator!r} rule {hidden}"


def _may_reveal(error: ValidationError) -> bool:
    """Whether printing ``error``'s value could print a secret.

    Yes when the value is or holds one; when the rule's section may hold one
    (its schema names a secret field: the text where ``freshness`` should
    be a mapping may be a mis-indented ``apiKey: ...``); and when a mapping or
    a list was expected and something else came, for the same reason.
    """
    if holds_secret(error.instance, error.absolute_path):
        return True
    if error.validator == "type" and error.validator_value in ("object", "array"):
        return True
    return _names_secret(error.schema)


def _names_secret(schema: Any) -> bool:
    stack = [schema]
    while stack:
        item = stack.pop()
        if isinstance(item, dict):
            properties = item.get("properties")
            if isinstance(properties, dict) and any(map(is_secret_field, properties)):
                return True
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)
    return False


def _exclusive(rule: Any) -> list[str] | None:
    if isinstance(rule, dict) and set(rule) == {"required"}:
        names = rule["required"]
        if isinstance(names, list) and len(names) > 1:
            return [str(name) for name in names]
    return None
