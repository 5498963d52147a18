"""The bridge's own status document, retained on its topic, and the values that also have a
topic of their own (see `entities.StatusValue.own_topic`)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from .entities import STATUS_VALUES
from .retained import RetainedTopics
from .topics import Topics


class RetainedStatus:
    def __init__(self, retained: RetainedTopics, topics: Topics) -> None:
        self._retained = retained
        self._topics = topics
        self._status: Mapping[str, Any] | None = None

    def set(self, status: Mapping[str, Any]) -> None:
        self._status = status
        self.retain(force=False)

    def retain(self, *, force: bool) -> None:
        """Publish what changed (`force`: all of it again); nothing before the first status."""
        status = self._status
        if status is None:
            return
        self._retained.retain(self._topics.bridge_status, status, force=force)
        for value in STATUS_VALUES:
            if value.own_topic and status.get(value.key) is not None:
                topic = self._topics.bridge_value(value.key)
                self._retained.retain(topic, str(status[value.key]), force=force)
