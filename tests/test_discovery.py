"""Home Assistant discovery payloads, compared as parsed JSON per entity."""

from __future__ import annotations

import re

from minut2mqtt import __version__
from minut2mqtt.core.discovery import (
    DiscoveryContext,
    bridge_configs,
    device_configs,
    home_configs,
)
from minut2mqtt.core.documents import OFFLINE, ONLINE
from minut2mqtt.core.entities import (
    BRIDGE_VALUES,
    DEVICE_STATES,
    EVENT_TYPES_FOR_HA,
    HOME_STATES,
    READINGS,
)
from minut2mqtt.core.topics import Topics
from minut2mqtt.minut.models import parse_device, parse_home

CTX = DiscoveryContext(Topics("minut2mqtt", "homeassistant"), momentary_seconds=30)
DEVICE = parse_device(
    {
        "device_id": "abc123",
        "home": "home1",
        "description": "Living room",
        "hardware_version": 2,
        "firmware": {"installed": "2.1.0"},
        "device_mac": "aa:bb:cc:dd:ee:ff",
    }
)
HOME = parse_home({"home_id": "home1", "name": "Beach house"})
DEVICE_BLOCK = {
    "identifiers": ["minut2mqtt_abc123"],
    "name": "Living room",
    "manufacturer": "Minut",
    "model": "Point v2",
    "suggested_area": "Living room",
    "configuration_url": "https://web.minut.com",
    "hw_version": "2",
    "sw_version": "2.1.0",
    "via_device": "minut2mqtt_home_home1",
}
# payload_available and payload_not_available left out: Home Assistant's defaults, what we publish
BRIDGE_AVAILABLE = {"topic": "minut2mqtt/bridge/availability"}
DEVICE_AVAILABLE = {"topic": "minut2mqtt/device/abc123/availability"}
ORIGIN = {"name": "minut2mqtt", "sw_version": __version__}


def test_availability_payloads_left_out_are_the_ones_we_publish():
    assert (ONLINE, OFFLINE) == ("online", "offline")  # Home Assistant's and openHAB's defaults


def test_temperature_sensor_config():
    configs = device_configs(CTX, DEVICE, ["temperature"])
    assert configs["homeassistant/sensor/minut2mqtt_abc123/temperature/config"] == {
        "unique_id": "minut2mqtt_abc123_temperature",
        "object_id": "minut_living_room_temperature",
        "default_entity_id": "sensor.minut_living_room_temperature",
        "name": "Temperature",
        "state_topic": "minut2mqtt/device/abc123/state",
        "value_template": "{{ value_json.readings.temperature.value }}",
        "state_class": "measurement",
        "device_class": "temperature",
        "unit_of_measurement": "°C",
        "suggested_display_precision": 1,
        "availability": [
            BRIDGE_AVAILABLE,
            DEVICE_AVAILABLE,
            {
                "topic": "minut2mqtt/device/abc123/state",
                "payload_available": "fresh",
                "payload_not_available": "stale",
                "value_template": "{{ value_json.readings.temperature.status }}",
            },
        ],
        "availability_mode": "all",
        "device": DEVICE_BLOCK,
        "origin": ORIGIN,
        "qos": 1,
    }


def test_units_home_assistant_accepts_for_each_device_class():
    accepted = {
        "temperature": "°C",
        "humidity": "%",
        "sound_pressure": "dBA",
        "battery": "%",
        "voltage": "V",
        "atmospheric_pressure": "hPa",
    }
    configs = device_configs(CTX, DEVICE, [spec.key for spec in READINGS])
    sensors = [c for topic, c in configs.items() if "/sensor/" in topic]
    assert len(sensors) == len(READINGS)
    for config in sensors:
        if "device_class" in config:
            assert config["unit_of_measurement"] == accepted[config["device_class"]]


def test_momentary_binary_sensor_has_off_delay():
    configs = device_configs(CTX, DEVICE, [])
    motion = configs["homeassistant/binary_sensor/minut2mqtt_abc123/motion/config"]
    assert motion["off_delay"] == 30
    assert motion["device_class"] == "motion"
    assert motion["value_template"] == "{{ value_json.states.motion }}"
    assert (motion["payload_on"], motion["payload_off"]) == ("ON", "OFF")
    assert motion["availability"] == [BRIDGE_AVAILABLE, DEVICE_AVAILABLE]
    heat = configs["homeassistant/binary_sensor/minut2mqtt_abc123/heat/config"]
    assert "off_delay" not in heat


def test_connectivity_stays_available_when_the_point_is_offline():
    configs = device_configs(CTX, DEVICE, [])
    connectivity = configs["homeassistant/binary_sensor/minut2mqtt_abc123/connectivity/config"]
    assert connectivity["availability"] == [BRIDGE_AVAILABLE]
    assert connectivity["device_class"] == "connectivity"
    assert connectivity["entity_category"] == "diagnostic"


def test_every_binary_state_of_the_table_has_a_binary_sensor():
    configs = device_configs(CTX, DEVICE, [])
    for spec in DEVICE_STATES:
        assert f"homeassistant/binary_sensor/minut2mqtt_abc123/{spec.key}/config" in configs
    home = home_configs(CTX, HOME)
    for spec in HOME_STATES:
        assert f"homeassistant/binary_sensor/minut2mqtt_home_home1/{spec.key}/config" in home


def test_event_entity_lists_every_known_type_and_other():
    configs = device_configs(CTX, DEVICE, [])
    event = configs["homeassistant/event/minut2mqtt_abc123/event/config"]
    assert event["state_topic"] == "minut2mqtt/device/abc123/event"
    assert event["event_types"] == list(EVENT_TYPES_FOR_HA)
    assert "other" in event["event_types"] and "alarm_heard" in event["event_types"]


def test_home_configs():
    configs = home_configs(CTX, HOME)
    alarm = configs["homeassistant/sensor/minut2mqtt_home_home1/alarm_status/config"]
    assert alarm["value_template"] == "{{ value_json.alarm_status }}"
    assert alarm["device"]["name"] == "Beach house"
    disturbance = configs["homeassistant/binary_sensor/minut2mqtt_home_home1/disturbance/config"]
    assert disturbance["default_entity_id"] == "binary_sensor.minut_beach_house_disturbance"
    assert disturbance["value_template"] == "{{ value_json.states.disturbance }}"


def test_ids_are_unique_valid_and_do_not_depend_on_names():
    configs = {**device_configs(CTX, DEVICE, [s.key for s in READINGS]), **home_configs(CTX, HOME)}
    unique_ids = [config["unique_id"] for config in configs.values()]
    assert len(unique_ids) == len(set(unique_ids))
    for topic, config in configs.items():
        assert re.fullmatch(r"homeassistant/[a-z_]+/[A-Za-z0-9_-]+/[A-Za-z0-9_-]+/config", topic)
        assert "living" not in config["unique_id"] and "beach" not in config["unique_id"]
        component = topic.split("/")[1]
        assert config["default_entity_id"].startswith(f"{component}.minut_")
        assert "entity_category" not in config or config["entity_category"] == "diagnostic"
        # keep templates plain for openHAB: no filters, no logic
        for template in [config.get("value_template", "")] + [
            a.get("value_template", "") for a in config.get("availability", [])
        ]:
            assert "|" not in template and "if" not in template


def test_unknown_reading_key_gets_a_plain_sensor():
    configs = device_configs(CTX, DEVICE, ["co2_level"])
    config = configs["homeassistant/sensor/minut2mqtt_abc123/co2_level/config"]
    assert config["name"] == "Co2 level"
    assert "device_class" not in config and "unit_of_measurement" not in config


def test_two_bridges_with_different_base_topics_do_not_collide():
    other = DiscoveryContext(Topics("minut_b", "homeassistant"), momentary_seconds=30)
    ours = {c["unique_id"] for c in device_configs(CTX, DEVICE, ["temperature"]).values()}
    theirs = {c["unique_id"] for c in device_configs(other, DEVICE, ["temperature"]).values()}
    assert not ours & theirs


def test_topic_reference_lists_every_entity_of_the_table():
    from pathlib import Path

    from minut2mqtt.reference import with_reference

    document = (Path(__file__).parent.parent / "docs" / "topics.md").read_text(encoding="utf-8")
    assert document == with_reference(document), "run: python -m minut2mqtt.reference"


def test_every_discovery_payload_matches_its_snapshot():
    """All configs of a Point carrying every known reading, and of its home, as reviewed JSON.

    After an intended change: MINUT2MQTT_UPDATE_SNAPSHOTS=1 pytest tests/test_discovery.py,
    then read the diff of tests/snapshots/discovery.json before committing it.
    """
    import json
    import os
    from pathlib import Path

    configs = {
        **device_configs(CTX, DEVICE, [s.key for s in READINGS]),
        **home_configs(CTX, HOME),
        **bridge_configs(CTX),
    }
    configs = json.loads(json.dumps(configs))  # version-independent: compare as parsed JSON
    for config in configs.values():
        config["origin"]["sw_version"] = "<version>"
        if config["device"]["manufacturer"] == "minut2mqtt":
            config["device"]["sw_version"] = "<version>"
    snapshot = Path(__file__).parent / "snapshots" / "discovery.json"
    if os.environ.get("MINUT2MQTT_UPDATE_SNAPSHOTS"):
        snapshot.write_text(json.dumps(configs, indent=2, ensure_ascii=False) + "\n")
    assert configs == json.loads(snapshot.read_text(encoding="utf-8"))


def _render(template: str, document: dict[str, object]) -> str:
    """What Home Assistant shows for a value template (its templates are Jinja2)."""
    import jinja2

    return jinja2.Environment().from_string(template).render(value_json=document)


def test_the_bridge_is_a_device_of_diagnostic_entities_read_from_its_status_topic():
    configs = bridge_configs(CTX)
    assert len(configs) == len(BRIDGE_VALUES)
    for config in configs.values():
        assert config["entity_category"] == "diagnostic"
        if config.get("device_class") == "timestamp":
            # a topic of its own, retained once known: no state HA 2024.x cannot parse
            key = config["unique_id"].removeprefix("minut2mqtt_bridge_")
            assert config["state_topic"] == f"minut2mqtt/bridge/{key}"
            assert "value_template" not in config
        else:
            assert config["state_topic"] == "minut2mqtt/bridge/state"
        assert config["device"]["identifiers"] == ["minut2mqtt_bridge"]
        assert config["availability"] == [BRIDGE_AVAILABLE]


def test_bridge_entities_show_a_revoked_grant_and_the_counters():
    by_key = {config["unique_id"]: config for config in bridge_configs(CTX).values()}
    connection = by_key["minut2mqtt_bridge_minut_connection"]
    status = {
        "minut": "unauthorized",
        "last_poll": "2026-11-23T10:00:00.000Z",
        "last_webhook": None,
        "api_errors": 3,
        "events_forwarded": 12,
    }
    assert _render(connection["value_template"], status) == "OFF"  # binary_sensor default
    assert _render(connection["value_template"], {**status, "minut": "connected"}) == "ON"
    assert _render(by_key["minut2mqtt_bridge_minut_status"]["value_template"], status) == (
        "unauthorized"
    )
    assert _render(by_key["minut2mqtt_bridge_events_forwarded"]["value_template"], status) == "12"
    # No webhook yet: nothing on its topic, so Home Assistant shows "unknown" without a warning.
    assert by_key["minut2mqtt_bridge_last_webhook"]["state_topic"] == (
        "minut2mqtt/bridge/last_webhook"
    )
