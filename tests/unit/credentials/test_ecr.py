"""ECR logins: hosts read strictly, tokens fetched once per account and region, renewed early.

The ECR API is moto's server (``tests.support.aws.MotoServer``), reached through
``AWS_ENDPOINT_URL_ECR`` as boto3 reads it; ECR Public, error answers and the
renewal over two days use ``AwsJsonEndpoint``, which answers in the same protocol.
moto's tokens expire at 2015-01-01T00:00:00Z, so tests that cache them drive their
clock into the day before.
"""

from __future__ import annotations

import base64
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.support.aws import (
    ACCOUNT,
    AWS_VARIABLES,
    MOTO_EXPIRES,
    SECRET_KEY,
    AwsJsonEndpoint,
    Call,
    MotoServer,
    PodIdentityAgent,
    StsRefusing,
    aws_environment,
    error,
    moto_password,
    private_token,
    public_token,
    sts_error,
)
from tests.support.clock import Clock
from tests.support.cloudregistry import pull_manifest, start_login_registry
from tests.support.hostile import Hanging
from tests.support.registry import Registry, free_port, push_image
from webhook.config.credentials import DEFAULT_REGISTRIES
from webhook.core.deadline import Deadline
from webhook.core.errors import ConfigError, UpstreamError
from webhook.core.reference import parse_reference
from webhook.credentials.ecr import EcrRegistry, EcrSource, ecr_registry
from webhook.credentials.renewal import RENEW_AT
from webhook.registry.client import RegistryClient, RegistrySettings

OTHER = "210987654321"
HOST = f"{ACCOUNT}.dkr.ecr.us-east-1.amazonaws.com"
HOUR = 3600.0
#: Half a day before moto's tokens expire: they have 12 hours to live.
MOTO_DAY = MOTO_EXPIRES - 12 * HOUR

Use = Callable[..., None]


@pytest.fixture(scope="module")
def moto() -> Iterator[MotoServer]:
    server = MotoServer()
    yield server
    server.stop()


@pytest.fixture
def aws(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Use:
    """``aws(ECR=url, ...)`` gives boto3 test credentials and those endpoints, nothing else."""

    def use(*, credentials: bool = True, **endpoints: str) -> None:
        for name in AWS_VARIABLES:
            monkeypatch.delenv(name, raising=False)
        environment = aws_environment(tmp_path / "aws", endpoints, credentials=credentials)
        for name, value in environment.items():
            monkeypatch.setenv(name, value)

    return use


def _source(**options: object) -> EcrSource:
    return EcrSource(DEFAULT_REGISTRIES["ecr"], **options)  # type: ignore[arg-type]


def _ask(
    source: EcrSource, image: str = f"{HOST}/app:1", seconds: float = 10.0
) -> list[tuple[str, str]]:
    logins = source.logins(parse_reference(image), Deadline(seconds))
    return [(login.username, login.password) for login in logins]


# --- which hosts are ECR registries, and whose ---------------------------------------------

REGISTRIES = [
    (HOST, EcrRegistry(ACCOUNT, "us-east-1")),
    (HOST.upper(), EcrRegistry(ACCOUNT, "us-east-1")),
    (f"{ACCOUNT}.dkr.ecr.eu-central-2.amazonaws.com", EcrRegistry(ACCOUNT, "eu-central-2")),
    (f"{ACCOUNT}.dkr.ecr.cn-north-1.amazonaws.com.cn", EcrRegistry(ACCOUNT, "cn-north-1")),
    (
        f"{ACCOUNT}.dkr.ecr-fips.us-gov-west-1.amazonaws.com",
        EcrRegistry(ACCOUNT, "us-gov-west-1", fips=True),
    ),
    (f"{ACCOUNT}.dkr-ecr.us-east-1.on.aws", EcrRegistry(ACCOUNT, "us-east-1")),
    (f"{ACCOUNT}.dkr-ecr-fips.us-east-1.on.aws", EcrRegistry(ACCOUNT, "us-east-1", fips=True)),
    (f"{ACCOUNT}.dkr.ecr.us-iso-east-1.c2s.ic.gov", EcrRegistry(ACCOUNT, "us-iso-east-1")),
    (f"{ACCOUNT}.dkr.ecr.us-isob-east-1.sc2s.sgov.gov", EcrRegistry(ACCOUNT, "us-isob-east-1")),
    (f"{ACCOUNT}.dkr.ecr.eusc-de-east-1.amazonaws.eu", EcrRegistry(ACCOUNT, "eusc-de-east-1")),
    ("public.ecr.aws", EcrRegistry("", "us-east-1", public=True)),
    # Not ECR, or not a registry ECR would issue a token for.
    (f"{ACCOUNT}.dkr.ecr.us-east-1.amazonaws.com:443", None),
    (f"{ACCOUNT}.dkr.ecr.us-east-1.amazonaws.com.evil.com", None),
    (f"evil.{ACCOUNT}.dkr.ecr.us-east-1.amazonaws.com", None),
    (f"{ACCOUNT}0.dkr.ecr.us-east-1.amazonaws.com", None),
    (f"{ACCOUNT[:-1]}.dkr.ecr.us-east-1.amazonaws.com", None),
    (f"x{ACCOUNT[1:]}.dkr.ecr.us-east-1.amazonaws.com", None),
    (f"{ACCOUNT}.dkr.ecr.us-east-1.amazonaws.co", None),
    (f"{ACCOUNT}.dkr.ecr.us-east-1.amazonaws.com.", None),
    (f"{ACCOUNT}.ecr.us-east-1.amazonaws.com", None),
    (f"{ACCOUNT}.dkr.ecr..amazonaws.com", None),
    # S3 names a bucket "123456789012.dkr.ecr" as BUCKET.s3*.amazonaws.com: not a region.
    (f"{ACCOUNT}.dkr.ecr.s3.amazonaws.com", None),
    (f"{ACCOUNT}.dkr.ecr.s3-website-us-east-1.amazonaws.com", None),
    (f"{ACCOUNT}.dkr.ecr.s3-website.us-east-1.amazonaws.com", None),
    (f"{ACCOUNT}.dkr.ecr.us-east-1.lambda-url.on.aws", None),
    ("public.ecr.aws:443", None),
    ("public.ecr.aws.evil.com", None),
    ("ecr.aws", None),
    ("127.0.0.1:5000", None),
]


@pytest.mark.parametrize(("host", "expected"), REGISTRIES)
def test_the_account_and_region_come_from_the_host_read_strictly(
    host: str, expected: EcrRegistry | None
) -> None:
    assert ecr_registry(host) == expected


# (host, served by an ecr provider with the default patterns)
SERVED = [
    (HOST, True),
    (f"{OTHER}.dkr.ecr.ap-southeast-2.amazonaws.com", True),
    (f"{ACCOUNT}.dkr.ecr.cn-north-1.amazonaws.com.cn", True),
    (f"{ACCOUNT}.dkr.ecr-fips.us-east-1.amazonaws.com", True),
    (f"{ACCOUNT}.dkr.ecr.us-iso-east-1.c2s.ic.gov", True),
    (f"{ACCOUNT}.dkr.ecr.us-isob-east-1.sc2s.sgov.gov", True),
    ("public.ecr.aws", True),
    # The patterns cover them, the host names no account and region: no token.
    ("a.dkr.ecr.us-east-1.amazonaws.com", False),
    (f"{ACCOUNT}.dkr.ecr.s3-website-us-east-1.amazonaws.com", False),
    # Neither.
    ("evil.com", False),
    (f"{HOST}.evil.com", False),
    (f"{HOST}:8443", False),
    (f"evil{HOST}", False),
    ("quay.io", False),
    ("docker.io", False),
    ("public.ecr.aws.evil.com", False),
    # The dual-stack hosts: readable, but not among the default patterns (list them to use them).
    (f"{ACCOUNT}.dkr-ecr.us-east-1.on.aws", False),
]


@pytest.mark.parametrize(("host", "served"), SERVED)
def test_a_token_goes_only_to_hosts_the_patterns_cover_and_that_name_an_account(
    host: str, served: bool
) -> None:
    assert _source().matches(host) is served


def test_an_image_whose_path_spells_an_ecr_host_gets_nothing_and_costs_no_call(
    aws: Use, moto: MotoServer
) -> None:
    aws(ECR=moto.url)
    before = moto.tokens_issued()
    source = _source()
    assert _ask(source, f"evil.com/{HOST}/app:1") == []
    assert _ask(source, f"{HOST}.evil.com/app:1") == []
    assert moto.tokens_issued() == before


def test_a_pattern_with_a_path_serves_only_the_repositories_under_it(
    aws: Use, moto: MotoServer
) -> None:
    aws(ECR=moto.url)
    source = EcrSource([f"{HOST}/team"], clock=Clock(MOTO_DAY))
    assert source.matches(HOST)
    assert _ask(source, f"{HOST}/other/app:1") == []
    assert _ask(source, f"{HOST}/team/app:1") == [("AWS", moto_password(ACCOUNT))]


@pytest.mark.parametrize("pattern", ["", "https://user@host", "*.dkr.ecr.*.amazonaws.com?x"])
def test_a_pattern_that_is_no_registry_host_is_a_configuration_error(pattern: str) -> None:
    with pytest.raises(ConfigError, match=r"credentials\.providers: ecr: registries"):
        EcrSource([pattern])


# --- fetched once, cached per account and region ---------------------------------------------


def test_many_reviews_at_once_cost_one_token_per_account_and_region(
    aws: Use, moto: MotoServer
) -> None:
    aws(ECR=moto.url)
    source = _source(clock=Clock(MOTO_DAY))
    hosts = {
        HOST: (ACCOUNT, "us-east-1"),
        f"{ACCOUNT}.dkr.ecr.eu-west-1.amazonaws.com": (ACCOUNT, "eu-west-1"),
        f"{OTHER}.dkr.ecr.us-east-1.amazonaws.com": (OTHER, "us-east-1"),
    }
    before = len(moto.calls)
    got: list[tuple[str, list[tuple[str, str]]]] = []
    lock = threading.Lock()

    def review(host: str) -> None:
        logins = _ask(source, f"{host}/team/app:1")
        with lock:
            got.append((host, logins))

    threads = [threading.Thread(target=review, args=(host,)) for host in hosts for _ in range(12)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    assert len(got) == 36
    # Each host gets its own account's token, never another's.
    for host, logins in got:
        assert logins == [("AWS", moto_password(hosts[host][0]))]
    calls = moto.calls[before:]
    assert sorted((c.body["registryIds"][0], c.region) for c in calls) == sorted(hosts.values())
    assert {(c.target, c.service) for c in calls} == {
        ("AmazonEC2ContainerRegistry_V20150921.GetAuthorizationToken", "ecr")
    }
    # Asked again later: still cached.
    assert _ask(source, f"{HOST}/other/app:2") == [("AWS", moto_password(ACCOUNT))]
    assert len(moto.calls) == before + 3


def test_the_login_names_its_source_and_kind_and_hides_its_password(
    aws: Use, moto: MotoServer
) -> None:
    aws(ECR=moto.url)
    (login,) = _source(clock=Clock(MOTO_DAY)).logins(parse_reference(f"{HOST}/app"), Deadline(10))
    assert (login.source, login.kind, login.username) == ("ecr", "ecr", "AWS")
    assert moto_password(ACCOUNT) not in repr(login)


def test_a_renewal_starts_at_three_quarters_of_the_life_and_no_review_waits_for_it(
    aws: Use, moto: MotoServer
) -> None:
    aws(ECR=moto.url)
    clock = Clock(MOTO_DAY)
    source = _source(clock=clock)
    image = f"{ACCOUNT}.dkr.ecr.sa-east-1.amazonaws.com/app:1"
    _ask(source, image)
    assert moto.tokens_issued("sa-east-1") == 1
    clock.advance(12 * HOUR * RENEW_AT - 60)
    _ask(source, image)
    assert moto.tokens_issued("sa-east-1") == 1
    clock.advance(120)  # past the renewal point: the held token serves, a renewal starts
    started = time.monotonic()
    assert _ask(source, image, seconds=0.0) == [("AWS", moto_password(ACCOUNT))]
    assert time.monotonic() - started < 0.5
    _wait_for(lambda: moto.tokens_issued("sa-east-1") == 2)


def test_a_token_that_expires_is_renewed_before_any_review_fails(aws: Use) -> None:
    """Two days of reviews every ten minutes, with tokens of 12 hours: none fails or waits."""
    clock = Clock(1_900_000_000.0)
    issued: dict[str, float] = {}

    def answer(call: Call) -> tuple[int, dict[str, object]]:
        password = f"token-{len(issued)}"
        issued[password] = clock() + 12 * HOUR
        token = base64.b64encode(f"AWS:{password}".encode()).decode()
        return private_token(ACCOUNT, call.region, token, issued[password])

    endpoint = AwsJsonEndpoint(answer)  # type: ignore[arg-type]
    try:
        aws(ECR=endpoint.url)
        source = _source(clock=clock)
        _ask(source, f"{HOST}/app:1")
        fetched_at = clock()
        for _ in range(48 * 6):
            clock.advance(600)
            fetches = len(issued)
            started = time.monotonic()
            ((_, password),) = _ask(source, f"{HOST}/app:1", seconds=0.0)
            assert time.monotonic() - started < 0.5, "a review waited for a fetch"
            assert clock() < issued[password], "a review was handed an expired token"
            if clock() - fetched_at >= 12 * HOUR * RENEW_AT:
                renewed = f"token-{fetches}"
                _wait_for(lambda want=renewed: _ask(source, f"{HOST}/app:1", 0.0)[0][1] == want)
                fetched_at = clock()
        assert len(endpoint.calls) == len(issued) >= 48 // 9
    finally:
        endpoint.stop()


# --- ECR Public -----------------------------------------------------------------------------


def test_public_ecr_takes_a_token_from_ecr_public_in_us_east_1(aws: Use) -> None:
    clock = Clock(1_900_000_000.0)
    endpoint = AwsJsonEndpoint(
        lambda call: public_token("AWS", "public-token", clock() + 12 * HOUR)
    )
    try:
        aws(ECR_PUBLIC=endpoint.url)
        source = _source(clock=clock)
        for _ in range(5):
            assert _ask(source, "public.ecr.aws/team/app:1") == [("AWS", "public-token")]
        (call,) = endpoint.calls
        assert (call.target, call.region, call.service) == (
            "SpencerFrontendService.GetAuthorizationToken",
            "us-east-1",
            "ecr-public",
        )
    finally:
        endpoint.stop()


# --- the default credential chain: IRSA, EKS Pod Identity ------------------------------------

ROLE = f"arn:aws:iam::{ACCOUNT}:role/trustgate"
WEB_IDENTITY = "eyJhbGciOiJSUzI1NiJ9.projected-service-account-token.signature"


def _irsa(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """What EKS's webhook gives an annotated pod: a role and a projected token file."""
    token = tmp_path / "token"
    token.write_text(WEB_IDENTITY)
    monkeypatch.setenv("AWS_ROLE_ARN", ROLE)
    monkeypatch.setenv("AWS_WEB_IDENTITY_TOKEN_FILE", str(token))


def test_irsa_exchanges_the_web_identity_token_at_sts_then_asks_ecr(
    aws: Use, moto: MotoServer, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    aws(ECR=moto.url, STS=moto.url, credentials=False)
    _irsa(monkeypatch, tmp_path)
    before = len(moto.calls)
    assert _ask(_source(clock=Clock(MOTO_DAY))) == [("AWS", moto_password(ACCOUNT))]
    (call,) = moto.calls[before:]
    # Signed with the temporary credentials STS issued for the role, none configured.
    assert call.access_key.startswith("ASIA")


def test_eks_pod_identity_credentials_come_from_the_agent_with_the_pod_token(
    aws: Use, moto: MotoServer, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    aws(ECR=moto.url, credentials=False)
    agent = PodIdentityAgent("pod-identity-projected-token")
    try:
        (tmp_path / "eks-pod-identity-token").write_text(agent.token)
        monkeypatch.setenv("AWS_CONTAINER_CREDENTIALS_FULL_URI", agent.url)
        monkeypatch.setenv(
            "AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE", str(tmp_path / "eks-pod-identity-token")
        )
        before = len(moto.calls)
        assert _ask(_source(clock=Clock(MOTO_DAY))) == [("AWS", moto_password(ACCOUNT))]
        assert agent.authorizations == [agent.token]
        (call,) = moto.calls[before:]
        assert call.access_key == PodIdentityAgent.ACCESS_KEY
    finally:
        agent.stop()


def test_a_role_that_does_not_trust_the_service_account_is_named_as_such(
    aws: Use, moto: MotoServer, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    refusal = sts_error(
        "InvalidIdentityToken",
        "No OpenIDConnect provider found in your account for https://oidc.eks.example",
    )
    sts = StsRefusing(refusal)
    try:
        aws(ECR=moto.url, STS=sts.url, credentials=False)
        _irsa(monkeypatch, tmp_path)
        message = _failure(_source(clock=Clock(MOTO_DAY)))
        assert sts.forms[0]["Action"] == "AssumeRoleWithWebIdentity"
        assert sts.forms[0]["RoleArn"] == ROLE
        assert (
            "AWS credentials could not be obtained (AssumeRoleWithWebIdentity: "
            "InvalidIdentityToken: No OpenIDConnect provider found"
        ) in message
        assert "trust policy" in message and WEB_IDENTITY not in message
    finally:
        sts.stop()


# --- failures: bounded, clear, without a secret ----------------------------------------------


def test_an_endpoint_that_hangs_costs_a_review_its_deadline_and_the_fetch_ends(aws: Use) -> None:
    hanging = Hanging()
    try:
        aws(ECR=f"http://{hanging.host}")
        source = _source(connect_timeout=0.5, read_timeout=0.5)
        started = time.monotonic()
        with pytest.raises(UpstreamError, match="still being fetched when the review's deadline"):
            _ask(source, f"{HOST}/app:1", seconds=0.3)
        assert time.monotonic() - started < 1.0
        # The fetch behind it gives up on its own: two attempts of half a second, and a backoff.
        with pytest.raises(UpstreamError, match="did not answer in time") as caught:
            _ask(source, f"{HOST}/app:1", seconds=10.0)
        assert time.monotonic() - started < 5.0
        assert f"http://{hanging.host}" in caught.value.message
    finally:
        hanging.close()


def _failure(source: EcrSource, image: str = f"{HOST}/app:1") -> str:
    with pytest.raises(UpstreamError) as caught:
        _ask(source, image)
    message = str(caught.value)
    assert SECRET_KEY not in message
    return message


def test_without_aws_credentials_the_message_says_how_to_give_some(
    aws: Use, moto: MotoServer
) -> None:
    aws(ECR=moto.url, credentials=False)
    message = _failure(_source())
    assert f"GetAuthorizationToken for account {ACCOUNT} in us-east-1" in message
    assert "found no AWS credentials" in message
    assert "eks.amazonaws.com/role-arn" in message and "docs/clouds/eks.md" in message


def test_a_refusal_names_the_permission_to_grant(aws: Use) -> None:
    denied = (
        f"User: arn:aws:sts::{ACCOUNT}:assumed-role/trustgate/x is not authorized to perform: "
        f"ecr:GetAuthorizationToken on resource: * because no identity-based policy allows it"
    )
    endpoint = AwsJsonEndpoint(lambda call: error(400, "AccessDeniedException", denied))
    try:
        aws(ECR=endpoint.url)
        message = _failure(_source())
        assert "was refused (AccessDeniedException: User: arn:aws:sts::" in message
        assert message.endswith("allow ecr:GetAuthorizationToken to trustgate's IAM role")
    finally:
        endpoint.stop()


@pytest.mark.parametrize(
    ("token", "expected"),
    [
        ("not base64 at all: AWS:hunter2", "not base64 user:password"),
        (base64.b64encode(b"AWShunter2").decode(), "not base64 user:password"),
        (base64.b64encode(b":hunter2").decode(), "not base64 user:password"),
        (base64.b64encode(b"\xff\xfe:hunter2").decode(), "not base64 user:password"),
        ("", "ECR answered no authorization token"),
    ],
)
def test_a_malformed_token_is_refused_without_showing_it(
    aws: Use, token: str, expected: str
) -> None:
    endpoint = AwsJsonEndpoint(lambda call: private_token(ACCOUNT, "us-east-1", token, 2e9))
    try:
        aws(ECR=endpoint.url)
        message = _failure(_source(clock=Clock(1_900_000_000.0)))
        assert expected in message
        assert "hunter2" not in message and (not token or token not in message)
    finally:
        endpoint.stop()


def test_an_endpoint_that_refuses_connections_is_named(aws: Use) -> None:
    closed = f"127.0.0.1:{free_port()}"
    aws(ECR=f"http://{closed}")
    started = time.monotonic()
    message = _failure(_source(connect_timeout=0.5))
    assert time.monotonic() - started < 3.0
    assert f"at http://{closed}/: the connection was refused" in message


# --- the registry takes the token moto issued, and only it -------------------------------------


@pytest.fixture(scope="module")
def ecr_registry_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Registry]:
    registry = start_login_registry(
        tmp_path_factory.mktemp("ecr-registry"), "AWS", moto_password(ACCOUNT)
    )
    push_image(registry, "team/app", tag="1")
    yield registry
    registry.stop()


def _located(registry: Registry, account: str) -> Callable[[str], EcrRegistry | None]:
    """The test registry on 127.0.0.1 read as ``account``'s in us-east-1; any other host as none."""
    return lambda domain: EcrRegistry(account, "us-east-1") if domain == registry.host else None


def _client(registry: Registry, *sources: EcrSource) -> RegistryClient:
    return RegistryClient({registry.host: RegistrySettings(insecure=True)}, sources=sources)


def test_the_registry_accepts_the_token_ecr_issued_for_it_and_refuses_another_accounts(
    aws: Use, moto: MotoServer, ecr_registry_server: Registry
) -> None:
    aws(ECR=moto.url)
    registry = ecr_registry_server
    image = parse_reference(f"{registry.host}/team/app:1")

    ours = EcrSource([registry.host], locate=_located(registry, ACCOUNT), clock=Clock(MOTO_DAY))
    assert ours.matches(registry.host)
    assert not ours.matches("127.0.0.1:1")
    (login,) = ours.logins(image, Deadline(10))
    assert pull_manifest(registry, "team/app", "1", login) == 200
    theirs = EcrSource([registry.host], locate=_located(registry, OTHER), clock=Clock(MOTO_DAY))
    (other,) = theirs.logins(image, Deadline(10))
    assert other.password == moto_password(OTHER)
    assert pull_manifest(registry, "team/app", "1", other) == 401


def test_the_registry_client_pulls_with_the_ecr_login_and_asks_ecr_once(
    aws: Use, moto: MotoServer, ecr_registry_server: Registry
) -> None:
    aws(ECR=moto.url)
    registry = ecr_registry_server
    source = EcrSource([registry.host], locate=_located(registry, ACCOUNT), clock=Clock(MOTO_DAY))
    client = _client(registry, source)
    image = parse_reference(f"{registry.host}/team/app:1")
    before = moto.tokens_issued()
    digests = set()
    for _ in range(5):
        deadline = Deadline(10)
        digests.add(client.resolve(image, deadline))
        assert deadline.logins[image.repository] == "ecr"
    (digest,) = digests
    assert client.manifest(image, digest, Deadline(10)).digest == digest
    assert moto.tokens_issued() == before + 1


def test_a_token_of_another_account_is_refused_and_the_denial_names_ecr(
    aws: Use, moto: MotoServer, ecr_registry_server: Registry
) -> None:
    aws(ECR=moto.url)
    registry = ecr_registry_server
    theirs = EcrSource([registry.host], locate=_located(registry, OTHER), clock=Clock(MOTO_DAY))
    image = parse_reference(f"{registry.host}/team/app:1")
    with pytest.raises(UpstreamError) as denied:
        _client(registry, theirs).resolve(image, Deadline(10))
    message = str(denied.value)
    assert f"authentication to {registry.host} failed for team/app; tried: ecr (" in message
    assert moto_password(OTHER) not in message


def test_the_ecr_token_never_reaches_a_registry_at_another_host(
    aws: Use, moto: MotoServer, ecr_registry_server: Registry, token_registry: Registry
) -> None:
    """Another registry (its token server logs who asks) with the ECR source configured."""
    aws(ECR=moto.url)
    source = EcrSource(
        [ecr_registry_server.host],
        locate=_located(ecr_registry_server, ACCOUNT),
        clock=Clock(MOTO_DAY),
    )
    assert token_registry.token_server is not None
    push_image(token_registry, "elsewhere/app", tag="1")
    logged = len(token_registry.token_server.log)
    image = parse_reference(f"{token_registry.host}/elsewhere/app:1")
    client = RegistryClient(
        {token_registry.host: RegistrySettings(insecure=True)}, sources=[source]
    )
    with pytest.raises(UpstreamError, match="tried: anonymous"):
        client.resolve(image, Deadline(10))
    assert [entry["user"] for entry in token_registry.token_server.log[logged:]] == [None]


# --- boto3 is loaded only for a configured provider -------------------------------------------


def test_importing_the_module_loads_no_aws_library() -> None:
    code = (
        "import sys, webhook.credentials.ecr; "
        "print(sorted(m for m in sys.modules if m.split('.')[0] in ('boto3', 'botocore')))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_without_boto3_an_ecr_provider_is_a_configuration_error_saying_what_to_install() -> None:
    code = (
        "import sys; sys.modules['boto3'] = None\n"
        "from webhook.credentials.ecr import EcrSource\n"
        "try:\n    EcrSource(['*.dkr.ecr.*.amazonaws.com'])\n"
        "except Exception as exc:\n    print(type(exc).__name__, exc)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.startswith("ConfigError credentials.providers: type ecr needs boto3")
    assert "trustgate[aws]" in out.stdout


def _wait_for(condition: Callable[[], bool], seconds: float = 10.0) -> None:
    end = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < end, "the background renewal did not happen"
        time.sleep(0.01)
