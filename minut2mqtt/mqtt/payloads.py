"""The JSON documents on the plain topics, built from the bridge's state (pure functions)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from ..entities import DEVICE_STATES, HOME_STATES, ha_event_type, reading_spec
from ..minut.models import Event, Reading, format_time
from ..state import DeviceState, HomeState

FRESH = "fresh"
STALE = "stale"
ON = "ON"
OFF = "OFF"
ONLINE = "online"
OFFLINE = "offline"
QOS = 1
"""Retained documents (discovery, states, availability): a repeat is harmless."""
EVENT_QOS = 2
"""Events: a repeat would run an automation twice, and a broker restart can repeat QoS 1."""


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


def device_document(state: DeviceState, now: datetime, stale_after: float) -> dict[str, Any]:
    device = state.device
    readings = {}
    for key, reading in sorted(state.readings.items()):
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
        "states": {spec.key: ON if state.states[spec.key] else OFF for spec in DEVICE_STATES},
        "ongoing_events": sorted(device.ongoing_events),
    }


def home_document(state: HomeState) -> dict[str, Any]:
    home = state.home
    return {
        "home_id": home.home_id,
        "name": home.name,
        "alarm_status": home.alarm_status,
        "alarm_mode": home.alarm_mode,
        "disturbance_monitoring_active": home.disturbance_monitoring_active,
        "timezone": home.timezone,
        "devices": list(home.device_ids),
        "states": {spec.key: ON if state.states[spec.key] else OFF for spec in HOME_STATES},
    }


def event_document(event: Event) -> dict[str, Any]:
    """The whole Minut event, plus `event_type` for Home Assistant's event entity.

    `type` is Minut's own name, always; `event_type` is the same name when Home Assistant was told
    about it in discovery, else `other` (HA drops event types it was not told about).
    """
    return {**event.raw, "event_type": ha_event_type(event.type)}


def _rounded(value: float, precision: int | None) -> float:
    return round(value, (precision or 0) + 1)
