"""Home Assistant discovery configs, derived from the entity table (pure functions).

Per-component discovery (`<prefix>/<component>/<node_id>/<object_id>/config`), because openHAB
and Home Assistant before 2024.12 do not understand device-based discovery.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from .. import __version__
from ..entities import (
    BRIDGE_VALUES,
    DEVICE_STATES,
    EVENT_TYPES_FOR_HA,
    HOME_STATES,
    HOME_VALUES,
    BinarySpec,
    reading_spec,
)
from ..minut.models import Device, Home
from .payloads import EVENT_QOS, FRESH, OFF, OFFLINE, ON, ONLINE, QOS, STALE
from .topics import Topics, topic_safe

MINUT_WEB_APP = "https://web.minut.com"
ORIGIN = {"name": "minut2mqtt", "sw_version": __version__}

Configs = dict[str, dict[str, Any]]
"""Discovery topic → config payload."""
Entity = tuple[str, str, dict[str, Any]]
"""(component, key, what is particular to the entity)."""


@dataclass(frozen=True)
class DiscoveryContext:
    topics: Topics
    momentary_seconds: float

    @property
    def instance(self) -> str:
        """Part of every unique id, so that two bridges with different base topics coexist."""
        return topic_safe(self.topics.base)

    def device_identifier(self, device_id: str) -> str:
        return f"{self.instance}_{topic_safe(device_id)}"

    def home_identifier(self, home_id: str) -> str:
        return f"{self.instance}_home_{topic_safe(home_id)}"

    @property
    def bridge_identifier(self) -> str:
        return f"{self.instance}_bridge"


def device_configs(ctx: DiscoveryContext, device: Device, reading_keys: Iterable[str]) -> Configs:
    """Every entity of one Point: its readings, its binary states and its event entity."""
    node_id = ctx.device_identifier(device.device_id)
    state_topic = ctx.topics.device_state(device.device_id)
    device_block = {
        "identifiers": [node_id],
        "name": device.name,
        "manufacturer": "Minut",
        "model": device.model,
        "suggested_area": device.name,
        "configuration_url": MINUT_WEB_APP,
        **({"hw_version": str(device.hardware_version)} if device.hardware_version else {}),
        **({"sw_version": device.firmware} if device.firmware else {}),
        **({"via_device": ctx.home_identifier(device.home_id)} if device.home_id else {}),
    }
    available_with_device = [
        _availability(ctx.topics.bridge_availability),
        _availability(ctx.topics.device_availability(device.device_id)),
    ]
    entities: list[Entity] = []
    for key in sorted(reading_keys):
        spec = reading_spec(key)
        entities.append(
            (
                "sensor",
                key,
                {
                    "name": spec.name,
                    "state_topic": state_topic,
                    "value_template": f"{{{{ value_json.readings.{key}.value }}}}",
                    "state_class": "measurement",
                    **({"device_class": spec.device_class} if spec.device_class else {}),
                    **({"unit_of_measurement": spec.unit} if spec.unit else {}),
                    **(
                        {"suggested_display_precision": spec.precision}
                        if spec.precision is not None
                        else {}
                    ),
                    **({"entity_category": "diagnostic"} if spec.diagnostic else {}),
                    **({} if spec.enabled_by_default else {"enabled_by_default": False}),
                    "availability": [
                        *available_with_device,
                        _availability(
                            state_topic,
                            template=f"{{{{ value_json.readings.{key}.status }}}}",
                            available=FRESH,
                            not_available=STALE,
                        ),
                    ],
                    "availability_mode": "all",
                },
            )
        )
    for binary in DEVICE_STATES:
        # A disconnected Point must still be able to say so: connectivity ignores its availability.
        availability = (
            [_availability(ctx.topics.bridge_availability)]
            if binary.key == "connectivity"
            else available_with_device
        )
        entities.append(
            ("binary_sensor", binary.key, _binary_config(ctx, binary, state_topic, availability))
        )
    entities.append(
        _event_entity(ctx.topics.device_event(device.device_id), ctx.topics.bridge_availability)
    )
    return _assemble(ctx.topics, node_id, device.name, device_block, entities)


def home_configs(ctx: DiscoveryContext, home: Home) -> Configs:
    """The home as its own device: alarm status, noise disturbance and its event entity."""
    node_id = ctx.home_identifier(home.home_id)
    state_topic = ctx.topics.home_state(home.home_id)
    device_block = {
        "identifiers": [node_id],
        "name": home.name,
        "manufacturer": "Minut",
        "model": "Home",
        "configuration_url": MINUT_WEB_APP,
    }
    availability = [_availability(ctx.topics.bridge_availability)]
    entities: list[Entity] = [
        (
            "sensor",
            spec.key,
            {
                "name": spec.name,
                "state_topic": state_topic,
                "value_template": f"{{{{ value_json.{spec.key} }}}}",
                **({"icon": spec.icon} if spec.icon else {}),
                "availability": availability,
            },
        )
        for spec in HOME_VALUES
    ]
    entities += [
        ("binary_sensor", spec.key, _binary_config(ctx, spec, state_topic, availability))
        for spec in HOME_STATES
    ]
    entities.append(
        _event_entity(ctx.topics.home_event(home.home_id), ctx.topics.bridge_availability)
    )
    return _assemble(ctx.topics, node_id, home.name, device_block, entities)


def bridge_configs(ctx: DiscoveryContext) -> Configs:
    """The bridge as its own device, with diagnostic entities read from its status document."""
    node_id = ctx.bridge_identifier
    device_block = {
        "identifiers": [node_id],
        # The base topic tells two bridges apart; the usual single one is just "minut2mqtt".
        "name": "minut2mqtt"
        if ctx.topics.base == "minut2mqtt"
        else f"minut2mqtt ({ctx.topics.base})",
        "manufacturer": "minut2mqtt",
        "model": "Minut to MQTT bridge",
        "sw_version": __version__,
    }
    availability = [_availability(ctx.topics.bridge_availability)]
    entities: list[Entity] = [
        (
            spec.component,
            spec.key,
            {
                "name": spec.name,
                "state_topic": ctx.topics.bridge_state,
                "value_template": spec.value_template,
                **({"device_class": spec.device_class} if spec.device_class else {}),
                **({"state_class": spec.state_class} if spec.state_class else {}),
                **({"icon": spec.icon} if spec.icon else {}),
                "entity_category": "diagnostic",
                "availability": availability,
            },
        )
        for spec in BRIDGE_VALUES
    ]
    return _assemble(ctx.topics, node_id, "bridge", device_block, entities)


def _assemble(
    topics: Topics,
    node_id: str,
    device_name: str,
    device_block: dict[str, Any],
    entities: list[Entity],
) -> Configs:
    """Add what every entity of one device shares: ids, the device block, origin, QoS."""
    configs: Configs = {}
    for component, key, config in entities:
        object_id = f"minut_{_slug(device_name)}_{key}"
        configs[topics.discovery(component, node_id, key)] = {
            "unique_id": f"{node_id}_{key}",
            # object_id for Home Assistant before 2025.10, default_entity_id after: send both.
            "object_id": object_id,
            "default_entity_id": f"{component}.{object_id}",
            **config,
            "device": device_block,
            "origin": ORIGIN,
            "qos": EVENT_QOS if component == "event" else QOS,
        }
    return configs


def _event_entity(event_topic: str, bridge_availability: str) -> Entity:
    return (
        "event",
        "event",
        {
            "name": "Event",
            "state_topic": event_topic,
            "event_types": list(EVENT_TYPES_FOR_HA),
            "availability": [_availability(bridge_availability)],
        },
    )


def _binary_config(
    ctx: DiscoveryContext, spec: BinarySpec, state_topic: str, availability: list[dict[str, str]]
) -> dict[str, Any]:
    return {
        "name": spec.name,
        "state_topic": state_topic,
        "value_template": f"{{{{ value_json.states.{spec.key} }}}}",
        "payload_on": ON,
        "payload_off": OFF,
        **({"device_class": spec.device_class} if spec.device_class else {}),
        **({"off_delay": round(ctx.momentary_seconds)} if spec.momentary else {}),
        **({"entity_category": "diagnostic"} if spec.diagnostic else {}),
        "availability": availability,
        **({"availability_mode": "all"} if len(availability) > 1 else {}),
    }


def _availability(
    topic: str,
    *,
    template: str | None = None,
    available: str = ONLINE,
    not_available: str = OFFLINE,
) -> dict[str, str]:
    return {
        "topic": topic,
        "payload_available": available,
        "payload_not_available": not_available,
        **({"value_template": template} if template else {}),
    }


def _slug(name: str) -> str:
    return re.sub(r"[^a-z0-9]+", "_", name.lower()).strip("_") or "point"
