"""The commands as a user runs them: `minut2mqtt run` until SIGTERM, and `minut2mqtt demo`."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from brokers import MqttRecorder, find_mosquitto, random_free_port
from conftest import CLIENT_ID, CLIENT_SECRET, IN_BOTH_PROCESS_MODES


def start_command(*args: str, env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    environment = {k: v for k, v in os.environ.items() if not k.startswith("MINUT2MQTT_")}
    environment.update(env)
    with log.open("wb") as output:
        return subprocess.Popen(
            [sys.executable, "-m", "minut2mqtt", *args],
            stdout=output,
            stderr=subprocess.STDOUT,
            env=environment,
        )


def test_run_bridges_until_sigterm_then_says_offline(tmp_path, broker, simulator, recorder):
    config = tmp_path / "minut2mqtt.yaml"
    config.write_text(
        f"minut:\n  api_url: {simulator.base_url}\n  client_id: {CLIENT_ID}\n"
        f"mqtt:\n  host: 127.0.0.1\n  port: 1\n"
        f"webhook:\n  host: 127.0.0.1\n  port: {random_free_port()}\n"
        f"state_dir: {tmp_path / 'state'}\n"
    )
    log = tmp_path / "run.log"
    process = start_command(
        "run",
        "--config",
        str(config),
        f"--mqtt.port={broker.port}",  # the command line beats the file
        env={"MINUT2MQTT_MINUT__CLIENT_SECRET": CLIENT_SECRET},  # the environment adds to it
        log=log,
    )
    try:
        state = recorder.wait_for_topic("minut2mqtt/device/dev1/state", 20)
        assert json.loads(state.payload)["name"] == "Hallway"
        recorder.wait_for_topic("minut2mqtt/bridge/availability", 5, lambda p: p == b"online")
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=20) == 0
    finally:
        if process.poll() is None:
            process.kill()
    retained = MqttRecorder.retained_snapshot(broker.host, broker.port)
    assert retained["minut2mqtt/bridge/availability"] == b"offline"
    output = log.read_text()
    assert "Traceback" not in output
    assert CLIENT_SECRET not in output


def test_a_killed_bridge_is_offline_through_its_last_will(tmp_path, broker, simulator, recorder):
    process = start_command(
        "run",
        f"--minut.api_url={simulator.base_url}",
        f"--minut.client_id={CLIENT_ID}",
        f"--mqtt.port={broker.port}",
        "--webhook.host=127.0.0.1",
        f"--webhook.port={random_free_port()}",
        f"--state-dir={tmp_path}",
        "--mqtt.keepalive=5",
        "--log-format=json",
        env={"MINUT2MQTT_MINUT__CLIENT_SECRET": CLIENT_SECRET},
        log=tmp_path / "run.log",
    )
    try:
        recorder.wait_for_topic("minut2mqtt/device/dev1/state", 20)
        process.kill()
        process.wait(timeout=10)
        recorder.wait_for_topic("minut2mqtt/bridge/availability", 15, lambda p: p == b"offline")
    finally:
        if process.poll() is None:
            process.kill()
    lines = (tmp_path / "run.log").read_text().splitlines()
    entries = [json.loads(line) for line in lines]  # log_format json: every line is an object
    assert any(e["message"].startswith("connected to MQTT broker") for e in entries)
    assert {"time", "level", "logger", "message"} <= entries[0].keys()


@pytest.mark.parametrize("broker", ["auto", "amqtt"])
def test_demo_runs_everything_embedded(tmp_path, broker):
    """auto: Mosquitto as a child process where installed (MQTT 5); amqtt: the fallback."""
    port = random_free_port()
    log = tmp_path / "demo.log"
    process = start_command(
        "demo", "--duration", "30", f"--mqtt.port={port}", f"--broker={broker}", env={}, log=log
    )
    try:
        deadline = time.monotonic() + 20
        while "demo is running" not in log.read_text() and time.monotonic() < deadline:
            assert process.poll() is None, log.read_text()
            time.sleep(0.2)
        with MqttRecorder("127.0.0.1", port, topics=["minut2mqtt/+/+/state"]) as states_seen:
            states_seen.wait_for(lambda _: len({m.topic for m in states_seen.messages}) == 7)
        # discovery follows the states (their own, slower lane): give it a few seconds
        deadline = time.monotonic() + 10
        while True:
            retained = MqttRecorder.retained_snapshot("127.0.0.1", port)
            configs = [topic for topic in retained if topic.startswith("homeassistant/")]
            states = [topic for topic in retained if topic.endswith("/state")]
            if len(configs) > 50 or time.monotonic() > deadline:
                break
            time.sleep(0.5)
        # 5 Points, 2 homes and the bridge's own status
        assert len(configs) > 50 and len(states) == 8, sorted(retained)
        assert retained["minut2mqtt/bridge/availability"] == b"online"
        with MqttRecorder("127.0.0.1", port, topics=["minut2mqtt/+/+/event"]) as events:
            events.wait_for(lambda message: True, timeout=25)
        process.send_signal(signal.SIGINT)
        assert process.wait(timeout=20) == 0
    finally:
        if process.poll() is None:
            process.kill()
    output = log.read_text()
    assert f"127.0.0.1:{port}" in output
    assert "Traceback" not in output
    speaks = "MQTT 3.1.1 only" if broker == "amqtt" or not find_mosquitto() else "MQTT 5 and 3.1.1"
    assert speaks in output


def test_demo_on_amqtt_refuses_an_mqtt5_client_in_one_line(tmp_path):
    import paho.mqtt.client as mqtt
    from paho.mqtt.enums import CallbackAPIVersion

    port = random_free_port()
    log = tmp_path / "demo.log"
    process = start_command(
        "demo", "--duration", "60", f"--mqtt.port={port}", "--broker=amqtt", env={}, log=log
    )
    refusal = "refused an MQTT 5 client from 127.0.0.1: the embedded broker speaks MQTT 3.1.1 only"
    try:
        deadline = time.monotonic() + 20
        while "demo is running" not in log.read_text() and time.monotonic() < deadline:
            assert process.poll() is None, log.read_text()
            time.sleep(0.2)
        for hang_up_at_once in (True, False):
            client = mqtt.Client(CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5)
            client.connect("127.0.0.1", port)
            if hang_up_at_once:  # amqtt raised OSError out of its handler: a traceback
                client.socket().close()
            else:
                client.loop_start()
                time.sleep(1)
                client.disconnect()
                client.loop_stop()
        deadline = time.monotonic() + 5
        while refusal not in log.read_text() and time.monotonic() < deadline:
            time.sleep(0.2)
        process.send_signal(signal.SIGINT)
        assert process.wait(timeout=20) == 0
    finally:
        if process.poll() is None:
            process.kill()
    output = log.read_text()
    assert "Traceback" not in output
    assert output.count(refusal) == 1  # later refusals from the same host are debug lines
    # the bridge itself speaks 3.1.1 to amqtt: states flowed
    assert "state " in output
    if find_mosquitto():  # --broker amqtt was a choice: say how to get MQTT 5
        assert "Mosquitto is installed here: drop --broker amqtt" in output
    else:
        assert "install Mosquitto" in output


@IN_BOTH_PROCESS_MODES
def test_run_with_the_webhook_port_taken_says_so(tmp_path, simulator, event_process):
    import socket

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        log = tmp_path / "run.log"
        process = start_command(
            "run",
            f"--minut.api_url={simulator.base_url}",
            f"--minut.client_id={CLIENT_ID}",
            f"--mqtt.port={random_free_port()}",  # never the user's broker on 1883
            "--webhook.host=127.0.0.1",
            f"--webhook.port={port}",
            f"--webhook.event_process={str(event_process).lower()}",
            f"--state-dir={tmp_path}",
            env={"MINUT2MQTT_MINUT__CLIENT_SECRET": CLIENT_SECRET},
            log=log,
        )
        assert process.wait(timeout=20) == 1
    output = log.read_text()
    assert f"127.0.0.1:{port}: cannot listen there" in output
    assert "Traceback" not in output


def run_check(*args: str) -> subprocess.CompletedProcess[str]:
    environment = {k: v for k, v in os.environ.items() if not k.startswith("MINUT2MQTT_")}
    return subprocess.run(
        [sys.executable, "-m", "minut2mqtt", "check", *args],
        capture_output=True,
        text=True,
        timeout=60,
        env=environment,
    )


def test_check_reports_each_part_and_exits_zero_when_all_is_well(broker, simulator):
    result = run_check(
        f"--minut.api_url={simulator.base_url}",
        f"--minut.client_id={CLIENT_ID}",
        f"--minut.client_secret={CLIENT_SECRET}",
        f"--mqtt.port={broker.port}",
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "configuration: valid" in result.stdout
    assert f"MQTT broker: ok: connected to localhost:{broker.port}" in result.stdout
    assert "Minut API: ok: " in result.stdout and "2 Points in 1 homes" in result.stdout


def test_check_names_what_failed(simulator):
    closed_port = random_free_port()
    result = run_check(
        f"--minut.api_url={simulator.base_url}",
        f"--minut.client_id={CLIENT_ID}",
        "--minut.client_secret=wrong",
        f"--mqtt.port={closed_port}",
    )
    assert result.returncode == 1
    assert f"MQTT broker: FAILED: cannot reach localhost:{closed_port}" in result.stdout
    assert "Minut API: FAILED: Minut refused the client credentials" in result.stdout
    assert "wrong" not in result.stdout.replace("--minut.client_secret=wrong", "")


def test_check_of_a_bad_configuration_exits_two():
    result = run_check("--mqtt.port=0")
    assert result.returncode == 2 and "mqtt.port" in result.stderr
