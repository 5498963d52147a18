"""MQTT 5 to brokers that speak it, 3.1.1 to those that refuse it or never answer."""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from brokers import AmqttBroker, MosquittoBroker, MqttRecorder, find_mosquitto

from minut2mqtt.mqtt.publisher import MqttOptions, MqttPublisher

needs_mosquitto = pytest.mark.skipif(find_mosquitto() is None, reason="needs Mosquitto")


def publisher_for(port: int, tmp_path: Path, **options: object) -> MqttPublisher:
    return MqttPublisher(
        MqttOptions(
            "127.0.0.1",
            port,
            f"mqtt5-test-{tmp_path.name}",
            "mqtt5-test/availability",
            outbox_path=tmp_path / "outbox.sqlite3",
            **options,  # type: ignore[arg-type]
        )
    )


def delivered_in(spoken: str, port: int, broker_port: int, tmp_path: Path, **options: object):
    publisher = publisher_for(port, tmp_path, **options)
    publisher.start()
    try:
        assert publisher.wait_connected(15), "never connected"
        with MqttRecorder("127.0.0.1", broker_port, topics=["mqtt5-test/#"]) as recorder:
            publisher.publish("mqtt5-test/event", '{"id": "e1"}', retain=False, event_id="e1")
            recorder.wait_for_topic("mqtt5-test/event")
        assert publisher.protocol == spoken
    finally:
        publisher.stop()


@needs_mosquitto
def test_mosquitto_is_spoken_to_in_mqtt_5(tmp_path, caplog):
    caplog.set_level("INFO", logger="minut2mqtt")
    with MosquittoBroker(tmp_path / "mosquitto") as broker:
        delivered_in("5", broker.port, broker.port, tmp_path)
    assert "(MQTT 5)" in caplog.text


def test_a_broker_that_never_answers_mqtt_5_is_spoken_to_in_3_1_1(tmp_path, caplog):
    with AmqttBroker() as broker:  # amqtt: no CONNACK for a version 5 CONNECT
        delivered_in("3.1.1", broker.port, broker.port, tmp_path, connack_timeout=1.0)
    assert "never answered an MQTT 5 CONNECT: speaking MQTT 3.1.1" in caplog.text


@pytest.fixture
def refusing_mqtt_5(tmp_path: Path) -> Iterator[tuple[int, int]]:
    """A proxy to Mosquitto that answers an MQTT 5 CONNECT as a 3.1.1-only broker does:
    CONNACK "unacceptable protocol version", then hangs up. (listening port, broker port)"""
    if find_mosquitto() is None:
        pytest.skip("needs Mosquitto")
    with MosquittoBroker(tmp_path / "mosquitto") as broker:
        server = socket.create_server(("127.0.0.1", 0))

        def serve() -> None:
            while True:
                try:
                    client, _ = server.accept()
                except OSError:
                    return
                threading.Thread(target=relay, args=(client,), daemon=True).start()

        def relay(client: socket.socket) -> None:
            first = client.recv(4096)
            # CONNECT: fixed header, then "\0\4MQTT" and the protocol level byte.
            level = first[first.index(b"MQTT") + 4] if b"MQTT" in first else 0
            if level == 5:
                client.sendall(b"\x20\x02\x00\x01")
                client.close()
                return
            upstream = socket.create_connection(("127.0.0.1", broker.port))
            upstream.sendall(first)

            def pump(source: socket.socket, target: socket.socket) -> None:
                try:
                    while data := source.recv(65536):
                        target.sendall(data)
                except OSError:
                    pass
                finally:
                    target.close()

            threading.Thread(target=pump, args=(upstream, client), daemon=True).start()
            pump(client, upstream)

        threading.Thread(target=serve, daemon=True).start()
        try:
            yield server.getsockname()[1], broker.port
        finally:
            server.close()


def test_a_broker_refusing_mqtt_5_is_spoken_to_in_3_1_1(refusing_mqtt_5, tmp_path, caplog):
    proxy_port, broker_port = refusing_mqtt_5
    delivered_in("3.1.1", proxy_port, broker_port, tmp_path)
    assert "refused MQTT 5: speaking MQTT 3.1.1" in caplog.text


def test_mqtt_3_1_1_can_be_chosen(refusing_mqtt_5, tmp_path, caplog):
    proxy_port, broker_port = refusing_mqtt_5
    delivered_in("3.1.1", proxy_port, broker_port, tmp_path, protocol="3.1.1")
    assert "refused MQTT 5" not in caplog.text
