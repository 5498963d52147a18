"""Housekeeping: the jobs that time brings, sent to the writer once a second.

Time passes for the mirror (momentary states fall back to off, readings turn stale), the
bridge's status document is refreshed, our orphaned discovery configs are swept a moment after
each broker connect (once the broker replayed its retained configs and a poll succeeded), and
Home Assistant's birth brings a re-publish after a random pause (so bridges don't stampede).
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
ORPHAN_SWEEP_DELAY_SECONDS = 3.0
"""Time the broker gets to replay retained discovery configs before we judge what is orphaned."""
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
        self._sweep_at: float | None = None
        self._republish_at: float | None = None
        self._status_at = 0.0
        self._stopping = threading.Event()

    def broker_connected(self) -> None:
        """From paho's thread: sweep orphaned configs once the broker replayed them."""
        with self._lock:
            self._sweep_at = self._monotonic() + ORPHAN_SWEEP_DELAY_SECONDS

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
            sweep_at = self._sweep_at
        if republish:
            self._writer.request_republish()
        if sweep_at is not None and now >= sweep_at and self._swept_after_a_good_poll():
            with self._lock:
                if self._sweep_at == sweep_at:  # not a newer connect's
                    self._sweep_at = None

    def run(self) -> None:
        while not self._stopping.wait(TICK_SECONDS):
            self.step()

    def stop(self) -> None:
        self._stopping.set()

    def _swept_after_a_good_poll(self) -> bool:
        """Sweep once a poll told us which entities exist; wait for one, skip after a failure."""
        status = self._status.snapshot()
        if status.last_poll is None:
            return False
        if status.last_poll_error is None:
            self._writer.sweep_orphans()
        return True
