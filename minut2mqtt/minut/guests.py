"""Guests (a home's stays), read tolerantly: the API's field names are not public.

Each stay needs a check-in and a check-out time; everything else is optional. The names below
are the ones tried, first match wins; every field of the API's object is kept in `raw` and
passed through to the home's state document.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from .models import format_time, parse_time

ID_FIELDS = ("guest_id", "id", "stay_id", "reservation_id")
NAME_FIELDS = ("name", "guest_name", "full_name", "display_name")
CHECK_IN_FIELDS = ("check_in_at", "checkin_at", "check_in", "checkin", "arrival", "start_at")
CHECK_OUT_FIELDS = ("check_out_at", "checkout_at", "check_out", "checkout", "departure", "end_at")
EPOCH_MILLISECONDS_FROM = 10**11
"""A larger epoch number counts milliseconds (10**11 seconds is the year 5138)."""


@dataclass(frozen=True)
class Stay:
    guest_id: str | None
    name: str | None
    check_in: datetime
    check_out: datetime
    raw: Mapping[str, Any]

    def document(self) -> dict[str, Any]:
        """The stay in the home's state document: our names first, then the API's own fields."""
        return {
            **self.raw,
            "guest_id": self.guest_id,
            "name": self.name,
            "check_in": format_time(self.check_in),
            "check_out": format_time(self.check_out),
        }


def parse_stays(items: Sequence[Any]) -> tuple[Stay, ...]:
    """Every stay with both times, earliest check-in first; others are skipped."""
    stays = []
    for item in items:
        if not isinstance(item, Mapping):
            continue
        check_in = _time(_first(item, CHECK_IN_FIELDS))
        check_out = _time(_first(item, CHECK_OUT_FIELDS))
        if check_in is None or check_out is None:
            continue
        guest_id, name = _first(item, ID_FIELDS), _first(item, NAME_FIELDS)
        stays.append(
            Stay(
                guest_id=str(guest_id) if isinstance(guest_id, str | int) else None,
                name=name if isinstance(name, str) and name else None,
                check_in=check_in,
                check_out=check_out,
                raw=dict(item),
            )
        )
    return tuple(sorted(stays, key=lambda stay: stay.check_in))


def current_and_next(stays: Sequence[Stay], now: datetime) -> tuple[Stay | None, Stay | None]:
    """The stay under way at `now` and the next one to begin after it."""
    current = next((s for s in stays if s.check_in <= now < s.check_out), None)
    upcoming = next((s for s in stays if s.check_in > now), None)
    return current, upcoming


def next_change(stays: Sequence[Stay], now: datetime) -> datetime | None:
    """The next check-in or check-out after `now` (the current or next stay changes then)."""
    moments = [m for s in stays for m in (s.check_in, s.check_out) if m > now]
    return min(moments, default=None)


def _first(item: Mapping[str, Any], names: tuple[str, ...]) -> Any:
    return next((item[name] for name in names if item.get(name) not in (None, "")), None)


def _time(value: Any) -> datetime | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        seconds = value / 1000 if value >= EPOCH_MILLISECONDS_FROM else value
        try:
            return datetime.fromtimestamp(seconds, UTC)
        except (OverflowError, OSError, ValueError):
            return None
    return parse_time(value)
