"""The bridge's own status: one board of counters behind one lock, read as frozen snapshots.

Any thread notes what happened (a poll, an API failure, a webhook delivery, an event
published); `/healthz`, `/metrics`, the retained bridge status document and the status page all
read the same `Status` snapshot. What other parts measure themselves (the MQTT connection, the
request budget) is read through `Probes` at snapshot time.

Each Minut account the bridge reads has a part of the board of its own (`StatusBoard.account`,
an `AccountBoard`): its connection, polls, errors, last webhook and request budget. The
bridge-wide fields of `Status` sum them up (`minut` is `connected` only while every account is).
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
    """What the status reads from the broker's edge when a snapshot is taken."""

    mqtt_connected: Callable[[], bool] = _false
    mqtt_reconnects: Callable[[], int] = _zero
    publish_queue: Callable[[], int] = _zero
    commands: Callable[[], Mapping[str, int]] = _nothing
    """Commands from MQTT by result: ok, refused, failed."""


@dataclass(frozen=True)
class AccountProbes:
    """What the status reads from one account's Minut client when a snapshot is taken."""

    api_responses: Callable[[], Mapping[str, int]] = _nothing
    """Minut API answers by HTTP status, `error` for no answer (timeout, refused)."""
    rate_limited: Callable[[], int] = _zero
    requests_last_minute: Callable[[], int] = _zero


@dataclass(frozen=True)
class AccountState:
    """One Minut account's part of the status, at one moment."""

    name: str
    minut: str = MINUT_STARTING
    last_api_error: str | None = None
    api_errors: int = 0
    last_poll: datetime | None = None
    last_poll_error: str | None = None
    last_webhook: datetime | None = None
    polls: Mapping[str, int] = field(default_factory=dict)
    devices: int = 0
    homes: int = 0
    api_responses: Mapping[str, int] = field(default_factory=dict)
    rate_limited: int = 0
    requests_last_minute: int = 0

    @property
    def minut_connected(self) -> bool:
        return self.minut == MINUT_CONNECTED


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
    commands: Mapping[str, int] = field(default_factory=dict)
    api_responses: Mapping[str, int] = field(default_factory=dict)
    rate_limited: int = 0
    requests_last_minute: int = 0
    accounts: tuple[AccountState, ...] = ()
    """Each Minut account's own part, in the order the bridge reads them."""

    @property
    def minut_connected(self) -> bool:
        return self.minut == MINUT_CONNECTED

    @property
    def healthy(self) -> bool:
        """Serving: connected to the broker (Minut may be away; events wait in its history)."""
        return self.mqtt_connected


class StatusBoard:
    """The counters and states behind `Status`; every method is safe from any thread.

    `on_minut_change` is called (outside the lock) when an account's Minut connection changes,
    so that the retained status document says so at once.
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
        self._accounts: dict[str, AccountBoard] = {}
        self._deliveries: Counter[str] = Counter()
        self._refusals: Counter[str] = Counter()
        self._events_published = 0
        self._events_pulled = 0
        self._devices = 0
        self._homes = 0

    def account(self, name: str, probes: AccountProbes | None = None) -> AccountBoard:
        """The part of the board of the account `name` (made on first use); `probes` read its
        client."""
        with self._lock:
            board = self._accounts.get(name)
            if board is None:
                board = self._accounts[name] = AccountBoard(name, self._lock, self)
            if probes is not None:
                board.probes = probes
            return board

    @property
    def several_accounts(self) -> bool:
        with self._lock:
            return len(self._accounts) > 1

    def forget_account(self, name: str) -> None:
        """The account was disconnected: it leaves the status."""
        with self._lock:
            removed = self._accounts.pop(name, None)
        if removed is not None:
            self.on_minut_change()

    def snapshot(self) -> Status:
        probes = self.probes
        with self._lock:
            boards = list(self._accounts.values())
            own = Status(
                webhook_deliveries=dict(self._deliveries),
                webhook_refusals=dict(self._refusals),
                events_published=self._events_published,
                events_pulled=self._events_pulled,
                devices=self._devices,
                homes=self._homes,
            )
            accounts = tuple(board.state() for board in boards)
        accounts = tuple(
            board.measured(state) for board, state in zip(boards, accounts, strict=True)
        )
        return replace(
            _summed(own, accounts),
            mqtt_connected=probes.mqtt_connected(),
            mqtt_reconnects=probes.mqtt_reconnects(),
            publish_queue=probes.publish_queue(),
            commands=dict(probes.commands()),
        )

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
        """Points and homes the bridge shows, every account together."""
        with self._lock:
            self._devices, self._homes = devices, homes


class AccountBoard:
    """One account's counters and connection, kept under its StatusBoard's lock."""

    def __init__(self, name: str, lock: threading.Lock, board: StatusBoard) -> None:
        self.name = name
        self.probes = AccountProbes()
        self._lock = lock
        self._board = board
        self._minut = MINUT_STARTING
        self._last_api_error: str | None = None
        self._api_errors = 0
        self._last_poll: datetime | None = None
        self._last_poll_error: str | None = None
        self._last_webhook: datetime | None = None
        self._polls: Counter[str] = Counter()
        self._devices = 0
        self._homes = 0

    def state(self) -> AccountState:
        """Its own counters (the caller holds the lock)."""
        return AccountState(
            name=self.name,
            minut=self._minut,
            last_api_error=self._last_api_error,
            api_errors=self._api_errors,
            last_poll=self._last_poll,
            last_poll_error=self._last_poll_error,
            last_webhook=self._last_webhook,
            polls=dict(self._polls),
            devices=self._devices,
            homes=self._homes,
        )

    def measured(self, state: AccountState) -> AccountState:
        """`state` with what its client measures (outside the lock)."""
        return replace(
            state,
            api_responses=dict(self.probes.api_responses()),
            rate_limited=self.probes.rate_limited(),
            requests_last_minute=self.probes.requests_last_minute(),
        )

    @property
    def connected(self) -> bool:
        """While the account's Minut API answers."""
        with self._lock:
            return self._minut == MINUT_CONNECTED

    def poll_succeeded(self, devices: int | None = None, homes: int | None = None) -> None:
        with self._lock:
            self._polls["ok"] += 1
            self._last_poll = self._board._now()
            self._last_poll_error = None
            if devices is not None and homes is not None:
                self._devices, self._homes = devices, homes
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
            self._last_webhook = self._board._now()

    def _set_minut(self, status: str, error: MinutApiError | None, doing: str) -> None:
        """Track the Minut connection; log when it changes, not on every retry."""
        with self._lock:
            self._last_api_error = None if error is None else str(error)
            if error is not None:
                self._api_errors += 1
            previous, self._minut = self._minut, status
        if status == previous:
            return
        whose = f" (account {self.name})" if self._board.several_accounts else ""
        if error is None:
            if previous != MINUT_STARTING:
                log.info("Minut API answers again%s", whose)
        elif isinstance(error, MinutAuthError):
            log.error("%s Minut failed%s: %s", doing, whose, error)
        else:
            log.warning("%s Minut failed%s: %s; retrying with backoff", doing, whose, error)
        self._board.on_minut_change()


def _summed(own: Status, accounts: tuple[AccountState, ...]) -> Status:
    """The bridge-wide Minut fields from every account's: `connected` while all are, else the
    first account's trouble; the latest poll and webhook; counts added up."""
    troubled = [account for account in accounts if not account.minut_connected]
    first = troubled[0] if troubled else (accounts[0] if accounts else AccountState(""))
    polls: Counter[str] = Counter()
    responses: Counter[str] = Counter()
    for account in accounts:
        polls.update(account.polls)
        responses.update(account.api_responses)
    return replace(
        own,
        minut=first.minut,
        last_api_error=next((a.last_api_error for a in accounts if a.last_api_error), None),
        api_errors=sum(account.api_errors for account in accounts),
        last_poll=max((a.last_poll for a in accounts if a.last_poll), default=None),
        last_poll_error=next((a.last_poll_error for a in accounts if a.last_poll_error), None),
        last_webhook=max((a.last_webhook for a in accounts if a.last_webhook), default=None),
        polls=dict(polls),
        api_responses=dict(responses),
        rate_limited=sum(account.rate_limited for account in accounts),
        requests_last_minute=sum(account.requests_last_minute for account in accounts),
        accounts=accounts,
    )


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
        "accounts": accounts_document(status),
        "events_forwarded": status.events_published,
        "devices": status.devices,
        "homes": status.homes,
    }


def accounts_document(status: Status) -> dict[str, dict[str, Any]]:
    """Each account's connection, polls and size, by name (in `bridge/state` and `/healthz`)."""
    return {
        account.name: {
            "minut": account.minut,
            "last_poll": format_time(account.last_poll),
            "last_webhook": format_time(account.last_webhook),
            "error": account.last_api_error,
            "api_errors": account.api_errors,
            "rate_limited": account.rate_limited,
            "devices": account.devices,
            "homes": account.homes,
        }
        for account in status.accounts
    }
