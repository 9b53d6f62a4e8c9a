"""CBOR from outside, read strictly for COSE envelopes: cbor2 behind a well-formedness scan.

cbor2 (chosen in ``cose``'s docstring) decodes; this module sets it up to
refuse what a Notation envelope never holds and a forger might use:

- duplicate map keys (``allow_duplicate_keys=False``): a header given twice
  could be read as either value;
- indefinite lengths, and nesting deeper than ``MAX_DEPTH``;
- every CBOR tag but 18 (COSE_Sign1) and 1 (epoch date/time). cbor2 decodes
  some tags into Python objects by itself: bignums, shared and cyclic
  references (tags 28 and 29), regular expressions, sets... Each of them is
  answered here with a refusal, so only plain data comes out.

Two properties cbor2 cannot be asked for are checked by a scan of the item
heads (RFC 8949 section 3) before it decodes:

- exactly one data item, with nothing after it: ``cbor2.loads`` ignores
  trailing bytes, and the protected header is signed as the exact bytes that
  wrap it;
- map keys are integers or text strings (COSE labels, RFC 9052 section 3).
  Python hashes integers and tuples without a random seed, so a map keyed by
  arrays can be crafted so that every key collides: 220 kB of such keys took
  cbor2 5 s to decode, holding the GIL. With integer keys no more than 16 of
  64-bit range share a hash, and text hashes are seeded.

The scan reads only heads and lengths, never values, and is linear in the input.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any, Final

import cbor2

from webhook.signatures.notation.model import NotationError

#: Containers nest at most this deep (a Notation envelope needs 5).
MAX_DEPTH: Final = 16
#: The tags of a Notation envelope.
SIGN1_TAG: Final = 18
EPOCH_TAG: Final = 1
# Tags cbor2 6 decodes itself (found by decoding each of 0..65535 and a few
# larger ones; tests/unit/signatures/notation/test_notation_cbor.py checks the
# list still covers them all).
_BUILT_IN_TAGS: Final = (0, 1, 2, 3, 4, 5, 25, 28, 29, 30, 35, 36, 37, 52, 54, 100, 256, 258)
_BUILT_IN_TAGS_HIGH: Final = (260, 261, 1004, 43000, 55799)
_ARRAY, _MAP, _TAG = 0, 1, 2


@dataclass(frozen=True, slots=True)
class Epoch:
    """A tag-1 epoch date/time (RFC 8949 section 3.4.2), as its number of seconds."""

    seconds: object


@dataclass(frozen=True, slots=True)
class Sign1:
    """A tag-18 COSE_Sign1 message: its four items, not yet checked."""

    items: object


def decode(data: bytes, what: str) -> Any:
    """``data`` as one CBOR data item, strictly (see the module docstring).

    Tag 18 comes out as a Sign1, tag 1 as an Epoch; every other tag is refused.

    Raises:
        NotationError: ``data`` is not one well-formed CBOR item within these rules.
    """
    scan(data, what)
    try:
        return cbor2.loads(
            data,
            tag_hook=_refuse_tag,
            semantic_decoders=_TAGS,
            max_depth=MAX_DEPTH,
            allow_indefinite=False,
            allow_duplicate_keys=False,
        )
    except NotationError:
        raise
    except (cbor2.CBORError, ValueError, TypeError, OverflowError) as exc:
        cause = exc.__cause__ if isinstance(exc.__cause__, NotationError) else None
        if cause is not None:
            raise cause from None
        raise NotationError(f"{what} is not valid CBOR ({str(exc)[:160]})") from None


def scan(data: bytes, what: str) -> None:
    """Refuse ``data`` unless it is one well-formed CBOR item whose map keys are
    integers or text, with definite lengths, nested at most MAX_DEPTH deep.

    Raises:
        NotationError: it is not.
    """
    end = len(data)
    pos = 0
    stack: list[list[int]] = [[1, _ARRAY]]  # [items still to read, kind]
    while stack:
        frame = stack[-1]
        if frame[0] == 0:
            stack.pop()
            continue
        is_key = frame[1] == _MAP and frame[0] % 2 == 0
        frame[0] -= 1
        if pos >= end:
            raise _malformed(what, "it ends in the middle of an item")
        major, info = data[pos] >> 5, data[pos] & 0x1F
        pos += 1
        if info < 24:
            argument = info
        elif info < 28:
            width = 1 << (info - 24)
            if pos + width > end:
                raise _malformed(what, "it ends in the middle of an item")
            argument = int.from_bytes(data[pos : pos + width], "big")
            pos += width
        elif info == 31:
            raise _malformed(what, "it uses an indefinite length, which is refused")
        else:
            raise _malformed(what, f"it has a reserved item head (0x{data[pos - 1]:02x})")
        if is_key and major not in (0, 1, 3):
            raise _malformed(
                what, "a map key is neither an integer nor a text string, as COSE labels are"
            )
        if major in (2, 3):
            if argument > end - pos:
                raise _malformed(what, "a string runs past its end")
            pos += argument
        elif major in (4, 5, 6):
            count = 1 if major == 6 else argument * (2 if major == 5 else 1)
            if count > end - pos:
                raise _malformed(what, "a container declares more items than it has bytes")
            if len(stack) > MAX_DEPTH:
                raise _malformed(what, f"it nests deeper than {MAX_DEPTH} levels")
            stack.append([count, {4: _ARRAY, 5: _MAP, 6: _TAG}[major]])
        elif major == 7 and info == 24 and argument < 32:
            raise _malformed(what, "it has a badly encoded simple value")
    if pos != end:
        raise _malformed(what, f"{end - pos} bytes follow its single item")


def _malformed(what: str, reason: str) -> NotationError:
    return NotationError(f"{what} is not well-formed CBOR: {reason}")


def _refuse_tag(tag: cbor2.CBORTag, immutable: bool) -> Any:
    return _decoder(tag.tag)(tag.value, immutable)


def _decoder(tag: int) -> Any:
    if tag == SIGN1_TAG:
        return lambda value, _immutable: Sign1(value)
    if tag == EPOCH_TAG:
        return lambda value, _immutable: Epoch(value)

    def refuse(_value: object, _immutable: bool) -> Any:
        raise NotationError(
            f"CBOR tag {tag} appears, which a Notation envelope has no use for (only tag 18, "
            f"COSE_Sign1, and tag 1, epoch date/time, are accepted)"
        )

    return refuse


class _AllTags(Mapping[int, Any]):
    """cbor2's ``semantic_decoders``: an answer for every tag, so that none of its
    built-in decoders runs. It lists the built-in tags when iterated, in case a
    cbor2 release copies the mapping instead of looking tags up in it; others
    then reach ``tag_hook``, which answers the same."""

    def __getitem__(self, tag: int) -> Any:
        return _decoder(tag)

    def __contains__(self, tag: object) -> bool:
        return isinstance(tag, int)

    def __iter__(self) -> Iterator[int]:
        return iter((*_BUILT_IN_TAGS, *_BUILT_IN_TAGS_HIGH))

    def __len__(self) -> int:
        return len(_BUILT_IN_TAGS) + len(_BUILT_IN_TAGS_HIGH)


_TAGS: Final = _AllTags()
