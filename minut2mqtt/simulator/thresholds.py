"""A Point's thresholds ("reactions") and quiet hours: the limits `PUT /devices/{id}` enforces,
the defaults, and how a write merges into what a device carries.

The contract gives the sound defaults (75 dB by day, 70 dB in quiet hours, 10 minutes, 5-15
minutes allowed) but no value limits and no temperature or humidity names: the limits below are
the simulator's choice, kept here in one place for the bridge's tests to read.
"""

import copy
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final

from .api import JsonObject


@dataclass(frozen=True)
class Limits:
    """The values a setting accepts: `minimum` to `maximum` inclusive, multiples of `step`."""

    minimum: float
    maximum: float
    step: float
    unit: str

    def admits(self, value: float) -> bool:
        steps = (value - self.minimum) / self.step
        return self.minimum <= value <= self.maximum and math.isclose(steps, round(steps))

    def describe(self) -> str:
        return f"{self.minimum:g}-{self.maximum:g} {self.unit} in steps of {self.step:g}"


SOUND_LIMITS: Final = Limits(45, 90, 1, "dB")
TEMPERATURE_LIMITS: Final = Limits(-10, 50, 0.5, "°C")
HUMIDITY_LIMITS: Final = Limits(0, 100, 1, "%")
REACTION_LIMITS: Final[Mapping[str, Limits]] = {
    "sound_level_high": SOUND_LIMITS,
    "sound_level_high_quiet_hours": SOUND_LIMITS,
    "temperature_high": TEMPERATURE_LIMITS,
    "temperature_low": TEMPERATURE_LIMITS,
    "humidity_high": HUMIDITY_LIMITS,
    "humidity_low": HUMIDITY_LIMITS,
}
"""The reaction types a device may be given, and their `value` limits. A type a device already
carries (seeded by a test, as a future Minut might) may be rewritten with any finite value."""
DURATION_LIMITS: Final = Limits(300, 900, 60, "s")
"""`duration_seconds` of every reaction type: 5 to 15 whole minutes."""

DEFAULT_SOUND_DURATION_SECONDS: Final = 600
QUIET_HOURS_TIME: Final = re.compile(r"^([01]\d|2[0-3]):[0-5]\d$")
"""Quiet hours' `start` and `end`: HH:MM, 24-hour."""


def default_reactions() -> list[JsonObject]:
    """The contract's defaults: 75 dB by day and 70 dB in quiet hours, for 10 minutes."""
    return [
        reaction("sound_level_high", 75),
        reaction("sound_level_high_quiet_hours", 70),
    ]


def default_quiet_hours(enabled: bool = False) -> JsonObject:
    return {"enabled": enabled, "start": "22:00", "end": "07:00"}


def reaction(
    reaction_type: str, value: float, duration_seconds: int = DEFAULT_SOUND_DURATION_SECONDS
) -> JsonObject:
    """One reaction as the API shows it, with no notifications."""
    return {
        "type": reaction_type,
        "value": value,
        "duration_seconds": duration_seconds,
        "notifications": [],
    }


def check_seeded_reactions(reactions: object) -> list[JsonObject]:
    """Reactions a test gives a device directly: any type and value, but well formed."""
    if not isinstance(reactions, list | tuple):
        raise ValueError("reactions must be a list")
    for entry in reactions:
        if not isinstance(entry, Mapping) or not isinstance(entry.get("type"), str):
            raise ValueError(f"every reaction needs a string type, got {entry!r}")
    _check_unique_types(reactions)
    return [dict(copy.deepcopy(entry)) for entry in reactions]


def merged_reactions(carried: list[JsonObject], changes: object) -> list[JsonObject]:
    """`carried` with each reaction of `changes` replacing the whole entry of its type (a new
    type is appended); ValueError, with nothing changed, if any of `changes` is invalid."""
    if not isinstance(changes, list):
        raise ValueError("reactions must be a list of reaction objects")
    carried_types = {entry["type"] for entry in carried}
    for change in changes:
        _check_reaction(change, carried_types)
    _check_unique_types(changes)
    by_type = {change["type"]: copy.deepcopy(change) for change in changes}
    merged = [by_type.pop(entry["type"], copy.deepcopy(entry)) for entry in carried]
    return merged + list(by_type.values())


def merged_quiet_hours(carried: JsonObject | None, changes: object) -> JsonObject:
    """`carried` (the defaults if the device has none) with the keys of `changes` replaced."""
    if not isinstance(changes, dict):
        raise ValueError("quiet_hours must be an object")
    unknown = set(changes) - {"enabled", "start", "end"}
    if unknown:
        raise ValueError(f"quiet_hours has unknown keys: {', '.join(sorted(unknown))}")
    if "enabled" in changes and not isinstance(changes["enabled"], bool):
        raise ValueError(f"quiet_hours.enabled must be true or false, got {changes['enabled']!r}")
    for key in ("start", "end"):
        if key in changes and not (
            isinstance(changes[key], str) and QUIET_HOURS_TIME.match(changes[key])
        ):
            raise ValueError(f"quiet_hours.{key} must be HH:MM (00:00-23:59), got {changes[key]!r}")
    return {**(carried or default_quiet_hours()), **changes}


def _check_reaction(change: object, carried_types: set[str]) -> None:
    if not isinstance(change, dict) or not isinstance(change.get("type"), str):
        raise ValueError(f"every reaction must be an object with a string type, got {change!r}")
    reaction_type: str = change["type"]
    limits = REACTION_LIMITS.get(reaction_type)
    if limits is None and reaction_type not in carried_types:
        raise ValueError(f"unknown reaction type {reaction_type!r}")
    if "value" not in change:
        raise ValueError(f"reaction {reaction_type!r} needs a value")
    value = change["value"]
    if not _is_number(value) or (limits is not None and not limits.admits(value)):
        allowed = limits.describe() if limits else "a finite number"
        raise ValueError(f"{reaction_type}.value must be {allowed}, got {value!r}")
    if "duration_seconds" in change:
        duration = change["duration_seconds"]
        if not _is_number(duration) or not DURATION_LIMITS.admits(duration):
            allowed = DURATION_LIMITS.describe()
            raise ValueError(
                f"{reaction_type}.duration_seconds must be {allowed}, got {duration!r}"
            )
    notifications = change.get("notifications", [])
    if not isinstance(notifications, list) or not all(
        isinstance(channel, str) for channel in notifications
    ):
        raise ValueError(f"{reaction_type}.notifications must be a list of strings")


def _check_unique_types(reactions: list[Any] | tuple[Any, ...]) -> None:
    types = [entry["type"] for entry in reactions]
    repeated = sorted({kind for kind in types if types.count(kind) > 1})
    if repeated:
        raise ValueError(f"one reaction per type, repeated: {', '.join(repeated)}")


def _is_number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)
