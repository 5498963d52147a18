"""A property manager's account: 500 Points in 50 homes. Prints what a poll costs.

    python bench/poll_500.py [--devices 500] [--homes 50]

Runs the real daemon against the simulator and a broker (Mosquitto when installed, else the
embedded amqtt broker) and reports: API requests per poll, time from poll start until a subscriber
has every state document, messages published at start-up, time of a full re-publish (what a broker
restart or Home Assistant's birth costs), and the process's peak memory.
"""

from __future__ import annotations

import argparse
import resource
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from minut2mqtt.daemon import Daemon
from minut2mqtt.embedded_broker import EmbeddedBroker, first_free_port
from minut2mqtt.settings import load_settings
from minut2mqtt.simulator import SimulatedAccount, SimulatorServer


class Counter:
    """Counts messages per topic kind seen by an independent subscriber."""

    def __init__(self, port: int):
        self.states: set[str] = set()
        self.total = 0
        self.lock = threading.Lock()
        self.client = mqtt.Client(CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv311)
        self.client.on_message = self.on_message
        self.client.connect("127.0.0.1", port)
        self.client.subscribe("#", qos=1)
        self.client.loop_start()

    def on_message(self, client: mqtt.Client, userdata: object, message: mqtt.MQTTMessage) -> None:
        with self.lock:
            self.total += 1
            if message.topic.endswith("/state") and "/device/" in message.topic:
                self.states.add(message.topic)

    def wait_states(self, count: int, timeout: float = 120) -> float:
        started = time.monotonic()
        while time.monotonic() - started < timeout:
            with self.lock:
                if len(self.states) >= count:
                    return time.monotonic() - started
            time.sleep(0.01)
        raise TimeoutError(f"only {len(self.states)} of {count} states arrived")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--devices", type=int, default=500)
    parser.add_argument("--homes", type=int, default=50)
    args = parser.parse_args()

    account = SimulatedAccount(client_id="bench", client_secret="bench-secret")
    for home in range(args.homes):
        account.add_home(home_id=f"home{home}", name=f"Apartment {home}")
    for number in range(args.devices):
        account.add_device(
            device_id=f"point{number:04d}",
            home_id=f"home{number % args.homes}",
            description=f"Room {number}",
            readings={"temperature": 21.0, "humidity": 45.0, "sound": 40.0},
        )

    port = first_free_port("127.0.0.1", 18830)
    mosquitto = shutil.which("mosquitto") or "/usr/sbin/mosquitto"
    broker_process = None
    embedded = None
    if Path(mosquitto).exists():
        broker_process = subprocess.Popen(
            [mosquitto, "-p", str(port)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        time.sleep(0.5)
        broker_kind = "mosquitto"
    else:
        embedded = EmbeddedBroker("127.0.0.1", port)
        embedded.start()
        broker_kind = "amqtt"

    with (
        SimulatorServer(account, port=0) as simulator,
        tempfile.TemporaryDirectory() as state_dir,
    ):
        counter = Counter(port)
        settings = load_settings(
            None,
            {
                "minut.api_url": simulator.base_url,
                "minut.client_id": "bench",
                "minut.client_secret": "bench-secret",
                "mqtt.port": port,
                "mqtt.host": "127.0.0.1",
                "webhook.host": "127.0.0.1",
                "webhook.port": 0,
                "state_dir": state_dir,
                "log_level": "WARNING",
            },
        )
        daemon = Daemon(settings)
        started = time.monotonic()
        daemon.start()
        first = counter.wait_states(args.devices)
        startup_messages = counter.total
        time.sleep(1)

        account.clear_requests()
        for number in range(args.devices):
            account.set_reading(f"point{number:04d}", "temperature", 22.5)
        counter.states.clear()
        daemon.poller.poll_once()
        steady = counter.wait_states(args.devices)
        requests = [path for _, path, _ in account.requests]

        counter.states.clear()
        republish_started = time.monotonic()
        daemon.writer.request_republish()
        counter.wait_states(args.devices)
        republish = time.monotonic() - republish_started
        daemon.stop()
        peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024

    if broker_process is not None:
        broker_process.terminate()
    if embedded is not None:
        embedded.stop()

    print(f"broker: {broker_kind}; {args.devices} Points in {args.homes} homes")
    print(
        f"start-up until every state arrived:      {first:6.2f} s "
        f"({startup_messages} messages, {time.monotonic() - started:.1f} s total run)"
    )
    print(
        f"API requests per poll:                   {len(requests)} ({', '.join(sorted(requests))})"
    )
    print(
        f"poll with {args.devices} changed readings → all states at the subscriber: {steady:.2f} s"
    )
    print(f"full re-publish (broker restart / HA birth): {republish:6.2f} s")
    print(f"peak memory of this process (bridge + simulator + subscriber): {peak_mb:.0f} MB")


if __name__ == "__main__":
    sys.exit(main())
