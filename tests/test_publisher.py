"""The publisher's pacing (a burst goes at once, then the rate holds) and its sender."""

from __future__ import annotations

from minut2mqtt.mqtt.pacer import Pacer


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


def test_a_message_paho_cannot_send_does_not_stop_the_sender(broker, caplog):
    from brokers import MqttRecorder

    from minut2mqtt.mqtt.publisher import MqttOptions, MqttPublisher

    publisher = MqttPublisher(
        MqttOptions(broker.host, broker.port, "sender-test", "sender-test/availability")
    )
    publisher.start()
    try:
        assert publisher.wait_connected(10)
        with MqttRecorder(broker.host, broker.port, topics=["sender-test/#"]) as recorder:
            publisher.publish("sender-test/bad", "\ud800", retain=False)  # cannot be UTF-8
            publisher.publish("sender-test/good", "fine", retain=False)
            recorder.wait_for_topic("sender-test/good")
        assert "sender-test/bad' cannot be encoded as UTF-8" in caplog.text
    finally:
        publisher.stop()
