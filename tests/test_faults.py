"""Faults while events flow: every event the simulator created reaches MQTT once, none twice.

The bridge runs as its own process (so that it can be SIGKILLed), between the simulator and a
Mosquitto; an independent subscriber counts what arrives. bench/faults.py runs the same
scenarios longer and prints the counts.
"""

from __future__ import annotations

import pytest
from conftest import IN_BOTH_PROCESS_MODES
from fault_scenarios import (
    Outcome,
    api_rude,
    bridge_killed,
    bridge_killed_while_broker_down,
    broker_restart,
    killed_after_a_burst_of_pulled_events,
    mosquitto_available,
    rig,
    run_scenario,
)

pytestmark = [
    pytest.mark.skipif(
        not mosquitto_available(), reason="needs Mosquitto (apt-get install mosquitto)"
    ),
    pytest.mark.xdist_group("faults"),
]


def assert_complete(outcome: Outcome, log: str) -> None:
    assert outcome.sent > 10, outcome
    assert (outcome.missing, outcome.doubled) == (0, 0), f"{outcome.line()}\n{log}"


def test_broker_restarted_mid_stream(tmp_path):
    with rig(tmp_path) as parts:
        outcome = run_scenario("broker restart", parts, broker_restart)
        assert_complete(outcome, parts.bridge.log_tail())


@IN_BOTH_PROCESS_MODES
def test_bridge_killed_and_restarted_while_events_keep_coming(tmp_path, event_process):
    with rig(tmp_path, event_process=event_process) as parts:
        outcome = run_scenario("bridge SIGKILL", parts, bridge_killed)
        assert_complete(outcome, parts.bridge.log_tail())


def test_bridge_killed_during_a_broker_outage_loses_nothing_it_had_taken_in(tmp_path):
    with rig(tmp_path) as parts:
        outcome = run_scenario("SIGKILL while broker down", parts, bridge_killed_while_broker_down)
        assert_complete(outcome, parts.bridge.log_tail())


def test_api_answers_429_5xx_hangs_and_revokes_while_webhooks_are_lost(tmp_path):
    with rig(tmp_path) as parts:
        outcome = run_scenario("API rude, webhooks lost", parts, api_rude, settle_timeout=60)
        assert_complete(outcome, parts.bridge.log_tail())
        served = {status for _, _, status in parts.account.requests}
        assert {429, 503, 401} <= served and parts.api_link.hung, "each fault met a request"


@IN_BOTH_PROCESS_MODES
def test_bridge_killed_right_after_a_burst_of_pulled_events_doubles_none(tmp_path, event_process):
    """PUBCOMP came for some, PUBREC for others, nothing for the rest: each resumes once."""
    with rig(tmp_path, event_process=event_process) as parts:
        outcome = run_scenario(
            "SIGKILL after a pulled burst", parts, killed_after_a_burst_of_pulled_events
        )
        assert_complete(outcome, parts.bridge.log_tail())
