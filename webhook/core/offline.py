"""The offline pass: judging an image in the request thread without any I/O.

Most reviews ask only what the caches already hold: the same few images come
back on every deploy. Such a review needs no check thread, no socket bound to
its deadline and no wait on a future. So the engine first judges each image
in the request thread inside :func:`offline`; any call that would wait on the
outside world (an outbound HTTP call, the shared cache tier) calls
:func:`needs_io` first, which there raises :class:`NeedsNetwork` instead of
starting. The engine then hands that image to its check threads, which judge
it from the start, with the deadline and isolation that I/O needs.

The flag is per thread: check threads never set it, so for them
:func:`needs_io` costs one attribute read.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Literal

__all__ = ["NeedsNetwork", "deferred", "needs_io", "offline"]

#: An observer of events such as cache lookups: ``observer(name, result)``.
Observer = Callable[[str, str], None]


class NeedsNetwork(BaseException):
    """The offline pass reached I/O; the image must be judged in a check thread.

    A BaseException, as GeneratorExit is: it is a control-flow signal, not a
    failure, and no check's error handling may turn it into a verdict.
    """


class _State(threading.local):
    active = False
    #: Observations made during the pass, reported only if it finishes.
    held: list[tuple[Observer, str, str]] | None = None


_state = _State()


def needs_io(what: str) -> None:
    """Say that I/O (``what``: a host, a cache tier) is about to start.

    Raises:
        NeedsNetwork: inside :func:`offline`, in place of the I/O.
    """
    if _state.active:
        raise NeedsNetwork(what)


class offline:
    """Within this block, in this thread, :func:`needs_io` raises :class:`NeedsNetwork`.

    What :func:`deferred` observers see inside is reported when the block ends
    normally, and forgotten when it ends in NeedsNetwork: the check thread
    that then judges the image reports it once. A class rather than a
    generator: it is entered once per image of every review.
    """

    __slots__ = ("_outer",)

    def __enter__(self) -> None:
        self._outer = _state.active  # nested: the outer block decides
        if not self._outer:
            _state.active, _state.held = True, []

    def __exit__(
        self, kind: type[BaseException] | None, error: object, trace: object
    ) -> Literal[False]:
        if self._outer:
            return False
        held = _state.held
        _state.active, _state.held = False, None
        if kind is None and held:
            for observer, name, result in held:
                observer(name, result)
        return False


def deferred(observer: Observer | None) -> Observer | None:
    """``observer``, holding back what it sees in an offline pass until the pass finishes.

    A pass that ends in NeedsNetwork is run again in a check thread, which
    would count the same cache lookups a second time.
    """
    if observer is None:
        return None

    def observe(name: str, result: str) -> None:
        held = _state.held
        if held is None:
            observer(name, result)
        else:
            held.append((observer, name, result))

    return observe
