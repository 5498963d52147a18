"""The connection to the broker: paho's client, its version of MQTT, its callbacks.

`BrokerConnection` connects in the background and reconnects for ever, resumes our persistent
session, says once why it cannot connect (trouble.py), speaks 3.1.1 to a broker that refuses
MQTT 5 (protocol.py), keeps the bridge's availability and subscriptions, and tells its owner
(the publisher) what the broker acknowledged. Its callbacks run on paho's network thread and
only note things: they never wait for bridge work.
"""

from __future__ import annotations

import contextlib
import logging
import os
import ssl
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

import paho.mqtt.client as mqtt
from paho.mqtt.reasoncodes import ReasonCode
from paho.mqtt.subscribeoptions import SubscribeOptions

from ..core.documents import OFFLINE, ONLINE
from ..core.publishing import QOS
from ..settings import MqttProtocol
from .protocol import MqttOptions, connect, make_client, receive_maximum, refused_for_its_version
from .session import SessionClient
from .trouble import RECONNECT_MAX_SECONDS, ConnectionTrouble

log = logging.getLogger("minut2mqtt.mqtt.publisher")

REPLAY_TIMEOUT_SECONDS = 10.0


@dataclass(frozen=True)
class Listeners:
    """What the owner hears from paho's thread."""

    session_started: Callable[[bool, int], None]
    """A connection was accepted: (whether the broker kept our session, how many unacknowledged
    messages it takes); runs before anything is sent on it."""
    pubrec: Callable[[int], None]
    """The broker has a QoS 2 message (its packet id); runs before paho releases it."""
    acknowledged: Callable[[int], None]
    """The broker acknowledged a packet id (PUBACK or PUBCOMP)."""
    changed: Callable[[], None]
    """The connection is usable now, or no longer."""
    replayed: Callable[[], None] = lambda: None
    """Since the last connect, the broker has replayed the retained messages we subscribe to
    (or REPLAY_TIMEOUT_SECONDS have passed without the marker coming back)."""


class BrokerConnection:
    def __init__(
        self,
        options: MqttOptions,
        listeners: Listeners,
        *,
        on_connected: Callable[[], None] = lambda: None,
        subscriptions: dict[str, Callable[[str, bytes], None]] | None = None,
        live_only: frozenset[str] = frozenset(),
    ) -> None:
        """`live_only`: filters of `subscriptions` whose retained messages are ignored (a
        command someone retained must not run again on every connect)."""
        self._options = options
        self._live_only = live_only
        self._listeners = listeners
        self._on_connected = on_connected
        self._subscriptions = dict(subscriptions or {})
        self.connected = threading.Event()
        self.reconnects = 0
        self.protocol: MqttProtocol = options.protocol
        self._connect_started_at: float | None = None
        self._falls_back = False
        self._replay_marker: bytes | None = None
        """The marker sent after subscribing on this connection, until it came back."""
        self._replay_deadline = 0.0
        self._trouble = ConnectionTrouble(
            self.where, tls=options.tls_context is not None, client_id=options.client_id
        )
        self._connected_at = 0.0
        self.client = self._new_client(self.protocol)

    @property
    def where(self) -> str:
        return f"{self._options.host}:{self._options.port}"

    def start(self) -> None:
        tls = self._options.tls_context
        log.info(
            "connecting to MQTT broker %s%s", self.where, " over TLS" if tls is not None else ""
        )
        if tls is not None and tls.verify_mode == ssl.CERT_NONE:
            log.warning(
                "mqtt.tls.insecure is true: the MQTT broker's certificate and hostname are not "
                "checked, so anyone on the way to %s could pose as the broker",
                self._options.host,
            )
        connect(self.client, self._options, self.protocol)
        self.client.loop_start()

    def stop(self) -> None:
        """Say `offline` on purpose (the will is for a crash) and disconnect."""
        if self.connected.is_set() and self._options.availability_topic is not None:
            info = self.client.publish(
                self._options.availability_topic, OFFLINE, qos=QOS, retain=True
            )
            with contextlib.suppress(RuntimeError):
                info.wait_for_publish(timeout=3)
        self.connected.clear()
        self.client.disconnect()
        self.client.loop_stop()

    def speak_3_1_1_if_5_is_refused(self) -> None:
        """From the owner's thread, now and then: a broker that refused MQTT 5, or never
        answered its CONNECT, is spoken to in 3.1.1 from now on."""
        started = self._connect_started_at
        silent = (
            self.protocol == "5"
            and not self.connected.is_set()
            and started is not None
            and time.monotonic() - started > self._options.connack_timeout
            and self.client.socket() is not None
        )
        if not (self._falls_back or silent):
            return
        why = "refused MQTT 5" if self._falls_back else "never answered an MQTT 5 CONNECT"
        log.warning("MQTT broker %s %s: speaking MQTT 3.1.1 to it", self.where, why)
        old, self.protocol = self.client, "3.1.1"
        self._falls_back, self._connect_started_at = False, None
        self.client = self._new_client(self.protocol)
        old.disconnect()
        old.loop_stop()
        connect(self.client, self._options, self.protocol)
        self.client.loop_start()

    # -- paho's callbacks (its network thread) --------------------------------------------------

    def _new_client(self, protocol: MqttProtocol) -> SessionClient:
        client = make_client(self._options, protocol, self._listeners.pubrec)
        client.on_pre_connect = self._handle_pre_connect
        client.on_connect = self._handle_connect
        client.on_connect_fail = self._handle_connect_fail
        client.on_disconnect = self._handle_disconnect
        client.on_publish = self._handle_acknowledged
        client.on_message = self._handle_message
        client.on_log = self._handle_paho_log
        return client

    def _handle_pre_connect(self, client: mqtt.Client, userdata: object) -> None:
        self._connect_started_at = time.monotonic()

    def _handle_connect(
        self,
        client: mqtt.Client,
        userdata: object,
        flags: mqtt.ConnectFlags,
        reason_code: ReasonCode,
        properties: object,
    ) -> None:
        self._connect_started_at = None
        if reason_code.value != 0:
            if self.protocol == "5" and refused_for_its_version(reason_code):
                self._falls_back = True
            else:
                self._trouble.refused(reason_code)
            return
        # paho would send again what the lost connection left unacknowledged, under its own
        # ids; the owner's outbox holds all of it and sends it again under the rows' own ids.
        client.drop_out_messages()
        self._connected_at = time.monotonic()
        self._listeners.session_started(flags.session_present, receive_maximum(properties))
        self.connected.set()
        self._listeners.changed()
        self._trouble.connected()
        log.info("connected to MQTT broker %s (MQTT %s)", self.where, self.protocol)
        if self._options.availability_topic is not None:
            client.publish(self._options.availability_topic, ONLINE, qos=QOS, retain=True)
        for topic_filter in self._subscriptions:
            # QoS 0: while we are away the broker queues nothing for us (retained is resent).
            self._subscribe(client, topic_filter, own_messages=False)
        self._on_connected()
        self._mark_replay_end(client)

    def _mark_replay_end(self, client: mqtt.Client) -> None:
        """Send ourselves a marker after the subscriptions: the broker sends it back after
        the retained messages it replays for them."""
        topic = self._options.replay_marker_topic
        if topic is None:
            self._listeners.replayed()
            return
        self._replay_marker = os.urandom(8).hex().encode()
        self._replay_deadline = time.monotonic() + REPLAY_TIMEOUT_SECONDS
        self._subscribe(client, topic, own_messages=True)
        client.publish(topic, self._replay_marker, qos=0, retain=False)

    def _subscribe(self, client: mqtt.Client, topic_filter: str, *, own_messages: bool) -> None:
        """At QoS 0. Without `own_messages`, MQTT 5's No Local spares us our own messages (the
        bridge's 40,000 configs would all come back to it) while the broker still replays what
        it retains, ours included; in 3.1.1 they come back, and the owner copes with both."""
        if self.protocol == "5":
            options = SubscribeOptions(qos=0, noLocal=not own_messages)
            client.subscribe(topic_filter, options=options)
        else:
            client.subscribe(topic_filter, qos=0)

    def replay_overdue(self) -> None:
        """From the owner's thread, now and then: a marker that never came back ends the wait."""
        if self._replay_marker is not None and time.monotonic() > self._replay_deadline:
            log.info("the MQTT broker never returned the replay marker: going on without it")
            self._replay_marker = None
            self._listeners.replayed()

    def _handle_acknowledged(
        self,
        client: mqtt.Client,
        userdata: object,
        mid: int,
        reason_code: ReasonCode,
        properties: object,
    ) -> None:
        # paho calls this holding its lock on outgoing messages: only note it here.
        if reason_code.is_failure:
            log.error("MQTT broker %s refused a message: %s", self.where, reason_code)
        self._listeners.acknowledged(mid)

    def _handle_connect_fail(self, client: mqtt.Client, userdata: object) -> None:
        # paho calls this from inside its `except OSError:` around connecting, and keeps the
        # exception to itself: it is still the one being handled.
        self._connect_started_at = None
        self._trouble.connect_failed(sys.exc_info()[1])

    def _handle_disconnect(
        self,
        client: mqtt.Client,
        userdata: object,
        flags: mqtt.DisconnectFlags,
        reason_code: ReasonCode,
        properties: object,
    ) -> None:
        self._connect_started_at = None
        if self.connected.is_set():
            self.reconnects += 1
            self._trouble.forget_paho_error()
            log.warning("lost the MQTT broker (%s); reconnecting", reason_code)
            self._trouble.lost(reason_code, time.monotonic() - self._connected_at)
            # paho waits this long before its next try (and doubles it while tries fail)
            client.reconnect_delay_set(self._trouble.reconnect_delay, RECONNECT_MAX_SECONDS)
        else:
            self._trouble.closed_before_accepting()
        self.connected.clear()
        self._listeners.changed()

    def _handle_paho_log(
        self, client: mqtt.Client, userdata: object, level: int, message: str
    ) -> None:
        self._trouble.paho_logged(level, message)

    def _handle_message(
        self, client: mqtt.Client, userdata: object, message: mqtt.MQTTMessage
    ) -> None:
        if message.topic == self._options.replay_marker_topic:
            if self._replay_marker is not None and message.payload == self._replay_marker:
                self._replay_marker = None
                self._listeners.replayed()
            return
        # amqtt may hand us retained messages for filters we never subscribed to: match ourselves.
        for topic_filter, handler in self._subscriptions.items():
            if mqtt.topic_matches_sub(topic_filter, message.topic):
                if message.retain and topic_filter in self._live_only:
                    log.warning(
                        "ignored the retained message the broker keeps on %s: it would run "
                        "again at every reconnect. Send commands without retain, and clear "
                        "this one: mosquitto_pub -r -n -t '%s'",
                        message.topic,
                        message.topic,
                    )
                    continue
                try:
                    handler(message.topic, bytes(message.payload))
                except Exception:
                    log.exception("handling MQTT message on %s failed", message.topic)
