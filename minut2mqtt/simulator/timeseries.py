"""Synthetic history for GET /devices/{id}/{sensor}: a gentle daily wave ending at the latest
reading, motion counts taken from the account's real `pir_motion` events."""

import math
from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any, Final

from .timefmt import format_time, utc_now

READING_KEY_BY_SENSOR: Final = {
    "temperature": "temperature",
    "humidity": "humidity",
    "sound_level": "sound",
}
DAILY_SWING_BY_SENSOR: Final = {"temperature": 0.8, "humidity": 3.0, "sound_level": 6.0}
SERIES_SENSORS: Final = frozenset({*READING_KEY_BY_SENSOR, "battery", "motion_events"})
MAX_POINTS: Final = 1000
VOLTS_LOST_PER_DAY: Final = 0.002
SECONDS_PER_DAY: Final = 86_400.0


def sample_times(start: datetime, end: datetime, resolution: timedelta) -> list[datetime]:
    """Times from `start` to `end` (inclusive) every `resolution`, at most the last MAX_POINTS."""
    if end < start:
        return []
    count = min(MAX_POINTS, int((end - start) / resolution) + 1)
    first = end - (end - start) % resolution - resolution * (count - 1)
    return [first + resolution * index for index in range(count)]


def synthetic_series(
    device: dict[str, Any],
    sensor: str,
    times: Sequence[datetime],
    resolution: timedelta,
    motion_times: Sequence[datetime],
) -> list[dict[str, Any]]:
    """`{"datetime", "value"}` points for `sensor` at `times`; empty when the device has no data."""
    now = utc_now()
    if sensor == "motion_events":
        return [
            {
                "datetime": format_time(moment),
                "value": sum(moment <= seen < moment + resolution for seen in motion_times),
            }
            for moment in times
        ]
    if sensor == "battery":
        voltage: float = device["battery"]["voltage"]
        return [
            {
                "datetime": format_time(moment),
                "value": voltage + VOLTS_LOST_PER_DAY * _days_between(moment, now),
            }
            for moment in times
        ]
    latest = device.get("latest_sensor_values", {}).get(READING_KEY_BY_SENSOR[sensor])
    if latest is None:
        return []
    swing = DAILY_SWING_BY_SENSOR[sensor]
    return [
        {
            "datetime": format_time(moment),
            "value": latest["value"] - swing * math.sin(2 * math.pi * _days_between(moment, now)),
        }
        for moment in times
    ]


def _days_between(earlier: datetime, later: datetime) -> float:
    return (later - earlier).total_seconds() / SECONDS_PER_DAY
