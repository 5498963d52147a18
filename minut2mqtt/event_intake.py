"""The event process itself (`webhook.event_process`; event_process.py starts and speaks to it).

It listens on the webhook port, checks and parses each delivery (web/intake.py), publishes the
event over a connection and an outbox of its own (QoS 2, exactly once after a kill, as the
bridge's are), then tells the main process, whose mirror flips the states the event drives. It
is the one publisher of events: pulled ones come to it too, so that an id is published once.
Every other request (the page, account connect, /healthz, /metrics) it hands to the main
process (web/forwarding.py). The main process tells it which accounts it reads and their hooks.
"""

from __future__ import annotations

import contextlib
import ctypes
import logging
import os
import signal
import threading
from dataclasses import dataclass
from multiprocessing.connection import Connection
from pathlib import Path

from flask import Flask

from .core.events import PublishedEvents, publish_event
from .core.topics import Topics
from .logs import LogFormat, configure_logging
from .minut.models import Event, HookCredentials
from .mqtt.outbox import OutboxError
from .mqtt.protocol import options_of
from .mqtt.publisher import MqttPublisher
from .settings import MqttSettings, WebhookSettings, account_in_webhook_path
from .web.app import webhook_app
from .web.forwarding import add_forwarding_routes
from .web.intake import WebhookIntake
from .web.server import BackgroundServer, cannot_listen

log = logging.getLogger(__name__)

EVENTS_OUTBOX_FILE = "events.sqlite3"
CLIENT_ID_SUFFIX = "-events"
PR_SET_PDEATHSIG = 1
LOOK_EVERY_SECONDS = 0.1
"""How often each side looks beyond its messages: the main process for changed hooks, the event
process for a main process that is gone."""

Hooks = dict[str, HookCredentials | None]
"""Every account the bridge reads, with its hook's credentials once registered at Minut."""


@dataclass(frozen=True)
class EventProcessOptions:
    mqtt: MqttSettings
    webhook: WebhookSettings
    state_dir: Path
    log_level: str
    log_format: LogFormat
    secret: str
    """The webhook path secret."""
    inner_port: int
    """Where the main process answers everything but deliveries (loopback)."""
    forward_token: str
    hooks: Hooks


# What the event process tells the main process


@dataclass(frozen=True)
class Listening:
    port: int


@dataclass(frozen=True)
class CannotStart:
    reason: str


@dataclass(frozen=True)
class Delivered:
    account: str
    event: Event
    new: bool
    """False: an id published before (a redelivery); nothing went out."""


@dataclass(frozen=True)
class Answered:
    accepted: bool


@dataclass(frozen=True)
class Refused:
    account: str
    reason: str


@dataclass(frozen=True)
class PulledPublished:
    events: list[Event]
    """The pulled events that were new, now published."""


# What the main process tells the event process


@dataclass(frozen=True)
class HooksChanged:
    hooks: Hooks


@dataclass(frozen=True)
class PublishPulled:
    events: list[Event]


@dataclass(frozen=True)
class PublishedBefore:
    """Ids of the events the main process published in earlier runs (before the option was on);
    the first message: deliveries wait for it."""

    event_ids: list[str]


class Channel:
    """One end of the pipe between the two processes; any thread may send."""

    def __init__(self, connection: Connection) -> None:
        self.connection = connection
        self._lock = threading.Lock()

    def send(self, message: object) -> bool:
        """False: the other process is gone."""
        with self._lock:
            try:
                self.connection.send(message)
            except OSError:
                return False
        return True


def run_event_process(connection: Connection, options: EventProcessOptions) -> None:
    """The event process's whole life (multiprocessing's target)."""
    # Ctrl-C reaches every process of the terminal: the main process stops this one in order.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    _die_with_the_main_process()
    if not logging.getLogger().handlers:  # spawned, not forked: a fresh interpreter
        configure_logging(options.log_level, options.log_format)
    _EventIntake(connection, options).run()


def _die_with_the_main_process() -> None:
    """A main process killed takes this one with it at once, as the end of its container would:
    the next start's event process must not share the outbox with one still draining it.
    (Linux; elsewhere this process notices within LOOK_EVERY_SECONDS and stops without draining.)
    """
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGKILL)


class _EventIntake:
    def __init__(self, connection: Connection, options: EventProcessOptions) -> None:
        mqtt = options.mqtt
        self._main = Channel(connection)
        self._main_pid = os.getppid()
        self._told_to_stop = False
        self._options = options
        self._topics = Topics(mqtt.base_topic, mqtt.discovery_prefix)
        self._publisher = MqttPublisher(
            options_of(
                mqtt,
                client_id=mqtt.client_id + CLIENT_ID_SUFFIX,
                availability_topic=None,  # the main process's connection speaks for the bridge
                outbox_path=options.state_dir / EVENTS_OUTBOX_FILE,
            )
        )
        self._published = PublishedEvents()
        self._hooks = options.hooks
        # Held while an event is published and told: web threads and pulls come in one order.
        self._publishing = threading.Lock()

    def run(self) -> None:
        webhook = self._options.webhook
        try:
            server = BackgroundServer(self._app(), webhook.host, webhook.port, ident="web")
        except OSError as error:
            self._tell(CannotStart(cannot_listen(webhook.host, webhook.port, error)))
            return
        try:
            self._publisher.start(before_connecting=self._remember_published)
        except OutboxError as error:
            server.stop()
            self._tell(CannotStart(str(error)))
            return
        self._tell(Listening(server.port))
        try:
            if self._wait_for_published_before():
                server.start()  # deliveries waited in the listening socket's queue
                self._serve_main_process()
        finally:
            server.stop()
            # told to stop: what waits goes first; the main process gone: it waits on disk
            self._publisher.stop(drain_timeout=10.0 if self._told_to_stop else 0.0)

    def _remember_published(self) -> None:
        self._published.add(self._publisher.published_event_ids())

    def _wait_for_published_before(self) -> bool:
        while (message := self._next_message()) is not None:
            if isinstance(message, PublishedBefore):
                self._published.add(message.event_ids)
                return True
        return False

    def _next_message(self) -> object:
        """The main process's next message; None: it said stop, or it is gone."""
        while True:
            try:
                if self._main.connection.poll(LOOK_EVERY_SECONDS):
                    message = self._main.connection.recv()
                    self._told_to_stop = message is None
                    return message
            except (EOFError, OSError):
                return None
            if os.getppid() != self._main_pid:
                log.error("the bridge's main process is gone: the event process stops")
                return None

    def _app(self) -> Flask:
        webhook = self._options.webhook
        app = webhook_app(
            "minut2mqtt.events",
            WebhookIntake(
                self._options.secret,
                self._delivered,
                account_of_path=self._account_of_path,
                hook=lambda account: self._hooks.get(account),
                signature_header=webhook.signature_header,
                token_header=webhook.token_header,
                verification=webhook.verification,
                on_answered=lambda accepted: self._tell(Answered(accepted)),
                on_refused=lambda account, reason: self._tell(Refused(account, reason)),
            ),
        )
        add_forwarding_routes(app, self._options.inner_port, self._options.forward_token)
        return app

    def _account_of_path(self, part: str | None) -> str | None:
        name = account_in_webhook_path(part)
        return name if name in self._hooks else None

    def _delivered(self, account: str, event: Event) -> None:
        """From a web thread: publish the event unless it was before, tell the main process."""
        with self._publishing:
            self._tell(Delivered(account, event, self._publish(event)))

    def _publish_pulled(self, events: list[Event]) -> None:
        with self._publishing:
            with self._publisher.batch():
                new = [event for event in events if self._publish(event)]
            self._tell(PulledPublished(new))

    def _tell(self, message: object) -> None:
        if not self._main.send(message):
            log.debug("the main process is gone: %s not told", type(message).__name__)

    def _publish(self, event: Event) -> bool:
        return publish_event(self._publisher, self._topics, self._published, event)

    def _serve_main_process(self) -> None:
        while (message := self._next_message()) is not None:
            match message:
                case HooksChanged(hooks):
                    self._hooks = hooks
                case PublishPulled(events):
                    self._publish_pulled(events)
