"""Webhook deliveries and their events in a process of their own (`webhook.event_process`).

In the bridge's process an event shares Python's one lock with all the bridge does: while it
published the discovery of 2,000 Points, an event's p99 was 17 to 42 ms (docs/scale.md). The
event process (event_intake.py) receives deliveries and publishes events on its own; this is the
main process's side: it starts the event process, tells it the accounts' hooks and the events
pulled from Minut, and hears what it published.
"""

from __future__ import annotations

import gc
import logging
import multiprocessing
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from multiprocessing.context import ForkContext, SpawnContext
from multiprocessing.process import BaseProcess

from .event_intake import (
    LOOK_EVERY_SECONDS,
    Answered,
    CannotStart,
    Channel,
    Delivered,
    EventProcessOptions,
    Hooks,
    HooksChanged,
    Listening,
    PublishedBefore,
    PublishPulled,
    PulledPublished,
    Refused,
    run_event_process,
)
from .minut.models import Event

__all__ = [
    "Delivered",
    "EventProcess",
    "EventProcessError",
    "EventProcessOptions",
    "Hooks",
    "MainSide",
]

log = logging.getLogger(__name__)

START_TIMEOUT_SECONDS = 30.0


class EventProcessError(Exception):
    """The event process could not start: says why."""


@dataclass(frozen=True)
class MainSide:
    """What the main process does with what the event process tells it (on its reader thread)."""

    delivered: Callable[[Delivered], None]
    pulled_published: Callable[[list[Event]], None]
    answered: Callable[[bool], None]
    refused: Callable[[str, str], None]
    hooks: Callable[[], Hooks]
    lost: Callable[[], None]
    """The event process ended while the bridge runs: webhook deliveries go unanswered."""


class EventProcess:
    """The main process's handle on the event process."""

    def __init__(self, options: EventProcessOptions, main: MainSide) -> None:
        self._options = options
        self._main = main
        self._hooks_sent = options.hooks
        self._stopping = False
        self._channel: Channel | None = None
        self._process: BaseProcess | None = None
        self._reader = threading.Thread(target=self._read, name="event-process", daemon=True)

    def start(self) -> int:
        """Start it and wait until it listens; the port it listens on. Forks when this process
        has no other thread yet (the child shares the loaded code's memory), else spawns."""
        context: ForkContext | SpawnContext
        if threading.active_count() == 1:
            context = multiprocessing.get_context("fork")
            # The garbage collector's passes would write to every object it tracks, and each
            # page written is copied: frozen, they stay shared with the main process.
            gc.freeze()
        else:
            log.debug(
                "%d threads run already: the event process is spawned", threading.active_count()
            )
            context = multiprocessing.get_context("spawn")
        connection, child_end = context.Pipe()
        self._channel = Channel(connection)
        self._process = context.Process(
            target=run_event_process,
            args=(child_end, self._options),
            name="minut2mqtt-events",
            daemon=True,
        )
        self._process.start()
        child_end.close()
        if not connection.poll(START_TIMEOUT_SECONDS):
            self._process.kill()
            raise EventProcessError(
                f"the event process did not start in {START_TIMEOUT_SECONDS:g} s"
            )
        first = connection.recv()
        if isinstance(first, CannotStart):
            self._process.join(5)
            raise EventProcessError(first.reason)
        assert isinstance(first, Listening)
        log.info(
            "event process %d (%s) listens for webhook deliveries",
            self._process.pid,
            context.get_start_method(),
        )
        self._reader.start()
        return first.port

    def published_before(self, event_ids: list[str]) -> None:
        self._send(PublishedBefore(event_ids))

    def publish_pulled(self, events: list[Event]) -> None:
        if events:
            self._send(PublishPulled(events))

    def stop(self) -> None:
        """Let it publish what it holds and disconnect; it ends with the main process anyway."""
        self._stopping = True
        if self._process is None or not self._process.is_alive():
            return
        self._send(None)
        self._process.join(15)
        if self._process.is_alive():
            log.warning("the event process did not stop in 15 s: killed")
            self._process.kill()
        if self._reader.is_alive():
            self._reader.join(2)

    def _send(self, message: object) -> None:
        assert self._channel is not None
        if not self._channel.send(message):
            log.error("the event process is gone: %s not sent", type(message).__name__)

    def _read(self) -> None:
        assert self._channel is not None and self._process is not None
        connection = self._channel.connection
        hooks_due = 0.0
        while True:
            try:
                message = connection.recv() if connection.poll(LOOK_EVERY_SECONDS) else None
            except (EOFError, OSError):
                break
            try:
                self._hear(message)
            except Exception:
                log.exception("could not handle %r from the event process", message)
            if (now := time.monotonic()) >= hooks_due:  # not per event: a stream never pauses
                hooks_due = now + LOOK_EVERY_SECONDS
                self._send_hooks_if_changed()
        if not self._stopping:
            self._process.join(1)
            log.error(
                "the event process ended (exit code %s): webhook deliveries go unanswered",
                self._process.exitcode,
            )
            self._main.lost()

    def _hear(self, message: object) -> None:
        match message:
            case Delivered():
                self._main.delivered(message)
            case PulledPublished(events):
                self._main.pulled_published(events)
            case Answered(accepted):
                self._main.answered(accepted)
            case Refused(account, reason):
                self._main.refused(account, reason)

    def _send_hooks_if_changed(self) -> None:
        hooks = self._main.hooks()
        if hooks != self._hooks_sent:
            self._hooks_sent = hooks
            self._send(HooksChanged(hooks))
