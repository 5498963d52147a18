"""Integration fixtures: a real broker, the Minut simulator, and the real daemon between them."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from brokers import MqttRecorder, TestBroker, make_test_broker, random_free_port

from minut2mqtt.daemon import Daemon
from minut2mqtt.settings import load_settings
from minut2mqtt.simulator import SimulatedAccount, SimulatorServer

IN_BOTH_PROCESS_MODES = pytest.mark.parametrize(
    "event_process", [False, True], ids=["one process", "event process"]
)
"""A webhook test run as one process and with `webhook.event_process` (its `event_process`)."""

CLIENT_ID = "test-client"
CLIENT_SECRET = "test-secret-value-9f8e7d"
WEBHOOK_SECRET = "test-path-secret-1a2b3c"


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[TestBroker]:
    test_broker = make_test_broker(tmp_path)
    yield test_broker
    test_broker.stop()


@pytest.fixture
def recorder(broker: TestBroker) -> Iterator[MqttRecorder]:
    """An independent subscriber to everything: what `mosquitto_sub -v -t '#'` shows."""
    with MqttRecorder(broker.host, broker.port, topics=["#"]) as mqtt_recorder:
        yield mqtt_recorder


@pytest.fixture
def account() -> SimulatedAccount:
    simulated = SimulatedAccount(client_id=CLIENT_ID, client_secret=CLIENT_SECRET)
    simulated.add_home(home_id="home1", name="Beach house", alarm_status="off")
    simulated.add_device(
        device_id="dev1",
        home_id="home1",
        description="Hallway",
        readings={"temperature": 21.437, "humidity": 45.2, "sound": 38.5},
    )
    simulated.add_device(
        device_id="dev2",
        home_id="home1",
        description="Kitchen",
        readings={"temperature": 23.1, "humidity": 51.0, "sound": 41.0},
    )
    return simulated


@pytest.fixture
def simulator(account: SimulatedAccount) -> Iterator[SimulatorServer]:
    with SimulatorServer(account, host="127.0.0.1", port=0) as server:
        yield server


def daemon_overrides(
    tmp_path: Path, broker: TestBroker, simulator: SimulatorServer
) -> dict[str, Any]:
    return {
        "minut.api_url": simulator.base_url,
        "minut.client_id": CLIENT_ID,
        "minut.client_secret": CLIENT_SECRET,
        "mqtt.host": broker.host,
        "mqtt.port": broker.port,
        "mqtt.client_id": f"minut2mqtt-test-{tmp_path.name}",
        # amqtt never answers an MQTT 5 CONNECT: the fallback would cost every test 10 s
        "mqtt.protocol": "3.1.1" if broker.kind == "amqtt" else "5",
        "webhook.host": "127.0.0.1",
        "webhook.port": 0,
        "webhook.secret": WEBHOOK_SECRET,
        "state_dir": tmp_path / "state",
        "log_level": "DEBUG",
    }


@pytest.fixture
def start_daemon(
    tmp_path: Path,
    broker: TestBroker,
    simulator: SimulatorServer,
    account: SimulatedAccount,
    monkeypatch: pytest.MonkeyPatch,
) -> Iterator[Callable[..., Daemon]]:
    """Start the real daemon against the broker and simulator; its webhook is registered."""
    for name in [name for name in __import__("os").environ if name.startswith("MINUT2MQTT_")]:
        monkeypatch.delenv(name)
    started: list[Daemon] = []

    def start(**overrides: Any) -> Daemon:
        settings = load_settings(
            None, {**daemon_overrides(tmp_path, broker, simulator), **overrides}
        )
        daemon = Daemon(settings)
        daemon.start()
        started.append(daemon)
        assert daemon.publisher.wait_connected(10), "daemon did not connect to the broker"
        account.register_webhook(webhook_url(daemon))
        return daemon

    yield start
    for daemon in started:
        daemon.stop()


def webhook_url(daemon: Daemon, secret: str = WEBHOOK_SECRET) -> str:
    return f"http://127.0.0.1:{daemon.webhook_port}/webhook/{secret}"


@pytest.fixture
def start_registering_daemon(
    tmp_path, broker, simulator, monkeypatch
) -> Iterator[Callable[..., Daemon]]:
    """Start the real daemon with webhook.public_url: it registers its own hook at Minut."""
    for name in [name for name in __import__("os").environ if name.startswith("MINUT2MQTT_")]:
        monkeypatch.delenv(name)
    port = random_free_port()
    started: list[Daemon] = []

    def start(**overrides: Any) -> Daemon:
        settings = load_settings(
            None,
            {
                **daemon_overrides(tmp_path, broker, simulator),
                "webhook.port": port,
                "webhook.public_url": f"http://127.0.0.1:{port}",
                **overrides,
            },
        )
        daemon = Daemon(settings)
        daemon.start()
        started.append(daemon)
        deadline = time.monotonic() + 15
        while daemon.status.snapshot().last_poll is None and time.monotonic() < deadline:
            time.sleep(0.1)
        assert daemon.status.snapshot().last_poll is not None, (
            daemon.status.snapshot().last_poll_error
        )
        return daemon

    yield start
    for daemon in started:
        daemon.stop()
