"""Rekor log entries in protobuf's binary form, read into their JSON form."""

from __future__ import annotations

import base64

import pytest

from tests.support.gitsign import entry_proto
from tests.support.sigstore_instance import TransparencyLog
from webhook.signatures.tlogproto import MAX_ENTRY_BYTES, entry_json


def test_an_entry_reads_as_its_json_form() -> None:
    log = TransparencyLog()
    log.append({"kind": "hashedrekord", "apiVersion": "0.0.1", "spec": {}})
    entry = log.append({"kind": "hashedrekord", "apiVersion": "0.0.1", "spec": {"n": 2}})
    document = entry_json(entry_proto(entry))
    assert document["logIndex"] == str(entry.index)
    assert base64.b64decode(document["logId"]["keyId"]) == entry.log_id
    assert document["kindVersion"] == {"kind": "hashedrekord", "version": "0.0.1"}
    assert document["integratedTime"] == str(entry.integrated_time)
    promise = document["inclusionPromise"]["signedEntryTimestamp"]
    assert base64.b64decode(promise) == entry.set_signature
    proof = document["inclusionProof"]
    assert [base64.b64decode(h) for h in proof["hashes"]] == list(entry.hashes)
    assert proof["checkpoint"]["envelope"] == entry.checkpoint
    assert proof["treeSize"] == str(entry.tree_size)


def test_unknown_fields_are_skipped() -> None:
    assert entry_json(b"\x48\x05" + b"\x51" + bytes(8) + b"\x08\x07") == {"logIndex": "7"}


@pytest.mark.parametrize(
    ("data", "says"),
    [
        (b"\x08", "truncated varint"),
        (b"\x08" + b"\xff" * 11, "varint longer than 10 bytes"),
        (b"\x12\x05ab", "truncated field"),
        (b"\x0a\x01a", "field logIndex has wire type 2"),
        (b"\x0b", "unsupported wire type 3"),
        (b"\x1a\x03\x0a\x01\xff", "not UTF-8"),
        (bytes(MAX_ENTRY_BYTES + 1), "larger than"),
    ],
)
def test_malformed_entries_are_refused(data: bytes, says: str) -> None:
    with pytest.raises(ValueError, match=says):
        entry_json(data)
