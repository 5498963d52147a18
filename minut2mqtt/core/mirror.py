"""The mirror of the Minut account: what the bridge believes about every Point and home.

It turns polls, events and time into the MQTT messages that keep subscribers current, in
proportion to what changed (an event touches its Point and home, a poll the Points that changed,
a tick what turns stale or whose stay begins or ends). It does no I/O and takes no lock: one
thread owns it (runtime/writer.py); long work comes as steps, events go between them.
"""

from __future__ import annotations

import heapq
import logging
import time
from collections import defaultdict
from collections.abc import Callable, Iterable, Iterator, Mapping
from datetime import UTC, datetime
from typing import Any, TypeVar

from ..minut.guests import Stay, next_change
from ..minut.models import Device, Event, Home
from .bridge_status import RetainedStatus
from .configs import DiscoveryConfigs
from .control_configs import Controls
from .controls import controls_of_device
from .discovery import DiscoveryContext, bridge_configs, device_configs, home_configs
from .documents import (
    OFFLINE,
    ONLINE,
    device_document,
    home_document,
    next_stale_at,
)
from .entities import DEVICE_STATES, GUEST_VALUES, HOME_STATES, readings_of
from .events import PublishedEvents, publish_event
from .publishing import Publisher
from .retained import RetainedTopics
from .topics import Topics
from .tracked import TrackedDevice, TrackedHome

log = logging.getLogger(__name__)

DEVICES_PER_STEP = 2  # devices published between two chances for the writer to take an event
UPDATES_PER_STEP = 50  # polled objects compared with ours in one step (2,000 Points: 27 ms)

Steps = Iterator[None]
T = TypeVar("T")


class Mirror:
    def __init__(
        self,
        publisher: Publisher,
        topics: Topics,
        *,
        stale_after: float = 7200.0,
        momentary_seconds: float = 30.0,
        device_discovery: bool = False,
        controls: Controls | None = None,
        guests: bool = False,
        events_published_elsewhere: bool = False,
        wall_clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        monotonic: Callable[[], float] = time.monotonic,
        on_change: Callable[[str, str], None] | None = None,
    ):
        self._publisher = publisher
        self.topics = topics
        self._discovery = DiscoveryContext(
            topics, momentary_seconds, device_discovery, controls, guests
        )
        self._stale_after = stale_after
        self._momentary_seconds = momentary_seconds
        self._now = wall_clock
        self._monotonic = monotonic
        self._on_change = on_change
        self.devices: dict[str, TrackedDevice] = {}
        self.homes: dict[str, TrackedHome] = {}
        self._devices_of_home: defaultdict[str, set[str]] = defaultdict(set)
        self._retained = RetainedTopics(publisher)
        self.configs = DiscoveryConfigs(self._retained, topics, device_based=device_discovery)
        self._pictures: dict[str, tuple[frozenset[str], frozenset[str]]] = {}  # ids by account
        self._polled = False  # a poll has told which devices and homes exist
        self._configs_synced = False  # since the last connect, configs compared with the broker
        self._staleness: list[tuple[datetime, str]] = []  # (stale at, device id), soonest first
        self._momentary: set[str] = set()  # devices with a momentary state on
        self._stays_change: dict[str, datetime] = {}  # home id → its next check-in or -out
        self._published_event_ids = PublishedEvents()
        self._events_published_elsewhere = events_published_elsewhere
        self._bridge_status = RetainedStatus(self._retained, topics)

    # -- inputs -------------------------------------------------------------------------------

    def apply_poll(
        self, devices: Iterable[Device], homes: Iterable[Home], account: str = ""
    ) -> None:
        """Take a full picture of one account: update, add, and remove what left it."""
        _run(self.poll_steps(devices, homes, account))

    def poll_steps(
        self, devices: Iterable[Device], homes: Iterable[Home], account: str = ""
    ) -> Steps:
        """A home or Point leaves once no account's latest picture holds it (accounts share)."""
        homes_now = {home.home_id: home for home in homes}
        devices_now = {device.device_id: device for device in devices}
        self._pictures[account] = (frozenset(devices_now), frozenset(homes_now))
        self._remove_absent()
        yield from self._in_steps(homes_now.values(), UPDATES_PER_STEP, self._update_home)
        yield from self._in_steps(devices_now.values(), UPDATES_PER_STEP, self._update_device)
        self._polled = True
        yield
        yield from self._publish_changes()

    @property
    def polled(self) -> bool:  # a poll told which Points and homes exist: events find theirs
        return self._polled

    def apply_stays(self, home_id: str, stays: tuple[Stay, ...] | None) -> None:
        """A home's guests read again (None: Minut lists none for it)."""
        if (tracked := self.homes.get(home_id)) is not None and tracked.stays != stays:
            tracked.stays, tracked.state_changed = stays, True
            self._publish_home(tracked, syncing=False)

    def apply_update(self, devices: Iterable[Device] = (), homes: Iterable[Home] = ()) -> None:
        """Points and homes read again one by one (after a command): known ones are updated."""
        for home in homes:
            if home.home_id in self.homes:
                self._publish_home(self._update_home(home), syncing=False)
        for device in devices:
            if device.device_id in self.devices:
                self._publish_device(self._update_device(device), syncing=False)

    def apply_event(self, event: Event) -> bool:
        """Publish an event and flip the states it drives; False if it was published before.
        With `events_published_elsewhere`, the event process published it (once): only the flip."""
        if not self._events_published_elsewhere and not publish_event(
            self._publisher, self.topics, self._published_event_ids, event
        ):
            log.debug("event %s (%s) was already published: skipped", event.id, event.type)
            return False
        subject = self.devices.get(event.device_id or "") or self.homes.get(event.home_id or "")
        self._note(f"event {event.type}", subject.name if subject else event.subject_id)
        if event.device_id in self.devices:
            self._apply_device_event(self.devices[event.device_id], event.type)
        if event.device_id is None and event.home_id is not None:
            for device_id in self._devices_of_home.get(event.home_id, ()):
                self._apply_device_event(self.devices[device_id], event.type)
        if (home := self.homes.get(event.home_id or "")) is not None:
            for spec in HOME_STATES:
                home.state_changed |= spec.switch(home.flags, event.type) is not None
            self._publish_home_state(home)
        return True

    def tick(self) -> None:
        """Let time pass: momentary states fall back to off, readings turn stale."""
        now = self._monotonic()
        for device_id in list(self._momentary):
            tracked = self.devices.get(device_id)
            if tracked is None:
                self._momentary.discard(device_id)
                continue
            if not tracked.end_momentary(now):
                self._momentary.discard(device_id)
            self._publish_device_state(tracked)
        wall = self._now()
        for home_id in [h for h, due in self._stays_change.items() if due <= wall]:
            del self._stays_change[home_id]  # a stay began or ended: published, the next noted
            if (home := self.homes.get(home_id)) is not None:
                home.state_changed = True
                self._publish_home_state(home)
        while self._staleness and self._staleness[0][0] <= wall:
            due, device_id = heapq.heappop(self._staleness)
            tracked = self.devices.get(device_id)
            if tracked is not None and tracked.stale_at == due:
                tracked.state_changed = True
                self._publish_device_state(tracked)

    def set_status(self, status: Mapping[str, Any]) -> None:
        self._bridge_status.set(status)

    def republish(self) -> None:
        _run(self.republish_steps())

    def republish_steps(self) -> Steps:
        """Availability, states and the bridge's `online` again (a stray `offline` under our id
        would leave every entity unavailable), and the configs the broker lacks."""
        self._publisher.publish(self.topics.bridge_availability, ONLINE, retain=True)
        self._bridge_status.retain(force=True)
        self._configs_synced = False  # the broker's configs are compared with ours again

        def home_again(home: TrackedHome) -> None:
            self._publish_home_state(home, force=True)

        def device_again(tracked: TrackedDevice) -> None:
            self._publish_availability(tracked, force=True)
            self._publish_device_state(tracked, force=True)

        yield from self._in_steps(self.homes.values(), DEVICES_PER_STEP * 4, home_again)
        yield from self._in_steps(self.devices.values(), DEVICES_PER_STEP * 4, device_again)
        yield from self._publish_changes()

    def remember_configs(self, held: dict[str, bytes]) -> None:
        """The discovery configs earlier runs handed over (fingerprints by topic)."""
        self.configs.remember(held)

    def broker_forgot(self) -> None:
        """The broker kept no session for us: its retained configs are read again."""
        self.configs.forget()
        self._configs_synced = False

    def note_discovery_config(self, topic: str, payload: bytes) -> None:
        """A retained discovery config on the broker (ours or not)."""
        self.configs.note(topic, payload)

    def broker_configs_replayed(self) -> Steps:
        """The broker has replayed its retained configs: compare ours with them."""
        self.configs.replayed()
        yield from self._publish_changes()

    def remember_published(self, event_ids: Iterable[str]) -> None:
        """Ids a previous run published (oldest first): never published again."""
        self._published_event_ids.add(event_ids)

    def has_published(self, event_id: str) -> bool:
        return event_id in self._published_event_ids

    # -- per-device bookkeeping ---------------------------------------------------------------

    def _update_home(self, home: Home) -> TrackedHome:
        if (tracked := self.homes.setdefault(home.home_id, TrackedHome(home))).home != home:
            tracked.home, tracked.state_changed = home, True
        return tracked

    def _update_device(self, device: Device) -> TrackedDevice:
        tracked = self.devices.get(device.device_id)
        if tracked is None:
            tracked = self.devices[device.device_id] = TrackedDevice(device)
        elif tracked.device.home_id != device.home_id:
            self._devices_of_home[tracked.device.home_id or ""].discard(device.device_id)
        self._devices_of_home[device.home_id or ""].add(device.device_id)
        if tracked.device != device:
            tracked.state_changed = True
        tracked.device = device
        tracked.readings.update(readings_of(device))
        for spec in DEVICE_STATES:
            if spec.poll is not None:
                value = spec.poll.value(spec, device) or spec.key in tracked.momentary_until
                if tracked.flags[spec.key] != value:
                    tracked.flags[spec.key], tracked.state_changed = value, True
        return tracked

    def _apply_device_event(self, tracked: TrackedDevice, event_type: str) -> None:
        for spec in DEVICE_STATES:
            if (switched := spec.switch(tracked.flags, event_type)) is None:
                continue
            tracked.state_changed = True
            if switched and spec.momentary:
                tracked.momentary_until[spec.key] = self._monotonic() + self._momentary_seconds
                self._momentary.add(tracked.device.device_id)
        self._publish_device_state(tracked)

    def forget_account(self, account: str) -> None:
        """An account was disconnected: what only it showed leaves."""
        if self._pictures.pop(account, None) is not None:
            self._remove_absent()

    def _remove_absent(self) -> None:
        pictures = self._pictures.values()
        for home_id in self.homes.keys() - set().union(*(homes for _, homes in pictures)):
            self._remove_home(home_id)
        for device_id in self.devices.keys() - set().union(*(ids for ids, _ in pictures)):
            self._remove_device(device_id)

    def _remove_device(self, device_id: str) -> None:
        tracked = self.devices.pop(device_id)
        self._devices_of_home[tracked.device.home_id or ""].discard(device_id)
        log.info(
            "Point %s (%s) left the account: removing its entities", tracked.device.name, device_id
        )
        self.configs.remove(self._discovery.device_identifier(device_id))
        self._retained.clear(self.topics.device_state(device_id))
        self._retained.clear(self.topics.device_availability(device_id))

    def _remove_home(self, home_id: str) -> None:
        tracked = self.homes.pop(home_id)
        log.info("home %s (%s) left the account: removing its entities", tracked.home.name, home_id)
        self.configs.remove(self._discovery.home_identifier(home_id))
        self._retained.clear(self.topics.home_state(home_id))

    # -- output -------------------------------------------------------------------------------

    def _publish_changes(self) -> Steps:
        """Configs (once the broker's are known), availability and states that changed."""
        syncing = self._polled and self.configs.broker_known and not self._configs_synced
        if syncing:
            self.configs.publish(
                self._discovery.bridge_identifier,
                bridge_configs(self._discovery),
                against_broker=True,
            )
        yield from self._in_steps(
            self.homes.values(),
            DEVICES_PER_STEP * 4,
            lambda home: self._publish_home(home, syncing),
        )
        yield from self._in_steps(
            self.devices.values(),
            DEVICES_PER_STEP,
            lambda tracked: self._publish_device(tracked, syncing),
        )
        if syncing:
            nodes = {self._discovery.bridge_identifier}
            nodes |= {self._discovery.home_identifier(home_id) for home_id in self.homes}
            nodes |= {self._discovery.device_identifier(device_id) for device_id in self.devices}
            self.configs.sweep(nodes)
            self._configs_synced = True

    def _in_steps(self, items: Iterable[T], per_step: int, work: Callable[[T], object]) -> Steps:
        """`work` on each item, a few at a time; what a few publish goes to the outbox together."""
        chosen = list(items)
        for start in range(0, len(chosen), per_step):
            with self._publisher.batch():
                for item in chosen[start : start + per_step]:
                    work(item)
            yield

    def _publish_device(self, tracked: TrackedDevice, syncing: bool) -> None:
        device = tracked.device
        if self._configs_synced or syncing:
            entities = tracked.entity_readings(self._now())
            controls = [spec.key for spec in controls_of_device(device)]
            basis = (device.name, device.model, device.firmware, device.home_id, entities, controls)
            if syncing or basis != tracked.config_basis:
                node = self._discovery.device_identifier(device.device_id)
                configs = device_configs(self._discovery, device, entities)
                self.configs.publish(node, configs, against_broker=syncing)
                tracked.config_basis = basis
        if tracked.state_changed:
            self._publish_availability(tracked)
        self._publish_device_state(tracked)

    def _publish_home(self, home: TrackedHome, syncing: bool) -> None:
        if (self._configs_synced or syncing) and (syncing or home.home != home.config_basis):
            node = self._discovery.home_identifier(home.home.home_id)
            configs = home_configs(self._discovery, home.home)
            self.configs.publish(node, configs, against_broker=syncing)
            home.config_basis = home.home
        self._publish_home_state(home)

    def _publish_availability(self, tracked: TrackedDevice, *, force: bool = False) -> None:
        device = tracked.device
        self._retained.retain(
            self.topics.device_availability(device.device_id),
            OFFLINE if device.offline else ONLINE,
            force=force,
        )

    def _publish_device_state(self, tracked: TrackedDevice, *, force: bool = False) -> None:
        if not (tracked.state_changed or force):
            return
        now = self._now()
        document = device_document(tracked, now, self._stale_after)
        if self._retained.retain(
            self.topics.device_state(tracked.device.device_id), document, force=force
        ):
            self._note("state", tracked.device.name)
        tracked.state_changed = False
        tracked.stale_at = next_stale_at(tracked, now, self._stale_after)
        if tracked.stale_at is not None:
            heapq.heappush(self._staleness, (tracked.stale_at, tracked.device.device_id))

    def _publish_home_state(self, home: TrackedHome, *, force: bool = False) -> None:
        if not (home.state_changed or force):
            return
        now, home_id = self._now(), home.home.home_id
        document = home_document(home, now)
        if self._retained.retain(self.topics.home_state(home_id), document, force=force):
            self._note("home state", home.home.name)
        home.state_changed = False
        if (change := next_change(home.stays or (), now)) is not None:
            self._stays_change[home_id] = change
        for spec in GUEST_VALUES:  # a time alone, while known (see GuestValueSpec)
            if spec.timestamp and document.get(spec.key) is not None:
                topic = self.topics.home_value(home_id, spec.key)
                self._retained.retain(topic, document[spec.key], force=force)

    def _note(self, what: str, subject: str) -> None:
        if self._on_change is not None:
            self._on_change(what, subject)


def _run(steps: Steps) -> None:
    for _ in steps:
        pass
