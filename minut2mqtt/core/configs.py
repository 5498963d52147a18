"""The bridge's discovery configs on the broker: published when they change, never twice.

What the broker holds of ours is known by fingerprint: from the outbox's record of the configs
handed over in earlier runs (`remember`), from what we publish (recorded as we publish it, not
when it comes back: with MQTT 5 our subscription spares us our own messages), and from what the
broker shows on our subscription to every discovery config (`note`: its replay after a connect,
a config someone else changed or removed, in MQTT 3.1.1 our own coming back). When the broker
lost our session, it may have lost everything: the record is forgotten and its replay awaited
(`forget`, `replayed`). Once what the broker holds is known and a poll told which devices
exist, every device's configs are compared with it: only what differs is published, a device
switching between per-component and device-based discovery goes through Home Assistant's
`migrate_discovery` handshake, and configs of devices and entities that no longer exist are
removed. From then on a device's configs are published again only when what they are built
from changes.
"""

from __future__ import annotations

import json
import logging
from collections import defaultdict
from collections.abc import Iterable

from .config_types import Configs
from .publishing import Lane
from .retained import RetainedTopics, fingerprint
from .topics import Topics

log = logging.getLogger(__name__)

MIGRATE = json.dumps({"migrate_discovery": True}).encode()


class DiscoveryConfigs:
    def __init__(self, retained: RetainedTopics, topics: Topics, *, device_based: bool) -> None:
        self._retained = retained
        self._topics = topics
        self._device_based = device_based
        self._marker = f"{topics.base}/".encode()
        self.on_broker: dict[str, bytes] = {}
        """Our configs the broker holds (as its replay and our subscription show): fingerprints."""
        self.broker_known = False
        """The broker's replay of retained configs is over, since the last connect."""
        # Per device (its node id): a tuple, not a set, is an eighth of the memory (2,000 Points
        # hold 5,000 of them); a device has a few dozen topics, looked through in microseconds.
        self._on_broker_by_node: dict[str, tuple[str, ...]] = {}
        self._by_node: dict[str, tuple[str, ...]] = {}
        """Per device (its node id), the config topics we published for it."""

    # -- what the broker holds ------------------------------------------------------------------

    def remember(self, held: dict[str, bytes]) -> None:
        """The configs earlier runs handed over (fingerprints): the broker holds them."""
        by_node: defaultdict[str, list[str]] = defaultdict(list)
        for topic, printed in held.items():
            if (node := self._topics.discovery_node(topic)) is not None:
                self.on_broker[topic] = printed
                by_node[node].append(topic)
        for node, topics in by_node.items():
            self._on_broker_by_node[node] = self._held_of(node, topics)
        self.broker_known = True

    def forget(self) -> None:
        """The broker kept nothing of our session: what it holds is learnt from its replay."""
        self.on_broker.clear()
        self._on_broker_by_node.clear()
        self.broker_known = False

    def note(self, topic: str, payload: bytes) -> None:
        """A retained config on the broker (from our subscription to every discovery config)."""
        node = self._topics.discovery_node(topic)
        if node is None:
            return
        if payload and self._marker in payload and self._is_ours(payload):  # cheap test first
            self._hold(topic, node, fingerprint(payload))
        else:
            self._hold(topic, node, None)

    def replayed(self) -> None:
        self.broker_known = True

    # -- publishing -----------------------------------------------------------------------------

    def publish(self, node: str, configs: Configs, *, against_broker: bool = False) -> int:
        """Make the broker hold exactly `configs` for device `node`; how many were published.

        `against_broker`: compare with what the broker holds (after a connect) rather than with
        what was published since, and take over or remove what the broker holds besides.
        """
        leftovers = set(self._by_node.get(node, ())) - configs.keys()
        if against_broker:
            leftovers |= self._broker_topics(node) - configs.keys()
        migrating = [topic for topic in leftovers if self._is_other_shape(topic)]
        for topic in migrating:  # Home Assistant lets go of the entities this topic made
            self._retained.retain(topic, MIGRATE, lane=Lane.CONFIGS, force=True)
        held = self.on_broker if against_broker else None
        published = 0
        for topic, config in configs.items():
            published += self._retained.retain(topic, config, lane=Lane.CONFIGS, held=held)
            self._note_fingerprint(topic, self._retained.fingerprint_of(topic))
        self._on_broker_by_node[node] = self._held_of(node, configs)  # once, not per topic
        for topic in sorted(leftovers):
            self._clear(topic)
        self._by_node[node] = tuple(configs)
        return published

    def remove(self, node: str) -> None:
        """The device is gone: every config of it goes (Home Assistant removes the device)."""
        for topic in sorted(set(self._by_node.pop(node, ())) | self._broker_topics(node)):
            self._clear(topic)

    def sweep(self, nodes: set[str]) -> int:
        """Remove our configs the broker holds for devices not in `nodes` (they left the account
        while the bridge was away); how many."""
        orphans = [
            topic for topic in self.on_broker if self._topics.discovery_node(topic) not in nodes
        ]
        for topic in sorted(orphans):
            log.info("removing orphaned discovery config %s", topic)
            self._clear(topic)
        return len(orphans)

    # -- helpers --------------------------------------------------------------------------------

    def _clear(self, topic: str) -> None:
        self.on_broker.pop(topic, None)
        if (node := self._topics.discovery_node(topic)) is not None:
            self._on_broker_by_node[node] = self._held_of(node)
        self._retained.clear(topic, Lane.CONFIGS)

    def _hold(self, topic: str, node: str, printed: bytes | None) -> None:
        """The broker holds our config on `topic` (its fingerprint), or nothing of ours."""
        self._note_fingerprint(topic, printed)
        self._on_broker_by_node[node] = self._held_of(node, (topic,))

    def _note_fingerprint(self, topic: str, printed: bytes | None) -> None:
        if printed is not None:
            self.on_broker[topic] = printed
        else:
            self.on_broker.pop(topic, None)

    def _held_of(self, node: str, more: Iterable[str] = ()) -> tuple[str, ...]:
        """The node's topics the broker holds of ours, of those noted before and `more`."""
        noted = dict.fromkeys((*self._on_broker_by_node.get(node, ()), *more))
        return tuple(topic for topic in noted if topic in self.on_broker)

    def _broker_topics(self, node: str) -> set[str]:
        return set(self._on_broker_by_node.get(node, ()))

    def _is_other_shape(self, topic: str) -> bool:
        """A per-component config in device mode, or a device config in component mode."""
        is_device_topic = topic.startswith(f"{self._topics.discovery_prefix}/device/")
        return is_device_topic != self._device_based

    def _is_ours(self, payload: bytes) -> bool:
        try:
            config = json.loads(payload)
        except ValueError:
            return False
        if not isinstance(config, dict):
            return False
        entities = [config, *(config.get("components") or {}).values()]
        ours = self._topics.bridge_availability
        triggers_ours = f"{self._topics.base}/"  # a device trigger has no availability
        return any(
            isinstance(entity, dict)
            and (
                any(
                    isinstance(entry, dict) and entry.get("topic") == ours
                    for entry in entity.get("availability") or ()
                )
                or (
                    entity.get("automation_type") == "trigger"
                    and str(entity.get("topic", "")).startswith(triggers_ours)
                )
            )
            for entity in entities
        )
