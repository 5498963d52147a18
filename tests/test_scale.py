"""A property manager's account in small: a few hundred Points converge, an event overtakes the
start-up burst, a restart sends no config the broker holds, a long job pauses while the broker
lags. bench/scale.py measures speed; these only check the rules."""

from __future__ import annotations

import threading
import time

import paho.mqtt.publish as publish
import pytest
from brokers import MqttRecorder
from conftest import CLIENT_ID, CLIENT_SECRET
from fakes import MemoryPublisher

from minut2mqtt.core.mirror import Mirror
from minut2mqtt.core.publishing import BULK_HELD_AT_MOST
from minut2mqtt.core.status import StatusBoard
from minut2mqtt.core.topics import Topics
from minut2mqtt.minut.models import Device, parse_device, parse_event, parse_home
from minut2mqtt.runtime.writer import (
    BULK_PAUSE_ABOVE,
    BULK_PAUSE_SECONDS,
    Writer,
)
from minut2mqtt.simulator import SimulatedAccount

HOMES = 50
POINTS_PER_HOME = 4
RATE = 400
"""Messages per second: the burst of ~3,800 configs lasts long enough to send an event into."""


@pytest.fixture
def account(request: pytest.FixtureRequest) -> SimulatedAccount:
    """HOMES homes of POINTS_PER_HOME Points (fewer homes when parametrized)."""
    simulated = SimulatedAccount(client_id=CLIENT_ID, client_secret=CLIENT_SECRET)
    for home in range(getattr(request, "param", HOMES)):
        simulated.add_home(home_id=f"home{home:03d}", name=f"Apartment {home + 1}")
        for point in range(POINTS_PER_HOME):
            simulated.add_device(
                device_id=f"point{home:03d}{point}",
                home_id=f"home{home:03d}",
                description=f"Room {point + 1} of {home + 1}",
                readings={"temperature": 21.0, "humidity": 45.0, "sound": 40.0},
            )
    return simulated


def configs(recorder: MqttRecorder, since: float = 0.0) -> list[str]:
    return [
        message.topic
        for message in recorder.messages
        if message.topic.endswith("/config") and message.received_at >= since
    ]


def wait_converged(
    daemon, recorder: MqttRecorder, since: float, homes: int = HOMES, timeout: float = 60
) -> None:
    """Every Point's and home's state at the subscriber, and nothing left to send."""
    states = homes * POINTS_PER_HOME + homes
    deadline = time.monotonic() + timeout
    while True:
        seen = {
            message.topic
            for message in recorder.messages
            if message.topic.endswith("/state")
            and "/bridge/" not in message.topic
            and message.received_at >= since
        }
        if len(seen) >= states and not daemon.publisher.queue_depth:
            return
        assert time.monotonic() < deadline, (
            f"{len(seen)} of {states} states, {daemon.publisher.queue_depth} messages waiting"
        )
        time.sleep(0.1)


def test_an_event_overtakes_the_start_up_burst_and_everything_converges(
    start_daemon, recorder, account
):
    started = time.monotonic()
    daemon = start_daemon(**{"mqtt.messages_per_second": RATE})
    recorder.wait_for_topic("homeassistant/sensor/minut2mqtt_point0000/temperature/config", 30)
    sent = account.inject_event("alarm_heard", home_id="home049", device_id="point0493")
    sent_at = time.monotonic()
    event = recorder.wait_for_topic("minut2mqtt/device/point0493/event", 10)
    before_event = len(configs(recorder))
    wait_converged(daemon, recorder, started)
    total = len(configs(recorder))
    assert sent["id"].encode() in event.payload
    # The event waited for no lane of bulk: most of the burst's configs came after it.
    assert total - before_event > total // 2, (before_event, total)
    assert event.received_at - sent_at < 2.0

    # What a subscriber from the start saw (a new subscriber's retained replay would show it
    # too, but a default Mosquitto drops most of a replay this large: docs/scale.md).
    received = set(configs(recorder))
    for home in range(HOMES):
        for point in range(POINTS_PER_HOME):
            node = f"minut2mqtt_point{home:03d}{point}"
            assert f"homeassistant/sensor/{node}/temperature/config" in received
            assert f"homeassistant/event/{node}/event/config" in received
    assert len(received) == total  # each config once


@pytest.mark.parametrize("account", [10], indirect=True)
@pytest.mark.parametrize("protocol", ["5", "3.1.1"])
def test_no_config_the_broker_holds_is_sent_again(start_daemon, recorder, broker, protocol):
    """Not on Home Assistant's birth, not after a restart with nothing changed. MQTT 5 spares
    the bridge its own configs coming back (No Local), 3.1.1 does not: either way it knows what
    the broker holds."""
    if protocol == "5" and broker.kind == "amqtt":
        pytest.skip("amqtt speaks MQTT 3.1.1 only")
    settings = {"mqtt.protocol": protocol, "mqtt.messages_per_second": 2000}
    daemon = start_daemon(**settings)
    wait_converged(daemon, recorder, 0.0, homes=10)
    assert configs(recorder)

    born_at = time.monotonic()
    publish.single("homeassistant/status", "online", qos=1, hostname=broker.host, port=broker.port)
    time.sleep(3.5)  # the re-publish comes within 3 s
    wait_converged(daemon, recorder, born_at, homes=10)
    assert configs(recorder, born_at) == []

    daemon.stop()
    restarted_at = time.monotonic()
    daemon = start_daemon(**settings)
    wait_converged(daemon, recorder, restarted_at, homes=10)
    time.sleep(1)  # what a late comparison with the broker would send
    assert configs(recorder, restarted_at) == []


def points(count: int) -> list[Device]:
    return [
        parse_device({"device_id": f"p{n}", "home_id": "h", "description": f"Room {n}"})
        for n in range(count)
    ]


ONE_HOME = [parse_home({"home_id": "h", "name": "Home"})]


def poll_with_an_event_meanwhile(
    writer: Writer, publisher: MemoryPublisher, count: int
) -> tuple[float, list[str]]:
    """A poll of `count` Points on a thread of its own, an alarm on the last one meanwhile: the
    seconds the poll took, and the topics published in order."""
    writer.start()
    writer.open_for_events()
    started = time.monotonic()
    polling = threading.Thread(target=writer.apply_poll, args=(points(count), ONE_HOME))
    polling.start()
    time.sleep(0.02)
    alarm = {"id": "e1", "type": "alarm_heard", "device_id": f"p{count - 1}"}
    writer.submit_event(parse_event(alarm))
    polling.join(10)
    return time.monotonic() - started, [message.topic for message in publisher.messages]


def seconds_to_poll(writer: Writer, count: int) -> float:
    started = time.monotonic()
    writer.apply_poll(points(count), ONE_HOME)
    return time.monotonic() - started


def test_a_long_job_pauses_while_the_broker_lags_and_an_event_ends_the_pause():
    publisher = MemoryPublisher()
    lagging = [True]
    writer = Writer(
        Mirror(publisher, Topics("minut2mqtt", "homeassistant")),
        StatusBoard(),
        backlog=lambda: BULK_PAUSE_ABOVE + 1 if lagging[0] else 0,
    )
    paused, topics = poll_with_an_event_meanwhile(writer, publisher, 60)
    # 30 steps of two Points, paused, and the event in the middle of them
    assert paused >= 30 * BULK_PAUSE_SECONDS * 0.8
    assert topics.index("minut2mqtt/device/p59/event") < topics.index("minut2mqtt/device/p59/state")

    lagging[0] = False  # a broker that keeps up: no pause
    assert seconds_to_poll(writer, 61) < paused
    writer.stop()


def test_a_long_job_waits_for_a_broker_that_drains_the_backlog_but_not_for_one_away():
    publisher = MemoryPublisher()
    started = time.monotonic()
    draining = [True]

    def backlog() -> int:  # 3,000 messages above the threshold, taken at 10,000 a second
        if not draining[0]:
            return BULK_PAUSE_ABOVE + 3_000  # a broker that takes nothing
        return max(0, BULK_PAUSE_ABOVE + 3_000 - int((time.monotonic() - started) * 10_000))

    writer = Writer(
        Mirror(publisher, Topics("minut2mqtt", "homeassistant")), StatusBoard(), backlog=backlog
    )
    writer.start()
    writer.apply_poll(points(10), ONE_HOME)
    assert time.monotonic() - started >= 0.3 * 0.9  # until the backlog was under the threshold

    draining[0] = False
    assert 0.9 <= seconds_to_poll(writer, 11) < 3  # a second without progress, then it goes on
    writer.stop()


def test_a_long_job_holds_back_while_events_are_on_their_way_but_goes_on():
    publisher = MemoryPublisher()
    in_flight = [10.0]  # an event on its way that never lands: each step waits its longest
    writer = Writer(
        Mirror(publisher, Topics("minut2mqtt", "homeassistant")),
        StatusBoard(),
        events_in_flight=lambda: in_flight[0],
    )
    held, topics = poll_with_an_event_meanwhile(writer, publisher, 20)
    # 10 steps of two Points, each held at most BULK_HELD_AT_MOST; the event did not wait
    assert 10 * BULK_HELD_AT_MOST * 0.8 <= held < 10 * BULK_HELD_AT_MOST + 1
    assert topics.index("minut2mqtt/device/p19/event") < topics.index("minut2mqtt/device/p19/state")

    in_flight[0] = 0.0
    assert seconds_to_poll(writer, 21) < held / 2
    writer.stop()
