"""Fakes for unit tests of the core and the loops: a publisher that keeps what it would have
published, and a clock the test moves."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from minut2mqtt.core.publishing import Lane, lane_of

NOW = datetime(2026, 11, 22, 10, 0, tzinfo=UTC)


class Clock:
    """Wall-clock and monotonic time that only move when the test says so."""

    def __init__(self, wall: datetime = NOW) -> None:
        self.wall = wall
        self.mono = 1000.0

    def advance(self, seconds: float) -> None:
        self.wall += timedelta(seconds=seconds)
        self.mono += seconds

    def now(self) -> datetime:
        return self.wall

    def monotonic(self) -> float:
        return self.mono


@dataclass
class PublishedMessage:
    topic: str
    payload: bytes
    retain: bool
    lane: Lane


@dataclass
class MemoryPublisher:
    messages: list[PublishedMessage] = field(default_factory=list)
    retained: dict[str, bytes] = field(default_factory=dict)
    event_ids: list[str] = field(default_factory=list)

    def publish(
        self,
        topic: str,
        payload: str | bytes,
        *,
        retain: bool,
        event_id: str | None = None,
        lane: Lane | None = None,
    ) -> None:
        data = payload.encode() if isinstance(payload, str) else payload
        self.messages.append(PublishedMessage(topic, data, retain, lane_of(retain, lane)))
        if event_id is not None and event_id not in self.event_ids:
            self.event_ids.append(event_id)
        if retain:
            if data:
                self.retained[topic] = data
            else:
                self.retained.pop(topic, None)

    @contextlib.contextmanager
    def batch(self) -> Iterator[None]:
        yield

    def on_topic(self, topic: str) -> list[PublishedMessage]:
        return [message for message in self.messages if message.topic == topic]

    def clear(self) -> None:
        self.messages.clear()
