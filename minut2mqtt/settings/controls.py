"""The `controls` section: acting on Minut from MQTT and Home Assistant."""

from __future__ import annotations

from pydantic import Field, SecretStr

from .sections import Section


class ControlsSettings(Section):
    enabled: bool = Field(
        True,
        description="publish command entities (alarm, noise monitoring, thresholds, quiet "
        "hours) and carry out commands from their MQTT topics; false: read-only",
    )
    alarm_code: SecretStr | None = Field(
        None,
        description="code needed to disarm a home's alarm (Home Assistant asks for it); null: "
        "anyone allowed to publish on the command topics can disarm, so set broker ACLs",
    )
    guests_interval: float = Field(
        0.0,
        ge=0,
        description="property managers: seconds between two reads of a home's guests (every "
        "home then shows its current and next stay; homes are read one at a time, spread over "
        "this; 3600 is a good start); 0: guests are not read and have no entities",
    )
    device_triggers: bool = Field(
        True,
        description="a Home Assistant device trigger per event type of every Point and home",
    )
