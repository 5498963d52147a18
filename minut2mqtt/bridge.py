"""The bridge: current state of every Point and home; turns polls and events into MQTT messages.

It decides what changed and hands messages to a Publisher. It does no I/O of its own, so the
daemon can call it from the poll thread, the webhook worker and the MQTT thread (one lock).
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable, Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

from .entities import BATTERY_LOW_PERCENT, DEVICE_STATES, HOME_EVENT_TYPES, HOME_STATES, BinarySpec
from .minut.models import Device, Event, Home, Reading
from .mqtt.discovery import DiscoveryContext, bridge_configs, device_configs, home_configs
from .mqtt.outbox import REMEMBERED_EVENT_IDS
from .mqtt.payloads import OFFLINE, ONLINE, device_document, event_document, home_document
from .mqtt.publisher import Publisher
from .mqtt.topics import Topics
from .state import DeviceState, HomeState

log = logging.getLogger(__name__)

STALENESS_CHECK_SECONDS = 30.0
ABANDONED_READING_AGE = timedelta(days=30)
"""A reading this old (a sensor dropped from the API years ago) gets no Home Assistant entity."""


class Bridge:
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
        self._lock = threading.RLock()
        self.devices: dict[str, DeviceState] = {}
        self.homes: dict[str, HomeState] = {}
        self._next_staleness_check = 0.0
        self._retained: dict[str, bytes] = {}
        """Last payload published on each retained topic we own: discovery, state, availability."""
        self._configs_on_broker: set[str] = set()
        """Discovery configs of this bridge that the broker holds, as seen on our subscription."""
        self._published_event_ids: OrderedDict[str, None] = OrderedDict()
        """Ids of the latest events published: a repeated delivery is not published twice."""
        self.events_forwarded = 0
        self._status: Mapping[str, Any] | None = None

    # -- inputs -------------------------------------------------------------------------------

    def apply_poll(self, devices: Iterable[Device], homes: Iterable[Home]) -> None:
        """Take a full picture of the account: update, add, and remove what left it."""
        with self._lock:
            homes_now = {home.home_id: home for home in homes}
            devices_now = {device.device_id: device for device in devices}
            for home_id in self.homes.keys() - homes_now.keys():
                self._remove_home(home_id)
            for device_id in self.devices.keys() - devices_now.keys():
                self._remove_device(device_id)
            for home in homes_now.values():
                state = self.homes.setdefault(home.home_id, HomeState(home))
                state.home = home
            for device in devices_now.values():
                self._update_device(device)
            self._publish_everything(force=False)

    def apply_event(self, event: Event) -> None:
        """Publish one Minut event on its event topics and flip the binary states it drives."""
        with self._lock:
            if event.id in self._published_event_ids:
                log.debug("event %s (%s) was already published: skipped", event.id, event.type)
                return
            document = json.dumps(
                event_document(event), default=str, ensure_ascii=False, allow_nan=False
            )
            self._remember(event.id)
            self.events_forwarded += 1
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
                for state in self._devices_of_home(event.home_id):
                    self._apply_device_event(state, event.type)
            if event.home_id in self.homes:
                home_state = self.homes[event.home_id]
                for spec in HOME_STATES:
                    _switch(home_state.states, spec, event.type)
            self._publish_states()

    def tick(self) -> None:
        """Let time pass: momentary states fall back to off, readings turn stale."""
        with self._lock:
            now = self._monotonic()
            changed = False
            for state in self.devices.values():
                for key, until in list(state.momentary_until.items()):
                    if now >= until:
                        del state.momentary_until[key]
                        state.states[key] = False
                        changed = True
            if changed or now >= self._next_staleness_check:
                self._next_staleness_check = now + STALENESS_CHECK_SECONDS
                self._publish_states()

    def set_status(self, status: Mapping[str, Any]) -> None:
        """The bridge's own status document (Minut connection, counters), retained."""
        with self._lock:
            self._status = status
            self._retain(self.topics.bridge_state, status, force=False)

    def republish(self) -> None:
        """Send every discovery config, availability and state again (broker or HA restarted).

        The bridge's own `online` too: a stray `offline` (another client using our client id
        and its will) would otherwise leave every entity unavailable until a restart.
        """
        with self._lock:
            self._publisher.publish(self.topics.bridge_availability, ONLINE, retain=True)
            self._publish_everything(force=True)

    def note_discovery_config(self, topic: str, payload: bytes) -> None:
        """Remember which retained discovery configs on the broker are this bridge's."""
        with self._lock:
            if not payload:
                self._configs_on_broker.discard(topic)
            elif self._is_ours(payload):
                self._configs_on_broker.add(topic)

    def sweep_orphans(self) -> int:
        """Delete our configs the broker still holds for entities that no longer exist."""
        with self._lock:
            orphans = self._configs_on_broker - self._retained.keys()
            for topic in sorted(orphans):
                log.info("removing orphaned discovery config %s", topic)
                self._clear(topic)
            self._configs_on_broker -= orphans
            return len(orphans)

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

    # -- per-device bookkeeping ---------------------------------------------------------------

    def _update_device(self, device: Device) -> None:
        state = self.devices.get(device.device_id)
        if state is None:
            state = self.devices[device.device_id] = DeviceState(device)
        state.device = device
        state.readings.update(_readings_of(device))
        ongoing = device.ongoing_events
        for spec in DEVICE_STATES:
            if spec.key == "connectivity":
                state.states[spec.key] = not device.offline
            elif spec.momentary:
                state.states[spec.key] = bool(spec.on_events & ongoing) or (
                    spec.key in state.momentary_until
                )
            elif spec.corrected_by_poll:
                state.states[spec.key] = bool(spec.on_events & ongoing)
        if device.battery_percent is not None and device.battery_percent <= BATTERY_LOW_PERCENT:
            state.states["battery_low"] = True

    def _apply_device_event(self, state: DeviceState, event_type: str) -> None:
        for spec in DEVICE_STATES:
            if _switch(state.states, spec, event_type) and spec.momentary:
                state.momentary_until[spec.key] = self._monotonic() + self._momentary_seconds

    def _subject_of(self, event: Event) -> str:
        if event.device_id in self.devices:
            return self.devices[event.device_id].device.name
        if event.home_id in self.homes:
            return self.homes[event.home_id].home.name
        return event.device_id or event.home_id or "?"

    def _entity_readings(self, state: DeviceState) -> list[str]:
        """The readings that deserve an entity: all but those abandoned long ago."""
        oldest = self._now() - ABANDONED_READING_AGE
        return [
            key
            for key, reading in state.readings.items()
            if (reading.time or state.device.last_heard_from_at or oldest) > oldest
        ]

    def _devices_of_home(self, home_id: str) -> list[DeviceState]:
        return [state for state in self.devices.values() if state.device.home_id == home_id]

    def _remove_device(self, device_id: str) -> None:
        state = self.devices.pop(device_id)
        log.info(
            "Point %s (%s) left the account: removing its entities", state.device.name, device_id
        )
        for topic in device_configs(self._discovery, state.device, self._entity_readings(state)):
            self._clear(topic)
        self._clear(self.topics.device_state(device_id))
        self._clear(self.topics.device_availability(device_id))

    def _remove_home(self, home_id: str) -> None:
        state = self.homes.pop(home_id)
        log.info("home %s (%s) left the account: removing its entities", state.home.name, home_id)
        for topic in home_configs(self._discovery, state.home):
            self._clear(topic)
        self._clear(self.topics.home_state(home_id))

    # -- output -------------------------------------------------------------------------------

    def _publish_everything(self, *, force: bool) -> None:
        for topic, config in bridge_configs(self._discovery).items():
            self._retain(topic, config, force=force)
        if self._status is not None:
            self._retain(self.topics.bridge_state, self._status, force=force)
        for home_state in self.homes.values():
            for topic, config in home_configs(self._discovery, home_state.home).items():
                self._retain(topic, config, force=force)
        for state in self.devices.values():
            device = state.device
            configs = device_configs(self._discovery, device, self._entity_readings(state))
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
        for state in self.devices.values():
            document = device_document(state, now, self._stale_after)
            if self._retain(
                self.topics.device_state(state.device.device_id), document, force=force
            ):
                self._note("state", state.device.name)
        for home_state in self.homes.values():
            if self._retain(
                self.topics.home_state(home_state.home.home_id),
                home_document(home_state),
                force=force,
            ):
                self._note("home state", home_state.home.name)

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

    # -- queries ------------------------------------------------------------------------------

    def remember_published(self, event_ids: Iterable[str]) -> None:
        """Ids a previous run published (oldest first): never published again."""
        with self._lock:
            for event_id in event_ids:
                self._remember(event_id)

    def _remember(self, event_id: str) -> None:
        self._published_event_ids[event_id] = None
        if len(self._published_event_ids) > REMEMBERED_EVENT_IDS:
            self._published_event_ids.popitem(last=False)

    def has_published(self, event_id: str) -> bool:
        with self._lock:
            return event_id in self._published_event_ids


def _switch(states: dict[str, bool], spec: BinarySpec, event_type: str) -> bool:
    """Apply one event to one binary state; True when the event switched it on."""
    if event_type in spec.on_events:
        states[spec.key] = True
        return True
    if event_type in spec.off_events:
        states[spec.key] = False
    return False


def _readings_of(device: Device) -> dict[str, Reading]:
    readings = dict(device.readings)
    battery_time = device.last_heard_from_at
    if device.battery_percent is not None:
        readings["battery"] = Reading(device.battery_percent, battery_time)
    if device.battery_voltage is not None:
        readings["battery_voltage"] = Reading(device.battery_voltage, battery_time)
    return readings
