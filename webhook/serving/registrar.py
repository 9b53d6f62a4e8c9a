"""``serve --register``: this server's webhooks registered once it answers ``/readyz``.

The chart installs the webhook configurations empty, so installing it enforces
nothing: a pod that cannot pull its image or load its policies never has the API
server waiting on it with ``failurePolicy: Fail``. The registrar fills them in
(``webhook.kube.registration``) once this server is ready, and checks them again
every ``resync`` seconds, which puts back webhooks someone removed and follows a
new CA. Every replica runs one: a pass that finds the webhooks in place writes
nothing.

A pass registers only after this server answered ``GET /readyz`` 200 over TLS the
way the API server will call it: trusting only the caBundle about to be written,
and checking the certificate for the Service's name. A certificate the API server
would refuse is never registered, since every review would then fail.

A process, not a thread: gunicorn's master forks a worker whenever one exits, and
a thread of the master could hold a lock at that moment (``serving/server.py``).
The registrar is forked before gunicorn starts, while the process has one thread,
and leaves when its parent does. API failures are retried with a bounded backoff
and logged with what to do; nothing here can stop or slow the server.
"""

from __future__ import annotations

import logging
import os
import random
import socket
import ssl
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from webhook.core.errors import ConfigError, KubeError
from webhook.core.observability import get_logger
from webhook.kube.client import KubeClient
from webhook.kube.credentials import Credentials, load_credentials
from webhook.kube.registration import Endpoint, Registration, load_registration, register

__all__ = ["NotReady", "Registrar", "Schedule", "Target", "probe_readyz", "start_registrar"]

_log = get_logger("register")


@dataclass(frozen=True, slots=True)
class Schedule:
    """How often the registrar acts, and how long each step may take (seconds)."""

    #: Between readiness checks while this server is not ready.
    poll: float = 1.0
    #: The first wait after a failed registration; it doubles up to ``max_retry``.
    first_retry: float = 1.0
    max_retry: float = 30.0
    #: Between passes once the webhooks are registered.
    resync: float = 60.0
    #: Each call to the API server: connect, and each read and write.
    call_timeout: float = 10.0
    #: Each readiness check of this server.
    probe_timeout: float = 3.0
    #: How long not being ready is quiet before it is logged as a warning (and again).
    remind: float = 30.0


@dataclass(frozen=True, slots=True)
class Target:
    """What to register and where this server listens.

    ``ca_file`` gives caBundle to webhooks the registration file leaves without one.
    """

    registration: Path
    ca_file: Path | None
    host: str
    port: int
    #: ``kubernetes.kubeconfig`` and ``kubernetes.context`` of the configuration
    #: (None: $KUBECONFIG, then the pod's in-cluster credentials).
    kubeconfig: Path | None = None
    context: str | None = None


@dataclass(frozen=True, slots=True)
class NotReady:
    """Why this server is not ready to be registered.

    ``misconfigured`` marks what waiting will not mend (a certificate the API server
    would refuse), as against a server still starting.
    """

    message: str
    misconfigured: bool = False


@dataclass
class _State:
    failures: int = 0
    registered: bool = False
    waiting_since: float | None = None
    reminded_at: float | None = None
    last_problem: NotReady | None = None


class Registrar:
    """Registers the webhooks of ``target`` while this server is ready; see the module."""

    def __init__(
        self,
        target: Target,
        schedule: Schedule | None = None,
        *,
        credentials: Callable[[], Credentials] | None = None,
    ) -> None:
        self.target = target
        self.schedule = schedule or Schedule()
        self._credentials = credentials or (
            lambda: load_credentials(target.kubeconfig, target.context, os.environ)
        )
        self._state = _State()

    def run(self, alive: Callable[[], bool]) -> None:
        """Register, then keep the registration, until ``alive()`` is false."""
        _log.info(
            "registering the webhooks of %s once https://%s:%d/readyz answers 200 (process %d)",
            self.target.registration,
            self.target.host,
            self.target.port,
            os.getpid(),
        )
        while alive():
            try:
                delay = self.step()
            except Exception:
                # A fault of the registrar must not end it: the next pass may succeed.
                _log.exception("registration pass failed; trying again")
                delay = self._retry_delay()
            _sleep(delay, alive)

    def step(self) -> float:
        """One pass: read, check readiness, register; returns the seconds until the next."""
        try:
            registration = load_registration(self.target.registration, self.target.ca_file)
        except ConfigError as exc:
            return self._failed(f"cannot read what to register: {exc}")
        problem = self._readiness(registration)
        if problem is not None:
            self._not_ready(problem)
            return self.schedule.poll
        self._state.waiting_since = self._state.reminded_at = self._state.last_problem = None
        try:
            with KubeClient(self._credentials(), timeout=self.schedule.call_timeout) as client:
                changed = register(client, registration)
        except KubeError as exc:
            return self._failed(f"cannot register the webhooks: {exc}")
        self._succeeded(registration, changed)
        return self.schedule.resync

    def _readiness(self, registration: Registration) -> NotReady | None:
        for endpoint in sorted(registration.endpoints, key=lambda e: e.host):
            problem = probe_readyz(
                self.target.host, self.target.port, endpoint, self.schedule.probe_timeout
            )
            if problem is not None:
                return problem
        return None

    def _not_ready(self, problem: NotReady) -> None:
        """Say why not, when the reason changes, and again every ``remind`` seconds."""
        state, now = self._state, time.monotonic()
        if state.waiting_since is None:
            state.waiting_since = now
        if problem != state.last_problem:
            state.last_problem, state.reminded_at = problem, now
            level = logging.WARNING if problem.misconfigured else logging.INFO
            _log.log(level, "not registering yet: %s", problem.message)
        elif now - (state.reminded_at or now) >= self.schedule.remind:
            state.reminded_at = now
            _log.warning(
                "still not registering after %.0f s: %s",
                now - state.waiting_since,
                problem.message,
            )

    def _failed(self, message: str) -> float:
        self._state.failures += 1
        delay = self._retry_delay()
        _log.warning(
            "%s (attempt %d; next in %.1f s)",
            message,
            self._state.failures,
            delay,
            extra={"outcome": "error"},
        )
        return delay

    def _retry_delay(self) -> float:
        """The bounded backoff: doubling from first_retry to max_retry, less up to a quarter
        at random so that replicas refused together do not retry together."""
        failures = max(self._state.failures, 1)
        ceiling = min(self.schedule.max_retry, self.schedule.first_retry * 2.0 ** (failures - 1))
        return float(ceiling * (1 - random.random() / 4))

    def _succeeded(self, registration: Registration, changed: list[str]) -> None:
        state = self._state
        if state.failures:
            _log.info("registration works again after %d failed attempts", state.failures)
        state.failures = 0
        if changed:
            _log.info(
                "registered the webhooks in %s (%s)",
                ", ".join(changed),
                registration.describe(),
            )
        elif not state.registered:
            _log.info("the webhooks are registered already (%s)", registration.describe())
        state.registered = True


def probe_readyz(host: str, port: int, endpoint: Endpoint, timeout: float) -> NotReady | None:
    """None if ``GET /readyz`` at ``host:port`` answers 200 over TLS as the API server calls it.

    The certificate must verify against ``endpoint.ca_pem`` alone, for the name
    ``endpoint.host`` (by its subject alternative names, as Go's TLS checks them).
    Otherwise the reason, in words that say what to fix.
    """
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.hostname_checks_common_name = False
    where = f"https://{host}:{port}/readyz as {endpoint.host}"
    try:
        context.load_verify_locations(cadata=endpoint.ca_pem.decode("ascii"))
        with (
            socket.create_connection((host, port), timeout=timeout) as sock,
            context.wrap_socket(sock, server_hostname=endpoint.host) as tls,
        ):
            request = f"GET /readyz HTTP/1.1\r\nHost: {endpoint.host}\r\nConnection: close\r\n\r\n"
            tls.sendall(request.encode("ascii"))
            status = _status_line(tls, time.monotonic() + timeout)
    except ssl.SSLCertVerificationError as exc:
        message = (
            f"{where}: the API server would refuse this certificate too: "
            f"{exc.verify_message}; the caBundle (ca.crt) must sign it and it must name "
            f"{endpoint.host}"
        )
        return NotReady(message, misconfigured=True)
    except (OSError, ssl.SSLError, UnicodeDecodeError) as exc:
        return NotReady(f"{where}: {exc}")
    if status != 200:
        return NotReady(f"{where}: answered {status or 'no HTTP status'}")
    return None


def _status_line(tls: ssl.SSLSocket, deadline: float) -> int | None:
    """The status code of the response's first line, read without its body by ``deadline``.

    The whole read is bounded, not each wait: a server that sends its head a byte
    at a time is not ready.
    """
    head = b""
    while b"\r\n" not in head and len(head) < 4096:
        left = deadline - time.monotonic()
        if left <= 0:
            raise TimeoutError("no status line within the probe's timeout")
        tls.settimeout(left)
        chunk = tls.recv(4096)
        if not chunk:
            break
        head += chunk
    parts = head.split(b"\r\n", 1)[0].split()
    if len(parts) >= 2 and parts[0].startswith(b"HTTP/") and parts[1].isdigit():
        return int(parts[1])
    return None


def _sleep(seconds: float, alive: Callable[[], bool]) -> None:
    """Wait ``seconds``, looking up every half second whether to stop."""
    end = time.monotonic() + seconds
    while alive():
        left = end - time.monotonic()
        if left <= 0:
            return
        time.sleep(min(left, 0.5))


def start_registrar(target: Target, schedule: Schedule | None = None) -> int:
    """Fork the registrar and return its pid; the child never returns.

    Call it before gunicorn starts, from a process with one thread. The child runs
    until its parent is gone (a pod's container ends with its first process anyway)
    and always exits 0, so gunicorn, which reaps every child of its master, sees
    nothing to report.
    """
    parent = os.getpid()
    for handler in logging.getLogger("trustgate").handlers:
        handler.flush()
    pid = os.fork()
    if pid:
        return pid
    try:
        Registrar(target, schedule).run(alive=lambda: os.getppid() == parent)
    except KeyboardInterrupt:
        pass
    finally:
        for handler in logging.getLogger("trustgate").handlers:
            handler.flush()
        os._exit(0)
