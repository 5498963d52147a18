"""Faults while events flow: per scenario, events the simulator sent and MQTT received.

    python bench/faults.py [--rate 20] [--rounds 1]

Runs the same scenarios as tests/test_faults.py (the bridge as its own process between the
simulator and Mosquitto; an independent subscriber counts), at a higher event rate and for as many
rounds as asked, and prints one line per run: sent, received, missing, doubled, and how long after
the fault ended the last missing event arrived. Needs Mosquitto (apt-get install mosquitto).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

from fault_scenarios import (  # the scenarios live beside the tests that use them
    api_rude,
    bridge_killed,
    bridge_killed_while_broker_down,
    broker_restart,
    killed_after_a_burst_of_pulled_events,
    mosquitto_available,
    rig,
    run_scenario,
)

SCENARIOS = {
    "broker restart": broker_restart,
    "bridge SIGKILL": bridge_killed,
    "SIGKILL while broker down": bridge_killed_while_broker_down,
    "API rude, webhooks lost": api_rude,
    "SIGKILL after a pulled burst": killed_after_a_burst_of_pulled_events,
}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rate", type=float, default=20.0, help="events per second")
    parser.add_argument("--rounds", type=int, default=1, help="runs of every scenario")
    parser.add_argument("--only", choices=sorted(SCENARIOS), help="run this scenario only")
    args = parser.parse_args()
    if not mosquitto_available():
        print("bench/faults.py needs Mosquitto (apt-get install mosquitto)", file=sys.stderr)
        return 2
    print(f"events at {args.rate:g}/s, {args.rounds} round(s) per scenario")
    totals = [0, 0, 0, 0]
    for name, fault in SCENARIOS.items():
        if args.only and name != args.only:
            continue
        for _ in range(args.rounds):
            with (
                tempfile.TemporaryDirectory() as work_dir,
                rig(Path(work_dir), events_per_second=args.rate) as parts,
            ):
                outcome = run_scenario(name, parts, fault, settle_timeout=90)
            print(outcome.line(), flush=True)
            for index, value in enumerate(
                (outcome.sent, outcome.received, outcome.missing, outcome.doubled)
            ):
                totals[index] += value
    sent, received, missing, doubled = totals
    print(
        f"{'all':<28} sent {sent:>5}  received {received:>5}  missing {missing:>3}  "
        f"doubled {doubled:>3}"
    )
    return 0 if missing == doubled == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
