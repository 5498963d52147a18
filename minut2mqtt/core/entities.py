"""The table: every entity a Minut Point, a home and the bridge itself expose, declared once.

The state documents, the Home Assistant discovery payloads, the status page, docs/topics.md and
the tests are all derived from these rows. Each row says where its value comes from and what is
special about it, so no code elsewhere branches on an entity's key. Adding a reading or a binary
state is one row here.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass

from .. import __version__
from ..minut.models import Device, Home, Reading, format_time
from .status import MINUT_CONNECTED, Status, accounts_document


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
    source: Callable[[Device], float | None] | None = None
    """Where the value comes from when not from `latest_sensor_values` (the battery block); such
    a reading is as old as the device's last contact."""
    legacy: bool = False
    """The API stopped renewing it before 2021: old values stay, usually without an entity."""


@dataclass(frozen=True)
class PollRule:
    """How each poll sets a binary state of a Point, from the device as the API lists it."""

    value: Callable[[BinarySpec, Device], bool]
    note: str | None = None
    """What the rule adds to the state's off events, for the docs."""


def _while_ongoing(spec: BinarySpec, device: Device) -> bool:
    return bool(spec.on_events & device.ongoing_events)


WHILE_ONGOING = PollRule(_while_ongoing)
"""On exactly when one of the state's on-events is in the device's `ongoing_events`."""


@dataclass(frozen=True)
class BinarySpec:
    """An on/off state driven by Minut events, published as a Home Assistant `binary_sensor`.

    `on_events` switch it on, `off_events` off. A momentary state has no off event: it falls back
    to off after `mqtt.momentary_seconds`. On every poll, `poll` corrects it from the device
    (None: only events move it); a momentary state stays on until its time is up.
    """

    key: str
    name: str
    device_class: str | None
    on_events: frozenset[str]
    off_events: frozenset[str] = frozenset()
    momentary: bool = False
    diagnostic: bool = False
    poll: PollRule | None = WHILE_ONGOING
    available_while_offline: bool = False
    """Available even while its Point is offline (a disconnected Point must be able to say so)."""
    alert: bool = True
    """On is worth pointing out (the status page shows it); False where on is the normal."""

    def switch(self, flags: dict[str, bool], event_type: str) -> bool | None:
        """Apply one event to this state in `flags`: True when it switched it on, False off,
        None when the event does not concern it."""
        if event_type in self.on_events:
            flags[self.key] = True
            return True
        if event_type in self.off_events:
            flags[self.key] = False
            return False
        return None


@dataclass(frozen=True)
class HomeValueSpec:
    """A plain value of a home (not a number), published as a Home Assistant `sensor`."""

    key: str
    name: str
    read: Callable[[Home], object]
    icon: str | None = None


READINGS: tuple[ReadingSpec, ...] = (
    ReadingSpec("temperature", "Temperature", "temperature", "°C", precision=1),
    ReadingSpec("humidity", "Humidity", "humidity", "%", precision=0),
    ReadingSpec("sound", "Sound level", "sound_pressure", "dBA", precision=0),
    ReadingSpec(
        "battery",
        "Battery",
        "battery",
        "%",
        precision=0,
        diagnostic=True,
        source=lambda device: device.battery_percent,
    ),
    ReadingSpec(
        "battery_voltage",
        "Battery voltage",
        "voltage",
        "V",
        precision=2,
        diagnostic=True,
        enabled_by_default=False,
        source=lambda device: device.battery_voltage,
    ),
    ReadingSpec("pressure", "Pressure", "atmospheric_pressure", "hPa", precision=0, legacy=True),
    ReadingSpec("accelerometer_z", "Acceleration Z", None, "g", precision=2, diagnostic=True),
    ReadingSpec("part_als", "Ambient light (raw)", None, None, precision=0, legacy=True),
)
"""Readings a Point may carry. A reading becomes an entity only once a device carries it."""

READINGS_BY_KEY = {spec.key: spec for spec in READINGS}


def reading_spec(key: str) -> ReadingSpec:
    """The row for a reading key; an unknown key the API starts sending gets a plain sensor."""
    known = READINGS_BY_KEY.get(key)
    if known is not None:
        return known
    return ReadingSpec(key, key.replace("_", " ").capitalize())


def device_class_of(unit: str) -> str | None:
    """The device class of the readings measured in `unit` (for thresholds of the same)."""
    return next((spec.device_class for spec in READINGS if spec.unit == unit), None)


def readings_of(device: Device) -> Mapping[str, Reading]:
    """Every reading the device carries now: `latest_sensor_values` and the rows' sources."""
    readings = dict(device.readings)
    for spec in READINGS:
        value = spec.source(device) if spec.source is not None else None
        if value is not None:
            readings[spec.key] = Reading(value, device.last_heard_from_at)
    return readings


BATTERY_LOW_PERCENT = 10.0
"""`battery_low` is also on while the battery percentage is at or below this."""


def _ongoing_or_battery_low(spec: BinarySpec, device: Device) -> bool:
    percent = device.battery_percent
    low = percent is not None and percent <= BATTERY_LOW_PERCENT
    return low or _while_ongoing(spec, device)


ONLINE_FLAG = PollRule(
    lambda spec, device: not device.offline, "the device's `offline` flag on each poll"
)
ONGOING_OR_BATTERY_LOW = PollRule(
    _ongoing_or_battery_low,
    f"also on while the battery is at most {BATTERY_LOW_PERCENT:g} %",
)


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
        _events("battery_low", "battery_empty"), diagnostic=True, poll=ONGOING_OR_BATTERY_LOW,
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
        poll=ONLINE_FLAG, available_while_offline=True, alert=False,
    ),
)  # fmt: skip
"""Binary states of a Point."""

HOME_STATES: tuple[BinarySpec, ...] = (
    BinarySpec(
        "disturbance", "Noise disturbance", "sound",
        _events("disturbance_first_notice", "disturbance_second_notice",
                "disturbance_third_notice"),
        _events("disturbance_ended", "disturbance_dismissed"),
        poll=None,
    ),
)  # fmt: skip
"""Binary states of a home. Noise events belong to the home, not to a Point."""


@dataclass(frozen=True)
class GuestValueSpec:
    """A value of a home's current or next stay (for homes whose guests Minut lists)."""

    key: str
    name: str
    stay: str
    """`current` or `next`."""
    field: str
    """`name`, `check_in` or `check_out` of that stay."""
    timestamp: bool = False
    """A time: retained alone on `<base>/home/<id>/<key>` while known (Home Assistant 2024.x
    warns of every null timestamp), its entity available only while the stay exists."""


GUEST_VALUES: tuple[GuestValueSpec, ...] = (
    GuestValueSpec("current_guest", "Current guest", "current", "name"),
    GuestValueSpec("current_guest_check_out", "Current guest check-out", "current", "check_out",
                   timestamp=True),
    GuestValueSpec("next_guest", "Next guest", "next", "name"),
    GuestValueSpec("next_guest_check_in", "Next guest check-in", "next", "check_in",
                   timestamp=True),
)  # fmt: skip

HOME_VALUES: tuple[HomeValueSpec, ...] = (
    HomeValueSpec(
        "alarm_status", "Alarm status", lambda home: home.alarm_status, "mdi:shield-home"
    ),
)


@dataclass(frozen=True)
class StatusValue:
    """One key of the bridge's status document (`<base>/bridge/state`)."""

    key: str
    read: Callable[[Status], object]
    own_topic: bool = False
    """Also retained alone on `<base>/bridge/<key>`, once it is known: Home Assistant 2024.x
    warns of every state of a timestamp sensor it cannot parse, an unknown (null) one too."""


MINUT_STATUS = StatusValue("minut", lambda status: status.minut)
LAST_POLL = StatusValue("last_poll", lambda status: format_time(status.last_poll), own_topic=True)
LAST_WEBHOOK = StatusValue(
    "last_webhook", lambda status: format_time(status.last_webhook), own_topic=True
)
API_ERRORS = StatusValue("api_errors", lambda status: status.api_errors)
EVENTS_FORWARDED = StatusValue("events_forwarded", lambda status: status.events_published)

STATUS_VALUES: tuple[StatusValue, ...] = (
    MINUT_STATUS,
    StatusValue("error", lambda status: status.last_api_error),
    LAST_POLL,
    LAST_WEBHOOK,
    API_ERRORS,
    EVENTS_FORWARDED,
    StatusValue("webhooks_refused", lambda status: dict(status.webhook_refusals)),
    StatusValue("accounts", accounts_document),
    StatusValue("version", lambda status: __version__),
)
"""The bridge's status document, key by key; the bridge's entities below read these keys."""


@dataclass(frozen=True)
class BridgeValueSpec:
    """A diagnostic entity of the bridge itself, reading one key of its status document."""

    key: str
    name: str
    component: str
    value: StatusValue
    on_when: str | None = None
    """A binary_sensor is ON while the value is this."""
    device_class: str | None = None
    state_class: str | None = None
    icon: str | None = None

    @property
    def value_template(self) -> str | None:
        """How to read the value from the status document (None: it has a topic of its own)."""
        if self.value.own_topic:
            return None
        value = f"value_json.{self.value.key}"
        if self.on_when is None:
            return f"{{{{ {value} }}}}"
        return f"{{{{ 'ON' if {value} == '{self.on_when}' else 'OFF' }}}}"


BRIDGE_VALUES: tuple[BridgeValueSpec, ...] = (
    BridgeValueSpec(
        "minut_connection", "Minut API", "binary_sensor", MINUT_STATUS,
        on_when=MINUT_CONNECTED, device_class="connectivity",
    ),
    BridgeValueSpec(
        "minut_status", "Minut API status", "sensor", MINUT_STATUS, icon="mdi:cloud-check",
    ),
    BridgeValueSpec("last_poll", "Last poll", "sensor", LAST_POLL, device_class="timestamp"),
    BridgeValueSpec(
        "last_webhook", "Last webhook", "sensor", LAST_WEBHOOK, device_class="timestamp",
    ),
    BridgeValueSpec(
        "api_errors", "API errors", "sensor", API_ERRORS,
        state_class="total_increasing", icon="mdi:cloud-alert",
    ),
    BridgeValueSpec(
        "events_forwarded", "Events forwarded", "sensor", EVENTS_FORWARDED,
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


def _alert_events(specs: tuple[BinarySpec, ...]) -> tuple[str, ...]:
    """The events that make each state worth pointing out: on-events of alert states, the
    off-events of the others (a Point going offline)."""
    found: list[str] = []
    for spec in specs:
        for event in sorted(spec.on_events if spec.alert else spec.off_events):
            if event not in found:
                found.append(event)
    return tuple(found)


DEVICE_TRIGGER_EVENTS = _alert_events(DEVICE_STATES)
"""A Home Assistant device trigger for each of these on every Point."""
HOME_TRIGGER_EVENTS = (*_alert_events(HOME_STATES), "alarm_grace_period_expired")
"""A Home Assistant device trigger for each of these on every home."""


def ha_event_type(minut_type: str) -> str:
    """The `event_type` Home Assistant's event entity accepts for a Minut event type."""
    return minut_type if minut_type in KNOWN_EVENT_TYPES else OTHER_EVENT_TYPE
