"""Where messages leave the bridge: the Publisher over paho-mqtt, sending from the outbox."""

from __future__ import annotations

import contextlib
import logging
import sqlite3
import ssl
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion, MQTTErrorCode
from paho.mqtt.reasoncodes import ReasonCode

from ..core.documents import OFFLINE, ONLINE
from ..core.publishing import EVENT_QOS, QOS
from .outbox import DEFAULT_LIMIT, Outbox, OutboxRow
from .pacer import Pacer
from .trouble import ConnectionTrouble

log = logging.getLogger(__name__)

MAX_IN_FLIGHT = 20
"""Messages handed to paho that the broker has not acknowledged yet (paho's own limit too).

Mosquitto's default `max_inflight_messages` is 20: beyond that it silently drops a client's QoS 2
messages (seen: 80 of 100 events lost), so no more may be in flight.
"""
MAX_TOPIC_BYTES = 65_535
MAX_PAYLOAD_BYTES = 268_435_455


@dataclass(frozen=True)
class MqttOptions:
    host: str
    port: int
    client_id: str
    availability_topic: str
    username: str | None = None
    password: str | None = None
    keepalive: int = 60
    tls_context: ssl.SSLContext | None = None
    messages_per_second: float = 500.0
    burst: int = 200
    outbox_path: Path | None = None
    """The SQLite file where messages wait for the broker; None: in memory, lost on a restart."""
    outbox_limit: int = DEFAULT_LIMIT
    """The most messages the outbox keeps; beyond, the oldest retained, then events, go."""


class MqttPublisher:
    """paho-mqtt 2.x: retained messages at QoS 1, events at QoS 2, automatic reconnect, retained
    last will on the availability topic.

    Speaks MQTT 3.1.1, which Mosquitto and the embedded amqtt broker both accept.

    publish() puts every message in the outbox (a file with `outbox_path`, so a restart while
    the broker is away loses nothing) and a message leaves it only when the broker acknowledged
    it. The sender thread hands messages to paho in order, only while connected (paho would keep
    them in memory only), with at most MAX_IN_FLIGHT unacknowledged, and at `messages_per_second`
    after a burst: the broker acks a publish at once, but hands it on to each subscriber only as
    fast as that one reads, and Mosquitto drops what a subscriber has not read beyond 1000 queued
    messages. Home Assistant reading the discovery of 500 Points (over 10,000 configs) would
    otherwise lose some.
    """

    def __init__(
        self,
        options: MqttOptions,
        *,
        on_connected: Callable[[], None] = lambda: None,
        subscriptions: dict[str, Callable[[str, bytes], None]] | None = None,
    ):
        self._options = options
        self._on_connected = on_connected
        self._subscriptions = dict(subscriptions or {})
        self._connected = threading.Event()
        self.reconnects = 0
        self._outbox: Outbox | None = None
        """Opened by start(): the daemon creates the state directory only then."""
        self._outbox_failures = 0
        self._pacer = Pacer(options.messages_per_second, options.burst)
        self._sender = threading.Thread(target=self._run_sender, name="mqtt-sender", daemon=True)
        # What the sender waits for, guarded by `_wake`: every change adds to `_signals`.
        self._wake = threading.Condition()
        self._signals = 0
        self._acknowledged: list[int] = []
        """paho message ids the broker acknowledged, for the sender to delete their rows."""
        self._generation = 0
        """Counts successful connects: rows handed to paho belong to the connection they went on."""
        self._stop_at: float | None = None
        # Held while handing a row to paho and while a new connection starts, so a row is never
        # handed to paho for one connection and then counted as sent on the next.
        self._handoff = threading.Lock()
        self._client = mqtt.Client(
            CallbackAPIVersion.VERSION2,
            client_id=options.client_id,
            protocol=mqtt.MQTTv311,
            clean_session=True,
        )
        if options.username:
            self._client.username_pw_set(options.username, options.password)
        if options.tls_context is not None:
            self._client.tls_set_context(options.tls_context)
        self._client.will_set(options.availability_topic, OFFLINE, qos=QOS, retain=True)
        self._client.reconnect_delay_set(min_delay=1, max_delay=30)
        self._client.max_inflight_messages_set(MAX_IN_FLIGHT)
        self._client.on_connect = self._handle_connect
        self._client.on_connect_fail = self._handle_connect_fail
        self._client.on_disconnect = self._handle_disconnect
        self._client.on_publish = self._handle_acknowledged
        self._client.on_message = self._handle_message
        self._client.on_log = self._handle_paho_log
        self._trouble = ConnectionTrouble(self._where, tls=options.tls_context is not None)

    @property
    def connected(self) -> bool:
        return self._connected.is_set()

    def start(self) -> None:
        """Open the outbox, connect in the background; paho keeps retrying until the broker answers.

        Raises OutboxError when the outbox file cannot be opened or created.
        """
        outbox = Outbox(self._options.outbox_path, self._options.outbox_limit)
        if outbox.left_by_previous_run:
            log.info(
                "%d MQTT messages left unsent by the previous run in %s go first",
                outbox.left_by_previous_run,
                outbox.path,
            )
        self._outbox = outbox
        tls = self._options.tls_context
        log.info(
            "connecting to MQTT broker %s:%d%s",
            self._options.host,
            self._options.port,
            " over TLS" if tls is not None else "",
        )
        if tls is not None and tls.verify_mode == ssl.CERT_NONE:
            log.warning(
                "mqtt.tls.insecure is true: the MQTT broker's certificate and hostname are not "
                "checked, so anyone on the way to %s could pose as the broker",
                self._options.host,
            )
        self._client.connect_async(self._options.host, self._options.port, self._options.keepalive)
        self._client.loop_start()
        self._sender.start()

    def wait_connected(self, timeout: float) -> bool:
        return self._connected.wait(timeout)

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
        if self.connected:
            info = self._client.publish(
                self._options.availability_topic, OFFLINE, qos=QOS, retain=True
            )
            with contextlib.suppress(RuntimeError):
                info.wait_for_publish(timeout=3)
        self._connected.clear()
        self._client.disconnect()
        self._client.loop_stop()
        outbox, self._outbox = self._outbox, None
        if outbox is not None:
            if left := len(outbox):
                where = f"wait in {outbox.path}" if outbox.path else "are lost (no outbox file)"
                log.warning("%d MQTT messages the broker did not take %s", left, where)
            outbox.close()

    def publish(
        self, topic: str, payload: str | bytes, *, retain: bool, event_id: str | None = None
    ) -> None:
        """Keep the message in the outbox (committed when this returns); the sender sends it."""
        data = _sendable_payload(topic, payload)
        outbox = self._outbox
        if data is None:
            return
        if outbox is None:
            log.error("MQTT message to %s published while the publisher is stopped: dropped", topic)
            return
        try:
            outbox.append(topic, data, retain=retain, event_id=event_id)
        except sqlite3.Error as error:  # a full disk, a closed outbox: report once, not per message
            with self._wake:
                first_failure = not self._outbox_failures
                self._outbox_failures += 1
            if first_failure:
                log.error("MQTT outbox %s refuses messages (%s): dropping them", outbox.path, error)
            return
        with self._wake:
            dropped, self._outbox_failures = self._outbox_failures, 0
            self._signal()
        if dropped:
            log.warning("MQTT outbox takes messages again; %d were dropped", dropped)

    def _signal(self) -> None:
        """Wake the sender; `_wake` must be held."""
        self._signals += 1
        self._wake.notify_all()

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
        """Hand outbox rows to paho in order while connected; delete them once acknowledged."""
        in_flight: dict[int, int] = {}
        """paho message id → outbox row id, for rows on this connection not acknowledged yet."""
        handed_through = 0
        """The newest row handed to paho on this connection; the next one comes after it."""
        generation = -1
        while True:
            with self._wake:
                signals_seen = self._signals
                current_generation = self._generation
                acknowledged, self._acknowledged = self._acknowledged, []
                stop_at = self._stop_at
            if delivered := [in_flight.pop(mid) for mid in acknowledged if mid in in_flight]:
                outbox.delete(delivered)
            if current_generation != generation:
                # A new connection, and paho has forgotten the last one's unacknowledged rows
                # (see _handle_connect): they go again from the outbox, in order.
                generation = current_generation
                in_flight.clear()
                handed_through = 0
            if stop_at is not None and (
                not self.connected or not len(outbox) or time.monotonic() >= stop_at
            ):
                return
            room = MAX_IN_FLIGHT - len(in_flight)
            batch = outbox.rows_after(handed_through, room) if room and self.connected else []
            if not batch:
                self._wait_for_signal_after(signals_seen)
                continue
            for row in batch:
                if (wait := self._pacer.delay()) > 0:
                    time.sleep(wait)
                try:
                    message_id = self._hand_to_paho(row, generation)
                except Exception:  # one bad message must not stop every later one
                    log.exception("MQTT message to %s could not be sent: dropped", row.topic)
                    outbox.delete([row.row_id])
                    handed_through = row.row_id
                    continue
                if message_id is None:
                    break  # the connection changed: start again from the outbox
                in_flight[message_id] = row.row_id
                handed_through = row.row_id
                if self._stop_at is not None and time.monotonic() >= self._stop_at:
                    break

    def _wait_for_signal_after(self, signals_seen: int, timeout: float = 1.0) -> None:
        with self._wake:
            self._wake.wait_for(lambda: self._signals != signals_seen, timeout)

    def _hand_to_paho(self, row: OutboxRow, generation: int) -> int | None:
        """Publish a row on connection `generation`: its message id, None once that is gone."""
        with self._handoff:
            if generation != self._generation or not self._connected.is_set():
                return None
            qos = QOS if row.retain else EVENT_QOS
            info = self._client.publish(row.topic, row.payload, qos=qos, retain=row.retain)
        if info.rc not in (MQTTErrorCode.MQTT_ERR_SUCCESS, MQTTErrorCode.MQTT_ERR_NO_CONN):
            log.warning("MQTT publish to %s failed: %s", row.topic, mqtt.error_string(info.rc))
        return info.mid

    def _handle_acknowledged(
        self,
        client: mqtt.Client,
        userdata: object,
        mid: int,
        reason_code: ReasonCode,
        properties: object,
    ) -> None:
        # paho calls this holding its lock on outgoing messages: only note the id here.
        with self._wake:
            self._acknowledged.append(mid)
            self._signal()

    def _handle_connect(
        self,
        client: mqtt.Client,
        userdata: object,
        flags: mqtt.ConnectFlags,
        reason_code: ReasonCode,
        properties: object,
    ) -> None:
        if reason_code.is_failure:
            self._trouble.refused(reason_code)
            return
        with self._handoff:
            # paho keeps what the lost connection left unacknowledged and sends it again right
            # after this callback, whatever clean_session says; the sender may get a newer
            # message out first. The outbox still holds all of it, so paho's copies go, and the
            # sender sends it again, in order, once.
            client.drop_out_messages()
            with self._wake:
                self._generation += 1
                self._signal()
            self._connected.set()
        self._trouble.connected()
        log.info("connected to MQTT broker %s", self._where)
        client.publish(self._options.availability_topic, ONLINE, qos=QOS, retain=True)
        for topic_filter in self._subscriptions:
            client.subscribe(topic_filter, qos=QOS)
        self._on_connected()

    def _handle_connect_fail(self, client: mqtt.Client, userdata: object) -> None:
        # paho calls this from inside its `except OSError:` around connecting, and keeps the
        # exception to itself: it is still the one being handled.
        self._trouble.connect_failed(sys.exc_info()[1])

    def _handle_disconnect(
        self,
        client: mqtt.Client,
        userdata: object,
        flags: mqtt.DisconnectFlags,
        reason_code: ReasonCode,
        properties: object,
    ) -> None:
        if self._connected.is_set():
            self.reconnects += 1
            self._trouble.forget_paho_error()
            log.warning("lost the MQTT broker (%s); reconnecting", reason_code)
        else:
            self._trouble.closed_before_accepting()
        self._connected.clear()
        with self._wake:
            self._signal()

    def _handle_paho_log(
        self, client: mqtt.Client, userdata: object, level: int, message: str
    ) -> None:
        self._trouble.paho_logged(level, message)

    @property
    def _where(self) -> str:
        return f"{self._options.host}:{self._options.port}"

    def _handle_message(
        self, client: mqtt.Client, userdata: object, message: mqtt.MQTTMessage
    ) -> None:
        # amqtt may hand us retained messages for filters we never subscribed to: match ourselves.
        for topic_filter, handler in self._subscriptions.items():
            if mqtt.topic_matches_sub(topic_filter, message.topic):
                try:
                    handler(message.topic, bytes(message.payload))
                except Exception:
                    log.exception("handling MQTT message on %s failed", message.topic)


def _sendable_payload(topic: str, payload: str | bytes) -> bytes | None:
    """The payload as bytes, or None (and a log line) for a message no broker would take."""
    try:
        topic_bytes = topic.encode()
        data = payload.encode() if isinstance(payload, str) else bytes(payload)
    except UnicodeEncodeError as error:
        log.error("MQTT message to %r cannot be encoded as UTF-8 (%s): dropped", topic, error)
        return None
    if not topic or "+" in topic or "#" in topic or len(topic_bytes) > MAX_TOPIC_BYTES:
        log.error("MQTT message to %r: not a topic one can publish to, dropped", topic)
        return None
    if len(data) > MAX_PAYLOAD_BYTES:
        log.error("MQTT message to %s: payload of %d bytes is too large, dropped", topic, len(data))
        return None
    return data
