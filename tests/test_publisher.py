"""The publisher's pacing (a burst goes at once, then the rate holds) and its sender."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator

from brokers import MqttRecorder
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.reasoncodes import ReasonCode

from minut2mqtt.mqtt.pacer import COMING_SECONDS, EventsInFlight, Pacer
from minut2mqtt.mqtt.publisher import MqttOptions, MqttPublisher
from minut2mqtt.mqtt.trouble import SESSION_TAKEN_OVER, ConnectionTrouble


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_burst_then_rate():
    clock = FakeClock()
    pacer = Pacer(rate=100, burst=10, clock=clock)
    assert [pacer.delay() for _ in range(10)] == [0.0] * 10
    assert round(pacer.delay(), 3) == 0.01
    assert round(pacer.delay(), 3) == 0.02


def test_a_batch_takes_a_token_per_message_and_gives_back_those_that_did_not_go():
    clock = FakeClock()
    pacer = Pacer(rate=100, burst=10, clock=clock)
    assert pacer.delay(10) == 0.0
    assert round(pacer.delay(10), 3) == 0.1  # ten more at 100 a second
    pacer.refund(10)
    assert round(pacer.delay(), 3) == 0.01


def test_idle_time_refills_the_burst_but_not_beyond():
    clock = FakeClock()
    pacer = Pacer(rate=100, burst=10, clock=clock)
    for _ in range(10):
        pacer.delay()
    clock.now += 60
    assert [pacer.delay() for _ in range(10)] == [0.0] * 10
    assert pacer.delay() > 0


def test_bulk_holds_back_while_an_event_is_on_its_way_and_no_longer():
    clock = FakeClock()
    flight = EventsInFlight(longest=0.1, clock=clock)
    assert flight.hold_left() == 0
    flight.coming()  # received, its messages not in the outbox yet
    assert flight.hold_left() == COMING_SECONDS
    flight.arrived()
    flight.arrived()  # the Point's and the home's event topic
    flight.handed(1)
    flight.handed(2)
    clock.now += 0.03
    assert flight.landed(1) and not flight.landed(7)  # 7: a state document
    assert round(flight.hold_left(), 3) == 0.07  # one still on its way
    assert flight.landed(2)
    assert flight.hold_left() == 0


def test_a_miscounted_event_holds_nothing_back_for_long():
    clock = FakeClock()
    flight = EventsInFlight(longest=0.1, clock=clock)
    flight.arrived()  # and never lands (the connection went away)
    clock.now += 0.1
    assert flight.hold_left() == 0
    flight.arrived()
    flight.forget()  # a new connection
    assert flight.hold_left() == 0


@contextlib.contextmanager
def connected_publisher(broker, name: str) -> Iterator[MqttPublisher]:
    publisher = MqttPublisher(MqttOptions(broker.host, broker.port, name, f"{name}/availability"))
    publisher.start()
    try:
        assert publisher.wait_connected(10)
        yield publisher
    finally:
        publisher.stop()


def test_the_broker_taking_an_event_ends_the_hold(broker):
    with (
        connected_publisher(broker, "hold-test") as publisher,
        MqttRecorder(broker.host, broker.port, topics=["hold-test/#"]) as recorder,
    ):
        for number in range(20):
            publisher.publish(f"hold-test/event/{number}", "{}", retain=False)
        recorder.wait_for_topic("hold-test/event/19")
        # Mosquitto hands a QoS 2 message on when it gets PUBREL, which paho sends after the
        # PUBREC that counted the event as landed
        assert publisher.events_in_flight.hold_left() == 0


def test_a_message_paho_cannot_send_does_not_stop_the_sender(broker, caplog):
    with (
        connected_publisher(broker, "sender-test") as publisher,
        MqttRecorder(broker.host, broker.port, topics=["sender-test/#"]) as recorder,
    ):
        publisher.publish("sender-test/bad", "\ud800", retain=False)  # cannot be UTF-8
        publisher.publish("sender-test/good", "fine", retain=False)
        recorder.wait_for_topic("sender-test/good")
    assert "sender-test/bad' cannot be encoded as UTF-8" in caplog.text


def test_two_bridges_with_one_client_id_are_named_and_back_off(broker, caplog):
    def losses() -> int:
        return caplog.text.count("lost the MQTT broker")

    # Each connect takes the other's session: the broker closes the older connection at once.
    with connected_publisher(broker, "twin"), connected_publisher(broker, "twin"):
        deadline = time.monotonic() + 12
        while "client id 'twin'" not in caplog.text and time.monotonic() < deadline:
            time.sleep(0.1)
        assert "another client is most likely connected with our client id 'twin'" in caplog.text
        named_after = losses()
        time.sleep(max(0.0, deadline - time.monotonic()))
    # reconnecting after a second each time, they lost each other 12 times in those 12 s
    assert losses() <= 8, "each waits longer after every short connection"
    assert losses() > named_after, "they went on taking each other's session"
    assert caplog.text.count("client id 'twin'") <= 2, "each said it once, not at every reconnect"


def test_a_bridge_alone_is_not_told_of_a_twin(broker, caplog):
    with connected_publisher(broker, "alone"):
        time.sleep(0.5)
    assert "client id" not in caplog.text


def test_only_connections_lost_soon_after_connecting_in_a_row_point_to_a_twin(caplog):
    trouble = ConnectionTrouble("broker:1883", tls=False, client_id="twin")
    for lasted in (1.0, 2.0, 60.0, 1.0, 2.0):  # a connection that lasted starts the count again
        trouble.lost("Unspecified error", lasted)
    assert "client id" not in caplog.text
    trouble.lost("Unspecified error", 1.0)
    assert "3 times in a row" in caplog.text


def test_each_short_connection_in_a_row_doubles_the_wait_before_the_next():
    trouble = ConnectionTrouble("broker:1883", tls=False, client_id="twin")
    waits = []
    for _ in range(7):
        trouble.lost("Unspecified error", 1.0)
        waits.append(trouble.reconnect_delay)
    assert waits == [1, 2, 4, 8, 16, 30, 30]
    trouble.lost("Unspecified error", 60.0)
    assert trouble.reconnect_delay == 1, "a connection that lasted: the next try comes at once"


def test_a_broker_that_says_session_taken_over_is_believed_at_once(caplog):
    trouble = ConnectionTrouble("broker:1883", tls=False, client_id="twin")
    trouble.lost(ReasonCode(PacketTypes.DISCONNECT, identifier=SESSION_TAKEN_OVER), 1.0)
    assert "client id 'twin'" in caplog.text


def test_bulk_lanes_keep_their_pace_when_they_send_in_batches(broker):
    options = MqttOptions(
        broker.host,
        broker.port,
        "pace-test",
        "pace-test/availability",
        messages_per_second=100,
        burst=10,
        protocol="3.1.1" if broker.kind == "amqtt" else "5",
    )
    publisher = MqttPublisher(options)
    publisher.start()
    try:
        assert publisher.wait_connected(10)
        with MqttRecorder(broker.host, broker.port, topics=["pace-test/state/#"]) as recorder:
            for number in range(60):
                publisher.publish(f"pace-test/state/{number}", b"{}", retain=True)
            last = recorder.wait_for_topic("pace-test/state/59", 10)
            first = recorder.wait_for_topic("pace-test/state/0", 1)
        # a burst of 10, then 50 at 100 a second
        assert 0.4 <= last.received_at - first.received_at < 1.5
        assert [m.topic for m in recorder.messages] == [f"pace-test/state/{n}" for n in range(60)]
    finally:
        publisher.stop()
