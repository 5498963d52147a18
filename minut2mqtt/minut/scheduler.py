"""The request scheduler: spends Minut's request budget, most urgent work first.

Minut allows 120 requests a minute and 5 a second for everything a client does. Polls, event
pulls and token requests all draw on that one budget here, so that a backlog of event pulls for
hundreds of homes cannot push a token renewal or a poll into a 429, and a 429 (someone else
spending the same client's budget) pauses every request until the API's Retry-After has passed.
"""

from __future__ import annotations

import itertools
import threading
import time
from collections import deque
from collections.abc import Callable
from enum import IntEnum

PAUSE_WITHOUT_RETRY_AFTER = 30.0
"""Seconds every request waits after a 429 that did not say how long to wait."""
HEAD_START_PER_LEVEL = 10.0
"""Waiting requests go in order of arrival, each priority level ahead by this many seconds: a
poll waits behind event pulls that came up to 10 s after it, not behind a whole round of them."""


class Priority(IntEnum):
    """Lower goes first (see HEAD_START_PER_LEVEL)."""

    TOKEN = 0
    """Nothing else works without an access token."""
    EVENTS = 1
    """Pulling events that webhooks did not deliver: a missed alarm matters most."""
    COMMAND = 1
    """A user's command (arm a home, a threshold): as urgent as a missed event (the same level:
    an alias of EVENTS), ahead of polls."""
    POLL = 2
    """The periodic read of devices and homes, and everything else."""


class RequestScheduler:
    """Admits a request when the minute and second windows allow it, by priority, then in order.

    `sleep` replaces waiting on the internal condition (tests with a fake clock pass one; a
    single thread then needs no wake-ups).
    """

    def __init__(
        self,
        per_minute: int,
        per_second: int = 5,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] | None = None,
        head_start_per_level: float = HEAD_START_PER_LEVEL,
    ):
        self._head_start = head_start_per_level
        self._windows = ((60.0, per_minute), (1.0, per_second))
        self._sent: deque[float] = deque()
        self._clock = clock
        self._sleep = sleep
        self._condition = threading.Condition()
        self._waiting: set[tuple[float, int]] = set()
        """Tickets of the requests waiting: (rank, arrival number), lowest rank first."""
        self._arrivals = itertools.count()
        self._paused_until = 0.0
        self.rate_limited = 0
        """How many 429s the API answered (each paused every request)."""

    def acquire(self, priority: Priority = Priority.POLL) -> None:
        """Block until this request may be sent, then count it as sent."""
        with self._condition:
            rank = self._clock() + int(priority) * self._head_start
            ticket = (rank, next(self._arrivals))
            self._waiting.add(ticket)
            try:
                while True:
                    wait = self._wait_needed()
                    first = min(self._waiting) == ticket
                    if first and wait <= 0:
                        break
                    self._idle(wait if first else None)
                self._sent.append(self._clock())
            finally:
                self._waiting.discard(ticket)
                self._condition.notify_all()

    def pause(self, seconds: float | None) -> None:
        """The API answered 429: nobody sends before `seconds` (its Retry-After) have passed."""
        with self._condition:
            self.rate_limited += 1
            pause = PAUSE_WITHOUT_RETRY_AFTER if seconds is None else seconds
            self._paused_until = max(self._paused_until, self._clock() + pause)

    def used_last_minute(self) -> int:
        with self._condition:
            self._forget_old()
            return len(self._sent)

    def wait_needed(self) -> float:
        """Seconds before the windows or a 429's pause let any request go (0: now)."""
        with self._condition:
            return max(0.0, self._wait_needed())

    def waiting(self) -> int:
        """Requests queued for their turn right now."""
        with self._condition:
            return len(self._waiting)

    def _idle(self, seconds: float | None) -> None:
        if self._sleep is not None:
            self._sleep(seconds if seconds is not None else 0.0)
        else:
            self._condition.wait(seconds)

    def _wait_needed(self) -> float:
        now = self._forget_old()
        wait = self._paused_until - now
        for window, limit in self._windows:
            in_window = [sent for sent in self._sent if sent > now - window]
            if len(in_window) >= limit:
                wait = max(wait, in_window[-limit] + window - now)
        return wait

    def _forget_old(self) -> float:
        now = self._clock()
        while self._sent and self._sent[0] <= now - 60.0:
            self._sent.popleft()
        return now
