"""What the bridge currently believes about each Point and home (plain data, no I/O)."""

from __future__ import annotations

from dataclasses import dataclass, field

from ..minut.models import Device, Home, Reading
from .entities import DEVICE_STATES, HOME_STATES


@dataclass
class TrackedDevice:
    device: Device
    readings: dict[str, Reading] = field(default_factory=dict)
    """Latest value of every reading this device ever carried (a key missing later stays, ages)."""
    flags: dict[str, bool] = field(
        default_factory=lambda: {spec.key: False for spec in DEVICE_STATES}
    )
    """The binary states of the table, by key (`states` in the device's document)."""
    momentary_until: dict[str, float] = field(default_factory=dict)
    """Monotonic time at which each momentary state that is on falls back to off."""


@dataclass
class TrackedHome:
    home: Home
    flags: dict[str, bool] = field(
        default_factory=lambda: {spec.key: False for spec in HOME_STATES}
    )
    """The home's binary states of the table, by key."""
