"""A home's guests: read tolerantly in either shape, the current and next stay follow the clock,
and the home's state and entities show them."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from fakes import NOW, Clock, MemoryPublisher
from test_end_to_end import retained, state_where
from test_mirror import TOPICS, connected_to_an_empty_broker, poll, raw_device

from minut2mqtt.core.control_configs import Controls
from minut2mqtt.core.mirror import Mirror
from minut2mqtt.minut.guests import current_and_next, parse_stays
from minut2mqtt.simulator import SimulatedAccount
from minut2mqtt.simulator.api import OTHER_GUEST_STYLE

HOME_STATE = "minut2mqtt/home/home1/state"


def test_both_known_shapes_are_read_alike():
    default = {
        "guest_id": "g1",
        "name": "Ada",
        "check_in_at": "2026-12-01T15:00:00Z",
        "check_out_at": "2026-12-04T10:00:00Z",
        "phone_number": "+46 70 000",
    }
    other = {
        "id": 7,
        "guest_name": "Ada",
        "checkin": "2026-12-01T16:00:00+01:00",
        "checkout": 1796378400,  # epoch seconds: 2026-12-04T10:00:00Z
    }
    millis = {"name": "Ada", "check_in": 1796137200000, "check_out": "2026-12-04T10:00:00Z"}
    stays = [parse_stays([shape])[0] for shape in (default, other, millis)]
    for stay in stays:
        assert stay.name == "Ada"
        assert stay.check_in == datetime(2026, 12, 1, 15, tzinfo=UTC)
        assert stay.check_out == datetime(2026, 12, 4, 10, tzinfo=UTC)
    assert [stay.guest_id for stay in stays] == ["g1", "7", None]
    assert stays[0].document()["phone_number"] == "+46 70 000"  # the rest passes through


def test_without_guests_interval_no_guest_is_read_and_no_entity_made(
    start_daemon, recorder, broker, account
):
    start_daemon()
    home = state_where(recorder, HOME_STATE, lambda doc: "controls" in doc)
    assert home["guests"] is None and home["current_guest"] is None
    recorder.wait_for_topic("homeassistant/sensor/minut2mqtt_home_home1/alarm_status/config")
    configs = retained(broker, "homeassistant/sensor/minut2mqtt_home_home1/#")
    assert configs and not [topic for topic in configs if "guest" in topic]


def test_a_stay_without_both_times_is_skipped():
    assert parse_stays([{"name": "x", "check_in_at": "2026-12-01T15:00:00Z"}, "junk", None]) == ()


def test_current_and_next_stay():
    stays = parse_stays(
        [
            {"name": "Later", "check_in": "2026-12-10T15:00Z", "check_out": "2026-12-12T10:00Z"},
            {"name": "Now", "check_in": "2026-11-29T15:00Z", "check_out": "2026-12-02T10:00Z"},
        ]
    )  # fmt: skip
    current, upcoming = current_and_next(stays, datetime(2026, 11, 30, tzinfo=UTC))
    assert (current.name if current else None, upcoming.name if upcoming else None) == (
        "Now",
        "Later",
    )


def stay(name: str, check_in: datetime, check_out: datetime) -> dict[str, Any]:
    return {
        "name": name,
        "check_in_at": check_in.isoformat(),
        "check_out_at": check_out.isoformat(),
    }


def test_the_home_follows_check_out_without_a_new_read():
    clock, publisher = Clock(), MemoryPublisher()
    mirror = Mirror(
        publisher, TOPICS, controls=Controls(), guests=True, wall_clock=lambda: clock.wall,
        monotonic=lambda: clock.mono,
    )  # fmt: skip
    connected_to_an_empty_broker(mirror)
    poll(mirror, raw_device())
    stays = parse_stays(
        [
            stay("Ada", NOW - timedelta(days=1), NOW + timedelta(hours=2)),
            stay("Bo", NOW + timedelta(days=2), NOW + timedelta(days=4)),
        ]
    )
    mirror.apply_stays("home1", stays)
    home = json.loads(publisher.retained[HOME_STATE])
    assert (home["current_guest"], home["next_guest"]) == ("Ada", "Bo")
    check_out = publisher.retained["minut2mqtt/home/home1/current_guest_check_out"]
    assert check_out == (NOW + timedelta(hours=2)).strftime("%Y-%m-%dT%H:%M:%S.000Z").encode()
    sensors = [
        t for t in publisher.retained if t.startswith("homeassistant/sensor/") and "guest" in t
    ]
    assert len(sensors) == 4
    clock.advance(2 * 3600 + 1)
    mirror.tick()
    home = json.loads(publisher.retained[HOME_STATE])
    assert (home["current_stay"], home["next_guest"]) == (None, "Bo")


@pytest.fixture
def account() -> SimulatedAccount:
    simulated = SimulatedAccount(client_id="test-client", client_secret="test-secret-value-9f8e7d")
    simulated.add_home(home_id="home1", name="Beach house", alarm_status="off")
    simulated.add_device(device_id="dev1", home_id="home1", description="Hallway")
    now = datetime.now(UTC)
    simulated.add_guest("home1", "Ada", now - timedelta(days=1), now + timedelta(days=1))
    for day in range(2, 60):  # more than a page of the paged shape
        simulated.add_guest(
            "home1", f"Guest {day}", now + timedelta(days=day), now + timedelta(days=day, hours=20)
        )
    return simulated


@pytest.mark.parametrize("style", ["default", "other"])
def test_the_home_state_shows_its_guests(start_daemon, recorder, broker, account, style):
    if style == "other":
        account.guest_style = OTHER_GUEST_STYLE
    start_daemon(**{"controls.guests_interval": 3600})
    home = state_where(recorder, HOME_STATE, lambda doc: len(doc.get("guests") or ()) == 59, 20)
    assert (home["current_guest"], home["next_guest"]) == ("Ada", "Guest 2")
    held = retained(broker, "minut2mqtt/home/home1/#")
    assert "minut2mqtt/home/home1/current_guest_check_out" in held
    recorder.wait_for_topic(
        "homeassistant/sensor/minut2mqtt_home_home1/next_guest_check_in/config", 20
    )
