"""ImagePolicyException documents: compiled, cross-checked, and dated for lint.

An exception is a waiver kept in Git beside the policies. Its ``expires`` is a
date, the last day it applies: it stops at the end of that day in UTC
(midnight UTC of the next day), the same instant on every node whatever its
time zone. Expiry is judged against the clock at each review (``active``), so
an expired exception stops applying at once, without a reload; the loader
keeps it, and ``policy lint`` says it has expired.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from webhook.core.counts import counted
from webhook.core.errors import PolicyError
from webhook.policy.globs import Glob
from webhook.policy.model import Policy, PolicyException
from webhook.policy.schema import EXCEPTION_SCHEMA, validate_document

KIND = "ImagePolicyException"
#: ``policy lint`` warns about exceptions that expire within this many days.
WARN_DAYS = 14
#: The first day an exception cannot end on: its end of day is not a datetime.
_LAST_DAY = dt.date.max


def _expiry(value: object, *, file: str, document: int) -> str:
    """``spec.expires`` as text: YAML reads an unquoted 2026-12-31 as a date."""
    if isinstance(value, dt.datetime):
        raise PolicyError(
            "must be a date, YYYY-MM-DD, without a time (it ends at the end of that day, UTC)",
            file=file,
            document=document,
            field="spec.expires",
        )
    if isinstance(value, dt.date):
        return value.isoformat()
    return value  # type: ignore[return-value]  # the schema says what is wrong with it


def compile_exception(document: Mapping[str, Any], *, file: str, index: int) -> PolicyException:
    """One ImagePolicyException document, checked against its schema and compiled.

    Raises:
        PolicyError: naming the field, for a missing reason or expiry, an
            invalid date, an unknown field, and every other schema mistake.
    """
    spec = document.get("spec")
    if isinstance(spec, Mapping) and "expires" in spec:
        expires = _expiry(spec["expires"], file=file, document=index)
        document = {**document, "spec": {**spec, "expires": expires}}
    validate_document(document, file=file, document=index, schema=EXCEPTION_SCHEMA)
    spec = document["spec"]
    try:
        last_day = dt.date.fromisoformat(spec["expires"])
    except ValueError as exc:
        message = f"{spec['expires']!r} is not a valid date ({exc})"
        raise PolicyError(message, file=file, document=index, field="spec.expires") from exc
    if last_day >= _LAST_DAY:
        # Its end (midnight UTC of the next day) is past what a datetime holds.
        message = (
            f"{last_day.isoformat()} is too far ahead: the last day must be before "
            f"{_LAST_DAY.isoformat()} (an exception should expire; renew it when it does)"
        )
        raise PolicyError(message, file=file, document=index, field="spec.expires")
    policies = spec.get("policies")
    return PolicyException(
        name=document["metadata"]["name"],
        namespaces=tuple(Glob(p) for p in spec["namespaces"]),
        images=tuple(Glob(p) for p in spec["images"]),
        policies=None if policies is None else frozenset(policies),
        reason=spec["reason"].strip(),
        expires=last_day,
        ends_at=end_of_day(last_day),
        owner=spec.get("owner", ""),
        source=file,
    )


def end_of_day(day: dt.date) -> dt.datetime:
    """The instant ``day`` ends in UTC: midnight UTC of the next day."""
    return dt.datetime.combine(day + dt.timedelta(days=1), dt.time(), tzinfo=dt.UTC)


def cross_check(
    exceptions: Sequence[tuple[PolicyException, int]], policies: Iterable[Policy]
) -> list[PolicyError]:
    """Mistakes between documents: a name used twice, a policy that does not exist.

    ``exceptions`` come with their document index in their file. An exception
    that names a missing policy (renamed, deleted, misspelt) would silently
    waive nothing; it is refused instead.
    """
    names = {policy.name for policy in policies}
    errors = []
    first: dict[str, str] = {}
    for exception, index in exceptions:
        here = f"{exception.source}, document {index}"
        earlier = first.setdefault(exception.name, here)
        if earlier != here:
            message = f"exception name {exception.name!r} is already used in {earlier}"
            errors.append(_error(message, exception, index, "metadata.name"))
        for name in sorted((exception.policies or frozenset()) - names):
            message = f"names policy {name!r}, which does not exist in the directory"
            errors.append(_error(message, exception, index, "spec.policies"))
    return errors


def _error(message: str, exception: PolicyException, index: int, field: str) -> PolicyError:
    return PolicyError(message, file=exception.source, document=index, field=field)


def breadth_warnings(exceptions: Iterable[PolicyException]) -> list[str]:
    """Lint's warnings about exceptions that cover every image: likely a mistake.

    ``images: ["**"]`` waives the named policies for anything at all in the
    namespaces it names; with ``allPolicies`` that turns trustgate off there.
    """
    return [
        f"exception {exception.name!r} ({exception.source}) covers every image "
        f'(images: ["**"]) in namespaces {", ".join(str(g) for g in exception.namespaces)}'
        for exception in sorted(exceptions, key=lambda e: e.name)
        if any(glob.pattern == "**" for glob in exception.images)
    ]


def expiry_warnings(
    exceptions: Iterable[PolicyException], now: dt.datetime, warn_days: int = WARN_DAYS
) -> list[str]:
    """Lint's warnings: exceptions expired already, or whose last day is at most
    ``warn_days`` days after today (in UTC; 0 warns about those ending today)."""
    warnings = []
    for exception in sorted(exceptions, key=lambda e: (e.ends_at, e.name)):
        day = exception.expires.isoformat()
        where = f"exception {exception.name!r} ({exception.source})"
        if not exception.active(now):
            warnings.append(f"{where} expired at the end of {day} (UTC) and no longer applies")
            continue
        days = (exception.expires - now.astimezone(dt.UTC).date()).days
        if days <= warn_days:
            when = "today" if days == 0 else f"in {counted(days, 'day')}"
            warnings.append(f"{where} expires at the end of {day} (UTC), {when}")
    return warnings
