"""The publisher's pacing (a burst goes at once, then the rate holds) and its sender."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

from brokers import MqttRecorder

from minut2mqtt.mqtt.pacer import COMING_SECONDS, EventsInFlight, Pacer
from minut2mqtt.mqtt.publisher import MqttOptions, MqttPublisher


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
