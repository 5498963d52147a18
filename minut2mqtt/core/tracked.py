"""What the bridge currently believes about each Point and home (plain data, no I/O)."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta

from ..minut.guests import Stay
from ..minut.models import Device, Home, Reading
from .entities import DEVICE_STATES, HOME_STATES

ABANDONED_READING_AGE = timedelta(days=30)
"""A reading this old (a sensor dropped from the API years ago) gets no Home Assistant entity."""


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
    state_changed: bool = True
    """Its state document may differ from the one last published."""
    stale_at: datetime | None = None
    """When the next of its fresh readings turns stale (its document changes then)."""
    config_basis: object = None
    """What its discovery configs were last built from (None: not published yet)."""

    @property
    def name(self) -> str:
        return self.device.name

    def entity_readings(self, now: datetime) -> list[str]:
        """The readings that deserve an entity: all but those abandoned long ago."""
        oldest = now - ABANDONED_READING_AGE
        return sorted(
            key
            for key, reading in self.readings.items()
            if (reading.time or self.device.last_heard_from_at or oldest) > oldest
        )

    def end_momentary(self, now: float) -> bool:
        """Momentary states whose time is up fall back to off; True while some are still on."""
        for key, until in list(self.momentary_until.items()):
            if now >= until:
                del self.momentary_until[key]
                self.flags[key] = False
                self.state_changed = True
        return bool(self.momentary_until)


@dataclass
class TrackedHome:
    home: Home
    flags: dict[str, bool] = field(
        default_factory=lambda: {spec.key: False for spec in HOME_STATES}
    )
    """The home's binary states of the table, by key."""
    state_changed: bool = True
    config_basis: object = None
    stays: tuple[Stay, ...] | None = None
    """Its guests' stays, once read (None: not read, or Minut lists no guests for it)."""

    @property
    def name(self) -> str:
        return self.home.name
