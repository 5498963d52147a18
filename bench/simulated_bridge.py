"""The bridge and a simulated Minut account, against a broker of your choosing, until SIGTERM.

    python bench/simulated_bridge.py --mqtt-port 1883 [--homes 50 --points 4] [--events-every 5]
        [-- --mqtt.discovery device ...]

For looking at the bridge through a real Home Assistant (../shared/tools/home-assistant/):

    python3 ../shared/tools/home-assistant/ha_check.py --ha 314 --settle 20 \\
      --pre '.venv/bin/python bench/simulated_bridge.py --mqtt-port $MQTT_PORT' --out /tmp/ha.json

Without --homes, the demo's account (2 homes, 5 Points); with it, H homes of N Points each.
Arguments after `--` are the bridge's own settings (as on its command line).
"""

from __future__ import annotations

import argparse
import random
import sys
import tempfile
import threading
from pathlib import Path

from minut2mqtt.daemon import Daemon
from minut2mqtt.logs import configure_logging
from minut2mqtt.settings import load_settings
from minut2mqtt.signals import stop_on_signals
from minut2mqtt.simulator import SimulatedAccount, SimulatorServer, demo_account


def generated_account(homes: int, points: int) -> SimulatedAccount:
    account = SimulatedAccount()
    rooms = ("Hallway", "Kitchen", "Living room", "Bedroom", "Office", "Bathroom")
    for home in range(homes):
        home_id = f"home{home:04d}"
        account.add_home(home_id, f"Apartment {home + 1}")
        for point in range(points):
            account.add_device(
                f"point{home:04d}{point:02d}",
                home_id,
                f"{rooms[point % len(rooms)]} {home + 1}",
                readings={"temperature": 20.0 + point, "humidity": 45.0, "sound": 40.0},
            )
    return account


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mqtt-port", type=int, required=True)
    parser.add_argument("--mqtt-host", default="127.0.0.1")
    parser.add_argument("--homes", type=int, default=0)
    parser.add_argument("--points", type=int, default=4)
    parser.add_argument("--events-every", type=float, default=5.0, help="seconds (0: none)")
    parser.add_argument("settings", nargs=argparse.REMAINDER)
    args = parser.parse_args()
    account = generated_account(args.homes, args.points) if args.homes else demo_account()
    extra = [item for item in args.settings if item != "--"]
    overrides = dict(item.removeprefix("--").split("=", 1) for item in extra)
    stop = threading.Event()
    stop_on_signals(stop.set)
    with (
        tempfile.TemporaryDirectory(prefix="simulated-bridge-") as state_dir,
        SimulatorServer(account, host="127.0.0.1", port=0) as simulator,
    ):
        settings = load_settings(
            None,
            {
                "minut.api_url": simulator.base_url,
                "minut.client_id": account.client_id,
                "minut.client_secret": account.client_secret,
                "mqtt.host": args.mqtt_host,
                "mqtt.port": args.mqtt_port,
                "webhook.host": "127.0.0.1",
                "webhook.port": 0,
                "state_dir": Path(state_dir),
                **overrides,
            },
        )
        configure_logging(settings.log_level, settings.log_format)
        daemon = Daemon(settings)
        daemon.start()
        account.register_webhook(f"http://127.0.0.1:{daemon.webhook_port}{daemon.webhook_path}")
        rng = random.Random(1)
        while not stop.wait(args.events_every or 3600):
            if args.events_every:
                account.drift(rng)
                account.random_event(rng)
        daemon.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
