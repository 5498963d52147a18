"""Pacing of outgoing messages, so that slow subscribers lose nothing."""

from __future__ import annotations

import threading
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

    def delay(self, messages: int = 1) -> float:
        """Take a token per message; the seconds to wait before sending them (0 when there
        were enough)."""
        now = self._clock()
        self._tokens = min(self._burst, self._tokens + (now - self._last) * self._rate)
        self._last = now
        self._tokens -= messages
        return 0.0 if self._tokens >= 0 else -self._tokens / self._rate

    def refund(self, messages: int = 1) -> None:
        """Give back the tokens of messages that did not go after all."""
        self._tokens = min(self._burst, self._tokens + messages)


COMING_SECONDS = 0.01
"""How long a received event counts as on its way before its messages reach the outbox."""


class EventsInFlight:
    """Whether events are on their way to the broker, for bulk work to hold back meanwhile.

    Bulk messages and events share the process (and Python's one lock), the processor and the
    connection: while the bridge builds and sends a burst flat out, every step of an event
    waits behind it. An event counts from its receipt (`coming`) or its entry in the outbox
    (`arrived`) until the broker has it (`landed`: its PUBREC), and at most `longest` seconds
    after the last one arrived, so that a count thrown off by a lost connection holds nothing
    back for long. Thread-safe.
    """

    def __init__(self, longest: float = 0.1, clock: Callable[[], float] = time.monotonic):
        self._longest = longest
        self._clock = clock
        self._lock = threading.Lock()
        self._waiting = 0
        self._last_arrival = -longest
        self._coming_until = 0.0
        self._handed: set[int] = set()
        """Packet ids of events handed to paho, not yet taken by the broker."""

    def coming(self) -> None:
        """An event was received: its messages follow within COMING_SECONDS."""
        with self._lock:
            self._coming_until = self._clock() + COMING_SECONDS

    def arrived(self) -> None:
        """One of an event's messages entered the outbox."""
        with self._lock:
            self._waiting += 1
            self._last_arrival = self._clock()
            self._coming_until = 0.0

    def handed(self, packet_id: int) -> None:
        with self._lock:
            self._handed.add(packet_id)

    def landed(self, packet_id: int) -> bool:
        """The broker took a message: True when it was an event on its way."""
        with self._lock:
            if packet_id not in self._handed:
                return False
            self._handed.discard(packet_id)
            self._waiting = max(0, self._waiting - 1)
            return True

    def forget(self) -> None:
        """A new connection: what was in flight starts again from the outbox."""
        with self._lock:
            self._waiting = 0
            self._handed.clear()

    def hold_left(self) -> float:
        """Seconds bulk work should still hold back (0: no event on its way)."""
        with self._lock:
            now = self._clock()
            coming = self._coming_until - now
            if not self._waiting:
                return max(0.0, coming)
            return max(0.0, coming, self._last_arrival + self._longest - now)
