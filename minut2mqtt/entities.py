"""The table: every entity a Minut Point or home exposes, declared once.

The state documents, the Home Assistant discovery payloads, docs/topics.md and the tests are all
derived from these rows. Adding a reading or a binary state is one row here.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class ReadingSpec:
    """A numeric reading of a Point, published as a Home Assistant `sensor`."""

    key: str
    name: str
    device_class: str | None = None
    unit: str | None = None
    precision: int | None = None
    diagnostic: bool = False
    enabled_by_default: bool = True


@dataclass(frozen=True)
class BinarySpec:
    """An on/off state driven by Minut events, published as a Home Assistant `binary_sensor`.

    `on_events` switch it on, `off_events` off. A momentary state has no off event: it falls back
    to off after `mqtt.momentary_seconds`. On every poll, a non-momentary state is corrected from
    the device's `ongoing_events` (on exactly when one of its on-events is ongoing).
    """

    key: str
    name: str
    device_class: str | None
    on_events: frozenset[str]
    off_events: frozenset[str] = frozenset()
    momentary: bool = False
    diagnostic: bool = False
    corrected_by_poll: bool = True


@dataclass(frozen=True)
class HomeValueSpec:
    """A plain value of a home (not a number), published as a Home Assistant `sensor`."""

    key: str
    name: str
    icon: str | None = None


READINGS: tuple[ReadingSpec, ...] = (
    ReadingSpec("temperature", "Temperature", "temperature", "°C", precision=1),
    ReadingSpec("humidity", "Humidity", "humidity", "%", precision=0),
    ReadingSpec("sound", "Sound level", "sound_pressure", "dBA", precision=0),
    ReadingSpec("battery", "Battery", "battery", "%", precision=0, diagnostic=True),
    ReadingSpec(
        "battery_voltage",
        "Battery voltage",
        "voltage",
        "V",
        precision=2,
        diagnostic=True,
        enabled_by_default=False,
    ),
    ReadingSpec("pressure", "Pressure", "atmospheric_pressure", "hPa", precision=0),
    ReadingSpec("accelerometer_z", "Acceleration Z", None, "g", precision=2, diagnostic=True),
    ReadingSpec("part_als", "Ambient light (raw)", None, None, precision=0),
)
"""Readings a Point may carry. A reading becomes an entity only once a device carries it."""

READINGS_BY_KEY = {spec.key: spec for spec in READINGS}


def reading_spec(key: str) -> ReadingSpec:
    """The row for a reading key; an unknown key the API starts sending gets a plain sensor."""
    known = READINGS_BY_KEY.get(key)
    if known is not None:
        return known
    return ReadingSpec(key, key.replace("_", " ").capitalize())


def _events(*names: str) -> frozenset[str]:
    return frozenset(names)


DEVICE_STATES: tuple[BinarySpec, ...] = (
    BinarySpec(
        "heat", "Heat", "heat",
        _events("temperature_high"), _events("temperature_dropped_normal"),
    ),
    BinarySpec(
        "cold", "Cold", "cold",
        _events("temperature_low"), _events("temperature_risen_normal"),
    ),
    BinarySpec(
        "moisture", "Humidity high", "moisture",
        _events("humidity_high"), _events("humidity_dropped_normal"),
    ),
    BinarySpec(
        "dry", "Humidity low", "problem",
        _events("humidity_low"), _events("humidity_risen_normal"),
    ),
    BinarySpec(
        "loud_sound", "Loud sound", "sound",
        _events("avg_sound_high"), _events("sound_level_dropped_normal"),
    ),
    BinarySpec(
        "alarm_heard", "Alarm heard", "smoke",
        _events("alarm_heard"), _events("alarm_silenced"),
    ),
    BinarySpec(
        "tamper", "Tamper", "tamper",
        _events("tamper_removed", "tamper"), _events("tamper_mounted"),
    ),
    BinarySpec(
        "battery_low", "Battery low", "battery",
        _events("battery_low", "battery_empty"), diagnostic=True,
    ),
    BinarySpec(
        "button", "Button", None, _events("short_button_press"), momentary=True,
    ),
    BinarySpec(
        "glass_break", "Glass break", "safety", _events("glassbreak"), momentary=True,
    ),
    BinarySpec("motion", "Motion", "motion", _events("pir_motion"), momentary=True),
    BinarySpec(
        "connectivity", "Connectivity", "connectivity",
        _events("device_online"), _events("device_offline"), diagnostic=True,
        corrected_by_poll=False,
    ),
)  # fmt: skip
"""Binary states of a Point. Connectivity follows the device's `offline` flag on each poll."""

BATTERY_LOW_PERCENT = 10.0
"""`battery_low` is also on while the battery percentage is at or below this."""

HOME_STATES: tuple[BinarySpec, ...] = (
    BinarySpec(
        "disturbance", "Noise disturbance", "sound",
        _events("disturbance_first_notice", "disturbance_second_notice",
                "disturbance_third_notice"),
        _events("disturbance_ended", "disturbance_dismissed"),
        corrected_by_poll=False,
    ),
)  # fmt: skip
"""Binary states of a home. Noise events belong to the home, not to a Point."""

HOME_VALUES: tuple[HomeValueSpec, ...] = (
    HomeValueSpec("alarm_status", "Alarm status", "mdi:shield-home"),
)


@dataclass(frozen=True)
class BridgeValueSpec:
    """A diagnostic entity of the bridge itself, read from its status document."""

    key: str
    name: str
    component: str
    value_template: str
    device_class: str | None = None
    state_class: str | None = None
    icon: str | None = None


MINUT_CONNECTED = "connected"
"""`minut` in the bridge's status document while the Minut API answers."""

BRIDGE_VALUES: tuple[BridgeValueSpec, ...] = (
    BridgeValueSpec(
        "minut_connection", "Minut API", "binary_sensor",
        f"{{{{ 'ON' if value_json.minut == '{MINUT_CONNECTED}' else 'OFF' }}}}",
        device_class="connectivity",
    ),
    BridgeValueSpec(
        "minut_status", "Minut API status", "sensor", "{{ value_json.minut }}",
        icon="mdi:cloud-check",
    ),
    BridgeValueSpec(
        "last_poll", "Last poll", "sensor", "{{ value_json.last_poll }}",
        device_class="timestamp",
    ),
    BridgeValueSpec(
        "last_webhook", "Last webhook", "sensor", "{{ value_json.last_webhook }}",
        device_class="timestamp",
    ),
    BridgeValueSpec(
        "api_errors", "API errors", "sensor", "{{ value_json.api_errors }}",
        state_class="total_increasing", icon="mdi:cloud-alert",
    ),
    BridgeValueSpec(
        "events_forwarded", "Events forwarded", "sensor", "{{ value_json.events_forwarded }}",
        state_class="total_increasing", icon="mdi:transit-connection-variant",
    ),
)  # fmt: skip
"""The bridge as its own Home Assistant device: every entity is diagnostic."""

KNOWN_EVENT_TYPES: tuple[str, ...] = (
    "temperature_high", "temperature_low", "temperature_dropped_normal",
    "temperature_risen_normal", "humidity_high", "humidity_low", "humidity_dropped_normal",
    "humidity_risen_normal", "avg_sound_high", "sound_level_dropped_normal",
    "disturbance_first_notice", "disturbance_second_notice", "disturbance_third_notice",
    "disturbance_ended", "disturbance_snoozed", "disturbance_dismissed",
    "device_online", "device_offline", "battery_low", "battery_empty",
    "tamper", "tamper_removed", "tamper_mounted", "short_button_press",
    "alarm_heard", "alarm_silenced", "glassbreak", "pir_motion",
    "alarm_grace_period_expired", "smoking_detection_smoking_detected",
)  # fmt: skip
"""The documented webhook event types. Others are passed through as `other` for Home Assistant."""

OTHER_EVENT_TYPE = "other"
EVENT_TYPES_FOR_HA: tuple[str, ...] = (*KNOWN_EVENT_TYPES, OTHER_EVENT_TYPE)

HOME_EVENT_TYPES = frozenset(
    event for spec in HOME_STATES for event in spec.on_events | spec.off_events
) | {"disturbance_snoozed", "alarm_silenced", "alarm_grace_period_expired"}
"""Event types that concern a whole home, even when a device id comes with them."""


def ha_event_type(minut_type: str) -> str:
    """The `event_type` Home Assistant's event entity accepts for a Minut event type."""
    return minut_type if minut_type in KNOWN_EVENT_TYPES else OTHER_EVENT_TYPE
