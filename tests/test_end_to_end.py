"""The whole main path on real components: simulator → daemon → real broker → a subscriber."""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime, timedelta
from typing import Any

import paho.mqtt.client as mqtt
import paho.mqtt.publish as publish
import requests
from brokers import MqttRecorder
from conftest import IN_BOTH_PROCESS_MODES, WEBHOOK_SECRET, webhook_url
from paho.mqtt.enums import CallbackAPIVersion

from minut2mqtt.core.status import health_document

BRIDGE = "minut2mqtt/bridge/availability"
DEV1_STATE = "minut2mqtt/device/dev1/state"
DEV1_EVENT = "minut2mqtt/device/dev1/event"
DEV1_AVAILABILITY = "minut2mqtt/device/dev1/availability"


def wait_until_sent(daemon: Any, timeout: float = 20) -> None:
    """Until the bridge's outbox is empty: the broker has taken everything."""
    deadline = time.monotonic() + timeout
    while daemon.publisher.queue_depth:
        assert time.monotonic() < deadline, f"{daemon.publisher.queue_depth} messages not sent"
        time.sleep(0.05)


def health(daemon: Any) -> dict[str, Any]:
    """What /healthz answers now."""
    return health_document(daemon.status.snapshot())


def document(message: Any) -> dict[str, Any]:
    parsed: dict[str, Any] = json.loads(message.payload)
    return parsed


def retained(broker: Any, topic_filter: str = "#") -> dict[str, bytes]:
    return MqttRecorder.retained_snapshot(broker.host, broker.port, topic_filter)


def state_where(recorder: MqttRecorder, topic: str, check: Any, timeout: float = 10) -> dict:
    def matches(payload: bytes) -> bool:
        try:
            return bool(check(json.loads(payload)))
        except (ValueError, KeyError, TypeError):
            return False

    return document(recorder.wait_for_topic(topic, timeout, matches))


def test_states_and_discovery_match_the_simulator(start_daemon, recorder, broker, account):
    daemon = start_daemon()
    state = document(recorder.wait_for_topic(DEV1_STATE))
    api_values = account.get_device("dev1")["latest_sensor_values"]
    for key in ("temperature", "humidity", "sound"):
        assert state["readings"][key]["value"] == round(api_values[key]["value"], 2)
        assert state["readings"][key]["status"] == "fresh"
    assert state["readings"]["battery"]["value"] == account.get_device("dev1")["battery"]["percent"]
    assert state["name"] == "Hallway" and state["online"] is True

    recorder.wait_for_topic("minut2mqtt/home/home1/state")  # homes' states follow the Points'
    wait_until_sent(daemon)  # states go before configs
    snapshot = retained(broker)
    assert snapshot[BRIDGE] == b"online"
    assert snapshot[DEV1_AVAILABILITY] == b"online"
    temperature = json.loads(snapshot["homeassistant/sensor/minut2mqtt_dev1/temperature/config"])
    assert temperature["state_topic"] == DEV1_STATE
    assert temperature["unit_of_measurement"] == "°C"
    for component, key in [
        ("sensor", "humidity"),
        ("sensor", "sound"),
        ("sensor", "battery"),
        ("binary_sensor", "heat"),
        ("binary_sensor", "connectivity"),
        ("event", "event"),
        ("binary_sensor", "motion"),
    ]:
        assert f"homeassistant/{component}/minut2mqtt_dev1/{key}/config" in snapshot
    assert "homeassistant/sensor/minut2mqtt_dev1/pressure/config" not in snapshot
    home = json.loads(snapshot["minut2mqtt/home/home1/state"])
    assert home["alarm_status"] == "off" and home["states"]["disturbance"] == "OFF"
    assert "homeassistant/binary_sensor/minut2mqtt_home_home1/disturbance/config" in snapshot


@IN_BOTH_PROCESS_MODES
def test_webhook_event_reaches_event_topic_and_flips_binary_state(
    start_daemon, recorder, account, event_process
):
    start_daemon(**{"webhook.event_process": event_process})
    recorder.wait_for_topic(DEV1_STATE)
    sent = account.inject_event(
        "temperature_high", home_id="home1", device_id="dev1", sensor_value=30.5
    )
    event = document(recorder.wait_for_topic(DEV1_EVENT))
    assert event["id"] == sent["id"]
    assert event["type"] == event["event_type"] == "temperature_high"
    assert event["sensor_value"] == 30.5
    assert not recorder.last(DEV1_EVENT).retain
    state_where(recorder, DEV1_STATE, lambda s: s["states"]["heat"] == "ON")
    account.inject_event("temperature_dropped_normal", home_id="home1", device_id="dev1")
    state_where(recorder, DEV1_STATE, lambda s: s["states"]["heat"] == "OFF")


def test_unknown_event_type_is_passed_through(start_daemon, recorder, account):
    start_daemon()
    recorder.wait_for_topic(DEV1_STATE)
    account.inject_event("future_event_type", home_id="home1", device_id="dev1", level=3)
    event = document(recorder.wait_for_topic(DEV1_EVENT))
    assert (event["type"], event["event_type"], event["level"]) == ("future_event_type", "other", 3)


def test_home_noise_disturbance(start_daemon, recorder, account):
    start_daemon()
    account.inject_event("disturbance_first_notice", home_id="home1")
    event = document(recorder.wait_for_topic("minut2mqtt/home/home1/event"))
    assert event["type"] == "disturbance_first_notice"
    state_where(
        recorder, "minut2mqtt/home/home1/state", lambda s: s["states"]["disturbance"] == "ON"
    )


@IN_BOTH_PROCESS_MODES
def test_bad_webhook_deliveries_are_refused_and_publish_nothing(
    start_daemon, recorder, event_process
):
    daemon = start_daemon(**{"webhook.event_process": event_process})
    recorder.wait_for_topic(DEV1_STATE)
    recorder.clear()
    good_event = {"id": "e1", "type": "pir_motion", "home_id": "home1", "device_id": "dev1"}
    wrong_secret = requests.post(webhook_url(daemon, "wrong"), json={"event": good_event})
    assert wrong_secret.status_code == 404
    for body, reason in [
        (b"not json", "not JSON"),
        (b"[1, 2]", "JSON object"),
        (b'{"hook_id": "h"}', "'event' must be an object"),
        (b'{"event": {"type": "pir_motion"}}', "has no 'id'"),
        (b'{"event": {"id": "x"}}', "has no 'type'"),
        (b"", "empty"),
        (b'{"event": {"id": "x", "type": 5}}', "non-empty string"),
        (b'{"event": {"id": "x", "type": "t", "sensor_value": NaN}}', "finite"),
        (b'{"event": {"id": "x", "type": "t", "sensor_value": 1e999}}', "finite"),
    ]:
        answer = requests.post(webhook_url(daemon), data=body, timeout=5)
        assert answer.status_code == 400, body
        assert reason in answer.json()["error"]
    assert requests.get(webhook_url(daemon), timeout=5).status_code == 405
    time.sleep(0.5)
    assert not [m for m in recorder.messages if m.topic.endswith("/event")]
    health = requests.get(f"http://127.0.0.1:{daemon.webhook_port}/healthz", timeout=5)
    assert health.status_code == 200 and health.json()["mqtt"]["connected"] is True
    assert requests.post(webhook_url(daemon), json={"event": good_event}).status_code == 202
    recorder.wait_for_topic(DEV1_EVENT)
    # Minut may deliver an event twice: the second copy is accepted and not published again
    assert requests.post(webhook_url(daemon), json={"event": good_event}).status_code == 202
    time.sleep(0.5)
    assert len([m for m in recorder.messages if m.topic == DEV1_EVENT]) == 1


def test_offline_device(start_daemon, recorder, broker, account):
    account.set_offline("dev2", True)
    start_daemon()
    state = state_where(recorder, "minut2mqtt/device/dev2/state", lambda s: True)
    assert state["online"] is False and state["states"]["connectivity"] == "OFF"
    assert retained(broker)["minut2mqtt/device/dev2/availability"] == b"offline"


def test_removed_device_has_its_discovery_removed(start_daemon, recorder, broker, account):
    daemon = start_daemon()
    recorder.wait_for_topic("minut2mqtt/device/dev2/state")
    wait_until_sent(daemon)  # configs go after states
    assert any("minut2mqtt_dev2" in topic for topic in retained(broker))
    account.remove_device("dev2")
    daemon.poller.poll_once()
    recorder.wait_for_topic(
        "minut2mqtt/device/dev2/availability", payload_predicate=lambda p: p == b""
    )
    wait_until_sent(daemon)  # configs go after states
    left = retained(broker)
    assert not [topic for topic in left if "dev2" in topic]
    assert "homeassistant/sensor/minut2mqtt_dev1/temperature/config" in left


def test_broker_restart_brings_discovery_and_states_back(start_daemon, recorder, broker):
    daemon = start_daemon()
    recorder.wait_for_topic(DEV1_STATE)
    broker.restart()
    assert retained(broker, "homeassistant/#") == {} or broker.kind == "amqtt"
    recorder.clear()
    recorder.wait_for_topic("homeassistant/sensor/minut2mqtt_dev1/temperature/config", 20)
    recorder.wait_for_topic(DEV1_STATE, 20)
    wait_until_sent(daemon)  # states go before configs, and configs are sent again
    snapshot = retained(broker)
    assert snapshot[BRIDGE] == b"online"
    assert "homeassistant/sensor/minut2mqtt_dev2/humidity/config" in snapshot
    assert DEV1_STATE in snapshot


def test_home_assistant_birth_triggers_republish(start_daemon, recorder, broker):
    daemon = start_daemon()
    config_topic = "homeassistant/sensor/minut2mqtt_dev1/temperature/config"
    lost_topic = "homeassistant/sensor/minut2mqtt_dev2/temperature/config"
    recorder.wait_for_topic(config_topic)
    recorder.wait_for_topic(lost_topic)
    daemon.poller.poll_once()  # nothing changed: discovery is not sent again on a poll
    time.sleep(0.3)
    assert len([m for m in recorder.messages if m.topic == config_topic]) == 1
    publish_retained(broker, lost_topic, b"")  # a config the broker no longer holds
    recorder.clear()
    # A stray `offline` (say, another client that used our client id and its will)...
    daemon.publisher.publish(BRIDGE, "offline", retain=True)
    recorder.wait_for_topic(BRIDGE, 10, lambda p: p == b"offline")
    # Home Assistant's birth, from Home Assistant (MQTT 5's No Local spares the bridge its own)
    publish.single("homeassistant/status", "online", qos=1, hostname=broker.host, port=broker.port)
    recorder.wait_for_topic(DEV1_STATE, 10)
    # ...is undone by the re-publish,
    recorder.wait_for_topic(BRIDGE, 10, lambda p: p == b"online")
    # which sends the configs the broker lost, and none that it holds as they are.
    recorder.wait_for_topic(lost_topic, 10, lambda p: p != b"")
    time.sleep(0.5)
    assert not [m for m in recorder.messages if m.topic == config_topic]


def test_expired_token_is_renewed_transparently(start_daemon, recorder, account):
    daemon = start_daemon()
    recorder.wait_for_topic(DEV1_STATE)
    tokens_before = _token_requests(account)
    account.expire_tokens()
    account.set_reading("dev1", "temperature", 25.0)
    daemon.poller.poll_once()
    assert _token_requests(account) == tokens_before + 1
    state_where(recorder, DEV1_STATE, lambda s: s["readings"]["temperature"]["value"] == 25.0)


def test_short_lived_token_is_renewed_before_it_expires(start_daemon, account):
    account.token_lifetime = 3  # renewed once nine tenths of its life are over
    daemon = start_daemon()
    daemon.poller.poll_once()
    tokens_before = _token_requests(account)
    time.sleep(3)
    daemon.poller.poll_once()
    statuses = [status for method, path, status in account.requests]
    assert 401 not in statuses
    assert _token_requests(account) > tokens_before


def test_a_poll_costs_two_requests_whatever_the_number_of_devices(start_daemon, account):
    for number in range(60):
        account.add_device(
            device_id=f"bulk{number}",
            home_id="home1",
            description=f"Room {number}",
            readings={"temperature": 20.0},
        )
    daemon = start_daemon()
    daemon.poller.poll_once()
    account.clear_requests()
    daemon.poller.poll_once()
    assert sorted(path for _, path, _ in account.requests) == ["/v8/devices", "/v8/homes"]
    assert daemon.status.snapshot().devices == 62


def test_api_errors_are_survived(start_daemon, recorder, account):
    daemon = start_daemon()
    recorder.wait_for_topic(DEV1_STATE)
    account.fail_next(2, status=503)
    for _ in range(2):
        try:
            daemon.poller.poll_once()
        except Exception as error:  # the poll loop catches and backs off
            assert "503" in str(error)
    assert health(daemon)["minut"]["last_error"]
    account.set_reading("dev1", "humidity", 60.0)
    daemon.poller.poll_once()
    state_where(recorder, DEV1_STATE, lambda s: s["readings"]["humidity"]["value"] == 60.0)
    assert health(daemon)["minut"]["last_error"] is None


def test_stale_reading_is_published_as_stale_and_stays_so_for_a_new_subscriber(
    start_daemon, recorder, broker, account
):
    three_hours_ago = datetime.now(UTC) - timedelta(hours=3)
    account.set_reading("dev2", "temperature", 19.0, time=three_hours_ago)
    start_daemon()
    recorder.wait_for_topic("minut2mqtt/device/dev2/state")
    # Home Assistant restarting is a new subscriber getting the retained document.
    state = json.loads(retained(broker)["minut2mqtt/device/dev2/state"])
    assert state["readings"]["temperature"]["status"] == "stale"
    assert state["readings"]["humidity"]["status"] == "fresh"


def test_clean_shutdown_sets_bridge_offline(start_daemon, recorder, broker):
    daemon = start_daemon()
    recorder.wait_for_topic(BRIDGE, payload_predicate=lambda p: p == b"online")
    daemon.stop()
    assert retained(broker)[BRIDGE] == b"offline"


def test_an_unreachable_broker_is_reported_once(tmp_path, simulator, caplog):
    from brokers import random_free_port

    from minut2mqtt.daemon import Daemon
    from minut2mqtt.settings import load_settings

    closed_port = random_free_port()
    settings = load_settings(
        None,
        {
            "minut.api_url": simulator.base_url,
            "mqtt.host": "127.0.0.1",
            "mqtt.port": closed_port,
            "webhook.host": "127.0.0.1",
            "webhook.port": 0,
            "state_dir": tmp_path,
        },
    )
    daemon = Daemon(settings)
    with caplog.at_level("INFO", logger="minut2mqtt"):
        daemon.start()
        time.sleep(3.5)  # paho retries after 1 s, then 2 s
        daemon.stop()
    reports = [r for r in caplog.records if "cannot reach the MQTT broker" in r.getMessage()]
    assert len(reports) == 1
    assert f"127.0.0.1:{closed_port}" in reports[0].getMessage()


def test_webhook_path_secret_is_generated_and_kept(start_daemon, tmp_path):
    daemon = start_daemon(**{"webhook.secret": None})
    secret_file = tmp_path / "state" / "webhook_secret"
    secret = secret_file.read_text().strip()
    assert len(secret) >= 24 and secret != WEBHOOK_SECRET
    assert secret_file.stat().st_mode & 0o777 == 0o600
    assert daemon.webhook_path == f"/webhook/{secret}"


def publish_retained(broker: Any, topic: str, payload: bytes) -> None:
    """Another MQTT client's retained message (another integration's discovery config)."""
    client = mqtt.Client(CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv311)
    client.connect(broker.host, broker.port)
    client.loop_start()
    client.publish(topic, payload, qos=1, retain=True).wait_for_publish(5)
    client.disconnect()
    client.loop_stop()


def _token_requests(account: Any) -> int:
    return sum(1 for _, path, _ in account.requests if path.endswith("/oauth/token"))


def test_configs_of_points_that_left_while_the_bridge_was_down_are_swept(
    start_daemon, recorder, broker, account
):
    first = start_daemon()
    recorder.wait_for_topic("minut2mqtt/device/dev2/state")
    first.stop()
    account.remove_device("dev2")
    foreign = "homeassistant/sensor/zigbee2mqtt_0x1234/temperature/config"
    publish_retained(broker, foreign, b'{"state_topic": "zigbee2mqtt/0x1234"}')

    start_daemon(**{"mqtt.client_id": "second-bridge-process"})
    recorder.wait_for_topic(
        "homeassistant/binary_sensor/minut2mqtt_dev2/heat/config",
        15,
        payload_predicate=lambda p: p == b"",
    )
    time.sleep(0.5)
    left = retained(broker, "homeassistant/#")
    assert not [topic for topic in left if "minut2mqtt_dev2" in topic]
    assert "homeassistant/sensor/minut2mqtt_dev1/temperature/config" in left
    assert foreign in left


@IN_BOTH_PROCESS_MODES
def test_an_event_redelivered_after_a_restart_is_not_published_again(
    start_daemon, recorder, event_process
):
    delivery = {
        "event": {"id": "ev-42", "type": "pir_motion", "home_id": "home1", "device_id": "dev1"}
    }
    first = start_daemon(**{"webhook.event_process": event_process})
    assert requests.post(webhook_url(first), json=delivery, timeout=5).status_code == 202
    recorder.wait_for_topic(DEV1_EVENT)
    first.stop()
    second = start_daemon(
        **{"mqtt.client_id": "after-restart", "webhook.event_process": event_process}
    )
    recorder.wait_for_topic(DEV1_STATE)
    assert requests.post(webhook_url(second), json=delivery, timeout=5).status_code == 202
    time.sleep(1)
    assert len([m for m in recorder.messages if m.topic == DEV1_EVENT]) == 1


@IN_BOTH_PROCESS_MODES
def test_events_missed_while_the_bridge_was_down_are_published_in_order_once(
    start_daemon, recorder, account, event_process
):
    first = start_daemon(**{"webhook.event_process": event_process})
    seen_before = account.inject_event("short_button_press", home_id="home1", device_id="dev1")
    recorder.wait_for_topic(DEV1_EVENT, payload_predicate=lambda p: seen_before["id"] in p.decode())
    first.stop()
    missed = [
        account.inject_event("pir_motion", home_id="home1", device_id="dev1"),
        account.inject_event("disturbance_first_notice", home_id="home1"),
        account.inject_event("temperature_high", home_id="home1", device_id="dev1"),
    ]
    recorder.clear()
    start_daemon(**{"mqtt.client_id": "after-outage", "webhook.event_process": event_process})
    state_where(recorder, DEV1_STATE, lambda s: s["states"]["heat"] == "ON")
    recorder.wait_for_topic("minut2mqtt/home/home1/event")
    time.sleep(0.5)
    device_events = [json.loads(m.payload) for m in recorder.messages if m.topic == DEV1_EVENT]
    assert [e["id"] for e in device_events] == [missed[0]["id"], missed[2]["id"]]
    home_event = json.loads(recorder.last("minut2mqtt/home/home1/event").payload)
    assert (home_event["id"], home_event["type"]) == (missed[1]["id"], "disturbance_first_notice")


def _stop_webhook_deliveries(account: Any) -> None:
    for hook in account.list_webhooks():
        account.delete_webhook(hook["hook_id"])


def test_events_come_from_the_account_history_where_home_histories_are_refused(
    start_daemon, recorder, account
):
    first = start_daemon()
    recorder.wait_for_topic(DEV1_STATE)
    first.stop()
    missed = account.inject_event("alarm_heard", home_id="home1", device_id="dev1")
    account.fail_next(5, status=403, paths="/homes/home1/events")
    recorder.clear()
    second = start_daemon(**{"mqtt.client_id": "after-outage"})
    pulled = recorder.wait_for_topic(
        DEV1_EVENT, payload_predicate=lambda p: missed["id"] in p.decode()
    )
    assert document(pulled)["type"] == "alarm_heard"
    assert second.first_account.puller.account_wide
    assert ("GET", "/v8/events", 200) in account.requests


def test_events_are_pulled_when_webhooks_stay_silent(start_daemon, recorder, account):
    start_daemon(**{"minut.pull_events_after_silence": 1})
    recorder.wait_for_topic(DEV1_STATE)
    _stop_webhook_deliveries(account)  # a webhook Minut failed to deliver
    undelivered = account.inject_event("glassbreak", home_id="home1", device_id="dev1")
    message = recorder.wait_for_topic(
        DEV1_EVENT, timeout=10, payload_predicate=lambda p: undelivered["id"] in p.decode()
    )
    assert document(message)["type"] == "glassbreak"


def test_a_revoked_grant_shows_on_the_status_topic_and_health_then_recovers(
    start_daemon, recorder, account
):
    daemon = start_daemon()
    state_where(recorder, "minut2mqtt/bridge/state", lambda s: s["minut"] == "connected")
    account.revoke_client()
    account.expire_tokens()
    for _ in range(2):  # the first refusal renews the token, which is refused too
        try:
            daemon.poller.poll_once()
        except Exception as error:
            assert "client credentials" in str(error)
    status = state_where(
        recorder, "minut2mqtt/bridge/state", lambda s: s["minut"] == "unauthorized"
    )
    assert "client_secret" in status["error"]
    document = health(daemon)
    assert (document["status"], document["minut"]["status"]) == ("degraded", "unauthorized")
    account.restore_client()
    daemon.poller.poll_once()
    state_where(recorder, "minut2mqtt/bridge/state", lambda s: s["minut"] == "connected")
    assert health(daemon)["status"] == "ok"


def test_a_restart_with_nothing_changed_sends_no_config_again(start_daemon, recorder, account):
    first = start_daemon()
    recorder.wait_for_topic(DEV1_STATE)
    wait_until_sent(first)
    configs = {m.topic: m.payload for m in recorder.messages if m.topic.endswith("/config")}
    assert len(configs) > 40
    first.stop()
    recorder.clear()
    account.set_reading("dev1", "temperature", 23.5)
    second = start_daemon()  # the same client id: the broker kept our session
    state_where(recorder, DEV1_STATE, lambda s: s["readings"]["temperature"]["value"] == 23.5)
    wait_until_sent(second)
    again = [m.topic for m in recorder.messages if m.topic.endswith("/config")]
    assert again == [], f"{len(again)} configs the broker held were sent again"
