"""The JSON documents on the plain topics, built from what the bridge tracks (pure functions)."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from ..minut.guests import current_and_next
from ..minut.models import Event, Reading, format_time
from .controls import control_values, controls_of_device, controls_of_home
from .entities import (
    DEVICE_STATES,
    GUEST_VALUES,
    HOME_STATES,
    HOME_VALUES,
    STATUS_VALUES,
    BinarySpec,
    ha_event_type,
    reading_spec,
)
from .status import Status
from .tracked import TrackedDevice, TrackedHome

FRESH = "fresh"
STALE = "stale"
ON = "ON"
OFF = "OFF"
ONLINE = "online"
OFFLINE = "offline"


def reading_status(
    reading: Reading, fallback_time: datetime | None, now: datetime, stale_after: float
) -> str:
    """`fresh` while the reading is younger than `stale_after` seconds, else `stale`.

    A reading without its own time is as old as the device's last contact; with neither it is
    stale, so that a value of unknown age is never shown as current.
    """
    measured_at = reading.time or fallback_time
    if measured_at is None:
        return STALE
    return FRESH if (now - measured_at).total_seconds() <= stale_after else STALE


def next_stale_at(tracked: TrackedDevice, now: datetime, stale_after: float) -> datetime | None:
    """When the next of the device's fresh readings turns stale (None: none is fresh)."""
    fallback = tracked.device.last_heard_from_at
    lifetime = timedelta(seconds=stale_after, milliseconds=1)  # stale once strictly older
    ends = (
        measured + lifetime
        for reading in tracked.readings.values()
        if (measured := reading.time or fallback) is not None
    )
    return min((end for end in ends if end > now), default=None)


def device_document(tracked: TrackedDevice, now: datetime, stale_after: float) -> dict[str, Any]:
    device = tracked.device
    readings = {}
    for key, reading in sorted(tracked.readings.items()):
        spec = reading_spec(key)
        readings[key] = {
            "value": _rounded(reading.value, spec.precision),
            "unit": spec.unit,
            "time": format_time(reading.time or device.last_heard_from_at),
            "status": reading_status(reading, device.last_heard_from_at, now, stale_after),
        }
    return {
        "device_id": device.device_id,
        "home_id": device.home_id,
        "name": device.name,
        "model": device.model,
        "firmware": device.firmware,
        "online": not device.offline,
        "last_heard_from_at": format_time(device.last_heard_from_at),
        "next_heartbeat_at": format_time(device.next_heartbeat_at),
        "readings": readings,
        "states": _on_off(DEVICE_STATES, tracked.flags),
        "ongoing_events": sorted(device.ongoing_events),
        "controls": control_values(controls_of_device(device), device),
        "reactions": [dict(reaction.raw) for reaction in device.reactions],
        "quiet_hours": dict(device.quiet_hours.raw) if device.quiet_hours else None,
    }


def home_document(tracked: TrackedHome, now: datetime) -> dict[str, Any]:
    home = tracked.home
    return {
        "home_id": home.home_id,
        "name": home.name,
        **{spec.key: spec.read(home) for spec in HOME_VALUES},
        "alarm_mode": home.alarm_mode,
        "disturbance_monitoring_active": home.disturbance_monitoring_active,
        "timezone": home.timezone,
        "devices": list(home.device_ids),
        "states": _on_off(HOME_STATES, tracked.flags),
        "controls": control_values(controls_of_home(home), home),
        **guest_values(tracked, now),
    }


def guest_values(tracked: TrackedHome, now: datetime) -> dict[str, Any]:
    """`guests` (every stay; null: not read, or not listed for this home), `current_stay`,
    `next_stay` and the table's guest values."""
    current, upcoming = (
        stay.document() if stay else None for stay in current_and_next(tracked.stays or (), now)
    )
    stays: dict[str, dict[str, Any] | None] = {"current": current, "next": upcoming}
    values = {spec.key: (stays[spec.stay] or {}).get(spec.field) for spec in GUEST_VALUES}
    return {
        "guests": None if tracked.stays is None else [s.document() for s in tracked.stays],
        "current_stay": current,
        "next_stay": upcoming,
        **values,
    }


def event_document(event: Event) -> dict[str, Any]:
    """The whole Minut event, plus `event_type` for Home Assistant's event entity.

    `type` is Minut's own name, always; `event_type` is the same name when Home Assistant was told
    about it in discovery, else `other` (HA drops event types it was not told about).
    """
    return {**event.raw, "event_type": ha_event_type(event.type)}


def status_document(status: Status) -> dict[str, Any]:
    """The bridge's own state, retained on its status topic (its diagnostic entities read it)."""
    return {value.key: value.read(status) for value in STATUS_VALUES}


def _on_off(specs: tuple[BinarySpec, ...], flags: dict[str, bool]) -> dict[str, str]:
    return {spec.key: ON if flags[spec.key] else OFF for spec in specs}


def _rounded(value: float, precision: int | None) -> float:
    return round(value, (precision or 0) + 1)
