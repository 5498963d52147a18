"""The mirror's decisions, with the in-memory publisher (pure logic, no broker)."""

from __future__ import annotations

import json
from datetime import datetime, timedelta
from typing import Any

import pytest
from fakes import NOW, Clock, MemoryPublisher

from minut2mqtt.core.entities import DEVICE_STATES
from minut2mqtt.core.mirror import UPDATES_PER_STEP, Mirror
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
    created = Mirror(
        publisher,
        TOPICS,
        stale_after=3600,
        momentary_seconds=30,
        wall_clock=lambda: clock.wall,
        monotonic=lambda: clock.mono,
    )
    connected_to_an_empty_broker(created)
    return created


def connected_to_an_empty_broker(mirror: Mirror) -> None:
    """A connect, and the broker's replay of retained configs over (it holds none)."""
    mirror.broker_forgot()
    for _ in mirror.broker_configs_replayed():
        pass


def poll(
    mirror: Mirror, *devices: dict[str, Any], account: str = "", home_id: str = "home1"
) -> None:
    home = parse_home(
        {
            "home_id": home_id,
            "name": "Beach house",
            "alarm_status": "off",
            "devices": [d["device_id"] for d in devices],
        }
    )
    mirror.apply_poll([parse_device(d) for d in devices], [home], account)


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


def test_a_point_leaves_only_when_no_account_shows_it_any_more(mirror, publisher):
    # two Minut users share the beach house; the second also has a flat of their own
    poll(mirror, raw_device(), account="anna")
    flat_point = raw_device(device_id="dev9", home="home9", description="Flat")
    poll(mirror, raw_device(), account="ben")
    poll(mirror, flat_point, account="ben", home_id="home9")  # ben's picture: the flat only
    assert TOPICS.device_state("dev1") in publisher.retained  # anna still shows it
    assert TOPICS.device_state("dev9") in publisher.retained
    mirror.forget_account("ben")  # ben disconnected
    assert TOPICS.device_state("dev9") not in publisher.retained
    assert TOPICS.home_state("home9") not in publisher.retained
    assert state_of(publisher)["name"] == "Hallway"


def test_republish_sends_every_state_again_and_configs_only_to_a_broker_that_lost_them(
    mirror, publisher
):
    poll(mirror, raw_device())
    retained = dict(publisher.retained)
    publisher.clear()
    mirror.republish()
    # and the mirror's own `online`, which a stray `offline` may have replaced meanwhile
    states = {topic for topic in retained if not topic.endswith("/config")}
    assert {m.topic for m in publisher.messages} == states | {TOPICS.bridge_availability}
    publisher.clear()
    mirror.broker_forgot()  # the broker kept no session: its replay shows it holds nothing
    for _ in mirror.broker_configs_replayed():
        pass
    mirror.republish()
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


# -- work proportional to the change, configs against what the broker holds -----------------------


def many_points(count: int) -> list[dict[str, Any]]:
    return [raw_device(device_id=f"dev{n}", description=f"Room {n}") for n in range(count)]


def test_an_event_publishes_its_own_point_and_no_other(mirror, publisher):
    poll(mirror, *many_points(20))
    publisher.clear()
    mirror.apply_event(event("pir_motion", device_id="dev7"))
    assert {message.topic for message in publisher.messages} == {
        TOPICS.device_event("dev7"),
        TOPICS.device_state("dev7"),
    }


def test_a_poll_compares_its_points_in_steps_and_an_event_between_them_holds(mirror, publisher):
    points = many_points(UPDATES_PER_STEP * 2 + 5)
    poll(mirror, *points)
    for point in points:
        point["latest_sensor_values"]["temperature"]["value"] = 25.0
    home = parse_home({"home_id": "home1", "name": "Beach house", "alarm_status": "off"})
    steps = mirror.poll_steps([parse_device(point) for point in points], [home])
    next(steps)  # the home and the first few Points: an event may come now
    last = f"dev{len(points) - 1}"
    assert mirror.devices[last].readings["temperature"].value != 25.0, "compared all at once"
    mirror.apply_event(event("glassbreak", device_id=last))  # momentary: a poll cannot clear it
    for _ in steps:
        pass
    assert state_of(publisher, last)["states"]["glass_break"] == "ON"
    assert state_of(publisher, last)["readings"]["temperature"]["value"] == 25.0


def test_a_poll_publishes_the_points_that_changed_only(mirror, publisher):
    points = many_points(20)
    poll(mirror, *points)
    publisher.clear()
    points[3]["latest_sensor_values"]["temperature"]["value"] = 25.0
    poll(mirror, *points)
    assert [message.topic for message in publisher.messages] == [TOPICS.device_state("dev3")]


def broker_of(publisher: MemoryPublisher) -> dict[str, bytes]:
    """The discovery configs the broker holds after what was published."""
    return {t: p for t, p in publisher.retained.items() if t.startswith("homeassistant/")}


def restarted(old_publisher: MemoryPublisher, clock: Clock, **options: Any) -> Mirror:
    """A new mirror (the bridge restarted) that has read the broker's retained configs back."""
    mirror = Mirror(
        MemoryPublisher(), TOPICS, wall_clock=lambda: clock.wall, monotonic=lambda: clock.mono,
        **options,
    )  # fmt: skip
    mirror.broker_forgot()
    for topic, payload in broker_of(old_publisher).items():
        mirror.note_discovery_config(topic, payload)
    for _ in mirror.broker_configs_replayed():
        pass
    return mirror


def test_a_restart_publishes_no_config_the_broker_holds(mirror, publisher, clock):
    poll(mirror, raw_device(), raw_device(device_id="dev2", description="Kitchen"))
    again = restarted(publisher, clock)
    poll(again, raw_device(), raw_device(device_id="dev2", description="Kitchen"))
    sent = again._publisher.messages  # type: ignore[attr-defined]
    assert sent and not [message for message in sent if message.topic.endswith("/config")]


def test_configs_of_points_gone_while_the_bridge_was_away_are_removed(mirror, publisher, clock):
    poll(mirror, raw_device(), raw_device(device_id="dev2", description="Kitchen"))
    again = restarted(publisher, clock)
    poll(again, raw_device())
    cleared = {m.topic for m in again._publisher.messages if m.payload == b""}  # type: ignore[attr-defined]
    assert cleared == {topic for topic in broker_of(publisher) if "minut2mqtt_dev2" in topic}


def test_device_discovery_is_one_config_per_device_with_the_same_entities(mirror, publisher, clock):
    poll(mirror, raw_device())
    per_entity = {
        json.loads(payload)["unique_id"]
        for topic, payload in broker_of(publisher).items()
        if "minut2mqtt_dev1/" in topic
    }
    devices = MemoryPublisher()
    device_mode = Mirror(devices, TOPICS, device_discovery=True, wall_clock=lambda: clock.wall)
    connected_to_an_empty_broker(device_mode)
    poll(device_mode, raw_device())
    config = json.loads(devices.retained["homeassistant/device/minut2mqtt_dev1/config"])
    assert config["device"]["identifiers"] == ["minut2mqtt_dev1"] and config["origin"]["name"]
    assert {c["unique_id"] for c in config["components"].values()} == per_entity
    assert config["components"]["temperature"]["platform"] == "sensor"
    assert len(broker_of(devices)) == 3  # the Point, its home and the bridge


def test_switching_to_device_discovery_migrates_the_entities(mirror, publisher, clock):
    poll(mirror, raw_device())
    old_topics = {topic for topic in broker_of(publisher) if "minut2mqtt_dev1/" in topic}
    again = restarted(publisher, clock, device_discovery=True)
    poll(again, raw_device())
    sent = [(m.topic, m.payload) for m in again._publisher.messages]  # type: ignore[attr-defined]
    device_topic = "homeassistant/device/minut2mqtt_dev1/config"
    published_at = next(n for n, (topic, _) in enumerate(sent) if topic == device_topic)
    for topic in old_topics:
        steps = [(n, payload) for n, (sent_to, payload) in enumerate(sent) if sent_to == topic]
        assert [payload for _, payload in steps] == [b'{"migrate_discovery": true}', b""]
        assert steps[0][0] < published_at < steps[1][0], "migrate, then the device, then clear"
