"""Where a Minut event is published, and the memory that keeps it from being published twice."""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Iterable

from ..minut.models import Event
from .entities import HOME_EVENT_TYPES
from .publishing import REMEMBERED_EVENT_IDS
from .topics import Topics


def event_topics(topics: Topics, event: Event) -> list[str]:
    """Its Point's event topic, and its home's for a home event or one the table also gives
    the home (an alarm heard concerns the whole home)."""
    chosen = []
    if event.device_id is not None:
        chosen.append(topics.device_event(event.device_id))
    if event.home_id is not None and (event.device_id is None or event.type in HOME_EVENT_TYPES):
        chosen.append(topics.home_event(event.home_id))
    return chosen


class PublishedEvents:
    """Ids of the latest events published, oldest forgotten first."""

    def __init__(self, limit: int = REMEMBERED_EVENT_IDS) -> None:
        self._ids: OrderedDict[str, None] = OrderedDict()
        self._limit = limit

    def __contains__(self, event_id: str) -> bool:
        return event_id in self._ids

    def add(self, event_ids: Iterable[str]) -> None:
        for event_id in event_ids:
            self._ids[event_id] = None
        while len(self._ids) > self._limit:
            self._ids.popitem(last=False)
