"""AWS endpoints for tests: moto's server, and stand-ins for what moto lacks.

``MotoServer`` runs moto's own WSGI application (what ``moto.server.ThreadedMotoServer``
serves) on 127.0.0.1, and notes each call's ``X-Amz-Target`` and the region, service
and access key its SigV4 signature was made with, so tests can count
GetAuthorizationToken calls. moto issues the token ``AWS:<registryId>-auth-token``,
expiring at 2015-01-01T00:00:00Z whatever the time: tests drive their clock into the
day before. Its STS answers AssumeRoleWithWebIdentity, so IRSA's path runs for real.

``AwsJsonEndpoint`` answers the AWS JSON 1.1 protocol (``POST /`` with
``X-Amz-Target: <prefix>.<operation>``, as ECR and ECR Public speak it) with what
``answer`` returns: ECR Public's GetAuthorizationToken (moto does not implement ECR
Public), an error of AWS's shape, or a malformed answer. ``StsRefusing`` refuses as STS
does (the query protocol's XML error), and ``PodIdentityAgent`` answers credentials as
the EKS Pod Identity agent does. ``aws_environment`` points boto3 at such endpoints
through the standard ``AWS_ENDPOINT_URL_*`` variables.
"""

from __future__ import annotations

import base64
import datetime
import io
import json
import re
import threading
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs

from werkzeug.serving import BaseWSGIServer, make_server

from tests.support.localhttp import LocalServer, QuietHandler

#: The account moto issues tokens for unless told otherwise, and the password it issues.
ACCOUNT = "123456789012"
#: When moto's tokens expire: tests set their clock before it.
MOTO_EXPIRES = datetime.datetime(2015, 1, 1, tzinfo=datetime.UTC).timestamp()
ACCESS_KEY = "AKIATRUSTGATETEST000"
SECRET_KEY = "trustgate-test-secret-key-never-shown"
_SCOPE = re.compile(
    r"Credential=(?P<key>[^/]+)/[0-9]{8}/(?P<region>[^/]+)/(?P<service>[^/]+)/aws4_request"
)


def moto_password(account: str) -> str:
    """The ECR password moto issues for ``account`` (user ``AWS``)."""
    return f"{account}-auth-token"


@dataclass(frozen=True)
class Call:
    """One call an endpoint received: its operation and the scope it was signed for."""

    target: str
    region: str
    service: str
    body: dict[str, Any]
    #: The access key ID the call was signed with.
    access_key: str = ""


def _call(target: str, authorization: str, body: dict[str, Any]) -> Call:
    scope = _SCOPE.search(authorization)
    if scope is None:
        return Call(target, "", "", body)
    return Call(target, scope["region"], scope["service"], body, scope["key"])


class MotoServer:
    """moto's server on 127.0.0.1 with a count of its calls; ``stop()`` it."""

    def __init__(self) -> None:
        # moto's server modules need flask, flask-cors and werkzeug (the test extra).
        from moto.moto_server.werkzeug_app import (
            DomainDispatcherApplication,
            MotoRequestHandler,
            create_backend_app,
        )

        class Quiet(MotoRequestHandler):
            def log(self, type: str, message: str, *args: Any) -> None:
                pass

        app = DomainDispatcherApplication(create_backend_app)
        self.calls: list[Call] = []
        self._lock = threading.Lock()

        def counting(environ: dict[str, Any], start_response: Any) -> Any:
            target = environ.get("HTTP_X_AMZ_TARGET")
            if environ.get("REQUEST_METHOD") == "POST" and target:
                raw = environ["wsgi.input"].read(int(environ.get("CONTENT_LENGTH") or 0))
                environ["wsgi.input"] = io.BytesIO(raw)
                call = _call(
                    target, environ.get("HTTP_AUTHORIZATION", ""), json.loads(raw or b"{}")
                )
                with self._lock:
                    self.calls.append(call)
            return app(environ, start_response)

        self._server: BaseWSGIServer = make_server(
            "127.0.0.1", 0, counting, threaded=True, request_handler=Quiet
        )
        self.url = f"http://127.0.0.1:{self._server.server_port}"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()

    def tokens_issued(self, region: str | None = None) -> int:
        """How many GetAuthorizationToken calls arrived (in ``region``, if given)."""
        with self._lock:
            return sum(
                1
                for call in self.calls
                if call.target.endswith(".GetAuthorizationToken")
                and (region is None or call.region == region)
            )

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)


Answer = tuple[int, Mapping[str, Any]]


class AwsJsonEndpoint:
    """An AWS JSON 1.1 endpoint on 127.0.0.1 answering each call with ``answer(call)``."""

    def __init__(self, answer: Callable[[Call], Answer]) -> None:
        self.answer = answer
        self.calls: list[Call] = []
        self._lock = threading.Lock()
        endpoint = self

        class Handler(QuietHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(length) if length else b"{}"
                call = _call(
                    self.headers.get("X-Amz-Target", ""),
                    self.headers.get("Authorization", ""),
                    json.loads(raw or b"{}"),
                )
                with endpoint._lock:
                    endpoint.calls.append(call)
                status, body = endpoint.answer(call)
                headers = {"x-amzn-RequestId": "00000000-0000-0000-0000-000000000000"}
                if status >= 400 and "__type" in body:
                    headers["x-amzn-ErrorType"] = str(body["__type"])
                self.send_json(status, body, "application/x-amz-json-1.1", headers)

        self._server = LocalServer(Handler).start()
        self.url = self._server.url

    def stop(self) -> None:
        self._server.stop()


def public_token(user: str, password: str, expires_at: float) -> Answer:
    """ECR Public's GetAuthorizationToken answer (a single object, unlike ECR's list)."""
    token = base64.b64encode(f"{user}:{password}".encode()).decode()
    return 200, {"authorizationData": {"authorizationToken": token, "expiresAt": expires_at}}


def private_token(account: str, region: str, token: str, expires_at: float) -> Answer:
    """ECR's GetAuthorizationToken answer, ``token`` already base64 (or deliberately not)."""
    endpoint = f"https://{account}.dkr.ecr.{region}.amazonaws.com"
    data = {"authorizationToken": token, "expiresAt": expires_at, "proxyEndpoint": endpoint}
    return 200, {"authorizationData": [data]}


def error(status: int, kind: str, message: str) -> Answer:
    """An AWS JSON error answer, as ECR sends one."""
    return status, {"__type": kind, "message": message}


def aws_environment(
    tmp: Path, endpoints: Mapping[str, str], *, credentials: bool = True
) -> dict[str, str]:
    """Variables that give boto3 test credentials (or none) and ``endpoints`` only.

    ``endpoints`` maps a service's variable suffix (``ECR``, ``ECR_PUBLIC``) to a URL.
    Shared config and credentials files are empty files under ``tmp``, and instance
    metadata is off, so nothing of the machine's own AWS setup is used.
    """
    tmp.mkdir(parents=True, exist_ok=True)
    (tmp / "config").write_text("")
    (tmp / "credentials").write_text("")
    env = {
        "AWS_CONFIG_FILE": str(tmp / "config"),
        "AWS_SHARED_CREDENTIALS_FILE": str(tmp / "credentials"),
        "AWS_EC2_METADATA_DISABLED": "true",
        "AWS_DEFAULT_REGION": "us-east-1",
    }
    if credentials:
        env |= {"AWS_ACCESS_KEY_ID": ACCESS_KEY, "AWS_SECRET_ACCESS_KEY": SECRET_KEY}
    env |= {f"AWS_ENDPOINT_URL_{name}": url for name, url in endpoints.items()}
    return env


#: Variables that would bring the machine's own AWS identity or endpoints into a test.
AWS_VARIABLES: Iterable[str] = (
    "AWS_ACCESS_KEY_ID",
    "AWS_SECRET_ACCESS_KEY",
    "AWS_SESSION_TOKEN",
    "AWS_PROFILE",
    "AWS_ROLE_ARN",
    "AWS_WEB_IDENTITY_TOKEN_FILE",
    "AWS_CONTAINER_CREDENTIALS_FULL_URI",
    "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI",
    "AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE",
    "AWS_ENDPOINT_URL",
    "AWS_ENDPOINT_URL_ECR",
    "AWS_ENDPOINT_URL_ECR_PUBLIC",
    "AWS_ENDPOINT_URL_STS",
    "AWS_REGION",
    "AWS_ROLE_SESSION_NAME",
)


def sts_error(code: str, message: str) -> bytes:
    """An STS error answer (the query protocol's XML), as STS sends one with status 400."""
    return (
        '<ErrorResponse xmlns="https://sts.amazonaws.com/doc/2011-06-15/"><Error>'
        f"<Type>Sender</Type><Code>{code}</Code><Message>{message}</Message></Error>"
        "<RequestId>00000000-0000-0000-0000-000000000000</RequestId></ErrorResponse>"
    ).encode()


class StsRefusing:
    """An STS endpoint on 127.0.0.1 that refuses every call with ``body`` (status 400)."""

    def __init__(self, body: bytes) -> None:
        self.forms: list[dict[str, str]] = []
        refusing = self

        class Handler(QuietHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                form = parse_qs(self.rfile.read(length).decode())
                refusing.forms.append({k: v[0] for k, v in form.items()})
                self.send_body(400, "text/xml", body)

        self._server = LocalServer(Handler).start()
        self.url = self._server.url

    def stop(self) -> None:
        self._server.stop()


class PodIdentityAgent:
    """The EKS Pod Identity agent's credentials endpoint on 127.0.0.1.

    boto3 finds it through ``AWS_CONTAINER_CREDENTIALS_FULL_URI`` (``url``) and sends the
    content of ``AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE`` as its ``Authorization``
    header; the agent answers temporary credentials when that is ``token``, 401 otherwise.
    """

    ACCESS_KEY = "ASIAPODIDENTITYTEST0"

    def __init__(self, token: str) -> None:
        self.token = token
        self.authorizations: list[str] = []
        agent = self

        class Handler(QuietHandler):
            protocol_version = "HTTP/1.1"

            def do_GET(self) -> None:
                given = self.headers.get("Authorization", "")
                agent.authorizations.append(given)
                if given != agent.token:
                    self.send_json(401, {"message": "invalid token"})
                    return
                expires = datetime.datetime.now(datetime.UTC) + datetime.timedelta(hours=6)
                self.send_json(
                    200,
                    {
                        "AccessKeyId": agent.ACCESS_KEY,
                        "SecretAccessKey": "pod-identity-secret-key",
                        "Token": "pod-identity-session-token",
                        "AccountId": ACCOUNT,
                        "Expiration": expires.strftime("%Y-%m-%dT%H:%M:%SZ"),
                    },
                )

        self._server = LocalServer(Handler).start()
        self.url = f"{self._server.url}/v1/credentials"

    def stop(self) -> None:
        self._server.stop()
