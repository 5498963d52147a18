"""Every MQTT topic the bridge publishes or listens to, in one place."""

from __future__ import annotations

import re
from dataclasses import dataclass

_UNSAFE_IN_TOPIC = re.compile(r"[^A-Za-z0-9_-]")


def topic_safe(identifier: str) -> str:
    """An id usable as one topic level and as a discovery node/object id."""
    return _UNSAFE_IN_TOPIC.sub("_", identifier)


@dataclass(frozen=True)
class Topics:
    base: str
    discovery_prefix: str

    @property
    def bridge_availability(self) -> str:
        return f"{self.base}/bridge/availability"

    @property
    def bridge_status(self) -> str:
        return f"{self.base}/bridge/state"

    def bridge_value(self, key: str) -> str:
        """One value of the bridge's status, alone (see StatusValue.own_topic)."""
        return f"{self.base}/bridge/{topic_safe(key)}"

    @property
    def ha_status(self) -> str:
        return f"{self.discovery_prefix}/status"

    def device_state(self, device_id: str) -> str:
        return f"{self.base}/device/{topic_safe(device_id)}/state"

    def device_availability(self, device_id: str) -> str:
        return f"{self.base}/device/{topic_safe(device_id)}/availability"

    def device_event(self, device_id: str) -> str:
        return f"{self.base}/device/{topic_safe(device_id)}/event"

    def home_state(self, home_id: str) -> str:
        return f"{self.base}/home/{topic_safe(home_id)}/state"

    def home_event(self, home_id: str) -> str:
        return f"{self.base}/home/{topic_safe(home_id)}/event"

    def discovery(self, component: str, node_id: str, object_id: str) -> str:
        node, entity = topic_safe(node_id), topic_safe(object_id)
        return f"{self.discovery_prefix}/{component}/{node}/{entity}/config"

    @property
    def discovery_filter(self) -> str:
        """Matches every per-component discovery config (used to sweep our orphans)."""
        return f"{self.discovery_prefix}/+/+/+/config"
