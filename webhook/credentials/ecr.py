"""AWS ECR logins from trustgate's own AWS identity: a GetAuthorizationToken per account and region.

An ECR registry takes the login ``AWS:<token>`` where the token comes from
``GetAuthorizationToken``, signed with the caller's IAM credentials and valid
for 12 hours. On EKS those credentials are the pod's: a web identity token
(IRSA), an EKS Pod Identity association, or the node's instance role, all of
which boto3's default credential chain finds. So does the kubelet's
``ecr-credential-provider``; trustgate asks for the same token, for the same
registries, and keeps it until shortly before it expires
(``webhook.credentials.renewal``).

Which account and region a host belongs to is read from the host itself
(``ACCOUNT.dkr.ecr[-fips].REGION.amazonaws.com`` and the other partitions'
domains, as the kubelet's provider reads them; ``public.ecr.aws`` is ECR
Public, whose tokens come from ``us-east-1``). The reading is strict on
purpose: a token must only go to a host that names the account and region it
was issued for, and Amazon's domains also serve content customers control
(an S3 website endpoint is ``BUCKET.s3-website-REGION.amazonaws.com``, and a
bucket may be called ``123456789012.dkr.ecr``), which a region label that
is not shaped like a region keeps out.

boto3 is an optional extra (``trustgate[aws]``), imported here only when an
``ecr`` provider is built: in a bare interpreter it costs about 0.1 s and
24 MiB, its first client 10 MiB more (bench/credential_libraries.py).
Endpoints follow the standard AWS variables (``AWS_ENDPOINT_URL_ECR``,
``AWS_ENDPOINT_URL_ECR_PUBLIC``), which is how the tests point it at moto.
"""

from __future__ import annotations

import base64
import binascii
import os
import re
import threading
import time
from collections.abc import Callable, Hashable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Final

from webhook.core.deadline import Deadline
from webhook.core.errors import ConfigError, UpstreamError
from webhook.core.failures import describe
from webhook.core.observability import get_logger
from webhook.core.reference import ImageRef
from webhook.core.scope import Login

from .matching import parse_patterns
from .renewal import Expiring, Renewing

__all__ = ["PUBLIC_HOST", "EcrRegistry", "EcrSource", "ecr_registry"]

_log = get_logger("credentials.ecr")

#: ECR Public's registry host, and the only region that issues its tokens.
PUBLIC_HOST: Final = "public.ecr.aws"
PUBLIC_REGION: Final = "us-east-1"
#: What a token lives when the answer omits ``expiresAt`` (ECR documents 12 hours).
TOKEN_LIFE: Final = 12 * 3600.0
#: Seconds to open a connection to the ECR API, and to wait for each read.
CONNECT_TIMEOUT: Final = 3.0
READ_TIMEOUT: Final = 5.0
#: Attempts per call, the first included (botocore's standard retry mode).
ATTEMPTS: Final = 2
_LONGEST: Final = 300

#: The registry domains of every partition, as the kubelet's ecr-credential-provider
#: lists them: commercial, China, dual-stack (``dkr-ecr``), the European Sovereign
#: Cloud, and the isolated partitions (c2s, sc2s, adc-e, hci).
_SUFFIXES: Final = (
    r"amazonaws\.com",
    r"amazonaws\.com\.cn",
    r"amazonaws\.eu",
    r"on\.aws",
    r"on\.amazonwebservices\.com\.cn",
    r"c2s\.ic\.gov",
    r"sc2s\.sgov\.gov",
    r"cloud\.adc-e\.uk",
    r"csp\.hci\.ic\.gov",
)
#: A region is letters, then words, then a number: us-east-1, us-gov-west-1,
#: us-isob-east-1, eusc-de-east-1. Never s3, s3-website-us-east-1 or a bucket name.
_REGION: Final = r"[a-z]{2,4}(?:-[a-z]+){1,3}-[0-9]{1,2}"
_PRIVATE: Final = re.compile(
    rf"(?P<account>[0-9]{{12}})\.dkr[.-]ecr(?P<fips>-fips)?\.(?P<region>{_REGION})"
    rf"\.(?:{'|'.join(_SUFFIXES)})"
)


@dataclass(frozen=True, slots=True)
class EcrRegistry:
    """Whose token a registry takes: an account in a region, or ECR Public.

    It is the key tokens are cached by: hosts of one account and region (the
    classic and the dual-stack name) share one token.
    """

    account: str
    region: str
    fips: bool = False
    public: bool = False

    def __str__(self) -> str:
        if self.public:
            return "ECR Public"
        return f"account {self.account} in {self.region}{' (FIPS)' if self.fips else ''}"


def ecr_registry(domain: str) -> EcrRegistry | None:
    """The ECR registry at ``domain`` (``host[:port]``), or None when it is not an ECR host.

    ECR serves on 443 only: a host with a port is none of its registries.
    """
    host = domain.lower()
    if host == PUBLIC_HOST:
        return EcrRegistry(account="", region=PUBLIC_REGION, public=True)
    found = _PRIVATE.fullmatch(host)
    if found is None:
        return None
    return EcrRegistry(found["account"], found["region"], fips=found["fips"] is not None)


class EcrSource:
    """Logins for the ECR registries an ``ecr`` provider lists (``core.scope.LoginSource``).

    ``registries`` are host patterns (kubelet ``matchImages``); a host they
    cover gets a login only when ``locate`` reads an account and region from
    it (``ecr_registry``; the tests hand their own, for a registry on
    127.0.0.1). ``clock`` is ``time.time``.

    Raises:
        ConfigError: a pattern does not parse, or boto3 is not installed.
    """

    name: str = "ecr"
    kind: str = "ecr"

    def __init__(
        self,
        registries: Sequence[str],
        *,
        locate: Callable[[str], EcrRegistry | None] = ecr_registry,
        clock: Callable[[], float] = time.time,
        connect_timeout: float = CONNECT_TIMEOUT,
        read_timeout: float = READ_TIMEOUT,
    ) -> None:
        self._patterns = parse_patterns(registries, "credentials.providers: ecr: registries")
        self._locate = locate
        self._clock = clock
        self._api = _EcrApi(connect_timeout, read_timeout)
        self._renewing: Renewing[Login] = Renewing(self.name, self._fetch, clock=clock)

    def matches(self, host: str) -> bool:
        """Whether ``host`` is a listed registry with an account and region."""
        return self._patterns.matches_host(host) and self._locate(host) is not None

    def logins(self, image: ImageRef, deadline: Deadline) -> Sequence[Login]:
        """The ECR login for ``image``'s registry, fetched within ``deadline`` when none is held.

        Raises:
            UpstreamError: no credentials, ECR refused, or no answer in time.
        """
        if not self._patterns.matches_image(image):
            return ()
        registry = self._locate(image.domain)
        if registry is None:
            return ()
        return (self._renewing.get(registry, deadline),)

    def _fetch(self, key: Hashable) -> Expiring[Login]:
        assert isinstance(key, EcrRegistry)
        try:
            token, expires = self._api.token(key)
            username, password = _decode(token)
        except UpstreamError as exc:
            _log.warning("ecr: no login for %s: %s", key, exc.message)
            raise
        expires_at = expires.timestamp() if expires is not None else self._clock() + TOKEN_LIFE
        _log.info("ecr: fetched a login for %s, valid until %s", key, _instant(expires_at))
        login = Login(username, password, source=self.name, kind=self.kind)
        return Expiring(login, expires_at)


class _EcrApi:
    """boto3 clients per service, region and FIPS, made on first use in each process."""

    def __init__(self, connect_timeout: float, read_timeout: float) -> None:
        try:
            import boto3.session
            import botocore.config
            import botocore.exceptions
            import botocore.session
        except ImportError:
            raise ConfigError(
                "credentials.providers: type ecr needs boto3, which this installation "
                "lacks: install trustgate[aws] (the container image has it)"
            ) from None
        self._boto3 = boto3.session
        self._botocore = botocore.session
        self._errors = botocore.exceptions
        self._config = botocore.config.Config(
            connect_timeout=connect_timeout,
            read_timeout=read_timeout,
            retries={"total_max_attempts": ATTEMPTS, "mode": "standard"},
            user_agent_extra="trustgate",
        )
        self._fips = self._config.merge(botocore.config.Config(use_fips_endpoint=True))
        self._lock = threading.Lock()
        self._clients: dict[tuple[str, str, bool], Any] = {}
        self._session: Any = None
        self._pid = 0

    def token(self, registry: EcrRegistry) -> tuple[str, datetime | None]:
        """The base64 ``user:password`` ECR issues for ``registry``, and when it expires.

        Raises:
            UpstreamError: what went wrong, what to check; never a credential.
        """
        errors = self._errors
        what = f"GetAuthorizationToken for {registry}"
        try:
            if registry.public:
                answer = self._client("ecr-public", registry).get_authorization_token()
                data = answer.get("authorizationData") or {}
            else:
                answer = self._client("ecr", registry).get_authorization_token(
                    registryIds=[registry.account]
                )
                data = (answer.get("authorizationData") or [{}])[0]
        except errors.NoCredentialsError:
            raise UpstreamError(
                f"{what}: found no AWS credentials: give trustgate's service account an IAM "
                f"role (the eks.amazonaws.com/role-arn annotation, or an EKS Pod Identity "
                f"association), or run it on a node whose instance role may pull; see "
                f"docs/clouds/eks.md"
            ) from None
        except errors.ClientError as exc:
            raise UpstreamError(_refusal(what, registry, exc)) from None
        except (errors.BotoCoreError, ValueError) as exc:
            endpoint = getattr(exc, "kwargs", {}).get("endpoint_url")
            where = f" at {endpoint}" if endpoint else ""
            raise UpstreamError(f"{what} failed{where}: {_short(describe(exc))}") from None
        token = data.get("authorizationToken")
        if not isinstance(token, str) or not token:
            raise UpstreamError(f"{what}: ECR answered no authorization token")
        expires = data.get("expiresAt")
        return token, expires if isinstance(expires, datetime) else None

    def _client(self, service: str, registry: EcrRegistry) -> Any:
        """The client of ``service`` for ``registry``'s region; made once per process."""
        key = (service, registry.region, registry.fips)
        with self._lock:
            if self._pid != os.getpid():  # a forked worker makes its own connections
                self._clients.clear()
                self._session = None
                self._pid = os.getpid()
            client = self._clients.get(key)
            if client is None:
                if self._session is None:
                    core = self._botocore.Session()
                    # The default config also bounds the clients the credential chain
                    # makes itself (STS for a web identity).
                    core.set_default_client_config(self._config)
                    self._session = self._boto3.Session(botocore_session=core)
                config = self._fips if registry.fips else self._config
                client = self._session.client(service, region_name=registry.region, config=config)
                self._clients[key] = client
            return client


def _decode(token: str) -> tuple[str, str]:
    """``(user, password)`` from ECR's base64 ``user:password``.

    Raises:
        UpstreamError: it is not that (the message never shows it).
    """
    try:
        text = base64.b64decode(token, validate=True).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError):
        text = ""
    username, colon, password = text.partition(":")
    if not colon or not username or not password:
        raise UpstreamError("ECR answered an authorization token that is not base64 user:password")
    return username, password


def _refusal(what: str, registry: EcrRegistry, exc: Any) -> str:
    """What an AWS error answer says, and what to change: ECR's, or STS's for the credentials."""
    error = exc.response.get("Error", {})
    code, message = error.get("Code", "error"), _short(str(error.get("Message", "")))
    operation = getattr(exc, "operation_name", "")
    if operation and operation != "GetAuthorizationToken":
        return (
            f"{what}: AWS credentials could not be obtained ({operation}: {code}: {message}): "
            f"check the IAM role's trust policy and trustgate's service account; "
            f"see docs/clouds/eks.md"
        )
    hint = ""
    if "AccessDenied" in code or "not authorized" in message:
        service = "ecr-public" if registry.public else "ecr"
        hint = f": allow {service}:GetAuthorizationToken to trustgate's IAM role"
    return f"{what} was refused ({code}: {message}){hint}"


def _short(text: str) -> str:
    line = text.strip().splitlines()[0] if text.strip() else "no detail"
    return line if len(line) <= _LONGEST else line[:_LONGEST] + "..."


def _instant(seconds: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(seconds))
