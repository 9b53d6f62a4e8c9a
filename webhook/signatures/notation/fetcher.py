"""One GET of an OCSP responder or CRL distribution point, bounded in time and bytes.

The URL comes from a certificate, so what is fetched is held tight:

- plain ``http`` only, as the Notary Project says of CRLs and notation-go of
  OCSP (OCSP and CRLs are signed; TLS would add a certificate whose own
  revocation needs checking); no credentials in the URL, none sent;
- a redirect is followed only within the same scheme and host, at most
  twice; anything else is refused, never followed;
- the answer must be 200 and at most ``max_bytes`` (a declared length over
  it is refused before a byte is read); every byte is charged to the
  review's budget;
- each call takes at most ``seconds`` in all (the specification's thresholds:
  2 s per OCSP URL, 5 s per CRL URL) and never outlives the review's
  deadline: sockets are shut down then, so a responder that drips bytes
  cannot hold the call.

Calls go through the registry layer's ``Network``: per-host slots, a circuit
breaker per host (a responder that keeps failing is refused at once for a
while, so an air-gapped cluster pays the timeout a few times, not on every
review), and the offline pass's ``needs_io``. Every failure becomes
``Unavailable`` with a message that names the host and says what happened.
"""

from __future__ import annotations

import time
from urllib.parse import urljoin, urlsplit

import urllib3

from webhook.core.deadline import BudgetExceeded, Deadline
from webhook.core.errors import UpstreamError
from webhook.core.failures import describe
from webhook.registry.guard import watching
from webhook.registry.network import CallCut, HostFailure, Network
from webhook.registry.transport import Answer, timed_out_waiting
from webhook.signatures.notation.certstatus import Unavailable, shown

_REDIRECTS = frozenset({301, 302, 303, 307, 308})
_MAX_REDIRECTS = 2
_CHUNK = 64 * 1024


class Fetcher:
    """GETs revocation information over a shared ``Network``; thread-safe."""

    def __init__(self, network: Network) -> None:
        self._network = network

    def get(
        self, url: str, deadline: Deadline, *, seconds: float, max_bytes: int, accept: str
    ) -> bytes:
        """The body at ``url``: 200, at most ``max_bytes``, within ``seconds`` and ``deadline``.

        Raises:
            Unavailable: the URL is not plain HTTP or holds credentials, the
                review has no time left, the host is refused by its breaker,
                does not answer in time, fails, redirects elsewhere, answers
                anything but 200, or sends too much.
        """
        host = _host(url)
        if deadline.remaining() <= 0:
            raise Unavailable(f"no time was left in the review to ask {host}")
        try:
            with self._network.call(host, deadline):
                own = min(seconds, deadline.remaining())
                with watching(min(deadline.expires_at, time.monotonic() + own)):
                    return self._get(url, host, deadline, own, max_bytes, accept)
        except BudgetExceeded as exc:
            self._network.event("budget_exceeded", host)
            raise Unavailable(exc.message) from None
        except Unavailable:
            raise
        except UpstreamError as exc:
            raise Unavailable(exc.message) from None

    def _get(
        self, url: str, host: str, deadline: Deadline, own: float, max_bytes: int, accept: str
    ) -> bytes:
        headers = {"Accept": accept, "Accept-Encoding": "identity"}
        end = time.monotonic() + own
        for _ in range(_MAX_REDIRECTS + 1):
            try:
                answer = self._network.transport.request(
                    "GET", url, headers, timeout=max(0.001, end - time.monotonic())
                )
            except (urllib3.exceptions.HTTPError, OSError) as exc:
                raise _failure(exc, host, own, end, deadline) from None
            if answer.status in _REDIRECTS:
                answer.close()
                url = _redirect(url, answer.headers.get("Location", ""), host)
                continue
            if answer.status != 200:
                answer.close()
                kind = HostFailure if answer.status >= 500 else UpstreamError
                raise kind(f"{host} answered HTTP {answer.status} {answer.reason[:80]}")
            return _read(answer, host, deadline, own, end, max_bytes)
        raise UpstreamError(f"{host} redirected more than {_MAX_REDIRECTS} times")


def _host(url: str) -> str:
    """The ``host[:port]`` of a usable URL; raises Unavailable for any other.

    The caller names the URL (without credentials) before the message.
    """
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        raise Unavailable("it is not a valid URL") from None
    if parts.scheme.lower() != "http":
        raise Unavailable("it is not a plain http URL, and only those are used")
    if parts.username is not None or parts.password is not None:
        raise Unavailable("it holds credentials, so it is not used")
    if not parts.hostname:
        raise Unavailable("it names no host")
    return parts.hostname.lower() + (f":{port}" if port is not None else "")


def _redirect(url: str, location: str, host: str) -> str:
    target = urljoin(url, location)
    try:
        same = _host(target) == host
    except Unavailable:
        same = False
    if not same:
        raise UpstreamError(
            f"{host} redirected to {shown(target)}; redirects are followed within "
            f"http://{host} only"
        )
    return target


def _read(
    answer: Answer, host: str, deadline: Deadline, own: float, end: float, max_bytes: int
) -> bytes:
    too_large = f"{host} sent more than {max_bytes} bytes (the limit for this answer)"
    length = answer.headers.get("Content-Length", "")
    if length.isdigit() and int(length) > max_bytes:
        answer.close()
        raise UpstreamError(too_large)
    chunks: list[bytes] = []
    total = 0
    raw = answer.raw
    try:
        while True:
            sock = getattr(raw.connection, "sock", None)
            if sock is not None:
                sock.settimeout(max(0.001, end - time.monotonic()))
            chunk = raw.read1(_CHUNK, decode_content=False)
            if not chunk:
                break
            total += len(chunk)
            if total > max_bytes:
                raise UpstreamError(too_large)
            deadline.charge(host, len(chunk))
            chunks.append(chunk)
        if time.monotonic() >= end:  # cut at the end of its time: what came is not all
            raise HostFailure(f"{host} did not answer within {own:.1f} s")
        raw.drain_conn()
    except (urllib3.exceptions.HTTPError, OSError) as exc:
        raise _failure(exc, host, own, end, deadline) from None
    finally:
        if raw.connection is not None:
            answer.close()
    return b"".join(chunks)


def _failure(
    exc: BaseException, host: str, own: float, end: float, deadline: Deadline
) -> UpstreamError:
    """What the breaker is told: the host failed, or the review ran out of time."""
    if deadline.remaining() <= 0:
        return CallCut(
            f"{host} was still answering when the review's deadline of "
            f"{deadline.seconds:g} s passed"
        )
    if time.monotonic() >= end or timed_out_waiting(exc):
        return HostFailure(f"{host} did not answer within {own:.1f} s")
    return HostFailure(f"cannot reach {host}: {describe(exc)}")
