"""Which images ``/mutate`` pins, to what, and the JSONPatch that does it.

A validating webhook checks what a tag points at during admission; the kubelet
pulls the tag later, perhaps after it has moved. Pinning closes that gap: the
reference is rewritten to ``repository:tag@digest`` with the digest the checks
verified, and the runtime then pulls by digest and ignores the tag.

Only a digest a check verified itself is pinned (a signature over it, an
attestation about it, a known freshness grade of it: ``CheckResult.digest``),
and only when every policy that governs the image passed, at least one of them
asks for pinning (``pinDigest``), and all of them verified that same digest.
Everything here is pure: verdicts and image locations in, a patch out.
"""

from __future__ import annotations

import functools
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from webhook.core.errors import ImageReferenceError
from webhook.core.reference import parse_reference
from webhook.engine import Verdict


@dataclass(frozen=True, slots=True)
class Pin:
    """One image as written, the reference it becomes, and where it is written."""

    image: str
    pinned: str
    digest: str
    pointers: tuple[str, ...]


def verified_digest(verdict: Verdict) -> tuple[str | None, str]:
    """``(digest, "")`` when ``verdict`` allows pinning, else ``(None, why not)``.

    An image is pinned when it is admitted, no policy governing it failed (an
    audit policy's failure too: the image was found at fault, and is left as
    written), at least one of them asks for pinning, and every digest its
    checks verified is the one the reference resolved to. The engine resolves
    each image once per review and every check of every policy reads that one
    digest, so "agree" holds by construction; it is checked all the same.
    """
    ref = verdict.reference
    if ref is None:
        return None, "invalid image reference"
    if ref.digest is not None:
        return None, "already pinned by digest"
    if verdict.denials:
        return None, "denied"
    if not verdict.policies:
        return None, "no policy governs it"
    if not any(result.pin for result in verdict.policies):
        return None, "no policy governing it sets pinDigest"
    failed = [result.policy for result in verdict.policies if not result.passed]
    if failed:
        return None, f'policy "{failed[0]}" did not pass'
    verified = {
        check.digest
        for result in verdict.policies
        for check in result.results
        if check.digest is not None
    }
    if not verified:
        return None, "no check verified a digest (e.g. an unknown grade admitted by onUnknown)"
    if len(verified) > 1 or verdict.digest not in verified:
        return None, "its checks verified different digests"
    return verdict.digest, ""


@functools.lru_cache(maxsize=4096)
def pinned_reference(written: str, digest: str) -> str:
    """``written`` with ``@digest`` appended, keeping its tag and spelling.

    ``nginx`` becomes ``nginx:latest@sha256:...`` (the tag that was resolved);
    the domain and path stay as the author wrote them, so the result parses to
    the same repository and tag, now with the digest. Pure, so remembered: the
    same images are pinned on every deploy.

    Raises:
        ImageReferenceError: ``written`` is not a tag reference or ``digest`` not a
            full digest, or the result would not parse back to the same image.
    """
    ref = parse_reference(written)
    if ref.digest is not None:
        raise ImageReferenceError("the reference is already pinned by digest", image=written)
    expected = ref.with_digest(digest)
    name = written.rpartition("/")[2]
    text = written if ":" in name else f"{written}:{ref.tag}"
    pinned = f"{text}@{digest}"
    if parse_reference(pinned) != expected:
        raise ImageReferenceError(
            f"pinning would change the reference (to {pinned})", image=written
        )
    return pinned


def json_patch(pins: Iterable[Pin]) -> list[dict[str, Any]]:
    """RFC 6902 operations that rewrite each pinned image where it is written.

    Each ``replace`` follows a ``test`` of the value it replaces, so a patch
    applied to an object that has changed since (another mutating webhook
    rewrote the image) fails whole instead of rewriting a different value.
    """
    ops: list[dict[str, Any]] = []
    for pin in pins:
        for pointer in pin.pointers:
            ops.append({"op": "test", "path": pointer, "value": pin.image})
            ops.append({"op": "replace", "path": pointer, "value": pin.pinned})
    return ops
