"""The retained topics this bridge owns, and a fingerprint of what each last carried.

A fingerprint (16 bytes) instead of the payload itself: 40,000 discovery configs of 2,000 Points
would otherwise keep 40 MB in memory only to tell that nothing changed.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from typing import Any

from .publishing import Lane, Publisher

Payload = Mapping[str, Any] | str | bytes


def encoded(payload: Payload) -> bytes:
    if isinstance(payload, bytes):
        return payload
    text = payload if isinstance(payload, str) else json.dumps(payload, ensure_ascii=False)
    return text.encode()


def fingerprint(data: bytes) -> bytes:
    return hashlib.blake2b(data, digest_size=16).digest()


class RetainedTopics:
    def __init__(self, publisher: Publisher) -> None:
        self._publisher = publisher
        self._published: dict[str, bytes] = {}
        """Topic → fingerprint of the payload last published there."""

    def __contains__(self, topic: str) -> bool:
        return topic in self._published

    def topics(self) -> set[str]:
        return set(self._published)

    def fingerprint_of(self, topic: str) -> bytes | None:
        """The fingerprint of what was last published on `topic` (None: nothing, or cleared)."""
        return self._published.get(topic)

    def retain(
        self,
        topic: str,
        payload: Payload,
        *,
        lane: Lane = Lane.STATES,
        force: bool = False,
        held: Mapping[str, bytes] | None = None,
    ) -> bool:
        """Publish `payload` retained unless the topic carries it already: as far as we
        published it, or, given `held` (fingerprints of what the broker holds), as far as the
        broker says. True if published."""
        data = encoded(payload)
        printed = fingerprint(data)
        already = (held if held is not None else self._published).get(topic)
        self._published[topic] = printed
        if not force and already == printed:
            return False
        self._publisher.publish(topic, data, retain=True, lane=lane)
        return True

    def clear(self, topic: str, lane: Lane = Lane.STATES) -> None:
        """An empty retained message: the topic's value (or Home Assistant's entity) is gone."""
        self._published.pop(topic, None)
        self._publisher.publish(topic, b"", retain=True, lane=lane)
