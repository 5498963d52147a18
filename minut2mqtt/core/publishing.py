"""Where messages leave the core: the Publisher interface (the MQTT edge implements it)."""

from __future__ import annotations

from contextlib import AbstractContextManager
from enum import IntEnum
from typing import Protocol

QOS = 1
"""Retained documents (discovery, states, availability): a repeat is harmless."""
EVENT_QOS = 2
"""Events: a repeat would run an automation twice, and a broker restart can repeat QoS 1."""
REMEMBERED_EVENT_IDS = 10_000
"""Ids of the latest events published that are remembered (by the mirror, and by a publisher
that keeps them on disk): a redelivery of one of them is not published again."""


BULK_HELD_AT_MOST = 0.02
"""Seconds bulk work (a long job's step in the writer, a bulk lane's batch in the sender) waits
for events on their way to the broker: a burst built and sent flat out slows every thread an
event crosses (bench/scale.py, 2,000 Points: p50 22 ms instead of 4), but a stream of events
must not stop it."""


class Lane(IntEnum):
    """What goes out first: an event never waits behind a burst of states or configs."""

    EVENTS = 0
    STATES = 1
    """Retained documents: states, availability, the bridge's status."""
    CONFIGS = 2
    """Home Assistant discovery configs."""


class Publisher(Protocol):
    def publish(
        self,
        topic: str,
        payload: str | bytes,
        *,
        retain: bool,
        event_id: str | None = None,
        lane: Lane | None = None,
    ) -> None:
        """Queue one message (retained at QOS, others at EVENT_QOS); never blocks on the network.

        `event_id`: the Minut event the message carries, remembered with it, so that no restart
        publishes that event again. `lane`: EVENTS for what is not retained, else STATES, unless
        given.
        """

    def batch(self) -> AbstractContextManager[None]:
        """Messages published inside are kept together at its end (cheaper than one by one);
        keep a batch to a few Points' messages."""
        ...


def lane_of(retain: bool, lane: Lane | None) -> Lane:
    if lane is not None:
        return lane
    return Lane.STATES if retain else Lane.EVENTS
