"""The mirror's decisions, with the in-memory publisher (pure logic, no broker)."""

from __future__ import annotations

import json
from datetime import datetime, timedelta
from typing import Any

import pytest
from fakes import NOW, Clock, MemoryPublisher

from minut2mqtt.core.entities import DEVICE_STATES
from minut2mqtt.core.mirror import Mirror
from minut2mqtt.core.topics import Topics
from minut2mqtt.minut.models import parse_device, parse_event, parse_home

TOPICS = Topics("minut2mqtt", "homeassistant")


def iso(moment: datetime) -> str:
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def raw_device(**changes: Any) -> dict[str, Any]:
    device = {
        "device_id": "dev1",
        "home": "home1",
        "description": "Hallway",
        "hardware_version": 2,
        "firmware": {"installed": "2.1.0", "wanted": "2.1.0"},
        "offline": False,
        "battery": {"percent": 87, "voltage": 2.9},
        "ongoing_events": [],
        "last_heard_from_at": iso(NOW - timedelta(minutes=5)),
        "latest_sensor_values": {
            "temperature": {"time": iso(NOW - timedelta(minutes=5)), "value": 21.4321},
            "humidity": {"time": iso(NOW - timedelta(minutes=5)), "value": 45.0},
        },
    }
    device.update(changes)
    return device


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def publisher() -> MemoryPublisher:
    return MemoryPublisher()


@pytest.fixture
def mirror(publisher: MemoryPublisher, clock: Clock) -> Mirror:
    return Mirror(
        publisher,
        TOPICS,
        stale_after=3600,
        momentary_seconds=30,
        wall_clock=lambda: clock.wall,
        monotonic=lambda: clock.mono,
    )


def poll(mirror: Mirror, *devices: dict[str, Any]) -> None:
    home = parse_home(
        {
            "home_id": "home1",
            "name": "Beach house",
            "alarm_status": "off",
            "devices": [d["device_id"] for d in devices],
        }
    )
    mirror.apply_poll([parse_device(d) for d in devices], [home])


def state_of(publisher: MemoryPublisher, device_id: str = "dev1") -> dict[str, Any]:
    document: dict[str, Any] = json.loads(publisher.retained[TOPICS.device_state(device_id)])
    return document


def event(event_type: str, **fields: Any) -> Any:
    return parse_event(
        {
            "id": f"ev-{event_type}",
            "type": event_type,
            "home_id": "home1",
            "created_at": iso(NOW),
            **fields,
        }
    )


def test_poll_publishes_readings_with_units_times_and_freshness(mirror, publisher):
    poll(mirror, raw_device())
    readings = state_of(publisher)["readings"]
    assert readings["temperature"] == {
        "value": 21.43,
        "unit": "°C",
        "time": iso(NOW - timedelta(minutes=5)),
        "status": "fresh",
    }
    assert readings["battery"]["value"] == 87
    assert set(readings) == {"temperature", "humidity", "battery", "battery_voltage"}


def test_device_without_latest_sensor_values_still_gets_a_state_document(mirror, publisher):
    device = raw_device()
    del device["latest_sensor_values"]
    poll(mirror, device)
    assert set(state_of(publisher)["readings"]) == {"battery", "battery_voltage"}


def test_reading_turns_stale_without_a_new_poll(mirror, publisher, clock):
    poll(mirror, raw_device())
    clock.advance(3600)
    mirror.tick()
    assert state_of(publisher)["readings"]["temperature"]["status"] == "stale"


def test_unchanged_poll_publishes_nothing(mirror, publisher):
    poll(mirror, raw_device())
    publisher.clear()
    poll(mirror, raw_device())
    assert publisher.messages == []


def test_webhook_event_flips_state_and_off_event_clears_it(mirror, publisher):
    poll(mirror, raw_device())
    mirror.apply_event(event("temperature_high", device_id="dev1", sensor_value=31.2))
    assert state_of(publisher)["states"]["heat"] == "ON"
    mirror.apply_event(event("temperature_dropped_normal", device_id="dev1"))
    assert state_of(publisher)["states"]["heat"] == "OFF"


def test_event_is_published_whole_and_not_retained(mirror, publisher):
    poll(mirror, raw_device())
    mirror.apply_event(event("pir_motion", device_id="dev1", extra_field=[1, 2]))
    [message] = publisher.on_topic(TOPICS.device_event("dev1"))
    assert not message.retain
    body = json.loads(message.payload)
    assert body["type"] == body["event_type"] == "pir_motion"
    assert body["extra_field"] == [1, 2]


def test_unknown_event_type_is_passed_through_as_other(mirror, publisher):
    poll(mirror, raw_device())
    before = state_of(publisher)
    mirror.apply_event(event("brand_new_thing", device_id="dev1"))
    [message] = publisher.on_topic(TOPICS.device_event("dev1"))
    body = json.loads(message.payload)
    assert (body["type"], body["event_type"]) == ("brand_new_thing", "other")
    assert state_of(publisher) == before


def test_momentary_state_falls_back_to_off(mirror, publisher, clock):
    poll(mirror, raw_device())
    mirror.apply_event(event("pir_motion", device_id="dev1"))
    assert state_of(publisher)["states"]["motion"] == "ON"
    clock.advance(10)
    poll(mirror, raw_device())
    assert state_of(publisher)["states"]["motion"] == "ON", "a poll must not cut it short"
    clock.advance(21)
    mirror.tick()
    assert state_of(publisher)["states"]["motion"] == "OFF"


def test_poll_corrects_missed_events_from_ongoing_events(mirror, publisher):
    poll(mirror, raw_device(ongoing_events=["humidity_high", "tamper_removed"]))
    states = state_of(publisher)["states"]
    assert (states["moisture"], states["tamper"], states["heat"]) == ("ON", "ON", "OFF")
    mirror.apply_event(event("temperature_high", device_id="dev1"))
    poll(mirror, raw_device(ongoing_events=[]))
    states = state_of(publisher)["states"]
    assert (states["moisture"], states["tamper"], states["heat"]) == ("OFF", "OFF", "OFF")


def test_home_disturbance_follows_home_events(mirror, publisher):
    poll(mirror, raw_device())
    mirror.apply_event(event("disturbance_first_notice"))
    home = json.loads(publisher.retained[TOPICS.home_state("home1")])
    assert home["states"]["disturbance"] == "ON"
    [message] = publisher.on_topic(TOPICS.home_event("home1"))
    assert json.loads(message.payload)["type"] == "disturbance_first_notice"
    mirror.apply_event(event("disturbance_ended"))
    home = json.loads(publisher.retained[TOPICS.home_state("home1")])
    assert home["states"]["disturbance"] == "OFF"


def test_alarm_silenced_without_device_clears_alarm_heard_in_its_home(mirror, publisher):
    poll(mirror, raw_device())
    mirror.apply_event(event("alarm_heard", device_id="dev1"))
    assert state_of(publisher)["states"]["alarm_heard"] == "ON"
    mirror.apply_event(event("alarm_silenced"))
    assert state_of(publisher)["states"]["alarm_heard"] == "OFF"


def test_offline_device_is_unavailable_but_says_disconnected(mirror, publisher):
    poll(mirror, raw_device(offline=True))
    assert publisher.retained[TOPICS.device_availability("dev1")] == b"offline"
    assert state_of(publisher)["states"]["connectivity"] == "OFF"
    poll(mirror, raw_device(offline=False))
    assert publisher.retained[TOPICS.device_availability("dev1")] == b"online"
    assert state_of(publisher)["states"]["connectivity"] == "ON"


def test_low_battery_percent_sets_battery_low(mirror, publisher):
    poll(mirror, raw_device(battery={"percent": 8}))
    assert state_of(publisher)["states"]["battery_low"] == "ON"


def test_device_that_leaves_the_account_is_removed_everywhere(mirror, publisher):
    poll(mirror, raw_device(), raw_device(device_id="dev2", description="Kitchen"))
    dev2_topics = [t for t in publisher.retained if "dev2" in t]
    assert len(dev2_topics) > 10
    poll(mirror, raw_device())
    assert not [t for t in publisher.retained if "dev2" in t]
    assert state_of(publisher)["name"] == "Hallway"


def test_republish_sends_everything_again(mirror, publisher):
    poll(mirror, raw_device())
    retained = dict(publisher.retained)
    publisher.clear()
    mirror.republish()
    # and the mirror's own `online`, which a stray `offline` may have replaced meanwhile
    assert {m.topic for m in publisher.messages} == set(retained) | {TOPICS.bridge_availability}


def test_event_for_unknown_device_is_still_published(mirror, publisher):
    mirror.apply_event(event("short_button_press", device_id="not-yet-polled"))
    assert publisher.on_topic(TOPICS.device_event("not-yet-polled"))


def test_every_binary_state_appears_in_the_document(mirror, publisher):
    poll(mirror, raw_device())
    assert set(state_of(publisher)["states"]) == {spec.key for spec in DEVICE_STATES}


def test_a_repeated_delivery_is_published_once(mirror, publisher):
    poll(mirror, raw_device())
    mirror.apply_event(event("pir_motion", device_id="dev1"))
    mirror.apply_event(event("pir_motion", device_id="dev1"))
    assert len(publisher.on_topic(TOPICS.device_event("dev1"))) == 1


def test_a_reading_abandoned_years_ago_gets_no_entity(mirror, publisher):
    poll(
        mirror,
        raw_device(
            latest_sensor_values={
                "temperature": {"time": iso(NOW), "value": 20.0},
                "pressure": {"time": "2021-03-01T00:00:00.000Z", "value": 1013.0},
            }
        ),
    )
    assert state_of(publisher)["readings"]["pressure"]["status"] == "stale"
    configs = [topic for topic in publisher.retained if topic.startswith("homeassistant/sensor/")]
    assert any(topic.endswith("/temperature/config") for topic in configs)
    assert not any(topic.endswith("/pressure/config") for topic in configs)


def test_event_ids_remembered_from_a_previous_run_are_not_published_again(publisher, clock):
    first = Mirror(publisher, TOPICS, wall_clock=lambda: clock.wall)
    first.apply_event(event("pir_motion", device_id="dev1"))
    second = Mirror(publisher, TOPICS)
    second.remember_published(publisher.event_ids)
    second.apply_event(event("pir_motion", device_id="dev1"))
    assert len(publisher.on_topic(TOPICS.device_event("dev1"))) == 1


def test_status_times_are_retained_alone_once_known(mirror, publisher):
    status = {"minut": "connected", "last_poll": iso(NOW), "last_webhook": None}
    mirror.set_status(status)
    assert publisher.retained[TOPICS.bridge_value("last_poll")] == iso(NOW).encode()
    assert TOPICS.bridge_value("last_webhook") not in publisher.retained
    mirror.set_status({**status, "last_webhook": iso(NOW)})
    assert publisher.retained[TOPICS.bridge_value("last_webhook")] == iso(NOW).encode()
