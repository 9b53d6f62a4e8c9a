"""The strict CBOR reading of COSE envelopes: the well-formedness scan, cbor2's options
and the refusal of every tag but 18 and 1."""

from __future__ import annotations

import time

import cbor2
import pytest

from webhook.signatures.notation import cbor
from webhook.signatures.notation.model import NotationError


def test_plain_data_decodes() -> None:
    value = {1: -37, 2: ["a"], "k": b"\x00", "t": cbor2.CBORTag(1, 1700000000), "f": 1.5, "n": None}
    decoded = cbor.decode(cbor2.dumps(value), "the map")
    assert decoded == {
        1: -37,
        2: ["a"],
        "k": b"\x00",
        "t": cbor.Epoch(1700000000),
        "f": 1.5,
        "n": None,
    }
    message = cbor.decode(cbor2.dumps(cbor2.CBORTag(18, [b"", {}, b"p", b"s"])), "the message")
    assert isinstance(message, cbor.Sign1)
    assert list(message.items) == [b"", {}, b"p", b"s"]  # type: ignore[call-overload]


@pytest.mark.parametrize(
    ("data", "pattern"),
    [
        (b"\x01\x02", "1 bytes follow its single item"),
        (b"\xa0\x00", "1 bytes follow its single item"),
        (b"", "ends in the middle of an item"),
        (b"\x82\x01", "declares more items than it has bytes"),
        (b"\x9b\xff\xff\xff\xff\xff\xff\xff\xff\x00", "declares more items than it has bytes"),
        (b"\x5a\xff\xff\xff\xff", "a string runs past its end"),
        (b"\x19\x01", "ends in the middle of an item"),
        (b"\x9f\x01\xff", "indefinite length"),
        (b"\x5f\x41\x00\xff", "indefinite length"),
        (b"\x1c", "reserved item head"),
        (b"\xf8\x10", "badly encoded simple value"),
        (b"\xa1\x82\x01\x02\x00", "a map key is neither an integer nor a text string"),
        (b"\xa1\x41\x00\x00", "a map key is neither an integer nor a text string"),
        (b"\xa1\xc1\x01\x00", "a map key is neither an integer nor a text string"),
        (b"\xa1\xf9\x3c\x00\x00", "a map key is neither an integer nor a text string"),
        (b"\x81" * 17 + b"\x00", "nests deeper than 16 levels"),
    ],
)
def test_malformed_or_refused_shapes(data: bytes, pattern: str) -> None:
    with pytest.raises(NotationError, match=f"^the item is not well-formed CBOR: .*{pattern}"):
        cbor.decode(data, "the item")


def test_nesting_up_to_the_limit_is_accepted() -> None:
    assert cbor.decode(b"\x81" * 15 + b"\x00", "the item") is not None


def test_duplicate_map_keys_are_refused() -> None:
    with pytest.raises(NotationError, match="the header is not valid CBOR"):
        cbor.decode(b"\xa2\x01\x00\x01\x01", "the header")
    with pytest.raises(NotationError, match="the header is not valid CBOR"):
        cbor.decode(b"\xa2\x61a\x00\x61a\x01", "the header")


def test_invalid_utf8_text_is_refused() -> None:
    with pytest.raises(NotationError, match="is not valid CBOR"):
        cbor.decode(b"\x62\xff\xfe", "the text")


@pytest.mark.parametrize(
    "tag", [0, 2, 3, 4, 5, 25, 28, 29, 30, 35, 36, 37, 258, 261, 1004, 55799, 99, 2**32, 2**64 - 1]
)
def test_tags_other_than_18_and_1_are_refused(tag: int) -> None:
    for value in (0, b"\x01", "2024-01-01T00:00:00Z", [0, 1], {}):
        with pytest.raises(NotationError, match=f"CBOR tag {tag} appears"):
            cbor.decode(cbor2.dumps([cbor2.CBORTag(tag, value)]), "the item")


def test_no_tag_gets_a_built_in_decoder() -> None:
    """Every tag cbor2 might decode by itself reaches trustgate's answer: a cbor2 release
    that adds a built-in tag, or stops asking semantic_decoders, fails here."""
    let_through = []
    for tag in range(65536):
        if tag in (cbor.SIGN1_TAG, cbor.EPOCH_TAG):
            continue
        data = cbor2.dumps(cbor2.CBORTag(tag, 0))
        try:
            cbor.decode(data, "the item")
        except NotationError as exc:
            if f"CBOR tag {tag} appears" not in exc.message:
                let_through.append(tag)
        else:
            let_through.append(tag)
    assert let_through == []


def test_shared_references_cannot_make_cycles() -> None:
    cyclic = b"\xd8\x1c\x81\xd8\x1d\x00"  # shareable([sharedref(0)]): a list holding itself
    with pytest.raises(NotationError, match=r"CBOR tag 2[89] appears"):
        cbor.decode(cyclic, "the item")


def test_colliding_map_keys_cannot_be_used_to_stall_decoding() -> None:
    """Arrays as map keys hash without a seed: 16,000 crafted 2-tuples that all collide
    take cbor2 seconds to insert. The scan refuses the first such key at once."""
    keys = _colliding_pairs(16000)
    assert len({hash(key) for key in keys[:50]}) == 1
    body = b"".join(cbor2.dumps(list(key)) + b"\x00" for key in keys)
    data = b"\xba" + len(keys).to_bytes(4, "big") + body
    assert len(data) > 200_000
    started = time.perf_counter()
    with pytest.raises(NotationError, match="a map key is neither an integer nor a text string"):
        cbor.decode(data, "the header")
    assert time.perf_counter() - started < 0.05


def _colliding_pairs(count: int) -> list[tuple[int, int]]:
    """Pairs of integers with one tuple hash (CPython's xxHash-based tuplehash, 64-bit)."""
    mod, p1, p2, p5 = 2**64, 11400714785074694791, 14029467366897019727, 2870177450012600261

    def rotl(x: int, r: int) -> int:
        return ((x << r) | (x >> (64 - r))) % mod

    def rotr(x: int, r: int) -> int:
        return ((x >> r) | (x << (64 - r))) % mod

    wanted = (0x1234567890ABCDEF - (2 ^ (p5 ^ 3527539))) % mod
    before_last = rotr(wanted * pow(p1, -1, mod) % mod, 31)
    pairs: list[tuple[int, int]] = []
    first = 0
    while len(pairs) < count:
        lane = rotl((p5 + (hash(first) % mod) * p2) % mod, 31) * p1 % mod
        second = (before_last - lane) * pow(p2, -1, mod) % mod
        signed = second - mod if second >= 2**63 else second
        if -(2**61 - 1) < signed < 2**61 - 1 and signed != -1:
            pairs.append((first, signed))
        first += 1
    return pairs
