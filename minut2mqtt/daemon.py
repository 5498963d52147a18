"""The running daemon: wires the Minut client, the bridge, MQTT and the webhook listener."""

from __future__ import annotations

import logging
import queue
import random
import threading
import time
from collections import Counter
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, TypeVar

from . import __version__
from .bridge import Bridge
from .entities import MINUT_CONNECTED
from .http_server import BackgroundServer
from .metrics import MetricsSnapshot, metrics_view
from .minut.backfill import EventPuller
from .minut.client import MinutApiError, MinutAuthError, MinutClient
from .minut.models import (
    Event,
    MinutDataError,
    format_time,
    parse_device,
    parse_home,
    parse_time,
)
from .minut.webhooks import HookCredentials, ensure_webhook, stored_credentials
from .mqtt.outbox import OutboxError
from .mqtt.publisher import MqttOptions, MqttPublisher, tls_context
from .mqtt.topics import Topics
from .settings import Settings
from .statefiles import read_json, webhook_secret, write_json
from .webhook import create_app, page_options_for, page_url

log = logging.getLogger(__name__)
T = TypeVar("T")

FIRST_RETRY_SECONDS = 5.0
FIRST_POLL_WAITS_FOR_MQTT_SECONDS = 10.0
ORPHAN_SWEEP_DELAY_SECONDS = 3.0
"""Time the broker gets to replay retained discovery configs before we judge what is orphaned."""
CURSOR_FILE = "event_cursor.json"
OUTBOX_FILE = "outbox.sqlite3"
HA_BIRTH_DELAY_SECONDS = (0.5, 3.0)
"""Random pause before re-publishing after Home Assistant's birth, so bridges don't stampede."""
STATUS_EVERY_SECONDS = 10.0
"""How often the bridge's status document is refreshed (when something in it changed)."""
PULL_OVERLAP = timedelta(minutes=10)
"""A pull starts this long before the previous one: an event can reach the history late."""


class StartupError(Exception):
    """The daemon cannot start (a port taken, a state directory not writable): says which."""


class Daemon:
    def __init__(
        self,
        settings: Settings,
        *,
        on_change: Callable[[str, str], None] | None = None,
    ):
        self.settings = settings
        self.topics = Topics(settings.mqtt.base_topic, settings.mqtt.discovery_prefix)
        self.minut = MinutClient.from_settings(
            settings.minut, state_dir=settings.state_dir, page_url=page_url(settings.webhook)
        )
        mqtt = settings.mqtt
        self.publisher = MqttPublisher(
            MqttOptions(
                host=mqtt.host,
                port=mqtt.port,
                client_id=mqtt.client_id,
                availability_topic=self.topics.bridge_availability,
                username=mqtt.username,
                password=mqtt.password.get_secret_value() if mqtt.password else None,
                keepalive=mqtt.keepalive,
                tls_context=tls_context(mqtt.tls),
                messages_per_second=mqtt.messages_per_second,
                outbox_path=settings.state_dir / OUTBOX_FILE,
                outbox_limit=mqtt.outbox_limit,
            ),
            on_connected=self._on_mqtt_connected,
            subscriptions={
                self.topics.ha_status: self._on_ha_status,
                self.topics.discovery_filter: self._on_discovery_config,
            },
        )
        self.bridge = Bridge(
            self.publisher,
            self.topics,
            stale_after=settings.minut.stale_after,
            momentary_seconds=mqtt.momentary_seconds,
            on_change=on_change,
        )
        self.puller = EventPuller(self.minut)
        self._cursor_unsaved = False
        self._cursor: dict[str, str] = {}
        """Per home, the time up to which its events are known (ISO): where a pull starts."""
        self._cursor_lock = threading.Lock()
        self._catch_up_due = threading.Event()
        """Set when missed events must be pulled: at startup, after an outage, after silence."""
        self._catch_up_due.set()
        self._catch_up_running = False
        self._last_pull_at = time.monotonic()
        self._poll_now = threading.Event()
        self.hook: HookCredentials | None = None
        self._hook_ensured = False
        self._events: queue.Queue[tuple[Event, bool] | None] = queue.Queue()
        """Events to publish, each with whether a webhook delivered it (else a pull)."""
        self._stop = threading.Event()
        self._first_poll_done = threading.Event()
        self._poll_lock = threading.Lock()
        self._sweep_due_at: float | None = None
        self._threads: list[threading.Thread] = []
        self._webhook_server: BackgroundServer | None = None
        self.last_poll: datetime | None = None
        self.last_poll_error: str | None = None
        self.last_webhook_at: datetime | None = None
        self._last_webhook_monotonic = 0.0
        self.minut_status = "starting"
        """`connected`, or why not: `unauthorized`, `rate_limited`, `unreachable`."""
        self.polls: Counter[str] = Counter()
        self.webhook_deliveries: Counter[str] = Counter()
        self.events_pulled = 0
        self.api_errors = 0
        self.last_api_error: str | None = None
        """The last failure of any request to Minut (poll or pull), None once one succeeds."""
        self.webhook_port: int | None = None

    # -- lifecycle ----------------------------------------------------------------------------

    def start(self) -> None:
        webhook = self.settings.webhook
        try:
            self.settings.state_dir.mkdir(parents=True, exist_ok=True)
            secret = (
                webhook.secret.get_secret_value()
                if webhook.secret
                else webhook_secret(self.settings.state_dir)
            )
        except OSError as error:
            raise StartupError(
                f"state_dir {self.settings.state_dir}: cannot be written ({error.strerror})"
            ) from None
        self.webhook_path = f"/webhook/{secret}"
        self._cursor = {
            home: moment
            for home, moment in (read_json(self._cursor_path) or {}).items()
            if isinstance(moment, str)
        }
        if webhook.public_url:
            self.hook = stored_credentials(self.settings.state_dir)
        app = create_app(
            secret,
            self._on_webhook_event,
            self.health,
            hook=lambda: self.hook,
            signature_header=webhook.signature_header,
            token_header=webhook.token_header,
            page=page_options_for(self),
            on_delivery=self._count_delivery,
            metrics=metrics_view(self.metrics_snapshot),
        )
        try:
            self._webhook_server = BackgroundServer(
                app, webhook.host, webhook.port, ident="webhook-server"
            )
        except OSError as error:
            raise StartupError(
                f"webhook.host/webhook.port {webhook.host}:{webhook.port}: cannot listen there "
                f"({error.strerror})"
            ) from None
        self.webhook_port = self._webhook_server.port
        try:
            self.publisher.start()
        except OutboxError as error:
            self._webhook_server.stop()
            raise StartupError(str(error)) from None
        # Kept with the outbox's messages: a redelivery after a restart is not published again.
        self.bridge.remember_published(self.publisher.published_event_ids())
        log.info(
            "webhook listener on http://%s:%d/webhook/<secret> (secret kept in %s)",
            self.settings.webhook.host,
            self.webhook_port,
            "the configuration" if self.settings.webhook.secret else self.settings.state_dir,
        )
        self._webhook_server.start()
        self._spawn("event-worker", self._process_events)
        self._spawn("poller", self._poll_loop)
        self._spawn("event-puller", self._pull_loop)

    def stop(self) -> None:
        """Stop polling and listening, then tell MQTT we are offline."""
        self._stop.set()
        self._poll_now.set()
        self._first_poll_done.set()
        self._events.put(None)
        if self._webhook_server is not None:
            self._webhook_server.stop()
        for thread in self._threads:
            thread.join(timeout=10)
        self._save_cursor()
        self.publisher.stop()
        log.info("minut2mqtt stopped")

    def wait(self) -> None:
        self._stop.wait()

    def request_stop(self) -> None:
        self._stop.set()
        self._poll_now.set()

    def request_poll(self) -> None:
        """Poll now rather than at the next interval (an account was just connected)."""
        self._poll_now.set()

    def metrics_snapshot(self) -> MetricsSnapshot:
        return MetricsSnapshot(
            polls=dict(self.polls),
            api_responses=dict(self.minut.responses),
            rate_limited=self.minut.scheduler.rate_limited,
            requests_last_minute=self.minut.scheduler.used_last_minute(),
            minut_connected=self.minut_status == MINUT_CONNECTED,
            webhooks=dict(self.webhook_deliveries),
            events_published=self.bridge.events_forwarded,
            events_pulled=self.events_pulled,
            mqtt_connected=self.publisher.connected,
            mqtt_reconnects=self.publisher.reconnects,
            publish_queue=self.publisher.queue_depth,
            devices=len(self.bridge.devices),
            homes=len(self.bridge.homes),
            last_poll_timestamp=self.last_poll.timestamp() if self.last_poll else None,
        )

    def _count_delivery(self, accepted: bool) -> None:
        self.webhook_deliveries["accepted" if accepted else "rejected"] += 1

    def health(self) -> tuple[dict[str, Any], bool]:
        connected = self.publisher.connected
        document = {
            "status": "ok" if connected and self.minut_status == MINUT_CONNECTED else "degraded",
            "mqtt": {
                "connected": connected,
                "reconnects": self.publisher.reconnects,
                "queued": self.publisher.queue_depth,
            },
            "minut": {
                "status": self.minut_status,
                "last_poll": format_time(self.last_poll),
                "last_webhook": format_time(self.last_webhook_at),
                "last_error": self.last_poll_error,
                "api_errors": self.api_errors,
                "requests_last_minute": self.minut.scheduler.used_last_minute(),
            },
            "events_forwarded": self.bridge.events_forwarded,
            "devices": len(self.bridge.devices),
            "homes": len(self.bridge.homes),
        }
        return document, connected

    # -- threads ------------------------------------------------------------------------------

    def _spawn(self, name: str, target: Callable[[], None]) -> None:
        thread = threading.Thread(target=target, name=name, daemon=True)
        thread.start()
        self._threads.append(thread)

    def _poll_loop(self) -> None:
        # Polling before the broker answers would make the first burst of discovery twice:
        # queued now, and again by the re-publish that follows every connect.
        give_up_at = time.monotonic() + FIRST_POLL_WAITS_FOR_MQTT_SECONDS
        while not self.publisher.wait_connected(0.2) and time.monotonic() < give_up_at:
            if self._stop.is_set():
                return
        failures = 0
        next_poll = time.monotonic()
        next_status = 0.0
        while not self._stop.is_set():
            if self._poll_now.is_set():
                self._poll_now.clear()
                next_poll = time.monotonic()
            if time.monotonic() >= next_poll:
                try:
                    self.poll_once()
                except MinutApiError as error:
                    failures += 1
                    next_poll = time.monotonic() + self._retry_delay(error, failures)
                except Exception as error:  # a bug must not end polling for good
                    log.exception("polling failed unexpectedly")
                    failures += 1
                    next_poll = time.monotonic() + self._retry_delay(
                        MinutApiError(str(error)), failures
                    )
                else:
                    if failures:  # events may have happened that no webhook could tell us
                        self._catch_up_due.set()
                    failures = 0
                    next_poll = time.monotonic() + self.settings.minut.poll_interval
                self._first_poll_done.set()
                next_status = 0.0
            if time.monotonic() >= next_status:
                self.bridge.set_status(self.status_document())
                next_status = time.monotonic() + STATUS_EVERY_SECONDS
            self._sweep_when_due()
            self._save_cursor()
            self.bridge.tick()
            self._poll_now.wait(max(0.0, min(1.0, next_poll - time.monotonic())))

    def poll_once(self) -> None:
        """One `GET /devices` and one `GET /homes`, whatever the number of devices."""
        with self._poll_lock:  # an older picture must never be applied after a newer one
            self._poll_and_apply()

    def _poll_and_apply(self) -> None:
        try:
            self._ensure_webhook()
            raw_devices = self.minut.get_devices()
            raw_homes = self.minut.get_homes()
        except MinutApiError as error:
            self.last_poll_error = str(error)
            self.polls["failed"] += 1
            self._note_api_result("polling", error)
            raise
        self.polls["ok"] += 1
        self._note_api_result("polling", None)
        devices = _parse_all(raw_devices, parse_device)
        homes = _parse_all(raw_homes, parse_home)
        counts = (len(devices), len(homes))
        if counts != (len(self.bridge.devices), len(self.bridge.homes)):
            log.info("Minut account: %d Points in %d homes", *counts)
        self.bridge.apply_poll(devices, homes)
        self.last_poll = datetime.now(UTC)
        self.last_poll_error = None

    def _note_api_result(self, what: str, error: MinutApiError | None) -> None:
        """Track the Minut connection; log when it changes, not on every retry."""
        status = MINUT_CONNECTED if error is None else _status_of(error)
        self.last_api_error = None if error is None else str(error)
        if error is not None:
            self.api_errors += 1
        if status == self.minut_status:
            return
        previous, self.minut_status = self.minut_status, status
        self.bridge.set_status(self.status_document())
        if error is None:
            if previous != "starting":
                log.info("Minut API answers again")
        elif isinstance(error, MinutAuthError):
            log.error("%s Minut failed: %s", what, error)
        else:
            log.warning("%s Minut failed: %s; retrying with backoff", what, error)

    def status_document(self) -> dict[str, Any]:
        """The bridge's own state, retained on its status topic (diagnostic entities read it)."""
        return {
            "minut": self.minut_status,
            "error": self.last_api_error,
            "last_poll": format_time(self.last_poll),
            "last_webhook": format_time(self.last_webhook_at),
            "api_errors": self.api_errors,
            "events_forwarded": self.bridge.events_forwarded,
            "version": __version__,
        }

    def _ensure_webhook(self) -> None:
        """Once per run, before the first poll: our hook at Minut, with a secret we hold."""
        public_url = self.settings.webhook.public_url
        if public_url and not self._hook_ensured:
            self.hook = ensure_webhook(
                self.minut, f"{public_url}{self.webhook_path}", self.settings.state_dir
            )
            self._hook_ensured = True

    def _retry_delay(self, error: MinutApiError, failures: int) -> float:
        """Exponential backoff with jitter, never shorter than the API's Retry-After."""
        backoff = min(self.settings.minut.poll_interval, FIRST_RETRY_SECONDS * 2 ** (failures - 1))
        delay: float = backoff * random.uniform(0.5, 1.0)
        return max(delay, error.retry_after or 0.0)

    def _pull_loop(self) -> None:
        """Pull missed events when due, with backoff; the event worker publishes them."""
        while not self._first_poll_done.wait(0.5):  # the homes must be known first
            if self._stop.is_set():
                return
        failures = 0
        next_try = 0.0
        while not self._stop.wait(1.0 if failures or not self._catch_up_due.is_set() else 0):
            self._note_webhook_silence()
            if not self._catch_up_due.is_set() or time.monotonic() < next_try:
                continue
            try:
                self._catch_up()
            except MinutApiError as error:
                self._note_api_result("pulling events from", error)
                self._catch_up_due.set()
                failures += 1
                next_try = time.monotonic() + self._retry_delay(error, failures)
            except Exception:
                log.exception("pulling missed events failed unexpectedly")
                self._catch_up_due.set()
                failures += 1
                next_try = time.monotonic() + self._retry_delay(MinutApiError(""), failures)
            else:
                failures = 0

    def _note_webhook_silence(self) -> None:
        silence = self.settings.minut.pull_events_after_silence
        heard_at = max(self._last_webhook_monotonic, self._last_pull_at)
        if silence and time.monotonic() - heard_at > silence and not self._catch_up_due.is_set():
            log.debug("no webhook delivery for %.0f s: pulling the homes' events", silence)
            self._catch_up_due.set()

    def _catch_up(self) -> None:
        """Queue, oldest first, the events each home had that were not published."""
        self._catch_up_running = True
        try:
            self._catch_up_due.clear()  # a reason arising during this pull makes another one
            self._pull_missed_events()
        finally:
            self._catch_up_running = False

    def _pull_missed_events(self) -> None:
        started = datetime.now(UTC)
        since_by_home: dict[str, datetime] = {}
        with self._cursor_lock:
            for home_id in list(self.bridge.homes):
                since = parse_time(self._cursor.get(home_id))
                if since is None:  # a home seen for the first time: its past is not news
                    self._cursor[home_id] = format_time(started) or ""
                    self._cursor_unsaved = True
                else:
                    since_by_home[home_id] = since
        if not since_by_home:  # no request made: nothing learnt about the API
            self._last_pull_at = time.monotonic()
            return
        new = 0
        for homes, events in self.puller.pull(since_by_home):
            self._note_api_result("pulling events from", None)
            new += sum(1 for event in events if not self.bridge.has_published(event.id))
            for event in events:
                self._events.put((event, False))
            # The answer covers the home up to when Minut wrote it, a moment before now: the
            # overlap (minutes) covers that moment as well as events reaching the history late.
            self._known_up_to(homes, datetime.now(UTC) - PULL_OVERLAP)
        self._last_pull_at = time.monotonic()
        if new:
            self.events_pulled += new
            log.info("%d events pulled from Minut that no webhook had delivered", new)

    def _known_up_to(self, home_ids: list[str], moment: datetime) -> None:
        """Every event of these homes up to `moment` has been queued."""
        known_up_to = format_time(moment) or ""
        with self._cursor_lock:
            for home_id in home_ids:
                if self._cursor.get(home_id, "") < known_up_to:
                    self._cursor[home_id] = known_up_to
                    self._cursor_unsaved = True

    def _advance_cursor(self, event: Event) -> None:
        """A webhook event moves its home's cursor, unless earlier events may be missing.

        While a pull is due or running (at startup, after an outage or a silence), a delivery
        says nothing about the events before it: only the pull's success moves the cursor then.
        """
        if event.home_id is None or event.created_at is None:
            return
        if self._catch_up_due.is_set() or self._catch_up_running:
            return
        with self._cursor_lock:
            known = parse_time(self._cursor.get(event.home_id))
            if known is None or event.created_at > known:
                self._cursor[event.home_id] = format_time(event.created_at) or ""
                self._cursor_unsaved = True

    @property
    def _cursor_path(self) -> Path:
        return self.settings.state_dir / CURSOR_FILE

    def _save_cursor(self) -> None:
        """From the poll loop, and at stop once it has ended: never two at once."""
        with self._cursor_lock:
            if not self._cursor_unsaved or not self._cursor:
                return
            self._cursor_unsaved = False
            cursor = dict(self._cursor)
        try:
            write_json(self._cursor_path, cursor)
        except OSError as error:
            log.error("cannot save the event cursor in %s: %s", self.settings.state_dir, error)

    def _sweep_when_due(self) -> None:
        """Once per connection, after the broker replayed its retained configs and we polled."""
        due_at = self._sweep_due_at
        if due_at is None or time.monotonic() < due_at or self.last_poll is None:
            return
        self._sweep_due_at = None
        if self.last_poll_error is None:
            self.bridge.sweep_orphans()

    def _process_events(self) -> None:
        # Events that arrive while starting up wait for the first poll, so that they find the
        # devices and homes they belong to (their states would be lost otherwise).
        while not self._first_poll_done.wait(0.5):
            if self._stop.is_set():
                return
        while (item := self._events.get()) is not None:
            event, from_webhook = item
            try:
                self.bridge.apply_event(event)
                if from_webhook:
                    self._advance_cursor(event)
            except Exception:
                log.exception("could not process Minut event %s (%s)", event.id, event.type)

    def _on_webhook_event(self, event: Event) -> None:
        """From the listener's thread: note the delivery and queue it (answering at once)."""
        self.last_webhook_at = datetime.now(UTC)
        self._last_webhook_monotonic = time.monotonic()
        self._events.put((event, True))

    # -- MQTT callbacks (paho's thread) -------------------------------------------------------

    def _on_mqtt_connected(self) -> None:
        self._sweep_due_at = time.monotonic() + ORPHAN_SWEEP_DELAY_SECONDS
        self._catch_up_due.set()  # whatever the broker outage kept from us
        # A broker without persistence forgot our retained configs and states: send them again.
        threading.Thread(target=self.bridge.republish, name="republish", daemon=True).start()

    def _on_discovery_config(self, topic: str, payload: bytes) -> None:
        self.bridge.note_discovery_config(topic, payload)

    def _on_ha_status(self, topic: str, payload: bytes) -> None:
        if payload.strip().lower() == b"online":
            delay = random.uniform(*HA_BIRTH_DELAY_SECONDS)
            log.info("Home Assistant (re)started: re-publishing discovery in %.1f s", delay)
            timer = threading.Timer(delay, self.bridge.republish)
            timer.daemon = True
            timer.start()


def _status_of(error: MinutApiError) -> str:
    if isinstance(error, MinutAuthError):
        return "unauthorized"
    if error.status == 429:
        return "rate_limited"
    return "unreachable"


def _parse_all(raw_items: list[dict[str, Any]], parse: Callable[[dict[str, Any]], T]) -> list[T]:
    parsed = []
    for raw in raw_items:
        try:
            parsed.append(parse(raw))
        except MinutDataError as error:
            log.warning("ignoring a Minut object: %s", error)
    return parsed
