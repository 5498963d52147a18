"""Connecting a Minut account (authorization-code grant) and who may open the bridge's page.

The token source against the simulator with a fake clock; the page and its connect routes
against the real daemon (HTTP from this machine, like a local browser) and, for the
protection rules, through Flask's test client with made-up client addresses.
"""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
import requests
from conftest import CLIENT_ID, CLIENT_SECRET, WEBHOOK_SECRET

from minut2mqtt.core.status import Status
from minut2mqtt.daemon import Daemon
from minut2mqtt.minut.client import MinutAuthError, MinutClient
from minut2mqtt.minut.connect import ConnectError
from minut2mqtt.minut.scheduler import RequestScheduler
from minut2mqtt.minut.user_tokens import TOKENS_FILE, AuthorizationCodeTokens
from minut2mqtt.settings import ConfigError, load_settings
from minut2mqtt.simulator import SimulatedAccount, SimulatorServer
from minut2mqtt.web.app import create_app
from minut2mqtt.web.intake import WebhookIntake
from minut2mqtt.web.page import PageOptions
from minut2mqtt.web.status_page import AccountView, PageSnapshot

REDIRECT_URI = "http://localhost:8000/api/minut"


class FakeClock:
    def __init__(self) -> None:
        self.now = time.time()

    def __call__(self) -> float:
        return self.now


def wait_until(condition: Callable[[], Any], what: str, timeout: float = 15) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        result = condition()
        if result:
            return result
        assert time.monotonic() < deadline, f"{what}: not within {timeout:g} s"
        time.sleep(0.05)


# -- the token source -----------------------------------------------------------------------------


def token_source(
    simulator: SimulatorServer, state_dir: Path, clock: Callable[[], float] = time.time
) -> AuthorizationCodeTokens:
    return AuthorizationCodeTokens(
        simulator.base_url,
        CLIENT_ID,
        CLIENT_SECRET,
        state_dir,
        scheduler=RequestScheduler(per_minute=100),
        clock=clock,
        page_url="http://localhost:8000/",
    )


def client_with(tokens: AuthorizationCodeTokens, simulator: SimulatorServer) -> MinutClient:
    return MinutClient(simulator.base_url, tokens=tokens, scheduler=tokens._scheduler)


def approve(tokens: AuthorizationCodeTokens, account: SimulatedAccount) -> tuple[str, str]:
    """What the browser brings back after the user approved: (state, code)."""
    query = parse_qs(urlsplit(tokens.authorization_url(REDIRECT_URI)).query)
    assert query["redirect_uri"] == [REDIRECT_URI]
    assert query["client_id"] == [CLIENT_ID] and query["response_type"] == ["code"]
    return query["state"][0], account.authorize(CLIENT_ID, REDIRECT_URI)


def connect(tokens: AuthorizationCodeTokens, account: SimulatedAccount) -> None:
    tokens.complete(*approve(tokens, account))


def stored(state_dir: Path) -> dict[str, Any]:
    content: dict[str, Any] = json.loads((state_dir / TOKENS_FILE).read_text())
    return content


def test_before_any_connect_requests_say_where_to_connect(simulator, tmp_path):
    client = client_with(token_source(simulator, tmp_path), simulator)
    with pytest.raises(MinutAuthError, match=r"^no Minut account connected yet: open http"):
        client.get_devices()


def test_the_code_is_exchanged_with_the_same_redirect_uri_and_kept_privately(
    simulator, account, tmp_path
):
    tokens = token_source(simulator, tmp_path)
    connect(tokens, account)
    assert len(client_with(tokens, simulator).get_devices()) == 2
    token_legs = [params for leg, params in account.oauth_log if leg == "token"]
    assert token_legs == [
        {"grant_type": "authorization_code", "redirect_uri": REDIRECT_URI, "client_id": CLIENT_ID}
    ]
    path = tmp_path / TOKENS_FILE
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stored(tmp_path)["refresh_token"] == account.refresh_tokens()[0]
    status = tokens.status()
    assert (status.connected, status.user_id, status.problem) == (True, "sim-user", None)


@pytest.mark.parametrize("state", [None, "", "forged-state"])
def test_a_wrong_or_missing_state_stores_nothing(simulator, account, tmp_path, state):
    tokens = token_source(simulator, tmp_path)
    real_state, code = approve(tokens, account)
    with pytest.raises(ConnectError, match="state does not match"):
        tokens.complete(state, code)
    assert not (tmp_path / TOKENS_FILE).exists()
    assert not tokens.status().connected
    assert not [leg for leg, _ in account.oauth_log if leg == "token"]  # the code was not sent
    tokens.complete(real_state, code)  # the real answer still works…
    with pytest.raises(ConnectError, match="state does not match"):
        tokens.complete(real_state, code)  # …once


def test_a_state_expires(simulator, account, tmp_path):
    clock = FakeClock()
    tokens = token_source(simulator, tmp_path, clock)
    state, code = approve(tokens, account)
    clock.now += 601
    with pytest.raises(ConnectError, match="state does not match"):
        tokens.complete(state, code)


def test_a_denied_authorization_stores_nothing(simulator, account, tmp_path):
    tokens = token_source(simulator, tmp_path)
    state, _ = approve(tokens, account)
    with pytest.raises(ConnectError, match="access_denied"):
        tokens.complete(state, None, "access_denied")
    assert not (tmp_path / TOKENS_FILE).exists()


def test_tokens_are_refreshed_at_nine_tenths_of_their_life_and_the_new_refresh_token_kept(
    simulator, account, tmp_path
):
    clock = FakeClock()
    tokens = token_source(simulator, tmp_path, clock)
    connect(tokens, account)
    client = client_with(tokens, simulator)
    first = stored(tmp_path)
    clock.now += 3600 * 0.9 - 5
    client.get_homes()
    assert stored(tmp_path) == first  # not due yet
    clock.now += 10
    client.get_homes()
    second = stored(tmp_path)
    assert second["refresh_token"] != first["refresh_token"]
    assert second["access_token"] != first["access_token"]
    assert account.refresh_tokens() == [second["refresh_token"]]  # the old one stopped working
    assert [params["grant_type"] for leg, params in account.oauth_log if leg == "token"] == [
        "authorization_code",
        "refresh_token",
    ]
    # After a restart, the kept refresh token is the one that works.
    restarted = token_source(simulator, tmp_path, clock)
    clock.now += 3600
    assert len(client_with(restarted, simulator).get_devices()) == 2


def test_a_refused_access_token_is_refreshed_once(simulator, account, tmp_path):
    tokens = token_source(simulator, tmp_path)
    connect(tokens, account)
    client = client_with(tokens, simulator)
    account.expire_tokens()
    assert len(client.get_devices()) == 2
    assert ("GET", "/v8/devices", 401) in account.requests


def test_a_revoked_grant_is_forgotten_and_asks_for_a_reconnect(simulator, account, tmp_path):
    tokens = token_source(simulator, tmp_path)
    connect(tokens, account)
    account.revoke_user_grant()
    with pytest.raises(MinutAuthError, match=r"no longer accepts .*reconnect") as caught:
        client_with(tokens, simulator).get_devices()
    assert "http://localhost:8000/" in str(caught.value)
    assert "refresh_token" not in stored(tmp_path) and "access_token" not in stored(tmp_path)
    assert not tokens.status().connected and tokens.status().problem
    restarted = token_source(simulator, tmp_path)  # a restart still knows why
    assert restarted.status().problem and not restarted.status().connected
    connect(restarted, account)
    assert restarted.status().connected and restarted.status().problem is None


def test_tokens_refreshed_by_another_process_are_adopted_not_refreshed_again(
    simulator, account, tmp_path
):
    clock = FakeClock()
    bridge = token_source(simulator, tmp_path, clock)
    connect(bridge, account)
    clock.now += 3600
    check = token_source(simulator, tmp_path, clock)  # `minut2mqtt check` meanwhile
    client_with(check, simulator).get_homes()
    # The bridge's refresh token was rotated away: refreshing with it would lose the grant.
    assert len(client_with(bridge, simulator).get_devices()) == 2
    assert bridge.status().connected


def test_token_calls_spend_the_request_budget(simulator, account, tmp_path):
    tokens = token_source(simulator, tmp_path)
    connect(tokens, account)
    assert tokens._scheduler.used_last_minute() == 1


# -- the page's protection ------------------------------------------------------------------------


def page_app(password: str | None = None) -> Any:
    snapshot = PageSnapshot(
        account=AccountView("client_credentials", True),
        homes=(),
        last_poll=None,
        last_poll_error=None,
        last_webhook=None,
        mqtt_connected=True,
        mqtt_broker="localhost:1883",
        requests_last_minute=0,
        requests_per_minute=100,
        stale_after=7200,
        now=datetime.now(UTC),
    )
    app = create_app(
        WebhookIntake(WEBHOOK_SECRET, lambda account, event: None),
        lambda: Status(mqtt_connected=True),
        page=PageOptions(
            snapshot=lambda: snapshot,
            account=None,
            password=password,
            redirect_uri=None,
            on_connected=lambda: None,
            local_host="localhost",
        ),
    )
    return app.test_client()


def get(client: Any, path: str, remote: str, host: str = "localhost:8000", **kwargs: Any) -> Any:
    return send(client, "GET", path, remote, host, **kwargs)


def send(client: Any, method: str, path: str, remote: str, host: str, **kwargs: Any) -> Any:
    """A request from `remote` (the peer's address) naming `host`, to the listener on port 8000."""
    return client.open(
        path,
        method=method,
        base_url="http://localhost:8000",  # the listening port: SERVER_PORT
        environ_base={"REMOTE_ADDR": remote},
        headers={"Host": host, **kwargs.pop("headers", {})},
        **kwargs,
    )


@pytest.mark.parametrize(
    ("remote", "host", "headers"),
    [
        ("192.0.2.7", "192.0.2.1:8000", {}),  # another machine
        ("127.0.0.1", "evil.example:8000", {}),  # DNS rebinding: a foreign name for 127.0.0.1
        ("127.0.0.1", "localhost:8000", {"X-Forwarded-For": "192.0.2.7"}),  # a proxy's client
    ],
)
def test_without_a_password_only_a_browser_on_this_machine_gets_the_page(remote, host, headers):
    client = page_app()
    for path in ("/", "/api/minut?state=x&code=y"):
        answer = get(client, path, remote, host, headers=headers)
        assert answer.status_code == 403
        text = answer.get_data(as_text=True)
        assert text.count("\n") == 1 and "webhook.page_password" in text
        assert "http://localhost:8000/" in text
    assert send(client, "POST", "/connect", remote, host, headers=headers).status_code == 403
    assert get(client, "/", "127.0.0.1").status_code == 200
    assert get(client, "/", "::1", "[::1]:8000").status_code == 200


def test_with_a_password_everyone_needs_it_in_basic_auth():
    client = page_app(password="pässword-1")
    refused = get(client, "/", "127.0.0.1")
    assert refused.status_code == 401
    assert refused.headers["WWW-Authenticate"].startswith("Basic ")
    wrong = get(client, "/", "192.0.2.7", auth=("admin", "guess"))
    assert wrong.status_code == 401
    assert (
        get(client, "/", "192.0.2.7", "bridge.example", auth=("admin", "pässword-1")).status_code
        == 200
    )
    assert get(client, "/", "127.0.0.1", auth=("anyone", "pässword-1")).status_code == 200


def test_webhook_and_health_stay_reachable_from_anywhere():
    client = page_app()
    assert get(client, "/healthz", "192.0.2.7", "bridge.example").status_code == 200
    delivery = client.post(
        f"/webhook/{WEBHOOK_SECRET}",
        json={"event": {"id": "e1", "type": "pir_motion", "home_id": "home1"}},
        environ_base={"REMOTE_ADDR": "192.0.2.7"},
    )
    assert delivery.status_code == 202


def test_the_page_is_not_cached_framed_or_given_scripts():
    answer = get(page_app(), "/", "127.0.0.1")
    assert answer.headers["Cache-Control"] == "no-store"
    assert answer.headers["X-Frame-Options"] == "DENY"
    assert "default-src 'none'" in answer.headers["Content-Security-Policy"]


def test_with_client_credentials_there_is_nothing_to_connect():
    client = page_app()
    answer = send(client, "POST", "/connect", "127.0.0.1", "localhost:8000")
    assert answer.status_code == 400
    assert "client_credentials" in answer.get_data(as_text=True)


def test_a_configured_redirect_uri_is_sent_instead_of_the_derived_one(simulator, tmp_path):
    public = "https://home.example.org/minut/api/minut"
    tokens = token_source(simulator, tmp_path)
    app = create_app(
        WebhookIntake(WEBHOOK_SECRET, lambda account, event: None),
        lambda: Status(mqtt_connected=True),
        page=PageOptions(
            snapshot=lambda: None,  # type: ignore[arg-type,return-value]
            account=tokens,
            password="pw",
            redirect_uri=public,
            on_connected=lambda: None,
            local_host="localhost",
        ),
    )
    answer = send(app.test_client(), "POST", "/connect", "192.0.2.7", "x", auth=("a", "pw"))
    assert answer.status_code == 303
    assert parse_qs(urlsplit(answer.headers["Location"]).query)["redirect_uri"] == [public]


def test_settings_of_the_account_and_the_page():
    settings = load_settings(None, {"webhook.page_password": "", "minut.redirect_uri": ""})
    assert settings.minut.auth == "client_credentials"
    assert settings.webhook.page_password is None and settings.minut.redirect_uri is None
    for bad in ("home.example.org/api/minut", "https://home.example.org/callback"):
        with pytest.raises(ConfigError, match=r"minut\.redirect_uri: must"):
            load_settings(None, {"minut.redirect_uri": bad})
    with pytest.raises(ConfigError, match=r"minut\.auth"):
        load_settings(None, {"minut.auth": "password"})


# -- the whole flow through the real daemon -------------------------------------------------------


def page(daemon: Daemon, path: str = "/") -> str:
    return f"http://127.0.0.1:{daemon.webhook_port}{path}"


def connect_through_the_page(daemon: Daemon, *, decision: str = "approve") -> requests.Response:
    """What a browser does: Connect, approve at (simulated) Minut, come back."""
    started = requests.post(page(daemon, "/connect"), allow_redirects=False, timeout=10)
    assert started.status_code == 303
    authorize = started.headers["Location"]
    query = {key: values[0] for key, values in parse_qs(urlsplit(authorize).query).items()}
    assert requests.get(authorize, timeout=10).status_code == 200  # the approve page
    answered = requests.post(
        authorize.split("?")[0], data={**query, "decision": decision}, allow_redirects=False
    )
    assert answered.status_code == 302
    return requests.get(answered.headers["Location"], allow_redirects=False, timeout=10)


@pytest.fixture
def auth_code_daemon(start_daemon: Callable[..., Daemon]) -> Daemon:
    return start_daemon(**{"minut.auth": "authorization_code"})


def test_connecting_on_the_page_shows_the_devices_without_any_token(
    auth_code_daemon, account, tmp_path
):
    daemon = auth_code_daemon
    before = requests.get(page(daemon), timeout=10).text
    assert "not connected" in before and "Connect Minut account" in before
    back = connect_through_the_page(daemon)
    assert (back.status_code, back.headers["Location"]) == (303, "../")
    callback = f"http://127.0.0.1:{daemon.webhook_port}/api/minut"
    assert [params["redirect_uri"] for _, params in account.oauth_log] == [callback, callback]
    html = wait_until(
        lambda: (
            (text := requests.get(page(daemon), timeout=10).text) and "Hallway" in text and text
        ),
        "the devices on the page after connecting",
        timeout=10,
    )
    assert "21.4\N{NO-BREAK SPACE}°C" in html and "Kitchen" in html and "Beach house" in html
    assert ">connected<" in html
    token_file = tmp_path / "state" / TOKENS_FILE
    assert stat.S_IMODE(token_file.stat().st_mode) == 0o600
    for secret in [*account.tokens_issued, CLIENT_SECRET, WEBHOOK_SECRET]:
        assert secret not in html


def test_a_denied_or_forged_answer_is_refused_on_the_page(auth_code_daemon, tmp_path):
    daemon = auth_code_daemon
    denied = connect_through_the_page(daemon, decision="deny")
    assert denied.status_code == 400 and "access_denied" in denied.text
    forged = requests.get(page(daemon, "/api/minut?state=forged&code=abc"), timeout=10)
    assert forged.status_code == 400 and "state does not match" in forged.text
    missing = requests.get(page(daemon, "/api/minut?code=abc"), timeout=10)
    assert missing.status_code == 400
    assert not (tmp_path / "state" / TOKENS_FILE).exists()


def test_a_revoked_grant_shows_a_reconnect_button(auth_code_daemon, account):
    daemon = auth_code_daemon
    connect_through_the_page(daemon)
    wait_until(lambda: daemon.status.snapshot().last_poll is not None, "a poll after connecting")
    account.revoke_user_grant()
    daemon.poller.request_poll()
    html = wait_until(
        lambda: "Reconnect" in (text := requests.get(page(daemon), timeout=10).text) and text,
        "the reconnect button",
    )
    assert "connection lost" in html and "no longer accepts" in html
    connect_through_the_page(daemon)  # and reconnecting works
    wait_until(
        lambda: ">connected<" in requests.get(page(daemon), timeout=10).text, "connected again"
    )


def test_the_page_with_client_credentials_shows_the_account_and_devices(start_daemon):
    daemon = start_daemon()
    wait_until(lambda: daemon.status.snapshot().last_poll is not None, "the first poll")
    html = requests.get(page(daemon), timeout=10).text
    assert "client credentials" in html and "Hallway" in html
    assert 'id="connect"' not in html
    assert "Connectivity" not in html, "being connected is no alert"


# -- minut2mqtt check -----------------------------------------------------------------------------


def run_check(simulator: SimulatorServer, state_dir: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "minut2mqtt",
            "check",
            f"--minut.api_url={simulator.base_url}",
            f"--minut.client_id={CLIENT_ID}",
            f"--minut.client_secret={CLIENT_SECRET}",
            "--minut.auth=authorization_code",
            "--mqtt.port=1",
            f"--state-dir={state_dir}",
        ],
        capture_output=True,
        text=True,
        timeout=60,
        env={k: v for k, v in os.environ.items() if not k.startswith("MINUT2MQTT_")},
    )


def test_check_says_no_account_is_connected_then_uses_the_stored_tokens(
    simulator, account, tmp_path
):
    result = run_check(simulator, tmp_path)
    assert result.returncode == 1
    assert "Minut API: FAILED: no Minut account connected yet: open http://localhost:8000/" in (
        result.stdout
    )
    connect(token_source(simulator, tmp_path), account)
    result = run_check(simulator, tmp_path)
    assert "Minut API: ok: " in result.stdout and "2 Points in 1 homes" in result.stdout
