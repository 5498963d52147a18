"""The typed shapes of Home Assistant discovery configs; `as_json` turns them into JSON.

`core/discovery.py` assembles them per device; `core/control_configs.py` adds the controls'
command fields and the device triggers.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

Configs = dict[str, dict[str, Any]]
"""Discovery topic → config payload."""
NOT_IN_PAYLOAD: Mapping[str, bool] = {"in_payload": False}
"""Field metadata: where a config goes, not what it says."""


@dataclass(frozen=True)
class TriggerConfig:
    """A Home Assistant device trigger: fires when the event topic carries this event type."""

    key: str = field(metadata=NOT_IN_PAYLOAD)
    topic: str
    type: str
    subtype: str
    payload: str
    value_template: str = "{{ value_json.type }}"
    automation_type: str = "trigger"


@dataclass(frozen=True)
class ControlFields:
    """What a control's config adds to an entity's (see `discovery.EntityConfig`)."""

    command_topic: str
    command_template: str | None = None
    min: float | None = None
    max: float | None = None
    step: float | None = None
    pattern: str | None = None
    supported_features: tuple[str, ...] | None = None
    payload_arm_away: str | None = None
    payload_disarm: str | None = None
    code: str | None = None
    code_arm_required: bool | None = None
    code_disarm_required: bool | None = None


@dataclass(frozen=True)
class Availability:
    """None: the payload is left out, as Home Assistant's and openHAB's default is what our
    availability topics carry (`online` / `offline`): 2.4 KB of a Point's 13 KB device config."""

    topic: str
    payload_available: str | None = None
    payload_not_available: str | None = None
    value_template: str | None = None


@dataclass(frozen=True)
class DeviceBlock:
    """The `device` of every config of one Home Assistant device."""

    identifiers: tuple[str, ...]
    name: str
    manufacturer: str
    model: str
    suggested_area: str | None = None
    configuration_url: str | None = None
    hw_version: str | None = None
    sw_version: str | None = None
    via_device: str | None = None


@dataclass(frozen=True)
class EntityConfig:
    """What is particular to one entity; `_assemble` adds what its device's entities share."""

    component: str = field(metadata=NOT_IN_PAYLOAD)
    key: str = field(metadata=NOT_IN_PAYLOAD)
    name: str
    state_topic: str
    value_template: str | None = None
    payload_on: str | None = None
    payload_off: str | None = None
    state_class: str | None = None
    device_class: str | None = None
    unit_of_measurement: str | None = None
    suggested_display_precision: int | None = None
    icon: str | None = None
    off_delay: int | None = None
    event_types: tuple[str, ...] | None = None
    entity_category: str | None = None
    enabled_by_default: bool | None = None
    availability: tuple[Availability, ...] = ()
    control: ControlFields | None = field(default=None, metadata=NOT_IN_PAYLOAD)
    """A control's command side (`core/control_configs.py`)."""

    @property
    def availability_mode(self) -> str | None:
        """Available only while every availability topic says so."""
        return "all" if len(self.availability) > 1 else None


def as_json(config: Any) -> Any:
    """Typed configs as JSON, every empty (None) field dropped: the only place that drops them.

    Fields marked `NOT_IN_PAYLOAD` are left out too.
    """
    if config is None or isinstance(config, _SCALARS):
        return config
    if isinstance(config, dict):
        return {key: _json(value) for key, value in config.items() if value is not None}
    if isinstance(config, tuple | list):
        return [_json(value) for value in config]
    if type(config) is Availability:  # a device's entities share a few: built once each
        return _availability_json(config)
    return _fields_json(config)


def _fields_json(config: Any) -> dict[str, Any]:
    return {
        name: _json(value)
        for name in payload_fields(type(config))
        if (value := getattr(config, name)) is not None
    }


_SCALARS = (str, int, float)


@functools.lru_cache(maxsize=16)
def _availability_json(availability: Availability) -> dict[str, Any]:
    """Shared between the configs that use it: a config is serialised, never changed.

    The configs of one device are built together and share two (the bridge's availability and
    the device's): a larger cache would only keep other devices' alive, 8,192 of them at 2,000
    Points, for every full pass of the garbage collector to walk through."""
    return _fields_json(availability)


def _json(value: Any) -> Any:
    """`as_json`, without a call for the common case (a discovery burst builds millions)."""
    return value if isinstance(value, _SCALARS) else as_json(value)


PAYLOAD_FIELDS_BY_CLASS: dict[type, tuple[str, ...]] = {}


def payload_fields(kind: type) -> tuple[str, ...]:
    """The fields of a typed config that go into its JSON (looked up once per class)."""
    if kind not in PAYLOAD_FIELDS_BY_CLASS:
        PAYLOAD_FIELDS_BY_CLASS[kind] = tuple(
            item.name for item in dataclasses.fields(kind) if item.metadata.get("in_payload", True)
        )
    return PAYLOAD_FIELDS_BY_CLASS[kind]
