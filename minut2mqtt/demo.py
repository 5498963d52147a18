"""`minut2mqtt demo`: an embedded broker, a simulated Minut account and the real bridge."""

from __future__ import annotations

import logging
import random
import tempfile
import threading
import time
from collections.abc import Mapping
from datetime import datetime
from pathlib import Path
from typing import Any

from .cli import configure_logging, stop_on_signals
from .daemon import Daemon
from .embedded_broker import EmbeddedBroker, first_free_port
from .settings import load_settings
from .simulator import SimulatorServer, demo_account

log = logging.getLogger("minut2mqtt.demo")

EVENT_EVERY_SECONDS = (4.0, 10.0)


def run_demo(overrides: Mapping[str, Any], duration: float | None = None) -> int:
    preferred_port = int(overrides.get("mqtt.port") or 1883)
    broker_port = first_free_port("127.0.0.1", preferred_port)
    account = demo_account()
    with (
        tempfile.TemporaryDirectory(prefix="minut2mqtt-demo-") as state_dir,
        EmbeddedBroker("127.0.0.1", broker_port) as broker,
        SimulatorServer(account, host="127.0.0.1", port=0) as simulator,
    ):
        settings = load_settings(
            None,
            {
                "minut.poll_interval": 30,
                "log_level": "WARNING",
                "state_dir": overrides.get("state_dir") or Path(state_dir),
                **overrides,
                "minut.api_url": simulator.base_url,
                "minut.client_id": account.client_id,
                "minut.client_secret": account.client_secret,
                "mqtt.host": broker.host,
                "mqtt.port": broker.port,
                "webhook.host": "127.0.0.1",
                "webhook.port": overrides.get("webhook.port") or 0,
            },
        )
        configure_logging(settings.log_level)
        daemon = Daemon(settings, on_change=_print_change)
        stop = threading.Event()
        stop_on_signals(stop.set)
        daemon.start()
        account.register_webhook(f"http://127.0.0.1:{daemon.webhook_port}{daemon.webhook_path}")
        _print_welcome(
            broker.port,
            daemon.webhook_port,
            settings.mqtt.base_topic,
            settings.mqtt.discovery_prefix,
        )
        rng = random.Random()
        deadline = None if duration is None else time.monotonic() + duration
        while not stop.wait(rng.uniform(*EVENT_EVERY_SECONDS)):
            account.drift(rng)
            account.random_event(rng)
            if deadline is not None and time.monotonic() >= deadline:
                break
        daemon.stop()
    print("demo stopped")
    return 0


def _print_welcome(broker_port: int, webhook_port: int | None, base: str, prefix: str) -> None:
    print(
        f"""
minut2mqtt demo is running: a simulated Minut account with 2 homes and 5 Points.

  MQTT broker    127.0.0.1:{broker_port}  (embedded, no login)
  Watch it       mosquitto_sub -h 127.0.0.1 -p {broker_port} -v -t '{base}/#' -t '{prefix}/#'
  Home Assistant Settings → Devices & services → MQTT → broker 127.0.0.1, port {broker_port}
                 (discovery prefix '{prefix}'); the Points appear as devices.
  Health         curl http://127.0.0.1:{webhook_port}/healthz

Readings drift and events arrive as webhook pushes every few seconds. Ctrl-C stops.
""",
        flush=True,
    )


def _print_change(what: str, subject: str) -> None:
    print(f"{datetime.now():%H:%M:%S}  {what:<28} {subject}", flush=True)
