"""Events missed while the bridge was away, pulled from the homes' event histories.

Per home (`GET /homes/{id}/events`) where Minut allows it, else from the older account-wide
`GET /events`, which some API clients are only allowed to use.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Iterator, Mapping
from datetime import UTC, datetime
from typing import Any

from .client import MinutApiError, MinutAuthError, MinutClient, paging_total
from .models import Event, MinutDataError, format_time, parse_event
from .scheduler import Priority

log = logging.getLogger(__name__)

PAGE_SIZE = 100
MAX_PAGES = 20
"""A bound on one pull (2,000 events): a home cannot eat the whole request budget."""

HOME_PULL_REFUSED = frozenset({400, 403, 404, 405, 410, 501})
"""Answers that mean "not for you" rather than "not now": pull account-wide instead."""

WEBHOOK_NAME_OF_HOME_EVENT = {
    "noise_detected": "disturbance_first_notice",
    "noise_quieted": "disturbance_ended",
}
"""Home events have names of their own for noise; the bridge publishes the webhook names."""


class EventPuller:
    """Pulls missed events per home, and account-wide once Minut has refused a per-home pull."""

    def __init__(self, client: MinutClient):
        self._client = client
        self.account_wide = False

    def pull(
        self, since_by_home: Mapping[str, datetime]
    ) -> Iterator[tuple[list[str], list[Event]]]:
        """Events of these homes after their given times, as (homes covered, their events
        oldest first), one home at a time, so that the first homes' events need not wait for
        the last home's pull (ids may repeat)."""
        remaining = dict(since_by_home)
        if not self.account_wide:
            try:
                for home_id, since in since_by_home.items():
                    yield [home_id], pull_home_events(self._client, home_id, since)
                    del remaining[home_id]
                return
            except MinutApiError as error:
                if isinstance(error, MinutAuthError) or error.status not in HOME_PULL_REFUSED:
                    raise
                log.warning(
                    "Minut refused a home's event history (%s): pulling missed events from the "
                    "account-wide GET /events from now on",
                    error,
                )
                self.account_wide = True
        if remaining:
            yield list(remaining), pull_account_events(self._client, remaining)


def pull_account_events(client: MinutClient, since_by_home: Mapping[str, datetime]) -> list[Event]:
    """The homes' events from `GET /events`, oldest first, each after its home's time.

    That endpoint's paging is unknown: a `paging` object is followed by `offset`; without one,
    ask for the oldest first from the earliest time and, while pages come back full, again from
    the newest time seen (repeats are filtered by id later).
    """
    start = min(since_by_home.values())
    events: list[Event] = []
    offset = 0
    for _ in range(MAX_PAGES):
        query: dict[str, object] = {"start_at": format_time(start), "limit": PAGE_SIZE}
        answer: Any = client.request(
            "GET",
            "/events",
            params={**query, "order": "asc", "offset": offset},
            priority=Priority.EVENTS,
        )
        items = answer.get("events") if isinstance(answer, dict) else None
        if not isinstance(items, list):
            raise MinutApiError("GET /events: answer has no 'events' list")
        page = [
            event
            for item in items
            if isinstance(item, dict)
            and (event := _parsed(item, "the account's history")) is not None
        ]
        events += page
        total = paging_total(answer)
        if total is not None:
            offset += len(items)
            if not items or offset >= total:
                break
            continue
        newest = max((e.created_at for e in page if e.created_at is not None), default=None)
        if len(items) < PAGE_SIZE or newest is None or newest <= start:
            break
        start = newest
    return _oldest_first(event for event in events if _after_its_home_cursor(event, since_by_home))


def _after_its_home_cursor(event: Event, since_by_home: Mapping[str, datetime]) -> bool:
    since = since_by_home.get(event.home_id or "")
    if since is None:
        return False
    return event.created_at is None or event.created_at >= since


def pull_home_events(client: MinutClient, home_id: str, since: datetime) -> list[Event]:
    """Every event of the home since `since`, oldest first, in the webhook's shape."""
    items = client.get_list(
        f"/homes/{home_id}/events",
        "home_events",
        id_key="event_id",
        params={"start_at": format_time(since)},
        page_size=PAGE_SIZE,
        max_pages=MAX_PAGES,
        priority=Priority.EVENTS,
    )
    events = (_as_webhook_event(item, home_id) for item in items)
    return _oldest_first(event for event in events if event is not None)


def _oldest_first(events: Iterable[Event]) -> list[Event]:
    oldest = datetime.min.replace(tzinfo=UTC)
    return sorted(events, key=lambda event: event.created_at or oldest)


def _parsed(raw: dict[str, Any], history: str) -> Event | None:
    try:
        return parse_event(raw)
    except MinutDataError as error:
        log.warning("ignoring an event from %s: %s", history, error)
        return None


def _as_webhook_event(item: dict[str, Any], home_id: str) -> Event | None:
    home_type = item.get("event_type")
    raw = {
        key: value
        for key, value in item.items()
        if key not in ("event_id", "event_type", "event_time")
    }
    raw |= {
        "id": item.get("event_id"),
        "type": WEBHOOK_NAME_OF_HOME_EVENT.get(home_type, home_type)
        if isinstance(home_type, str)
        else home_type,
        "created_at": item.get("event_time"),
        "home_id": item.get("home_id") or home_id,
    }
    return _parsed(raw, f"home {home_id}'s history")
