"""The in-memory Minut account behind the simulator, and the controls tests and the demo use.

Homes, devices and events are plain dicts shaped like the API's JSON (see
/work/shared/docs/minut-api.md). Every public method is thread-safe (one lock) and returns
copies, so callers can never change the state behind the lock's back.
"""

import copy
import hashlib
import hmac
import json
import math
import random
import secrets
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from time import monotonic
from typing import Any, Final

from .delivery import DELIVERY_TIMEOUT_SECONDS, DeliveryOutcome, DeliveryWorker, PendingDelivery
from .ratelimit import SlidingWindowLimiter
from .timefmt import format_time, parse_time, utc_now

JsonObject = dict[str, Any]

API_PREFIX: Final = "/v8"
TOKEN_PATH: Final = API_PREFIX + "/oauth/token"
AUTHORIZE_PATH: Final = API_PREFIX + "/oauth/authorize"
OAUTH_PATHS: Final = frozenset({TOKEN_PATH, AUTHORIZE_PATH})
AUTHORIZATION_CODE_LIFETIME: Final = 60
"""Seconds an authorization code can be exchanged (once) after the user approved."""
SIGNATURE_HEADER: Final = "X-Minut-Signature"
TOKEN_HEADER: Final = "X-Minut-Token"

ALARM_STATUSES: Final = frozenset(
    {"on", "off", "on_grace_period", "off_grace_period", "critical_event"}
)

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

DRIFT_STEP_BY_READING: Final[Mapping[str, float]] = {
    "temperature": 0.3,
    "humidity": 1.0,
    "sound": 3.0,
}
READING_BOUNDS: Final[Mapping[str, tuple[float, float]]] = {
    "humidity": (0.0, 100.0),
    "sound": (25.0, 120.0),
}
BATTERY_DRAIN_CHANCE_PER_DRIFT: Final = 0.02

RANDOM_EVENT_WEIGHTS: Final[Mapping[str, float]] = {
    "motion": 5,
    "button": 2,
    "temperature": 2,
    "sound": 2,
    "disturbance": 2,
    "alarm": 1,
    "tamper": 1,
    "glassbreak": 1,
    "battery": 0.3,
    "unknown": 0.3,
}
UNKNOWN_EVENT_TYPE: Final = "future_event_type"


def battery_voltage(percent: float) -> float:
    """A plausible cell voltage for a battery level, 2.4 V empty to 3.0 V full."""
    return round(2.4 + 0.6 * max(0.0, min(100.0, percent)) / 100, 3)


def _mac_address_for(device_id: str) -> str:
    digest = hashlib.sha256(device_id.encode()).digest()
    return "00:1e:c0:" + ":".join(f"{byte:02x}" for byte in digest[:3])


@dataclass
class PlannedFailure:
    remaining: int
    status: int
    retry_after: int | None
    path_prefix: str | None

    def applies_to(self, path: str) -> bool:
        """Whether a request to `path` (with or without /v8) is one this failure targets.

        Without a prefix it targets every API call but the OAuth endpoints (token, authorize);
        those are only targeted by a prefix that names them (e.g. "/oauth" or "/v8/oauth/token").
        """
        if self.path_prefix is None:
            return path not in OAUTH_PATHS
        prefix = self.path_prefix.removeprefix(API_PREFIX)
        if path in OAUTH_PATHS and not prefix.startswith("/oauth"):
            return False
        return path.removeprefix(API_PREFIX).startswith(prefix)


@dataclass(frozen=True)
class AccessGrant:
    client_id: str
    expires_at_monotonic: float
    user_grant: bool = False
    """Issued through the authorization-code grant (revoke_user_grant ends it)."""


@dataclass(frozen=True)
class AuthorizationCode:
    client_id: str
    redirect_uri: str
    expires_at_monotonic: float


class OAuthGrantError(ValueError):
    """A token request the OAuth rules refuse: `error` is the OAuth error code (400)."""

    def __init__(self, error: str, message: str):
        super().__init__(message)
        self.error = error


@dataclass(frozen=True)
class Webhook:
    hook_id: str
    url: str
    events: tuple[str, ...]
    created_at: str
    token: str | None
    hook_secret: str

    def wants(self, event_type: str) -> bool:
        return "*" in self.events or event_type in self.events

    def listing(self) -> JsonObject:
        return {
            "hook_id": self.hook_id,
            "url": self.url,
            "events": list(self.events),
            "created_at": self.created_at,
        }


class SimulatedAccount:
    """One Minut account: its OAuth client, homes, devices, event history and webhooks."""

    def __init__(
        self,
        client_id: str = "sim-client",
        client_secret: str = "sim-secret",
        token_lifetime: int = 3600,
        rate_limit_per_minute: int = 120,
        burst_per_second: int = 5,
        *,
        user_id: str = "sim-user",
        email: str = "owner@example.com",
        heartbeat_interval: int = 3600,
    ) -> None:
        self.client_id = client_id
        self.client_secret = client_secret
        self.token_lifetime = token_lifetime
        self.user_id = user_id
        self.email = email
        self.heartbeat_interval = timedelta(seconds=heartbeat_interval)
        self.requests: list[tuple[str, str, int]] = []
        self.deliveries: list[tuple[str, str, DeliveryOutcome]] = []
        self._lock = threading.RLock()
        self._homes: dict[str, JsonObject] = {}
        self._devices: dict[str, JsonObject] = {}
        self._events: list[JsonObject] = []
        self._webhooks: dict[str, Webhook] = {}
        self._grants: dict[str, AccessGrant] = {}
        self._codes: dict[str, AuthorizationCode] = {}
        self._refresh_tokens: dict[str, str] = {}
        """Refresh token → the client it was issued to (the one user's grant)."""
        self.code_lifetime = AUTHORIZATION_CODE_LIFETIME
        self.oauth_log: list[tuple[str, dict[str, str]]] = []
        """("authorize" | "token", its parameters without secrets): what clients sent."""
        self.tokens_issued: list[str] = []
        """Every access and refresh token handed out, oldest first (tests look for leaks)."""
        self._client_revoked = False
        self._planned_failures: list[PlannedFailure] = []
        self._limiter = SlidingWindowLimiter(rate_limit_per_minute, burst_per_second)
        self._delivery_worker = DeliveryWorker(self._record_delivery, DELIVERY_TIMEOUT_SECONDS)

    # --- homes and devices -------------------------------------------------------------------

    def add_home(
        self,
        home_id: str,
        name: str,
        timezone: str = "Europe/Stockholm",
        alarm_status: str = "off",
    ) -> JsonObject:
        self._check_alarm_status(alarm_status)
        with self._lock:
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
                "members": [{"user_id": self.user_id, "email": self.email, "role": "owner"}],
                "created_at": format_time(utc_now() - timedelta(days=400)),
            }
            self._homes[home_id] = home
            return copy.deepcopy(home)

    def add_device(
        self,
        device_id: str,
        home_id: str,
        description: str,
        hardware_version: int = 2,
        firmware: str = "2.1.0",
        battery_percent: int = 87,
        readings: Mapping[str, float] | None = None,
        offline: bool = False,
    ) -> JsonObject:
        """Add a Point; `readings=None` leaves out `latest_sensor_values` entirely."""
        with self._lock:
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
                "next_heartbeat_at": format_time(now + self.heartbeat_interval),
                "battery": {
                    "percent": battery_percent,
                    "voltage": battery_voltage(battery_percent),
                },
                "ongoing_events": [],
            }
            if readings is not None:
                device["latest_sensor_values"] = {
                    key: {"time": heard_at, "value": value} for key, value in readings.items()
                }
            self._devices[device_id] = device
            home["devices"].append(device_id)
            return copy.deepcopy(device)

    def remove_device(self, device_id: str) -> None:
        with self._lock:
            device = self._require_device(device_id)
            del self._devices[device_id]
            self._homes[device["home"]]["devices"].remove(device_id)

    def set_reading(
        self, device_id: str, key: str, value: float, time: datetime | None = None
    ) -> None:
        """Store a reading; `last_heard_from_at` only moves forward (ISO strings sort by time)."""
        moment = format_time(time or utc_now())
        with self._lock:
            device = self._require_device(device_id)
            device.setdefault("latest_sensor_values", {})[key] = {"time": moment, "value": value}
            device["last_heard_from_at"] = max(moment, device["last_heard_from_at"])

    def set_offline(self, device_id: str, offline: bool) -> None:
        with self._lock:
            self._require_device(device_id)["offline"] = offline

    def set_battery(self, device_id: str, percent: int) -> None:
        with self._lock:
            self._require_device(device_id)["battery"] = {
                "percent": percent,
                "voltage": battery_voltage(percent),
            }

    def set_alarm_status(self, home_id: str, status: str) -> JsonObject:
        self._check_alarm_status(status)
        with self._lock:
            home = self._require_home(home_id)
            home["alarm_status"] = status
            return copy.deepcopy(home)

    def set_ongoing(self, device_id: str, event_types: Sequence[str]) -> None:
        with self._lock:
            self._require_device(device_id)["ongoing_events"] = list(event_types)

    def update_device(self, device_id: str, settings: Mapping[str, Any]) -> JsonObject:
        """Merge settings (e.g. `reactions`, `quiet_hours`) into the device, as PUT does."""
        read_only = {"device_id", "home"} & settings.keys()
        if read_only:
            raise ValueError(f"read-only device fields: {', '.join(sorted(read_only))}")
        with self._lock:
            device = self._require_device(device_id)
            device.update(copy.deepcopy(dict(settings)))
            return copy.deepcopy(device)

    def list_homes(self) -> list[JsonObject]:
        with self._lock:
            return copy.deepcopy(list(self._homes.values()))

    def get_home(self, home_id: str) -> JsonObject | None:
        with self._lock:
            return copy.deepcopy(self._homes.get(home_id))

    def list_devices(self) -> list[JsonObject]:
        with self._lock:
            return copy.deepcopy(list(self._devices.values()))

    def get_device(self, device_id: str) -> JsonObject | None:
        with self._lock:
            return copy.deepcopy(self._devices.get(device_id))

    def list_events(self) -> list[JsonObject]:
        """Every event so far, oldest first."""
        with self._lock:
            events = copy.deepcopy(self._events)
        return sorted(events, key=lambda event: parse_time(event["created_at"]))

    # --- events and webhooks -----------------------------------------------------------------

    def inject_event(
        self,
        event_type: str,
        *,
        home_id: str,
        device_id: str | None = None,
        created_at: datetime | str | None = None,
        **extra: Any,
    ) -> JsonObject:
        """Record an event, apply it to `ongoing_events`/`offline`, and deliver it to webhooks.

        An event without `device_id` belongs to the home and applies to every device in it.
        """
        if isinstance(created_at, str):
            created_at = parse_time(created_at)
        with self._lock:
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
            event["user_id"] = self.user_id
            event.update(copy.deepcopy(extra))
            self._events.append(event)
            affected_ids = [device_id] if device_id is not None else home["devices"]
            for affected_id in affected_ids:
                self._apply_event(self._devices[affected_id], event)
            for hook in self._webhooks.values():
                if hook.wants(event_type):
                    self._delivery_worker.submit(self._signed_delivery(hook, event))
            return copy.deepcopy(event)

    def register_webhook(
        self, url: str, events: Sequence[str] = ("*",), token: str | None = None
    ) -> JsonObject:
        """Register a hook like POST /webhooks; the answer is the only place its secret shows."""
        if not url.startswith(("http://", "https://")):
            raise ValueError("url must be an http:// or https:// URL")
        if isinstance(events, str) or not events or not all(events):
            raise ValueError("events must be a non-empty list of event types")
        if "*" in events and len(events) > 1:
            raise ValueError('"*" must be the only element of events')
        hook = Webhook(
            hook_id=secrets.token_hex(12),
            url=url,
            events=tuple(events),
            created_at=format_time(utc_now()),
            token=token,
            hook_secret=secrets.token_hex(32),
        )
        with self._lock:
            self._webhooks[hook.hook_id] = hook
        return hook.listing() | {"token": token is not None, "hook_secret": hook.hook_secret}

    def list_webhooks(self) -> list[JsonObject]:
        with self._lock:
            return [hook.listing() for hook in self._webhooks.values()]

    def delete_webhook(self, hook_id: str) -> bool:
        with self._lock:
            return self._webhooks.pop(hook_id, None) is not None

    def wait_deliveries(self, timeout: float = 5.0) -> bool:
        """Wait until every queued webhook delivery was attempted; False on timeout."""
        return self._delivery_worker.wait_idle(timeout)

    # --- OAuth, budget and scripted failures ---------------------------------------------------

    def client_credentials_valid(self, client_id: str, client_secret: str) -> bool:
        with self._lock:
            if self._client_revoked:
                return False
        return hmac.compare_digest(client_id.encode(), self.client_id.encode()) and (
            hmac.compare_digest(client_secret.encode(), self.client_secret.encode())
        )

    def issue_token(self, client_id: str) -> JsonObject:
        access_token = secrets.token_urlsafe(32)
        with self._lock:
            self._grants[access_token] = AccessGrant(client_id, monotonic() + self.token_lifetime)
            self.tokens_issued.append(access_token)
        return {
            "access_token": access_token,
            "token_type": "Bearer",
            "expires_in": self.token_lifetime,
        }

    def authorize(self, client_id: str, redirect_uri: str) -> str:
        """The user approved `client_id` on the authorize page: a single-use code for it."""
        code = secrets.token_urlsafe(24)
        with self._lock:
            self._codes[code] = AuthorizationCode(
                client_id, redirect_uri, monotonic() + self.code_lifetime
            )
        return code

    def exchange_code(self, client_id: str, code: str, redirect_uri: str | None) -> JsonObject:
        """Tokens for a code (once), if it was issued to `client_id` for this `redirect_uri`."""
        with self._lock:
            issued = self._codes.pop(code, None)
            if issued is None or monotonic() >= issued.expires_at_monotonic:
                raise OAuthGrantError("invalid_grant", "unknown, used or expired code")
            if issued.client_id != client_id:
                raise OAuthGrantError("invalid_grant", "the code was issued to another client")
            if redirect_uri != issued.redirect_uri:
                raise OAuthGrantError(
                    "invalid_grant", "redirect_uri differs from the authorization request's"
                )
            return self._issue_user_tokens(client_id)

    def refresh(self, client_id: str, refresh_token: str) -> JsonObject:
        """New tokens for a refresh token, which stops working (rotation)."""
        with self._lock:
            owner = self._refresh_tokens.get(refresh_token)
            if owner is None or owner != client_id:
                raise OAuthGrantError("invalid_grant", "unknown, used or revoked refresh token")
            del self._refresh_tokens[refresh_token]
            return self._issue_user_tokens(client_id)

    def revoke_user_grant(self) -> None:
        """The user disconnects the app: its refresh and access tokens stop working."""
        with self._lock:
            self._refresh_tokens.clear()
            self._codes.clear()
            for access_token in [t for t, g in self._grants.items() if g.user_grant]:
                del self._grants[access_token]

    def refresh_tokens(self) -> list[str]:
        """The refresh tokens that work now."""
        with self._lock:
            return list(self._refresh_tokens)

    def note_oauth_request(self, leg: str, parameters: Mapping[str, str]) -> None:
        shown = {k: v for k, v in parameters.items() if k not in ("client_secret", "code")}
        with self._lock:
            self.oauth_log.append((leg, shown))

    def _issue_user_tokens(self, client_id: str) -> JsonObject:
        access_token = secrets.token_urlsafe(32)
        refresh_token = secrets.token_urlsafe(32)
        self._grants[access_token] = AccessGrant(
            client_id, monotonic() + self.token_lifetime, user_grant=True
        )
        self._refresh_tokens[refresh_token] = client_id
        self.tokens_issued += [access_token, refresh_token]
        return {
            "access_token": access_token,
            "token_type": "Bearer",
            "expires_in": self.token_lifetime,
            "refresh_token": refresh_token,
            "user_id": self.user_id,
        }

    def client_for_token(self, access_token: str) -> str | None:
        """The client an access token was issued to, or None when unknown, expired or revoked."""
        with self._lock:
            grant = self._grants.get(access_token)
            if grant is None:
                return None
            if monotonic() >= grant.expires_at_monotonic:
                del self._grants[access_token]
                return None
            return grant.client_id

    def expire_tokens(self) -> None:
        with self._lock:
            self._grants.clear()

    def revoke_client(self) -> None:
        with self._lock:
            self._client_revoked = True

    def restore_client(self) -> None:
        with self._lock:
            self._client_revoked = False

    def admit_request(self, client_id: str) -> int | None:
        """Spend one request of the client's budget; None if allowed, else Retry-After seconds."""
        with self._lock:
            return self._limiter.admit(client_id, monotonic())

    def fail_next(
        self,
        count: int,
        status: int = 500,
        retry_after: int | None = None,
        paths: str | None = None,
    ) -> None:
        """Make the next `count` requests (those under `paths` if given) answer `status`."""
        if count < 1:
            raise ValueError(f"count must be at least 1, got {count}")
        if not 400 <= status <= 599:
            raise ValueError(f"status must be an HTTP error status (400-599), got {status}")
        with self._lock:
            self._planned_failures.append(PlannedFailure(count, status, retry_after, paths))

    def cancel_planned_failures(self) -> None:
        """The API behaves again: failures planned but not yet served are dropped."""
        with self._lock:
            self._planned_failures.clear()

    def take_planned_failure(self, path: str) -> PlannedFailure | None:
        with self._lock:
            for failure in self._planned_failures:
                if failure.applies_to(path):
                    failure.remaining -= 1
                    if failure.remaining == 0:
                        self._planned_failures.remove(failure)
                    return failure
            return None

    def record_request(self, method: str, path: str, status: int) -> None:
        with self._lock:
            self.requests.append((method, path, status))

    def clear_requests(self) -> None:
        with self._lock:
            self.requests.clear()

    # --- life in the demo ----------------------------------------------------------------------

    def drift(self, rng: random.Random) -> None:
        """A heartbeat for every online device: readings wander a little, batteries drain slowly.

        Legacy readings (`pressure`, `part_als`) are left untouched, as the API stopped
        updating them.
        """
        now = utc_now()
        moment = format_time(now)
        with self._lock:
            for device in self._devices.values():
                if device["offline"]:
                    continue
                latest = device.get("latest_sensor_values", {})
                for key, step in DRIFT_STEP_BY_READING.items():
                    if key in latest:
                        low, high = READING_BOUNDS.get(key, (-math.inf, math.inf))
                        value = latest[key]["value"] + rng.uniform(-step, step)
                        latest[key] = {"time": moment, "value": min(high, max(low, value))}
                percent = device["battery"]["percent"]
                if percent > 0 and rng.random() < BATTERY_DRAIN_CHANCE_PER_DRIFT:
                    device["battery"] = {
                        "percent": percent - 1,
                        "voltage": battery_voltage(percent - 1),
                    }
                device["last_heard_from_at"] = moment
                device["last_heartbeat_at"] = moment
                device["next_heartbeat_at"] = format_time(now + self.heartbeat_interval)

    def random_event(self, rng: random.Random) -> JsonObject:
        """Inject one plausible event on a random online device (or its home).

        Paired states alternate: a device with `temperature_high` ongoing gets
        `temperature_dropped_normal` next, a home with a disturbance gets `disturbance_ended`.
        """
        with self._lock:
            online = [device for device in self._devices.values() if not device["offline"]]
            if not online:
                raise LookupError("random_event needs at least one online device")
            device = rng.choice(online)
            device_id: str = device["device_id"]
            home_id: str = device["home"]
            ongoing: list[str] = device["ongoing_events"]
            kind = rng.choices(
                list(RANDOM_EVENT_WEIGHTS), weights=list(RANDOM_EVENT_WEIGHTS.values())
            )[0]
            match kind:
                case "temperature":
                    return self._random_threshold_event(
                        rng, device, "temperature_high", "temperature", (27.5, 31.0), (20.0, 23.0)
                    )
                case "sound":
                    return self._random_threshold_event(
                        rng, device, "avg_sound_high", "sound", (75.0, 88.0), (35.0, 45.0)
                    )
                case "disturbance":
                    if "disturbance_first_notice" in ongoing:
                        return self.inject_event("disturbance_ended", home_id=home_id)
                    return self.inject_event(
                        "disturbance_first_notice",
                        home_id=home_id,
                        sensor_value=rng.uniform(72.0, 85.0),
                    )
                case "alarm":
                    if "alarm_heard" in ongoing:
                        return self.inject_event("alarm_silenced", home_id=home_id)
                    return self.inject_event("alarm_heard", home_id=home_id, device_id=device_id)
                case "tamper":
                    event_type = (
                        "tamper_mounted" if "tamper_removed" in ongoing else "tamper_removed"
                    )
                    return self.inject_event(event_type, home_id=home_id, device_id=device_id)
                case "battery":
                    self.set_battery(
                        device_id, min(device["battery"]["percent"], rng.randint(5, 12))
                    )
                    return self.inject_event("battery_low", home_id=home_id, device_id=device_id)
                case "button":
                    event_type = "short_button_press"
                case "glassbreak":
                    event_type = "glassbreak"
                case "unknown":
                    event_type = UNKNOWN_EVENT_TYPE
                case _:
                    event_type = "pir_motion"
            return self.inject_event(event_type, home_id=home_id, device_id=device_id)

    # --- internals -----------------------------------------------------------------------------

    def _random_threshold_event(
        self,
        rng: random.Random,
        device: JsonObject,
        on_event: str,
        reading_key: str,
        high_range: tuple[float, float],
        normal_range: tuple[float, float],
    ) -> JsonObject:
        crossing_back = on_event in device["ongoing_events"]
        event_type = STATE_ON_TO_OFF_EVENT[on_event] if crossing_back else on_event
        value = rng.uniform(*(normal_range if crossing_back else high_range))
        if reading_key in device.get("latest_sensor_values", {}):
            self.set_reading(device["device_id"], reading_key, value)
        return self.inject_event(
            event_type, home_id=device["home"], device_id=device["device_id"], sensor_value=value
        )

    def _apply_event(self, device: JsonObject, event: JsonObject) -> None:
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

    def _signed_delivery(self, hook: Webhook, event: JsonObject) -> PendingDelivery:
        body = json.dumps({"hook_id": hook.hook_id, "event": event}, separators=(",", ":"))
        raw_body = body.encode()
        signature = hmac.new(hook.hook_secret.encode(), raw_body, hashlib.sha256).hexdigest()
        headers = {"Content-Type": "application/json", SIGNATURE_HEADER: signature}
        if hook.token is not None:
            headers[TOKEN_HEADER] = hook.token
        return PendingDelivery(hook.hook_id, hook.url, raw_body, headers)

    def _record_delivery(self, delivery: PendingDelivery, outcome: DeliveryOutcome) -> None:
        with self._lock:
            self.deliveries.append((delivery.hook_id, delivery.url, outcome))

    def _require_home(self, home_id: str) -> JsonObject:
        home = self._homes.get(home_id)
        if home is None:
            raise KeyError(f"unknown home {home_id!r}")
        return home

    def _require_device(self, device_id: str) -> JsonObject:
        device = self._devices.get(device_id)
        if device is None:
            raise KeyError(f"unknown device {device_id!r}")
        return device

    @staticmethod
    def _check_alarm_status(status: str) -> None:
        if status not in ALARM_STATUSES:
            allowed = ", ".join(sorted(ALARM_STATUSES))
            raise ValueError(f"alarm_status must be one of {allowed}, got {status!r}")
