"""Events missed while the bridge was away, pulled from a home's event history."""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from typing import Any

from .client import MinutClient
from .models import Event, MinutDataError, format_time, parse_event

log = logging.getLogger(__name__)

PAGE_SIZE = 100
MAX_PAGES = 20
"""A bound on one pull (2,000 events): a home cannot eat the whole request budget."""

WEBHOOK_NAME_OF_HOME_EVENT = {
    "noise_detected": "disturbance_first_notice",
    "noise_quieted": "disturbance_ended",
}
"""Home events have names of their own for noise; the bridge publishes the webhook names."""


def pull_home_events(client: MinutClient, home_id: str, since: datetime) -> list[Event]:
    """Every event of the home since `since`, oldest first, in the webhook's shape."""
    events: list[Event | None] = []
    offset = 0
    for _ in range(MAX_PAGES):
        answer: Any = client.request(
            "GET",
            f"/homes/{home_id}/events",
            params={"start_at": format_time(since), "limit": PAGE_SIZE, "offset": offset},
        )
        items = answer.get("home_events") if isinstance(answer, dict) else None
        if not isinstance(items, list) or not items:
            break
        events.extend(_as_webhook_event(item, home_id) for item in items if isinstance(item, dict))
        offset += len(items)
        paging = answer.get("paging")
        total = paging.get("total_count") if isinstance(paging, dict) else None
        if not isinstance(total, int) or offset >= total:
            break
    parsed = [event for event in events if event is not None]
    oldest = datetime.min.replace(tzinfo=UTC)
    return sorted(parsed, key=lambda event: event.created_at or oldest)


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
    try:
        return parse_event(raw)
    except MinutDataError as error:
        log.warning("ignoring an event of home %s from its history: %s", home_id, error)
        return None
