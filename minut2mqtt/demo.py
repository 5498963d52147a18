"""`minut2mqtt demo`: a broker of its own, a simulated Minut account and the real bridge.

The broker is Mosquitto, started as a child process, where it is installed (it speaks MQTT 5,
which Home Assistant will require), else the embedded amqtt broker (MQTT 3.1.1 only).
"""

from __future__ import annotations

import logging
import random
import sys
import tempfile
import threading
import time
from collections.abc import Mapping
from datetime import datetime
from pathlib import Path
from typing import Any, Literal

from .daemon import Daemon
from .embedded_broker import EmbeddedBroker, EmbeddedBrokerError, first_free_port
from .logs import configure_logging
from .mosquitto import MosquittoProcess, find_mosquitto
from .settings import Settings, load_settings
from .signals import stop_on_signals
from .simulator import SimulatedAccount, SimulatorServer, demo_account
from .web.server import WILDCARD_HOSTS

log = logging.getLogger("minut2mqtt.demo")

EVENT_EVERY_SECONDS = (4.0, 10.0)
BrokerChoice = Literal["auto", "mosquitto", "amqtt"]
DemoBroker = MosquittoProcess | EmbeddedBroker


def run_demo(
    overrides: Mapping[str, Any], duration: float | None = None, broker: BrokerChoice = "auto"
) -> int:
    """Run until Ctrl-C (or `duration` seconds). Bad options raise ConfigError before anything
    starts; a broker that cannot start is reported in one line (exit status 1)."""
    wanted = load_settings(None, {"mqtt.host": "127.0.0.1", **overrides})
    bind_host = wanted.mqtt.host
    account = demo_account()
    with tempfile.TemporaryDirectory(prefix="minut2mqtt-demo-") as work_dir:
        try:
            running = _start_broker(broker, bind_host, wanted.mqtt.port, Path(work_dir))
        except EmbeddedBrokerError as error:
            print(f"minut2mqtt demo: the MQTT broker cannot start: {error}", file=sys.stderr)
            return 1
        try:
            with SimulatorServer(account, host="127.0.0.1", port=0) as simulator:
                settings = load_settings(
                    None,
                    {
                        "minut.poll_interval": 30,
                        "log_level": "WARNING",
                        "state_dir": Path(work_dir) / "state",
                        "webhook.port": 0,
                        "controls.guests_interval": 600,  # the demo's homes have guests
                        **overrides,
                        "minut.api_url": simulator.base_url,
                        "minut.client_id": account.client_id,
                        "minut.client_secret": account.client_secret,
                        "mqtt.host": "127.0.0.1" if bind_host in WILDCARD_HOSTS else bind_host,
                        "mqtt.port": running.port,
                        # amqtt never answers MQTT 5: no need to wait for it to find out
                        **({"mqtt.protocol": "3.1.1"} if _is_amqtt(running) else {}),
                        "webhook.host": "127.0.0.1",
                    },
                )
                configure_logging(settings.log_level, settings.log_format)
                _run_account(settings, account, running, duration)
        finally:
            running.stop()
    print("demo stopped")
    return 0


def _start_broker(choice: BrokerChoice, host: str, port: int, work_dir: Path) -> DemoBroker:
    """Mosquitto where installed (or asked for), else the embedded amqtt broker; started."""
    free_port = first_free_port(host, port)
    started: DemoBroker
    if choice == "mosquitto" or (choice == "auto" and find_mosquitto() is not None):
        started = MosquittoProcess(work_dir / "mosquitto", host, free_port)
    else:
        started = EmbeddedBroker(host, free_port)
    started.start()
    return started


def _is_amqtt(broker: DemoBroker) -> bool:
    return isinstance(broker, EmbeddedBroker)


def _run_account(
    settings: Settings, account: SimulatedAccount, broker: DemoBroker, duration: float | None
) -> None:
    daemon = Daemon(settings, on_change=_print_change)
    stop = threading.Event()
    stop_on_signals(stop.set)
    daemon.start()
    account.register_webhook(f"http://127.0.0.1:{daemon.webhook_port}{daemon.webhook_path}")
    _print_welcome(broker, daemon.webhook_port, settings, duration)
    rng = random.Random()
    deadline = None if duration is None else time.monotonic() + duration
    while not stop.wait(rng.uniform(*EVENT_EVERY_SECONDS)):
        account.drift(rng)
        account.random_event(rng)
        if deadline is not None and time.monotonic() >= deadline:
            break
    daemon.stop()


def _print_welcome(
    broker: DemoBroker, webhook_port: int | None, settings: Settings, duration: float | None
) -> None:
    base, prefix = settings.mqtt.base_topic, settings.mqtt.discovery_prefix
    port = broker.port
    reachable = (
        "reachable from other machines at this machine's address"
        if broker.host in WILDCARD_HOSTS
        else f"on {broker.host} only; --mqtt.host 0.0.0.0 opens it to other machines"
    )
    if _is_amqtt(broker):
        # amqtt with Mosquitto installed: the user asked for it (auto would have picked Mosquitto)
        get_mosquitto = (
            "Mosquitto is installed here: drop --broker amqtt (or use\n"
            "                 --broker auto) and the demo uses it"
            if find_mosquitto() is not None
            else "install Mosquitto (apt install mosquitto) and the\n                 demo uses it"
        )
        kind = (
            "embedded amqtt, MQTT 3.1.1 only: Home Assistant 2027.1 and later need an\n"
            f"                 MQTT 5 broker; {get_mosquitto}"
        )
        birth_note = (
            "\n                 (amqtt drops a QoS 0 publish from a client that disconnects at"
            " once, so use -q 1)"
        )
    else:
        kind = "Mosquitto, MQTT 5 and 3.1.1, as Home Assistant wants it"
        birth_note = ""
    ends = f"It stops after {duration:g} s, or with Ctrl-C." if duration else "Ctrl-C stops."
    print(
        f"""
minut2mqtt demo is running: a simulated Minut account with 2 homes and 5 Points.

  MQTT broker    127.0.0.1:{port}, no login, {reachable}
                 ({kind})
  Watch it       mosquitto_sub -h 127.0.0.1 -p {port} -v -t '{base}/#' -t '{prefix}/#'
  Home Assistant Settings → Devices & services → MQTT → this machine, port {port}
                 (discovery prefix '{prefix}'); the Points appear as devices.
                 Home Assistant 2024.11+: --mqtt.discovery device sends one config
                 per device instead of one per entity (docs/scale.md says when)
  HA's birth     mosquitto_pub -p {port} -q 1 -t {prefix}/status -m online
                 re-publishes discovery{birth_note}
  Arm a home     mosquitto_pub -p {port} -q 1 -t {base}/home/beach-house/alarm/set -m ARM_AWAY
  A threshold    mosquitto_pub -p {port} -q 1 -m 70 \\
                   -t {base}/device/point-hallway/sound_level_high/set
                 (every command is answered on {base}/bridge/response)
  Status page    http://127.0.0.1:{webhook_port}/  (account, homes, Points, last poll)
  Health         curl http://127.0.0.1:{webhook_port}/healthz
  Metrics        curl http://127.0.0.1:{webhook_port}/metrics

Readings drift and events arrive as webhook pushes every few seconds; now and then an event
type the bridge does not know yet (future_event_type) shows how such events are passed through.
{ends}
""",
        flush=True,
    )


def _print_change(what: str, subject: str) -> None:
    print(f"{datetime.now():%H:%M:%S}  {what:<28} {subject}", flush=True)
