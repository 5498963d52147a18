"""The mirror of the Minut account: what the bridge believes about every Point and home.

It turns polls, events and the passing of time into the MQTT messages that keep subscribers
current, decides what changed, and hands messages to a Publisher. It does no I/O and takes no
lock: one thread owns it (the daemon's writer, `runtime/writer.py`).
"""

from __future__ import annotations

import json
import logging
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable, Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

from ..minut.models import Device, Event, Home
from .discovery import DiscoveryContext, bridge_configs, device_configs, home_configs
from .documents import OFFLINE, ONLINE, device_document, event_document, home_document
from .entities import (
    DEVICE_STATES,
    HOME_EVENT_TYPES,
    HOME_STATES,
    STATUS_VALUES,
    BinarySpec,
    readings_of,
)
from .publishing import REMEMBERED_EVENT_IDS, Publisher
from .topics import Topics
from .tracked import TrackedDevice, TrackedHome

log = logging.getLogger(__name__)

STALENESS_CHECK_SECONDS = 30.0
ABANDONED_READING_AGE = timedelta(days=30)
"""A reading this old (a sensor dropped from the API years ago) gets no Home Assistant entity."""


class Mirror:
    def __init__(
        self,
        publisher: Publisher,
        topics: Topics,
        *,
        stale_after: float = 7200.0,
        momentary_seconds: float = 30.0,
        wall_clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        monotonic: Callable[[], float] = time.monotonic,
        on_change: Callable[[str, str], None] | None = None,
    ):
        self._publisher = publisher
        self.topics = topics
        self._discovery = DiscoveryContext(topics, momentary_seconds)
        self._stale_after = stale_after
        self._momentary_seconds = momentary_seconds
        self._now = wall_clock
        self._monotonic = monotonic
        self._on_change = on_change
        self.devices: dict[str, TrackedDevice] = {}
        self.homes: dict[str, TrackedHome] = {}
        self._next_staleness_check = 0.0
        self._retained: dict[str, bytes] = {}
        """Last payload published on each retained topic we own: discovery, state, availability."""
        self._configs_on_broker: set[str] = set()
        """Discovery configs of this bridge that the broker holds, as seen on our subscription."""
        self._published_event_ids: OrderedDict[str, None] = OrderedDict()
        """Ids of the latest events published: a repeated delivery is not published twice."""
        self._status: Mapping[str, Any] | None = None

    # -- inputs -------------------------------------------------------------------------------

    def apply_poll(self, devices: Iterable[Device], homes: Iterable[Home]) -> None:
        """Take a full picture of the account: update, add, and remove what left it."""
        homes_now = {home.home_id: home for home in homes}
        devices_now = {device.device_id: device for device in devices}
        for home_id in self.homes.keys() - homes_now.keys():
            self._remove_home(home_id)
        for device_id in self.devices.keys() - devices_now.keys():
            self._remove_device(device_id)
        for home in homes_now.values():
            tracked = self.homes.setdefault(home.home_id, TrackedHome(home))
            tracked.home = home
        for device in devices_now.values():
            self._update_device(device)
        self._publish_everything(force=False)

    def apply_event(self, event: Event) -> bool:
        """Publish one Minut event on its event topics and flip the binary states it drives.

        False when the event was published before (a repeated delivery): nothing is done.
        """
        if event.id in self._published_event_ids:
            log.debug("event %s (%s) was already published: skipped", event.id, event.type)
            return False
        document = json.dumps(
            event_document(event), default=str, ensure_ascii=False, allow_nan=False
        )
        self._remember(event.id)
        device_known = event.device_id is not None and event.device_id in self.devices
        event_topics = []
        if event.device_id is not None:
            event_topics.append(self.topics.device_event(event.device_id))
        if event.home_id is not None and (
            event.device_id is None or event.type in HOME_EVENT_TYPES
        ):
            event_topics.append(self.topics.home_event(event.home_id))
        for index, topic in enumerate(event_topics):
            # The id is remembered with the last message: a crash before it repeats the
            # event rather than losing part of it.
            last = index == len(event_topics) - 1
            self._publisher.publish(
                topic, document, retain=False, event_id=event.id if last else None
            )
        self._note(f"event {event.type}", self._subject_of(event))
        if device_known and event.device_id is not None:
            self._apply_device_event(self.devices[event.device_id], event.type)
        if event.device_id is None and event.home_id is not None:
            for tracked in self._devices_of_home(event.home_id):
                self._apply_device_event(tracked, event.type)
        if event.home_id in self.homes:
            home = self.homes[event.home_id]
            for spec in HOME_STATES:
                _switch(home.flags, spec, event.type)
        self._publish_states()
        return True

    def tick(self) -> None:
        """Let time pass: momentary states fall back to off, readings turn stale."""
        now = self._monotonic()
        changed = False
        for tracked in self.devices.values():
            for key, until in list(tracked.momentary_until.items()):
                if now >= until:
                    del tracked.momentary_until[key]
                    tracked.flags[key] = False
                    changed = True
        if changed or now >= self._next_staleness_check:
            self._next_staleness_check = now + STALENESS_CHECK_SECONDS
            self._publish_states()

    def set_status(self, status: Mapping[str, Any]) -> None:
        """The bridge's own status document (Minut connection, counters), retained."""
        self._status = status
        self._retain_status(force=False)

    def republish(self) -> None:
        """Send every discovery config, availability and state again (broker or HA restarted).

        The bridge's own `online` too: a stray `offline` (another client using our client id
        and its will) would otherwise leave every entity unavailable until a restart.
        """
        self._publisher.publish(self.topics.bridge_availability, ONLINE, retain=True)
        self._publish_everything(force=True)

    def note_discovery_config(self, topic: str, payload: bytes) -> None:
        """Remember which retained discovery configs on the broker are this bridge's."""
        if not payload:
            self._configs_on_broker.discard(topic)
        elif self._is_ours(payload):
            self._configs_on_broker.add(topic)

    def sweep_orphans(self) -> int:
        """Delete our configs the broker still holds for entities that no longer exist."""
        orphans = self._configs_on_broker - self._retained.keys()
        for topic in sorted(orphans):
            log.info("removing orphaned discovery config %s", topic)
            self._clear(topic)
        self._configs_on_broker -= orphans
        return len(orphans)

    def remember_published(self, event_ids: Iterable[str]) -> None:
        """Ids a previous run published (oldest first): never published again."""
        for event_id in event_ids:
            self._remember(event_id)

    def has_published(self, event_id: str) -> bool:
        return event_id in self._published_event_ids

    def _is_ours(self, payload: bytes) -> bool:
        marker = self.topics.bridge_availability.encode()
        if marker not in payload:  # cheap test first: HA brokers carry many foreign configs
            return False
        try:
            config = json.loads(payload)
            availability = config.get("availability") or []
            return any(
                entry.get("topic") == self.topics.bridge_availability
                for entry in availability
                if isinstance(entry, dict)
            )
        except (ValueError, AttributeError):
            return False

    def _remember(self, event_id: str) -> None:
        self._published_event_ids[event_id] = None
        if len(self._published_event_ids) > REMEMBERED_EVENT_IDS:
            self._published_event_ids.popitem(last=False)

    # -- per-device bookkeeping ---------------------------------------------------------------

    def _update_device(self, device: Device) -> None:
        tracked = self.devices.get(device.device_id)
        if tracked is None:
            tracked = self.devices[device.device_id] = TrackedDevice(device)
        tracked.device = device
        tracked.readings.update(readings_of(device))
        for spec in DEVICE_STATES:
            if spec.poll is not None:
                tracked.flags[spec.key] = spec.poll.value(spec, device) or (
                    spec.key in tracked.momentary_until
                )

    def _apply_device_event(self, tracked: TrackedDevice, event_type: str) -> None:
        for spec in DEVICE_STATES:
            if _switch(tracked.flags, spec, event_type) and spec.momentary:
                tracked.momentary_until[spec.key] = self._monotonic() + self._momentary_seconds

    def _subject_of(self, event: Event) -> str:
        if event.device_id in self.devices:
            return self.devices[event.device_id].device.name
        if event.home_id in self.homes:
            return self.homes[event.home_id].home.name
        return event.device_id or event.home_id or "?"

    def _entity_readings(self, tracked: TrackedDevice) -> list[str]:
        """The readings that deserve an entity: all but those abandoned long ago."""
        oldest = self._now() - ABANDONED_READING_AGE
        return [
            key
            for key, reading in tracked.readings.items()
            if (reading.time or tracked.device.last_heard_from_at or oldest) > oldest
        ]

    def _devices_of_home(self, home_id: str) -> list[TrackedDevice]:
        return [tracked for tracked in self.devices.values() if tracked.device.home_id == home_id]

    def _remove_device(self, device_id: str) -> None:
        tracked = self.devices.pop(device_id)
        log.info(
            "Point %s (%s) left the account: removing its entities", tracked.device.name, device_id
        )
        for topic in device_configs(
            self._discovery, tracked.device, self._entity_readings(tracked)
        ):
            self._clear(topic)
        self._clear(self.topics.device_state(device_id))
        self._clear(self.topics.device_availability(device_id))

    def _remove_home(self, home_id: str) -> None:
        tracked = self.homes.pop(home_id)
        log.info("home %s (%s) left the account: removing its entities", tracked.home.name, home_id)
        for topic in home_configs(self._discovery, tracked.home):
            self._clear(topic)
        self._clear(self.topics.home_state(home_id))

    # -- output -------------------------------------------------------------------------------

    def _publish_everything(self, *, force: bool) -> None:
        for topic, config in bridge_configs(self._discovery).items():
            self._retain(topic, config, force=force)
        self._retain_status(force=force)
        for home in self.homes.values():
            for topic, config in home_configs(self._discovery, home.home).items():
                self._retain(topic, config, force=force)
        for tracked in self.devices.values():
            device = tracked.device
            configs = device_configs(self._discovery, device, self._entity_readings(tracked))
            for topic, config in configs.items():
                self._retain(topic, config, force=force)
            self._retain(
                self.topics.device_availability(device.device_id),
                OFFLINE if device.offline else ONLINE,
                force=force,
            )
        self._publish_states(force=force)

    def _publish_states(self, *, force: bool = False) -> None:
        now = self._now()
        for tracked in self.devices.values():
            document = device_document(tracked, now, self._stale_after)
            if self._retain(
                self.topics.device_state(tracked.device.device_id), document, force=force
            ):
                self._note("state", tracked.device.name)
        for home in self.homes.values():
            if self._retain(
                self.topics.home_state(home.home.home_id), home_document(home), force=force
            ):
                self._note("home state", home.home.name)

    def _retain_status(self, *, force: bool) -> None:
        status = self._status
        if status is None:
            return
        self._retain(self.topics.bridge_status, status, force=force)
        for value in STATUS_VALUES:
            if value.own_topic and status.get(value.key) is not None:
                self._retain(
                    self.topics.bridge_value(value.key), str(status[value.key]), force=force
                )

    def _retain(self, topic: str, payload: Mapping[str, Any] | str, *, force: bool) -> bool:
        data = (
            payload if isinstance(payload, str) else json.dumps(payload, ensure_ascii=False)
        ).encode()
        if not force and self._retained.get(topic) == data:
            return False
        self._retained[topic] = data
        self._publisher.publish(topic, data, retain=True)
        return True

    def _clear(self, topic: str) -> None:
        self._retained.pop(topic, None)
        self._publisher.publish(topic, b"", retain=True)

    def _note(self, what: str, subject: str) -> None:
        if self._on_change is not None:
            self._on_change(what, subject)


def _switch(flags: dict[str, bool], spec: BinarySpec, event_type: str) -> bool:
    """Apply one event to one binary state; True when the event switched it on."""
    if event_type in spec.on_events:
        flags[spec.key] = True
        return True
    if event_type in spec.off_events:
        flags[spec.key] = False
    return False
