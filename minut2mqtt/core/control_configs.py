"""Home Assistant discovery for the controls and the device triggers (pure functions).

The rows come from `core/controls.py` (what can be changed) and `core/entities.py` (which
events a Point or home emits); `core/discovery.py` puts them in their device's configs.
"""

from __future__ import annotations

from dataclasses import dataclass

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

REMOTE_CODE = "REMOTE_CODE"
"""Home Assistant asks for a code and passes it on in the command (the bridge checks it)."""
ALARM_COMMAND_WITH_CODE = '{"action": "{{ action }}", "code": "{{ code }}"}'


@dataclass(frozen=True)
class Controls:
    """How the controls are offered; None: not at all (`controls.enabled: false`)."""

    alarm_code: bool = False
    """Disarming needs the code of `controls.alarm_code`."""
    device_triggers: bool = True


def device_controls(
    topics: Topics, device: Device, options: Controls
) -> list[tuple[ControlSpec[Device], ControlFields]]:
    return [
        (spec, _fields(spec, topics.device_command(device.device_id, spec.key), options))
        for spec in controls_of_device(device)
    ]


def home_controls(
    topics: Topics, home: Home, options: Controls
) -> list[tuple[ControlSpec[Home], ControlFields]]:
    return [
        (spec, _fields(spec, topics.home_command(home.home_id, spec.key), options))
        for spec in controls_of_home(home)
    ]


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


def device_triggers(topics: Topics, device: Device) -> list[TriggerConfig]:
    return triggers(topics.device_event(device.device_id), DEVICE_TRIGGER_EVENTS)


def home_triggers(topics: Topics, home: Home) -> list[TriggerConfig]:
    return triggers(topics.home_event(home.home_id), HOME_TRIGGER_EVENTS)


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
