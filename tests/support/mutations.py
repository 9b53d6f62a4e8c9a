"""AdmissionReviews with one field of the wrong type (or missing), for property-based tests.

Every field at every level of a realistic review is a candidate: the envelope,
the request, userInfo, options, and each value of the objects down to image
strings and image volumes. The images of each base review are denied by the
test policies (``BAD`` in ``prod-*``), so a mutated review that is admitted
must have lost them: ``admitted_by_accident`` says when it has not.
"""

from __future__ import annotations

import copy
import json
from typing import Any

from hypothesis import strategies as st

from tests.support.kube import pod_spec, review, workload

BAD = "docker.io/library/nginx:1.27"
GOOD = "quay.io/acme/api:1.0"

Path = tuple[str | int, ...]


def base_reviews(good: str = GOOD) -> list[dict[str, Any]]:
    """Reviews the test policies deny, one per shape: CREATE of a Deployment,
    a CronJob and a Pod with an image volume, and an UPDATE that swaps an image."""
    spec = pod_spec(good, BAD, init=(good,), volumes=(good,))
    with_volume = pod_spec(good, volumes=(BAD,))
    old = workload("Pod", pod_spec(good))
    bodies = [
        review(workload("Deployment", spec)),
        review(workload("CronJob", spec), dry_run=True),
        review(workload("Pod", with_volume)),
        review(workload("Pod", pod_spec(BAD)), operation="UPDATE", old=old),
    ]
    for body in bodies:  # every field the API server may send
        body["request"]["userInfo"].update(uid="u-1", extra={"scopes": ["all"]})
    return [json.loads(json.dumps(body)) for body in bodies]


def paths(value: Any, prefix: Path = ()) -> list[Path]:
    """Every path to a value inside ``value`` (the root excluded)."""
    found: list[Path] = []
    if isinstance(value, dict | list):
        items: Any = value.items() if isinstance(value, dict) else enumerate(value)
        for key, child in items:
            found.append((*prefix, key))
            found.extend(paths(child, (*prefix, key)))
    return found


_SCALARS = (
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=12)
)
JSON_VALUES = st.recursive(
    _SCALARS,
    lambda children: (
        st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=8), children, max_size=3)
    ),
    max_leaves=12,
)


def _kind(value: Any) -> type:
    return type(value) if not isinstance(value, bool) else bool


@st.composite
def mutated_reviews(draw: st.DrawFn, good: str = GOOD) -> dict[str, Any]:
    """A base review with one value replaced by one of another type, or removed."""
    body = copy.deepcopy(draw(st.sampled_from(base_reviews(good))))
    path = draw(st.sampled_from(paths(body)))
    parent: Any = body
    for step in path[:-1]:
        parent = parent[step]
    original = parent[path[-1]]
    if isinstance(parent, dict) and draw(st.booleans()):
        del parent[path[-1]]
    else:
        parent[path[-1]] = draw(JSON_VALUES.filter(lambda v: _kind(v) is not _kind(original)))
    return body


def admitted_by_accident(body: dict[str, Any], answer: dict[str, Any]) -> bool:
    """Whether ``answer`` admits an object that still names a denied image."""
    response = answer.get("response", {})
    if response.get("allowed") is not True:
        return False
    request = body.get("request")
    obj = request.get("object") if isinstance(request, dict) else None
    return BAD in json.dumps(obj)
