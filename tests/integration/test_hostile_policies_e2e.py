"""Policy files a running server cannot use fail the reload where operators look.

A far expiry, an alias bomb, deep nesting: written into the watched directory
of a real ``trustgate serve``, each must show in ``/readyz`` and in
``trustgate_policy_reload_success``, keep the last good set in force, and
leave no traceback in the server's log.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.integration.conftest import (
    E2E_POLICIES,
    Server,
    serving,
    wait_for,
)

NGINX = "docker.io/library/nginx:1.27"

EXCEPTION = """\
apiVersion: trustgate.dev/v1alpha1
kind: ImagePolicyException
metadata: {{name: nginx-for-now}}
spec:
  namespaces: ["prod-web"]
  images: ["docker.io/library/nginx"]
  policies: ["production"]
  reason: "the vendor's image moves to quay.io next quarter"
  expires: {expires}
"""

BOMB = "".join(
    [
        "apiVersion: trustgate.dev/v1alpha1\nkind: ImagePolicy\nmetadata: {name: bomb}\n",
        "x0: &a0 [x, x, x, x, x, x, x, x, x, x]\n",
        *(f"x{n}: &a{n} [{', '.join([f'*a{n - 1}'] * 10)}]\n" for n in range(1, 10)),
        "spec: {registries: *a9}\n",
    ]
)
DEEP = "apiVersion: trustgate.dev/v1alpha1\nkind: ImagePolicy\nspec: " + "[" * 990 + "]" * 990


def _metric(server: Server) -> str:
    lines = server.get("/metrics").text.splitlines()
    (line,) = [x for x in lines if x.startswith("trustgate_policy_reload_success ")]
    return line.split()[1]


def _last_error(server: Server) -> str | None:
    error: str | None = server.get("/readyz").json()["lastError"]
    return error


def _failed_reload(server: Server, file: str, text: str, says: str) -> None:
    (server.policies / file).write_text(text)
    assert wait_for(lambda: _last_error(server) is not None, timeout=20), server.log_text()
    error = _last_error(server)
    assert error is not None
    assert str(server.policies / file) in error
    assert says in error
    assert _metric(server) == "0.0"
    # The last good set stays in force: nginx is still outside the allowlist.
    assert "not in the registry allowlist" in server.denial(NGINX)
    assert "Traceback" not in server.log_text()
    (server.policies / file).unlink()
    assert wait_for(lambda: _last_error(server) is None, timeout=20), server.log_text()
    assert _metric(server) == "1.0"


@pytest.mark.parametrize(
    ("text", "says"),
    [
        (EXCEPTION.format(expires="9999-12-31"), "field spec.expires: 9999-12-31 is too far ahead"),
        (BOMB, "counting each use of a YAML alias"),
        (DEEP, "nested"),
    ],
    ids=["far expiry", "alias bomb", "deep nesting"],
)
def test_an_unusable_policy_file_fails_the_reload_visibly(
    tmp_path: Path, text: str, says: str
) -> None:
    config = "policies: {reloadIntervalSeconds: 0.2}\n"
    with serving(tmp_path, E2E_POLICIES, config) as server:
        assert _metric(server) == "1.0"
        _failed_reload(server, "waivers.yaml", text, says)


def test_the_last_day_that_can_end_is_applied(tmp_path: Path) -> None:
    config = "policies: {reloadIntervalSeconds: 0.2}\n"
    with serving(tmp_path, E2E_POLICIES, config) as server:
        assert server.decide(NGINX)["allowed"] is False
        (server.policies / "waivers.yaml").write_text(EXCEPTION.format(expires="9999-12-30"))
        assert wait_for(lambda: server.decide(NGINX)["allowed"] is True, timeout=20)
        assert _last_error(server) is None
        assert _metric(server) == "1.0"
