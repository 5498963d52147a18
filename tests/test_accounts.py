"""Several Minut accounts in one bridge, against the real broker and a simulated API serving
several accounts: each account has its own tokens, request budget, poller, event cursor,
webhook and status, and one account's revoked grant or 429s leave the others untouched."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
import requests
from brokers import MqttRecorder, TestBroker, random_free_port
from conftest import IN_BOTH_PROCESS_MODES

from minut2mqtt.daemon import Daemon
from minut2mqtt.minut.user_tokens import TOKENS_FILE
from minut2mqtt.settings import ConfigError, load_settings
from minut2mqtt.simulator import SimulatedAccount
from minut2mqtt.simulator.estate import EstateServer, SimulatedEstate

SECRET_A, SECRET_B = "secret-of-client-a-1f2e", "secret-of-client-b-3d4c"
PATH_SECRET = "multi-account-path-secret"


def wait_until(check: Callable[[], Any], what: str, timeout: float = 15) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        result = check()
        if result:
            return result
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


def owned_account(client_id: str, secret: str, user: str, home: str, device: str, room: str):
    account = SimulatedAccount(client_id=client_id, client_secret=secret, user_id=user)
    account.add_home(home_id=home, name=f"Home of {user}")
    account.add_device(
        device_id=device, home_id=home, description=room, readings={"temperature": 20.0}
    )
    return account


@pytest.fixture
def account_a() -> SimulatedAccount:
    return owned_account("client-a", SECRET_A, "user-a", "home-a", "dev-a", "Attic")


@pytest.fixture
def account_b() -> SimulatedAccount:
    return owned_account("client-b", SECRET_B, "user-b", "home-b", "dev-b", "Basement")


@pytest.fixture
def estate(account_a, account_b) -> Iterator[EstateServer]:
    with EstateServer(SimulatedEstate([account_a, account_b])) as server:
        yield server


@pytest.fixture
def start_bridge(
    tmp_path: Path, broker: TestBroker, estate: EstateServer, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Callable[..., Daemon]]:
    for name in [name for name in os.environ if name.startswith("MINUT2MQTT_")]:
        monkeypatch.delenv(name)
    port = random_free_port()
    started: list[Daemon] = []

    def start(**overrides: Any) -> Daemon:
        settings = load_settings(
            None,
            {
                "minut.api_url": estate.base_url,
                "minut.client_id": "client-a",
                "minut.client_secret": SECRET_A,
                "minut.accounts": [
                    {"name": "beach", "client_id": "client-b", "client_secret": SECRET_B}
                ],
                "mqtt.host": broker.host,
                "mqtt.port": broker.port,
                "mqtt.client_id": f"minut2mqtt-accounts-{tmp_path.name}",
                "mqtt.protocol": "3.1.1" if broker.kind == "amqtt" else "5",
                "webhook.host": "127.0.0.1",
                "webhook.port": port,
                "webhook.public_url": f"http://127.0.0.1:{port}",
                "webhook.secret": PATH_SECRET,
                "state_dir": tmp_path / "state",
                "log_level": "DEBUG",
                **overrides,
            },
        )
        daemon = Daemon(settings)
        daemon.start()
        started.append(daemon)
        return daemon

    yield start
    for daemon in started:
        daemon.stop()


def state_of(recorder: MqttRecorder, topic: str, check: Callable[[dict], bool]) -> dict:
    def matches(payload: bytes) -> bool:
        try:
            return bool(check(json.loads(payload)))
        except (ValueError, KeyError, TypeError):
            return False

    return json.loads(recorder.wait_for_topic(topic, 15, matches).payload)


def temperature_is(value: float) -> Callable[[dict], bool]:
    return lambda document: document["readings"]["temperature"]["value"] == value


def accounts_say(**expected: str) -> Callable[[dict], bool]:
    return lambda document: all(
        document["accounts"][name]["minut"] == status for name, status in expected.items()
    )


def event_ids(recorder: MqttRecorder, topic: str) -> list[str]:
    return [
        json.loads(message.payload)["id"] for message in recorder.messages if message.topic == topic
    ]


@IN_BOTH_PROCESS_MODES
def test_both_accounts_are_read_each_with_its_own_webhook_path_status_and_budget(
    start_bridge, recorder, account_a, account_b, tmp_path, event_process
):
    daemon = start_bridge(**{"webhook.event_process": event_process})
    state_of(recorder, "minut2mqtt/device/dev-a/state", temperature_is(20.0))
    state_of(recorder, "minut2mqtt/device/dev-b/state", temperature_is(20.0))
    # Each account registered its own hook, at a path that says whose deliveries it gets.
    (hook_a,) = account_a.list_webhooks()
    (hook_b,) = account_b.list_webhooks()
    assert hook_a["url"].endswith(f"/webhook/{PATH_SECRET}")
    assert hook_b["url"].endswith(f"/webhook/{PATH_SECRET}/beach")
    assert (tmp_path / "state" / "accounts" / "beach" / "webhook.json").is_file()
    # An event of each account arrives through its own hook, verified with that hook's secret.
    event_b = account_b.inject_event("alarm_heard", home_id="home-b", device_id="dev-b")
    event_a = account_a.inject_event("tamper_removed", home_id="home-a", device_id="dev-a")
    recorder.wait_for(lambda m: m.topic == "minut2mqtt/device/dev-b/event")
    recorder.wait_for(lambda m: m.topic == "minut2mqtt/device/dev-a/event")
    assert event_ids(recorder, "minut2mqtt/device/dev-b/event") == [event_b["id"]]
    assert event_ids(recorder, "minut2mqtt/device/dev-a/event") == [event_a["id"]]
    assert account_b.wait_deliveries()  # the outcome is recorded after the answer, not before
    assert [outcome for *_, outcome in account_b.deliveries] == [202]
    # Each account's requests went out with its own client's tokens, on its own budget.
    a_requests = {path for _, path, _ in account_a.requests}
    b_requests = {path for _, path, _ in account_b.requests}
    assert "/v8/devices" in a_requests and "/v8/devices" in b_requests
    status = daemon.status.snapshot()
    assert [account.name for account in status.accounts] == ["default", "beach"]
    assert all(account.requests_last_minute >= 3 for account in status.accounts)
    beach = daemon.accounts.get("beach")
    assert beach is not None and beach.status.connected
    wait_until(lambda: status_webhook(daemon, "beach"), "the beach account's last webhook")
    document = state_of(
        recorder, "minut2mqtt/bridge/state", accounts_say(default="connected", beach="connected")
    )
    assert document["accounts"]["beach"]["devices"] == 1 and document["minut"] == "connected"
    metrics = requests.get(f"http://127.0.0.1:{daemon.webhook_port}/metrics", timeout=10).text
    assert 'minut2mqtt_minut_up{account="beach"} 1.0' in metrics
    assert 'minut2mqtt_polls_total{account="default",outcome="ok"}' in metrics
    # Commands find the client of the account that owns a home or Point.
    assert daemon.accounts.client_for_home("home-b") is beach.client
    assert daemon.accounts.client_for_device("dev-a") is daemon.accounts.get("default").client
    assert daemon.accounts.client_for_home("elsewhere") is None


def status_webhook(daemon: Daemon, name: str) -> bool:
    return any(a.name == name and a.last_webhook for a in daemon.status.snapshot().accounts)


def test_a_revoked_account_leaves_the_other_polling_and_receiving_events(
    start_bridge, recorder, account_a, account_b
):
    daemon = start_bridge()
    state_of(recorder, "minut2mqtt/device/dev-b/state", temperature_is(20.0))
    state_of(recorder, "minut2mqtt/device/dev-a/state", temperature_is(20.0))
    account_b.revoke_client()
    account_b.expire_tokens()  # its access token stops working: a new one is refused
    beach = daemon.accounts.get("beach")
    beach.poller.request_poll()
    state_of(
        recorder, "minut2mqtt/bridge/state", accounts_say(default="connected", beach="unauthorized")
    )
    # The other account polls and receives events as before.
    account_a.set_reading("dev-a", "temperature", 24.5)
    daemon.accounts.get("default").poller.request_poll()
    state_of(recorder, "minut2mqtt/device/dev-a/state", temperature_is(24.5))
    event = account_a.inject_event("alarm_heard", home_id="home-a", device_id="dev-a")
    recorder.wait_for(lambda m: m.topic == "minut2mqtt/device/dev-a/event")
    assert event_ids(recorder, "minut2mqtt/device/dev-a/event") == [event["id"]]
    # The revoked account's Point stays (nothing proves it left), and the bridge says why.
    status = daemon.status.snapshot()
    assert status.minut == "unauthorized"
    assert "client credentials" in (
        next(a for a in status.accounts if a.name == "beach").last_api_error or ""
    )
    assert "minut2mqtt/device/dev-b/state" in recorder.retained_snapshot(
        recorder_host(daemon), daemon.settings.mqtt.port, "minut2mqtt/device/#"
    )


def recorder_host(daemon: Daemon) -> str:
    return daemon.settings.mqtt.host


def test_429s_of_one_account_pause_only_that_account(start_bridge, recorder, account_a, account_b):
    daemon = start_bridge()
    state_of(recorder, "minut2mqtt/device/dev-b/state", temperature_is(20.0))
    state_of(recorder, "minut2mqtt/device/dev-a/state", temperature_is(20.0))
    account_b.fail_next(50, 429, retry_after=120, paths="/v8/devices")
    beach, default = daemon.accounts.get("beach"), daemon.accounts.get("default")
    beach.poller.request_poll()
    state_of(
        recorder, "minut2mqtt/bridge/state", accounts_say(default="connected", beach="rate_limited")
    )
    assert beach.client.scheduler.rate_limited == 1
    # The rate-limited account waits 120 s; the other is not paused at all.
    account_a.set_reading("dev-a", "temperature", 19.5)
    started = time.monotonic()
    default.poller.request_poll()
    state_of(recorder, "minut2mqtt/device/dev-a/state", temperature_is(19.5))
    assert time.monotonic() - started < 5
    assert default.client.scheduler.rate_limited == 0
    event = account_a.inject_event("glassbreak", home_id="home-a", device_id="dev-a")
    recorder.wait_for(lambda m: m.topic == "minut2mqtt/device/dev-a/event")
    assert event_ids(recorder, "minut2mqtt/device/dev-a/event") == [event["id"]]
    # Deliveries still come to the paused account, and are published at once.
    event_b = account_b.inject_event("alarm_heard", home_id="home-b", device_id="dev-b")
    recorder.wait_for(lambda m: m.topic == "minut2mqtt/device/dev-b/event")
    assert event_ids(recorder, "minut2mqtt/device/dev-b/event") == [event_b["id"]]


def test_each_account_keeps_its_own_event_cursor(
    start_bridge, recorder, account_a, account_b, tmp_path
):
    daemon = start_bridge()
    state_of(recorder, "minut2mqtt/device/dev-b/state", temperature_is(20.0))
    wait_until(
        lambda: (tmp_path / "state" / "accounts" / "beach" / "event_cursor.json").is_file(),
        "the beach account's cursor",
    )
    daemon.stop()
    cursor_a = json.loads((tmp_path / "state" / "event_cursor.json").read_text())
    cursor_b = json.loads(
        (tmp_path / "state" / "accounts" / "beach" / "event_cursor.json").read_text()
    )
    assert set(cursor_a) == {"home-a"} and set(cursor_b) == {"home-b"}
    # An event of account B while the bridge was away is pulled from B's history on restart.
    missed = account_b.inject_event("alarm_heard", home_id="home-b", device_id="dev-b")
    recorder.clear()
    start_bridge()
    recorder.wait_for(lambda m: m.topic == "minut2mqtt/device/dev-b/event", timeout=20)
    assert event_ids(recorder, "minut2mqtt/device/dev-b/event") == [missed["id"]]


@IN_BOTH_PROCESS_MODES
def test_a_delivery_for_an_account_the_bridge_does_not_read_is_refused(
    start_bridge, account_a, event_process
):
    daemon = start_bridge(**{"webhook.event_process": event_process})
    url = f"http://127.0.0.1:{daemon.webhook_port}/webhook/{PATH_SECRET}/nobody"
    answer = requests.post(url, json={"event": {"id": "x", "type": "alarm_heard"}}, timeout=10)
    assert answer.status_code == 404


# -- several users of one partner client, connected on the page ----------------------------------


@pytest.fixture
def partner_estate() -> Iterator[tuple[EstateServer, SimulatedEstate]]:
    estate = SimulatedEstate(
        [
            owned_account("partner", SECRET_A, "user-a", "home-a", "dev-a", "Attic"),
            owned_account("partner", SECRET_A, "user-b", "home-b", "dev-b", "Basement"),
        ]
    )
    with EstateServer(estate) as server:
        yield server, estate


def connect_on_the_page(daemon: Daemon, estate: SimulatedEstate, user: str) -> None:
    estate.signed_in = user  # who is logged in at Minut when the browser gets there
    page = f"http://127.0.0.1:{daemon.webhook_port}"
    started = requests.post(f"{page}/connect", allow_redirects=False, timeout=10)
    authorize = started.headers["Location"]
    query = {key: values[0] for key, values in parse_qs(urlsplit(authorize).query).items()}
    answered = requests.post(
        authorize.split("?")[0], data={**query, "decision": "approve"}, allow_redirects=False
    )
    back = requests.get(answered.headers["Location"], allow_redirects=False, timeout=10)
    assert back.status_code == 303, back.text


def test_several_users_connect_on_the_page_and_a_revoked_one_leaves_the_others(
    start_bridge, recorder, partner_estate, tmp_path
):
    server, estate = partner_estate
    user_a, user_b = estate.accounts
    daemon = start_bridge(
        **{
            "minut.api_url": server.base_url,
            "minut.client_id": "partner",
            "minut.auth": "authorization_code",
            "minut.accounts": [],
        }
    )
    connect_on_the_page(daemon, estate, "user-a")
    state_of(recorder, "minut2mqtt/device/dev-a/state", temperature_is(20.0))
    connect_on_the_page(daemon, estate, "user-b")
    state_of(recorder, "minut2mqtt/device/dev-b/state", temperature_is(20.0))
    state_dir = tmp_path / "state"
    assert (state_dir / TOKENS_FILE).is_file()
    assert (state_dir / "accounts" / "user-user-b" / TOKENS_FILE).is_file()
    html = requests.get(f"http://127.0.0.1:{daemon.webhook_port}/", timeout=10).text
    assert "user-user-b" in html and "Connect another Minut account" in html
    # User B revokes the bridge: B's account says so; A's still polls and receives events.
    user_b.revoke_user_grant()
    daemon.accounts.get("user-user-b").poller.request_poll()
    state_of(
        recorder,
        "minut2mqtt/bridge/state",
        accounts_say(default="connected", **{"user-user-b": "unauthorized"}),
    )
    user_a.set_reading("dev-a", "temperature", 22.0)
    daemon.accounts.get("default").poller.request_poll()
    state_of(recorder, "minut2mqtt/device/dev-a/state", temperature_is(22.0))
    event = user_a.inject_event("alarm_heard", home_id="home-a", device_id="dev-a")
    recorder.wait_for(lambda m: m.topic == "minut2mqtt/device/dev-a/event")
    assert event_ids(recorder, "minut2mqtt/device/dev-a/event") == [event["id"]]
    # User B reconnects: the same account gets the new tokens (no third account).
    connect_on_the_page(daemon, estate, "user-b")
    state_of(recorder, "minut2mqtt/bridge/state", accounts_say(**{"user-user-b": "connected"}))
    assert [account.name for account in daemon.accounts] == ["default", "user-user-b"]
    # After a restart both connected users are read again from their stored tokens.
    daemon.stop()
    recorder.clear()
    again = start_bridge(
        **{
            "minut.api_url": server.base_url,
            "minut.client_id": "partner",
            "minut.auth": "authorization_code",
            "minut.accounts": [],
        }
    )
    assert [account.name for account in again.accounts] == ["default", "user-user-b"]
    state_of(
        recorder,
        "minut2mqtt/bridge/state",
        accounts_say(default="connected", **{"user-user-b": "connected"}),
    )
    state_of(recorder, "minut2mqtt/device/dev-b/state", temperature_is(20.0))
    # Disconnecting user B on the page: B's Point leaves, its files and its hook at Minut too.
    page = f"http://127.0.0.1:{again.webhook_port}"
    assert "Disconnect user-user-b" in requests.get(page, timeout=10).text
    assert len(user_b.list_webhooks()) == 1
    answer = requests.post(
        f"{page}/disconnect", data={"account": "user-user-b"}, allow_redirects=False, timeout=20
    )
    assert answer.status_code == 303
    recorder.wait_for(lambda m: m.topic == "minut2mqtt/device/dev-b/state" and m.payload == b"")
    state_of(recorder, "minut2mqtt/bridge/state", lambda d: list(d["accounts"]) == ["default"])
    assert not (state_dir / "accounts" / "user-user-b").exists()
    assert user_b.list_webhooks() == []
    refused = requests.post(
        f"{page}/disconnect", data={"account": "default"}, allow_redirects=False, timeout=10
    )
    assert refused.status_code == 400


# -- configuration --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("accounts", "message"),
    [
        (
            [
                {"name": "beach", "client_id": "b", "client_secret": "x"},
                {"name": "beach", "client_id": "c", "client_secret": "y"},
            ],
            "minut.accounts[1]: the name 'beach' is already used by minut.accounts[0]",
        ),
        (
            [{"name": "beach", "client_id": "b"}],
            "minut.accounts[0] (beach): client_secret is missing",
        ),
        (
            [{"name": "beach", "client_id": "a", "client_secret": "x"}],
            "client_id 'a' is already read by minut.client_id",
        ),
        (
            [{"name": "default", "client_id": "b", "client_secret": "x"}],
            "'default' is already used",
        ),
        ([{"name": "a/b", "client_id": "b", "client_secret": "x"}], "name must be 1 to 64 letters"),
        ([{"client_id": "b", "client_secret": "x"}], "minut.accounts[0]: name is missing"),
    ],
)
def test_bad_accounts_are_refused_with_a_message_naming_each(accounts, message):
    with pytest.raises(ConfigError) as refused:
        load_settings(
            None, {"minut.client_id": "a", "minut.client_secret": "s", "minut.accounts": accounts}
        )
    assert message in str(refused.value)
    assert "secret-value" not in str(refused.value)


def test_the_command_refuses_to_start_with_duplicate_accounts(tmp_path):
    config = tmp_path / "minut2mqtt.yaml"
    config.write_text(
        "minut:\n  accounts:\n"
        "    - {name: beach, client_id: b, client_secret: secret-value-1}\n"
        "    - {name: beach, client_id: c}\n"
    )
    environment = {k: v for k, v in os.environ.items() if not k.startswith("MINUT2MQTT_")}
    result = subprocess.run(
        [sys.executable, "-m", "minut2mqtt", "run", "--config", str(config)],
        capture_output=True,
        text=True,
        timeout=60,
        env=environment,
    )
    assert result.returncode == 2
    assert "minut.accounts[1]: the name 'beach' is already used" in result.stderr
    assert "minut.accounts[1] (beach): client_secret is missing" in result.stderr
    assert "secret-value-1" not in result.stderr and "Traceback" not in result.stderr


def test_accounts_alone_need_no_default_client_and_come_from_the_environment_as_json(monkeypatch):
    monkeypatch.setenv(
        "MINUT2MQTT_MINUT__ACCOUNTS",
        json.dumps([{"name": "beach", "client_id": "b", "client_secret": "x"}]),
    )
    settings = load_settings(None, {})
    assert [account.name for account in settings.minut.configured_accounts()] == ["beach"]


def test_topics_and_entity_ids_stay_unique_across_accounts(start_bridge, recorder, broker):
    daemon = start_bridge()
    state_of(recorder, "minut2mqtt/device/dev-a/state", temperature_is(20.0))
    state_of(recorder, "minut2mqtt/device/dev-b/state", temperature_is(20.0))
    deadline = time.monotonic() + 20
    while daemon.publisher.queue_depth and time.monotonic() < deadline:
        time.sleep(0.05)
    configs = MqttRecorder.retained_snapshot(broker.host, broker.port, "homeassistant/#")
    documents = [json.loads(payload) for payload in configs.values() if payload]
    unique_ids = [d["unique_id"] for d in documents if "unique_id" in d]
    entity_ids = [d.get("default_entity_id") for d in documents if d.get("default_entity_id")]
    assert len(unique_ids) == len(set(unique_ids)) and len(entity_ids) == len(set(entity_ids))
    assert any("dev-a" in u for u in unique_ids) and any("dev-b" in u for u in unique_ids)
    bridge_devices = {
        tuple(d["device"]["identifiers"]) for d in documents if "bridge" in d.get("unique_id", "")
    }
    assert len(bridge_devices) == 1, "one bridge device for every account"


def test_check_reads_every_configured_account(estate, broker, account_b, tmp_path):
    from minut2mqtt.check import run_checks

    settings = load_settings(
        None,
        {
            "minut.api_url": estate.base_url,
            "minut.client_id": "client-a",
            "minut.client_secret": SECRET_A,
            "minut.accounts": [
                {"name": "beach", "client_id": "client-b", "client_secret": SECRET_B}
            ],
            "mqtt.host": broker.host,
            "mqtt.port": broker.port,
            "state_dir": tmp_path / "state",
        },
    )
    minut = next(result for result in run_checks(settings) if result.name == "Minut API")
    assert minut.ok and "account default: 1 Points in 1 homes" in minut.detail
    assert "account beach: 1 Points in 1 homes" in minut.detail
    account_b.revoke_client()
    minut = next(result for result in run_checks(settings) if result.name == "Minut API")
    assert not minut.ok and minut.detail.startswith("account beach: Minut refused")
