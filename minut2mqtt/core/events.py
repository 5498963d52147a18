"""Where a Minut event is published, and the memory that keeps it from being published twice."""

from __future__ import annotations

import json
from collections import OrderedDict
from collections.abc import Iterable

from ..minut.models import Event
from .documents import event_document
from .entities import HOME_EVENT_TYPES
from .publishing import REMEMBERED_EVENT_IDS, Publisher
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


def publish_event(
    publisher: Publisher, topics: Topics, published: PublishedEvents, event: Event
) -> bool:
    """Publish the whole event on its topics at QoS 2; False if it was published before."""
    if event.id in published:
        return False
    document = json.dumps(event_document(event), default=str, ensure_ascii=False, allow_nan=False)
    published.add([event.id])
    chosen = event_topics(topics, event)
    for index, topic in enumerate(chosen):
        # the id goes with the last message: a crash before it repeats the whole event
        last = index == len(chosen) - 1
        publisher.publish(topic, document, retain=False, event_id=event.id if last else None)
    return True
