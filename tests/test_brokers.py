"""The test brokers behave like brokers: retained replay, QoS 1, restart without persistence."""

from __future__ import annotations

import logging
import socket
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest
from brokers import (
    AmqttBroker,
    MosquittoBroker,
    MqttRecorder,
    TestBroker,
    find_mosquitto,
    make_test_broker,
    random_free_port,
)
from paho.mqtt.enums import CallbackAPIVersion

from minut2mqtt.embedded_broker import EmbeddedBroker, EmbeddedBrokerError, first_free_port

needs_mosquitto = pytest.mark.skipif(find_mosquitto() is None, reason="mosquitto not installed")


@pytest.fixture(
    params=[pytest.param("mosquitto", marks=needs_mosquitto), pytest.param("amqtt")],
)
def broker(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[TestBroker]:
    test_broker: TestBroker
    if request.param == "mosquitto":
        test_broker = MosquittoBroker(tmp_path / "mosquitto")
    else:
        test_broker = AmqttBroker()
    with test_broker:
        yield test_broker


def publish(broker: TestBroker, topic: str, payload: bytes, *, qos: int, retain: bool) -> None:
    """Publish like a separate application would and wait until the broker has it."""
    client = mqtt.Client(
        CallbackAPIVersion.VERSION2,
        client_id=f"publisher-{uuid.uuid4().hex[:8]}",
        protocol=mqtt.MQTTv311,
    )
    client.connect(broker.host, broker.port)
    client.loop_start()
    try:
        info = client.publish(topic, payload, qos=qos, retain=retain)
        info.wait_for_publish(timeout=5)
        assert info.is_published(), f"publish to {topic} not acknowledged"
    finally:
        client.disconnect()
        client.loop_stop()


def test_new_subscriber_receives_retained_message(broker: TestBroker) -> None:
    publish(broker, "test/retained/a", b"kept", qos=1, retain=True)
    publish(broker, "test/live/b", b"gone", qos=1, retain=False)

    with MqttRecorder(broker.host, broker.port, topics=["test/#"]) as recorder:
        message = recorder.wait_for_topic("test/retained/a")

    assert message.payload == b"kept"
    assert message.retain
    assert recorder.last("test/live/b") is None
    snapshot = MqttRecorder.retained_snapshot(broker.host, broker.port, "test/#", settle=0.3)
    assert snapshot == {"test/retained/a": b"kept"}


def test_qos1_message_is_delivered_live(broker: TestBroker) -> None:
    with MqttRecorder(broker.host, broker.port, topics=["test/qos/#"], qos=1) as recorder:
        publish(broker, "test/qos/one", b"at least once", qos=1, retain=False)
        message = recorder.wait_for_topic(
            "test/qos/one", payload_predicate=lambda p: p.endswith(b"once")
        )

    assert (message.payload, message.qos, message.retain) == (b"at least once", 1, False)


def test_recorder_ignores_topics_outside_its_subscriptions(broker: TestBroker) -> None:
    # amqtt replays retained messages for *other* clients' subscriptions on connect.
    with MqttRecorder(broker.host, broker.port, topics=["other/#"]):
        publish(broker, "other/retained", b"1", qos=1, retain=True)
        with MqttRecorder(broker.host, broker.port, topics=["mine/#"]) as recorder:
            publish(broker, "mine/live", b"2", qos=1, retain=False)
            recorder.wait_for_topic("mine/live")

    assert [m.topic for m in recorder.messages] == ["mine/live"]
    snapshot = MqttRecorder.retained_snapshot(broker.host, broker.port, "mine/#", settle=0.3)
    assert snapshot == {}


def test_restart_loses_retained_messages_and_recorder_resubscribes(broker: TestBroker) -> None:
    publish(broker, "test/state", b"before", qos=1, retain=True)
    with MqttRecorder(broker.host, broker.port, topics=["test/#"]) as recorder:
        recorder.wait_for_topic("test/state")
        port_before = broker.port
        acknowledged = recorder.subscribed_count

        broker.restart()

        assert broker.port == port_before
        recorder.wait_subscribed(acknowledged + 1, timeout=10)
        assert MqttRecorder.retained_snapshot(broker.host, broker.port, "test/#", settle=0.3) == {}
        recorder.clear()
        publish(broker, "test/state", b"after", qos=1, retain=False)
        assert recorder.wait_for_topic("test/state").payload == b"after"


def test_wait_for_times_out_with_the_topics_seen(broker: TestBroker) -> None:
    with MqttRecorder(broker.host, broker.port, topics=["test/#"]) as recorder:
        publish(broker, "test/seen", b"x", qos=1, retain=False)
        recorder.wait_for_topic("test/seen")
        with pytest.raises(AssertionError, match="test/seen"):
            recorder.wait_for_topic("test/never", timeout=0.3)


@pytest.mark.parametrize("requested", ["default", "amqtt"])
def test_make_test_broker_prefers_mosquitto_unless_told_otherwise(
    requested: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    if requested == "amqtt":
        monkeypatch.setenv("MINUT2MQTT_TEST_BROKER", "amqtt")
    else:
        monkeypatch.delenv("MINUT2MQTT_TEST_BROKER", raising=False)
    expected = "mosquitto" if requested == "default" and find_mosquitto() else "amqtt"

    with make_test_broker(tmp_path) as broker:
        assert (broker.kind, broker.running) == (expected, True)
        with socket.create_connection((broker.host, broker.port), timeout=2):
            pass
    assert not broker.running


def test_embedded_broker_refuses_a_taken_port() -> None:
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        taken = holder.getsockname()[1]
        with pytest.raises(EmbeddedBrokerError, match=rf"127\.0\.0\.1:{taken} is already in use"):
            EmbeddedBroker(port=taken).start()


def test_embedded_broker_port_zero_picks_a_port_and_stop_is_idempotent() -> None:
    broker = EmbeddedBroker(port=0)
    with broker:
        assert broker.port != 0
        with socket.create_connection((broker.host, broker.port), timeout=2):
            pass
    broker.stop()
    assert not broker.running
    assert not any(t.name.startswith("amqtt-broker") for t in threading.enumerate())


def test_first_free_port_skips_a_taken_port() -> None:
    preferred = random_free_port()
    assert first_free_port("127.0.0.1", preferred) == preferred
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", preferred))
        holder.listen()
        assert first_free_port("127.0.0.1", preferred) > preferred
        with pytest.raises(EmbeddedBrokerError, match="no free port"):
            first_free_port("127.0.0.1", preferred, attempts=1)


REFUSED_MQTT5 = (
    "refused an MQTT 5 client from 127.0.0.1: the embedded broker speaks MQTT 3.1.1 only"
)


def test_embedded_broker_refuses_an_mqtt5_client_in_one_line(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG, logger="minut2mqtt.embedded_broker")
    refused = threading.Event()
    with EmbeddedBroker(port=0) as broker:
        # Hanging up right after CONNECT made amqtt raise OSError: asyncio logged a traceback.
        hasty = mqtt.Client(CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5)
        hasty.connect(broker.host, broker.port)
        hasty.socket().close()
        patient = mqtt.Client(CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5)
        patient.on_connect = lambda client, userdata, flags, reason, properties: (
            refused.set() if reason.is_failure else None
        )
        patient.connect(broker.host, broker.port)
        patient.loop_start()
        try:
            assert refused.wait(5)
        finally:
            patient.disconnect()
            patient.loop_stop()
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            lines = [r for r in caplog.records if r.getMessage() == REFUSED_MQTT5]
            if len(lines) >= 2:
                break
            time.sleep(0.05)
    assert [r.levelno for r in lines][:2] == [logging.WARNING, logging.DEBUG]  # once per host
    assert not [r for r in caplog.records if r.name == "asyncio" or r.exc_info]
