"""The bridge's own status: one board of counters behind one lock, read as frozen snapshots.

Any thread notes what happened (a poll, an API failure, a webhook delivery, an event
published); `/healthz`, `/metrics`, the retained bridge status document and the status page all
read the same `Status` snapshot. What other parts measure themselves (the MQTT connection, the
request budget) is read through `Probes` at snapshot time.
"""

from __future__ import annotations

import logging
import threading
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Any

from ..minut.errors import MinutApiError, MinutAuthError
from ..minut.models import format_time

log = logging.getLogger(__name__)

MINUT_CONNECTED = "connected"
"""`minut` while the Minut API answers; else why not: unauthorized, rate_limited, unreachable."""
MINUT_STARTING = "starting"


def _zero() -> int:
    return 0


def _false() -> bool:
    return False


def _nothing() -> Mapping[str, int]:
    return {}


@dataclass(frozen=True)
class Probes:
    """What the status reads from the edges when a snapshot is taken."""

    mqtt_connected: Callable[[], bool] = _false
    mqtt_reconnects: Callable[[], int] = _zero
    publish_queue: Callable[[], int] = _zero
    api_responses: Callable[[], Mapping[str, int]] = _nothing
    """Minut API answers by HTTP status, `error` for no answer (timeout, refused)."""
    rate_limited: Callable[[], int] = _zero
    requests_last_minute: Callable[[], int] = _zero


@dataclass(frozen=True)
class Status:
    """Everything the bridge says about itself, at one moment."""

    minut: str = MINUT_STARTING
    last_api_error: str | None = None
    """The last failure of any request to Minut (poll or pull); None once one succeeds."""
    api_errors: int = 0
    last_poll: datetime | None = None
    last_poll_error: str | None = None
    last_webhook: datetime | None = None
    polls: Mapping[str, int] = field(default_factory=dict)
    """By outcome: `ok`, `failed`."""
    webhook_deliveries: Mapping[str, int] = field(default_factory=dict)
    """Requests to the webhook path by outcome: `accepted`, `rejected`."""
    webhook_refusals: Mapping[str, int] = field(default_factory=dict)
    """Deliveries with the right path secret that did not prove our hook sent them, by reason."""
    events_published: int = 0
    events_pulled: int = 0
    """Events published from a pull because no webhook had delivered them."""
    devices: int = 0
    homes: int = 0
    mqtt_connected: bool = False
    mqtt_reconnects: int = 0
    publish_queue: int = 0
    api_responses: Mapping[str, int] = field(default_factory=dict)
    rate_limited: int = 0
    requests_last_minute: int = 0

    @property
    def minut_connected(self) -> bool:
        return self.minut == MINUT_CONNECTED

    @property
    def healthy(self) -> bool:
        """Serving: connected to the broker (Minut may be away; events wait in its history)."""
        return self.mqtt_connected


class StatusBoard:
    """The counters and states behind `Status`; every method is safe from any thread.

    `on_minut_change` is called (outside the lock) when the Minut connection changes, so that
    the retained status document says so at once.
    """

    def __init__(
        self,
        probes: Probes | None = None,
        *,
        on_minut_change: Callable[[], None] = lambda: None,
        wall_clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self.probes = probes or Probes()
        self.on_minut_change = on_minut_change
        self._now = wall_clock
        self._lock = threading.Lock()
        self._minut = MINUT_STARTING
        self._last_api_error: str | None = None
        self._api_errors = 0
        self._last_poll: datetime | None = None
        self._last_poll_error: str | None = None
        self._last_webhook: datetime | None = None
        self._polls: Counter[str] = Counter()
        self._deliveries: Counter[str] = Counter()
        self._refusals: Counter[str] = Counter()
        self._events_published = 0
        self._events_pulled = 0
        self._devices = 0
        self._homes = 0

    def snapshot(self) -> Status:
        probes = self.probes
        with self._lock:
            own = Status(
                minut=self._minut,
                last_api_error=self._last_api_error,
                api_errors=self._api_errors,
                last_poll=self._last_poll,
                last_poll_error=self._last_poll_error,
                last_webhook=self._last_webhook,
                polls=dict(self._polls),
                webhook_deliveries=dict(self._deliveries),
                webhook_refusals=dict(self._refusals),
                events_published=self._events_published,
                events_pulled=self._events_pulled,
                devices=self._devices,
                homes=self._homes,
            )
        return replace(
            own,
            mqtt_connected=probes.mqtt_connected(),
            mqtt_reconnects=probes.mqtt_reconnects(),
            publish_queue=probes.publish_queue(),
            api_responses=dict(probes.api_responses()),
            rate_limited=probes.rate_limited(),
            requests_last_minute=probes.requests_last_minute(),
        )

    def poll_succeeded(self) -> None:
        with self._lock:
            self._polls["ok"] += 1
            self._last_poll = self._now()
            self._last_poll_error = None
        self.api_answered()

    def poll_failed(self, error: MinutApiError) -> None:
        with self._lock:
            self._polls["failed"] += 1
            self._last_poll_error = str(error)
        self.api_failed("polling", error)

    def api_answered(self) -> None:
        self._set_minut(MINUT_CONNECTED, None, "")

    def api_failed(self, doing: str, error: MinutApiError) -> None:
        """A request to Minut failed while `doing` (polling, pulling events from)."""
        self._set_minut(_status_of(error), error, doing)

    def webhook_received(self) -> None:
        with self._lock:
            self._last_webhook = self._now()

    def delivery_answered(self, accepted: bool) -> None:
        with self._lock:
            self._deliveries["accepted" if accepted else "rejected"] += 1

    def delivery_refused(self, reason: str) -> None:
        with self._lock:
            self._refusals[reason] += 1

    def event_published(self, *, pulled: bool) -> None:
        with self._lock:
            self._events_published += 1
            if pulled:
                self._events_pulled += 1

    def account_size(self, devices: int, homes: int) -> None:
        with self._lock:
            self._devices, self._homes = devices, homes

    def _set_minut(self, status: str, error: MinutApiError | None, doing: str) -> None:
        """Track the Minut connection; log when it changes, not on every retry."""
        with self._lock:
            self._last_api_error = None if error is None else str(error)
            if error is not None:
                self._api_errors += 1
            previous, self._minut = self._minut, status
        if status == previous:
            return
        if error is None:
            if previous != MINUT_STARTING:
                log.info("Minut API answers again")
        elif isinstance(error, MinutAuthError):
            log.error("%s Minut failed: %s", doing, error)
        else:
            log.warning("%s Minut failed: %s; retrying with backoff", doing, error)
        self.on_minut_change()


def _status_of(error: MinutApiError) -> str:
    if isinstance(error, MinutAuthError):
        return "unauthorized"
    if error.status == 429:
        return "rate_limited"
    return "unreachable"


def health_document(status: Status) -> dict[str, Any]:
    """`/healthz`: `ok` when both the broker and Minut answer, else `degraded`."""
    return {
        "status": "ok" if status.mqtt_connected and status.minut_connected else "degraded",
        "mqtt": {
            "connected": status.mqtt_connected,
            "reconnects": status.mqtt_reconnects,
            "queued": status.publish_queue,
        },
        "minut": {
            "status": status.minut,
            "last_poll": format_time(status.last_poll),
            "last_webhook": format_time(status.last_webhook),
            "last_error": status.last_poll_error,
            "api_errors": status.api_errors,
            "requests_last_minute": status.requests_last_minute,
        },
        "events_forwarded": status.events_published,
        "devices": status.devices,
        "homes": status.homes,
    }
