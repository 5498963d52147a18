"""The running daemon: builds the parts from the settings, wires them together, starts and stops
them. It holds no logic of its own; docs/architecture.md shows the parts and their threads."""

from __future__ import annotations

import logging
import secrets
import sys
import threading
from collections.abc import Callable, Mapping
from datetime import UTC, datetime

from flask import Flask

from .accounts import Accounts, MinutAccount
from .core.control_configs import Controls
from .core.mirror import Mirror
from .core.status import Probes, StatusBoard
from .core.topics import Topics
from .event_process import (
    Delivered,
    EventProcess,
    EventProcessError,
    EventProcessOptions,
    Hooks,
    MainSide,
)
from .minut.client import MinutClient
from .minut.models import Event, HookCredentials
from .mqtt.outbox import OutboxError
from .mqtt.protocol import options_of
from .mqtt.publisher import MqttPublisher
from .runtime.commands import CommandRunner
from .runtime.guests import GuestReader
from .runtime.housekeeping import Housekeeping
from .runtime.poller import Poller
from .runtime.writer import Writer
from .settings import Settings
from .storage import webhook_secret
from .web.app import create_app
from .web.forwarding import ForwardedOnly
from .web.intake import WEBHOOK_PREFIX, WebhookIntake
from .web.page import PageOptions, account_view, local_host_name, page_url
from .web.server import BackgroundServer, cannot_listen, loopback_socket
from .web.status_page import PageSnapshot, home_rows, page_snapshot

log = logging.getLogger(__name__)

OUTBOX_FILE = "outbox.sqlite3"
THREAD_SWITCH_SECONDS = 0.0005


class StartupError(Exception):
    """The daemon cannot start (a port taken, a state directory not writable): says which."""


class Daemon:
    def __init__(
        self,
        settings: Settings,
        *,
        on_change: Callable[[str, str], None] | None = None,
        on_long_lived: Callable[[], None] | None = None,
    ):
        self.settings = settings
        minut_settings, mqtt = settings.minut, settings.mqtt
        self.topics = Topics(mqtt.base_topic, mqtt.discovery_prefix)
        self.status = StatusBoard(on_minut_change=lambda: self.writer.refresh_status())
        controls = settings.controls
        command_filters = self.topics.command_filters if controls.enabled else ()
        self.publisher = MqttPublisher(
            options_of(
                mqtt,
                client_id=mqtt.client_id,
                availability_topic=self.topics.bridge_availability,
                outbox_path=settings.state_dir / OUTBOX_FILE,
                replay_marker_topic=self.topics.bridge_replayed,
            ),
            on_connected=self._broker_connected,
            subscriptions={
                self.topics.ha_status: self._home_assistant_status,
                **dict.fromkeys(self.topics.discovery_filters, self._discovery_config),
                **dict.fromkeys(command_filters, self._command),
            },
            live_only=frozenset(command_filters),
            on_replayed=lambda: self.writer.configs_replayed(),
            on_session_lost=lambda: self.writer.broker_forgot(),
        )
        self.status.probes = Probes(
            mqtt_connected=lambda: self.publisher.connected,
            mqtt_reconnects=lambda: self.publisher.reconnects,
            publish_queue=lambda: self.publisher.queue_depth,
            commands=self._command_results,
        )
        mirror = Mirror(
            self.publisher,
            self.topics,
            stale_after=minut_settings.stale_after,
            momentary_seconds=mqtt.momentary_seconds,
            device_discovery=mqtt.discovery == "device",
            controls=Controls(controls.alarm_code is not None, controls.device_triggers)
            if controls.enabled
            else None,
            guests=controls.guests_interval > 0,
            events_published_elsewhere=settings.webhook.event_process,
            on_change=on_change,
        )
        self.writer: Writer = Writer(
            mirror,
            self.status,
            on_webhook_event_done=lambda event: self.accounts.note_delivered(event),
            backlog=lambda: self.publisher.queue_depth,
            events_in_flight=lambda: self.publisher.events_in_flight.hold_left(),
            on_long_lived=on_long_lived,
        )
        self.accounts: Accounts = Accounts(
            settings,
            self.writer,
            self.status,
            page_url=page_url(settings.webhook),
            on_pulled=self._pulled,
        )
        """Every Minut account, each with its client, poller, catch-up and webhook; commands
        find the client of a home or Point with `accounts.client_for_home(home_id)`."""
        self.commands = CommandRunner(
            self.writer,
            self.publisher,
            self.topics,
            self._client_for,
            alarm_code=controls.alarm_code.get_secret_value() if controls.alarm_code else None,
            on_result=on_change,
        )
        self.guests = GuestReader(
            self.writer, self.accounts.client_for_home, interval=controls.guests_interval
        )
        self.housekeeping = Housekeeping(self.writer, self.status)
        self._threads: list[threading.Thread] = []
        self._stop = threading.Event()
        self._web_server: BackgroundServer | None = None
        self._event_process: EventProcess | None = None
        self.failed = False
        """The daemon stopped because a part of it ended (`minut2mqtt run` exits with 1)."""
        self.webhook_path = ""
        self.webhook_port: int | None = None

    @property
    def first_account(self) -> MinutAccount:
        """The default account (the only one of most bridges), else the first listed."""
        return next(iter(self.accounts))

    @property
    def minut(self) -> MinutClient:
        return self.first_account.client

    @property
    def poller(self) -> Poller:
        return self.first_account.poller

    @property
    def hook(self) -> HookCredentials | None:
        """The first account's hook credentials, once `webhook.public_url` registered one."""
        return self.first_account.hook

    # -- lifecycle ----------------------------------------------------------------------------

    def start(self) -> None:
        # An event crosses four threads (web, writer, sender, paho); Python's default 5 ms
        # between switches of its lock would make each hop cost up to that.
        sys.setswitchinterval(THREAD_SWITCH_SECONDS)
        webhook, state_dir = self.settings.webhook, self.settings.state_dir
        try:
            state_dir.mkdir(parents=True, exist_ok=True)
            secret = webhook.secret.get_secret_value() if webhook.secret else None
            secret = secret or webhook_secret(state_dir)
        except OSError as error:
            raise StartupError(
                f"state_dir {state_dir}: cannot be written ({error.strerror})"
            ) from None
        app = create_app(
            WebhookIntake(
                secret,
                self._webhook_event,
                account_of_path=self.accounts.account_of_path,
                hook=self.accounts.hook,
                signature_header=webhook.signature_header,
                token_header=webhook.token_header,
                verification=webhook.verification,
                on_answered=self.status.delivery_answered,
                on_refused=self._delivery_refused,
            ),
            self.status.snapshot,
            page=self._page_options(),
        )
        try:
            self._listen(app, secret)
            self.publisher.start(before_connecting=self._remember_what_was_published)
        except (OutboxError, EventProcessError) as error:
            self._stop_listening()
            raise StartupError(str(error)) from None
        log.info(
            "webhook listener on http://%s:%d/webhook/<secret> (secret kept in %s)",
            webhook.host,
            self.webhook_port,
            "the configuration" if webhook.secret else state_dir,
        )
        self.writer.start()
        assert self._web_server is not None
        self._web_server.start()
        self.accounts.start(f"{WEBHOOK_PREFIX}{secret}", self.publisher.wait_connected)
        self.webhook_path = self.accounts.webhook_path(self.first_account.name)
        self._spawn("housekeeping", self.housekeeping.run)
        if self.settings.controls.enabled:
            self.commands.start()
        if self.settings.controls.guests_interval:
            self.guests.start()

    def stop(self) -> None:
        """Stop listening and polling, publish what is queued, then tell MQTT we are offline."""
        self._stop.set()
        if self._event_process is None:
            self._stop_listening()
        self.accounts.stop()
        self.housekeeping.stop()
        self.commands.stop()
        self.guests.stop()
        for thread in self._threads:
            thread.join(timeout=10)
        if self._event_process is not None:
            self._stop_listening()  # after the catch-ups that feed it: what they pulled goes out
        self.writer.stop()  # after the loops that feed it: what they queued is published
        self.accounts.save()
        self.publisher.stop()
        log.info("minut2mqtt stopped")

    def wait(self) -> None:
        self._stop.wait()

    def request_stop(self) -> None:
        self._stop.set()

    # -- wiring -------------------------------------------------------------------------------

    def _spawn(self, name: str, target: Callable[[], None]) -> None:
        thread = threading.Thread(target=target, name=name, daemon=True)
        thread.start()
        self._threads.append(thread)

    def _listen(self, app: Flask, secret: str) -> None:
        """On the webhook port: the whole app, or the event process, which hands everything but
        deliveries to the app on a loopback port of its own."""
        webhook = self.settings.webhook
        if not webhook.event_process:
            try:
                self._web_server = BackgroundServer(app, webhook.host, webhook.port, ident="web")
            except OSError as error:
                raise StartupError(cannot_listen(webhook.host, webhook.port, error)) from None
            self.webhook_port = self._web_server.port
            return
        token = secrets.token_urlsafe(32)
        inner = loopback_socket()
        self._event_process = EventProcess(
            EventProcessOptions(
                mqtt=self.settings.mqtt,
                webhook=webhook,
                state_dir=self.settings.state_dir,
                log_level=self.settings.log_level,
                log_format=self.settings.log_format,
                secret=secret,
                inner_port=inner.getsockname()[1],
                forward_token=token,
                hooks=self._hooks(),
            ),
            MainSide(
                delivered=self._delivered_to_event_process,
                pulled_published=self.writer.submit_pulled,
                answered=self.status.delivery_answered,
                refused=self._delivery_refused,
                hooks=self._hooks,
                lost=self._part_ended,
            ),
        )
        self.webhook_port = self._event_process.start()  # forked before any thread starts
        self._web_server = BackgroundServer(ForwardedOnly(app, token), ident="web", bound=inner)

    def _stop_listening(self) -> None:
        if self._event_process is not None:
            self._event_process.stop()
        if self._web_server is not None:
            self._web_server.stop()

    def _remember_what_was_published(self) -> None:
        """Kept with the outbox's messages: a redelivery after a restart is not published
        again, and a config the broker holds is not sent to it again."""
        published = self.publisher.published_event_ids()
        if self._event_process is not None:  # the one that decides what was published
            self._event_process.published_before(published)
        else:
            self.writer.remember_published(published)
        self.writer.remember_configs(self.publisher.held_configs())

    def _hooks(self) -> Hooks:
        return {account.name: account.hook for account in self.accounts}

    def _pulled(self, events: list[Event]) -> None:
        """From a catch-up thread: the one publisher of events publishes them."""
        if self._event_process is not None:
            self._event_process.publish_pulled(events)
        else:
            self.writer.submit_pulled(events)

    def _delivered_to_event_process(self, delivered: Delivered) -> None:
        """The event process published a delivery's event (unless it had before)."""
        self.accounts.webhook_received(delivered.account)
        if delivered.new:
            self.writer.submit_event(delivered.event)
        else:
            self.accounts.note_delivered(delivered.event)

    def _part_ended(self) -> None:
        self.failed = True
        self.request_stop()

    def _webhook_event(self, account: str, event: Event) -> None:
        """From a web thread: note the delivery, queue the event (the answer goes at once)."""
        self.publisher.events_in_flight.coming()
        self.accounts.webhook_received(account)
        self.writer.submit_event(event)

    def _delivery_refused(self, account: str, reason: str) -> None:
        """From a web thread: count it; its event is pulled from Minut instead."""
        self.status.delivery_refused(reason)
        self.accounts.delivery_refused(account)

    def _broker_connected(self) -> None:
        """From paho's thread: whatever the broker outage kept from us comes now."""
        self.accounts.broker_connected()
        # A broker without persistence forgot our retained configs and states: send them again.
        self.writer.request_republish()

    def _command_results(self) -> Mapping[str, int]:
        return self.commands.results

    def _command(self, topic: str, payload: bytes) -> None:
        self.commands.submit(topic, payload)

    def _client_for(self, kind: str, subject: str) -> MinutClient | None:
        if kind == "home":
            return self.accounts.client_for_home(subject)
        return self.accounts.client_for_device(subject)

    def _discovery_config(self, topic: str, payload: bytes) -> None:
        self.writer.note_discovery_config(topic, payload)

    def _home_assistant_status(self, topic: str, payload: bytes) -> None:
        if payload.strip().lower() == b"online":
            delay = self.housekeeping.home_assistant_started()
            log.info("Home Assistant (re)started: re-publishing discovery in %.1f s", delay)

    def _page_options(self) -> PageOptions:
        settings = self.settings
        connector = self.accounts.connector
        password = settings.webhook.page_password

        def snapshot() -> PageSnapshot:
            now = datetime.now(UTC)
            stale_after = settings.minut.stale_after
            mirror = self.writer.mirror
            # urgent: between the steps of a start-up burst, not after it (it may last a minute)
            homes = self.writer.ask(
                lambda: home_rows(mirror.devices, mirror.homes, now, stale_after), urgent=True
            )
            return page_snapshot(
                self.status.snapshot(),
                homes,
                account_view(connector),
                mqtt_broker=f"{settings.mqtt.host}:{settings.mqtt.port}",
                requests_per_minute=settings.minut.requests_per_minute * len(list(self.accounts)),
                stale_after=stale_after,
                now=now,
            )

        return PageOptions(
            snapshot=snapshot,
            account=connector,
            password=password.get_secret_value() if password else None,
            redirect_uri=settings.minut.redirect_uri,
            on_connected=lambda: None,  # the connector starts polling the account it connected
            disconnect=self.accounts.disconnect,
            local_host=local_host_name(settings.webhook.host),
        )
