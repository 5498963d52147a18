"""Typed views of the Minut API's JSON, tolerant of missing keys, nulls and unknown fields."""

from __future__ import annotations

import base64
import binascii
import contextlib
import hashlib
import hmac
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any


class MinutDataError(ValueError):
    """A Minut object lacks what identifies it (an id); it cannot be used at all."""


@dataclass(frozen=True)
class Reading:
    value: float
    time: datetime | None


@dataclass(frozen=True)
class Reaction:
    """One threshold of a Point (`reactions[]`): its type, value and how long it must hold."""

    type: str
    value: float | None
    duration_seconds: int | None
    raw: Mapping[str, Any]
    """The whole reaction as the API gave it: a write sends it back with one field changed."""


@dataclass(frozen=True)
class QuietHours:
    enabled: bool | None
    start: str | None
    end: str | None
    raw: Mapping[str, Any]


@dataclass(frozen=True)
class Device:
    device_id: str
    home_id: str | None
    name: str
    hardware_version: int | None = None
    firmware: str | None = None
    offline: bool = False
    battery_percent: float | None = None
    battery_voltage: float | None = None
    readings: Mapping[str, Reading] = field(default_factory=dict)
    ongoing_events: frozenset[str] = frozenset()
    last_heard_from_at: datetime | None = None
    next_heartbeat_at: datetime | None = None
    reactions: tuple[Reaction, ...] = ()
    quiet_hours: QuietHours | None = None

    def reaction(self, reaction_type: str) -> Reaction | None:
        return next((r for r in self.reactions if r.type == reaction_type), None)

    @property
    def model(self) -> str:
        return f"Point v{self.hardware_version}" if self.hardware_version else "Point"


@dataclass(frozen=True)
class Home:
    home_id: str
    name: str
    alarm_status: str | None = None
    alarm_mode: str | None = None
    disturbance_monitoring_active: bool | None = None
    timezone: str | None = None
    device_ids: tuple[str, ...] = ()


@dataclass(frozen=True)
class Event:
    id: str
    type: str
    created_at: datetime | None
    home_id: str | None
    device_id: str | None
    raw: Mapping[str, Any]

    @property
    def subject_id(self) -> str:
        return self.device_id or self.home_id or "?"


@dataclass(frozen=True)
class HookCredentials:
    """What proves a delivery comes from our hook at Minut, kept in state_dir."""

    hook_id: str
    url: str
    hook_secret: str
    token: str

    def signature_valid(self, body: bytes, signature: str) -> bool:
        """Whether `signature` is the HMAC-SHA256 of `body` under our hook secret, written as
        hex, `sha256=<hex>` or base64 (how Minut writes it is unknown); constant time."""
        expected = hmac.new(self.hook_secret.encode(), body, hashlib.sha256).digest()
        return any(hmac.compare_digest(expected, given) for given in _digest_forms(signature))

    def token_valid(self, token: str) -> bool:
        return hmac.compare_digest(token.encode(), self.token.encode())


def _digest_forms(signature: str) -> list[bytes]:
    """The bytes a signature header may stand for: hex (maybe `sha256=`-prefixed) or base64."""
    text = signature.strip()
    text = text.split("=", 1)[1] if text.lower().startswith("sha256=") else text
    forms = []
    with contextlib.suppress(ValueError):
        forms.append(bytes.fromhex(text))
    for decode in (base64.b64decode, base64.urlsafe_b64decode):
        with contextlib.suppress(ValueError, binascii.Error):
            forms.append(decode(text + "=" * (-len(text) % 4)))
    return forms


def parse_time(value: Any) -> datetime | None:
    if not isinstance(value, str) or not value:
        return None
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def format_time(value: datetime | None) -> str | None:
    if value is None:
        return None
    return value.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def parse_device(raw: Mapping[str, Any]) -> Device:
    device_id = _identifier(raw, "device_id", "device")
    battery = _mapping(raw.get("battery"))
    firmware = _mapping(raw.get("firmware"))
    return Device(
        device_id=device_id,
        home_id=_optional_str(raw.get("home")),
        name=_optional_str(raw.get("description")) or f"Point {device_id[-6:]}",
        hardware_version=_optional_int(raw.get("hardware_version")),
        firmware=_optional_str(firmware.get("installed")),
        offline=raw.get("offline") is True,
        battery_percent=_optional_float(battery.get("percent")),
        battery_voltage=_optional_float(battery.get("voltage")),
        readings=_readings(raw.get("latest_sensor_values")),
        ongoing_events=frozenset(
            event for event in _list(raw.get("ongoing_events")) if isinstance(event, str)
        ),
        last_heard_from_at=parse_time(raw.get("last_heard_from_at")),
        next_heartbeat_at=parse_time(raw.get("next_heartbeat_at")),
        reactions=_reactions(raw.get("reactions")),
        quiet_hours=_quiet_hours(raw.get("quiet_hours")),
    )


def parse_home(raw: Mapping[str, Any]) -> Home:
    home_id = _identifier(raw, "home_id", "home")
    monitoring = raw.get("disturbance_monitoring_active")
    return Home(
        home_id=home_id,
        name=_optional_str(raw.get("name")) or f"Home {home_id[-6:]}",
        alarm_status=_optional_str(raw.get("alarm_status")),
        alarm_mode=_optional_str(raw.get("alarm_mode")),
        disturbance_monitoring_active=monitoring if isinstance(monitoring, bool) else None,
        timezone=_optional_str(raw.get("timezone")),
        device_ids=tuple(d for d in _list(raw.get("devices")) if isinstance(d, str)),
    )


def alarm_write(*, armed: bool) -> dict[str, Any]:
    """The body that arms or disarms a home (the same field the home is read with)."""
    return {"alarm_status": "on" if armed else "off"}


def parse_event(raw: Mapping[str, Any]) -> Event:
    event_id = _identifier(raw, "id", "event")
    event_type = raw.get("type")
    if event_type is None:
        raise MinutDataError("event has no 'type'")
    if not isinstance(event_type, str) or not event_type:
        raise MinutDataError("event 'type' must be a non-empty string")
    return Event(
        id=event_id,
        type=event_type,
        created_at=parse_time(raw.get("created_at")),
        home_id=_optional_str(raw.get("home_id")),
        device_id=_optional_str(raw.get("device_id")),
        raw=dict(raw),
    )


def _readings(raw: Any) -> dict[str, Reading]:
    readings = {}
    for key, entry in _mapping(raw).items():
        entry_map = _mapping(entry)
        value = _optional_float(entry_map.get("value"))
        if isinstance(key, str) and value is not None:
            readings[key] = Reading(value=value, time=parse_time(entry_map.get("time")))
    return readings


def _reactions(raw: Any) -> tuple[Reaction, ...]:
    """Each reaction with a type, the first of each type only."""
    reactions: dict[str, Reaction] = {}
    for entry in _list(raw):
        entry_map = _mapping(entry)
        kind = entry_map.get("type")
        if isinstance(kind, str) and kind and kind not in reactions:
            duration = _optional_float(entry_map.get("duration_seconds"))
            reactions[kind] = Reaction(
                type=kind,
                value=_optional_float(entry_map.get("value")),
                duration_seconds=round(duration) if duration is not None else None,
                raw=dict(entry_map),
            )
    return tuple(reactions.values())


def _quiet_hours(raw: Any) -> QuietHours | None:
    if not isinstance(raw, Mapping):
        return None
    enabled = raw.get("enabled")
    return QuietHours(
        enabled=enabled if isinstance(enabled, bool) else None,
        start=_optional_str(raw.get("start")),
        end=_optional_str(raw.get("end")),
        raw=dict(raw),
    )


def _identifier(raw: Mapping[str, Any], key: str, kind: str) -> str:
    value = raw.get(key)
    if isinstance(value, int) and not isinstance(value, bool):
        value = str(value)
    if not isinstance(value, str) or not value:
        raise MinutDataError(f"{kind} has no '{key}'")
    return value


def _mapping(value: Any) -> Mapping[str, Any]:
    return value if isinstance(value, Mapping) else {}


def _list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else []


def _optional_str(value: Any) -> str | None:
    if isinstance(value, str) and value:
        return value
    if isinstance(value, int | float) and not isinstance(value, bool):
        return str(value)
    return None


def _optional_float(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    try:
        number = float(value)
    except OverflowError:
        return None
    return number if math.isfinite(number) else None


def _optional_int(value: Any) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, str) and value.isdigit():
        return int(value)
    return None
