"""Reading each home's guests now and then: one thread, one home at a time, spread evenly.

Stays change seldom and are booked ahead, so a home is read every `interval` seconds (the
current and next stay follow the clock in between: the mirror re-publishes a home at each
check-in and check-out). A home whose account lists no guests (404, 403, 405) is asked again
only after a day. Requests go at the polls' priority: guests never delay a command or a
missed event.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import Any

from ..minut.errors import MinutApiError
from ..minut.guests import parse_stays
from ..minut.scheduler import Priority
from .commands import ApiClient
from .writer import Writer

log = logging.getLogger(__name__)

NOT_LISTED = frozenset({403, 404, 405})
NOT_LISTED_RETRY_SECONDS = 86400.0
MIN_GAP_SECONDS = 1.0
"""At most one guest list a second, however many homes."""
FIRST_READ_GAP_SECONDS = 3.0
"""Homes never read yet are read this often (20 a minute of the budget of 120)."""
PAGE_SIZE = 50


class GuestReader:
    def __init__(
        self,
        writer: Writer,
        client_for_home: Callable[[str], ApiClient | None],
        *,
        interval: float,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self._writer = writer
        self._client_for_home = client_for_home
        self._interval = interval
        self._monotonic = monotonic
        self._due: dict[str, float] = {}
        """Home id → when to read its guests next."""
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        self._thread = threading.Thread(target=self.run, name="guests", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(5)

    def run(self) -> None:
        while not self._stop.is_set():
            home_ids = self._writer.ask(lambda: list(self._writer.mirror.homes), timeout=None)
            self.read_due(home_ids)
            gap = min(self._interval / max(1, len(home_ids)), 60.0)
            if not home_ids or any(home_id not in self._due for home_id in home_ids):
                gap = min(gap, FIRST_READ_GAP_SECONDS)
            self._stop.wait(max(MIN_GAP_SECONDS, gap))

    def read_due(self, home_ids: list[str]) -> None:
        """Read the guests of the first home that is due (new homes are due at once)."""
        now = self._monotonic()
        for gone in self._due.keys() - set(home_ids):
            del self._due[gone]
        due = [home_id for home_id in home_ids if self._due.get(home_id, 0.0) <= now]
        if due:
            self._read(min(due, key=lambda home_id: self._due.get(home_id, 0.0)), now)

    def _read(self, home_id: str, now: float) -> None:
        self._due[home_id] = now + self._interval
        client = self._client_for_home(home_id)
        if client is None:
            return
        try:
            items = _guest_list(client, home_id)
        except MinutApiError as error:
            if error.status in NOT_LISTED:
                log.info("Minut lists no guests for home %s (%s)", home_id, error)
                self._due[home_id] = now + NOT_LISTED_RETRY_SECONDS
                self._writer.apply_stays(home_id, None)
            else:
                log.info("reading the guests of home %s failed: %s", home_id, error)
            return
        self._writer.apply_stays(home_id, parse_stays(items))


def _guest_list(client: ApiClient, home_id: str) -> list[Any]:
    """Every stay of the home: the list under `guests` (or a bare list), page after page when
    the answer says how many there are."""
    path = f"/homes/{home_id}/guests"
    items: list[Any] = []
    while True:
        query = {"limit": PAGE_SIZE, "offset": len(items)}
        answer = client.request("GET", path, priority=Priority.POLL, params=query)
        page = answer if isinstance(answer, list) else _list_in(answer)
        items += page
        paging = answer.get("paging") if isinstance(answer, dict) else None
        total = paging.get("total_count") if isinstance(paging, dict) else None
        if not isinstance(total, int) or not page or len(items) >= total:
            return items


def _list_in(answer: Any) -> list[Any]:
    if not isinstance(answer, dict):
        raise MinutApiError("the guest list is neither a list nor an object")
    for key in ("guests", "stays", "reservations", "items", "data"):
        if isinstance(answer.get(key), list):
            return list(answer[key])
    raise MinutApiError(f"no list of guests in the answer (keys: {', '.join(sorted(answer))})")
