"""Housekeeping: the jobs that time brings, sent to the writer once a second.

Time passes for the mirror (momentary states fall back to off, readings turn stale), the
bridge's status document is refreshed, and Home Assistant's birth brings a re-publish after a
random pause (so bridges don't stampede).
"""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Callable

from ..core.status import StatusBoard
from .writer import Writer

TICK_SECONDS = 1.0
STATUS_EVERY_SECONDS = 10.0
"""How often the bridge's status document is refreshed (published when something changed)."""
HA_BIRTH_DELAY_SECONDS = (0.5, 3.0)
"""Random pause before re-publishing after Home Assistant's birth."""


class Housekeeping:
    def __init__(
        self,
        writer: Writer,
        status: StatusBoard,
        *,
        monotonic: Callable[[], float] = time.monotonic,
        birth_delay: Callable[[], float] = lambda: random.uniform(*HA_BIRTH_DELAY_SECONDS),
    ) -> None:
        self._writer = writer
        self._status = status
        self._monotonic = monotonic
        self._birth_delay = birth_delay
        self._lock = threading.Lock()
        self._republish_at: float | None = None
        self._status_at = 0.0
        self._stopping = threading.Event()

    def home_assistant_started(self) -> float:
        """From paho's thread: re-publish after a random pause; the pause in seconds."""
        delay = self._birth_delay()
        with self._lock:
            self._republish_at = self._monotonic() + delay
        return delay

    def step(self) -> None:
        now = self._monotonic()
        self._writer.tick()
        if now >= self._status_at:
            self._status_at = now + STATUS_EVERY_SECONDS
            self._writer.refresh_status()
        with self._lock:
            republish = self._republish_at is not None and now >= self._republish_at
            if republish:
                self._republish_at = None
        if republish:
            self._writer.request_republish()

    def run(self) -> None:
        while not self._stopping.wait(TICK_SECONDS):
            self.step()

    def stop(self) -> None:
        self._stopping.set()
