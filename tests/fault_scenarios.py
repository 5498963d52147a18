"""Fault injection: the real bridge as a process, the simulator, Mosquitto, and faults between.

Each scenario streams Minut events from the simulator while something breaks, then counts the
events the simulator created against those an independent MQTT subscriber received: none may be
missing, none doubled. Used by tests/test_faults.py and bench/faults.py (which prints the counts).

The pieces:
- `FaultyLink`: a TCP proxy in front of the Minut API or the bridge's webhook listener that can
  pass traffic, hang (the client times out) or refuse (the connection is reset).
- `BridgeProcess`: `python -m minut2mqtt run`, killed with SIGKILL when a scenario says so.
- `EventCounter`: a subscriber with a persistent session on the event topics.
- `EventStream`: injects events into the simulated account at a steady rate.
"""

from __future__ import annotations

import json
import os
import random
import selectors
import signal
import socket
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import paho.mqtt.client as mqtt
from brokers import MosquittoBroker, find_mosquitto, random_free_port
from paho.mqtt.enums import CallbackAPIVersion

from minut2mqtt.simulator import SimulatedAccount, SimulatorServer

CLIENT_ID = "fault-client"
CLIENT_SECRET = "fault-secret-3c4d5e"
EVENT_TYPES = ("pir_motion", "short_button_press", "glassbreak", "alarm_heard", "tamper_removed")
HOME_EVENT_TYPES = ("disturbance_first_notice", "disturbance_ended")

LinkMode = Literal["pass", "hang", "refuse"]


class FaultyLink:
    """A TCP proxy to `target_port` on localhost whose behaviour a scenario switches at will."""

    def __init__(self, target_port: int):
        self.target_port = target_port
        self.mode: LinkMode = "pass"
        self._server = socket.create_server(("127.0.0.1", 0))
        self.port: int = self._server.getsockname()[1]
        self._open: list[socket.socket] = []
        self.hung = 0
        """Connections accepted in `hang` mode (each left its client waiting)."""
        self._lock = threading.Lock()
        self._closed = False
        threading.Thread(target=self._accept, name="faulty-link", daemon=True).start()

    def set_mode(self, mode: LinkMode) -> None:
        """Switch; open connections are cut, as a network fault would cut them."""
        self.mode = mode
        if mode != "pass":
            with self._lock:
                for connection in self._open:
                    connection.close()
                self._open.clear()

    def close(self) -> None:
        self._closed = True
        self._server.close()
        self.set_mode("refuse")

    def _accept(self) -> None:
        while not self._closed:
            try:
                client, _ = self._server.accept()
            except OSError:
                return
            if self.mode == "refuse":
                client.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\0\0\0\0\0\0\0")
                client.close()
                continue
            with self._lock:
                self._open.append(client)
            if self.mode == "hang":
                self.hung += 1
                continue  # accepted, never answered: the client's timeout must end it
            threading.Thread(target=self._pump, args=(client,), daemon=True).start()

    def _pump(self, client: socket.socket) -> None:
        try:
            upstream = socket.create_connection(("127.0.0.1", self.target_port), timeout=5)
        except OSError:
            client.close()
            return
        with self._lock:
            self._open.append(upstream)
        selector = selectors.DefaultSelector()
        selector.register(client, selectors.EVENT_READ, upstream)
        selector.register(upstream, selectors.EVENT_READ, client)
        try:
            while True:
                for key, _ in selector.select(timeout=1):
                    data = key.fileobj.recv(65536)  # type: ignore[union-attr]
                    if not data:
                        return
                    key.data.sendall(data)
        except OSError:
            return
        finally:
            selector.close()
            client.close()
            upstream.close()


class EventCounter:
    """Counts (topic, event id) as a subscriber with a persistent session receives them."""

    def __init__(self, host: str, port: int, base_topic: str = "minut2mqtt"):
        self.received: Counter[tuple[str, str]] = Counter()
        self._lock = threading.Lock()
        self._subscribed = threading.Event()
        self._client = mqtt.Client(
            CallbackAPIVersion.VERSION2,
            client_id=f"fault-counter-{random.randrange(10**9)}",
            protocol=mqtt.MQTTv311,
            clean_session=False,  # the broker queues what arrives while we reconnect
        )
        self._topics = [(f"{base_topic}/device/+/event", 2), (f"{base_topic}/home/+/event", 2)]
        self._client.on_connect = self._on_connect
        self._client.on_subscribe = lambda *args: self._subscribed.set()
        self._client.on_message = self._on_message
        self._client.reconnect_delay_set(min_delay=0.1, max_delay=0.5)  # type: ignore[arg-type]
        self._client.connect_async(host, port, keepalive=10)
        self._client.loop_start()
        if not self._subscribed.wait(10):
            raise RuntimeError("the event counter could not subscribe")

    def _on_connect(self, client: mqtt.Client, *args: object) -> None:
        client.subscribe(self._topics)

    def _on_message(self, client: mqtt.Client, userdata: object, message: mqtt.MQTTMessage) -> None:
        try:
            event_id = str(json.loads(message.payload)["id"])
        except (ValueError, KeyError, TypeError):
            event_id = f"unreadable:{message.payload[:40]!r}"
        with self._lock:
            self.received[(message.topic, event_id)] += 1

    def ids(self) -> set[str]:
        with self._lock:
            return {event_id for _, event_id in self.received}

    def doubled(self) -> int:
        with self._lock:
            return sum(count - 1 for count in self.received.values())

    def stop(self) -> None:
        self._client.disconnect()
        self._client.loop_stop()


class EventStream:
    """Creates events in the simulated account at `per_second`, on random Points and homes."""

    def __init__(self, account: SimulatedAccount, per_second: float, seed: int = 7):
        self._account = account
        self._interval = 1.0 / per_second
        self._random = random.Random(seed)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="event-stream", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=10)

    def _run(self) -> None:
        devices = self._account.list_devices()
        while not self._stop.wait(self._interval):
            device = self._random.choice(devices)
            if self._random.random() < 0.2:
                self._account.inject_event(
                    self._random.choice(HOME_EVENT_TYPES), home_id=device["home"]
                )
            else:
                self._account.inject_event(
                    self._random.choice(EVENT_TYPES),
                    home_id=device["home"],
                    device_id=device["device_id"],
                )


class BridgeProcess:
    """The bridge as users run it, `python -m minut2mqtt run`, with its own state directory."""

    def __init__(
        self,
        work_dir: Path,
        api_port: int,
        broker_port: int,
        public_port: int,
        *,
        event_process: bool = False,
    ):
        self.webhook_port = random_free_port()
        self.log_path = work_dir / "bridge.log"
        self.config_path = work_dir / "bridge.yaml"
        self.config_path.write_text(
            f"minut:\n  api_url: http://127.0.0.1:{api_port}/v8\n  client_id: {CLIENT_ID}\n"
            f"  poll_interval: 10\n  request_timeout: 2\n  pull_events_after_silence: 3\n"
            f"mqtt:\n  host: 127.0.0.1\n  port: {broker_port}\n  keepalive: 5\n"
            f"webhook:\n  host: 127.0.0.1\n  port: {self.webhook_port}\n"
            f"  public_url: http://127.0.0.1:{public_port}\n"
            f"  event_process: {str(event_process).lower()}\n"
            f"state_dir: {work_dir / 'state'}\nlog_level: DEBUG\n"
        )
        self._process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        environment = {k: v for k, v in os.environ.items() if not k.startswith("MINUT2MQTT_")}
        environment["MINUT2MQTT_MINUT__CLIENT_SECRET"] = CLIENT_SECRET
        with self.log_path.open("ab") as log:
            self._process = subprocess.Popen(
                [sys.executable, "-m", "minut2mqtt", "run", "--config", str(self.config_path)],
                stdout=log,
                stderr=subprocess.STDOUT,
                env=environment,
            )

    def kill(self) -> None:
        """SIGKILL: no goodbye, no saving, as when the power goes."""
        if self._process is not None:
            self._process.send_signal(signal.SIGKILL)
            self._process.wait(timeout=10)

    def stop(self) -> None:
        if self._process is not None and self._process.poll() is None:
            self._process.terminate()
            try:
                self._process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self._process.kill()

    def log_tail(self, lines: int = 40) -> str:
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])


@dataclass(frozen=True)
class Outcome:
    scenario: str
    sent: int
    received: int
    missing: int
    doubled: int
    seconds_to_complete: float
    """From the end of the fault until the last missing event arrived."""

    def line(self) -> str:
        return (
            f"{self.scenario:<28} sent {self.sent:>5}  received {self.received:>5}  "
            f"missing {self.missing:>3}  doubled {self.doubled:>3}  "
            f"complete {self.seconds_to_complete:5.1f} s after the fault"
        )


@dataclass
class Rig:
    account: SimulatedAccount
    broker: MosquittoBroker
    api_link: FaultyLink
    webhook_link: FaultyLink
    bridge: BridgeProcess
    counter: EventCounter
    stream: EventStream


def mosquitto_available() -> bool:
    return find_mosquitto() is not None


@contextmanager
def rig(
    work_dir: Path, events_per_second: float = 10.0, points: int = 6, *, event_process: bool = False
) -> Iterator[Rig]:
    """Everything running and the first poll done; torn down afterwards."""
    account = SimulatedAccount(client_id=CLIENT_ID, client_secret=CLIENT_SECRET)
    for home in range(2):
        account.add_home(home_id=f"home{home}", name=f"Home {home}")
    for number in range(points):
        account.add_device(
            device_id=f"point{number}",
            home_id=f"home{number % 2}",
            description=f"Room {number}",
            readings={"temperature": 20.0 + number},
        )
    broker = MosquittoBroker(
        work_dir / "mosquitto",
        # Sessions survive a broker restart, so the counter misses nothing the broker accepted.
        extra_config=["persistence true", f"persistence_location {work_dir / 'mosquitto'}/"],
    )
    broker.start()
    with SimulatorServer(account, host="127.0.0.1", port=0) as simulator:
        api_link = FaultyLink(simulator.port)
        webhook_link = FaultyLink(0)
        bridge = BridgeProcess(
            work_dir, api_link.port, broker.port, webhook_link.port, event_process=event_process
        )
        webhook_link.target_port = bridge.webhook_port
        counter = EventCounter(broker.host, broker.port)
        stream = EventStream(account, events_per_second)
        parts = Rig(account, broker, api_link, webhook_link, bridge, counter, stream)
        try:
            bridge.start()
            _wait_until(lambda: bool(account.list_webhooks()), 20, bridge, "webhook registered")
            yield parts
        finally:
            stream.stop()
            bridge.stop()
            counter.stop()
            api_link.close()
            webhook_link.close()
            broker.stop()


def run_scenario(
    name: str,
    parts: Rig,
    fault: Callable[[Rig], None],
    *,
    stream_before: float = 2.0,
    stream_after: float = 2.0,
    settle_timeout: float = 40.0,
) -> Outcome:
    """Stream events, apply `fault` (it returns when the fault is over), stream on, then count."""
    parts.stream.start()
    time.sleep(stream_before)
    fault(parts)
    fault_over = time.monotonic()
    time.sleep(stream_after)
    parts.stream.stop()
    sent = {event["id"] for event in parts.account.list_events()}
    deadline = time.monotonic() + settle_timeout
    while not sent <= parts.counter.ids() and time.monotonic() < deadline:
        time.sleep(0.1)
    completed = time.monotonic() - fault_over
    time.sleep(1.0)  # let late duplicates show up before they are counted
    received = parts.counter.ids() & sent
    return Outcome(
        name,
        sent=len(sent),
        received=len(received),
        missing=len(sent - received),
        doubled=parts.counter.doubled(),
        seconds_to_complete=completed,
    )


def _wait_until(
    condition: Callable[[], bool], timeout: float, bridge: BridgeProcess, what: str
) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise TimeoutError(f"{what}: not within {timeout} s\n{bridge.log_tail()}")
        time.sleep(0.1)


# -- the faults ---------------------------------------------------------------------------------


def broker_restart(parts: Rig, down_for: float = 3.0) -> None:
    parts.broker.stop()
    time.sleep(down_for)
    parts.broker.start()


def bridge_killed(parts: Rig, down_for: float = 3.0) -> None:
    parts.bridge.kill()
    time.sleep(down_for)
    parts.bridge.start()


def bridge_killed_while_broker_down(parts: Rig, phase: float = 1.5) -> None:
    """What the bridge took in while the broker was away must survive its own crash too."""
    parts.broker.stop()
    time.sleep(phase)
    parts.bridge.kill()
    time.sleep(phase)
    parts.bridge.start()
    time.sleep(phase)
    parts.broker.start()


def killed_after_a_burst_of_pulled_events(parts: Rig, burst: int = 200) -> None:
    """Webhooks lost, a burst of events pulled from Minut's history: SIGKILL 0.1 s after the
    first of them reached the subscriber, while the rest are in flight, then start again."""
    parts.webhook_link.set_mode("refuse")
    before = parts.counter.ids()
    home_ids = [home["home_id"] for home in parts.account.list_homes()]
    burst_ids = {
        parts.account.inject_event("disturbance_first_notice", home_id=home_ids[n % 2])["id"]
        for n in range(burst)
    }
    _wait_until(
        lambda: bool(parts.counter.ids() & burst_ids),
        30,
        parts.bridge,
        "the burst pulled and published",
    )
    time.sleep(0.1)
    parts.bridge.kill()
    assert len(parts.counter.ids() - before) < len(burst_ids) + 100, "killed mid-burst"
    parts.webhook_link.set_mode("pass")
    time.sleep(1.0)
    parts.bridge.start()


def api_rude(parts: Rig, phase: float = 2.0) -> None:
    """Webhooks lost while the API answers 429, then 5xx, hangs, then refuses the grant.

    Each fault lasts at least `phase` seconds and until a request of the bridge has met it.
    """
    account, api_link = parts.account, parts.api_link
    parts.webhook_link.set_mode("refuse")  # Minut's deliveries fail: only pulls can recover
    account.fail_next(1000, status=429, retry_after=1)
    _last_until(phase, lambda: _served(account, 429))
    account.cancel_planned_failures()
    account.fail_next(1000, status=503)
    _last_until(phase, lambda: _served(account, 503))
    account.cancel_planned_failures()
    api_link.set_mode("hang")
    _last_until(phase, lambda: api_link.hung > 0)
    api_link.set_mode("pass")
    account.revoke_client()
    account.expire_tokens()
    _last_until(phase, lambda: _served(account, 401))
    account.restore_client()
    parts.webhook_link.set_mode("pass")


def _served(account: SimulatedAccount, status: int) -> bool:
    return any(served == status for _, _, served in account.requests)


def _last_until(at_least: float, met: Callable[[], bool], at_most: float = 30.0) -> None:
    time.sleep(at_least)
    deadline = time.monotonic() + at_most
    while not met():
        if time.monotonic() > deadline:
            raise TimeoutError("the bridge made no request while the fault lasted")
        time.sleep(0.1)
