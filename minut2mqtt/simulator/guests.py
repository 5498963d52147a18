"""Guests: the stays booked in each home, and how they look in the API's JSON.

A stay is stored under our own names (`Stay`); `GuestStyle` (api.py) decides the field names and
time format the endpoints read and write, so a test can switch them. Fields a client sends that
the style does not name are kept and shown back. `GuestBook` is not thread-safe:
SimulatedAccount holds its lock around every call.
"""

import copy
import math
import secrets
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, tzinfo
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from .api import GuestStyle, JsonObject
from .timefmt import format_time, parse_time


@dataclass(frozen=True)
class Stay:
    guest_id: str
    name: str
    check_in: datetime
    check_out: datetime
    phone_number: str | None = None
    extra: JsonObject = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not self.name.strip():
            raise ValueError("a guest needs a name")
        if self.check_out <= self.check_in:
            raise ValueError("check-out must come after check-in")


class GuestBook:
    """Stays by home, then by guest id."""

    def __init__(self) -> None:
        self._stays: dict[str, dict[str, Stay]] = {}

    def put(self, home_id: str, stay: Stay) -> None:
        """Add the stay, or replace the one with its id."""
        self._stays.setdefault(home_id, {})[stay.guest_id] = stay

    def listing(self, home_id: str) -> list[Stay]:
        """The home's stays by check-in, earliest first."""
        return sorted(self._stays.get(home_id, {}).values(), key=lambda stay: stay.check_in)

    def get(self, home_id: str, guest_id: str) -> Stay | None:
        return self._stays.get(home_id, {}).get(guest_id)

    def remove(self, home_id: str, guest_id: str) -> bool:
        return self._stays.get(home_id, {}).pop(guest_id, None) is not None


def new_guest_id() -> str:
    return secrets.token_hex(6)


def stay_as_json(stay: Stay, style: GuestStyle, timezone: str) -> JsonObject:
    guest: JsonObject = {
        style.id_field: stay.guest_id,
        style.name_field: stay.name,
        style.check_in_field: _render_time(stay.check_in, style, timezone),
        style.check_out_field: _render_time(stay.check_out, style, timezone),
        style.phone_field: stay.phone_number,
    }
    guest.update(
        (key, value) for key, value in copy.deepcopy(stay.extra).items() if key not in guest
    )
    return guest


def stay_from_json(
    body: Mapping[str, object], style: GuestStyle, *, guest_id: str, base: Stay | None = None
) -> Stay:
    """The stay a POST or PUT body describes, or (with `base`) a PATCH body changes.

    ValueError names the style's field that is missing or invalid.
    """
    named = {
        style.id_field,
        style.name_field,
        style.check_in_field,
        style.check_out_field,
        style.phone_field,
    }
    name = _text_field(body, style.name_field, base.name if base else None)
    phone = body.get(style.phone_field, base.phone_number if base else None)
    if phone is not None and not isinstance(phone, str):
        raise ValueError(f"{style.phone_field} must be a string or null, got {phone!r}")
    if not name.strip():
        raise ValueError(f"{style.name_field} must not be empty")
    check_in = _time_field(body, style.check_in_field, base.check_in if base else None)
    check_out = _time_field(body, style.check_out_field, base.check_out if base else None)
    if check_out <= check_in:
        raise ValueError(f"{style.check_out_field} must come after {style.check_in_field}")
    extra = dict(base.extra) if base else {}
    extra.update((key, value) for key, value in body.items() if key not in named)
    return Stay(
        guest_id=guest_id,
        name=name,
        check_in=check_in,
        check_out=check_out,
        phone_number=phone,
        extra=copy.deepcopy(extra),
    )


def _text_field(body: Mapping[str, object], key: str, default: str | None) -> str:
    value = body.get(key, default)
    if value is None:
        raise ValueError(f"{key} is required")
    if not isinstance(value, str):
        raise ValueError(f"{key} must be a string, got {value!r}")
    return value


def _time_field(body: Mapping[str, object], key: str, default: datetime | None) -> datetime:
    """ISO-8601 text (any offset; none is UTC) or epoch seconds, whatever the style writes."""
    value = body.get(key, default)
    if value is None:
        raise ValueError(f"{key} is required")
    if isinstance(value, datetime):
        return value
    if isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value):
        return datetime.fromtimestamp(value, UTC)
    if isinstance(value, str):
        try:
            return parse_time(value)
        except ValueError:
            pass
    raise ValueError(f"{key} must be an ISO-8601 time or epoch seconds, got {value!r}")


def _render_time(moment: datetime, style: GuestStyle, timezone: str) -> str | int:
    match style.time_format:
        case "epoch":
            return int(moment.timestamp())
        case "iso_offset":
            return moment.astimezone(_zone(timezone)).isoformat(timespec="seconds")
        case _:
            return format_time(moment)


def _zone(timezone: str) -> tzinfo:
    try:
        return ZoneInfo(timezone)
    except (ZoneInfoNotFoundError, ValueError):
        return UTC  # a system without time zone data
