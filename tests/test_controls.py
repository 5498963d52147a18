"""Acting on Minut from MQTT: each command topic changes the simulator's home or Point, the
published state follows what Minut answered, and refusals are answered on the response topic."""

from __future__ import annotations

import json
import time
from typing import Any

import paho.mqtt.publish as publish
import pytest
import requests
from test_end_to_end import document, retained, state_where

from minut2mqtt.simulator import SimulatedAccount
from minut2mqtt.simulator.api import OLD_ALARM_ENDPOINTS
from minut2mqtt.simulator.thresholds import default_quiet_hours, default_reactions, reaction

HOME_STATE = "minut2mqtt/home/home1/state"
DEV1_STATE = "minut2mqtt/device/dev1/state"
RESPONSE = "minut2mqtt/bridge/response"
ALARM_SET = "minut2mqtt/home/home1/alarm/set"


@pytest.fixture
def account() -> SimulatedAccount:
    simulated = SimulatedAccount(client_id="test-client", client_secret="test-secret-value-9f8e7d")
    simulated.add_home(home_id="home1", name="Beach house", alarm_status="off")
    simulated.add_device(
        device_id="dev1",
        home_id="home1",
        description="Hallway",
        readings={"temperature": 21.4, "humidity": 45.0, "sound": 38.0},
        reactions=[*default_reactions(), reaction("future_reaction_type", 3)],
        quiet_hours=default_quiet_hours(),
    )
    simulated.add_device(device_id="dev2", home_id="home1", description="Kitchen")
    return simulated


def command(broker: Any, topic: str, payload: str | bytes, retain: bool = False) -> None:
    publish.single(topic, payload, qos=1, retain=retain, hostname=broker.host, port=broker.port)


def answer(recorder: Any, topic: str, timeout: float = 10) -> dict[str, Any]:
    """The bridge's answer to the command sent on `topic`."""

    def about(payload: bytes) -> bool:
        return bool(json.loads(payload)["topic"] == topic)

    return document(recorder.wait_for_topic(RESPONSE, timeout, about))


def writes(account: SimulatedAccount) -> list[tuple[str, str, int]]:
    return [(w.method, w.path.removeprefix("/v8"), w.status) for w in account.writes]


def test_arming_and_disarming_a_home_from_its_command_topic(
    start_daemon, recorder, broker, account
):
    start_daemon()
    state_where(recorder, HOME_STATE, lambda doc: doc["controls"]["alarm"] == "disarmed")
    command(broker, ALARM_SET, "ARM_AWAY")
    assert answer(recorder, ALARM_SET) == {
        "topic": ALARM_SET,
        "home_id": "home1",
        "control": "alarm",
        "command": "ARM_AWAY",
        "result": "ok",
        "state": "armed_away",
    }
    assert account.get_home("home1")["alarm_status"] == "on"
    state_where(recorder, HOME_STATE, lambda doc: doc["controls"]["alarm"] == "armed_away")
    assert writes(account) == [("PATCH", "/homes/home1/alarm", 200)]

    recorder.clear()
    command(broker, ALARM_SET, "DISARM")
    assert answer(recorder, ALARM_SET)["state"] == "disarmed"
    state_where(recorder, HOME_STATE, lambda doc: doc["alarm_status"] == "off")


def test_an_older_api_is_armed_through_put_home_and_that_is_remembered(
    start_daemon, recorder, broker, account
):
    account.alarm_endpoints = OLD_ALARM_ENDPOINTS
    start_daemon()
    state_where(recorder, HOME_STATE, lambda doc: doc["controls"]["alarm"] == "disarmed")
    command(broker, ALARM_SET, "ARM_AWAY")
    assert answer(recorder, ALARM_SET)["result"] == "ok"
    recorder.clear()
    command(broker, ALARM_SET, "DISARM")
    assert answer(recorder, ALARM_SET)["state"] == "disarmed"
    assert [write[:2] for write in writes(account)] == [
        ("PATCH", "/homes/home1/alarm"),  # refused: not on this API
        ("PUT", "/homes/home1"),
        ("PUT", "/homes/home1"),  # the v8 endpoint is not tried again
    ]


def test_arming_shows_the_grace_period_then_armed(start_daemon, recorder, broker, account):
    account.alarm_grace_seconds = 2
    start_daemon()
    state_where(recorder, HOME_STATE, lambda doc: doc["controls"]["alarm"] == "disarmed")
    command(broker, ALARM_SET, "ARM_AWAY")
    assert answer(recorder, ALARM_SET)["state"] == "arming"  # what Minut answered, not asked
    state_where(recorder, HOME_STATE, lambda doc: doc["controls"]["alarm"] == "arming")
    # read again by itself after the grace period, long before the next poll
    state_where(recorder, HOME_STATE, lambda doc: doc["controls"]["alarm"] == "armed_away", 8)


def test_a_disarm_code_is_checked(start_daemon, recorder, broker, account):
    account.arm("home1")
    start_daemon(**{"controls.alarm_code": "4321"})
    state_where(recorder, HOME_STATE, lambda doc: doc["controls"]["alarm"] == "armed_away")
    for wrong in ("DISARM", '{"action": "DISARM", "code": "1234"}'):
        recorder.clear()
        command(broker, ALARM_SET, wrong)
        refused = answer(recorder, ALARM_SET)
        assert refused["result"] == "refused" and "code" in refused["reason"]
    assert account.get_home("home1")["alarm_status"] == "on"
    recorder.clear()
    command(broker, ALARM_SET, '{"action": "DISARM", "code": "4321"}')
    assert answer(recorder, ALARM_SET)["state"] == "disarmed"


def test_noise_monitoring_switch(start_daemon, recorder, broker, account):
    start_daemon()
    topic = "minut2mqtt/home/home1/noise_monitoring/set"
    state_where(recorder, HOME_STATE, lambda doc: doc["controls"]["noise_monitoring"] == "ON")
    command(broker, topic, "OFF")
    assert answer(recorder, topic)["state"] == "OFF"
    assert account.get_home("home1")["disturbance_monitoring_active"] is False


def test_a_threshold_is_written_as_the_whole_merged_reaction(
    start_daemon, recorder, broker, account
):
    start_daemon()
    topic = "minut2mqtt/device/dev1/sound_level_high/set"
    state_where(recorder, DEV1_STATE, lambda doc: doc["controls"]["sound_level_high"] == 75)
    command(broker, topic, "70")
    assert answer(recorder, topic)["state"] == 70
    [write] = account.writes
    assert write.body == {
        "reactions": [
            {"type": "sound_level_high", "value": 70, "duration_seconds": 600, "notifications": []}
        ]
    }
    state_where(recorder, DEV1_STATE, lambda doc: doc["controls"]["sound_level_high"] == 70)
    carried = {r["type"]: r for r in account.get_device("dev1")["reactions"]}
    assert carried["sound_level_high_quiet_hours"]["value"] == 70  # untouched


def test_duration_quiet_hours_and_an_unknown_reaction_type(start_daemon, recorder, broker, account):
    start_daemon()
    state_where(recorder, DEV1_STATE, lambda doc: doc["controls"]["sound_duration"] == 10)
    for key, payload, shown in (
        ("sound_duration", "12", 12),
        ("quiet_hours", "ON", "ON"),
        ("quiet_hours_start", "23:30", "23:30"),
        ("reaction_future_reaction_type", "4.5", 4.5),
    ):
        topic = f"minut2mqtt/device/dev1/{key}/set"
        command(broker, topic, payload)
        assert answer(recorder, topic)["state"] == shown, key
    device = account.get_device("dev1")
    assert {r["type"]: r["duration_seconds"] for r in device["reactions"]}[
        "sound_level_high_quiet_hours"
    ] == 720
    assert device["quiet_hours"] == {"enabled": True, "start": "23:30", "end": "07:00"}
    state_where(
        recorder,
        DEV1_STATE,
        lambda doc: (
            doc["controls"]["quiet_hours"] == "ON"
            and doc["controls"]["reaction_future_reaction_type"] == 4.5
        ),
    )


@pytest.mark.parametrize(
    ("topic", "payload", "reason"),
    [
        ("minut2mqtt/device/dev1/sound_level_high/set", "200", "not allowed: 45 to 90 dB"),
        ("minut2mqtt/device/dev1/sound_level_high/set", "loud", "not a number"),
        ("minut2mqtt/device/dev1/sound_level_high/set", "nan", "not a finite number"),
        ("minut2mqtt/device/dev1/quiet_hours_end/set", "25:00", "HH:MM"),
        ("minut2mqtt/device/dev1/sound_level_high/set", b"\xff\xfe", "not UTF-8"),
        ("minut2mqtt/device/dev1/sound_level_high/set", "7" * 5000, "at most 256"),
        ("minut2mqtt/device/dev2/sound_level_high/set", "70", "has no control"),
        ("minut2mqtt/device/nope/sound_level_high/set", "70", "no home or Point"),
        (ALARM_SET, "ARM_HOME", "ARM_AWAY or DISARM"),
        (ALARM_SET, "{not json", "not valid JSON"),
    ],
)
def test_bad_commands_are_refused_with_a_reason_and_nothing_is_sent(
    start_daemon, recorder, broker, account, topic, payload, reason
):
    daemon = start_daemon()
    state_where(recorder, DEV1_STATE, lambda doc: "controls" in doc)
    command(broker, topic, payload)
    refused = answer(recorder, topic)
    assert refused["result"] == "refused" and reason in refused["reason"]
    assert account.writes == []
    assert daemon.commands.results["refused"] == 1
    metrics = requests.get(f"http://127.0.0.1:{daemon.webhook_port}/metrics", timeout=5).text
    assert 'minut2mqtt_commands_total{result="refused"} 1.0' in metrics


def test_a_value_minut_refuses_is_answered_and_the_state_stays(
    start_daemon, recorder, broker, account
):
    start_daemon()
    topic = "minut2mqtt/device/dev1/reaction_future_reaction_type/set"
    state_where(recorder, DEV1_STATE, lambda doc: "controls" in doc)
    account.set_reactions("dev1", default_reactions())  # Minut no longer knows the type
    command(broker, topic, "5")
    failed = answer(recorder, topic)
    assert failed["result"] == "failed" and "HTTP 400" in failed["reason"]


def test_a_retained_command_is_not_carried_out_when_the_broker_replays_it(
    start_daemon, recorder, broker, account, caplog
):
    command(broker, ALARM_SET, "ARM_AWAY", retain=True)
    start_daemon()
    state_where(recorder, HOME_STATE, lambda doc: doc["controls"]["alarm"] == "disarmed")
    time.sleep(1)
    assert account.writes == []
    assert f"clear this one: mosquitto_pub -r -n -t '{ALARM_SET}'" in caplog.text
    command(broker, ALARM_SET, "", retain=True)


def test_read_only_bridge_offers_no_controls(start_daemon, recorder, broker, account):
    start_daemon(**{"controls.enabled": False})
    state_where(recorder, DEV1_STATE, lambda doc: "controls" in doc)
    command(broker, ALARM_SET, "ARM_AWAY")
    time.sleep(1)
    assert account.writes == []
    assert not [m for m in recorder.messages if m.topic == RESPONSE]
    configs = retained(broker, "homeassistant/#")
    assert configs and not [t for t in configs if "/alarm_control_panel/" in t]
    assert not [t for t in configs if "/device_automation/" in t]


def test_device_triggers_and_command_entities_are_discovered(start_daemon, recorder, broker):
    start_daemon()
    state_where(recorder, DEV1_STATE, lambda doc: "controls" in doc)
    prefix = "homeassistant/device_automation/minut2mqtt_dev1/trigger_glassbreak/config"
    trigger = document(recorder.wait_for_topic(prefix))
    assert trigger["automation_type"] == "trigger"
    assert trigger["topic"] == "minut2mqtt/device/dev1/event"
    assert (trigger["type"], trigger["payload"]) == ("glassbreak", "glassbreak")
    alarm = document(
        recorder.wait_for_topic(
            "homeassistant/alarm_control_panel/minut2mqtt_home_home1/alarm/config"
        )
    )
    assert alarm["command_topic"] == ALARM_SET
    assert alarm["supported_features"] == ["arm_away"]


def test_a_command_for_what_minut_already_shows_sends_nothing(
    start_daemon, recorder, broker, account
):
    account.arm("home1")
    start_daemon()
    state_where(recorder, HOME_STATE, lambda doc: doc["controls"]["alarm"] == "armed_away")
    command(broker, ALARM_SET, "arm_away")  # any case
    assert answer(recorder, ALARM_SET)["state"] == "armed_away"
    topic = "minut2mqtt/device/dev1/sound_level_high/set"
    command(broker, topic, "75")
    assert answer(recorder, topic)["state"] == 75
    assert account.writes == []


def test_a_command_is_refused_while_the_budget_is_used_up(start_daemon, recorder, broker):
    daemon = start_daemon()
    state_where(recorder, HOME_STATE, lambda doc: "controls" in doc)
    daemon.minut.scheduler.pause(120)  # as after a 429 with Retry-After: 120
    command(broker, ALARM_SET, "ARM_AWAY")
    refused = answer(recorder, ALARM_SET)
    assert refused["result"] == "refused" and "budget is used up" in refused["reason"]
