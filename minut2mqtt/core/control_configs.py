"""Home Assistant discovery for the controls and the device triggers (pure functions).

The rows come from `core/controls.py` (what can be changed) and `core/entities.py` (which
events a Point or home emits); `core/discovery.py` puts them in their device's configs.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from ..minut.models import Device, Home
from .config_types import Availability, ControlFields, EntityConfig, TriggerConfig
from .controls import (
    ARM_AWAY,
    DISARM,
    ControlSpec,
    Subject,
    controls_of_device,
    controls_of_home,
)
from .entities import DEVICE_TRIGGER_EVENTS, HOME_TRIGGER_EVENTS
from .topics import Topics

Available = tuple[Availability, ...]

REMOTE_CODE = "REMOTE_CODE"
"""Home Assistant asks for a code and passes it on in the command (the bridge checks it)."""
ALARM_COMMAND_WITH_CODE = '{"action": "{{ action }}", "code": "{{ code }}"}'


@dataclass(frozen=True)
class Controls:
    """How the controls are offered; None: not at all (`controls.enabled: false`)."""

    alarm_code: bool = False
    """Disarming needs the code of `controls.alarm_code`."""
    device_triggers: bool = True


Extras = tuple[list[EntityConfig], list[TriggerConfig]]
"""A device's control entities and device triggers."""


def device_extras(
    topics: Topics, options: Controls | None, device: Device, availability: Available
) -> Extras:
    commands = [(spec, topics.device_command(device.device_id, spec.key)) for spec in
                controls_of_device(device)]  # fmt: skip
    state, events = topics.device_state(device.device_id), topics.device_event(device.device_id)
    return _extras(options, commands, state, availability, events, DEVICE_TRIGGER_EVENTS)


def home_extras(
    topics: Topics, options: Controls | None, home: Home, availability: Available
) -> Extras:
    commands = [(spec, topics.home_command(home.home_id, spec.key)) for spec in
                controls_of_home(home)]  # fmt: skip
    state, events = topics.home_state(home.home_id), topics.home_event(home.home_id)
    return _extras(options, commands, state, availability, events, HOME_TRIGGER_EVENTS)


def _extras(
    options: Controls | None,
    commands: Sequence[tuple[ControlSpec[Any], str]],
    state_topic: str,
    availability: Available,
    event_topic: str,
    trigger_events: tuple[str, ...],
) -> Extras:
    if options is None:  # read-only
        return [], []
    entities = [
        control_config(spec, _fields(spec, command_topic, options), state_topic, availability)
        for spec, command_topic in commands
    ]
    return entities, triggers(event_topic, trigger_events) if options.device_triggers else []


def _fields(spec: ControlSpec[Subject], command_topic: str, options: Controls) -> ControlFields:
    if spec.component == "alarm_control_panel":
        return ControlFields(
            command_topic,
            supported_features=("arm_away",),
            payload_arm_away=ARM_AWAY,
            payload_disarm=DISARM,
            code=REMOTE_CODE if options.alarm_code else None,
            command_template=ALARM_COMMAND_WITH_CODE if options.alarm_code else None,
            code_arm_required=False,
            code_disarm_required=options.alarm_code,
        )
    allowed = spec.range
    return ControlFields(
        command_topic,
        min=allowed.minimum if allowed else None,
        max=allowed.maximum if allowed else None,
        step=allowed.step if allowed else None,
        pattern=spec.pattern,
    )


def triggers(topic: str, events: tuple[str, ...]) -> list[TriggerConfig]:
    return [
        TriggerConfig(f"trigger_{event}", topic, event, event.replace("_", " ").capitalize(), event)
        for event in events
    ]


def control_config(
    spec: ControlSpec[Subject],
    fields: ControlFields,
    state_topic: str,
    availability: tuple[Availability, ...],
) -> EntityConfig:
    allowed = spec.range
    return EntityConfig(
        spec.component,
        spec.key,
        spec.name,
        state_topic,
        value_template=f"{{{{ value_json.controls.{spec.key} }}}}",
        device_class=allowed.device_class if allowed else None,
        unit_of_measurement=allowed.unit if allowed else None,
        icon=spec.icon,
        entity_category=None if spec.component == "alarm_control_panel" else "config",
        availability=availability,
        control=fields,
    )
