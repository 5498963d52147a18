"""Where messages leave the bridge: the Publisher over paho-mqtt, sending from the outbox."""

from __future__ import annotations

import contextlib
import logging
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator

import paho.mqtt.client as mqtt
from paho.mqtt.enums import MQTTErrorCode

from ..core.publishing import BULK_HELD_AT_MOST, EVENT_QOS, QOS, Lane, lane_of
from ..settings import MqttProtocol
from .connection import BrokerConnection, Listeners
from .outbox import BatchRefused, Outbox, OutboxRow
from .pacer import EventsInFlight, Pacer
from .protocol import MAX_IN_FLIGHT, MqttOptions, sendable_payload
from .session import packet_id_of

log = logging.getLogger(__name__)

__all__ = ["MqttOptions", "MqttPublisher"]

EVENT_ROOM = 2
"""Unacknowledged messages the bulk lanes leave room for, so an event goes out at once."""
BULK_BATCH = 10
"""States or configs handed to paho between two looks at the events lane."""


class MqttPublisher:
    """paho-mqtt 2.x, MQTT 5 or 3.1.1 (connection.py): retained messages at QoS 1, events at
    QoS 2, a persistent session, automatic reconnect, retained last will on availability.

    publish() puts every message in the outbox (a file with `outbox_path`: a restart while the
    broker is away loses nothing); it leaves the outbox when the broker acknowledged it. The
    sender hands rows to paho in order while connected, under packet ids derived from their rows
    (session.py: a QoS 2 delivery resumes exactly once after a kill), MAX_IN_FLIGHT at most
    unacknowledged, at `messages_per_second` after a burst: the broker hands a message on to
    each subscriber only as fast as that one reads, and drops what it queued beyond its bound.
    """

    def __init__(
        self,
        options: MqttOptions,
        *,
        on_connected: Callable[[], None] = lambda: None,
        subscriptions: dict[str, Callable[[str, bytes], None]] | None = None,
        live_only: frozenset[str] = frozenset(),
        on_replayed: Callable[[], None] = lambda: None,
        on_session_lost: Callable[[], None] = lambda: None,
    ):
        """`on_replayed`: see Listeners.replayed (with `options.replay_marker_topic`);
        `on_session_lost`: the broker kept no session for us (a first connect, a broker restarted
        without persistence, a session expired): what it retains is unknown."""
        self._on_session_lost = on_session_lost
        self._options = options
        self._outbox: Outbox | None = None
        """Opened by start(): the daemon creates the state directory only then."""
        self._outbox_failures = 0
        self._pacers = {lane: Pacer(options.messages_per_second, options.burst) for lane in Lane}
        """One per lane: a burst of configs does not slow the events down."""
        self._events_appended = 0
        self.events_in_flight = EventsInFlight()
        """Bulk work, here and in the writer, holds back while events are on their way."""
        self._sender = threading.Thread(target=self._run_sender, name="mqtt-sender", daemon=True)
        # What the sender waits for, guarded by `_wake`: every change adds to `_signals`; while
        # it waits for a bulk lane's pace, only an event (`_event_came`).
        self._wake = threading.Condition(wake_lock := threading.RLock())
        self._event_came = threading.Condition(wake_lock)
        self._signals = 0
        self._in_flight: dict[int, int] = {}
        """Packet id → outbox row, for rows handed to paho on this connection, not acknowledged."""
        self._delivered: list[int] = []
        """Rows the broker acknowledged, for the sender to delete."""
        self._room = MAX_IN_FLIGHT
        self._generation = 0
        """Counts successful connects: rows handed to paho belong to the connection they went on."""
        self._stop_at: float | None = None
        # Held while handing a row to paho and while a new connection starts, so a row is never
        # handed to paho for one connection and then counted as sent on the next.
        self._handoff = threading.Lock()
        self._link = BrokerConnection(
            options,
            Listeners(
                self._session_started,
                self._pubrec,
                self._acknowledged,
                self._changed,
                on_replayed,
            ),
            on_connected=on_connected,
            subscriptions=subscriptions,
            live_only=live_only,
        )

    @property
    def connected(self) -> bool:
        return self._link.connected.is_set()

    @property
    def reconnects(self) -> int:
        return self._link.reconnects

    @property
    def protocol(self) -> MqttProtocol:
        return self._link.protocol

    def start(self, before_connecting: Callable[[], None] = lambda: None) -> None:
        """Open the outbox, connect in the background; paho keeps retrying until the broker answers.

        `before_connecting` runs once the outbox is open (what it kept can be read), before any
        connection. Raises OutboxError when the outbox file cannot be opened or created.
        """
        outbox = Outbox(self._options.outbox_path, self._options.outbox_limit, self._written)
        if outbox.left_by_previous_run:
            log.info(
                "%d MQTT messages left unsent by the previous run in %s go first (%d of them "
                "taken in by the broker already: they are only released)",
                outbox.left_by_previous_run,
                outbox.path,
                outbox.left_released,
            )
        self._outbox = outbox
        before_connecting()
        self._link.start()
        self._sender.start()

    def wait_connected(self, timeout: float) -> bool:
        return self._link.connected.wait(timeout)

    def held_configs(self) -> dict[str, bytes]:
        """Fingerprints of the discovery configs handed over in earlier runs (after `start`)."""
        return self._outbox.held_configs() if self._outbox is not None else {}

    def published_event_ids(self) -> list[str]:
        """Ids of the latest events handed over, from the outbox file (after `start`)."""
        return self._outbox.published_event_ids() if self._outbox is not None else []

    @property
    def queue_depth(self) -> int:
        """Messages in the outbox: waiting, or sent and not acknowledged by the broker yet."""
        outbox = self._outbox
        return len(outbox) if outbox is not None else 0

    def stop(self, drain_timeout: float = 10.0) -> None:
        """Send what the broker takes within `drain_timeout`, say `offline` on purpose (the will
        is for a crash), disconnect. What is left waits in the outbox file for the next start.
        """
        if self._sender.is_alive():
            with self._wake:
                self._stop_at = time.monotonic() + drain_timeout
                self._signal()
            self._sender.join(drain_timeout + 1)
        self._link.stop()
        outbox, self._outbox = self._outbox, None
        if outbox is not None:
            if left := len(outbox):
                where = f"wait in {outbox.path}" if outbox.path else "are lost (no outbox file)"
                log.warning("%d MQTT messages the broker did not take %s", left, where)
            outbox.close()

    def publish(
        self,
        topic: str,
        payload: str | bytes,
        *,
        retain: bool,
        event_id: str | None = None,
        lane: Lane | None = None,
    ) -> None:
        """Keep the message in the outbox (committed when this returns, or at the end of the
        batch it is in); the sender sends it."""
        data = sendable_payload(topic, payload)
        outbox = self._outbox
        if data is None:
            return
        if outbox is None:
            log.error("MQTT message to %s published while the publisher is stopped: dropped", topic)
            return
        try:
            outbox.append(topic, data, retain=retain, event_id=event_id, lane=lane)
        except sqlite3.Error as error:
            self._refused(outbox, error, 1)
            return
        if lane_of(retain, lane) == Lane.EVENTS:
            self.events_in_flight.arrived()
            with self._wake:
                self._events_appended += 1
                self._signal()
                self._event_came.notify_all()

    @contextlib.contextmanager
    def batch(self) -> Iterator[None]:
        """Messages published inside go to the outbox's file together at its end (and the
        sender hears of them then), so the outbox is not held while they are built."""
        outbox = self._outbox
        if outbox is None:
            yield
            return
        try:
            with outbox.batch():
                yield
        except BatchRefused as error:
            self._refused(outbox, error, error.messages)

    def _written(self) -> None:
        """The outbox committed new messages: wake the sender."""
        with self._wake:
            dropped, self._outbox_failures = self._outbox_failures, 0
            self._signal()
        if dropped:
            log.warning("MQTT outbox takes messages again; %d were dropped", dropped)

    def _refused(self, outbox: Outbox, error: sqlite3.Error, messages: int) -> None:
        """A full disk, a closed outbox: reported once, not per message."""
        with self._wake:
            first_failure = not self._outbox_failures
            self._outbox_failures += messages
        if first_failure:
            log.error("MQTT outbox %s refuses messages (%s): dropping them", outbox.path, error)

    def _signal(self) -> None:
        """Wake the sender; `_wake` must be held."""
        self._signals += 1
        self._wake.notify_all()

    # -- the sender thread ----------------------------------------------------------------------

    def _run_sender(self) -> None:
        outbox = self._outbox
        assert outbox is not None, "start() opens the outbox before the sender starts"
        while True:
            try:
                self._send_from(outbox)
                return
            except Exception:
                if self._stop_at is not None:
                    return
                log.exception("MQTT sender failed; starting it again in 1 s")
                time.sleep(1)

    def _send_from(self, outbox: Outbox) -> None:
        """Hand outbox rows to paho, events first, each lane in order, while connected; delete
        them once acknowledged."""
        handed_through = dict.fromkeys(Lane, 0)
        """Per lane, the newest row handed to paho on this connection; the next comes after."""
        generation = -1
        bulk_held_since: float | None = None
        while True:
            with self._wake:
                signals_seen = self._signals
                events_seen = self._events_appended
                current_generation = self._generation
                delivered, self._delivered = self._delivered, []
                stop_at = self._stop_at
                room = self._room - len(self._in_flight)
            if delivered:
                outbox.delete(delivered)
            if current_generation != generation:
                # A new connection: what the last one left unacknowledged goes again, in order,
                # under the same packet ids (see _session_started)
                generation = current_generation
                handed_through = dict.fromkeys(Lane, 0)
            if stop_at is not None and (
                not self.connected or not len(outbox) or time.monotonic() >= stop_at
            ):
                return
            self._link.speak_3_1_1_if_5_is_refused()
            self._link.replay_overdue()
            hold, now = self.events_in_flight.hold_left(), time.monotonic()
            bulk_held_since = (bulk_held_since or now) if hold else None  # since when held back
            bulk_may_go = bulk_held_since is None or now - bulk_held_since >= BULK_HELD_AT_MOST
            lane, batch = self._next_batch(outbox, handed_through, room, bulk_may_go)
            if not batch:
                self._wait_for_signal_after(signals_seen, min(hold, BULK_HELD_AT_MOST) or 1.0)
                continue
            if lane != Lane.EVENTS:
                bulk_held_since = None
            pacer = self._pacers[lane]
            wait = pacer.delay(len(batch))  # one wait per batch: a tenth of the wake-ups
            if wait > 0 and self._event_within(wait, events_seen):
                pacer.refund(len(batch))
                continue  # an event came while this lane waited for its pace: look again
            unsent = len(batch)  # what is left of the batch gives its places of the pace back
            for row in batch:
                try:
                    handed = self._hand_to_paho(row, generation)
                except Exception:  # one bad message must not stop every later one
                    log.exception("MQTT message to %s could not be sent: dropped", row.topic)
                    outbox.delete([row.row_id])
                    handed = True  # dropped: the rest of the batch comes after it
                if not handed:
                    break  # the connection changed, or the packet id is busy: look again
                unsent -= 1
                handed_through[lane] = row.row_id
                stopping = self._stop_at is not None and time.monotonic() >= self._stop_at
                if stopping or (lane != Lane.EVENTS and self._events_appended != events_seen):
                    break  # an event goes before the rest of this batch, or it is time to stop
            pacer.refund(unsent)

    def _next_batch(
        self, outbox: Outbox, handed_through: dict[Lane, int], room: int, bulk_may_go: bool
    ) -> tuple[Lane, list[OutboxRow]]:
        """The next rows to hand to paho: of the first lane that has some, within the room the
        broker leaves (bulk lanes keep a little of it free for events, go in small batches so
        that an event never waits long, and hold back while events are in flight)."""
        if self.connected:
            for lane in Lane:
                if lane != Lane.EVENTS and not bulk_may_go:
                    break
                allowed = room if lane == Lane.EVENTS else min(BULK_BATCH, room - EVENT_ROOM)
                if allowed > 0 and (rows := outbox.rows_after(handed_through[lane], allowed, lane)):
                    return lane, rows
        return Lane.EVENTS, []

    def _event_within(self, seconds: float, events_seen: int) -> bool:
        """Wait `seconds` (a lane's pace); True as soon as an event came (it may go first)."""
        with self._event_came:
            return self._event_came.wait_for(lambda: self._events_appended != events_seen, seconds)

    def _wait_for_signal_after(self, signals_seen: int, timeout: float = 1.0) -> None:
        with self._wake:
            self._wake.wait_for(lambda: self._signals != signals_seen, timeout)

    def _hand_to_paho(self, row: OutboxRow, generation: int) -> bool:
        """Publish (or, once the broker has it, release) a row on connection `generation`."""
        packet_id = packet_id_of(row.row_id)
        client = self._link.client
        with self._handoff:
            if generation != self._generation or not self.connected:
                return False
            with self._wake:  # before the packet leaves: its PUBREC may come back at once
                self._in_flight[packet_id] = row.row_id
                if not row.retain and not row.released:
                    self.events_in_flight.handed(packet_id)
            if row.released:
                rc = client.release(packet_id)
            else:
                qos = QOS if row.retain else EVENT_QOS
                rc = client.publish_as(packet_id, row.topic, row.payload, qos, row.retain).rc
        if rc == MQTTErrorCode.MQTT_ERR_QUEUE_SIZE:
            with self._wake:
                self._in_flight.pop(packet_id, None)
            time.sleep(0.1)  # an older message still holds this packet id
            return False
        if rc not in (MQTTErrorCode.MQTT_ERR_SUCCESS, MQTTErrorCode.MQTT_ERR_NO_CONN):
            log.warning("MQTT publish to %s failed: %s", row.topic, mqtt.error_string(rc))
        return True

    # -- what the connection tells (paho's network thread) --------------------------------------

    def _session_started(self, session_present: bool, room: int) -> None:
        """Before the connection counts as connected: rows handed to paho from now on belong
        to it, and what the last one left is handed again (it was dropped from paho)."""
        outbox = self._outbox
        with self._handoff:
            forgotten = 0 if session_present or outbox is None else outbox.forget_releases()
            if forgotten:
                log.warning(
                    "MQTT broker %s lost our session: %d events it had taken in are sent again "
                    "(a subscriber may get some twice)",
                    self._link.where,
                    forgotten,
                )
            with self._wake:
                self._generation += 1
                self._in_flight.clear()
                self.events_in_flight.forget()
                self._room = room
                self._signal()
        if not session_present:
            self._on_session_lost()

    def _pubrec(self, packet_id: int) -> None:
        with self._wake:
            row_id = self._in_flight.get(packet_id)
            if self.events_in_flight.landed(packet_id):
                self._signal()
        outbox = self._outbox
        if row_id is not None and outbox is not None:
            outbox.mark_released(row_id)

    def _acknowledged(self, packet_id: int) -> None:
        """The sender deletes the row on its next round, woken only if it may wait for the room
        this leaves or for the last one (not once per message: an outbox transaction each)."""
        with self._wake:
            window_was_full = len(self._in_flight) >= self._room - EVENT_ROOM
            row_id = self._in_flight.pop(packet_id, None)
            self.events_in_flight.landed(packet_id)
            if row_id is not None:
                self._delivered.append(row_id)
            if window_was_full or not self._in_flight or self._stop_at is not None:
                self._signal()

    def _changed(self) -> None:
        with self._wake:
            self._signal()
