"""The one writer: a single thread owns the mirror, and every other thread sends it jobs.

Polls, webhook deliveries, pulled events, re-publish requests, discovery configs read back from
the broker and the passing of time all reach the mirror as jobs on one queue, done in order by
one worker. Nothing else touches the mirror, so it needs no lock; whoever needs to read it asks
the writer (`ask`) and gets an answer computed on the writer's thread.

Events that arrive before the first poll was tried wait for it, so that they find the Points and
homes they belong to (their states would be lost otherwise).
"""

from __future__ import annotations

import logging
import queue
import threading
from collections.abc import Callable, Iterable
from concurrent.futures import Future
from typing import TypeVar

from ..core.documents import status_document
from ..core.mirror import Mirror
from ..core.status import StatusBoard
from ..minut.models import Device, Event, Home

log = logging.getLogger(__name__)

T = TypeVar("T")
Job = Callable[[], None]
ASK_TIMEOUT_SECONDS = 10.0


class Writer:
    def __init__(
        self,
        mirror: Mirror,
        status: StatusBoard,
        *,
        on_webhook_event_done: Callable[[Event], None] = lambda event: None,
    ) -> None:
        """`on_webhook_event_done` hears (on the writer's thread) of each webhook event once its
        messages were handed over (or it was found published already)."""
        self._mirror = mirror
        self._status = status
        self._on_webhook_event_done = on_webhook_event_done
        self._jobs: queue.SimpleQueue[Job | None] = queue.SimpleQueue()
        self._events_open = False
        self._held_events: list[Job] = []
        self._republish_queued = threading.Event()
        self._thread: threading.Thread | None = None

    # -- lifecycle ----------------------------------------------------------------------------

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="writer", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 10.0) -> None:
        """Do every job queued so far, then end the worker."""
        self._jobs.put(None)
        if self._thread is not None:
            self._thread.join(timeout)

    def run_pending(self) -> None:
        """Do the queued jobs on the calling thread (tests do, instead of starting the worker)."""
        while True:
            try:
                job = self._jobs.get_nowait()
            except queue.Empty:
                return
            if job is not None:
                self._do(job)

    # -- what other threads send ----------------------------------------------------------------

    def apply_poll(self, devices: list[Device], homes: list[Home]) -> None:
        """A full picture of the account, applied before this returns (the poller waits)."""
        self.ask(lambda: self._apply_poll(devices, homes), timeout=None)

    def open_for_events(self) -> None:
        """The first poll was tried: events held until now go, in the order they came."""
        self._jobs.put(self._open_for_events)

    def submit_event(self, event: Event) -> None:
        """An event a webhook delivered."""
        self._submit_events([event], from_webhook=True)

    def submit_pulled(self, events: Iterable[Event]) -> None:
        """Events pulled from Minut's history, oldest first (those already published skipped)."""
        self._submit_events(list(events), from_webhook=False)

    def request_republish(self) -> None:
        """Every config and state again (a reconnect, Home Assistant's birth); requests made
        while one is waiting to start are one re-publish."""
        if not self._republish_queued.is_set():
            self._republish_queued.set()
            self._jobs.put(self._republish)

    def note_discovery_config(self, topic: str, payload: bytes) -> None:
        """A retained config the broker holds (from paho's thread: returns at once)."""
        self._jobs.put(lambda: self._mirror.note_discovery_config(topic, payload))

    def tick(self) -> None:
        self._jobs.put(self._mirror.tick)

    def refresh_status(self) -> None:
        """Publish the bridge's status document if it changed."""
        self._jobs.put(self._refresh_status)

    def sweep_orphans(self) -> None:
        self._jobs.put(self._sweep_orphans)

    def remember_published(self, event_ids: Iterable[str]) -> None:
        ids = list(event_ids)
        self._jobs.put(lambda: self._mirror.remember_published(ids))

    def ask(self, question: Callable[[], T], timeout: float | None = ASK_TIMEOUT_SECONDS) -> T:
        """The answer to `question`, computed on the writer's thread after the jobs before it.

        Raises TimeoutError when the writer did not get to it within `timeout` seconds.
        """
        answer: Future[T] = Future()

        def job() -> None:
            try:
                answer.set_result(question())
            except BaseException as error:
                answer.set_exception(error)

        self._jobs.put(job)
        if self._thread is None or self._thread is threading.current_thread():
            self.run_pending()
        return answer.result(timeout)

    @property
    def mirror(self) -> Mirror:
        """For questions passed to `ask`, which run on the writer's thread."""
        return self._mirror

    # -- on the writer's thread -----------------------------------------------------------------

    def _run(self) -> None:
        while (job := self._jobs.get()) is not None:
            self._do(job)

    def _do(self, job: Job) -> None:
        try:
            job()
        except Exception:
            log.exception("the bridge failed to apply a change")

    def _submit_events(self, events: list[Event], *, from_webhook: bool) -> None:
        def job() -> None:
            if not self._events_open:
                self._held_events.append(job)
                return
            self._publish_events(events, from_webhook=from_webhook)

        self._jobs.put(job)

    def _publish_events(self, events: list[Event], *, from_webhook: bool) -> None:
        new = 0
        for event in events:
            try:
                published = self._mirror.apply_event(event)
            except Exception:
                log.exception("could not process Minut event %s (%s)", event.id, event.type)
                continue
            if published:
                new += 1
                self._status.event_published(pulled=not from_webhook)
            if from_webhook:
                self._on_webhook_event_done(event)
        if new and not from_webhook:
            log.info("%d events pulled from Minut that no webhook had delivered", new)

    def _apply_poll(self, devices: list[Device], homes: list[Home]) -> None:
        mirror = self._mirror
        counts = (len(devices), len(homes))
        if counts != (len(mirror.devices), len(mirror.homes)):
            log.info("Minut account: %d Points in %d homes", *counts)
        mirror.apply_poll(devices, homes)
        self._status.account_size(*counts)

    def _open_for_events(self) -> None:
        self._events_open = True
        held, self._held_events = self._held_events, []
        for job in held:
            job()

    def _sweep_orphans(self) -> None:
        self._mirror.sweep_orphans()

    def _republish(self) -> None:
        self._republish_queued.clear()
        self._refresh_status()  # the status as it is now, not as it was at the last refresh
        self._mirror.republish()

    def _refresh_status(self) -> None:
        self._mirror.set_status(status_document(self._status.snapshot()))
