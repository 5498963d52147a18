"""`SimulatedAccount`: one Minut account behind the simulator, and the controls tests and the
demo use on it.

The account is assembled from focused parts that know nothing of threads: its data (homes.py,
guests.py), OAuth grants (oauth.py), webhooks (webhooks.py), scripted faults (faults.py), the
request budget (ratelimit.py) and the demo's life (life.py); its write side (arming, settings,
guests, the write log) is in controls.py. This class owns the one RLock that guards them all:
every public method is thread-safe and returns copies, so callers can never change the state
behind the lock's back.
"""

import random
import threading
from collections.abc import Mapping, Sequence
from datetime import datetime, timedelta
from time import monotonic
from typing import Any

from . import life
from .api import DEVICES_PAGING, EVENTS_PAGING, HOMES_PAGING, DeliveryStyle, JsonObject
from .controls import AccountControls
from .delivery import DeliveryOutcome, PendingDelivery
from .faults import FailurePlan, PlannedFailure
from .homes import HomeStore
from .oauth import AUTHORIZATION_CODE_LIFETIME, OAuthGrants, same_credential
from .ratelimit import SlidingWindowLimiter
from .webhooks import WebhookRegistry


class SimulatedAccount(AccountControls):
    """One Minut account: its OAuth client, homes, devices, guests, event history and webhooks."""

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
        alarm_grace_seconds: float = 0,
    ) -> None:
        self.client_id = client_id
        self.client_secret = client_secret
        self.token_lifetime = token_lifetime
        self.code_lifetime = AUTHORIZATION_CODE_LIFETIME
        self.user_id = user_id
        self.email = email
        self.heartbeat_interval = timedelta(seconds=heartbeat_interval)
        self._lock = threading.RLock()
        self._store = HomeStore()
        self._oauth = OAuthGrants()
        self._webhooks = WebhookRegistry(self._record_delivery)
        self._failures = FailurePlan()
        self._limiter = SlidingWindowLimiter(rate_limit_per_minute, burst_per_second)
        self.requests: list[tuple[str, str, int]] = []
        """(method, path, status) of every API request answered, oldest first."""
        self.deliveries: list[tuple[str, str, DeliveryOutcome]] = []
        """(hook id, url, outcome) of every webhook delivery attempted, oldest first."""
        self.oauth_log = self._oauth.log
        """("authorize" | "token", its parameters without secrets): what clients sent."""
        self.tokens_issued = self._oauth.tokens_issued
        """Every access and refresh token handed out, oldest first (tests look for leaks)."""
        self.homes_paging = HOMES_PAGING
        self.devices_paging = DEVICES_PAGING
        self.events_paging = EVENTS_PAGING
        """How `GET /homes`, `GET /devices` and `GET /events` page (tests set the other answers)."""
        self._init_controls(alarm_grace_seconds)

    @property
    def delivery_style(self) -> DeliveryStyle:
        """How webhook deliveries carry the token and the signature."""
        with self._lock:
            return self._webhooks.style

    @delivery_style.setter
    def delivery_style(self, style: DeliveryStyle) -> None:
        with self._lock:
            self._webhooks.style = style

    # --- homes and devices -------------------------------------------------------------------

    def add_home(
        self,
        home_id: str,
        name: str,
        timezone: str = "Europe/Stockholm",
        alarm_status: str = "off",
    ) -> JsonObject:
        with self._lock:
            return self._store.add_home(
                home_id,
                name,
                timezone=timezone,
                alarm_status=alarm_status,
                owner_user_id=self.user_id,
                owner_email=self.email,
            )

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
        reactions: Sequence[Mapping[str, Any]] | None = None,
        quiet_hours: Mapping[str, Any] | None = None,
    ) -> JsonObject:
        """Add a Point; `readings=None` leaves out `latest_sensor_values` entirely, and
        `reactions=None`, `quiet_hours=None` leave out those keys (see thresholds.py for the
        defaults: `default_reactions()`, `default_quiet_hours()`)."""
        with self._lock:
            return self._store.add_device(
                device_id,
                home_id,
                description,
                hardware_version=hardware_version,
                firmware=firmware,
                battery_percent=battery_percent,
                readings=readings,
                offline=offline,
                heartbeat_interval=self.heartbeat_interval,
                reactions=reactions,
                quiet_hours=quiet_hours,
            )

    def remove_device(self, device_id: str) -> None:
        with self._lock:
            self._store.remove_device(device_id)

    def set_reading(
        self, device_id: str, key: str, value: float, time: datetime | None = None
    ) -> None:
        """Store a reading; `last_heard_from_at` only moves forward (ISO strings sort by time)."""
        with self._lock:
            self._store.set_reading(device_id, key, value, time)

    def set_offline(self, device_id: str, offline: bool) -> None:
        with self._lock:
            self._store.set_offline(device_id, offline)

    def set_battery(self, device_id: str, percent: int) -> None:
        with self._lock:
            self._store.set_battery(device_id, percent)

    def set_alarm_status(self, home_id: str, status: str) -> JsonObject:
        """Set any `alarm_status` at once, as Minut itself would (`critical_event`, …)."""
        with self._lock:
            return self._store.set_alarm_status(home_id, status)

    def set_ongoing(self, device_id: str, event_types: Sequence[str]) -> None:
        with self._lock:
            self._store.set_ongoing(device_id, event_types)

    def update_device(self, device_id: str, settings: Mapping[str, Any]) -> JsonObject:
        """Change `description`, `reactions` (merged by type) and `quiet_hours` (by key) as
        `PUT /devices/{id}` does: all of them, or (ValueError) none."""
        with self._lock:
            return self._store.update_device(device_id, settings)

    def list_homes(self) -> list[JsonObject]:
        with self._lock:
            return self._store.list_homes()

    def get_home(self, home_id: str) -> JsonObject | None:
        with self._lock:
            return self._store.get_home(home_id)

    def list_devices(self) -> list[JsonObject]:
        with self._lock:
            return self._store.list_devices()

    def get_device(self, device_id: str) -> JsonObject | None:
        with self._lock:
            return self._store.get_device(device_id)

    def list_events(self) -> list[JsonObject]:
        """Every event so far, oldest first."""
        with self._lock:
            return self._store.list_events()

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
        with self._lock:
            event = self._store.record_event(
                event_type,
                home_id=home_id,
                device_id=device_id,
                created_at=created_at,
                user_id=self.user_id,
                extra=extra,
            )
            self._webhooks.deliver(event_type, event)
            return event

    def register_webhook(
        self, url: str, events: Sequence[str] = ("*",), token: str | None = None
    ) -> JsonObject:
        """Register a hook like POST /webhooks; the answer is the only place its secret shows."""
        with self._lock:
            return self._webhooks.register(url, events, token)

    def list_webhooks(self) -> list[JsonObject]:
        with self._lock:
            return self._webhooks.listing()

    def delete_webhook(self, hook_id: str) -> bool:
        with self._lock:
            return self._webhooks.delete(hook_id)

    def wait_deliveries(self, timeout: float = 5.0) -> bool:
        """Wait until every queued webhook delivery was attempted; False on timeout."""
        return self._webhooks.wait_idle(timeout)  # not under the lock: deliveries record in it

    def _record_delivery(self, delivery: PendingDelivery, outcome: DeliveryOutcome) -> None:
        with self._lock:
            self.deliveries.append((delivery.hook_id, delivery.url, outcome))

    # --- OAuth ---------------------------------------------------------------------------------

    def client_credentials_valid(self, client_id: str, client_secret: str) -> bool:
        with self._lock:
            if self._oauth.client_revoked:
                return False
        return same_credential(client_id, self.client_id) and (
            same_credential(client_secret, self.client_secret)
        )

    def issue_token(self, client_id: str) -> JsonObject:
        with self._lock:
            return self._oauth.issue_client_token(client_id, self.token_lifetime)

    def authorize(self, client_id: str, redirect_uri: str) -> str:
        """The user approved `client_id` on the authorize page: a single-use code for it."""
        with self._lock:
            return self._oauth.issue_code(client_id, redirect_uri, self.code_lifetime)

    def exchange_code(self, client_id: str, code: str, redirect_uri: str | None) -> JsonObject:
        """Tokens for a code (once), if it was issued to `client_id` for this `redirect_uri`."""
        with self._lock:
            return self._oauth.exchange_code(
                client_id, code, redirect_uri, lifetime=self.token_lifetime, user_id=self.user_id
            )

    def refresh(self, client_id: str, refresh_token: str) -> JsonObject:
        """New tokens for a refresh token, which stops working (rotation)."""
        with self._lock:
            return self._oauth.refresh(
                client_id, refresh_token, lifetime=self.token_lifetime, user_id=self.user_id
            )

    def revoke_user_grant(self) -> None:
        """The user disconnects the app: its refresh and access tokens stop working."""
        with self._lock:
            self._oauth.revoke_user_grant()

    def refresh_tokens(self) -> list[str]:
        """The refresh tokens that work now."""
        with self._lock:
            return self._oauth.refresh_tokens()

    def holds_code(self, code: str) -> bool:
        """Whether this account's user was given `code` (not exchanged yet)."""
        with self._lock:
            return self._oauth.holds_code(code)

    def note_oauth_request(self, leg: str, parameters: Mapping[str, str]) -> None:
        with self._lock:
            self._oauth.note_request(leg, parameters)

    def client_for_token(self, access_token: str) -> str | None:
        """The client an access token was issued to, or None when unknown, expired or revoked."""
        with self._lock:
            return self._oauth.client_for_token(access_token)

    def expire_tokens(self) -> None:
        with self._lock:
            self._oauth.expire_tokens()

    def revoke_client(self) -> None:
        with self._lock:
            self._oauth.client_revoked = True

    def restore_client(self) -> None:
        with self._lock:
            self._oauth.client_revoked = False

    # --- request budget, scripted failures and the request log ---------------------------------

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
        with self._lock:
            self._failures.add(count, status, retry_after, paths)

    def cancel_planned_failures(self) -> None:
        """The API behaves again: failures planned but not yet served are dropped."""
        with self._lock:
            self._failures.cancel()

    def take_planned_failure(self, path: str) -> PlannedFailure | None:
        with self._lock:
            return self._failures.take(path)

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
        with self._lock:
            life.drift(self._store, rng, self.heartbeat_interval)

    def random_event(self, rng: random.Random) -> JsonObject:
        """Inject one plausible event on a random online device (or its home).

        Paired states alternate: a device with `temperature_high` ongoing gets
        `temperature_dropped_normal` next, a home with a disturbance gets `disturbance_ended`.
        """
        with self._lock:
            chosen = life.next_random_event(self._store, rng)
            return self.inject_event(
                chosen.event_type,
                home_id=chosen.home_id,
                device_id=chosen.device_id,
                **chosen.extra(),
            )
