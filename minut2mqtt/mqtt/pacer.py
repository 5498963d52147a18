"""Pacing of outgoing messages, so that slow subscribers lose nothing."""

from __future__ import annotations

import time
from collections.abc import Callable


class Pacer:
    """A token bucket: lets `burst` messages through at once, then `rate` per second."""

    def __init__(self, rate: float, burst: int, clock: Callable[[], float] = time.monotonic):
        self._rate = rate
        self._burst = float(burst)
        self._tokens = float(burst)
        self._clock = clock
        self._last = clock()

    def delay(self) -> float:
        """Take one token; the seconds to wait before sending (0 when one was available)."""
        now = self._clock()
        self._tokens = min(self._burst, self._tokens + (now - self._last) * self._rate)
        self._last = now
        self._tokens -= 1
        return 0.0 if self._tokens >= 0 else -self._tokens / self._rate

    def refund(self) -> None:
        """Give back the token of a message that did not go after all."""
        self._tokens = min(self._burst, self._tokens + 1)
