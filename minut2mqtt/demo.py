"""`minut2mqtt demo`: an embedded broker, a simulated Minut account and the real bridge."""

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
from typing import Any

from .daemon import Daemon
from .embedded_broker import EmbeddedBroker, EmbeddedBrokerError, first_free_port
from .logs import configure_logging
from .settings import Settings, load_settings
from .signals import stop_on_signals
from .simulator import SimulatedAccount, SimulatorServer, demo_account
from .web.server import WILDCARD_HOSTS

log = logging.getLogger("minut2mqtt.demo")

EVENT_EVERY_SECONDS = (4.0, 10.0)


def run_demo(overrides: Mapping[str, Any], duration: float | None = None) -> int:
    """Run until Ctrl-C (or `duration` seconds). Bad options raise ConfigError before anything
    starts; a broker that cannot start is reported in one line (exit status 1)."""
    wanted = load_settings(None, {"mqtt.host": "127.0.0.1", **overrides})
    bind_host = wanted.mqtt.host
    try:
        broker_port = first_free_port(bind_host, wanted.mqtt.port)
        broker = EmbeddedBroker(bind_host, broker_port)
        broker.start()
    except EmbeddedBrokerError as error:
        print(f"minut2mqtt demo: the embedded MQTT broker cannot start: {error}", file=sys.stderr)
        return 1
    account = demo_account()
    try:
        with (
            tempfile.TemporaryDirectory(prefix="minut2mqtt-demo-") as state_dir,
            SimulatorServer(account, host="127.0.0.1", port=0) as simulator,
        ):
            settings = load_settings(
                None,
                {
                    "minut.poll_interval": 30,
                    "log_level": "WARNING",
                    "state_dir": Path(state_dir),
                    "webhook.port": 0,
                    **overrides,
                    "minut.api_url": simulator.base_url,
                    "minut.client_id": account.client_id,
                    "minut.client_secret": account.client_secret,
                    "mqtt.host": "127.0.0.1" if bind_host in WILDCARD_HOSTS else bind_host,
                    "mqtt.port": broker.port,
                    "webhook.host": "127.0.0.1",
                },
            )
            configure_logging(settings.log_level, settings.log_format)
            _run_account(settings, account, broker, duration)
    finally:
        broker.stop()
    print("demo stopped")
    return 0


def _run_account(
    settings: Settings, account: SimulatedAccount, broker: EmbeddedBroker, duration: float | None
) -> None:
    daemon = Daemon(settings, on_change=_print_change)
    stop = threading.Event()
    stop_on_signals(stop.set)
    daemon.start()
    account.register_webhook(f"http://127.0.0.1:{daemon.webhook_port}{daemon.webhook_path}")
    _print_welcome(broker.host, broker.port, daemon.webhook_port, settings)
    rng = random.Random()
    deadline = None if duration is None else time.monotonic() + duration
    while not stop.wait(rng.uniform(*EVENT_EVERY_SECONDS)):
        account.drift(rng)
        account.random_event(rng)
        if deadline is not None and time.monotonic() >= deadline:
            break
    daemon.stop()


def _print_welcome(
    broker_host: str, broker_port: int, webhook_port: int | None, settings: Settings
) -> None:
    base, prefix = settings.mqtt.base_topic, settings.mqtt.discovery_prefix
    reachable = (
        "reachable from other machines at this machine's address"
        if broker_host in WILDCARD_HOSTS
        else f"on {broker_host} only; --mqtt.host 0.0.0.0 opens it to other machines"
    )
    print(
        f"""
minut2mqtt demo is running: a simulated Minut account with 2 homes and 5 Points.

  MQTT broker    127.0.0.1:{broker_port}  (embedded amqtt, MQTT 3.1.1, no login, {reachable})
  Watch it       mosquitto_sub -h 127.0.0.1 -p {broker_port} -v -t '{base}/#' -t '{prefix}/#'
  Home Assistant Settings → Devices & services → MQTT → this machine, port {broker_port}
                 (discovery prefix '{prefix}'); the Points appear as devices.
  HA's birth     mosquitto_pub -p {broker_port} -q 1 -t {prefix}/status -m online
                 re-publishes discovery (amqtt drops a QoS 0 publish from a client that
                 disconnects at once, so use -q 1 with it)
  Status page    http://127.0.0.1:{webhook_port}/  (account, homes, Points, last poll)
  Health         curl http://127.0.0.1:{webhook_port}/healthz
  Metrics        curl http://127.0.0.1:{webhook_port}/metrics

Readings drift and events arrive as webhook pushes every few seconds; now and then an event
type the bridge does not know yet (future_event_type) shows how such events are passed through.
Ctrl-C stops.
""",
        flush=True,
    )


def _print_change(what: str, subject: str) -> None:
    print(f"{datetime.now():%H:%M:%S}  {what:<28} {subject}", flush=True)
