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

    @property
    def bridge_replayed(self) -> str:
        """Where the bridge sends itself a marker after subscribing (see MqttOptions)."""
        return f"{self.base}/bridge/replayed"

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

    def home_value(self, home_id: str, key: str) -> str:
        """One value of a home alone (see GuestValueSpec.timestamp)."""
        return f"{self.base}/home/{topic_safe(home_id)}/{topic_safe(key)}"

    def home_event(self, home_id: str) -> str:
        return f"{self.base}/home/{topic_safe(home_id)}/event"

    def home_command(self, home_id: str, key: str) -> str:
        return f"{self.base}/home/{topic_safe(home_id)}/{topic_safe(key)}/set"

    def device_command(self, device_id: str, key: str) -> str:
        return f"{self.base}/device/{topic_safe(device_id)}/{topic_safe(key)}/set"

    @property
    def command_filters(self) -> tuple[str, str]:
        """Match every command topic of a home and of a Point."""
        return f"{self.base}/home/+/+/set", f"{self.base}/device/+/+/set"

    @property
    def command_response(self) -> str:
        """Where the answer to every command goes (not retained)."""
        return f"{self.base}/bridge/response"

    def command_target(self, topic: str) -> tuple[str, str, str] | None:
        """("home" or "device", its id as in the topic, the control's key) of a command topic."""
        parts = topic.split("/")
        base = self.base.split("/")
        if len(parts) != len(base) + 4 or parts[: len(base)] != base or parts[-1] != "set":
            return None
        kind, subject, key = parts[len(base) : len(base) + 3]
        return (kind, subject, key) if kind in ("home", "device") else None

    def discovery(self, component: str, node_id: str, object_id: str) -> str:
        node, entity = topic_safe(node_id), topic_safe(object_id)
        return f"{self.discovery_prefix}/{component}/{node}/{entity}/config"

    def device_discovery(self, node_id: str) -> str:
        return f"{self.discovery_prefix}/device/{topic_safe(node_id)}/config"

    @property
    def discovery_filters(self) -> tuple[str, str]:
        """Match every per-component and device discovery config (ours are read back)."""
        return f"{self.discovery_prefix}/+/+/+/config", f"{self.discovery_prefix}/device/+/config"

    def discovery_node(self, topic: str) -> str | None:
        """The node id in a discovery topic (the device the config belongs to), else None."""
        parts = topic.split("/")
        if len(parts) == 5 and parts[0] == self.discovery_prefix and parts[4] == "config":
            return parts[2]
        if len(parts) == 4 and parts[:2] == [self.discovery_prefix, "device"]:
            return parts[2] if parts[3] == "config" else None
        return None
