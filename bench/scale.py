"""A property manager's account at 500, 2,000 and 5,000 Points: what the bridge costs.

    python bench/scale.py [--points 500 2000 5000] [--discovery component device]
                          [--per-home 4] [--steady 30] [--events 300] [--no-restart]
                          [--json figures.jsonl] [-- --mqtt.messages_per_second 1000 ...]

For each size and discovery mode: Mosquitto (configured as config/mosquitto.conf advises), the
simulator with H homes x 4 Points, the bridge as its own process (`minut2mqtt run`, with the
settings given after `--`), and a subscriber on `#`. Prints, with the machine's load average
before and after (other work on the machine slows every figure: rerun when it was high):

- seconds from the bridge's start until the subscriber has every state document and the
  bridge nothing left to send (so every discovery config arrived), the messages that took, and
  the bridge's CPU seconds meanwhile;
- the latency of `alarm_heard` events delivered to the bridge's webhook at 100/s during that
  start-up burst, and again on the idle bridge (from the POST to a subscriber of the event
  topics, in a process of its own), with the bridge's CPU time per event on the idle bridge
  (the polls meanwhile taken out);
- CPU seconds per poll cycle and messages published per cycle once nothing changes;
- the bridge's peak resident memory; API requests per minute and 429s; seconds to exit on
  SIGTERM;
- after a restart with nothing changed: configs published again, and of those identical to
  what the broker held (redundant), and 429s meanwhile (the restart pulls missed events).

Needs Mosquitto (apt-get install mosquitto).
"""

from __future__ import annotations

import argparse
import atexit
import contextlib
import gc
import http.client
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
import urllib.parse
from collections import Counter
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import paho.mqtt.client as mqtt
import requests
from paho.mqtt.enums import CallbackAPIVersion

from minut2mqtt.embedded_broker import first_free_port
from minut2mqtt.mosquitto import MosquittoProcess, find_mosquitto
from minut2mqtt.mqtt.protocol import send_small_packets_at_once
from minut2mqtt.simulator import SimulatedAccount, SimulatorServer

POLL_INTERVAL = 10
MOMENTARY_SECONDS = 30
"""The bridge's default mqtt.momentary_seconds: how long an alarm heard stays on."""
CLIENT_ID, CLIENT_SECRET = "bench", "bench-secret-1"
EVENT_RATE = 100.0
MOSQUITTO_CONFIG = ["max_queued_messages 200000"]
"""As config/mosquitto.conf: the default 1000 drops most of a large retained replay
(MosquittoProcess turns Nagle's algorithm off itself, as config/mosquitto.conf does)."""


class Subscriber:
    """`#` on the broker: when each topic first arrived, payloads, event arrival times."""

    def __init__(self, port: int) -> None:
        self.lock = threading.Lock()
        self.first_seen: dict[str, float] = {}
        self.last_seen: dict[str, float] = {}
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
            self.last_seen[topic] = now
            self.payloads[topic] = payload

    def count(self, suffix: str) -> int:
        """Topics ending in `suffix` that carried a message."""
        with self.lock:
            return sum(1 for t in self.first_seen if t.endswith(suffix))

    def count_since(self, suffix: str, since: float) -> int:
        """Topics ending in `suffix` that carried a message after `since`."""
        with self.lock:
            return sum(1 for t, at in self.last_seen.items() if t.endswith(suffix) and at >= since)

    def last_arrival(self) -> float:
        """When the last topic carried its first message."""
        with self.lock:
            return max(self.first_seen.values(), default=0.0)

    def reset_counters(self) -> None:
        with self.lock:
            self.total = self.configs_republished = self.redundant_configs = 0


class Bridge:
    def __init__(
        self, work_dir: Path, api_url: str, broker_port: int, discovery: str, extra: list[str]
    ) -> None:
        self.extra = extra
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
        # A bridge left running would connect to the next run's broker (same port, same client
        # id), and the two would take each other's session every second, spoiling that run.
        atexit.register(self.kill)

    def start(self) -> None:
        environment = {k: v for k, v in os.environ.items() if not k.startswith("MINUT2MQTT_")}
        environment["MINUT2MQTT_MINUT__CLIENT_SECRET"] = CLIENT_SECRET
        with self.log.open("ab") as log:
            self.process = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "minut2mqtt",
                    "run",
                    "--config",
                    str(self.config),
                    *self.extra,
                ],
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

    def kill(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait()

    def processes(self) -> list[int]:
        """The bridge's process and its children (the event process, with
        `webhook.event_process`)."""
        assert self.process is not None
        main = self.process.pid
        children = []
        for entry in Path("/proc").iterdir():
            if entry.name.isdigit():
                try:
                    stat = (entry / "stat").read_text()
                except OSError:
                    continue
                if int(stat.rsplit(")", 1)[1].split()[1]) == main:
                    children.append(int(entry.name))
        return [main, *children]

    def cpu_seconds(self) -> float:
        """Of the bridge's process and its children."""
        total = 0
        for pid in self.processes():
            with contextlib.suppress(OSError):
                fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
                total += int(fields[11]) + int(fields[12])
        return total / os.sysconf("SC_CLK_TCK")

    def peak_rss_mb(self) -> float:
        """The main process's peak resident memory."""
        assert self.process is not None
        return _status_mb(self.process.pid, "VmHWM")

    def children_memory_mb(self) -> tuple[float, float, float]:
        """The children's peak resident memory, what of it is their own (not shared with the
        main process: a forked child shares the code loaded before), and the whole family's
        proportional share (PSS: each shared page counted once, split between its users)."""
        peak = own = 0.0
        pss = 0.0
        for index, pid in enumerate(self.processes()):
            rollup = _rollup_kb(pid)
            pss += rollup.get("Pss", 0) / 1024
            if index:
                peak += _status_mb(pid, "VmHWM")
                own += (rollup.get("Private_Clean", 0) + rollup.get("Private_Dirty", 0)) / 1024
        return peak, own, pss


def _status_mb(pid: int, key: str) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(f"{key}:"):
            return int(line.split()[1]) / 1024
    return 0.0


def _rollup_kb(pid: int) -> dict[str, int]:
    values = {}
    with contextlib.suppress(OSError):
        for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines()[1:]:
            name, value, *_ = line.split()
            values[name.rstrip(":")] = int(value)
    return values


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
    gc.disable()  # a full pass here (25 ms at times) would be measured as the bridge's
    arrived: dict[str, float] = {}
    lock = threading.Lock()

    def on_message(client: mqtt.Client, userdata: object, message: mqtt.MQTTMessage) -> None:
        now = time.monotonic()
        event_id = json.loads(message.payload).get("id")
        with lock:
            arrived.setdefault(event_id, now)

    listener = mqtt.Client(CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv311)
    listener.on_message = on_message
    # A QoS 2 message reaches on_message at PUBREL, after this client's own PUBREC: with
    # Nagle's algorithm that small packet waits for the broker's delayed ACK (10 ms or more),
    # which would measure this subscriber, not the bridge
    listener.on_socket_open = send_small_packets_at_once
    listener.connect("127.0.0.1", broker_port)
    listener.subscribe("minut2mqtt/device/+/event", qos=2)
    listener.loop_start()
    time.sleep(0.5)
    # http.client on one kept-alive connection: requests would add a millisecond of its own
    # to every measurement
    address = urllib.parse.urlsplit(webhook_url)
    connection = http.client.HTTPConnection(address.hostname or "", address.port, timeout=10)
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
        body = json.dumps(delivery)
        sent[event_id] = time.monotonic()
        connection.request("POST", address.path, body, {"Content-Type": "application/json"})
        connection.getresponse().read()
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


def wait_until(condition: object, timeout: float, every: float = 0.05) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():  # type: ignore[operator]
            return True
        time.sleep(every)
    return False


def metric(port: int, name: str) -> float | None:
    """One value of the bridge's /metrics (None while it does not answer)."""
    try:
        text = requests.get(f"http://127.0.0.1:{port}/metrics", timeout=2).text
    except requests.RequestException:
        return None
    for line in text.splitlines():
        if line.startswith(f"minut2mqtt_{name} "):
            return float(line.split()[1])
    return None


def polls_done(port: int) -> int:
    """Polls the bridge made so far, whatever their outcome (its /metrics)."""
    text = requests.get(f"http://127.0.0.1:{port}/metrics", timeout=2).text
    return int(
        sum(
            float(line.split()[-1])
            for line in text.splitlines()
            if line.startswith("minut2mqtt_polls_total{")
        )
    )


def stolen_seconds() -> float:
    """Processor time the hypervisor gave other machines (all cores), since boot."""
    fields = Path("/proc/stat").read_text().splitlines()[0].split()
    return int(fields[8]) / os.sysconf("SC_CLK_TCK")


def load() -> str:
    one, five, fifteen = os.getloadavg()
    return f"load {one:.2f} {five:.2f} {fifteen:.2f}"


def run(
    points: int, per_home: int, discovery: str, options: argparse.Namespace
) -> dict[str, object]:
    homes = (points + per_home - 1) // per_home
    expected_states = points + homes
    account = account_of(points, per_home)
    load_before, stolen_before = load(), stolen_seconds()
    result: dict[str, object] = {"points": points, "homes": homes, "discovery": discovery}
    with tempfile.TemporaryDirectory() as work, SimulatorServer(account, port=0) as simulator:
        work_dir = Path(work)
        broker_port = first_free_port("127.0.0.1", 19000)
        broker = MosquittoProcess(
            work_dir / "mosquitto", "127.0.0.1", broker_port, extra_config=MOSQUITTO_CONFIG
        )
        with broker:
            subscriber = Subscriber(broker_port)
            bridge = Bridge(work_dir, simulator.base_url, broker_port, discovery, options.bridge)
            webhook_url = f"http://127.0.0.1:{bridge.webhook_port}/webhook/benchsecret"
            started = time.monotonic()
            bridge.start()
            # Events that come before the first poll wait for it (so that they find their
            # Points): start them once the burst is under way, its first configs arrived.
            wait_until(lambda: subscriber.count("/config") >= 100, 300)
            probes = ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn"))
            probe_args = (webhook_url, broker_port, points, per_home, options.events)
            burst = probes.submit(deliver_events, *probe_args)

            def converged() -> bool:
                # every state at the subscriber and nothing left to send: every config is there
                return (
                    subscriber.count("/state") >= expected_states
                    and metric(bridge.webhook_port, "publish_queue") == 0
                )

            ok = wait_until(converged, 900, every=0.5)
            result["converged_s"] = round(subscriber.last_arrival() - started, 1) if ok else None
            result["converge_cpu_s"] = round(bridge.cpu_seconds(), 1)
            result["messages"] = subscriber.total
            result["configs"] = subscriber.count("/config")
            result["states"] = subscriber.count("/state")
            result["burst_events"] = latencies(burst.result())
            # the alarms the deliveries set are momentary: let them fall back, and a poll pass
            time.sleep(MOMENTARY_SECONDS + POLL_INTERVAL)
            cpu_before, polls_before = bridge.cpu_seconds(), polls_done(bridge.webhook_port)
            subscriber.reset_counters()
            time.sleep(options.steady)
            # counted, not assumed: a poll that needs more requests than the budget allows every
            # POLL_INTERVAL comes less often
            cycles = max(1, polls_done(bridge.webhook_port) - polls_before)
            result["poll_cpu_s"] = round((bridge.cpu_seconds() - cpu_before) / cycles, 3)
            result["poll_messages"] = round(subscriber.total / cycles, 1)
            result["polls"] = cycles
            cpu_before, polls_before = bridge.cpu_seconds(), polls_done(bridge.webhook_port)
            result["idle_events"] = latencies(probes.submit(deliver_events, *probe_args).result())
            polls = polls_done(bridge.webhook_port) - polls_before
            event_cpu = bridge.cpu_seconds() - cpu_before - polls * result["poll_cpu_s"]
            result["event_cpu_ms"] = round(event_cpu / options.events * 1000, 2)
            probes.shutdown()
            result["peak_rss_mb"] = round(bridge.peak_rss_mb())
            child_peak, child_own, family_pss = bridge.children_memory_mb()
            result["child_peak_rss_mb"] = round(child_peak)
            result["child_private_mb"] = round(child_own)
            result["family_pss_mb"] = round(family_pss)
            minutes = (time.monotonic() - started) / 60
            statuses = Counter(status for _, _, status in account.requests)
            result["requests_per_min"] = round(sum(statuses.values()) / minutes)
            result["answered_429"] = statuses.get(429, 0)
            result["sigterm_s"] = round(bridge.stop(), 1)
            if options.restart:
                subscriber.reset_counters()
                restart_at = time.monotonic()
                bridge.start()
                wait_until(
                    lambda: subscriber.count_since("/state", restart_at) >= expected_states, 300
                )
                time.sleep(5)
                result["restart_configs"] = subscriber.configs_republished
                result["restart_redundant"] = subscriber.redundant_configs
                result["restart_429"] = Counter(status for _, _, status in account.requests).get(
                    429, 0
                ) - statuses.get(429, 0)
                bridge.stop()
            subscriber.client.loop_stop()
    result["load"] = f"{load_before} -> {load()}"
    result["stolen_s"] = round(stolen_seconds() - stolen_before, 1)
    restart = (
        f"{result['restart_configs']} configs published, {result['restart_redundant']} "
        f"redundant, {result['restart_429']} answered 429"
        if options.restart
        else "not measured"
    )
    print(
        f"\n{points} Points in {homes} homes, discovery {discovery} ({result['load']}; "
        f"{result['stolen_s']} s stolen by the hypervisor)\n"
        f"  converged:          {'yes' if ok else 'NO'} in {result['converged_s']} s, "
        f"{result['messages']} messages ({result['configs']} configs, {result['states']} "
        f"states), {result['converge_cpu_s']} CPU s\n"
        f"  events in burst:    {result['burst_events']}\n"
        f"  events when idle:   {result['idle_events']}, {result['event_cpu_ms']} CPU ms each\n"
        f"  steady poll cycle:  {result['poll_cpu_s']} CPU s, {result['poll_messages']} messages"
        f" ({result['polls']} polls measured)\n"
        f"  peak RSS:           {result['peak_rss_mb']} MB"
        + (
            f"; event process {result['child_peak_rss_mb']} MB, of it its own "
            f"{result['child_private_mb']} MB; PSS of both {result['family_pss_mb']} MB\n"
            if result["child_peak_rss_mb"]
            else "\n"
        )
        + f"  API:                {result['requests_per_min']} requests/min, "
        f"{result['answered_429']} answered 429\n"
        f"  SIGTERM:            {result['sigterm_s']} s to exit\n"
        f"  restart, no change: {restart}",
        flush=True,
    )
    return result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--points", type=int, nargs="+", default=[500, 2000, 5000])
    parser.add_argument("--discovery", nargs="+", default=["component", "device"])
    parser.add_argument("--per-home", type=int, default=4)
    parser.add_argument("--steady", type=float, default=30.0, help="seconds measured idle")
    parser.add_argument("--events", type=int, default=300, help="deliveries per measurement")
    parser.add_argument("--no-restart", dest="restart", action="store_false")
    parser.add_argument("--json", type=Path, help="append each size's figures here (JSON lines)")
    parser.add_argument(
        "bridge",
        nargs="*",
        help="after --: the bridge's own settings (--mqtt.messages_per_second 1000)",
    )
    args = parser.parse_args()
    # killed (by `timeout`, say): unwind, so that the broker and the bridge stop too
    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(128 + signum))
    if find_mosquitto() is None:
        print("bench/scale.py needs Mosquitto (apt-get install mosquitto)", file=sys.stderr)
        return 2
    for points in args.points:
        for discovery in args.discovery:
            result = run(points, args.per_home, discovery, args)
            if args.json is not None:
                with args.json.open("a") as out:
                    out.write(json.dumps(result) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
