"""Catch-up: pulls the events no webhook delivered, from a per-home cursor kept in state_dir.

A pull is due at startup, after an API or broker outage, and after `minut.pull_events_after_silence`
without a webhook delivery. Home by home, each home's events are handed to the writer as soon as
its pull answers, and its cursor moves then. The cursor is this module's own state: one lock
guards it, and only this loop (and `stop`) writes it to disk.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Protocol

from ..core.status import AccountBoard
from ..minut.errors import MinutApiError
from ..minut.models import Event, format_time, parse_time
from ..storage import read_json, write_json
from .retry import retry_delay

log = logging.getLogger(__name__)

CURSOR_FILE = "event_cursor.json"
PULL_OVERLAP = timedelta(minutes=10)
"""A pull starts this long before the previous one: an event can reach the history late."""
PULL_AFTER_REFUSAL_SPACING = 60.0
"""Refused deliveries start a pull at most this often (seconds): events wait, unpublished."""


class HistoryReader(Protocol):
    def pull(
        self, since_by_home: Mapping[str, datetime]
    ) -> Iterator[tuple[list[str], list[Event]]]: ...


class CatchUp:
    def __init__(
        self,
        history: HistoryReader,
        submit: Callable[[list[Event]], None],
        status: AccountBoard,
        *,
        state_dir: Path,
        silence: float,
        retry_ceiling: float,
        wall_clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        """`submit` hands pulled events to the writer; `silence` is the seconds without a
        webhook delivery after which a pull is due (0: never for that reason)."""
        self._history = history
        self._submit = submit
        self._status = status
        self._path = state_dir / CURSOR_FILE
        self._silence = silence
        self._retry_ceiling = retry_ceiling
        self._now = wall_clock
        self._monotonic = monotonic
        self._lock = threading.Lock()
        self._cursor: dict[str, str] = {}
        """Per home, the time up to which its events are known (ISO): where a pull starts."""
        self._cursor_unsaved = False
        self._home_ids: list[str] = []
        self._new_homes: set[str] = set()
        """Homes found since the last pull: it makes no request for them (the next one will)."""
        self._due = threading.Event()
        self._due.set()
        self._running = False
        self._last_pull_at = monotonic()
        self._last_webhook_at = 0.0
        self._refusal_pull_at = -PULL_AFTER_REFUSAL_SPACING
        self._failures = 0
        self._next_try = 0.0
        self._stopping = threading.Event()

    # -- what other threads tell it -------------------------------------------------------------

    def load(self) -> None:
        """Read the cursor a previous run kept."""
        stored = read_json(self._path) or {}
        with self._lock:
            self._cursor = {home: at for home, at in stored.items() if isinstance(at, str)}

    def request(self) -> None:
        """Pull soon: an outage may have kept events from us."""
        self._due.set()

    def delivery_refused(self) -> None:
        """A delivery was refused: its event waits at Minut. Pull now, or a minute after the
        last pull a refusal asked for (within the request budget either way)."""
        with self._lock:
            now = self._monotonic()
            pull_at = max(now, self._refusal_pull_at + PULL_AFTER_REFUSAL_SPACING)
            if self._due.is_set() and self._next_try <= now:
                return  # a pull is about to start anyway
            self._refusal_pull_at = pull_at
            self._next_try = max(self._next_try, pull_at)
        self._due.set()

    def homes_known(self, home_ids: list[str], polled_at: datetime) -> None:
        """The homes a poll that started at `polled_at` found: the ones pulls cover. A home seen
        for the first time is covered from then on (its past is not news)."""
        seen_from = format_time(polled_at) or ""
        with self._lock:
            self._home_ids = list(home_ids)
            for home_id in home_ids:
                if home_id not in self._cursor:
                    self._cursor[home_id] = seen_from
                    self._cursor_unsaved = True
                    self._new_homes.add(home_id)

    def note_webhook(self) -> None:
        """A delivery arrived: webhooks work, no pull is due for silence."""
        self._last_webhook_at = self._monotonic()

    def note_delivered(self, event: Event) -> None:
        """A webhook event moves its home's cursor, unless earlier events may be missing.

        While a pull is due or running (at startup, after an outage or a silence), a delivery
        says nothing about the events before it: only the pull's success moves the cursor then.
        """
        if event.home_id is None or event.created_at is None:
            return
        with self._lock:
            if self._due.is_set() or self._running:
                return
            known = parse_time(self._cursor.get(event.home_id))
            if known is None or event.created_at > known:
                self._cursor[event.home_id] = format_time(event.created_at) or ""
                self._cursor_unsaved = True

    # -- the loop -------------------------------------------------------------------------------

    def run(self, ready: threading.Event) -> None:
        """Pull when due until stop(); starts once `ready` (the first poll tried) is set."""
        while not ready.wait(0.5):
            if self._stopping.is_set():
                return
        while not self._stopping.wait(self.step()):
            pass

    def stop(self) -> None:
        self._stopping.set()

    def step(self) -> float:
        """Pull if due, save the cursor if it moved; the seconds until the next look."""
        self._note_silence()
        if self._due.is_set() and self._monotonic() >= self._next_try:
            try:
                self.pull()
            except MinutApiError as error:
                self._status.api_failed("pulling events from", error)
                self._retry_later(error)
            except Exception:
                log.exception("pulling missed events failed unexpectedly")
                self._retry_later(MinutApiError(""))
            else:
                self._failures = 0
        self.save()
        return 1.0 if self._failures or not self._due.is_set() else 0.0

    def pull(self) -> None:
        """Hand the writer, oldest first, the events each home had since its cursor."""
        with self._lock:
            self._running = True
            self._due.clear()  # a reason arising during this pull makes another one
        try:
            self._pull_since_cursor()
        finally:
            with self._lock:
                self._running = False

    def save(self) -> None:
        """Write the cursor if it moved (from this loop, and at stop once it ended)."""
        with self._lock:
            if not self._cursor_unsaved or not self._cursor:
                return
            self._cursor_unsaved = False
            cursor = dict(self._cursor)
        try:
            write_json(self._path, cursor)
        except OSError as error:
            log.error("cannot save the event cursor in %s: %s", self._path.parent, error)

    # -- inside a pull --------------------------------------------------------------------------

    def _pull_since_cursor(self) -> None:
        with self._lock:
            since_by_home = {
                home_id: since
                for home_id in self._home_ids
                if home_id not in self._new_homes
                and (since := parse_time(self._cursor.get(home_id))) is not None
            }
            self._new_homes.clear()
        if not since_by_home:  # no request made: nothing learnt about the API
            self._last_pull_at = self._monotonic()
            return
        for home_ids, events in self._history.pull(since_by_home):
            self._status.api_answered()
            self._submit(events)
            # The answer covers the home up to when Minut wrote it, a moment before now: the
            # overlap (minutes) covers that moment as well as events reaching the history late.
            self._known_up_to(home_ids, self._now() - PULL_OVERLAP)
        self._last_pull_at = self._monotonic()

    def _known_up_to(self, home_ids: list[str], moment: datetime) -> None:
        """Every event of these homes up to `moment` has been handed over."""
        known_up_to = format_time(moment) or ""
        with self._lock:
            for home_id in home_ids:
                if self._cursor.get(home_id, "") < known_up_to:
                    self._cursor[home_id] = known_up_to
                    self._cursor_unsaved = True

    def _note_silence(self) -> None:
        heard_at = max(self._last_webhook_at, self._last_pull_at)
        silent_for = self._monotonic() - heard_at
        if self._silence and silent_for > self._silence and not self._due.is_set():
            log.debug("no webhook delivery for %.0f s: pulling the homes' events", self._silence)
            self._due.set()

    def _retry_later(self, error: MinutApiError) -> None:
        self._due.set()
        self._failures += 1
        self._next_try = self._monotonic() + retry_delay(error, self._failures, self._retry_ceiling)
