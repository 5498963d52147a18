"""The write side of SimulatedAccount: arming, home and device settings, guests, the answers
the contract leaves open for them (`alarm_endpoints`, `guest_style`), and the log of every write
request.

SimulatedAccount inherits `AccountControls`; its methods hold the account's one lock and return
copies, like the account's own.
"""

import copy
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from .api import (
    DEFAULT_GUEST_STYLE,
    V8_ALARM_ENDPOINTS,
    AlarmEndpoints,
    GuestStyle,
    JsonObject,
)
from .guests import GuestBook, Stay, new_guest_id, stay_as_json, stay_from_json
from .homes import HomeStore


@dataclass(frozen=True)
class RecordedWrite:
    """One write request the API answered (POST, PUT, PATCH or DELETE, OAuth excepted)."""

    method: str
    path: str
    body: Any
    """The request's JSON; None when it had no JSON body."""
    status: int


class AccountControls:
    """Mixed into SimulatedAccount, which provides the lock and the data."""

    _lock: threading.RLock
    _store: HomeStore

    def _init_controls(self, alarm_grace_seconds: float) -> None:
        self._guests = GuestBook()
        self._writes: list[RecordedWrite] = []
        self._alarm_endpoints = V8_ALARM_ENDPOINTS
        self._guest_style = DEFAULT_GUEST_STYLE
        self.alarm_grace_seconds = alarm_grace_seconds

    # --- answers the contract leaves open -------------------------------------------------------

    @property
    def alarm_endpoints(self) -> AlarmEndpoints:
        """Which requests arm and disarm a home (404 or 405 from the others)."""
        with self._lock:
            return self._alarm_endpoints

    @alarm_endpoints.setter
    def alarm_endpoints(self, endpoints: AlarmEndpoints) -> None:
        with self._lock:
            self._alarm_endpoints = endpoints

    @property
    def guest_style(self) -> GuestStyle:
        """The guest endpoints' field names, time format and listing."""
        with self._lock:
            return self._guest_style

    @guest_style.setter
    def guest_style(self, style: GuestStyle) -> None:
        with self._lock:
            self._guest_style = style

    @property
    def alarm_grace_seconds(self) -> float:
        """How long an armed home stays `on_grace_period` before it is `on` (0: at once)."""
        with self._lock:
            return self._store.alarm_grace_seconds

    @alarm_grace_seconds.setter
    def alarm_grace_seconds(self, seconds: float) -> None:
        if seconds < 0:
            raise ValueError(f"alarm_grace_seconds must be at least 0, got {seconds}")
        with self._lock:
            self._store.alarm_grace_seconds = seconds

    # --- homes and devices ---------------------------------------------------------------------

    def arm(self, home_id: str) -> JsonObject:
        """Arm as a client does: `on_grace_period` for `alarm_grace_seconds`, then `on`."""
        return self.update_home(home_id, {"alarm_status": "on"})

    def disarm(self, home_id: str) -> JsonObject:
        return self.update_home(home_id, {"alarm_status": "off"})

    def update_home(self, home_id: str, settings: Mapping[str, Any]) -> JsonObject:
        """Change `alarm_status` ("on"/"off"), `alarm_mode` and `disturbance_monitoring_active`
        as the API does: all of them, or (ValueError) none."""
        with self._lock:
            return self._store.update_home(home_id, settings)

    def set_reactions(self, device_id: str, reactions: Sequence[Mapping[str, Any]]) -> None:
        """Give a device exactly these reactions, of any type and value (a test's or a future
        Minut's); only the API's writes are held to thresholds.py's limits."""
        with self._lock:
            self._store.set_reactions(device_id, reactions)

    # --- guests ----------------------------------------------------------------------------------

    def add_guest(
        self,
        home_id: str,
        name: str,
        check_in: datetime,
        check_out: datetime,
        phone_number: str | None = None,
        **extra: Any,
    ) -> JsonObject:
        """Book a stay (naive times are UTC); the answer is the guest as the API shows it now
        (see `guest_style`)."""
        check_in, check_out = (
            moment.replace(tzinfo=moment.tzinfo or UTC) for moment in (check_in, check_out)
        )
        with self._lock:
            stay = Stay(new_guest_id(), name, check_in, check_out, phone_number, dict(extra))
            return self._save_stay(home_id, stay)

    def create_guest(self, home_id: str, body: Mapping[str, Any]) -> JsonObject:
        """Book a stay from a POST body in the current `guest_style`; ValueError if invalid."""
        with self._lock:
            stay = stay_from_json(body, self._guest_style, guest_id=new_guest_id())
            return self._save_stay(home_id, stay)

    def update_guest(
        self, home_id: str, guest_id: str, body: Mapping[str, Any], *, replace: bool
    ) -> JsonObject:
        """Replace a stay (PUT, `replace=True`) or change the fields given (PATCH).

        KeyError for an unknown home or guest, ValueError (nothing changed) for a bad body.
        """
        with self._lock:
            base = self._guests.get(home_id, guest_id)
            if base is None:
                raise KeyError(f"unknown guest {guest_id!r} in home {home_id!r}")
            stay = stay_from_json(
                body, self._guest_style, guest_id=guest_id, base=None if replace else base
            )
            return self._save_stay(home_id, stay)

    def remove_guest(self, home_id: str, guest_id: str) -> bool:
        with self._lock:
            return self._guests.remove(home_id, guest_id)

    def list_guests(self, home_id: str) -> list[JsonObject]:
        """The home's stays by check-in, as the API shows them; KeyError for an unknown home."""
        with self._lock:
            timezone = self._timezone_of(home_id)
            return [
                stay_as_json(stay, self._guest_style, timezone)
                for stay in self._guests.listing(home_id)
            ]

    def get_guest(self, home_id: str, guest_id: str) -> JsonObject | None:
        with self._lock:
            stay = self._guests.get(home_id, guest_id)
            if stay is None:
                return None
            return stay_as_json(stay, self._guest_style, self._timezone_of(home_id))

    def _save_stay(self, home_id: str, stay: Stay) -> JsonObject:
        timezone = self._timezone_of(home_id)
        self._guests.put(home_id, stay)
        return stay_as_json(stay, self._guest_style, timezone)

    def _timezone_of(self, home_id: str) -> str:
        home = self._store.get_home(home_id)
        if home is None:
            raise KeyError(f"unknown home {home_id!r}")
        timezone: str = home["timezone"]
        return timezone

    # --- the write log ---------------------------------------------------------------------------

    @property
    def writes(self) -> list[RecordedWrite]:
        """Every write request answered, oldest first (a copy)."""
        with self._lock:
            return copy.deepcopy(self._writes)

    def clear_writes(self) -> None:
        with self._lock:
            self._writes.clear()

    def record_write(self, method: str, path: str, body: Any, status: int) -> None:
        with self._lock:
            self._writes.append(RecordedWrite(method, path, body, status))
