"""The signed payload: strict JSON, and a target descriptor of the right shape."""

from __future__ import annotations

import json
from typing import Any

import pytest

from webhook.signatures.notation.model import NotationError, TargetDescriptor
from webhook.signatures.notation.payload import MAX_ANNOTATIONS, MAX_PAYLOAD_BYTES, parse_payload

DIGEST = "sha256:" + "ab" * 32
OCI = "application/vnd.oci.image.manifest.v1+json"


def _payload(**target: Any) -> bytes:
    return json.dumps(
        {"targetArtifact": {"mediaType": OCI, "digest": DIGEST, "size": 10, **target}}
    ).encode()


def test_a_descriptor_with_annotations_and_other_fields() -> None:
    data = _payload(annotations={"b": "2", "a": "1"}, artifactType="application/example", urls=[])
    assert parse_payload(data) == TargetDescriptor(OCI, DIGEST, 10, (("a", "1"), ("b", "2")))


@pytest.mark.parametrize(
    "digest",
    [
        "sha512:" + "0" * 128,
        "sha256+b64u:LCa0a2j_xo_5m0U8HTBBNBNCLXBkg7-g-YpeiGJm564",
        "multihash+base58:QmRZxt2b1",
    ],
)
def test_digests_of_the_oci_grammar(digest: str) -> None:
    assert parse_payload(_payload(digest=digest)).digest == digest


@pytest.mark.parametrize(
    ("target", "pattern"),
    [
        ({"digest": "sha256"}, "no valid digest \\(got 'sha256'\\)"),
        ({"digest": "SHA256:ab"}, "no valid digest"),
        ({"digest": "sha256:ab\n"}, "no valid digest"),
        ({"digest": 5}, "no valid digest \\(got 5\\)"),
        ({"digest": "sha256:" + "a" * 300}, "no valid digest"),
        ({"size": "10"}, "no valid size \\(got '10'\\)"),
        ({"size": True}, "no valid size"),
        ({"size": 1.0}, "no valid size"),
        ({"size": 2**63}, "no valid size"),
        ({"mediaType": ""}, "no valid mediaType"),
        ({"mediaType": "text"}, "no valid mediaType"),
        ({"mediaType": ["a/b"]}, "no valid mediaType \\(got list\\)"),
        ({"annotations": {"a": 1}}, "annotations are not a map of strings to strings"),
        ({"annotations": ["a"]}, "annotations are not a map"),
        (
            {"annotations": {str(n): "" for n in range(MAX_ANNOTATIONS + 1)}},
            f"over the limit of {MAX_ANNOTATIONS}",
        ),
    ],
)
def test_malformed_descriptors(target: dict[str, Any], pattern: str) -> None:
    with pytest.raises(NotationError, match=f"the signed payload's targetArtifact .*{pattern}"):
        parse_payload(_payload(**target))


def test_missing_fields_are_refused() -> None:
    for field in ("mediaType", "digest", "size"):
        document = json.loads(_payload())
        del document["targetArtifact"][field]
        with pytest.raises(NotationError, match=f"no valid {field} \\(got nothing\\)"):
            parse_payload(json.dumps(document).encode())


@pytest.mark.parametrize(
    ("data", "pattern"),
    [
        (b"", "the signed payload is not valid JSON"),
        (b"[]", "the signed payload is not a JSON object"),
        (b'{"targetArtifact": []}', "has no targetArtifact object"),
        (b'{"other": {}}', "has no targetArtifact object"),
        (b'{"targetArtifact": {}, "targetArtifact": {}}', "names the key 'targetArtifact' twice"),
        (
            b'{"targetArtifact": {"size": Infinity}}',
            "is not valid JSON \\(Infinity is not a JSON number\\)",
        ),
        (b'{"targetArtifact": {"size": 1' + b"0" * 5000 + b"}}", "is not valid JSON"),
        (b"[" * 5000 + b"]" * 5000, "is not valid JSON \\(it nests too deeply"),
        (b'{"targetArtifact": "\xff"}', "is not valid JSON"),
        (b" " * (MAX_PAYLOAD_BYTES + 1), f"over the limit of {MAX_PAYLOAD_BYTES}"),
    ],
)
def test_strict_json(data: bytes, pattern: str) -> None:
    with pytest.raises(NotationError, match=pattern):
        parse_payload(data)
