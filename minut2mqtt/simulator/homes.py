"""The account's data: homes, their Points and the event history, with an event's effects.

Homes, devices and events are plain dicts shaped like the API's JSON (see
/work/shared/docs/minut-api.md). `HomeStore` is not thread-safe: SimulatedAccount holds its lock
around every call. Reads return deep copies, except `online_devices`, which hands the demo's life
(life.py) the live dicts to change.
"""

import copy
import hashlib
import secrets
from collections.abc import Mapping, Sequence
from datetime import datetime, timedelta
from time import monotonic
from typing import Any, Final

from .api import JsonObject
from .thresholds import check_seeded_reactions, merged_quiet_hours, merged_reactions
from .timefmt import format_time, parse_time, utc_now

ALARM_STATUSES: Final = frozenset(
    {"on", "off", "on_grace_period", "off_grace_period", "critical_event"}
)

ALARM_REQUESTS: Final = frozenset({"on", "off"})
"""What a client may ask for: arm (`on`, after the grace period) or disarm (`off`)."""
WRITABLE_HOME_FIELDS: Final = frozenset(
    {"alarm_status", "alarm_mode", "disturbance_monitoring_active"}
)
WRITABLE_DEVICE_FIELDS: Final = frozenset({"description", "reactions", "quiet_hours"})

STATE_ON_TO_OFF_EVENT: Final[Mapping[str, str]] = {
    "temperature_high": "temperature_dropped_normal",
    "temperature_low": "temperature_risen_normal",
    "humidity_high": "humidity_dropped_normal",
    "humidity_low": "humidity_risen_normal",
    "avg_sound_high": "sound_level_dropped_normal",
    "disturbance_first_notice": "disturbance_ended",
    "alarm_heard": "alarm_silenced",
    "tamper_removed": "tamper_mounted",
}
STATE_OFF_TO_ON_EVENT: Final = {off: on for on, off in STATE_ON_TO_OFF_EVENT.items()}
OFFLINE_FLAG_SET_BY_EVENT: Final[Mapping[str, bool]] = {
    "device_offline": True,
    "device_online": False,
}


def battery_voltage(percent: float) -> float:
    """A plausible cell voltage for a battery level, 2.4 V empty to 3.0 V full."""
    return round(2.4 + 0.6 * max(0.0, min(100.0, percent)) / 100, 3)


def _mac_address_for(device_id: str) -> str:
    digest = hashlib.sha256(device_id.encode()).digest()
    return "00:1e:c0:" + ":".join(f"{byte:02x}" for byte in digest[:3])


class HomeStore:
    """Homes by id, devices by id, and every event in the order it was recorded."""

    def __init__(self) -> None:
        self._homes: dict[str, JsonObject] = {}
        self._devices: dict[str, JsonObject] = {}
        self._events: list[JsonObject] = []
        self._arming_until: dict[str, float] = {}
        """Homes in `on_grace_period` and the monotonic time they become `on`."""
        self.alarm_grace_seconds = 0.0

    # --- homes and devices -------------------------------------------------------------------

    def add_home(
        self,
        home_id: str,
        name: str,
        *,
        timezone: str,
        alarm_status: str,
        owner_user_id: str,
        owner_email: str,
    ) -> JsonObject:
        _check_alarm_status(alarm_status)
        if home_id in self._homes:
            raise ValueError(f"home {home_id!r} already exists")
        home: JsonObject = {
            "home_id": home_id,
            "name": name,
            "timezone": timezone,
            "devices": [],
            "alarm_status": alarm_status,
            "alarm_mode": "manual",
            "silent_alarm": False,
            "disturbance_monitoring_active": True,
            "address": {"street_name1": "", "postcode": "", "city": "", "country": ""},
            "members": [{"user_id": owner_user_id, "email": owner_email, "role": "owner"}],
            "created_at": format_time(utc_now() - timedelta(days=400)),
        }
        self._homes[home_id] = home
        return copy.deepcopy(home)

    def add_device(
        self,
        device_id: str,
        home_id: str,
        description: str,
        *,
        hardware_version: int,
        firmware: str,
        battery_percent: int,
        readings: Mapping[str, float] | None,
        offline: bool,
        heartbeat_interval: timedelta,
        reactions: Sequence[Mapping[str, Any]] | None = None,
        quiet_hours: Mapping[str, Any] | None = None,
    ) -> JsonObject:
        if device_id in self._devices:
            raise ValueError(f"device {device_id!r} already exists")
        home = self._require_home(home_id)
        now = utc_now()
        heard_at = format_time(now - timedelta(hours=6) if offline else now)
        device: JsonObject = {
            "device_id": device_id,
            "home": home_id,
            "description": description,
            "device_mac": _mac_address_for(device_id),
            "hardware_version": hardware_version,
            "firmware": {"installed": firmware, "wanted": firmware},
            "timezone": home["timezone"],
            "active": True,
            "offline": offline,
            "first_seen_at": format_time(now - timedelta(days=180)),
            "last_heard_from_at": heard_at,
            "last_heartbeat_at": heard_at,
            "next_heartbeat_at": format_time(now + heartbeat_interval),
            "battery": {"percent": battery_percent, "voltage": battery_voltage(battery_percent)},
            "ongoing_events": [],
        }
        if readings is not None:
            device["latest_sensor_values"] = {
                key: {"time": heard_at, "value": value} for key, value in readings.items()
            }
        if reactions is not None:
            device["reactions"] = check_seeded_reactions(reactions)
        if quiet_hours is not None:
            device["quiet_hours"] = merged_quiet_hours(None, dict(quiet_hours))
        self._devices[device_id] = device
        home["devices"].append(device_id)
        return copy.deepcopy(device)

    def remove_device(self, device_id: str) -> None:
        device = self._require_device(device_id)
        del self._devices[device_id]
        self._homes[device["home"]]["devices"].remove(device_id)

    def set_reading(self, device_id: str, key: str, value: float, time: datetime | None) -> None:
        moment = format_time(time or utc_now())
        device = self._require_device(device_id)
        device.setdefault("latest_sensor_values", {})[key] = {"time": moment, "value": value}
        device["last_heard_from_at"] = max(moment, device["last_heard_from_at"])

    def set_offline(self, device_id: str, offline: bool) -> None:
        self._require_device(device_id)["offline"] = offline

    def set_battery(self, device_id: str, percent: int) -> None:
        self._require_device(device_id)["battery"] = {
            "percent": percent,
            "voltage": battery_voltage(percent),
        }

    def set_alarm_status(self, home_id: str, status: str) -> JsonObject:
        _check_alarm_status(status)
        home = self._require_home(home_id)
        home["alarm_status"] = status
        self._arming_until.pop(home_id, None)
        return copy.deepcopy(home)

    def update_home(self, home_id: str, settings: Mapping[str, Any]) -> JsonObject:
        """Apply what a client may change (see WRITABLE_HOME_FIELDS), all of it or, on
        ValueError, nothing. Arming goes through `on_grace_period` for `alarm_grace_seconds`."""
        home = self._require_home(home_id)
        refused = set(settings) - WRITABLE_HOME_FIELDS
        if refused:
            raise ValueError(f"not writable: {', '.join(sorted(refused))}")
        status = settings.get("alarm_status")
        if "alarm_status" in settings and status not in ALARM_REQUESTS:
            raise ValueError(f'alarm_status must be "on" or "off", got {status!r}')
        mode = settings.get("alarm_mode", "manual")
        if mode != "manual":
            raise ValueError(f'alarm_mode must be "manual", got {mode!r}')
        monitoring = settings.get("disturbance_monitoring_active", False)
        if not isinstance(monitoring, bool):
            raise ValueError(f"disturbance_monitoring_active must be a boolean, got {monitoring!r}")
        if "disturbance_monitoring_active" in settings:
            home["disturbance_monitoring_active"] = monitoring
        if "alarm_mode" in settings:
            home["alarm_mode"] = mode
        if status == "off":
            self.set_alarm_status(home_id, "off")
        elif status == "on" and home["alarm_status"] not in ("on", "on_grace_period"):
            if self.alarm_grace_seconds > 0:
                self.set_alarm_status(home_id, "on_grace_period")
                self._arming_until[home_id] = monotonic() + self.alarm_grace_seconds
            else:
                self.set_alarm_status(home_id, "on")
        return copy.deepcopy(home)

    def set_ongoing(self, device_id: str, event_types: Sequence[str]) -> None:
        self._require_device(device_id)["ongoing_events"] = list(event_types)

    def update_device(self, device_id: str, settings: Mapping[str, Any]) -> JsonObject:
        """Apply what a client may change (see WRITABLE_DEVICE_FIELDS), all of it or, on
        ValueError, nothing: reactions merge by type, quiet hours by key."""
        device = self._require_device(device_id)
        refused = set(settings) - WRITABLE_DEVICE_FIELDS
        if refused:
            raise ValueError(f"not writable: {', '.join(sorted(refused))}")
        changes: JsonObject = {}
        if "description" in settings:
            description = settings["description"]
            if not isinstance(description, str) or not description.strip():
                raise ValueError(f"description must be a non-empty string, got {description!r}")
            changes["description"] = description
        if "reactions" in settings:
            changes["reactions"] = merged_reactions(
                device.get("reactions", []), settings["reactions"]
            )
        if "quiet_hours" in settings:
            changes["quiet_hours"] = merged_quiet_hours(
                device.get("quiet_hours"), settings["quiet_hours"]
            )
        device.update(changes)
        return copy.deepcopy(device)

    def set_reactions(self, device_id: str, reactions: Sequence[Mapping[str, Any]]) -> None:
        self._require_device(device_id)["reactions"] = check_seeded_reactions(reactions)

    def list_homes(self) -> list[JsonObject]:
        self._finish_grace_periods()
        return copy.deepcopy(list(self._homes.values()))

    def get_home(self, home_id: str) -> JsonObject | None:
        self._finish_grace_periods()
        return copy.deepcopy(self._homes.get(home_id))

    def list_devices(self) -> list[JsonObject]:
        return copy.deepcopy(list(self._devices.values()))

    def get_device(self, device_id: str) -> JsonObject | None:
        return copy.deepcopy(self._devices.get(device_id))

    def online_devices(self) -> list[JsonObject]:
        """The online devices themselves, not copies: changes to them change the account."""
        return [device for device in self._devices.values() if not device["offline"]]

    # --- events --------------------------------------------------------------------------------

    def list_events(self) -> list[JsonObject]:
        """Every event so far, oldest first."""
        events = copy.deepcopy(self._events)
        return sorted(events, key=lambda event: parse_time(event["created_at"]))

    def record_event(
        self,
        event_type: str,
        *,
        home_id: str,
        device_id: str | None,
        created_at: datetime | str | None,
        user_id: str,
        extra: Mapping[str, Any],
    ) -> JsonObject:
        """Store an event and apply it to its device (or every device of its home); a copy."""
        if isinstance(created_at, str):
            created_at = parse_time(created_at)
        home = self._require_home(home_id)
        if device_id is not None:
            device = self._require_device(device_id)
            if device["home"] != home_id:
                raise ValueError(f"device {device_id!r} is not in home {home_id!r}")
        event: JsonObject = {
            "id": secrets.token_hex(12),
            "type": event_type,
            "created_at": format_time(created_at or utc_now()),
            "home_id": home_id,
        }
        if device_id is not None:
            event["device_id"] = device_id
        event["user_id"] = user_id
        event.update(copy.deepcopy(dict(extra)))
        self._events.append(event)
        affected_ids = [device_id] if device_id is not None else home["devices"]
        for affected_id in affected_ids:
            _apply_event(self._devices[affected_id], event)
        return copy.deepcopy(event)

    # --- internals -----------------------------------------------------------------------------

    def _finish_grace_periods(self) -> None:
        """Arm the homes whose grace period is over (on the next look, so no timer is needed)."""
        now = monotonic()
        for home_id, armed_at in list(self._arming_until.items()):
            if armed_at <= now:
                del self._arming_until[home_id]
                self._homes[home_id]["alarm_status"] = "on"

    def _require_home(self, home_id: str) -> JsonObject:
        self._finish_grace_periods()
        home = self._homes.get(home_id)
        if home is None:
            raise KeyError(f"unknown home {home_id!r}")
        return home

    def _require_device(self, device_id: str) -> JsonObject:
        device = self._devices.get(device_id)
        if device is None:
            raise KeyError(f"unknown device {device_id!r}")
        return device


def _apply_event(device: JsonObject, event: JsonObject) -> None:
    """An event's effect on a device: ongoing states, the offline flag, when it was heard from."""
    event_type: str = event["type"]
    ongoing: list[str] = device["ongoing_events"]
    if event_type in STATE_ON_TO_OFF_EVENT and event_type not in ongoing:
        ongoing.append(event_type)
    cleared = STATE_OFF_TO_ON_EVENT.get(event_type)
    if cleared in ongoing:
        ongoing.remove(cleared)
    if event_type in OFFLINE_FLAG_SET_BY_EVENT:
        device["offline"] = OFFLINE_FLAG_SET_BY_EVENT[event_type]
    reported_by_device = "device_id" in event and event_type != "device_offline"
    if reported_by_device and event["created_at"] > device["last_heard_from_at"]:
        device["last_heard_from_at"] = event["created_at"]


def _check_alarm_status(status: str) -> None:
    if status not in ALARM_STATUSES:
        allowed = ", ".join(sorted(ALARM_STATUSES))
        raise ValueError(f"alarm_status must be one of {allowed}, got {status!r}")
