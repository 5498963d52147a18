"""Speaking MQTT 5 or 3.1.1 with a persistent session: the paho client, set up for either.

MQTT 5 first (Home Assistant will require an MQTT 5 broker from 2027.1): its reason codes name
what went wrong, and the session's expiry is ours to choose. A broker that refuses version 5, or
never answers a version 5 CONNECT (amqtt), is spoken to in 3.1.1, whose persistent session
never expires. Either way the session persists across restarts (same client id, no clean
start), which is what resumes a half-finished QoS 2 delivery exactly once (session.py).
"""

from __future__ import annotations

import contextlib
import logging
import socket
import ssl
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode

from ..core.documents import OFFLINE
from ..core.publishing import QOS
from ..settings import MqttProtocol, MqttSettings
from .outbox import DEFAULT_LIMIT
from .session import SessionClient
from .tls import tls_context
from .trouble import RECONNECT_MAX_SECONDS

log = logging.getLogger("minut2mqtt.mqtt.publisher")

MAX_IN_FLIGHT = 20
"""Messages handed to paho that the broker has not acknowledged yet (paho's own limit too).

Mosquitto's default `max_inflight_messages` is 20: beyond that it silently drops a client's QoS 2
messages (seen: 80 of 100 events lost), so no more may be in flight.
"""
CONNACK_TIMEOUT_SECONDS = 10.0
"""A broker silent this long after an MQTT 5 CONNECT does not speak 5 (amqtt never answers)."""
UNSUPPORTED_PROTOCOL = frozenset({1, 0x84})
"""CONNACK codes meaning "not this protocol version": 3.1.1's 1, MQTT 5's 0x84."""
MAX_TOPIC_BYTES = 65_535
MAX_PAYLOAD_BYTES = 268_435_455


@dataclass(frozen=True)
class MqttOptions:
    host: str
    port: int
    client_id: str
    availability_topic: str | None
    """Where the bridge says online, and its will offline; None: a helper's connection."""
    username: str | None = None
    password: str | None = None
    keepalive: int = 60
    tls_context: ssl.SSLContext | None = None
    messages_per_second: float = 1500.0
    burst: int = 200
    outbox_path: Path | None = None
    """The SQLite file where messages wait for the broker; None: in memory, lost on a restart."""
    outbox_limit: int = DEFAULT_LIMIT
    """The most messages the outbox keeps; beyond, the oldest retained, then events, go."""
    protocol: MqttProtocol = "5"
    session_expiry: int = 0xFFFFFFFF
    """Seconds the broker keeps our MQTT 5 session while we are away (0xFFFFFFFF: for ever)."""
    connack_timeout: float = CONNACK_TIMEOUT_SECONDS
    """A broker silent this long after an MQTT 5 CONNECT is spoken to in 3.1.1."""
    replay_marker_topic: str | None = None
    """Where, after subscribing, a marker is sent to ourselves: its return means the broker has
    replayed every retained message of our subscriptions (it answers a client in order)."""


def options_of(
    mqtt: MqttSettings,
    *,
    client_id: str,
    availability_topic: str | None,
    outbox_path: Path,
    replay_marker_topic: str | None = None,
) -> MqttOptions:
    """The broker's address, credentials, TLS and limits from the settings, for one connection."""
    return MqttOptions(
        host=mqtt.host,
        port=mqtt.port,
        client_id=client_id,
        availability_topic=availability_topic,
        username=mqtt.username,
        password=mqtt.password.get_secret_value() if mqtt.password else None,
        keepalive=mqtt.keepalive,
        tls_context=tls_context(mqtt.tls),
        messages_per_second=mqtt.messages_per_second,
        outbox_path=outbox_path,
        outbox_limit=mqtt.outbox_limit,
        protocol=mqtt.protocol,
        session_expiry=mqtt.session_expiry,
        replay_marker_topic=replay_marker_topic,
    )


def make_client(
    options: MqttOptions, protocol: MqttProtocol, on_pubrec: Callable[[int], None]
) -> SessionClient:
    """A client for `protocol` with our will, credentials, TLS and limits (callbacks unset)."""
    client = SessionClient(
        CallbackAPIVersion.VERSION2,
        client_id=options.client_id,
        protocol=mqtt.MQTTv5 if protocol == "5" else mqtt.MQTTv311,
        clean_session=None if protocol == "5" else False,
        on_pubrec=on_pubrec,
    )
    if options.username:
        client.username_pw_set(options.username, options.password)
    if options.tls_context is not None:
        client.tls_set_context(options.tls_context)
    if options.availability_topic is not None:
        client.will_set(options.availability_topic, OFFLINE, qos=QOS, retain=True)
    client.reconnect_delay_set(min_delay=1, max_delay=RECONNECT_MAX_SECONDS)
    client.max_inflight_messages_set(MAX_IN_FLIGHT)
    client.on_socket_open = send_small_packets_at_once
    return client


def send_small_packets_at_once(client: mqtt.Client, userdata: Any, sock: Any) -> None:
    """Nagle's algorithm off: it holds a small packet (an event's PUBLISH or PUBREL) back while
    an earlier one waits for the broker's delayed ACK. config/mosquitto.conf turns it off on the
    broker's side, where it cost every other event 10 ms (bench/scale.py)."""
    with contextlib.suppress(AttributeError, OSError):  # not a TCP socket
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)


def connect(client: mqtt.Client, options: MqttOptions, protocol: MqttProtocol) -> None:
    """Connect in the background, resuming our session (paho retries until the broker answers)."""
    if protocol == "5":
        properties = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
        properties.SessionExpiryInterval = options.session_expiry
        client.connect_async(
            options.host,
            options.port,
            options.keepalive,
            clean_start=False,
            properties=properties,
        )
    else:
        client.connect_async(options.host, options.port, options.keepalive)


def refused_for_its_version(reason_code: ReasonCode) -> bool:
    return reason_code.value in UNSUPPORTED_PROTOCOL


def receive_maximum(properties: object) -> int:
    """How many unacknowledged QoS 1 and 2 messages the broker takes from us (MQTT 5 CONNACK)."""
    advertised = getattr(properties, "ReceiveMaximum", None)
    return min(MAX_IN_FLIGHT, advertised) if isinstance(advertised, int) else MAX_IN_FLIGHT


def sendable_payload(topic: str, payload: str | bytes) -> bytes | None:
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
