"""`minut2mqtt check`: is the configuration usable? Tries the broker and the Minut API once."""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.reasoncodes import ReasonCode

from .minut.client import MinutApiError, MinutClient
from .mqtt.tls import tls_context
from .settings import Settings
from .web.page import page_url


@dataclass(frozen=True)
class CheckResult:
    name: str
    ok: bool
    detail: str


def run_checks(settings: Settings, timeout: float = 10.0) -> list[CheckResult]:
    checks: list[tuple[str, Callable[[Settings, float], str]]] = [
        ("MQTT broker", check_broker),
        ("Minut API", check_minut),
    ]
    results = []
    for name, check in checks:
        try:
            results.append(CheckResult(name, True, check(settings, timeout)))
        except CheckFailed as failure:
            results.append(CheckResult(name, False, str(failure)))
    return results


class CheckFailed(Exception):
    pass


def check_broker(settings: Settings, timeout: float) -> str:
    """Connect once with the configured client settings, without publishing anything."""
    options = settings.mqtt
    where = f"{options.host}:{options.port}"
    client = mqtt.Client(
        CallbackAPIVersion.VERSION2,
        client_id=f"{options.client_id}-check",
        protocol=mqtt.MQTTv311,
    )
    context = tls_context(options.tls)
    if context is not None:
        client.tls_set_context(context)
    if options.username:
        password = options.password.get_secret_value() if options.password else None
        client.username_pw_set(options.username, password)
    answered = threading.Event()
    outcome: list[ReasonCode] = []

    def on_connect(
        client: mqtt.Client, userdata: object, flags: object, code: ReasonCode, props: object
    ) -> None:
        outcome.append(code)
        answered.set()

    client.on_connect = on_connect
    try:
        client.connect(options.host, options.port, keepalive=10)
    except OSError as error:  # ssl.SSLError included: a failed TLS handshake
        raise CheckFailed(f"cannot reach {where}: {error.strerror or error}") from None
    client.loop_start()
    try:
        if not answered.wait(timeout):
            raise CheckFailed(f"{where} accepted the connection but never answered as MQTT")
        if outcome[0].is_failure:
            raise CheckFailed(f"{where} refused the connection: {outcome[0]}")
    finally:
        client.disconnect()
        client.loop_stop()
    return f"connected to {where}"


def check_minut(settings: Settings, timeout: float) -> str:
    """Get a token and read the homes and devices once (three requests of the budget).

    With `minut.auth: authorization_code` the token is the connected account's, kept in
    state_dir (refreshed if due, the new tokens kept there for the bridge); with none, it fails.
    """
    minut = settings.minut
    accounts = minut.configured_accounts()
    if not minut.accounts and (not minut.client_id or not minut.client_secret.get_secret_value()):
        raise CheckFailed("minut.client_id and minut.client_secret are required")
    results = []
    for account in accounts:
        client = MinutClient.from_settings(
            minut,
            timeout=timeout,
            state_dir=settings.state_dir,
            page_url=page_url(settings.webhook),
            account=account,
        )
        named = f"account {account.name}: " if len(accounts) > 1 else ""
        try:
            homes = client.get_homes()
            devices = client.get_devices()
        except MinutApiError as error:
            raise CheckFailed(f"{named}{error}") from None
        results.append(f"{named}{len(devices)} Points in {len(homes)} homes")
    return f"{minut.api_url}: " + "; ".join(results)
