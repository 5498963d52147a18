"""Discovery of the controls and device triggers, derived from the tables (pure functions)."""

from __future__ import annotations

import json
import os
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import jinja2
import pytest

from minut2mqtt.core.control_configs import Controls
from minut2mqtt.core.controls import HOME_CONTROLS, controls_of_device
from minut2mqtt.core.discovery import DiscoveryContext, device_configs, home_configs
from minut2mqtt.core.documents import device_document, home_document
from minut2mqtt.core.entities import DEVICE_TRIGGER_EVENTS, HOME_TRIGGER_EVENTS
from minut2mqtt.core.topics import Topics
from minut2mqtt.core.tracked import TrackedDevice, TrackedHome
from minut2mqtt.minut.models import parse_device, parse_home

TOPICS = Topics("minut2mqtt", "homeassistant")
CTX = DiscoveryContext(TOPICS, momentary_seconds=30, controls=Controls())
REACTIONS = [
    {"type": "sound_level_high", "value": 75, "duration_seconds": 600, "notifications": []},
    {"type": "sound_level_high_quiet_hours", "value": 70, "duration_seconds": 600},
    {"type": "temperature_high", "value": 28.5, "duration_seconds": 600},
    {"type": "future reaction-type", "value": 3},
]
DEVICE = parse_device(
    {
        "device_id": "abc123",
        "home": "home1",
        "description": "Living room",
        "hardware_version": 2,
        "reactions": REACTIONS,
        "quiet_hours": {"enabled": False, "start": "22:00", "end": "07:00"},
    }
)
HOME = parse_home(
    {
        "home_id": "home1",
        "name": "Beach house",
        "alarm_status": "on_grace_period",
        "disturbance_monitoring_active": True,
    }
)


def by_platform(configs: dict[str, Any], platform: str) -> dict[str, dict[str, Any]]:
    return {topic: config for topic, config in configs.items() if f"/{platform}/" in topic}


def render(template: str, document: dict[str, Any]) -> str:
    return jinja2.Environment().from_string(template).render(value_json=document)


def test_every_control_and_trigger_payload_matches_its_snapshot():
    """After an intended change: MINUT2MQTT_UPDATE_SNAPSHOTS=1 pytest <this file>, then read
    the diff of tests/snapshots/controls.json before committing it."""
    configs = {**device_configs(CTX, DEVICE, []), **home_configs(CTX, HOME)}
    configs = {
        topic: {**config, "origin": {**config["origin"], "sw_version": "<version>"}}
        for topic, config in json.loads(json.dumps(configs)).items()
        if "/sensor/" not in topic and "/binary_sensor/" not in topic and "/event/" not in topic
    }
    snapshot = Path(__file__).parent / "snapshots" / "controls.json"
    if os.environ.get("MINUT2MQTT_UPDATE_SNAPSHOTS"):
        snapshot.write_text(json.dumps(configs, indent=2, ensure_ascii=False) + "\n")
    assert configs == json.loads(snapshot.read_text(encoding="utf-8"))


def test_each_control_reads_its_value_from_the_state_document():
    device_doc = device_document(TrackedDevice(DEVICE), DEVICE.last_heard_from_at, 7200)  # type: ignore[arg-type]
    shown = {
        config["unique_id"].removeprefix("minut2mqtt_abc123_"): render(
            config["value_template"], device_doc
        )
        for config in device_configs(CTX, DEVICE, []).values()
        if "command_topic" in config
    }
    assert shown == {
        "sound_level_high": "75",
        "sound_level_high_quiet_hours": "70",
        "sound_duration": "10",
        "temperature_high": "28.5",
        "quiet_hours": "OFF",
        "quiet_hours_start": "22:00",
        "quiet_hours_end": "07:00",
        "reaction_future_reaction_type": "3",  # a type the table does not know: a number
    }
    [alarm] = by_platform(home_configs(CTX, HOME), "alarm_control_panel").values()
    home_doc = home_document(TrackedHome(HOME), datetime.now(UTC))
    assert render(alarm["value_template"], home_doc) == "arming"


def test_each_control_commands_on_its_own_topic():
    for config in device_configs(CTX, DEVICE, []).values():
        if "command_topic" in config:
            key = config["unique_id"].removeprefix("minut2mqtt_abc123_")
            assert config["command_topic"] == f"minut2mqtt/device/abc123/{key}/set"
            assert TOPICS.command_target(config["command_topic"]) == ("device", "abc123", key)
    assert TOPICS.command_target("minut2mqtt/home/home1/alarm/set") == ("home", "home1", "alarm")
    assert TOPICS.command_target("minut2mqtt/home/home1/state") is None
    assert TOPICS.command_target("other/home/home1/alarm/set") is None


def test_a_point_without_settings_has_no_control_entities():
    bare = replace(DEVICE, reactions=(), quiet_hours=None)
    assert controls_of_device(bare) == []
    assert not [c for c in device_configs(CTX, bare, []).values() if "command_topic" in c]


def test_a_disarm_code_makes_home_assistant_ask_for_it():
    ctx = replace(CTX, controls=Controls(alarm_code=True))
    [alarm] = by_platform(home_configs(ctx, HOME), "alarm_control_panel").values()
    assert alarm["code"] == "REMOTE_CODE"
    assert (alarm["code_arm_required"], alarm["code_disarm_required"]) == (False, True)
    assert "{{ code }}" in alarm["command_template"]
    [without] = by_platform(home_configs(CTX, HOME), "alarm_control_panel").values()
    assert "code" not in without and without["code_disarm_required"] is False


@pytest.mark.parametrize("device_based", [False, True])
def test_one_trigger_per_event_type_of_the_table(device_based):
    ctx = replace(CTX, device_based=device_based)
    configs = {**device_configs(ctx, DEVICE, []), **home_configs(ctx, HOME)}
    if device_based:
        triggers = [
            component
            for config in configs.values()
            for component in config["components"].values()
            if component["platform"] == "device_automation"
        ]
    else:
        triggers = list(by_platform(configs, "device_automation").values())
    assert sorted(t["type"] for t in triggers) == sorted(
        (*DEVICE_TRIGGER_EVENTS, *HOME_TRIGGER_EVENTS)
    )
    for trigger in triggers:
        assert trigger["payload"] == trigger["type"]
        assert render(trigger["value_template"], {"type": trigger["type"]}) == trigger["type"]
        assert trigger["topic"] in ("minut2mqtt/device/abc123/event", "minut2mqtt/home/home1/event")


def test_read_only_configs_have_no_commands_and_no_triggers():
    ctx = replace(CTX, controls=None)
    configs = {**device_configs(ctx, DEVICE, []), **home_configs(ctx, HOME)}
    assert not [c for c in configs.values() if "command_topic" in c or "automation_type" in c]
    assert len(HOME_CONTROLS) == 2
