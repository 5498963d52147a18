"""The one writer: a single thread owns the mirror, and every other thread sends it jobs.

Polls, webhook deliveries, pulled events, re-publish requests, discovery configs read back from
the broker and the passing of time all reach the mirror as jobs, done by one worker. Nothing
else touches the mirror, so it needs no lock; whoever needs to read it asks the writer (`ask`)
and gets an answer computed on the writer's thread.

Events go first: they wait in a queue of their own, and long jobs (a poll of 2,000 Points, a
re-publish) come in steps of a few Points, between which the worker takes every waiting event,
and waits while the broker is far behind (the outbox holds more than BULK_PAUSE_ABOVE
messages): the job's messages would only wait longer (or overflow the outbox), and its work
would compete with the events for the processor.
Events that arrive before the first poll was tried wait for it, so that they find the Points and
homes they belong to (their states would be lost otherwise).
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future
from typing import TypeVar

from ..core.documents import status_document
from ..core.mirror import Mirror
from ..core.publishing import BULK_HELD_AT_MOST
from ..core.status import StatusBoard
from ..minut.guests import Stay
from ..minut.models import Device, Event, Home

log = logging.getLogger(__name__)

T = TypeVar("T")
Job = Callable[[], Iterator[None] | None]
"""Work for the mirror; one that returns steps is done a step at a time."""
ASK_TIMEOUT_SECONDS = 10.0
BULK_PAUSE_ABOVE = 10_000
"""Messages waiting for the broker (about seven seconds of the default pace) beyond which a long
job waits between its steps until the broker has taken enough. Not fewer: device discovery's
burst of 2,000 Points (5,000 large messages) is bound by building its configs, and pausing it
cost 3 s of its 14."""
BULK_PAUSE_SECONDS = 0.004
"""How often a paused job looks at the backlog again."""
BACKLOG_STALLED_SECONDS = 1.0
BACKLOG_IGNORED_SECONDS = 10.0


class Writer:
    def __init__(
        self,
        mirror: Mirror,
        status: StatusBoard,
        *,
        on_webhook_event_done: Callable[[Event], None] = lambda event: None,
        backlog: Callable[[], int] = lambda: 0,
        events_in_flight: Callable[[], float] = lambda: 0.0,
        on_long_lived: Callable[[], None] | None = None,
    ) -> None:
        """`on_webhook_event_done` hears (on the writer's thread) of each webhook event once its
        messages were handed over (or it was found published already); `backlog` tells how many
        messages wait for the broker (see BULK_PAUSE_ABOVE); `events_in_flight`, for how much longer
        events are on their way to it (see BULK_HELD_AT_MOST); `on_long_lived`, that what lives as
        long as the process was built: once the first poll's Points and homes are known, and once
        each account's first poll has published them (their configs' and states' bookkeeping)."""
        self._mirror = mirror
        self._backlog = backlog
        self._events_in_flight = events_in_flight
        self._on_long_lived = on_long_lived
        self._first_poll_published: set[str] = set()
        """Accounts whose first poll was published and announced to `on_long_lived`."""
        self._backlog_ignored_until = 0.0
        self._stopping = False
        self._status = status
        self._on_webhook_event_done = on_webhook_event_done
        self._wake = threading.Condition()
        self._events: deque[Job] = deque()
        self._jobs: deque[Job | None] = deque()
        self._events_open = False
        self._account_sizes: dict[str, tuple[int, int]] = {}
        """Points and homes of each account at its last poll (logged when they change)."""
        self._held_events: list[Job] = []
        self._republish_queued = False
        self._thread: threading.Thread | None = None

    # -- lifecycle ----------------------------------------------------------------------------

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="writer", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 10.0) -> None:
        """Do every job queued so far (without pausing), then end the worker."""
        self._stopping = True
        self._put(None)
        if self._thread is not None:
            self._thread.join(timeout)

    def run_pending(self) -> None:
        """Do the queued jobs on the calling thread (tests do, instead of starting the worker)."""
        while (job := self._next(wait=False)) is not None:
            self._do(job)

    # -- what other threads send ----------------------------------------------------------------

    def apply_poll(self, devices: list[Device], homes: list[Home], account: str = "") -> None:
        """A full picture of one account, applied before this returns (the poller waits)."""
        self._run_and_wait(lambda: self._apply_poll(devices, homes, account), timeout=None)

    def forget_account(self, account: str) -> None:
        """An account was disconnected: the Points and homes only it showed are removed."""
        self._put(lambda: self._mirror.forget_account(account))

    def open_for_events(self) -> None:
        """The first poll was tried: events held until now go, in the order they came."""
        self._put(self._open_for_events)

    def submit_event(self, event: Event) -> None:
        """An event a webhook delivered."""
        self._submit_events([event], from_webhook=True)

    def submit_pulled(self, events: Iterable[Event]) -> None:
        """Events pulled from Minut's history, oldest first (those already published skipped)."""
        self._submit_events(list(events), from_webhook=False)

    def request_republish(self) -> None:
        """States again, and the configs the broker lacks (a reconnect, Home Assistant's
        birth); requests made while one is waiting to start are one re-publish."""
        with self._wake:
            if self._republish_queued:
                return
            self._republish_queued = True
        self._put(self._republish)

    def broker_forgot(self) -> None:
        """The broker kept no session for us: it is about to replay what it retains."""
        self._put(self._mirror.broker_forgot)

    def remember_configs(self, held: dict[str, bytes]) -> None:
        """The discovery configs earlier runs handed over (from the outbox's record)."""
        self._put(lambda: self._mirror.remember_configs(held))

    def note_discovery_config(self, topic: str, payload: bytes) -> None:
        """A retained config the broker holds (from paho's thread: returns at once)."""
        self._put(lambda: self._mirror.note_discovery_config(topic, payload))

    def configs_replayed(self) -> None:
        """The broker has replayed every retained config it holds (see the connection)."""
        self._put(self._mirror.broker_configs_replayed)

    def tick(self) -> None:
        self._put(self._mirror.tick)

    def refresh_status(self) -> None:
        """Publish the bridge's status document if it changed."""
        self._put(self._refresh_status)

    def remember_published(self, event_ids: Iterable[str]) -> None:
        ids = list(event_ids)
        self._put(lambda: self._mirror.remember_published(ids))

    def ask(
        self,
        question: Callable[[], T],
        timeout: float | None = ASK_TIMEOUT_SECONDS,
        *,
        urgent: bool = False,
    ) -> T:
        """The answer to `question`, computed on the writer's thread after the jobs before it
        (`urgent`: before any long job, like an event; for a user's command).

        Raises TimeoutError when the writer did not get to it within `timeout` seconds.
        """
        answer: Future[T] = Future()

        def job() -> None:
            try:
                answer.set_result(question())
            except BaseException as error:
                answer.set_exception(error)

        return self._wait_for(job, answer, timeout, urgent=urgent)

    def apply_update(self, devices: Iterable[Device] = (), homes: Iterable[Home] = ()) -> None:
        """Points and homes read again one by one (a command's result), applied before this
        returns, ahead of long jobs."""
        self.ask(lambda: self._mirror.apply_update(devices, homes), urgent=True)

    def apply_stays(self, home_id: str, stays: tuple[Stay, ...] | None) -> None:
        """A home's guests, read again (None: Minut lists none for it)."""
        self._put(lambda: self._mirror.apply_stays(home_id, stays))

    def _run_and_wait(self, steps: Callable[[], Iterator[None]], timeout: float | None) -> None:
        """Do a stepped job on the writer's thread, and return once its last step is done."""
        done: Future[None] = Future()

        def job() -> Iterator[None]:
            try:
                yield from steps()
                done.set_result(None)
            except BaseException as error:
                done.set_exception(error)

        self._wait_for(job, done, timeout)

    def _wait_for(
        self, job: Job, answer: Future[T], timeout: float | None, *, urgent: bool = False
    ) -> T:
        self._put(job, urgent=urgent)
        if self._thread is None or self._thread is threading.current_thread():
            self.run_pending()
        return answer.result(timeout)

    @property
    def mirror(self) -> Mirror:
        """For questions passed to `ask`, which run on the writer's thread."""
        return self._mirror

    # -- on the writer's thread -----------------------------------------------------------------

    def _put(self, job: Job | None, *, urgent: bool = False) -> None:
        with self._wake:
            (self._events if urgent else self._jobs).append(job)  # type: ignore[arg-type]
            self._wake.notify()

    def _next(self, *, wait: bool, urgent_only: bool = False) -> Job | None:
        with self._wake:
            while True:
                if self._events:
                    return self._events.popleft()
                if urgent_only:
                    return None
                if self._jobs:
                    job = self._jobs.popleft()
                    return job if job is not None else _STOP
                if not wait:
                    return None
                self._wake.wait()

    def _run(self) -> None:
        while (job := self._next(wait=True)) is not _STOP:
            if job is not None:
                self._do(job)

    def _do(self, job: Job) -> None:
        try:
            steps = job()
            for _ in steps or ():
                self._between_steps()
        except Exception:
            log.exception("the bridge failed to apply a change")

    def _between_steps(self) -> None:
        """Waiting events go now. While the broker is far behind, a pause too: the long job's
        messages would only wait longer in the outbox, and meanwhile its work would keep the
        process busy (and Python's one lock) while events cross the threads; an event ends it.
        """
        self._do_urgent()
        held_until = time.monotonic() + BULK_HELD_AT_MOST
        while not self._stopping and (left := self._events_in_flight()) > 0:
            now = time.monotonic()
            if now >= held_until:
                break
            self._do_events_within(min(left, held_until - now, 0.002))
        self._wait_for_the_broker()

    def _wait_for_the_broker(self) -> None:
        """While more than BULK_PAUSE_ABOVE messages wait and the broker takes them, the job
        waits (events still go): a burst must not outrun the outbox's bound (5,000 Points'
        171,000 configs did, and the outbox dropped states). A broker that takes nothing for
        BACKLOG_STALLED_SECONDS (away) holds no job up for the next BACKLOG_IGNORED_SECONDS:
        the outbox keeps what it can, and polls go on."""
        if self._stopping or time.monotonic() < self._backlog_ignored_until:
            return
        backlog, progressed_at = self._backlog(), time.monotonic()
        while not self._stopping and backlog > BULK_PAUSE_ABOVE:
            self._do_events_within(BULK_PAUSE_SECONDS)
            now_backlog, now = self._backlog(), time.monotonic()
            if now_backlog < backlog:
                progressed_at = now
            elif now - progressed_at >= BACKLOG_STALLED_SECONDS:
                self._backlog_ignored_until = now + BACKLOG_IGNORED_SECONDS
                return
            backlog = now_backlog

    def _do_events_within(self, seconds: float) -> None:
        """Wait up to `seconds` for an event (or an urgent question), then do what is waiting."""
        with self._wake:
            self._wake.wait_for(lambda: bool(self._events), seconds)
        self._do_urgent()

    def _do_urgent(self) -> None:
        while (event := self._next(wait=False, urgent_only=True)) is not None:
            self._do(event)

    def _submit_events(self, events: list[Event], *, from_webhook: bool) -> None:
        def job() -> None:
            if not self._events_open:
                self._held_events.append(job)
                return
            self._publish_events(events, from_webhook=from_webhook)

        self._put(job, urgent=True)

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

    def _apply_poll(self, devices: list[Device], homes: list[Home], account: str) -> Iterator[None]:
        mirror = self._mirror
        counts = (len(devices), len(homes))
        if self._account_sizes.get(account) != counts:
            self._account_sizes[account] = counts
            log.info("Minut account%s: %d Points in %d homes", account and f" {account}", *counts)
        announce = self._on_long_lived
        tells_which_exist = not mirror.polled  # the first poll: announced once its Points are known
        for _ in mirror.poll_steps(devices, homes, account):
            if mirror.polled and not self._events_open:
                self._open_for_events()  # the Points are known: held events find theirs
            if mirror.polled and tells_which_exist and announce is not None:
                tells_which_exist = False
                announce()
            yield
        if announce is not None and account not in self._first_poll_published:
            self._first_poll_published.add(account)
            announce()
        self._status.account_size(len(mirror.devices), len(mirror.homes))

    def _open_for_events(self) -> None:
        self._events_open = True
        held, self._held_events = self._held_events, []
        for job in held:
            job()

    def _republish(self) -> Iterator[None]:
        with self._wake:
            self._republish_queued = False
        self._refresh_status()  # the status as it is now, not as it was at the last refresh
        yield from self._mirror.republish_steps()

    def _refresh_status(self) -> None:
        self._mirror.set_status(status_document(self._status.snapshot()))


def _stop_marker() -> None:
    """Queued by stop(): the worker ends once it reaches it."""


_STOP: Job = _stop_marker
