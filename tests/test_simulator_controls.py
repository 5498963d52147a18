"""The simulator's write side follows docs/minut-api.md: arming, noise monitoring, thresholds,
guests; every write is logged and spends the request budget like a read."""

import random
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import requests
from conftest import CLIENT_ID, CLIENT_SECRET

from minut2mqtt.simulator import SimulatedAccount, SimulatorServer, demo_account
from minut2mqtt.simulator.api import (
    EVERY_ALARM_ENDPOINT,
    OLD_ALARM_ENDPOINTS,
    OTHER_GUEST_STYLE,
    AlarmEndpoints,
    GuestStyle,
    Paging,
)
from minut2mqtt.simulator.controls import RecordedWrite
from minut2mqtt.simulator.thresholds import (
    DURATION_LIMITS,
    REACTION_LIMITS,
    default_quiet_hours,
    default_reactions,
    reaction,
)
from minut2mqtt.simulator.timefmt import format_time, parse_time

CHECK_IN = datetime(2026, 11, 20, 14, tzinfo=UTC)
CHECK_OUT = datetime(2026, 11, 23, 10, tzinfo=UTC)


def make_account(rate_limit_per_minute: int = 1000) -> SimulatedAccount:
    account = SimulatedAccount(
        client_id=CLIENT_ID,
        client_secret=CLIENT_SECRET,
        rate_limit_per_minute=rate_limit_per_minute,
        burst_per_second=100,
    )
    account.add_home("home1", "Beach house", timezone="Europe/Stockholm")
    account.add_device(
        "dev1",
        "home1",
        "Hallway",
        readings={"sound": 40.0},
        reactions=default_reactions(),
        quiet_hours=default_quiet_hours(),
    )
    account.add_device("dev2", "home1", "Kitchen", readings=None)
    return account


@pytest.fixture
def account() -> SimulatedAccount:
    return make_account()


@pytest.fixture
def base(simulator: SimulatorServer) -> str:
    return simulator.base_url


@pytest.fixture
def api(simulator: SimulatorServer) -> Iterator[requests.Session]:
    with session_for(simulator) as session:
        yield session


def session_for(simulator: SimulatorServer) -> requests.Session:
    token = requests.post(
        f"{simulator.base_url}/oauth/token",
        data={"grant_type": "client_credentials"},
        auth=(CLIENT_ID, CLIENT_SECRET),
    ).json()["access_token"]
    session = requests.Session()
    session.headers["Authorization"] = f"Bearer {token}"
    return session


def home(account: SimulatedAccount) -> dict[str, Any]:
    found = account.get_home("home1")
    assert found is not None
    return found


def device(account: SimulatedAccount, device_id: str = "dev1") -> dict[str, Any]:
    found = account.get_device(device_id)
    assert found is not None
    return found


def reactions_by_type(device_json: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {entry["type"]: entry for entry in device_json["reactions"]}


def assert_refused(answer: requests.Response, status: int = 400) -> None:
    assert answer.status_code == status, answer.text
    assert answer.json()["error"]


# --- arming ----------------------------------------------------------------------------------


def test_v8_patch_arms_and_disarms_and_the_next_get_shows_it(
    api: requests.Session, base: str
) -> None:
    armed = api.patch(
        f"{base}/homes/home1/alarm", json={"alarm_status": "on", "alarm_mode": "manual"}
    )
    after_arming = api.get(f"{base}/homes/home1").json()["alarm_status"]
    disarmed = api.patch(f"{base}/homes/home1/alarm", json={"alarm_status": "off"})
    listed = api.get(f"{base}/homes").json()["homes"][0]["alarm_status"]

    assert (armed.status_code, armed.json()["alarm_status"]) == (200, "on")
    assert after_arming == "on"
    assert (disarmed.status_code, disarmed.json()["alarm_status"]) == (200, "off")
    assert listed == "off"


def test_by_default_only_the_v8_patch_arms(
    account: SimulatedAccount, api: requests.Session, base: str
) -> None:
    put_alarm = api.put(f"{base}/homes/home1/alarm", json={"alarm_status": "on"})
    put_home = api.put(f"{base}/homes/home1", json={"alarm_status": "on"})

    assert_refused(put_alarm, 405)
    assert put_alarm.headers["Allow"] == "PATCH"
    assert put_home.status_code == 200, "an ignored field is not an error"
    assert put_home.json()["alarm_status"] == "off"
    assert home(account)["alarm_status"] == "off"


ALARM_REQUESTS = {
    "patch_alarm": ("PATCH", "/homes/home1/alarm"),
    "put_alarm": ("PUT", "/homes/home1/alarm"),
    "put_home": ("PUT", "/homes/home1"),
}


@pytest.mark.parametrize("endpoint", sorted(ALARM_REQUESTS))
@pytest.mark.parametrize(
    ("answer", "status", "alarm_after"),
    [("works", 200, "on"), ("not_found", 404, "off"), ("not_allowed", 405, "off")],
)
def test_each_alarm_endpoint_can_work_or_be_missing(
    account: SimulatedAccount,
    api: requests.Session,
    base: str,
    endpoint: str,
    answer: str,
    status: int,
    alarm_after: str,
) -> None:
    account.alarm_endpoints = AlarmEndpoints(**{**vars(EVERY_ALARM_ENDPOINT), endpoint: answer})
    method, path = ALARM_REQUESTS[endpoint]

    answered = api.request(method, base + path, json={"alarm_status": "on"})

    assert answered.status_code == status
    assert answered.json()["alarm_status" if status == 200 else "error"]
    assert home(account)["alarm_status"] == alarm_after


def test_older_clients_api_arms_only_through_put_home(
    account: SimulatedAccount, api: requests.Session, base: str
) -> None:
    account.alarm_endpoints = OLD_ALARM_ENDPOINTS

    statuses = [
        api.patch(f"{base}/homes/home1/alarm", json={"alarm_status": "on"}).status_code,
        api.put(f"{base}/homes/home1/alarm", json={"alarm_status": "on"}).status_code,
    ]
    assert home(account)["alarm_status"] == "off"
    armed = api.put(f"{base}/homes/home1", json={"alarm_status": "on"})

    assert statuses == [404, 404]
    assert armed.json()["alarm_status"] == "on"
    assert home(account)["alarm_status"] == "on"


def test_put_home_refusing_alarm_status_still_sets_noise_monitoring(
    account: SimulatedAccount, api: requests.Session, base: str
) -> None:
    account.alarm_endpoints = AlarmEndpoints(put_home="not_allowed")

    refused = api.put(
        f"{base}/homes/home1", json={"alarm_status": "on", "disturbance_monitoring_active": False}
    )
    monitoring_only = api.put(f"{base}/homes/home1", json={"disturbance_monitoring_active": False})

    assert_refused(refused, 405)
    assert monitoring_only.status_code == 200
    assert home(account)["disturbance_monitoring_active"] is False
    assert home(account)["alarm_status"] == "off"


def test_arming_passes_through_the_grace_period(
    account: SimulatedAccount, api: requests.Session, base: str
) -> None:
    account.alarm_grace_seconds = 0.3

    armed = api.patch(f"{base}/homes/home1/alarm", json={"alarm_status": "on"})
    during = api.get(f"{base}/homes/home1").json()["alarm_status"]
    again = api.patch(f"{base}/homes/home1/alarm", json={"alarm_status": "on"})
    time.sleep(0.4)
    after = api.get(f"{base}/homes/home1").json()["alarm_status"]

    assert armed.json()["alarm_status"] == "on_grace_period"
    assert during == "on_grace_period"
    assert again.json()["alarm_status"] == "on_grace_period", "arming again restarts nothing"
    assert after == "on"


def test_disarming_during_the_grace_period_stays_disarmed(account: SimulatedAccount) -> None:
    account.alarm_grace_seconds = 0.2

    assert account.arm("home1")["alarm_status"] == "on_grace_period"
    assert account.disarm("home1")["alarm_status"] == "off"
    time.sleep(0.3)

    assert home(account)["alarm_status"] == "off"
    with pytest.raises(ValueError, match="at least 0"):
        account.alarm_grace_seconds = -1


@pytest.mark.parametrize(
    "body",
    [
        {"alarm_status": "maybe"},
        {"alarm_status": "on_grace_period"},
        {"alarm_status": True},
        {"alarm_mode": "manual"},
        {"alarm_status": "on", "alarm_mode": "scheduled"},
        {"alarm_status": "on", "silent_alarm": True},
        ["on"],
    ],
)
def test_invalid_alarm_requests_are_400_and_change_nothing(
    account: SimulatedAccount, api: requests.Session, base: str, body: Any
) -> None:
    before = home(account)

    answer = api.patch(f"{base}/homes/home1/alarm", json=body)

    assert_refused(answer)
    assert home(account) == before


def test_alarm_of_an_unknown_home_is_404(api: requests.Session, base: str) -> None:
    assert_refused(api.patch(f"{base}/homes/nowhere/alarm", json={"alarm_status": "on"}), 404)
    assert_refused(api.put(f"{base}/homes/nowhere", json={"alarm_status": "on"}), 404)


# --- noise monitoring ------------------------------------------------------------------------


def test_noise_monitoring_is_switched_through_put_home(
    account: SimulatedAccount, api: requests.Session, base: str
) -> None:
    off = api.put(f"{base}/homes/home1", json={"disturbance_monitoring_active": False})
    shown = api.get(f"{base}/homes/home1").json()["disturbance_monitoring_active"]
    on = account.update_home("home1", {"disturbance_monitoring_active": True})

    assert (off.status_code, off.json()["disturbance_monitoring_active"]) == (200, False)
    assert shown is False
    assert on["disturbance_monitoring_active"] is True


@pytest.mark.parametrize(
    "body",
    [
        {"disturbance_monitoring_active": "false"},
        {"disturbance_monitoring_active": 0},
        {"disturbance_monitoring_active": None},
        {"disturbance_monitoring_active": False, "name": "Renamed"},
        {"disturbance_monitoring_active": False, "home_id": "other"},
    ],
)
def test_invalid_home_settings_are_400_and_change_nothing(
    account: SimulatedAccount, api: requests.Session, base: str, body: dict[str, Any]
) -> None:
    before = home(account)

    assert_refused(api.put(f"{base}/homes/home1", json=body))
    assert home(account) == before


# --- thresholds ------------------------------------------------------------------------------


def test_devices_show_their_reactions_and_quiet_hours(api: requests.Session, base: str) -> None:
    listed = api.get(f"{base}/devices").json()["devices"]
    hallway = api.get(f"{base}/devices/dev1").json()

    assert listed[0] == hallway
    assert hallway["reactions"] == [
        {"type": "sound_level_high", "value": 75, "duration_seconds": 600, "notifications": []},
        {
            "type": "sound_level_high_quiet_hours",
            "value": 70,
            "duration_seconds": 600,
            "notifications": [],
        },
    ]
    assert hallway["quiet_hours"] == {"enabled": False, "start": "22:00", "end": "07:00"}
    assert not {"reactions", "quiet_hours"} & set(listed[1]), "a device may carry neither"


def test_reactions_merge_by_type_each_replaced_whole(
    account: SimulatedAccount, api: requests.Session, base: str
) -> None:
    changed = {"type": "sound_level_high", "value": 60, "notifications": ["push"]}
    added = reaction("temperature_high", 27.5, 900)

    answer = api.put(f"{base}/devices/dev1", json={"reactions": [added, changed]})

    assert answer.status_code == 200, answer.text
    shown = api.get(f"{base}/devices/dev1").json()
    assert [entry["type"] for entry in shown["reactions"]] == [
        "sound_level_high",
        "sound_level_high_quiet_hours",
        "temperature_high",
    ]
    assert reactions_by_type(shown)["sound_level_high"] == changed, "no duration: replaced whole"
    assert reactions_by_type(shown)["sound_level_high_quiet_hours"]["value"] == 70
    assert reactions_by_type(shown)["temperature_high"] == added
    assert answer.json() == shown
    assert shown["description"] == "Hallway"


def test_a_device_without_reactions_gets_the_ones_written(api: requests.Session, base: str) -> None:
    written = [reaction("humidity_high", 70), reaction("humidity_low", 25)]

    answer = api.put(f"{base}/devices/dev2", json={"reactions": written})

    assert answer.json()["reactions"] == written


def test_quiet_hours_merge_by_key(api: requests.Session, base: str) -> None:
    api.put(f"{base}/devices/dev1", json={"quiet_hours": {"enabled": True}})
    answer = api.put(f"{base}/devices/dev1", json={"quiet_hours": {"start": "23:30"}})
    fresh = api.put(f"{base}/devices/dev2", json={"quiet_hours": {"end": "08:00"}})

    assert answer.json()["quiet_hours"] == {"enabled": True, "start": "23:30", "end": "07:00"}
    assert fresh.json()["quiet_hours"] == {"enabled": False, "start": "22:00", "end": "08:00"}


def test_description_is_writable(
    account: SimulatedAccount, api: requests.Session, base: str
) -> None:
    api.put(f"{base}/devices/dev1", json={"description": "Front door"})

    assert device(account)["description"] == "Front door"


def sound(value: Any, duration: Any = 600) -> dict[str, Any]:
    return {
        "reactions": [{"type": "sound_level_high", "value": value, "duration_seconds": duration}]
    }


@pytest.mark.parametrize(
    "body",
    [
        sound(44),
        sound(91),
        sound(70.5),
        sound(True),
        sound("70"),
        sound(None),
        sound(70, 299),
        sound(70, 960),
        sound(70, 630),
        sound(70, "600"),
        {"reactions": [{"type": "sound_level_high"}]},
        {"reactions": [{"value": 70}]},
        {"reactions": [{**reaction("sound_level_high", 70), "notifications": "push"}]},
        {"reactions": [reaction("sound_level_high", 70), reaction("sound_level_high", 71)]},
        {"reactions": [reaction("co2_high", 900)]},
        {"reactions": [reaction("temperature_high", 60)]},
        {"reactions": [reaction("humidity_low", -1)]},
        {"reactions": reaction("sound_level_high", 70)},
        {"quiet_hours": {"start": "24:00"}},
        {"quiet_hours": {"end": "7:00"}},
        {"quiet_hours": {"enabled": "yes"}},
        {"quiet_hours": {"enabled": True, "days": ["mon"]}},
        {"quiet_hours": ["22:00", "07:00"]},
        {"description": ""},
        {"battery": {"percent": 100}},
        {"home": "elsewhere"},
        # a valid change beside an invalid one: neither is made
        {"quiet_hours": {"enabled": True}, "reactions": [reaction("sound_level_high", 200)]},
        {
            "reactions": [
                reaction("sound_level_high", 60),
                reaction("sound_level_high_quiet_hours", 5),
            ]
        },
    ],
)
def test_invalid_device_settings_are_400_and_change_nothing(
    account: SimulatedAccount, api: requests.Session, base: str, body: dict[str, Any]
) -> None:
    before = device(account)

    answer = api.put(f"{base}/devices/dev1", json=body)

    assert_refused(answer)
    assert device(account) == before


def test_the_limits_are_the_ones_enforced(account: SimulatedAccount) -> None:
    for reaction_type, limits in REACTION_LIMITS.items():
        for value in (limits.minimum, limits.maximum):
            for duration in (DURATION_LIMITS.minimum, DURATION_LIMITS.maximum):
                written = reaction(reaction_type, value, int(duration))
                shown = account.update_device("dev1", {"reactions": [written]})
                assert reactions_by_type(shown)[reaction_type] == written
        with pytest.raises(ValueError, match=reaction_type):
            account.update_device(
                "dev1", {"reactions": [reaction(reaction_type, limits.maximum + limits.step)]}
            )
    assert REACTION_LIMITS["sound_level_high"].admits(75)
    assert REACTION_LIMITS["sound_level_high_quiet_hours"].admits(70)
    assert DURATION_LIMITS.admits(600) and not DURATION_LIMITS.admits(601)


def test_a_reaction_type_no_one_has_heard_of_is_shown_and_writable(
    account: SimulatedAccount, api: requests.Session, base: str
) -> None:
    future = {"type": "co2_high", "value": 1000, "duration_seconds": 600, "notifications": []}
    account.set_reactions("dev2", [future])

    shown = api.get(f"{base}/devices/dev2").json()["reactions"]
    written = api.put(
        f"{base}/devices/dev2", json={"reactions": [{**future, "value": 1234.5}]}
    ).json()["reactions"]

    assert shown == [future]
    assert written == [{**future, "value": 1234.5}]
    with pytest.raises(ValueError, match="string type"):
        account.set_reactions("dev2", [{"value": 1}])


# --- guests ----------------------------------------------------------------------------------


def test_guests_are_listed_by_check_in_with_the_default_names(
    account: SimulatedAccount, api: requests.Session, base: str
) -> None:
    later = account.add_guest(
        "home1", "Sam", CHECK_IN + timedelta(days=7), CHECK_OUT + timedelta(days=7)
    )
    first = account.add_guest("home1", "Alex", CHECK_IN, CHECK_OUT, phone_number="+46701234567")

    listed = api.get(f"{base}/homes/home1/guests").json()
    single = api.get(f"{base}/homes/home1/guests/{first['guest_id']}").json()

    assert listed == {"guests": [first, later]}
    assert (
        single
        == first
        == {
            "guest_id": first["guest_id"],
            "name": "Alex",
            "check_in_at": "2026-11-20T14:00:00.000Z",
            "check_out_at": "2026-11-23T10:00:00.000Z",
            "phone_number": "+46701234567",
        }
    )
    assert account.list_guests("home1") == [first, later]


def test_guests_are_created_replaced_patched_and_deleted(
    account: SimulatedAccount, api: requests.Session, base: str
) -> None:
    stay = {
        "name": "Alex",
        "check_in_at": "2026-11-20T15:00:00+01:00",
        "check_out_at": "2026-11-23T10:00:00.000Z",
        "phone_number": "+46701234567",
        "email": "alex@example.com",
    }

    created = api.post(f"{base}/homes/home1/guests", json=stay)
    url = f"{base}/homes/home1/guests/{created.json()['guest_id']}"
    patched = api.patch(url, json={"check_out_at": "2026-11-24T10:00:00Z"})
    replaced = api.put(
        url, json={"name": "Robin", "check_in_at": 1795000000, "check_out_at": 1795100000}
    )
    deleted = api.delete(url)
    gone = api.get(url)

    assert created.status_code == 201
    assert created.json()["check_in_at"] == "2026-11-20T14:00:00.000Z"
    assert created.json()["email"] == "alex@example.com", "fields the style does not name are kept"
    assert patched.json() == {**created.json(), "check_out_at": "2026-11-24T10:00:00.000Z"}
    assert replaced.json() == {
        "guest_id": created.json()["guest_id"],
        "name": "Robin",
        "check_in_at": format_time(datetime.fromtimestamp(1795000000, UTC)),
        "check_out_at": format_time(datetime.fromtimestamp(1795100000, UTC)),
        "phone_number": None,
    }
    assert deleted.status_code == 204
    assert_refused(gone, 404)
    assert account.list_guests("home1") == []


@pytest.mark.parametrize(
    "body",
    [
        {"check_in_at": "2026-11-20T14:00:00Z", "check_out_at": "2026-11-23T10:00:00Z"},
        {"name": "", "check_in_at": "2026-11-20T14:00:00Z", "check_out_at": "2026-11-23T10:00:00Z"},
        {"name": 7, "check_in_at": "2026-11-20T14:00:00Z", "check_out_at": "2026-11-23T10:00:00Z"},
        {"name": "Alex", "check_out_at": "2026-11-23T10:00:00Z"},
        {"name": "Alex", "check_in_at": "soon", "check_out_at": "2026-11-23T10:00:00Z"},
        {"name": "Alex", "check_in_at": True, "check_out_at": "2026-11-23T10:00:00Z"},
        {
            "name": "Alex",
            "check_in_at": "2026-11-23T10:00:00Z",
            "check_out_at": "2026-11-20T14:00:00Z",
        },
        {
            "name": "Alex",
            "check_in_at": "2026-11-20T14:00:00Z",
            "check_out_at": "2026-11-23T10:00:00Z",
            "phone_number": 46701234567,
        },
    ],
)
def test_invalid_guests_are_400_and_change_nothing(
    account: SimulatedAccount, api: requests.Session, base: str, body: dict[str, Any]
) -> None:
    existing = account.add_guest("home1", "Alex", CHECK_IN, CHECK_OUT)
    url = f"{base}/homes/home1/guests"

    assert_refused(api.post(url, json=body))
    assert_refused(api.put(f"{url}/{existing['guest_id']}", json=body))
    assert account.list_guests("home1") == [existing]


def test_a_patch_cannot_make_a_stay_end_before_it_starts(
    account: SimulatedAccount, api: requests.Session, base: str
) -> None:
    existing = account.add_guest("home1", "Alex", CHECK_IN, CHECK_OUT)

    answer = api.patch(
        f"{base}/homes/home1/guests/{existing['guest_id']}",
        json={"check_out_at": "2026-11-01T10:00:00Z"},
    )

    assert_refused(answer)
    assert account.get_guest("home1", existing["guest_id"]) == existing


def test_unknown_homes_and_guests_are_404(
    account: SimulatedAccount, api: requests.Session, base: str
) -> None:
    account.add_home("home2", "City flat")
    elsewhere = account.add_guest("home2", "Kim", CHECK_IN, CHECK_OUT)
    stay = {
        "name": "Alex",
        "check_in_at": "2026-11-20T14:00:00Z",
        "check_out_at": "2026-11-23T10:00:00Z",
    }

    assert_refused(api.get(f"{base}/homes/nowhere/guests"), 404)
    assert_refused(api.post(f"{base}/homes/nowhere/guests", json=stay), 404)
    wrong_home = f"{base}/homes/home1/guests/{elsewhere['guest_id']}"
    assert_refused(api.get(wrong_home), 404)
    assert_refused(api.put(wrong_home, json=stay), 404)
    assert_refused(api.patch(wrong_home, json={"name": "Sam"}), 404)
    assert_refused(api.delete(wrong_home), 404)
    assert account.list_guests("home2") == [elsewhere]
    assert account.remove_guest("home2", elsewhere["guest_id"]) is True
    assert account.remove_guest("home2", elsewhere["guest_id"]) is False
    with pytest.raises(KeyError):
        account.list_guests("nowhere")


def test_other_guest_style_names_local_times_and_paging(
    account: SimulatedAccount, api: requests.Session, base: str
) -> None:
    account.guest_style = OTHER_GUEST_STYLE
    for day in range(3):
        account.add_guest(
            "home1",
            f"Guest {day}",
            CHECK_IN + timedelta(days=7 * day),
            CHECK_OUT + timedelta(days=7 * day),
        )

    page = api.get(f"{base}/homes/home1/guests", params={"limit": 2, "offset": 1}).json()
    created = api.post(
        f"{base}/homes/home1/guests",
        json={"guest_name": "Alex", "checkin": "2027-06-01T15:00:00+02:00", "checkout": 1812000000},
    )
    default_names = api.post(
        f"{base}/homes/home1/guests",
        json={
            "name": "Alex",
            "check_in_at": "2027-06-01T13:00:00Z",
            "check_out_at": "2027-06-03T09:00:00Z",
        },
    )

    assert page["paging"] == {"total_count": 3, "limit": 2, "offset": 1}
    assert [guest["guest_name"] for guest in page["guests"]] == ["Guest 1", "Guest 2"]
    assert set(page["guests"][0]) == {"id", "guest_name", "checkin", "checkout", "phone"}
    assert page["guests"][0]["checkin"] == "2026-11-27T15:00:00+01:00", "Stockholm in winter"
    assert created.status_code == 201
    assert created.json()["checkin"] == "2027-06-01T15:00:00+02:00", "and in summer"
    assert_refused(default_names)
    assert "guest_name" in default_names.json()["message"]


def test_guest_lists_bare_or_with_epoch_times(
    account: SimulatedAccount, api: requests.Session, base: str
) -> None:
    account.add_guest("home1", "Alex", CHECK_IN, CHECK_OUT)
    account.guest_style = GuestStyle(list_key=None, time_format="epoch")

    listed = api.get(f"{base}/homes/home1/guests").json()

    assert isinstance(listed, list)
    assert listed[0]["check_in_at"] == int(CHECK_IN.timestamp())
    with pytest.raises(ValueError, match="list_key"):
        GuestStyle(list_key=None, paging=Paging())


# --- the write log, the budget and faults ----------------------------------------------------


def test_every_write_is_logged_with_its_body_and_answer(
    account: SimulatedAccount, simulator: SimulatorServer, api: requests.Session, base: str
) -> None:
    api.get(f"{base}/homes/home1")
    api.patch(f"{base}/homes/home1/alarm", json={"alarm_status": "on"})
    api.put(f"{base}/homes/home1/alarm", json={"alarm_status": "off"})
    api.put(f"{base}/devices/dev1", json={"reactions": [reaction("sound_level_high", 10)]})
    api.put(f"{base}/devices/dev1", data="not json", headers={"Content-Type": "application/json"})
    requests.patch(f"{base}/homes/home1/alarm", json={"alarm_status": "off"})
    api.delete(f"{base}/homes/home1/guests/none")

    assert account.writes == [
        RecordedWrite("PATCH", "/v8/homes/home1/alarm", {"alarm_status": "on"}, 200),
        RecordedWrite("PUT", "/v8/homes/home1/alarm", {"alarm_status": "off"}, 405),
        RecordedWrite(
            "PUT", "/v8/devices/dev1", {"reactions": [reaction("sound_level_high", 10)]}, 400
        ),
        RecordedWrite("PUT", "/v8/devices/dev1", None, 400),
        RecordedWrite("PATCH", "/v8/homes/home1/alarm", {"alarm_status": "off"}, 401),
        RecordedWrite("DELETE", "/v8/homes/home1/guests/none", None, 404),
    ], "no GET, no token request"
    assert home(account)["alarm_status"] == "on", "the unauthenticated disarm did nothing"
    account.writes[0].body["alarm_status"] = "changed"
    assert account.writes[0].body == {"alarm_status": "on"}, "a copy"
    account.clear_writes()
    assert account.writes == []


def test_writes_spend_the_request_budget_like_reads() -> None:
    account = make_account(rate_limit_per_minute=4)
    with SimulatorServer(account) as simulator, session_for(simulator) as api:
        base = simulator.base_url
        statuses = [
            api.get(f"{base}/homes").status_code,
            api.patch(f"{base}/homes/home1/alarm", json={"alarm_status": "on"}).status_code,
            api.put(f"{base}/devices/dev1", json={"description": "Door"}).status_code,
            api.get(f"{base}/devices").status_code,
        ]
        refused = api.patch(f"{base}/homes/home1/alarm", json={"alarm_status": "off"})
        refused_read = api.get(f"{base}/homes")

    assert statuses == [200, 200, 200, 200]
    assert_refused(refused, 429)
    assert int(refused.headers["Retry-After"]) >= 1
    assert refused_read.status_code == 429
    assert home(account)["alarm_status"] == "on", "the refused write changed nothing"
    assert account.writes[-1] == RecordedWrite(
        "PATCH", "/v8/homes/home1/alarm", {"alarm_status": "off"}, 429
    )


def test_planned_failures_hit_writes_and_change_nothing(
    account: SimulatedAccount, api: requests.Session, base: str
) -> None:
    account.fail_next(1, status=503, retry_after=3, paths="/homes/home1/alarm")
    account.fail_next(1, status=500)

    failed_alarm = api.patch(f"{base}/homes/home1/alarm", json={"alarm_status": "on"})
    failed_device = api.put(f"{base}/devices/dev1", json={"description": "Door"})
    recovered = api.patch(f"{base}/homes/home1/alarm", json={"alarm_status": "on"})

    assert (failed_alarm.status_code, failed_alarm.headers["Retry-After"]) == (503, "3")
    assert failed_device.status_code == 500
    assert device(account)["description"] == "Hallway"
    assert recovered.json()["alarm_status"] == "on"
    assert [write.status for write in account.writes] == [503, 500, 200]


# --- the demo --------------------------------------------------------------------------------


def test_demo_homes_have_thresholds_guests_and_a_grace_period() -> None:
    account = demo_account()
    now = datetime.now(UTC)

    devices = {entry["description"]: entry for entry in account.list_devices()}
    beach = account.list_guests("beach-house")
    city = account.list_guests("city-flat")

    assert all(reactions_by_type(entry)["sound_level_high"] for entry in devices.values())
    assert devices["Hallway"]["quiet_hours"]["enabled"] is True
    assert {"temperature_high", "humidity_high"} <= set(reactions_by_type(devices["Living room"]))
    assert "future_reaction_type" in reactions_by_type(devices["Office"])
    current = [
        g for g in beach if parse_time(g["check_in_at"]) <= now < parse_time(g["check_out_at"])
    ]
    assert len(current) == 1
    assert any(parse_time(g["check_in_at"]) > now for g in beach)
    assert any(parse_time(g["check_in_at"]) > now for g in city)
    assert account.arm("beach-house")["alarm_status"] == "on_grace_period"
    assert demo_account(alarm_grace_seconds=0).arm("beach-house")["alarm_status"] == "on"


def test_demo_life_follows_the_controls() -> None:
    account = demo_account()
    for home_id in ("beach-house", "city-flat"):
        account.update_home(home_id, {"disturbance_monitoring_active": False})
    for entry in account.list_devices():
        account.update_device(entry["device_id"], {"reactions": [reaction("sound_level_high", 88)]})
    rng = random.Random(20261122)

    events = [account.random_event(rng) for _ in range(400)]

    assert not [event for event in events if event["type"] == "disturbance_first_notice"]
    loud = [event["sensor_value"] for event in events if event["type"] == "avg_sound_high"]
    assert loud and min(loud) >= 88


def test_naive_stay_times_are_utc(account: SimulatedAccount) -> None:
    guest = account.add_guest("home1", "Alex", datetime(2026, 12, 1, 14), datetime(2026, 12, 3, 10))

    assert guest["check_in_at"] == "2026-12-01T14:00:00.000Z"
    with pytest.raises(ValueError, match="after"):
        account.add_guest("home1", "Sam", CHECK_OUT, CHECK_IN)
