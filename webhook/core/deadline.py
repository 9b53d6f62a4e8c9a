"""One review's limits on the network: a wall-clock deadline and a byte budget.

Every outbound call of a review (registry, token service, Pyxis) runs within
what is left of the same ``Deadline``, and every byte it reads is charged to
the same budget, however many images and threads the review uses.
"""

from __future__ import annotations

import threading
import time

from webhook.core.errors import UpstreamError
from webhook.core.scope import Scope


class BudgetExceeded(UpstreamError):
    """The review read more bytes from the network than its budget allows."""


class Deadline:
    """A point in monotonic time after which no request may run, and a byte budget.

    ``max_bytes`` bounds what all the review's responses together may bring in
    (None: no budget). ``host`` is the host of the latest call, so a review that
    runs out of time can say whom it was waiting for.

    ``reserve`` seconds at the end belong to the answer, not to calls: outbound
    calls stop at ``expires_at``, ``seconds - reserve`` from now, so that the
    denial they end in is composed and sent by ``answer_by``, ``seconds`` from
    now. The webhook's answer then never comes later than its deadline.
    """

    def __init__(
        self,
        seconds: float,
        *,
        max_bytes: int | None = None,
        reserve: float = 0.0,
        scope: Scope | None = None,
    ) -> None:
        self.seconds = seconds
        now = time.monotonic()
        self.answer_by = now + seconds
        self._end = now + max(0.0, seconds - reserve)
        self.max_bytes = max_bytes
        self.read_bytes = 0
        self.host: str | None = None
        #: Whose pull secrets the review's calls may use (see ``webhook.core.scope``).
        #: It travels with the deadline because everything that calls a registry
        #: or caches what one fetched is already handed the deadline.
        self.scope = scope
        #: Repository -> the source of the login the registry accepted for it
        #: (``pull secret team-a/regcred``, ``anonymous``): what ``check`` and the
        #: decision log show. Never a secret.
        self.logins: dict[str, str] = {}
        self._lock = threading.Lock()

    @property
    def expires_at(self) -> float:
        """The ``time.monotonic()`` instant after which no call may run."""
        return self._end

    def remaining(self) -> float:
        """Seconds left, never negative."""
        return max(0.0, self._end - time.monotonic())

    def check(self, what: str) -> float:
        """Seconds left; raises UpstreamError("<what> timed out") when none are."""
        remaining = self.remaining()
        if remaining <= 0:
            raise UpstreamError(f"{what} timed out")
        return remaining

    def charge(self, host: str, size: int) -> None:
        """Count ``size`` bytes read from ``host``.

        Raises:
            BudgetExceeded: the review's responses together exceed ``max_bytes``.
        """
        with self._lock:
            self.read_bytes += size
            total = self.read_bytes
        if self.max_bytes is not None and total > self.max_bytes:
            raise BudgetExceeded(
                f"the review read more than {self.max_bytes} bytes from the network "
                f"(network.reviewBudgetBytes), the last of them from {host}"
            )
