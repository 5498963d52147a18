"""Where messages leave the core: the Publisher interface (the MQTT edge implements it)."""

from __future__ import annotations

from typing import Protocol

QOS = 1
"""Retained documents (discovery, states, availability): a repeat is harmless."""
EVENT_QOS = 2
"""Events: a repeat would run an automation twice, and a broker restart can repeat QoS 1."""
REMEMBERED_EVENT_IDS = 10_000
"""Ids of the latest events published that are remembered (by the mirror, and by a publisher
that keeps them on disk): a redelivery of one of them is not published again."""


class Publisher(Protocol):
    def publish(
        self, topic: str, payload: str | bytes, *, retain: bool, event_id: str | None = None
    ) -> None:
        """Queue one message (retained at QOS, others at EVENT_QOS); never blocks on the network.

        `event_id`: the Minut event the message carries, remembered with it, so that no restart
        publishes that event again.
        """
