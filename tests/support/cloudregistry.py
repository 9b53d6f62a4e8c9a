"""A registry that only a cloud login opens, and a pull that speaks the token flow with a login.

``start_login_registry`` runs docker-registry behind a ``TokenServer`` that knows one
user: the login a cloud source should produce (``AWS`` with the token moto issues,
``oauth2accesstoken`` with the metadata server's access token). Any other login is
refused with 401, so a test that pulls through it proves the source's login is the
one the registry takes. ``pull_manifest`` does what a client does with a login:
meet the 401 challenge, fetch a Bearer token from the realm with Basic credentials,
and retry.
"""

from __future__ import annotations

import re
from pathlib import Path

import requests

from tests.support.registry import OCI_MANIFEST, Registry, start_registry
from tests.support.tokenserver import TokenServer
from webhook.core.scope import Login

_PARAM = re.compile(r'(\w+)="([^"]*)"')
TIMEOUT = 10.0


def start_login_registry(tmp: Path, username: str, password: str) -> Registry:
    """A registry whose token server grants pull and push to ``username`` only."""
    tokens = TokenServer(tmp / "tokens", {username: password})
    tokens.start()
    try:
        return start_registry(
            tmp / "registry", token_server=tokens, token_user=(username, password)
        )
    except BaseException:
        tokens.stop()
        raise


def pull_manifest(registry: Registry, repository: str, reference: str, login: Login) -> int:
    """The status of ``GET /v2/<repository>/manifests/<reference>`` pulled with ``login``.

    401 when the token server refused the login (or the registry refused its token).
    """
    url = f"{registry.url}/v2/{repository}/manifests/{reference}"
    headers = {"Accept": OCI_MANIFEST}
    first = requests.get(url, headers=headers, timeout=TIMEOUT)
    if first.status_code != 401:
        return first.status_code
    params = dict(_PARAM.findall(first.headers.get("WWW-Authenticate", "")))
    answer = requests.get(
        params["realm"],
        params={"service": params.get("service", ""), "scope": f"repository:{repository}:pull"},
        auth=(login.username, login.password),
        timeout=TIMEOUT,
    )
    if answer.status_code != 200:
        return answer.status_code
    headers["Authorization"] = f"Bearer {answer.json()['token']}"
    return requests.get(url, headers=headers, timeout=TIMEOUT).status_code
