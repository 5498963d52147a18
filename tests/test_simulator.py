"""The Minut API simulator follows the contract in docs/minut-api.md."""

import hashlib
import hmac
import json
import random
import socket
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
import requests

from minut2mqtt.simulator import SimulatedAccount, SimulatorServer, demo_account
from minut2mqtt.simulator.ratelimit import SlidingWindowLimiter
from minut2mqtt.simulator.timefmt import format_time, parse_time

CLIENT = ("sim-client", "sim-secret")
DEVICE_FIELDS = {
    "device_id",
    "home",
    "description",
    "device_mac",
    "hardware_version",
    "firmware",
    "timezone",
    "active",
    "offline",
    "first_seen_at",
    "last_heard_from_at",
    "last_heartbeat_at",
    "next_heartbeat_at",
    "battery",
    "ongoing_events",
}
HOME_FIELDS = {
    "home_id",
    "name",
    "timezone",
    "devices",
    "alarm_status",
    "alarm_mode",
    "silent_alarm",
    "disturbance_monitoring_active",
    "address",
    "members",
    "created_at",
}
TIME_PATTERN = r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$"


def small_account(
    token_lifetime: int = 3600, rate_limit_per_minute: int = 120, burst_per_second: int = 5
) -> SimulatedAccount:
    account = SimulatedAccount(
        client_id=CLIENT[0],
        client_secret=CLIENT[1],
        token_lifetime=token_lifetime,
        rate_limit_per_minute=rate_limit_per_minute,
        burst_per_second=burst_per_second,
    )
    account.add_home(home_id="home1", name="Beach house", timezone="Europe/Stockholm")
    account.add_device(
        device_id="dev1",
        home_id="home1",
        description="Hallway",
        hardware_version=2,
        firmware="2.1.0",
        battery_percent=87,
        readings={"temperature": 21.4, "humidity": 45.0, "sound": 38.5},
    )
    account.add_device(device_id="dev2", home_id="home1", description="Bedroom", readings=None)
    return account


@pytest.fixture
def account() -> SimulatedAccount:
    return small_account(burst_per_second=100)


@pytest.fixture
def server(account: SimulatedAccount) -> Iterator[SimulatorServer]:
    with SimulatorServer(account) as running:
        yield running


def fetch_token(server: SimulatorServer) -> str:
    answer = requests.post(
        f"{server.base_url}/oauth/token", data={"grant_type": "client_credentials"}, auth=CLIENT
    )
    assert answer.status_code == 200, answer.text
    token: str = answer.json()["access_token"]
    return token


def api(server: SimulatorServer, token: str | None = None) -> requests.Session:
    session = requests.Session()
    session.headers["Authorization"] = f"Bearer {token or fetch_token(server)}"
    return session


# --- OAuth -----------------------------------------------------------------------------------


def test_client_credentials_with_basic_auth_answers_bearer_token_without_refresh(
    server: SimulatorServer,
) -> None:
    answer = requests.post(
        f"{server.base_url}/oauth/token", data={"grant_type": "client_credentials"}, auth=CLIENT
    )

    assert answer.status_code == 200
    body = answer.json()
    assert set(body) == {"access_token", "token_type", "expires_in"}
    assert body["token_type"] == "Bearer"
    assert body["expires_in"] == 3600


def test_client_credentials_with_secret_in_form_body(server: SimulatorServer) -> None:
    form = {"grant_type": "client_credentials", "client_id": CLIENT[0], "client_secret": CLIENT[1]}
    answer = requests.post(f"{server.base_url}/oauth/token", data=form)

    assert answer.status_code == 200
    me = api(server, answer.json()["access_token"]).get(f"{server.base_url}/users/me")
    assert me.json() == {"user_id": "sim-user", "email": "owner@example.com"}


@pytest.mark.parametrize(
    ("auth", "form"),
    [
        (("sim-client", "wrong"), {}),
        (None, {"client_id": "sim-client", "client_secret": "wrong"}),
        (None, {}),
    ],
)
def test_bad_client_credentials_are_invalid_client(
    server: SimulatorServer, auth: tuple[str, str] | None, form: dict[str, str]
) -> None:
    answer = requests.post(
        f"{server.base_url}/oauth/token",
        data={"grant_type": "client_credentials", **form},
        auth=auth,
    )

    assert answer.status_code == 401
    assert answer.json()["error"] == "invalid_client"


def test_unsupported_grant_type(server: SimulatorServer) -> None:
    answer = requests.post(
        f"{server.base_url}/oauth/token", data={"grant_type": "password"}, auth=CLIENT
    )

    assert answer.status_code == 400
    assert answer.json()["error"] == "unsupported_grant_type"


def test_revoked_client_gets_no_tokens_until_restored(
    account: SimulatedAccount, server: SimulatorServer
) -> None:
    account.revoke_client()
    answer = requests.post(
        f"{server.base_url}/oauth/token", data={"grant_type": "client_credentials"}, auth=CLIENT
    )
    assert (answer.status_code, answer.json()["error"]) == (401, "invalid_client")

    account.restore_client()
    assert fetch_token(server)


@pytest.mark.parametrize("authorization", [None, "Bearer not-a-token", "Basic c2ltOnNpbQ=="])
def test_calls_without_a_valid_bearer_token_are_invalid_token(
    server: SimulatorServer, authorization: str | None
) -> None:
    headers = {"Authorization": authorization} if authorization else {}
    answer = requests.get(f"{server.base_url}/devices", headers=headers)

    assert answer.status_code == 401
    assert answer.json()["error"] == "invalid_token"


def test_token_stops_working_after_its_lifetime() -> None:
    with SimulatorServer(small_account(token_lifetime=1)) as server:
        session = api(server)
        assert session.get(f"{server.base_url}/devices").status_code == 200

        time.sleep(1.1)

        expired = session.get(f"{server.base_url}/devices")
        assert (expired.status_code, expired.json()["error"]) == (401, "invalid_token")
        assert api(server).get(f"{server.base_url}/devices").status_code == 200


def test_expire_tokens_revokes_every_issued_token(
    account: SimulatedAccount, server: SimulatorServer
) -> None:
    session = api(server)
    account.expire_tokens()

    assert session.get(f"{server.base_url}/devices").status_code == 401
    assert api(server).get(f"{server.base_url}/devices").status_code == 200


# --- OAuth: authorization code ----------------------------------------------------------------

CALLBACK = "http://localhost:8000/api/minut"


def authorize_params(**changes: str) -> dict[str, str]:
    return {
        "client_id": CLIENT[0],
        "redirect_uri": CALLBACK,
        "response_type": "code",
        "state": "st-1",
        **changes,
    }


def decide(server: SimulatorServer, decision: str, **changes: str) -> dict[str, list[str]]:
    """Submit the approve page's form; the query Minut sends the browser back with."""
    answer = requests.post(
        f"{server.base_url}/oauth/authorize",
        data={**authorize_params(**changes), "decision": decision},
        allow_redirects=False,
    )
    assert answer.status_code == 302
    location = answer.headers["Location"]
    assert location.startswith(changes.get("redirect_uri", CALLBACK) + "?")
    return parse_qs(urlsplit(location).query)


def exchange(server: SimulatorServer, code: str, redirect_uri: str = CALLBACK) -> requests.Response:
    form = {"grant_type": "authorization_code", "code": code, "redirect_uri": redirect_uri}
    return requests.post(f"{server.base_url}/oauth/token", data=form, auth=CLIENT)


def refresh(server: SimulatorServer, refresh_token: str) -> requests.Response:
    form = {
        "grant_type": "refresh_token",
        "refresh_token": refresh_token,
        "client_id": CLIENT[0],
        "client_secret": CLIENT[1],
    }
    return requests.post(f"{server.base_url}/oauth/token", data=form)


def test_authorize_page_asks_the_user_with_escaped_values(server: SimulatorServer) -> None:
    answer = requests.get(
        f"{server.base_url}/oauth/authorize", params=authorize_params(state='"><b>x')
    )
    assert answer.status_code == 200
    assert answer.headers["Content-Type"].startswith("text/html")
    assert 'id="approve"' in answer.text and 'id="deny"' in answer.text
    assert "owner@example.com" in answer.text and CALLBACK in answer.text
    assert "<b>x" not in answer.text and "&quot;&gt;&lt;b&gt;x" in answer.text


@pytest.mark.parametrize(
    "changes", [{"client_id": "someone-else"}, {"redirect_uri": "javascript:alert(1)"}]
)
def test_authorize_never_redirects_for_an_unknown_client_or_a_bad_redirect_uri(
    server: SimulatorServer, changes: dict[str, str]
) -> None:
    answer = requests.get(
        f"{server.base_url}/oauth/authorize",
        params=authorize_params(**changes),
        allow_redirects=False,
    )
    assert answer.status_code == 400


def test_deny_sends_the_browser_back_with_access_denied_and_the_state(
    server: SimulatorServer,
) -> None:
    assert decide(server, "deny") == {"error": ["access_denied"], "state": ["st-1"]}


def test_an_approved_code_is_exchanged_once_for_rotating_tokens(
    account: SimulatedAccount, server: SimulatorServer
) -> None:
    back = decide(server, "approve")
    assert back["state"] == ["st-1"]
    code = back["code"][0]

    answer = exchange(server, code)
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert set(body) == {"access_token", "token_type", "expires_in", "refresh_token", "user_id"}
    assert body["user_id"] == "sim-user"
    assert api(server, body["access_token"]).get(f"{server.base_url}/devices").status_code == 200
    assert exchange(server, code).json()["error"] == "invalid_grant"  # single use

    renewed = refresh(server, body["refresh_token"])
    assert renewed.status_code == 200
    assert renewed.json()["refresh_token"] != body["refresh_token"]
    old_again = refresh(server, body["refresh_token"])
    assert (old_again.status_code, old_again.json()["error"]) == (400, "invalid_grant")
    assert [leg for leg, _ in account.oauth_log] == ["token"] * 4
    assert all("client_secret" not in params for _, params in account.oauth_log)


def test_the_exchange_needs_the_authorize_requests_redirect_uri(server: SimulatorServer) -> None:
    code = decide(server, "approve")["code"][0]
    form = {"grant_type": "authorization_code", "code": code}  # redirect_uri left out
    answer = requests.post(f"{server.base_url}/oauth/token", data=form, auth=CLIENT)
    assert (answer.status_code, answer.json()["error"]) == (400, "invalid_grant")
    code = decide(server, "approve")["code"][0]
    assert exchange(server, code, "http://elsewhere/api/minut").json()["error"] == "invalid_grant"


def test_codes_are_short_lived(account: SimulatedAccount, server: SimulatorServer) -> None:
    account.code_lifetime = 0
    code = decide(server, "approve")["code"][0]
    assert exchange(server, code).json()["error"] == "invalid_grant"


def test_a_revoked_user_grant_ends_its_access_and_refresh_tokens(
    account: SimulatedAccount, server: SimulatorServer
) -> None:
    body = exchange(server, decide(server, "approve")["code"][0]).json()
    other_client_token = fetch_token(server)
    account.revoke_user_grant()
    devices = api(server, body["access_token"]).get(f"{server.base_url}/devices")
    assert devices.status_code == 401
    assert refresh(server, body["refresh_token"]).status_code == 400
    assert api(server, other_client_token).get(f"{server.base_url}/devices").status_code == 200


def test_user_tokens_follow_the_token_lifetime() -> None:
    account = small_account(token_lifetime=1)
    with SimulatorServer(account) as server:
        body = exchange(server, decide(server, "approve")["code"][0]).json()
        assert body["expires_in"] == 1
        time.sleep(1.1)
        devices = api(server, body["access_token"]).get(f"{server.base_url}/devices")
        assert devices.status_code == 401


# --- homes and devices -----------------------------------------------------------------------


def test_homes_list_and_single_home(server: SimulatorServer) -> None:
    session = api(server)

    homes = session.get(f"{server.base_url}/homes").json()["homes"]
    home = session.get(f"{server.base_url}/homes/home1").json()

    assert [listed["home_id"] for listed in homes] == ["home1"]
    assert home == homes[0]
    assert set(home) >= HOME_FIELDS
    assert home["devices"] == ["dev1", "dev2"]
    assert home["alarm_status"] == "off"
    assert home["created_at"] == format_time(parse_time(home["created_at"]))


def test_devices_carry_every_documented_field(server: SimulatorServer) -> None:
    devices = api(server).get(f"{server.base_url}/devices").json()["devices"]

    hallway = devices[0]
    assert DEVICE_FIELDS | {"latest_sensor_values"} == set(hallway)
    assert hallway["firmware"] == {"installed": "2.1.0", "wanted": "2.1.0"}
    assert hallway["battery"]["percent"] == 87
    assert 2.4 <= hallway["battery"]["voltage"] <= 3.0
    assert hallway["ongoing_events"] == []
    assert hallway["hardware_version"] == 2
    assert {key: value["value"] for key, value in hallway["latest_sensor_values"].items()} == {
        "temperature": 21.4,
        "humidity": 45.0,
        "sound": 38.5,
    }
    heartbeat = parse_time(hallway["next_heartbeat_at"]) - parse_time(hallway["last_heartbeat_at"])
    assert timedelta(minutes=59) < heartbeat <= timedelta(hours=1)


def test_device_without_readings_has_no_latest_sensor_values_key(
    server: SimulatorServer,
) -> None:
    device = api(server).get(f"{server.base_url}/devices/dev2").json()

    assert set(device) == DEVICE_FIELDS


@pytest.mark.parametrize(
    "path", ["/devices/missing", "/homes/missing", "/homes/missing/events", "/no/such/route"]
)
def test_unknown_things_are_json_404(server: SimulatorServer, path: str) -> None:
    answer = api(server).get(server.base_url + path)

    assert answer.status_code == 404
    assert answer.json()["error"] == "not_found"


def test_put_device_merges_settings(account: SimulatedAccount, server: SimulatorServer) -> None:
    reactions = [{"type": "sound_level_high", "value": 75, "duration_seconds": 600}]

    answer = api(server).put(f"{server.base_url}/devices/dev1", json={"reactions": reactions})

    assert answer.status_code == 200
    assert answer.json()["reactions"] == reactions
    stored = account.get_device("dev1")
    assert stored is not None
    assert stored["reactions"] == reactions
    assert stored["description"] == "Hallway"


def test_patch_alarm_arms_and_rejects_unknown_status(
    account: SimulatedAccount, server: SimulatorServer
) -> None:
    session = api(server)
    alarm_url = f"{server.base_url}/homes/home1/alarm"

    armed = session.patch(alarm_url, json={"alarm_status": "on", "alarm_mode": "manual"})
    rejected = session.patch(alarm_url, json={"alarm_status": "maybe"})

    assert armed.json()["alarm_status"] == "on"
    assert rejected.status_code == 400
    home = account.get_home("home1")
    assert home is not None
    assert home["alarm_status"] == "on"


def test_set_reading_updates_value_time_and_last_heard(account: SimulatedAccount) -> None:
    later = datetime.now(UTC) + timedelta(minutes=5)

    account.set_reading("dev2", "temperature", 18.25, time=later)

    device = account.get_device("dev2")
    assert device is not None
    assert device["latest_sensor_values"] == {
        "temperature": {"time": format_time(later), "value": 18.25}
    }
    assert device["last_heard_from_at"] == format_time(later)


def test_time_series_around_the_latest_value(server: SimulatorServer) -> None:
    session = api(server)
    end = datetime.now(UTC)
    window: dict[str, str | int] = {
        "start_at": format_time(end - timedelta(hours=3)),
        "end_at": format_time(end),
    }

    temperature = session.get(
        f"{server.base_url}/devices/dev1/temperature", params={**window, "time_resolution": 3600}
    ).json()["values"]
    without_readings = session.get(f"{server.base_url}/devices/dev2/humidity").json()["values"]
    unknown_sensor = session.get(f"{server.base_url}/devices/dev1/pressure")

    assert len(temperature) == 4
    assert all(abs(point["value"] - 21.4) < 1 for point in temperature)
    assert [parse_time(point["datetime"]) for point in temperature] == sorted(
        parse_time(point["datetime"]) for point in temperature
    )
    assert without_readings == []
    assert unknown_sensor.status_code == 404


# --- scripted failures and the request budget --------------------------------------------------


def test_fail_next_answers_the_scripted_status_then_recovers(
    account: SimulatedAccount, server: SimulatorServer
) -> None:
    session = api(server)
    account.fail_next(2, status=503, retry_after=7)

    first = session.get(f"{server.base_url}/devices")
    token_meanwhile = fetch_token(server)
    second = session.get(f"{server.base_url}/homes")
    third = session.get(f"{server.base_url}/devices")

    assert (first.status_code, first.headers["Retry-After"]) == (503, "7")
    assert first.json()["error"] == "service_unavailable"
    assert token_meanwhile
    assert second.status_code == 503
    assert third.status_code == 200


def test_fail_next_limited_to_a_path_prefix(
    account: SimulatedAccount, server: SimulatorServer
) -> None:
    session = api(server)
    account.fail_next(1, status=500, paths="/devices")

    homes = session.get(f"{server.base_url}/homes")
    devices = session.get(f"{server.base_url}/devices")

    assert homes.status_code == 200
    assert devices.status_code == 500
    assert "Retry-After" not in devices.headers


def test_fail_next_can_target_the_token_endpoint(
    account: SimulatedAccount, server: SimulatorServer
) -> None:
    account.fail_next(1, status=502, paths="/v8/oauth/token")

    answer = requests.post(
        f"{server.base_url}/oauth/token", data={"grant_type": "client_credentials"}, auth=CLIENT
    )

    assert answer.status_code == 502
    assert fetch_token(server)


def test_requests_over_the_minute_budget_get_429_with_retry_after() -> None:
    with SimulatorServer(small_account(rate_limit_per_minute=5, burst_per_second=100)) as server:
        session = api(server)
        statuses = [session.get(f"{server.base_url}/homes").status_code for _ in range(5)]
        refused = session.get(f"{server.base_url}/devices")
        fresh_token = fetch_token(server)
        still_refused = api(server, fresh_token).get(f"{server.base_url}/devices")

    assert statuses == [200] * 5
    assert refused.status_code == 429
    assert 55 <= int(refused.headers["Retry-After"]) <= 60
    assert still_refused.status_code == 429


def test_short_bursts_beyond_twice_the_per_second_rate_get_429() -> None:
    with SimulatorServer(small_account(rate_limit_per_minute=1000, burst_per_second=2)) as server:
        session = api(server)
        statuses = [session.get(f"{server.base_url}/homes").status_code for _ in range(5)]
        refused_retry_after = session.get(f"{server.base_url}/homes").headers.get("Retry-After")
        time.sleep(1.05)
        after_a_second = session.get(f"{server.base_url}/homes").status_code

    assert statuses == [200, 200, 200, 200, 429]
    assert refused_retry_after == "1"
    assert after_a_second == 200


def test_sliding_window_frees_a_slot_when_the_oldest_request_is_a_minute_old() -> None:
    limiter = SlidingWindowLimiter(per_minute=3, burst_per_second=10)

    admitted = [limiter.admit("client", now) for now in (0.0, 10.0, 20.0)]

    assert admitted == [None, None, None]
    assert limiter.admit("client", 30.0) == 30
    assert limiter.admit("other-client", 30.0) is None
    assert limiter.admit("client", 59.5) == 1
    assert limiter.admit("client", 60.0) is None
    assert limiter.admit("client", 61.0) == 9


def test_every_served_request_is_logged(account: SimulatedAccount, server: SimulatorServer) -> None:
    session = api(server)
    session.get(f"{server.base_url}/devices/missing")

    assert account.requests == [
        ("POST", "/v8/oauth/token", 200),
        ("GET", "/v8/devices/missing", 404),
    ]
    account.clear_requests()
    assert account.requests == []


# --- webhooks ----------------------------------------------------------------------------------


def test_webhooks_register_list_delete(server: SimulatorServer) -> None:
    session = api(server)
    hooks_url = f"{server.base_url}/webhooks"

    created = session.post(hooks_url, json={"url": "https://example.com/hook", "events": ["*"]})
    listed = session.get(hooks_url).json()["hooks"]
    hook_id = created.json()["hook_id"]
    deleted = session.delete(f"{hooks_url}/{hook_id}")
    deleted_again = session.delete(f"{hooks_url}/{hook_id}")

    assert created.status_code == 201
    assert set(created.json()) == {"hook_id", "url", "events", "created_at", "token", "hook_secret"}
    assert created.json()["token"] is False
    assert len(created.json()["hook_secret"]) >= 32
    assert listed == [
        {
            "hook_id": hook_id,
            "url": "https://example.com/hook",
            "events": ["*"],
            "created_at": created.json()["created_at"],
        }
    ]
    assert deleted.status_code == 204
    assert deleted_again.status_code == 404
    assert session.get(hooks_url).json()["hooks"] == []


@pytest.mark.parametrize(
    "body",
    [
        {"url": "https://example.com/hook", "events": ["*", "pir_motion"]},
        {"url": "https://example.com/hook", "events": "pir_motion"},
        {"url": "https://example.com/hook", "events": []},
        {"events": ["*"]},
    ],
)
def test_webhook_registration_is_validated(server: SimulatorServer, body: dict[str, Any]) -> None:
    answer = api(server).post(f"{server.base_url}/webhooks", json=body)

    assert answer.status_code == 400
    assert answer.json()["error"] == "bad_request"


class Receiver:
    """A local HTTP endpoint recording each POST's headers and raw body."""

    def __init__(self) -> None:
        self.received: list[tuple[dict[str, str], bytes]] = []
        received = self.received

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                received.append((dict(self.headers.items()), body))
                self.send_response(204)
                self.end_headers()

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.http_server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.http_server.server_address[1]}/minut"
        threading.Thread(target=self.http_server.serve_forever, args=(0.05,), daemon=True).start()


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    running = Receiver()
    yield running
    running.http_server.shutdown()
    running.http_server.server_close()


def test_delivery_is_signed_with_the_hook_secret_and_carries_the_token(
    account: SimulatedAccount, receiver: Receiver
) -> None:
    hook = account.register_webhook(receiver.url, events=["*"], token="shared-token")

    event = account.inject_event(
        "temperature_high", home_id="home1", device_id="dev1", sensor_value=29.5
    )

    assert account.wait_deliveries(timeout=5)
    [(headers, body)] = receiver.received
    expected_signature = hmac.new(hook["hook_secret"].encode(), body, hashlib.sha256).hexdigest()
    assert headers["X-Minut-Signature"] == expected_signature
    assert headers["X-Minut-Token"] == "shared-token"
    assert headers["Content-Type"] == "application/json"
    assert json.loads(body) == {"hook_id": hook["hook_id"], "event": event}
    assert account.deliveries == [(hook["hook_id"], receiver.url, 204)]


def test_delivery_goes_only_to_hooks_wanting_the_type_in_order(
    account: SimulatedAccount, receiver: Receiver
) -> None:
    account.register_webhook(receiver.url, events=["pir_motion", "glassbreak"])

    for event_type in ("pir_motion", "short_button_press", "glassbreak", "pir_motion"):
        account.inject_event(event_type, home_id="home1", device_id="dev1")

    assert account.wait_deliveries(timeout=5)
    delivered = [json.loads(body)["event"]["type"] for _, body in receiver.received]
    assert delivered == ["pir_motion", "glassbreak", "pir_motion"]
    assert "X-Minut-Token" not in receiver.received[0][0]


def test_failed_delivery_is_recorded_by_exception_name(account: SimulatedAccount) -> None:
    with socket.socket() as unused:
        unused.bind(("127.0.0.1", 0))
        closed_port = unused.getsockname()[1]
    url = f"http://127.0.0.1:{closed_port}/hook"
    hook = account.register_webhook(url)

    account.inject_event("pir_motion", home_id="home1", device_id="dev1")

    assert account.wait_deliveries(timeout=5)
    assert account.deliveries == [(hook["hook_id"], url, "ConnectionError")]


# --- events ------------------------------------------------------------------------------------


def ongoing(account: SimulatedAccount, device_id: str) -> list[str]:
    device = account.get_device(device_id)
    assert device is not None
    events: list[str] = device["ongoing_events"]
    return events


def test_inject_event_builds_the_event_object(account: SimulatedAccount) -> None:
    moment = datetime(2026, 11, 22, 10, 0, tzinfo=UTC)

    device_event = account.inject_event(
        "temperature_high", home_id="home1", device_id="dev1", created_at=moment, sensor_value=29.5
    )
    home_event = account.inject_event("disturbance_first_notice", home_id="home1")

    assert device_event == {
        "id": device_event["id"],
        "type": "temperature_high",
        "created_at": "2026-11-22T10:00:00.000Z",
        "home_id": "home1",
        "device_id": "dev1",
        "user_id": "sim-user",
        "sensor_value": 29.5,
    }
    assert "device_id" not in home_event
    assert home_event["id"] != device_event["id"]
    assert home_event["created_at"] == format_time(parse_time(home_event["created_at"]))


def test_state_events_switch_ongoing_events_on_and_off(account: SimulatedAccount) -> None:
    def inject(event_type: str) -> list[str]:
        account.inject_event(event_type, home_id="home1", device_id="dev1")
        return ongoing(account, "dev1")

    assert inject("temperature_high") == ["temperature_high"]
    assert inject("tamper_removed") == ["temperature_high", "tamper_removed"]
    assert inject("temperature_dropped_normal") == ["tamper_removed"]
    assert inject("tamper_mounted") == []
    assert inject("pir_motion") == []
    assert inject("future_event_type") == []
    assert ongoing(account, "dev2") == []


def test_home_events_apply_to_every_device_of_the_home(account: SimulatedAccount) -> None:
    account.inject_event("disturbance_first_notice", home_id="home1")
    assert ongoing(account, "dev1") == ongoing(account, "dev2") == ["disturbance_first_notice"]

    account.inject_event("alarm_heard", home_id="home1", device_id="dev2")
    account.inject_event("alarm_silenced", home_id="home1")
    account.inject_event("disturbance_ended", home_id="home1")
    assert ongoing(account, "dev1") == ongoing(account, "dev2") == []


def test_connectivity_events_flip_the_offline_flag(account: SimulatedAccount) -> None:
    account.inject_event("device_offline", home_id="home1", device_id="dev1")
    offline = account.get_device("dev1")
    account.inject_event("device_online", home_id="home1", device_id="dev1")
    online = account.get_device("dev1")

    assert offline is not None and offline["offline"] is True
    assert online is not None and online["offline"] is False
    assert online["ongoing_events"] == []


def test_home_events_are_paged_oldest_first_with_home_event_names(
    account: SimulatedAccount, server: SimulatorServer
) -> None:
    start = datetime(2026, 11, 22, 10, 0, tzinfo=UTC)
    kinds = ["pir_motion", "disturbance_first_notice", "glassbreak", "disturbance_ended", "x_new"]
    for minutes, event_type in reversed(list(enumerate(kinds))):
        device_id = None if event_type.startswith("disturbance") else "dev1"
        account.inject_event(
            event_type,
            home_id="home1",
            device_id=device_id,
            created_at=start + timedelta(minutes=minutes),
        )
    session = api(server)
    events_url = f"{server.base_url}/homes/home1/events"

    page = session.get(events_url, params={"limit": 2, "offset": 1}).json()
    everything = session.get(events_url).json()["home_events"]
    noise = session.get(events_url, params={"event_type": "noise_detected"}).json()
    window = session.get(
        events_url,
        params={
            "start_at": format_time(start + timedelta(minutes=1)),
            "end_at": format_time(start + timedelta(minutes=3)),
        },
    ).json()

    assert page["paging"] == {"total_count": 5, "limit": 2, "offset": 1}
    assert [event["event_type"] for event in page["home_events"]] == [
        "noise_detected",
        "glassbreak",
    ]
    assert [event["event_type"] for event in everything] == [
        "pir_motion",
        "noise_detected",
        "glassbreak",
        "noise_quieted",
        "x_new",
    ]
    assert {"event_id", "event_type", "event_time", "home_id", "device_id"} <= set(everything[0])
    assert "device_id" not in everything[1]
    assert everything[0]["event_time"] == format_time(start)
    assert [event["event_type"] for event in noise["home_events"]] == ["noise_detected"]
    assert window["paging"]["total_count"] == 3


def test_account_events_honour_order_limit_and_start(
    account: SimulatedAccount, server: SimulatorServer
) -> None:
    start = datetime(2026, 11, 22, 10, 0, tzinfo=UTC)
    injected = [
        account.inject_event(
            "pir_motion", home_id="home1", device_id="dev1", created_at=start + timedelta(hours=n)
        )
        for n in range(4)
    ]
    session = api(server)
    events_url = f"{server.base_url}/events"

    newest = session.get(events_url, params={"limit": 2}).json()["events"]
    oldest = session.get(events_url, params={"limit": "2", "order": "asc"}).json()["events"]
    since = session.get(
        events_url, params={"order": "asc", "start_at": format_time(start + timedelta(hours=2))}
    ).json()["events"]

    assert newest == [injected[3], injected[2]]
    assert oldest == injected[:2]
    assert since == injected[2:]
    assert session.get(events_url, params={"order": "sideways"}).status_code == 400


# --- the demo ----------------------------------------------------------------------------------


def test_demo_account_has_the_promised_homes_and_oddities() -> None:
    account = demo_account()

    homes = {home["name"]: home for home in account.list_homes()}
    devices = {device["description"]: device for device in account.list_devices()}

    assert set(homes) == {"Beach house", "City flat"}
    assert len(homes["Beach house"]["devices"]) == 3
    assert len(homes["City flat"]["devices"]) == 2
    assert set(devices) == {"Hallway", "Living room", "Bedroom", "Kitchen", "Office"}
    assert [name for name, device in devices.items() if device["offline"]] == ["Kitchen"]
    assert [name for name, device in devices.items() if "latest_sensor_values" not in device] == [
        "Office"
    ]
    assert {"pressure", "part_als"} <= set(devices["Bedroom"]["latest_sensor_values"])
    assert all(set(device) >= DEVICE_FIELDS for device in devices.values())


def test_drift_and_random_events_keep_the_demo_consistent() -> None:
    account = demo_account()
    rng = random.Random(20261122)
    kitchen_before = account.get_device("point-kitchen")
    office_before = account.get_device("point-office")
    assert office_before is not None

    events = []
    for _ in range(300):
        account.drift(rng)
        events.append(account.random_event(rng))

    kinds = {event["type"] for event in events}
    assert {"pir_motion", "temperature_high", "disturbance_first_notice"} <= kinds
    assert "future_event_type" in kinds
    assert all("device_id" not in event for event in events if "disturbance" in event["type"])
    kitchen = account.get_device("point-kitchen")
    assert kitchen_before is not None and kitchen is not None
    for untouched_while_offline in ("latest_sensor_values", "battery", "last_heard_from_at"):
        assert kitchen[untouched_while_offline] == kitchen_before[untouched_while_offline]
    office = account.get_device("point-office")
    assert office is not None
    assert "latest_sensor_values" not in office
    assert office["last_heard_from_at"] >= office_before["last_heard_from_at"]
    hallway = account.get_device("point-hallway")
    assert hallway is not None
    readings = hallway["latest_sensor_values"]
    assert 0 <= readings["humidity"]["value"] <= 100
    bedroom = account.get_device("point-bedroom")
    assert bedroom is not None
    assert bedroom["latest_sensor_values"]["pressure"]["time"].startswith("2021-")


def test_times_are_utc_with_milliseconds_and_z() -> None:
    moment = datetime(2026, 11, 22, 11, 0, 0, 123456, tzinfo=UTC)

    assert format_time(moment) == "2026-11-22T11:00:00.123Z"
    assert format_time(moment.astimezone()) == "2026-11-22T11:00:00.123Z"
    assert parse_time("2026-11-22T10:00:00.000Z") == datetime(2026, 11, 22, 10, tzinfo=UTC)
