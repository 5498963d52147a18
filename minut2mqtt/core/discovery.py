"""Home Assistant discovery configs, derived from the entity table (pure functions).

Per-component discovery (`<prefix>/<component>/<node_id>/<object_id>/config`) by default,
because openHAB before 5.1 and Home Assistant before 2024.11 understand nothing else; or
device-based discovery (`<prefix>/device/<node_id>/config`, every entity of a device in one
message under `components`), about 20 times fewer messages. Both carry the same entities under
the same unique ids, and an entity's key is its object id in either, so Home Assistant can move
an entity from one to the other (the `migrate_discovery` handshake, done by the mirror).

Configs are typed (`EntityConfig`, `DeviceBlock`, `Availability`) and become JSON in one place,
`_as_json`, which drops every field left empty.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from .. import __version__
from ..minut.models import Device, Home
from .config_types import (
    Availability,
    Configs,
    DeviceBlock,
    EntityConfig,
    TriggerConfig,
    as_json,
)
from .control_configs import Controls, device_extras, home_extras
from .documents import FRESH, OFF, ON, STALE
from .entities import (
    BRIDGE_VALUES,
    DEVICE_STATES,
    EVENT_TYPES_FOR_HA,
    GUEST_VALUES,
    HOME_STATES,
    HOME_VALUES,
    BinarySpec,
    GuestValueSpec,
    reading_spec,
)
from .publishing import EVENT_QOS, QOS
from .topics import Topics, topic_safe

MINUT_WEB_APP = "https://web.minut.com"
ORIGIN = {"name": "minut2mqtt", "sw_version": __version__}


@dataclass(frozen=True)
class DiscoveryContext:
    topics: Topics
    momentary_seconds: float
    device_based: bool = False
    """One config per device (Home Assistant 2024.11 and later) rather than one per entity."""
    controls: Controls | None = None
    """Command entities and device triggers, unless None (`controls.enabled: false`)."""
    guests: bool = False
    """Every home shows its current and next stay (`controls.guests_interval`)."""

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
    block = DeviceBlock(
        identifiers=(node_id,),
        name=device.name,
        manufacturer="Minut",
        model=device.model,
        suggested_area=device.name,
        configuration_url=MINUT_WEB_APP,
        hw_version=str(device.hardware_version) if device.hardware_version else None,
        sw_version=device.firmware,
        via_device=ctx.home_identifier(device.home_id) if device.home_id else None,
    )
    bridge_only = (Availability(ctx.topics.bridge_availability),)
    with_device = (*bridge_only, Availability(ctx.topics.device_availability(device.device_id)))
    entities = [_reading_config(key, state_topic, with_device) for key in sorted(reading_keys)]
    entities += [
        _binary_config(
            ctx, spec, state_topic, bridge_only if spec.available_while_offline else with_device
        )
        for spec in DEVICE_STATES
    ]
    entities.append(_event_config(ctx.topics.device_event(device.device_id), bridge_only))
    controls, triggers = device_extras(ctx.topics, ctx.controls, device, bridge_only)
    return _assemble(ctx, node_id, device.name, block, entities + controls, triggers)


def home_configs(ctx: DiscoveryContext, home: Home) -> Configs:
    """The home as its own device: alarm status, noise disturbance, its event entity, its
    controls and its current and next stay."""
    node_id = ctx.home_identifier(home.home_id)
    state_topic = ctx.topics.home_state(home.home_id)
    block = DeviceBlock(
        identifiers=(node_id,),
        name=home.name,
        manufacturer="Minut",
        model="Home",
        configuration_url=MINUT_WEB_APP,
    )
    availability = (Availability(ctx.topics.bridge_availability),)
    entities = [
        EntityConfig(
            "sensor",
            spec.key,
            spec.name,
            state_topic,
            value_template=f"{{{{ value_json.{spec.key} }}}}",
            icon=spec.icon,
            availability=availability,
        )
        for spec in HOME_VALUES
    ]
    entities += [_binary_config(ctx, spec, state_topic, availability) for spec in HOME_STATES]
    entities += [_guest_config(ctx, home, spec) for spec in GUEST_VALUES if ctx.guests]
    entities.append(_event_config(ctx.topics.home_event(home.home_id), availability))
    controls, triggers = home_extras(ctx.topics, ctx.controls, home, availability)
    return _assemble(ctx, node_id, home.name, block, entities + controls, triggers)


def bridge_configs(ctx: DiscoveryContext) -> Configs:
    """The bridge as its own device, with diagnostic entities read from its status document."""
    node_id = ctx.bridge_identifier
    block = DeviceBlock(
        identifiers=(node_id,),
        # The base topic tells two bridges apart; the usual single one is just "minut2mqtt".
        name="minut2mqtt" if ctx.topics.base == "minut2mqtt" else f"minut2mqtt ({ctx.topics.base})",
        manufacturer="minut2mqtt",
        model="Minut to MQTT bridge",
        sw_version=__version__,
    )
    availability = (Availability(ctx.topics.bridge_availability),)
    entities = [
        EntityConfig(
            spec.component,
            spec.key,
            spec.name,
            ctx.topics.bridge_value(spec.value.key)
            if spec.value.own_topic
            else ctx.topics.bridge_status,
            value_template=spec.value_template,
            device_class=spec.device_class,
            state_class=spec.state_class,
            icon=spec.icon,
            entity_category="diagnostic",
            availability=availability,
        )
        for spec in BRIDGE_VALUES
    ]
    return _assemble(ctx, node_id, "bridge", block, entities)


def _reading_config(
    key: str, state_topic: str, availability: tuple[Availability, ...]
) -> EntityConfig:
    spec = reading_spec(key)
    fresh = Availability(
        state_topic,
        payload_available=FRESH,
        payload_not_available=STALE,
        value_template=f"{{{{ value_json.readings.{key}.status }}}}",
    )
    return EntityConfig(
        "sensor",
        key,
        spec.name,
        state_topic,
        availability=(*availability, fresh),
        value_template=f"{{{{ value_json.readings.{key}.value }}}}",
        state_class="measurement",
        device_class=spec.device_class,
        unit_of_measurement=spec.unit,
        suggested_display_precision=spec.precision,
        entity_category="diagnostic" if spec.diagnostic else None,
        enabled_by_default=None if spec.enabled_by_default else False,
    )


def _binary_config(
    ctx: DiscoveryContext,
    spec: BinarySpec,
    state_topic: str,
    availability: tuple[Availability, ...],
) -> EntityConfig:
    return EntityConfig(
        "binary_sensor",
        spec.key,
        spec.name,
        state_topic,
        availability=availability,
        value_template=f"{{{{ value_json.states.{spec.key} }}}}",
        payload_on=ON,
        payload_off=OFF,
        device_class=spec.device_class,
        off_delay=round(ctx.momentary_seconds) if spec.momentary else None,
        entity_category="diagnostic" if spec.diagnostic else None,
    )


def _guest_config(ctx: DiscoveryContext, home: Home, spec: GuestValueSpec) -> EntityConfig:
    """Available while the stay exists; a time has its own topic (see GuestValueSpec)."""
    state_topic = ctx.topics.home_state(home.home_id)
    stay_exists = Availability(
        state_topic,
        value_template=f"{{{{ 'online' if value_json.{spec.stay}_stay else 'offline' }}}}",
    )
    own_topic = ctx.topics.home_value(home.home_id, spec.key) if spec.timestamp else None
    return EntityConfig(
        "sensor",
        spec.key,
        spec.name,
        own_topic or state_topic,
        value_template=None if own_topic else f"{{{{ value_json.{spec.key} }}}}",
        device_class="timestamp" if spec.timestamp else None,
        icon=None if spec.timestamp else "mdi:account-clock",
        availability=(Availability(ctx.topics.bridge_availability), stay_exists),
    )


def _event_config(event_topic: str, availability: tuple[Availability, ...]) -> EntityConfig:
    return EntityConfig(
        "event",
        "event",
        "Event",
        event_topic,
        event_types=EVENT_TYPES_FOR_HA,
        availability=availability,
    )


def _assemble(
    ctx: DiscoveryContext,
    node_id: str,
    device_name: str,
    block: DeviceBlock,
    entities: list[EntityConfig],
    triggers: list[TriggerConfig] | None = None,
) -> Configs:
    """Add what every entity of one device shares: ids, the device block, origin, QoS; one
    config per entity (and device trigger), or one for the device with all under `components`."""
    device = as_json(block)
    configs: Configs = {}
    components: dict[str, Any] = {}
    slug = _slug(device_name)
    for entity in entities:
        object_id = f"minut_{slug}_{entity.key}"
        qos = EVENT_QOS if entity.component == "event" else QOS
        particular = _without_empty(
            {
                "unique_id": f"{node_id}_{entity.key}",
                # object_id for Home Assistant before 2025.10, default_entity_id after: both.
                "object_id": object_id,
                "default_entity_id": f"{entity.component}.{object_id}",
                **as_json(entity),
                **(as_json(entity.control) if entity.control else {}),
                "availability_mode": entity.availability_mode,
            }
        )
        if ctx.device_based:
            components[entity.key] = {"platform": entity.component, **particular, "qos": qos}
        else:
            topic = ctx.topics.discovery(entity.component, node_id, entity.key)
            configs[topic] = {**particular, "device": device, "origin": ORIGIN, "qos": qos}
    for trigger in triggers or ():
        particular = {**as_json(trigger), "qos": EVENT_QOS}
        if ctx.device_based:
            components[trigger.key] = {"platform": "device_automation", **particular}
        else:
            topic = ctx.topics.discovery("device_automation", node_id, trigger.key)
            configs[topic] = {**particular, "device": device, "origin": ORIGIN}
    if ctx.device_based:
        payload = {"device": device, "origin": ORIGIN, "components": components}
        return {ctx.topics.device_discovery(node_id): payload}
    return configs


def _without_empty(config: dict[str, Any]) -> dict[str, Any]:
    """`config`, already JSON, without its empty (None) fields (no need to look deeper)."""
    return {key: value for key, value in config.items() if value is not None}


def _slug(name: str) -> str:
    return re.sub(r"[^a-z0-9]+", "_", name.lower()).strip("_") or "point"
