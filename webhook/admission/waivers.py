"""Exceptions and break-glass: the two ways a denied image may still run, loudly.

The engine judges images against policies and knows nothing of time or users;
this module settles its verdicts for one request. A denial by an enforce
policy is waived

1. by an unexpired ``ImagePolicyException`` that covers the image in the
   request's namespace and names the policy (or all policies; only such an
   exception also waives the ``defaults.noMatch: deny`` of an image no policy
   governs), else
2. by break-glass: the object carries ``trustgate.dev/break-glass: "<reason>"``
   in its own metadata and the policy's ``breakGlass`` permits the request's
   user (``userInfo.username`` and ``groups``).

Nothing else is ever waived: an invalid reference, a review past its deadline
or an object that cannot be read stays denied. An image is admitted through
waivers only when every denial of it is waived; otherwise it stays denied, and
its denial names only the policies that still deny it. Each waiver becomes a loud
warning on the image's verdict; where the annotation could not be honoured,
the warning says why. Pure: the clock is the ``now`` parameter.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any

from webhook.engine import PolicyResult, Verdict, display
from webhook.policy.model import PolicyException, PolicySet

#: The annotation that asks for break-glass; its value is the reason.
BREAK_GLASS = "trustgate.dev/break-glass"
_MAX_REASON = 200
#: The reason as a warning shows it, leaving room for the image and the policy.
_WARNING_REASON = 80


@dataclass(frozen=True, slots=True)
class Requester:
    """Who asks, where, and whether they break glass.

    ``annotated``: the object carries the annotation; ``reason`` is its value,
    stripped (empty: not a break-glass). ``user_known`` is False for the dry-run
    audit, which has no userInfo: break-glass then counts wherever a policy
    allows it at all, so that the audit lists what runs under it.
    """

    namespace: str
    user: str = ""
    groups: frozenset[str] = frozenset()
    annotated: bool = False
    reason: str = ""
    user_known: bool = True


@dataclass(frozen=True, slots=True)
class Waiver:
    """One denial that did not count: the image, the policy ("" for
    defaults.noMatch), the failed check and its message, and what waived it:
    the exception named ``exception``, else break-glass."""

    image: str
    policy: str
    check: str
    message: str
    exception: str = ""
    expires: str = ""

    @property
    def by(self) -> str:
        """``exception`` or ``break-glass``."""
        return "exception" if self.exception else "break-glass"


@dataclass(frozen=True, slots=True)
class Settlement:
    """The verdicts with waived denials turned into warnings, and what was waived.

    ``ignored`` says, per denial, why a break-glass annotation was not honoured.
    """

    verdicts: tuple[Verdict, ...]
    waivers: tuple[Waiver, ...] = ()
    ignored: tuple[str, ...] = ()


def break_glass_annotation(obj: Mapping[str, Any] | None) -> str | None:
    """The annotation's value on ``obj``'s own metadata, or None when absent."""
    metadata = (obj or {}).get("metadata")
    if not isinstance(metadata, Mapping):
        return None
    annotations = metadata.get("annotations")
    if not isinstance(annotations, Mapping):
        return None
    value = annotations.get(BREAK_GLASS)
    return value if isinstance(value, str) else None


def break_glass_removed(old: Mapping[str, Any] | None, new: Mapping[str, Any] | None) -> bool:
    """Whether an UPDATE takes a non-empty break-glass annotation away.

    Such an update is judged in full even when no image changed: the object
    ran only thanks to break-glass, and leaving it is the moment it comes back
    under the policy. Were it admitted unchecked, the object would keep
    running unverified images with no annotation left for the audit to find.
    """
    before = (break_glass_annotation(old) or "").strip()
    after = (break_glass_annotation(new) or "").strip()
    return bool(before) and not after


def requester(
    namespace: str,
    obj: Mapping[str, Any] | None,
    *,
    user: str = "",
    groups: tuple[str, ...] = (),
    user_known: bool = True,
) -> Requester:
    """The Requester of a request on ``obj`` by ``user`` in ``groups``."""
    value = break_glass_annotation(obj)
    return Requester(
        namespace=namespace,
        user=user,
        groups=frozenset(groups),
        annotated=value is not None,
        reason=(value or "").strip(),
        user_known=user_known,
    )


def settle(
    verdicts: tuple[Verdict, ...], policy_set: PolicySet, who: Requester, now: datetime
) -> Settlement:
    """Waive what exceptions and break-glass allow; ``now`` decides expiry."""
    settled: list[Verdict] = []
    waivers: list[Waiver] = []
    ignored: list[str] = []
    for verdict in verdicts:
        new, waived, refused = _settle_one(verdict, policy_set, who, now)
        settled.append(new)
        waivers.extend(waived)
        ignored.extend(refused)
    return Settlement(tuple(settled), tuple(waivers), tuple(ignored))


def _settle_one(
    verdict: Verdict,
    policy_set: PolicySet,
    who: Requester,
    now: datetime,
) -> tuple[Verdict, list[Waiver], list[str]]:
    ref = verdict.reference
    if ref is None or not verdict.denials:
        return verdict, [], []  # invalid or past the deadline: never waived
    reaching = policy_set.covering(who.namespace, ref)
    covering = [e for e in reaching if e.active(now)]
    lapsed = [e for e in reaching if not e.active(now)]
    failed: list[tuple[str, str, str]] = []  # (policy, check, message) per denial
    if verdict.no_match == "deny":
        failed = [("", "noMatch", verdict.denials[0])]
    else:
        enforce = [r for r in verdict.policies if r.mode == "enforce" and r.failure is not None]
        if len(enforce) != len(verdict.denials):
            return verdict, [], []  # not one denial per failed policy: waive nothing
        failed = [_failure(r) for r in enforce]
    kept: list[str] = []
    warnings: list[str] = []
    waivers: list[Waiver] = []
    ignored: list[str] = []
    for line, (policy, check, message) in zip(verdict.denials, failed, strict=True):
        exception = next((e for e in covering if e.waives(policy or None)), None)
        if exception is not None:
            day = exception.expires.isoformat()
            waivers.append(Waiver(verdict.image, policy, check, message, exception.name, day))
            warnings.append(_exception_warning(verdict.image, policy, exception, message))
            continue
        why_not = _break_glass_refusal(policy, policy_set, who)
        if who.reason and why_not is None:
            waivers.append(Waiver(verdict.image, policy, check, message))
            warnings.append(_break_glass_warning(verdict.image, policy, who, message))
            continue
        late = next((e for e in lapsed if e.waives(policy or None)), None)
        if late is not None:
            line += f' (exception "{late.name}" expired at the end of {late.expires} UTC)'
        kept.append(line)
        if who.annotated:
            ignored.append(f"break-glass not honoured for image {verdict.image}: {why_not}")
    if kept:
        # All or nothing: an image still denied by one policy is not admitted
        # through the others' waivers, and its denial names what still denies it.
        if not ignored and kept == list(verdict.denials):
            return verdict, [], []
        new = replace(verdict, denials=tuple(kept), warnings=verdict.warnings + tuple(ignored))
        return new, [], ignored
    new = replace(verdict, denials=(), warnings=verdict.warnings + tuple(warnings))
    return new, waivers, []


def _failure(result: PolicyResult) -> tuple[str, str, str]:
    failure = result.failure
    assert failure is not None  # selected for having one
    return result.policy, failure.check, failure.message


def _break_glass_refusal(policy: str, policy_set: PolicySet, who: Requester) -> str | None:
    """Why break-glass cannot waive ``policy`` for ``who``; None when it can."""
    if not who.reason:
        return f"the {BREAK_GLASS} annotation is empty; a break-glass needs a reason"
    if not policy:
        return "no policy governs the image, so none allows break-glass"
    governing = next((p for p in policy_set if p.name == policy), None)
    if governing is None or not governing.break_glass.allowed:
        return f'policy "{policy}" does not allow break-glass'
    if not who.user_known or governing.break_glass.permits(who.user, who.groups):
        return None
    return (
        f'user "{display(who.user)}" is not among the users or groups policy "{policy}" '
        "allows to break glass"
    )


def _exception_warning(image: str, policy: str, exception: PolicyException, message: str) -> str:
    what = f'policy "{policy}"' if policy else "defaults.noMatch"
    return (
        f'image {image} admitted by exception "{exception.name}" (until the end of '
        f"{exception.expires} UTC), waiving {what}: {message}"
    )


def _break_glass_warning(image: str, policy: str, who: Requester, message: str) -> str:
    """Who and why first: the API server cuts warnings at 256 characters."""
    by = f'user "{display(who.user)}"' if who.user_known else "an allowed user"
    reason = shown_reason(who.reason[:_WARNING_REASON])
    return (
        f'BREAK-GLASS by {by}, reason "{reason}": image {image} admitted although '
        f'policy "{policy}" denies it: {message}'
    )


def shown_reason(reason: str) -> str:
    """The break-glass reason as warnings and logs show it: one bounded line."""
    return display(reason[:_MAX_REASON])


def audit_annotations(settlement: Settlement, who: Requester) -> dict[str, str]:
    """Audit annotations for what was waived (plain keys, as in ``admission``)."""
    result: dict[str, str] = {}
    by_exception = [w for w in settlement.waivers if w.exception]
    if by_exception:
        result["exceptions"] = _compact(
            [
                {
                    "image": w.image,
                    "policy": w.policy,
                    "exception": w.exception,
                    "expires": w.expires,
                }
                for w in by_exception
            ]
        )
    broken = [w for w in settlement.waivers if not w.exception]
    if broken:
        result["break-glass"] = _compact(
            {
                "user": who.user,
                "reason": who.reason[:_MAX_REASON],
                "waived": [{"image": w.image, "policy": w.policy} for w in broken],
            }
        )
    if settlement.ignored:
        result["break-glass-ignored"] = _compact(list(settlement.ignored))
    return result


def _compact(value: object) -> str:
    return json.dumps(value, separators=(",", ":"))
