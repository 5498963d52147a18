"""Where messages leave the bridge: the Publisher interface, paho-mqtt, and an in-memory twin."""

from __future__ import annotations

import contextlib
import logging
import queue
import ssl
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion, MQTTErrorCode
from paho.mqtt.reasoncodes import ReasonCode

from ..settings import NO_KEY_PASSPHRASE, TlsSettings
from .payloads import OFFLINE, ONLINE

log = logging.getLogger(__name__)

QOS = 1
X509_V_ERR_HOSTNAME_MISMATCH = 62
X509_V_ERR_IP_ADDRESS_MISMATCH = 64


class Publisher(Protocol):
    def publish(self, topic: str, payload: str | bytes, *, retain: bool) -> None:
        """Queue one message at QoS 1; never blocks on the network."""


@dataclass
class PublishedMessage:
    topic: str
    payload: bytes
    retain: bool


@dataclass
class MemoryPublisher:
    """Keeps what would have been published: for unit tests of the bridge logic."""

    messages: list[PublishedMessage] = field(default_factory=list)
    retained: dict[str, bytes] = field(default_factory=dict)

    def publish(self, topic: str, payload: str | bytes, *, retain: bool) -> None:
        data = payload.encode() if isinstance(payload, str) else payload
        self.messages.append(PublishedMessage(topic, data, retain))
        if retain:
            if data:
                self.retained[topic] = data
            else:
                self.retained.pop(topic, None)

    def on_topic(self, topic: str) -> list[PublishedMessage]:
        return [message for message in self.messages if message.topic == topic]

    def clear(self) -> None:
        self.messages.clear()


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


def tls_context(tls: TlsSettings) -> ssl.SSLContext | None:
    """The context for MQTT over TLS, or None for plain MQTT.

    Verifies the broker's certificate and that it names mqtt.host, unless `insecure`.
    The settings have already checked that the files exist and load.
    """
    if not tls.active:
        return None
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    if tls.ca_file is not None:
        context.load_verify_locations(cafile=tls.ca_file)
    else:
        context.load_default_certs(ssl.Purpose.SERVER_AUTH)
    if tls.cert_file is not None and tls.key_file is not None:
        context.load_cert_chain(tls.cert_file, tls.key_file, password=NO_KEY_PASSPHRASE)
    if tls.insecure:
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    return context


class Pacer:
    """A token bucket: lets `burst` messages through at once, then `rate` per second."""

    def __init__(self, rate: float, burst: int, clock: Callable[[], float] = time.monotonic):
        self._rate = rate
        self._burst = float(burst)
        self._tokens = float(burst)
        self._clock = clock
        self._last = clock()

    def delay(self) -> float:
        """Take one token; the seconds to wait before sending (0 when one was available)."""
        now = self._clock()
        self._tokens = min(self._burst, self._tokens + (now - self._last) * self._rate)
        self._last = now
        self._tokens -= 1
        return 0.0 if self._tokens >= 0 else -self._tokens / self._rate


class MqttPublisher:
    """paho-mqtt 2.x: QoS 1, automatic reconnect, retained last will on the availability topic.

    Speaks MQTT 3.1.1, which Mosquitto and the embedded amqtt broker both accept. Messages
    published while the broker is away are queued by paho and sent after the reconnect.

    Messages leave through an outbox at `messages_per_second` after a burst: the broker acks a
    publish at once, but hands it on to each subscriber only as fast as that one reads, and
    Mosquitto drops what a subscriber has not read beyond 1000 queued messages. Home Assistant
    reading the discovery of 500 Points (over 10,000 configs) would otherwise lose some.
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
        self._outbox: queue.Queue[tuple[str, str | bytes, bool] | None] = queue.Queue()
        self._pacer = Pacer(options.messages_per_second, options.burst)
        self._sender = threading.Thread(target=self._send_outbox, name="mqtt-sender", daemon=True)
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
        self._client.max_inflight_messages_set(100)
        self._client.on_connect = self._handle_connect
        self._client.on_connect_fail = self._handle_connect_fail
        self._client.on_disconnect = self._handle_disconnect
        self._client.on_message = self._handle_message
        self._client.on_log = self._remember_paho_error
        self._reported_failure: str | None = None
        self._last_paho_error: str | None = None

    @property
    def connected(self) -> bool:
        return self._connected.is_set()

    def start(self) -> None:
        """Connect in the background; paho keeps retrying until the broker answers."""
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

    @property
    def queue_depth(self) -> int:
        """Messages waiting in the outbox (paho's own queue for a lost broker not counted)."""
        return self._outbox.qsize()

    def stop(self, drain_timeout: float = 10.0) -> None:
        """Send what is queued, say `offline` on purpose (the will is for a crash), disconnect."""
        if self._sender.is_alive():
            self._outbox.put(None)
            self._sender.join(drain_timeout)
        if self.connected:
            info = self._client.publish(
                self._options.availability_topic, OFFLINE, qos=QOS, retain=True
            )
            with contextlib.suppress(RuntimeError):
                info.wait_for_publish(timeout=3)
        self._connected.clear()
        self._client.disconnect()
        self._client.loop_stop()

    def publish(self, topic: str, payload: str | bytes, *, retain: bool) -> None:
        self._outbox.put((topic, payload, retain))

    def _send_outbox(self) -> None:
        while (message := self._outbox.get()) is not None:
            topic, payload, retain = message
            if (wait := self._pacer.delay()) > 0:
                time.sleep(wait)
            try:
                info = self._client.publish(topic, payload, qos=QOS, retain=retain)
            except Exception:  # one bad message must not stop every later one
                log.exception("MQTT message to %s could not be sent: dropped", topic)
                continue
            if info.rc not in (MQTTErrorCode.MQTT_ERR_SUCCESS, MQTTErrorCode.MQTT_ERR_NO_CONN):
                log.warning("MQTT publish to %s failed: %s", topic, mqtt.error_string(info.rc))

    def _handle_connect(
        self,
        client: mqtt.Client,
        userdata: object,
        flags: mqtt.ConnectFlags,
        reason_code: ReasonCode,
        properties: object,
    ) -> None:
        if reason_code.is_failure:
            self._report_failure(
                "refused", f"MQTT broker {self._where} refused the connection: {reason_code}"
            )
            return
        self._connected.set()
        self._reported_failure = None
        log.info("connected to MQTT broker %s", self._where)
        client.publish(self._options.availability_topic, ONLINE, qos=QOS, retain=True)
        for topic_filter in self._subscriptions:
            client.subscribe(topic_filter, qos=QOS)
        self._on_connected()

    def _handle_connect_fail(self, client: mqtt.Client, userdata: object) -> None:
        # paho calls this from inside its `except OSError:` around connecting, and keeps the
        # exception to itself: it is still the one being handled.
        error = sys.exc_info()[1]
        # A plain MQTT listener hangs up on the TLS hello: a reset means a handshake gone wrong.
        if self._options.tls_context is not None and isinstance(
            error, ssl.SSLError | ConnectionResetError
        ):
            self._report_failure(
                "tls",
                f"MQTT TLS handshake with {self._where} failed: {_describe_tls_error(error)}; "
                "retrying, messages are kept meanwhile",
            )
        else:
            reason = f" ({error.strerror or error})" if isinstance(error, OSError) else ""
            self._report_failure(
                "unreachable",
                f"cannot reach the MQTT broker at {self._where}{reason} "
                "(check mqtt.host and mqtt.port); retrying, messages are kept meanwhile",
            )

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
            log.warning("lost the MQTT broker (%s); reconnecting", reason_code)
        elif self._last_paho_error is not None and self._reported_failure != "refused":
            # Under TLS 1.3 the broker judges our client certificate after the handshake, so
            # its refusal arrives as a failed read, which paho only logs.
            hint = (
                " (does the broker require a client certificate? mqtt.tls.cert_file)"
                if self._options.tls_context is not None and "certificate" in self._last_paho_error
                else ""
            )
            self._report_failure(
                "dropped",
                f"MQTT broker {self._where} closed the connection before accepting it: "
                f"{self._last_paho_error}{hint}; retrying, messages are kept meanwhile",
            )
        self._last_paho_error = None
        self._connected.clear()

    def _remember_paho_error(
        self, client: mqtt.Client, userdata: object, level: int, message: str
    ) -> None:
        if level == mqtt.MQTT_LOG_ERR:
            self._last_paho_error = message

    def _report_failure(self, kind: str, message: str) -> None:
        """Log a failure to connect once, not on every retry, until it changes or we connect."""
        if kind != self._reported_failure:
            self._reported_failure = kind
            log.error("%s", message)

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


def _describe_tls_error(error: OSError) -> str:
    """The handshake error with what to change for the common causes."""
    wrong_port_hint = "(is mqtt.port the broker's TLS port? usually 8883)"
    if isinstance(error, ConnectionResetError):
        return f"the broker hung up ({error.strerror}) {wrong_port_hint}"
    if isinstance(error, ssl.SSLCertVerificationError):
        reason = f"certificate verify failed: {error.verify_message}"
        if error.verify_code in (X509_V_ERR_HOSTNAME_MISMATCH, X509_V_ERR_IP_ADDRESS_MISMATCH):
            return f"{reason} (mqtt.host must be a name the broker's certificate lists)"
        return f"{reason} (mqtt.tls.ca_file must hold the CA that signed the broker's certificate)"
    if isinstance(error, ssl.SSLError) and error.reason == "WRONG_VERSION_NUMBER":
        return f"{error} {wrong_port_hint}"
    return str(error)
