"""Secrets never show: not in the bridge's log (at DEBUG), not on MQTT, not on its page.

One real `minut2mqtt run` per OAuth grant, with its secrets in the environment, against a
Mosquitto that checks a password and the simulator, through polls, a webhook delivery, a
delivery to a wrong secret, expired tokens and an API error; with the authorization-code grant
also connecting the account on the bridge's page, a refresh, a revoked grant and a reconnect.
Then every secret, every OAuth token the simulator issued and every authorization code is looked
for in every line the bridge wrote, in every MQTT message the broker carried and in the page.
(The bridge runs in its own process, so its stderr is its whole log; this process only holds the
simulator, which must know the secrets.)
"""

from __future__ import annotations

import base64
import json
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
import requests
from brokers import (
    Message,
    MosquittoBroker,
    MqttRecorder,
    TestBroker,
    find_mosquitto,
    make_test_broker,
    random_free_port,
)
from conftest import CLIENT_ID, CLIENT_SECRET

from minut2mqtt.simulator import SimulatedAccount, SimulatorServer

# Each session (a real bridge run) is made once and read by every test: one worker.
pytestmark = pytest.mark.xdist_group("secrets")
MQTT_USERNAME = "bridge-user"
MQTT_PASSWORD = "mqtt-password-5e6f7a8b9c"
WEBHOOK_SECRET = "webhook-path-secret-0d1e2f3a"
OAUTH_LIBRARY_LOGGER = "requests_oauthlib.oauth2_session"
LOG_RECORD_START = re.compile(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3} (\w+) +([\w.]+): ")


@dataclass
class FinishedSession:
    grant: str
    secrets: dict[str, str]  # what it is → the secret text
    bridge_log: str  # the process's stderr and stdout
    mqtt: list[Message]
    exit_status: int
    account: SimulatedAccount
    events_published: list[Message]
    wrong_secret_answer: int
    broker_log: str
    page: str

    def log_records(self) -> list[tuple[str, str]]:
        """(logger name, whole record text) of the bridge's log; tracebacks stay with theirs."""
        records: list[tuple[str, str]] = []
        for line in self.bridge_log.splitlines():
            start = LOG_RECORD_START.match(line)
            if start or not records:
                records.append((start.group(2) if start else "", line))
            else:
                name, text = records[-1]
                records[-1] = (name, text + "\n" + line)
        return records


def secrets_in(text: str, secrets: dict[str, str]) -> list[str]:
    return [what for what, secret in secrets.items() if secret in text]


def broker_checking_passwords(work_dir: Path) -> TestBroker:
    """Mosquitto with a password file (anonymous clients still allowed, for the recorder)."""
    if find_mosquitto() is None or os.environ.get("MINUT2MQTT_TEST_BROKER") == "amqtt":
        return make_test_broker(work_dir)
    work_dir.mkdir(parents=True, exist_ok=True)
    password_file = work_dir / "passwords"
    subprocess.run(
        ["mosquitto_passwd", "-b", "-c", str(password_file), MQTT_USERNAME, MQTT_PASSWORD],
        check=True,
        capture_output=True,
        timeout=30,
    )
    password_file.chmod(0o600)
    broker = MosquittoBroker(
        work_dir / "mosquitto", extra_config=[f"password_file {password_file}"]
    )
    broker.start()
    return broker


def wait_until(condition: Callable[[], Any], what: str, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"{what}: not within {timeout:g} s"
        time.sleep(0.1)


def requests_after(account: SimulatedAccount, index: int) -> list[tuple[str, str, int]]:
    return list(account.requests[index:])


@pytest.fixture(scope="module", params=["client_credentials", "authorization_code"])
def session(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[FinishedSession]:
    grant: str = request.param
    tmp_path = tmp_path_factory.mktemp(f"secrets-{grant}")
    account = SimulatedAccount(client_id=CLIENT_ID, client_secret=CLIENT_SECRET)
    account.add_home(home_id="home1", name="Beach house")
    account.add_device(
        device_id="dev1", home_id="home1", description="Hallway", readings={"temperature": 21.4}
    )
    codes: list[str] = []
    broker = broker_checking_passwords(tmp_path)
    webhook_port = random_free_port()
    base_url = f"http://127.0.0.1:{webhook_port}"
    environment = {k: v for k, v in os.environ.items() if not k.startswith("MINUT2MQTT_")}
    environment |= {
        "MINUT2MQTT_MINUT__CLIENT_SECRET": CLIENT_SECRET,
        "MINUT2MQTT_MQTT__PASSWORD": MQTT_PASSWORD,
        "MINUT2MQTT_WEBHOOK__SECRET": WEBHOOK_SECRET,
    }
    grant_options = [f"--minut.auth={grant}"]
    if grant == "authorization_code":  # pull events every second: tokens are used at once
        grant_options.append("--minut.pull_events_after_silence=1")
    output_path = tmp_path / "run.log"
    try:
        with (
            SimulatorServer(account, host="127.0.0.1", port=0) as simulator,
            MqttRecorder(broker.host, broker.port, topics=["#"]) as mqtt,
            output_path.open("wb") as output,
        ):
            process = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "minut2mqtt",
                    "run",
                    f"--minut.api_url={simulator.base_url}",
                    f"--minut.client_id={CLIENT_ID}",
                    "--minut.poll_interval=10",
                    *grant_options,
                    f"--mqtt.port={broker.port}",
                    f"--mqtt.username={MQTT_USERNAME}",
                    "--webhook.host=127.0.0.1",
                    f"--webhook.port={webhook_port}",
                    f"--state-dir={tmp_path / 'state'}",
                    "--log-level=DEBUG",
                ],
                stdout=output,
                stderr=subprocess.STDOUT,
                env=environment,
            )
            try:
                wait_until(lambda: healthz_answers(base_url), "the webhook listener answering")
                if grant == "authorization_code":
                    codes.append(connect_on_the_page(base_url))
                mqtt.wait_for_topic("minut2mqtt/device/dev1/state", 20)

                account.register_webhook(f"{base_url}/webhook/{WEBHOOK_SECRET}")
                account.inject_event("tamper", home_id="home1", device_id="dev1")
                event = mqtt.wait_for_topic("minut2mqtt/device/dev1/event", 10)
                wrong = requests.post(f"{base_url}/webhook/not-the-secret", data=b"{}", timeout=10)
                requests.post(f"{base_url}/webhook/{WEBHOOK_SECRET}", data=b"not json", timeout=10)

                seen = len(account.requests)
                issued = len(account.tokens_issued)
                account.expire_tokens()
                account.fail_next(1, status=500)
                wait_until(
                    lambda: (
                        any(
                            status == 200 and path.startswith(("/v8/devices", "/v8/homes"))
                            for _, path, status in requests_after(account, seen)
                        )
                        and len(account.tokens_issued) > issued
                    ),
                    "a request failing with HTTP 500, then one renewing the token and succeeding",
                )
                if grant == "authorization_code":
                    account.revoke_user_grant()
                    wait_until(
                        lambda: "Reconnect" in page_text(base_url), "the page offering to reconnect"
                    )
                    codes.append(connect_on_the_page(base_url))
                page = page_text(base_url)
                process.send_signal(signal.SIGTERM)
                exit_status = process.wait(timeout=20)
            finally:
                if process.poll() is None:
                    process.kill()
                    process.wait(timeout=10)
            mqtt.wait_for_topic(
                "minut2mqtt/bridge/availability", 10, lambda payload: payload == b"offline"
            )
            recorded = mqtt.messages
    finally:
        broker.stop()
    broker_log = broker.log_path.read_text() if isinstance(broker, MosquittoBroker) else ""
    yield FinishedSession(
        grant=grant,
        secrets={
            "minut.client_secret": CLIENT_SECRET,
            "minut.client_secret in an HTTP Basic header": base64.b64encode(
                f"{CLIENT_ID}:{CLIENT_SECRET}".encode()
            ).decode(),
            "mqtt.password": MQTT_PASSWORD,
            "webhook.secret": WEBHOOK_SECRET,
            **{f"OAuth token #{n}": token for n, token in enumerate(account.tokens_issued, 1)},
            **{f"authorization code #{n}": code for n, code in enumerate(codes, 1)},
        },
        bridge_log=output_path.read_text(errors="replace"),
        mqtt=recorded,
        exit_status=exit_status,
        account=account,
        events_published=[event],
        wrong_secret_answer=wrong.status_code,
        broker_log=broker_log,
        page=page,
    )


def connect_on_the_page(base_url: str) -> str:
    """Connect, approve at the simulator, come back, as a browser would; the code Minut gave."""
    started = requests.post(f"{base_url}/connect", allow_redirects=False, timeout=10)
    authorize = started.headers["Location"]
    form = {key: values[0] for key, values in parse_qs(urlsplit(authorize).query).items()}
    approved = requests.post(
        authorize.split("?")[0], data={**form, "decision": "approve"}, allow_redirects=False
    )
    callback = approved.headers["Location"]
    back = requests.get(callback, allow_redirects=False, timeout=20)
    assert back.status_code == 303, back.text
    return parse_qs(urlsplit(callback).query)["code"][0]


def page_text(base_url: str) -> str:
    return requests.get(f"{base_url}/", timeout=10).text


def healthz_answers(base_url: str) -> bool:
    try:
        return requests.get(f"{base_url}/healthz", timeout=2).status_code == 200
    except requests.ConnectionError:
        return False


def test_the_session_went_through_everything_that_might_leak(session: FinishedSession) -> None:
    assert session.exit_status == 0, session.bridge_log[-3000:]
    requests_made = session.account.requests
    assert any(status == 500 for _, _, status in requests_made)
    assert any(status == 401 for _, path, status in requests_made if path != "/v8/oauth/token")
    assert sum(what.startswith("OAuth token") for what in session.secrets) >= 2
    assert session.account.deliveries, "the simulator delivered no webhook"
    assert [json.loads(event.payload)["type"] for event in session.events_published] == ["tamper"]
    assert session.wrong_secret_answer == 404
    assert "DEBUG" in session.bridge_log
    assert "Traceback" not in session.bridge_log
    if session.broker_log:  # Mosquitto: the bridge logged in with the password
        assert f"u'{MQTT_USERNAME}'" in session.broker_log
    if session.grant == "authorization_code":
        grants = [
            params["grant_type"] for leg, params in session.account.oauth_log if leg == "token"
        ]
        assert grants.count("authorization_code") == 2 and "refresh_token" in grants
        assert "no longer accepts" in session.bridge_log  # the revoked grant was noticed
        assert "Hallway" in session.page and ">connected<" in session.page


def test_no_secret_on_any_mqtt_topic_or_payload(session: FinishedSession) -> None:
    assert len(session.mqtt) > 20
    for message in session.mqtt:
        text = message.topic + " " + message.payload.decode("utf-8", errors="replace")
        assert not secrets_in(text, session.secrets), (secrets_in(text, session.secrets), text)


def leaks_in(records: list[tuple[str, str]], secrets: dict[str, str]) -> str:
    return "\n".join(
        f"{name}: {secrets_in(text, secrets)} in {text[:160]!r}"
        for name, text in records
        if secrets_in(text, secrets)
    )


def test_no_secret_in_any_log_line_at_debug(session: FinishedSession) -> None:
    """minut2mqtt's own lines, paho, urllib3, waitress, requests_oauthlib: every logger."""
    records = session.log_records()
    assert sum(name.startswith("minut2mqtt") for name, _ in records) > 10
    assert not leaks_in(records, session.secrets)


def test_no_secret_on_the_page(session: FinishedSession) -> None:
    assert "Hallway" in session.page
    assert not secrets_in(session.page, session.secrets)


def test_requests_oauthlib_stays_silent_even_at_debug(session: FinishedSession) -> None:
    """Its DEBUG lines carry the client secret (Basic auth header) and the access tokens."""
    records = session.log_records()
    oauth_records = [record for record in records if record[0] == OAUTH_LIBRARY_LOGGER]
    assert not oauth_records
