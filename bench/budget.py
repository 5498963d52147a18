"""A property manager whose webhooks never arrive: does the request budget hold? Prints the figures.

    python bench/budget.py [--homes 300] [--seconds 150]

The real daemon (no broker needed: its MQTT side only queues) against the simulator, which
enforces Minut's 120 requests/minute and 5/second with 429s. No webhook is registered, and
`minut.pull_events_after_silence` is 1 s, so the bridge pulls every home's history as often as
its budget lets it, besides polling every 10 s. Prints the most requests sent in any 60 s and any
1 s window, the 429s the API answered, how polls and pulls shared the budget, and how long the
events the simulator created took to be published.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import threading
import time
from collections import Counter
from functools import partial

from minut2mqtt.daemon import Daemon
from minut2mqtt.embedded_broker import first_free_port
from minut2mqtt.settings import load_settings
from minut2mqtt.simulator import SimulatedAccount, SimulatorServer


def most_in_window(moments: list[float], window: float) -> int:
    most, start = 0, 0
    for end, moment in enumerate(moments):
        while moments[start] <= moment - window:
            start += 1
        most = max(most, end - start + 1)
    return most


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--homes", type=int, default=300)
    parser.add_argument("--seconds", type=float, default=150)
    args = parser.parse_args()

    account = SimulatedAccount(client_id="bench", client_secret="bench-secret")
    for home in range(args.homes):
        account.add_home(home_id=f"home{home:03d}", name=f"Apartment {home}")
        account.add_device(
            device_id=f"point{home:03d}", home_id=f"home{home:03d}", description=f"Room {home}"
        )
    sent_at: list[float] = []
    published_at: dict[str, float] = {}
    created_at: dict[str, float] = {}

    with (
        SimulatorServer(account, port=0) as simulator,
        tempfile.TemporaryDirectory() as state_dir,
    ):
        real_record = account.record_request

        def record(method: str, path: str, status: int) -> None:
            sent_at.append(time.monotonic())
            real_record(method, path, status)

        account.record_request = record  # type: ignore[method-assign]
        settings = load_settings(
            None,
            {
                "minut.api_url": simulator.base_url,
                "minut.client_id": "bench",
                "minut.client_secret": "bench-secret",
                "minut.poll_interval": 10,
                "minut.pull_events_after_silence": 1,
                "mqtt.host": "127.0.0.1",
                "mqtt.port": first_free_port("127.0.0.1", 18900),  # nobody there: queued only
                "webhook.host": "127.0.0.1",
                "webhook.port": 0,
                "state_dir": state_dir,
                "log_level": "WARNING",
            },
        )

        daemon = Daemon(settings)
        stop = threading.Event()

        def make_events() -> None:
            number = 0
            while not stop.wait(1.0):
                home = number % args.homes
                event = account.inject_event(
                    "pir_motion", home_id=f"home{home:03d}", device_id=f"point{home:03d}"
                )
                created_at[event["id"]] = time.monotonic()
                number += 1

        daemon.start()
        started = time.monotonic()
        threading.Thread(target=make_events, daemon=True).start()
        while time.monotonic() - started < args.seconds:
            for event_id in [i for i in list(created_at) if i not in published_at]:
                if daemon.writer.ask(partial(daemon.writer.mirror.has_published, event_id)):
                    published_at[event_id] = time.monotonic()
            time.sleep(0.2)
        stop.set()
        daemon.stop()

    statuses = Counter(status for _, _, status in account.requests)
    kinds = Counter(
        "pull"
        if path.endswith("/events")
        else "poll"
        if path in ("/v8/devices", "/v8/homes")
        else "other"
        for _, path, _ in account.requests
    )
    delays = sorted(published_at[i] - created_at[i] for i in published_at if i in created_at)
    minutes = (time.monotonic() - started) / 60
    print(f"{args.homes} homes, no webhooks, {args.seconds:.0f} s; the API allows 120/min, 5/s")
    print(
        f"requests: {len(sent_at)} ({len(sent_at) / minutes:.0f}/min on average); by kind: "
        f"{dict(kinds)}"
    )
    print(
        f"most in any 60 s: {most_in_window(sent_at, 60.0)}; in any 1 s: "
        f"{most_in_window(sent_at, 1.0)}"
    )
    print(f"answers by status: {dict(statuses)}; 429s: {statuses.get(429, 0)}")
    if delays:
        print(
            f"events published before the end: {len(delays)} of {len(created_at)} (the others "
            f"wait for their home's turn in the round of pulls); delay from creation: median "
            f"{delays[len(delays) // 2]:.0f} s, max {delays[-1]:.0f} s"
        )
    return 0 if statuses.get(429, 0) == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
