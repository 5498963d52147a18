"""The controls: what a home and a Point let users change from MQTT, declared once.

Each row says where its value is read from (the home or the device as Minut shows it), how a
command payload is understood, and which Minut API writes carry it out. Discovery
(`core/control_configs.py`), the state documents, the command runner (`runtime/commands.py`),
docs/topics.md and the tests are derived from these rows. Nothing here does I/O.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from ..minut.models import Device, Home, Reaction, alarm_write
from .entities import device_class_of

Subject = TypeVar("Subject", Home, Device)

ALARM_STATES: Mapping[str, str] = {
    "off": "disarmed",
    "on": "armed_away",
    "on_grace_period": "arming",
    "off_grace_period": "pending",
    "critical_event": "triggered",
}
"""Minut's `alarm_status` → Home Assistant's alarm_control_panel state."""
SETTLING_ALARM_STATES = frozenset({"on_grace_period", "off_grace_period"})
"""Statuses Minut leaves by itself: the bridge reads the home again soon after a command."""
ARM_AWAY = "ARM_AWAY"
DISARM = "DISARM"
ON, OFF = "ON", "OFF"
MAX_COMMAND_BYTES = 256
"""A longer command payload is refused unread."""
TIME_OF_DAY = re.compile(r"^([01]\d|2[0-3]):[0-5]\d$")
TIME_OF_DAY_PATTERN = TIME_OF_DAY.pattern


class CommandRefused(ValueError):
    """A command that cannot be carried out; the message is the plain reason."""


@dataclass(frozen=True)
class ApiWrite:
    """One Minut API call that carries out a command."""

    method: str
    path: str
    body: Mapping[str, Any]


@dataclass(frozen=True)
class AlarmCommand:
    action: str
    code: str | None


@dataclass(frozen=True)
class NumberRange:
    minimum: float
    maximum: float
    step: float
    unit: str | None
    device_class: str | None = None

    def check(self, value: float) -> float:
        steps = (value - self.minimum) / self.step
        if not self.minimum <= value <= self.maximum or not math.isclose(steps, round(steps)):
            unit = f" {self.unit}" if self.unit else ""
            raise CommandRefused(
                f"{value:g} is not allowed: {self.minimum:g} to {self.maximum:g}{unit} "
                f"in steps of {self.step:g}"
            )
        return value


@dataclass(frozen=True)
class ControlSpec(Generic[Subject]):
    """One control of a home or a Point. `read` gives its value in the state document's
    `controls` (None: the subject has no such setting, and gets no entity); `parse` turns a
    command payload into a value; `writes` gives the API calls, each an alternative to the
    previous (the first that the API accepts is remembered)."""

    key: str
    name: str
    component: str
    read: Callable[[Subject], object]
    parse: Callable[[str], object]
    writes: Callable[[Subject, Any], tuple[ApiWrite, ...]]
    range: NumberRange | None = None
    pattern: str | None = None
    icon: str | None = None


# -- payloads --------------------------------------------------------------------------------


def parse_alarm(payload: str) -> AlarmCommand:
    """`ARM_AWAY` or `DISARM`, alone or as JSON `{"action": …, "code": …}` (Home Assistant's
    command template when a code is configured)."""
    text = payload.strip()
    action, code = text, None
    if text.startswith("{"):
        try:
            parsed = json.loads(text)
        except ValueError:
            raise CommandRefused("not valid JSON") from None
        if not isinstance(parsed, dict) or not isinstance(parsed.get("action"), str):
            raise CommandRefused('JSON commands need "action": "ARM_AWAY" or "DISARM"')
        action = parsed["action"]
        given = parsed.get("code")
        code = str(given) if isinstance(given, str | int) and given != "" else None
    action = action.upper()
    if action not in (ARM_AWAY, DISARM):
        raise CommandRefused(f"unknown alarm command {action[:40]!r}: ARM_AWAY or DISARM")
    return AlarmCommand(action, code)


def parse_switch(payload: str) -> bool:
    text = payload.strip().upper()
    if text in (ON, "TRUE", "1"):
        return True
    if text in (OFF, "FALSE", "0"):
        return False
    raise CommandRefused(f"{payload[:40]!r} is not ON or OFF")


def number_parser(allowed: NumberRange) -> Callable[[str], float]:
    def parse(payload: str) -> float:
        try:
            value = float(payload.strip())
        except ValueError:
            raise CommandRefused(f"{payload[:40]!r} is not a number") from None
        if not math.isfinite(value):
            raise CommandRefused(f"{payload[:40]!r} is not a finite number")
        return allowed.check(value)

    return parse


def parse_time_of_day(payload: str) -> str:
    text = payload.strip()
    if not TIME_OF_DAY.match(text):
        raise CommandRefused(f"{text[:40]!r} is not a time of day as HH:MM (00:00 to 23:59)")
    return text


# -- the home's controls ---------------------------------------------------------------------


def alarm_state(home: Home) -> str | None:
    """Home Assistant's state for the home's alarm; an unknown status passes through raw."""
    status = home.alarm_status
    return None if status is None else ALARM_STATES.get(status, status)


def _alarm_writes(home: Home, command: AlarmCommand) -> tuple[ApiWrite, ...]:
    status = alarm_write(armed=command.action == ARM_AWAY)
    return (
        ApiWrite("PATCH", f"/homes/{home.home_id}/alarm", status),  # v8 clients
        ApiWrite("PUT", f"/homes/{home.home_id}", status),  # older clients
    )


def _on_off(value: bool | None) -> str | None:
    return None if value is None else (ON if value else OFF)


HOME_CONTROLS: tuple[ControlSpec[Home], ...] = (
    ControlSpec(
        "alarm", "Alarm", "alarm_control_panel",
        read=alarm_state, parse=parse_alarm, writes=_alarm_writes,
    ),
    ControlSpec(
        "noise_monitoring", "Noise monitoring", "switch",
        read=lambda home: _on_off(home.disturbance_monitoring_active),
        parse=parse_switch,
        writes=lambda home, on: (
            ApiWrite("PUT", f"/homes/{home.home_id}", {"disturbance_monitoring_active": on}),
        ),
        icon="mdi:account-voice",
    ),
)  # fmt: skip


# -- a Point's thresholds and quiet hours ----------------------------------------------------

SOUND_DAY = "sound_level_high"
SOUND_QUIET_HOURS = "sound_level_high_quiet_hours"
SOUND_REACTIONS = (SOUND_DAY, SOUND_QUIET_HOURS)
SOUND_RANGE = NumberRange(45, 90, 1, "dB", "sound_pressure")
TEMPERATURE_RANGE = NumberRange(-10, 50, 0.5, "°C", device_class_of("°C"))
HUMIDITY_RANGE = NumberRange(0, 100, 1, "%", device_class_of("%"))
DURATION_RANGE = NumberRange(5, 15, 1, "min", "duration")
UNKNOWN_REACTION_RANGE = NumberRange(-1000, 1000, 0.1, None)
"""A reaction type the table does not know yet: any value; Minut itself says what it takes."""


def _reaction_value(device: Device, reaction_type: str) -> float | None:
    reaction = device.reaction(reaction_type)
    return None if reaction is None else reaction.value


def _merged(device: Device, reaction_type: str, **changes: Any) -> dict[str, Any]:
    """The whole reaction of this type as the device carries it, with `changes` made."""
    carried: Reaction | None = device.reaction(reaction_type)
    return {**(carried.raw if carried else {"type": reaction_type}), **changes}


def reaction_writes(reaction_type: str) -> Callable[[Device, float], tuple[ApiWrite, ...]]:
    def writes(device: Device, value: float) -> tuple[ApiWrite, ...]:
        body = {"reactions": [_merged(device, reaction_type, value=_plain_number(value))]}
        return (ApiWrite("PUT", f"/devices/{device.device_id}", body),)

    return writes


def _duration_minutes(device: Device) -> float | None:
    reaction = device.reaction(SOUND_DAY)
    seconds = reaction.duration_seconds if reaction else None
    return None if seconds is None else round(seconds / 60, 1)


def _duration_writes(device: Device, minutes: float) -> tuple[ApiWrite, ...]:
    """The noise duration is one setting in Minut's app: both sound reactions get it."""
    seconds = round(minutes * 60)
    reactions = [
        _merged(device, kind, duration_seconds=seconds)
        for kind in SOUND_REACTIONS
        if device.reaction(kind) is not None
    ]
    return (ApiWrite("PUT", f"/devices/{device.device_id}", {"reactions": reactions}),)


def _quiet_hours_writes(field: str) -> Callable[[Device, object], tuple[ApiWrite, ...]]:
    def writes(device: Device, value: object) -> tuple[ApiWrite, ...]:
        carried = device.quiet_hours.raw if device.quiet_hours else {}
        body = {"quiet_hours": {**carried, field: value}}
        return (ApiWrite("PUT", f"/devices/{device.device_id}", body),)

    return writes


def threshold(
    reaction_type: str, name: str, allowed: NumberRange, key: str | None = None
) -> ControlSpec[Device]:
    return ControlSpec(
        key or reaction_type,
        name,
        "number",
        read=lambda device: _reaction_value(device, reaction_type),
        parse=number_parser(allowed),
        writes=reaction_writes(reaction_type),
        range=allowed,
    )


DEVICE_CONTROLS: tuple[ControlSpec[Device], ...] = (
    threshold(SOUND_DAY, "Noise threshold", SOUND_RANGE),
    threshold(SOUND_QUIET_HOURS, "Noise threshold in quiet hours", SOUND_RANGE),
    ControlSpec(
        "sound_duration", "Noise duration", "number",
        read=_duration_minutes, parse=number_parser(DURATION_RANGE), writes=_duration_writes,
        range=DURATION_RANGE,
    ),
    threshold("temperature_high", "High temperature threshold", TEMPERATURE_RANGE),
    threshold("temperature_low", "Low temperature threshold", TEMPERATURE_RANGE),
    threshold("humidity_high", "High humidity threshold", HUMIDITY_RANGE),
    threshold("humidity_low", "Low humidity threshold", HUMIDITY_RANGE),
    ControlSpec(
        "quiet_hours", "Quiet hours", "switch",
        read=lambda device: _on_off(device.quiet_hours.enabled if device.quiet_hours else None),
        parse=parse_switch, writes=_quiet_hours_writes("enabled"), icon="mdi:sleep",
    ),
    ControlSpec(
        "quiet_hours_start", "Quiet hours start", "text",
        read=lambda device: device.quiet_hours.start if device.quiet_hours else None,
        parse=parse_time_of_day, writes=_quiet_hours_writes("start"),
        pattern=TIME_OF_DAY_PATTERN, icon="mdi:clock-start",
    ),
    ControlSpec(
        "quiet_hours_end", "Quiet hours end", "text",
        read=lambda device: device.quiet_hours.end if device.quiet_hours else None,
        parse=parse_time_of_day, writes=_quiet_hours_writes("end"),
        pattern=TIME_OF_DAY_PATTERN, icon="mdi:clock-end",
    ),
)  # fmt: skip
"""A Point's controls: each exists once the device carries its setting."""
DEVICE_CONTROLS_BY_KEY = {spec.key: spec for spec in DEVICE_CONTROLS}


def controls_of_device(device: Device) -> list[ControlSpec[Device]]:
    """The device's controls: the table's rows it carries, then its unknown reaction types."""
    specs = [spec for spec in DEVICE_CONTROLS if spec.read(device) is not None]
    for reaction in device.reactions:
        if reaction.type not in DEVICE_CONTROLS_BY_KEY and reaction.value is not None:
            name = reaction.type.replace("_", " ").capitalize()
            specs.append(
                threshold(reaction.type, name, UNKNOWN_REACTION_RANGE, _unknown_key(reaction.type))
            )
    return specs


def _unknown_key(reaction_type: str) -> str:
    """A key for a reaction type the table does not know: safe in topics and templates."""
    return "reaction_" + re.sub(r"[^a-z0-9_]", "_", reaction_type.lower())


def controls_of_home(home: Home) -> list[ControlSpec[Home]]:
    return [spec for spec in HOME_CONTROLS if spec.read(home) is not None]


def control_values(specs: list[ControlSpec[Subject]], subject: Subject) -> dict[str, object]:
    """The `controls` of a state document: each control's current value (whole numbers whole)."""
    return {spec.key: control_value(spec, subject) for spec in specs}


def shown_once_written(value: object) -> object:
    """What a control shows once a parsed command `value` is carried out (as `read` gives it)."""
    if isinstance(value, AlarmCommand):
        return ALARM_STATES["on" if value.action == ARM_AWAY else "off"]
    return _on_off(value) if isinstance(value, bool) else value


def control_value(spec: ControlSpec[Subject], subject: Subject) -> object:
    """The control's current value as documents and answers show it (whole numbers whole)."""
    value = spec.read(subject)
    return _plain_number(value) if isinstance(value, float) else value


def _plain_number(value: float) -> float | int:
    return int(value) if float(value).is_integer() else value
