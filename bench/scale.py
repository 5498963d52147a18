"""A property manager's account at 500, 2,000 and 5,000 Points: what the bridge costs.

    python bench/scale.py [--points 500 2000 5000] [--discovery component device]
                          [--per-home 4] [--steady 30]

For each size and discovery mode: Mosquitto, the simulator with H homes x 4 Points, the bridge
as its own process (`minut2mqtt run`), and a subscriber on `#`. Prints:

- seconds from the bridge's start until the subscriber has every discovery config and state
  document, and how many messages that took;
- the latency of `alarm_heard` events delivered to the bridge's webhook at 100/s during that
  start-up burst, and again on the idle bridge (from the POST to the subscriber);
- CPU seconds per poll cycle and messages published per cycle once nothing changes;
- the bridge's peak resident memory; API requests per minute and 429s;
- after a restart with nothing changed: configs published again identically (redundant).

Needs Mosquitto (apt-get install mosquitto).
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import paho.mqtt.client as mqtt
import requests
from paho.mqtt.enums import CallbackAPIVersion

from minut2mqtt.embedded_broker import first_free_port
from minut2mqtt.mosquitto import MosquittoProcess, find_mosquitto
from minut2mqtt.simulator import SimulatedAccount, SimulatorServer

POLL_INTERVAL = 10
CLIENT_ID, CLIENT_SECRET = "bench", "bench-secret-1"
EVENT_RATE = 100.0


class Subscriber:
    """`#` on the broker: when each topic first arrived, payloads, event arrival times."""

    def __init__(self, port: int) -> None:
        self.lock = threading.Lock()
        self.first_seen: dict[str, float] = {}
        self.payloads: dict[str, bytes] = {}
        self.total = 0
        self.configs_republished = 0
        self.redundant_configs = 0
        self.client = mqtt.Client(CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv311)
        self.client.on_message = self._on_message
        self.client.connect("127.0.0.1", port)
        self.client.subscribe("#", qos=1)
        self.client.loop_start()

    def _on_message(self, client: mqtt.Client, userdata: object, message: mqtt.MQTTMessage) -> None:
        now = time.monotonic()
        topic, payload = message.topic, bytes(message.payload)
        with self.lock:
            self.total += 1
            if topic.endswith("/event"):
                return
            if topic.endswith("/config") and not message.retain:
                self.configs_republished += 1
                if self.payloads.get(topic) == payload:
                    self.redundant_configs += 1
            self.first_seen.setdefault(topic, now)
            self.payloads[topic] = payload

    def count(self, suffix: str, since: float = 0.0) -> int:
        with self.lock:
            return sum(1 for t, at in self.first_seen.items() if t.endswith(suffix) and at >= since)

    def reset_counters(self) -> None:
        with self.lock:
            self.total = self.configs_republished = self.redundant_configs = 0


class Bridge:
    def __init__(self, work_dir: Path, api_url: str, broker_port: int, discovery: str) -> None:
        self.config = work_dir / "bridge.yaml"
        self.log = work_dir / "bridge.log"
        self.webhook_port = first_free_port("127.0.0.1", 28000)
        self.config.write_text(
            f"minut:\n  api_url: {api_url}\n  client_id: {CLIENT_ID}\n"
            f"  poll_interval: {POLL_INTERVAL}\n"
            f"mqtt:\n  host: 127.0.0.1\n  port: {broker_port}\n  discovery: {discovery}\n"
            f"webhook:\n  host: 127.0.0.1\n  port: {self.webhook_port}\n  secret: benchsecret\n"
            f"state_dir: {work_dir / 'state'}\nlog_level: INFO\n"
        )
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        environment = {k: v for k, v in os.environ.items() if not k.startswith("MINUT2MQTT_")}
        environment["MINUT2MQTT_MINUT__CLIENT_SECRET"] = CLIENT_SECRET
        with self.log.open("ab") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "minut2mqtt", "run", "--config", str(self.config)],
                stdout=log,
                stderr=subprocess.STDOUT,
                env=environment,
            )

    def stop(self) -> float:
        """SIGTERM; seconds until it exited."""
        assert self.process is not None
        started = time.monotonic()
        self.process.send_signal(signal.SIGTERM)
        self.process.wait(timeout=60)
        return time.monotonic() - started

    def cpu_seconds(self) -> float:
        assert self.process is not None
        fields = Path(f"/proc/{self.process.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def peak_rss_mb(self) -> float:
        assert self.process is not None
        for line in Path(f"/proc/{self.process.pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
        return 0.0


def account_of(points: int, per_home: int) -> SimulatedAccount:
    account = SimulatedAccount(client_id=CLIENT_ID, client_secret=CLIENT_SECRET)
    for home in range((points + per_home - 1) // per_home):
        account.add_home(f"home{home:05d}", f"Apartment {home + 1}")
    for point in range(points):
        account.add_device(
            f"point{point:05d}",
            f"home{point // per_home:05d}",
            f"Room {point % per_home + 1} of {point // per_home + 1}",
            readings={"temperature": 21.0, "humidity": 45.0, "sound": 40.0},
        )
    return account


def deliver_events(
    webhook_url: str, broker_port: int, points: int, per_home: int, count: int
) -> list[float]:
    """`count` alarm_heard deliveries POSTed to the bridge at EVENT_RATE per second; the
    milliseconds from each POST to its arrival at a subscriber of the event topics.

    Runs in a process of its own: the simulator and the `#` subscriber share this one's GIL,
    and would delay the timestamps by as long as they hold it."""
    arrived: dict[str, float] = {}
    lock = threading.Lock()

    def on_message(client: mqtt.Client, userdata: object, message: mqtt.MQTTMessage) -> None:
        now = time.monotonic()
        event_id = json.loads(message.payload).get("id")
        with lock:
            arrived.setdefault(event_id, now)

    listener = mqtt.Client(CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv311)
    listener.on_message = on_message
    listener.connect("127.0.0.1", broker_port)
    listener.subscribe("minut2mqtt/device/+/event", qos=2)
    listener.loop_start()
    time.sleep(0.5)
    session = requests.Session()
    sent: dict[str, float] = {}
    started = time.monotonic()
    for number in range(count):
        point = number * 7919 % points
        event_id = f"bench-{started:.3f}-{number}"
        delivery = {
            "event": {
                "id": event_id,
                "type": "alarm_heard",
                "home_id": f"home{point // per_home:05d}",
                "device_id": f"point{point:05d}",
            }
        }
        sent[event_id] = time.monotonic()
        session.post(webhook_url, json=delivery, timeout=10)
        time.sleep(max(0.0, started + (number + 1) / EVENT_RATE - time.monotonic()))
    time.sleep(2)
    listener.loop_stop()
    with lock:
        delays = [(arrived[i] - sent[i]) * 1000 for i in sent if i in arrived]
    return delays + [float("nan")] * (count - len(delays))


def latencies(measured: list[float]) -> str:
    delays = sorted(d for d in measured if d == d)  # NaN: never arrived
    if not delays:
        return "none arrived"
    p99 = delays[min(len(delays) - 1, int(len(delays) * 0.99))]
    return (
        f"{len(delays)}/{len(measured)} arrived, p50 {statistics.median(delays):.1f} ms, "
        f"p99 {p99:.1f} ms, max {delays[-1]:.1f} ms"
    )


def wait_until(condition: object, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():  # type: ignore[operator]
            return True
        time.sleep(0.05)
    return False


def run(points: int, per_home: int, discovery: str, steady: float) -> None:
    homes = (points + per_home - 1) // per_home
    per_entity = discovery == "component"
    expected_configs = points * 18 + homes * 3 + 6 if per_entity else points + homes + 1
    expected_states = points + homes
    account = account_of(points, per_home)
    with tempfile.TemporaryDirectory() as work, SimulatorServer(account, port=0) as simulator:
        work_dir = Path(work)
        broker_port = first_free_port("127.0.0.1", 19000)
        with MosquittoProcess(work_dir / "mosquitto", "127.0.0.1", broker_port):
            subscriber = Subscriber(broker_port)
            bridge = Bridge(work_dir, simulator.base_url, broker_port, discovery)
            webhook_url = f"http://127.0.0.1:{bridge.webhook_port}/webhook/benchsecret"
            started = time.monotonic()
            bridge.start()
            time.sleep(3)  # the start-up burst is under way
            probes = ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn"))
            probe_args = (webhook_url, broker_port, points, per_home, 300)
            burst = probes.submit(deliver_events, *probe_args)

            def converged() -> bool:
                return (
                    subscriber.count("/config") >= expected_configs
                    and subscriber.count("/state") >= expected_states
                )

            ok = wait_until(converged, 600)
            converge = time.monotonic() - started
            burst_delays = burst.result()
            messages = subscriber.total
            time.sleep(POLL_INTERVAL + 2)  # a poll undoes the alarms the deliveries set
            cpu_before = bridge.cpu_seconds()
            subscriber.reset_counters()
            time.sleep(steady)
            cycles = steady / POLL_INTERVAL
            cpu_per_cycle = (bridge.cpu_seconds() - cpu_before) / cycles
            per_cycle = subscriber.total / cycles
            idle_delays = probes.submit(deliver_events, *probe_args).result()
            probes.shutdown()
            rss = bridge.peak_rss_mb()
            minutes = (time.monotonic() - started) / 60
            statuses = Counter(status for _, _, status in account.requests)
            requests_per_minute = sum(statuses.values()) / minutes
            stop_seconds = bridge.stop()
            subscriber.reset_counters()
            restart_at = time.monotonic()
            bridge.start()
            wait_until(lambda: subscriber.count("/state", since=restart_at) >= expected_states, 300)
            time.sleep(5)
            restart_configs = subscriber.configs_republished
            redundant = subscriber.redundant_configs
            bridge.stop()
            subscriber.client.loop_stop()
    print(
        f"\n{points} Points in {homes} homes, discovery {discovery}\n"
        f"  converged:          {'yes' if ok else 'NO'} in {converge:.1f} s, "
        f"{messages} messages ({expected_configs} configs, {expected_states} states)\n"
        f"  events in burst:    {latencies(burst_delays)}\n"
        f"  events when idle:   {latencies(idle_delays)}\n"
        f"  steady poll cycle:  {cpu_per_cycle:.3f} CPU s, {per_cycle:.1f} messages\n"
        f"  peak RSS:           {rss:.0f} MB\n"
        f"  API:                {requests_per_minute:.0f} requests/min, "
        f"{statuses.get(429, 0)} answered 429\n"
        f"  SIGTERM:            {stop_seconds:.1f} s to exit\n"
        f"  restart, no change: {restart_configs} configs published, {redundant} redundant",
        flush=True,
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--points", type=int, nargs="+", default=[500, 2000, 5000])
    parser.add_argument("--discovery", nargs="+", default=["component", "device"])
    parser.add_argument("--per-home", type=int, default=4)
    parser.add_argument("--steady", type=float, default=30.0, help="seconds measured idle")
    args = parser.parse_args()
    if find_mosquitto() is None:
        print("bench/scale.py needs Mosquitto (apt-get install mosquitto)", file=sys.stderr)
        return 2
    for points in args.points:
        for discovery in args.discovery:
            run(points, args.per_home, discovery, args.steady)
    return 0


if __name__ == "__main__":
    sys.exit(main())
