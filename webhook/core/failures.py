"""Network failures in plain words: what went wrong, and what to check.

requests and urllib3 wrap the cause of a failed connection in layers that name
their internals (``HTTPSConnectionPool(host=..., port=...): Max retries
exceeded with url: ... (Caused by NewConnectionError(...))``). ``describe``
finds the cause under them and says it so that a person knows what to check.
The caller names the host; the description never repeats it.
"""

from __future__ import annotations

import errno
import socket
import ssl
from collections.abc import Iterator

import urllib3.exceptions

_MAX_DEPTH = 12
_LONGEST = 200

_UNREACHABLE = {errno.ENETUNREACH, errno.EHOSTUNREACH, errno.EHOSTDOWN}


def _causes(exc: BaseException) -> Iterator[BaseException]:
    """``exc`` and everything it wraps: ``reason``, exception arguments, causes, contexts."""
    seen: set[int] = set()
    todo = [exc]
    while todo and len(seen) < _MAX_DEPTH:
        current = todo.pop(0)
        if id(current) in seen:
            continue
        seen.add(id(current))
        yield current
        reason = getattr(current, "reason", None)
        inner = [reason] if isinstance(reason, BaseException) else []
        inner += [a for a in current.args if isinstance(a, BaseException)]
        inner += [c for c in (current.__cause__, current.__context__) if c is not None]
        todo.extend(inner)


def _certificate(exc: ssl.SSLCertVerificationError) -> str:
    detail = exc.verify_message or "verification failed"
    return (
        f"its TLS certificate is not trusted ({detail}): check the CA configured for it, "
        "and that the address is the name the certificate was issued for"
    )


def _specific(cause: BaseException) -> str | None:
    """A cause that says exactly what happened (a refusal, an unknown name, a bad certificate)."""
    if isinstance(cause, urllib3.exceptions.NameResolutionError | socket.gaierror):
        return "the host name does not resolve: check the name, and DNS from this machine"
    if isinstance(cause, ssl.SSLCertVerificationError):
        return _certificate(cause)
    if isinstance(cause, urllib3.exceptions.ProxyError):
        return "the proxy refused or failed the connection: check HTTPS_PROXY and NO_PROXY"
    if isinstance(cause, ConnectionRefusedError):
        return (
            "the connection was refused: nothing listens at that address and port; "
            "check them, and that the service is running"
        )
    if isinstance(cause, ConnectionResetError):
        return "the connection was reset: check proxies and firewalls in between"
    if isinstance(cause, OSError) and cause.errno in _UNREACHABLE:
        return "the network path to it is unreachable: check routes, firewalls and proxies"
    return None


def _general(cause: BaseException) -> str | None:
    """A cause that names only the kind of failure (a timeout, a failed handshake)."""
    # urllib3's NewConnectionError is a ConnectTimeoutError; its own cause says more.
    timeout = TimeoutError | urllib3.exceptions.TimeoutError
    if isinstance(cause, timeout) and not isinstance(cause, urllib3.exceptions.NewConnectionError):
        return "it did not answer in time: check that it is up and that no firewall drops traffic"
    if isinstance(cause, ssl.SSLError):
        reason = cause.reason or str(cause)
        return (
            f"the TLS handshake failed ({reason}): check that it speaks HTTPS on this port "
            "(or mark it insecure if it serves plain HTTP)"
        )
    if isinstance(cause, urllib3.exceptions.ProtocolError | ConnectionAbortedError):
        return "it closed the connection without answering"
    return None


def describe(exc: BaseException) -> str:
    """What failed, in plain words, for a failure of a network call.

    The most specific cause wins (a refused connection rather than the retry
    loop around it); an unknown cause is given by its own message, shortened.
    """
    causes = list(_causes(exc))
    for find in (_specific, _general):
        for cause in causes:
            text = find(cause)
            if text is not None:
                return text
    innermost = causes[-1]
    words = str(innermost).strip().splitlines()
    text = words[0] if words else type(innermost).__name__
    return text if len(text) <= _LONGEST else text[:_LONGEST] + "..."
