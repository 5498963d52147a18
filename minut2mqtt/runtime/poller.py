"""The poll loop: the whole account (`GET /devices`, `GET /homes`) every `minut.poll_interval`.

Two requests per poll whatever the number of Points; a failure is retried with backoff, and a
poll that succeeds after failures asks for a catch-up pull (events may have happened that no
webhook could tell us).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any, Generic, Protocol, TypeVar

from ..core.status import AccountBoard
from ..minut.errors import MinutApiError
from ..minut.models import MinutDataError, parse_device, parse_home
from .retry import retry_delay
from .writer import Writer

log = logging.getLogger(__name__)
T = TypeVar("T")

FIRST_POLL_WAITS_FOR_MQTT_SECONDS = 10.0


class AccountReader(Protocol):
    def get_devices(self) -> list[dict[str, Any]]: ...

    def get_homes(self) -> list[dict[str, Any]]: ...


class Poller:
    def __init__(
        self,
        minut: AccountReader,
        writer: Writer,
        status: AccountBoard,
        *,
        interval: float,
        before_poll: Callable[[], None] = lambda: None,
        on_homes: Callable[[list[str], datetime], None] = lambda home_ids, polled_at: None,
        after_outage: Callable[[], None] = lambda: None,
        monotonic: Callable[[], float] = time.monotonic,
        wall_clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        """`before_poll` runs first in every poll (the webhook registration), `on_homes` hears
        the home ids each poll found and when it started, `after_outage` runs when a poll
        succeeds after failures. `status` is the account's part of the status board; its name
        is the account's in the mirror."""
        self._minut = minut
        self._writer = writer
        self._status = status
        self._interval = interval
        self._before_poll = before_poll
        self._on_homes = on_homes
        self._after_outage = after_outage
        self._monotonic = monotonic
        self._now = wall_clock
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._stopping = threading.Event()
        self.first_attempt_done = threading.Event()
        """Set once the first poll was tried, whatever its outcome."""
        self._failures = 0
        self._next_poll = 0.0
        self._devices = ParsedLastTime(parse_device, "device_id")
        self._homes = ParsedLastTime(parse_home, "home_id")
        self.device_ids: frozenset[str] = frozenset()
        self.home_ids: frozenset[str] = frozenset()
        """What the account's last poll showed (replaced whole: read from any thread)."""

    def poll_once(self) -> None:
        """One poll, applied to the mirror before this returns; raises MinutApiError."""
        with self._lock:  # an older picture must never be applied after a newer one
            started = self._now()
            try:
                self._before_poll()
                raw_devices = self._minut.get_devices()
                raw_homes = self._minut.get_homes()
            except MinutApiError as error:
                self._status.poll_failed(error)
                raise
            devices = self._devices.parse_all(raw_devices)
            homes = self._homes.parse_all(raw_homes)
            # known before the mirror shows them: a command on them finds this account
            self.device_ids = frozenset(device.device_id for device in devices)
            self.home_ids = frozenset(home.home_id for home in homes)
            self._writer.apply_poll(devices, homes, account=self._status.name)
            self._status.poll_succeeded(len(devices), len(homes))
            self._on_homes([home.home_id for home in homes], started)

    def request_poll(self) -> None:
        """Poll now rather than at the next interval (an account was just connected)."""
        self._wake.set()

    def step(self) -> float:
        """Poll if it is time (or asked for); the seconds until the next poll is due."""
        if self._wake.is_set() and not self._stopping.is_set():
            self._wake.clear()
            self._next_poll = self._monotonic()
        if self._monotonic() >= self._next_poll:
            try:
                self.poll_once()
            except MinutApiError as error:
                self._failed(error)
            except Exception as error:  # a bug must not end polling for good
                log.exception("polling failed unexpectedly")
                self._failed(MinutApiError(str(error)))
            else:
                if self._failures:
                    self._after_outage()
                self._failures = 0
                self._next_poll = self._monotonic() + self._interval
            self._writer.refresh_status()
            if not self.first_attempt_done.is_set():
                self.first_attempt_done.set()
                self._writer.open_for_events()
        return max(0.0, self._next_poll - self._monotonic())

    def run(self, mqtt_connected: Callable[[float], bool]) -> None:
        """Poll until stop(); `mqtt_connected(timeout)` waits for the broker."""
        # Polling before the broker answers would make the first burst of discovery twice:
        # queued now, and again by the re-publish that follows every connect.
        give_up_at = self._monotonic() + FIRST_POLL_WAITS_FOR_MQTT_SECONDS
        while not mqtt_connected(0.2) and self._monotonic() < give_up_at:
            if self._stopping.is_set():
                return
        while not self._stopping.is_set():
            self._wake.wait(self.step())

    def stop(self) -> None:
        self._stopping.set()
        self._wake.set()

    def _failed(self, error: MinutApiError) -> None:
        self._failures += 1
        self._next_poll = self._monotonic() + retry_delay(error, self._failures, self._interval)


class ParsedLastTime(Generic[T]):
    """The objects of the last poll with the JSON each came from: an object whose JSON is the
    same again is not parsed again (comparing 2,000 Points' JSON costs 4 ms, parsing them 50;
    keeping the last JSON costs about 3 KB a Point)."""

    def __init__(self, parse: Callable[[dict[str, Any]], T], id_key: str) -> None:
        self._parse = parse
        self._id_key = id_key
        self._last: dict[object, tuple[dict[str, Any], T]] = {}

    def parse_all(self, raw_items: list[dict[str, Any]]) -> list[T]:
        last, self._last = self._last, {}
        parsed = []
        for raw in raw_items:
            key = raw.get(self._id_key)
            kept = isinstance(key, str | int)  # an id unfit for a dict key: parsed every time
            known = last.get(key) if kept else None
            if known is not None and known[0] == raw:
                raw, item = known
            else:
                try:
                    item = self._parse(raw)
                except MinutDataError as error:
                    log.warning("ignoring a Minut object: %s", error)
                    continue
            if kept:
                self._last[key] = (raw, item)
            parsed.append(item)
        return parsed
