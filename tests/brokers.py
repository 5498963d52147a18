"""Real MQTT brokers and an independent subscriber for the integration tests.

Not a conftest: tests/conftest.py builds its fixtures from these.

- `make_test_broker(tmp_path)` gives a running broker on a random free port: Mosquitto (the
  reference broker) when its binary is installed, else the in-process amqtt broker. Set
  MINUT2MQTT_TEST_BROKER=amqtt to force amqtt.
- `MqttRecorder` is "what `mosquitto_sub -v -t '#'` shows": a paho client of its own that
  records every message on its subscriptions, so tests watch topics like a user would.

amqtt speaks MQTT 3.1.1 only and replays retained messages for *other* sessions'
subscriptions on connect (docs/mqtt-consumers.md, "Brokers"); the recorder therefore connects
with MQTTv311 and drops messages that match none of its own subscriptions. A consequence: when
another client also subscribes to a matching filter, amqtt delivers a retained message to a new
recorder twice (once on connect, once on SUBSCRIBE), so count messages with care.
"""

from __future__ import annotations

import contextlib
import os
import random
import threading
import time
import uuid
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any, ClassVar, Literal, Self

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode

from minut2mqtt.embedded_broker import EmbeddedBroker, first_free_port
from minut2mqtt.mosquitto import MosquittoProcess, find_mosquitto

__all__ = [
    "AmqttBroker",
    "Message",
    "MosquittoBroker",
    "MqttRecorder",
    "TestBroker",
    "find_mosquitto",
    "make_test_broker",
    "random_free_port",
]

BrokerKind = Literal["mosquitto", "amqtt"]

_LOCALHOST = "127.0.0.1"
_STARTUP_TIMEOUT = 10.0
# Below Linux's ephemeral range (32768-60999), so an outgoing connection cannot grab the port
# while a broker restarts on it.
_RANDOM_PORT_RANGE = (20000, 32000)


def random_free_port(host: str = _LOCALHOST) -> int:
    """A port nothing listens on, picked at random so parallel test runs rarely collide."""
    low, high = _RANDOM_PORT_RANGE
    return first_free_port(host, random.randint(low, high))


class TestBroker(ABC):
    """A broker the tests can start, stop and restart on the same port.

    There is no persistence: a restart loses retained messages and sessions, as a
    Mosquitto without `persistence true` does.
    """

    __test__: ClassVar[bool] = False  # a helper, not a pytest test class

    kind: BrokerKind
    host: str
    port: int

    @property
    @abstractmethod
    def running(self) -> bool: ...

    @abstractmethod
    def start(self) -> None:
        """Start and return once the port accepts connections; no-op when running."""

    @abstractmethod
    def stop(self) -> None:
        """Stop and wait until the broker is gone; no-op when stopped."""

    def restart(self) -> None:
        """Stop, then start again on the same port."""
        self.stop()
        self.start()

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()

    def __repr__(self) -> str:
        state = "running" if self.running else "stopped"
        return f"<{type(self).__name__} {self.host}:{self.port} {state}>"


class MosquittoBroker(MosquittoProcess, TestBroker):
    """/usr/sbin/mosquitto with a generated config in `work_dir` (minut2mqtt.mosquitto).

    `extra_config` lines are appended after the default listener, e.g. a second
    `listener 8883 127.0.0.1` with `cafile`/`certfile`/`keyfile` for TLS tests.
    The log (`log_path`) is where to look when a test fails.
    """

    kind: BrokerKind = "mosquitto"

    def __init__(
        self,
        work_dir: Path,
        port: int | None = None,
        host: str = _LOCALHOST,
        extra_config: Sequence[str] = (),
        binary: str | None = None,
    ) -> None:
        super().__init__(
            work_dir,
            host,
            port if port is not None else random_free_port(host),
            binary=binary,
            extra_config=extra_config,
        )


class AmqttBroker(TestBroker):
    """The in-process amqtt broker (minut2mqtt.embedded_broker) behind the same interface."""

    kind: BrokerKind = "amqtt"

    def __init__(self, port: int | None = None, host: str = _LOCALHOST) -> None:
        self.host = host
        self.port = port if port is not None else random_free_port(host)
        self._broker: EmbeddedBroker | None = None

    @property
    def running(self) -> bool:
        return self._broker is not None and self._broker.running

    def start(self) -> None:
        if self.running:
            return
        self._broker = EmbeddedBroker(host=self.host, port=self.port)
        self._broker.start(timeout=_STARTUP_TIMEOUT)
        self.port = self._broker.port

    def stop(self) -> None:
        broker, self._broker = self._broker, None
        if broker is not None:
            broker.stop()


def make_test_broker(tmp_path: Path, *, start: bool = True) -> TestBroker:
    """The broker for a test: Mosquitto if installed, else amqtt; started unless start=False.

    MINUT2MQTT_TEST_BROKER=amqtt forces amqtt. The port is a random free one.
    """
    broker: TestBroker
    mosquitto = find_mosquitto()
    if mosquitto is not None and os.environ.get("MINUT2MQTT_TEST_BROKER") != "amqtt":
        broker = MosquittoBroker(tmp_path / f"mosquitto-{uuid.uuid4().hex[:8]}", binary=mosquitto)
    else:
        broker = AmqttBroker()
    if start:
        broker.start()
    return broker


@dataclass(frozen=True, slots=True)
class Message:
    """One received message. `received_at` is time.monotonic() at arrival."""

    topic: str
    payload: bytes
    retain: bool
    received_at: float
    qos: int = 0

    @property
    def text(self) -> str:
        return self.payload.decode("utf-8", errors="replace")


def _new_client(prefix: str) -> mqtt.Client:
    # MQTT 3.1.1: the only protocol amqtt speaks; Mosquitto speaks it too.
    return mqtt.Client(
        CallbackAPIVersion.VERSION2,
        client_id=f"{prefix}-{uuid.uuid4().hex[:10]}",
        clean_session=True,
        protocol=mqtt.MQTTv311,
    )


def _describe(messages: Sequence[Message], limit: int = 25) -> str:
    if not messages:
        return "  (no messages received)"
    lines = []
    for message in messages[-limit:]:
        payload = message.payload[:80].decode("utf-8", errors="replace")
        flag = " [retained]" if message.retain else ""
        lines.append(f"  {message.topic}{flag} {payload}")
    skipped = len(messages) - limit
    header = [f"  ... {skipped} earlier messages"] if skipped > 0 else []
    return "\n".join(header + lines)


class MqttRecorder:
    """An independent subscriber that records what arrives on `topics`.

    It subscribes from on_connect, so after a broker restart paho reconnects and the
    subscriptions come back by themselves; `wait_subscribed(n)` waits for the n-th SUBACK.
    """

    def __init__(self, host: str, port: int, topics: Iterable[str] = ("#",), qos: int = 1) -> None:
        self.host = host
        self.port = port
        self.topics = list(topics)
        if not self.topics:
            raise ValueError("MqttRecorder needs at least one topic filter")
        self.qos = qos
        self._messages: list[Message] = []
        self._subscribed_count = 0
        self._pending_subscribe_mid: int | None = None
        self._changed = threading.Condition()
        self._client = _new_client("recorder")
        self._client.on_connect = self._on_connect
        self._client.on_subscribe = self._on_subscribe
        self._client.on_message = self._on_message
        self._client.reconnect_delay_set(min_delay=1, max_delay=2)
        self._started = False

    # paho callbacks (network thread) -------------------------------------------------------

    def _on_connect(
        self,
        client: mqtt.Client,
        userdata: Any,
        flags: mqtt.ConnectFlags,
        reason_code: ReasonCode,
        properties: Properties | None,
    ) -> None:
        if reason_code.is_failure:
            return
        _result, mid = client.subscribe([(topic, self.qos) for topic in self.topics])
        with self._changed:
            self._pending_subscribe_mid = mid

    def _on_subscribe(
        self,
        client: mqtt.Client,
        userdata: Any,
        mid: int,
        reason_codes: list[ReasonCode],
        properties: Properties | None,
    ) -> None:
        with self._changed:
            if mid == self._pending_subscribe_mid:
                self._subscribed_count += 1
                self._changed.notify_all()

    def _on_message(self, client: mqtt.Client, userdata: Any, msg: mqtt.MQTTMessage) -> None:
        if not self._is_subscribed(msg.topic):
            return  # amqtt replays retained messages of other sessions' subscriptions
        message = Message(
            topic=msg.topic,
            payload=bytes(msg.payload),
            retain=bool(msg.retain),
            received_at=time.monotonic(),
            qos=msg.qos,
        )
        with self._changed:
            self._messages.append(message)
            self._changed.notify_all()

    def _is_subscribed(self, topic: str) -> bool:
        return any(mqtt.topic_matches_sub(topic_filter, topic) for topic_filter in self.topics)

    # lifecycle ------------------------------------------------------------------------------

    def start(self, timeout: float = 10.0) -> None:
        """Connect, subscribe and return once the broker acknowledged the subscription."""
        if self._started:
            return
        self._client.connect(self.host, self.port, keepalive=30)
        self._client.loop_start()
        self._started = True
        try:
            self.wait_subscribed(1, timeout=timeout)
        except AssertionError:
            self.stop()
            raise

    def stop(self) -> None:
        if not self._started:
            return
        self._started = False
        self._client.disconnect()
        self._client.loop_stop()

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()

    @property
    def subscribed_count(self) -> int:
        """How many times the subscriptions were acknowledged (1 + reconnects so far)."""
        with self._changed:
            return self._subscribed_count

    def wait_subscribed(self, count: int = 1, timeout: float = 10.0) -> None:
        """Wait until the subscriptions were acknowledged `count` times in all.

        After a broker restart: `n = rec.subscribed_count; broker.restart();
        rec.wait_subscribed(n + 1)`.
        """
        with self._changed:
            if not self._changed.wait_for(lambda: self._subscribed_count >= count, timeout):
                raise AssertionError(
                    f"recorder on {self.host}:{self.port} not subscribed to {self.topics} "
                    f"within {timeout:g} s (SUBACKs so far: {self._subscribed_count}, "
                    f"waiting for {count})"
                )

    # what arrived ---------------------------------------------------------------------------

    @property
    def messages(self) -> list[Message]:
        """A copy of everything received so far, oldest first."""
        with self._changed:
            return list(self._messages)

    def clear(self) -> None:
        """Forget what was received; wait_for then only sees new messages."""
        with self._changed:
            self._messages.clear()

    def last(self, topic: str) -> Message | None:
        """The most recent message on exactly `topic`, if any."""
        with self._changed:
            return next((m for m in reversed(self._messages) if m.topic == topic), None)

    def wait_for(self, predicate: Callable[[Message], bool], timeout: float = 10.0) -> Message:
        """The first recorded message (already received or arriving) matching `predicate`.

        Use clear() beforehand to only consider messages that arrive from now on.
        """
        checked = 0  # messages before this index did not match
        found: list[Message] = []

        def scan() -> bool:
            nonlocal checked
            if checked > len(self._messages):  # clear() ran meanwhile
                checked = 0
            for message in self._messages[checked:]:
                checked += 1
                if predicate(message):
                    found.append(message)
                    return True
            return False

        with self._changed:
            if not self._changed.wait_for(scan, timeout):
                raise AssertionError(
                    f"no matching message within {timeout:g} s on {self.topics}; "
                    f"last seen:\n{_describe(self._messages)}"
                )
        return found[0]

    def wait_for_topic(
        self,
        topic: str,
        timeout: float = 10.0,
        payload_predicate: Callable[[bytes], bool] | None = None,
    ) -> Message:
        """The first message on exactly `topic` (whose payload satisfies the predicate)."""

        def matches(message: Message) -> bool:
            if message.topic != topic:
                return False
            return payload_predicate is None or payload_predicate(message.payload)

        try:
            return self.wait_for(matches, timeout)
        except AssertionError as error:
            condition = " with a matching payload" if payload_predicate else ""
            raise AssertionError(f"nothing on {topic}{condition}: {error}") from None

    @staticmethod
    def retained_snapshot(
        host: str, port: int, topic_filter: str = "#", settle: float = 0.5, timeout: float = 10.0
    ) -> dict[str, bytes]:
        """Topic → payload of the retained messages a new subscriber to `topic_filter` gets.

        Connects a fresh client and collects until no new retained message arrived for
        `settle` seconds. Live (non-retained) traffic and, per the amqtt caveat, topics
        outside the filter are ignored.
        """
        retained: dict[str, bytes] = {}
        last_arrival = time.monotonic()
        changed = threading.Condition()
        subscribed = threading.Event()

        def on_connect(
            client: mqtt.Client,
            userdata: Any,
            flags: mqtt.ConnectFlags,
            reason_code: ReasonCode,
            properties: Properties | None,
        ) -> None:
            if not reason_code.is_failure:
                client.subscribe(topic_filter, qos=1)

        def on_subscribe(
            client: mqtt.Client,
            userdata: Any,
            mid: int,
            reason_codes: list[ReasonCode],
            properties: Properties | None,
        ) -> None:
            nonlocal last_arrival
            with changed:
                last_arrival = time.monotonic()
            subscribed.set()

        def on_message(client: mqtt.Client, userdata: Any, msg: mqtt.MQTTMessage) -> None:
            nonlocal last_arrival
            if not msg.retain or not mqtt.topic_matches_sub(topic_filter, msg.topic):
                return
            with changed:
                retained[msg.topic] = bytes(msg.payload)
                last_arrival = time.monotonic()

        client = _new_client("snapshot")
        client.on_connect = on_connect
        client.on_subscribe = on_subscribe
        client.on_message = on_message
        deadline = time.monotonic() + timeout
        client.connect(host, port, keepalive=30)
        client.loop_start()
        try:
            if not subscribed.wait(timeout):
                raise AssertionError(f"no SUBACK for {topic_filter!r} from {host}:{port}")
            while True:
                with changed:
                    quiet_until = last_arrival + settle
                now = time.monotonic()
                if now >= quiet_until or now >= deadline:
                    break
                time.sleep(min(quiet_until, deadline) - now)
            with changed:
                return dict(retained)
        finally:
            with contextlib.suppress(Exception):
                client.disconnect()
            client.loop_stop()
