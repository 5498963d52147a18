"""The answers the contract leaves open: how deliveries prove themselves, how far lists page.

The simulator gives each possible answer; the real daemon, listener and broker take it.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import logging
import time
from typing import Any

import pytest
import requests
from conftest import CLIENT_ID, CLIENT_SECRET, webhook_url
from prometheus_client.parser import text_string_to_metric_families

from minut2mqtt.minut.client import MinutClient
from minut2mqtt.simulator import SimulatedAccount, SimulatorServer
from minut2mqtt.simulator.api import DeliveryStyle, Paging

DEV1_EVENT = "minut2mqtt/device/dev1/event"
BRIDGE_STATE = "minut2mqtt/bridge/state"


def published_ids(recorder: Any) -> list[str]:
    return [json.loads(m.payload)["id"] for m in recorder.messages if m.topic == DEV1_EVENT]


def refusals_in_metrics(daemon: Any) -> dict[str, float]:
    text = requests.get(f"http://127.0.0.1:{daemon.webhook_port}/metrics", timeout=5).text
    return {
        sample.labels["reason"]: sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        if sample.name == "minut2mqtt_webhooks_refused_total"
    }


def signed(daemon: Any, delivery: dict[str, Any], form: str = "hex") -> tuple[bytes, str]:
    body = json.dumps(delivery).encode()
    assert daemon.hook is not None
    digest = hmac.new(daemon.hook.hook_secret.encode(), body, hashlib.sha256).digest()
    text = {
        "hex": digest.hex(),
        "HEX": digest.hex().upper(),
        "sha256=hex": f"sha256={digest.hex()}",
        "base64": base64.b64encode(digest).decode(),
    }[form]
    return body, text


# -- deliveries -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "style",
    [
        DeliveryStyle(token_in="body"),
        DeliveryStyle(token_in="header"),
        DeliveryStyle(token_in="nowhere"),
        DeliveryStyle(token_in="nowhere", signature_format="sha256=hex"),
        DeliveryStyle(token_in="nowhere", signature_format="base64"),
        DeliveryStyle(token_in="body", signature_format=None),
        DeliveryStyle(token_in="header", signature_format=None),
    ],
    ids=lambda style: f"token-{style.token_in}-signature-{style.signature_format}",
)
def test_deliveries_proving_themselves_either_way_are_published(
    start_registering_daemon, account, recorder, style
):
    daemon = start_registering_daemon()
    account.delivery_style = style
    sent = account.inject_event("pir_motion", home_id="home1", device_id="dev1")
    received = recorder.wait_for_topic(DEV1_EVENT)
    assert json.loads(received.payload)["id"] == sent["id"]
    assert refusals_in_metrics(daemon) == {}


def test_a_delivery_signed_in_another_header_is_refused_counted_explained_and_pulled(
    start_registering_daemon, account, recorder, caplog
):
    caplog.set_level(logging.WARNING, logger="minut2mqtt.web")
    daemon = start_registering_daemon()
    account.delivery_style = DeliveryStyle(token_in="nowhere", signature_header="X-Other")
    missed = account.inject_event("alarm_heard", home_id="home1", device_id="dev1")
    assert account.wait_deliveries()
    assert [outcome for _, _, outcome in account.deliveries] == [401]
    # The refusal started a pull at once: the event arrives anyway, well within a minute.
    pulled = recorder.wait_for_topic(
        DEV1_EVENT, timeout=15, payload_predicate=lambda p: missed["id"].encode() in p
    )
    assert json.loads(pulled.payload)["type"] == "alarm_heard"
    assert refusals_in_metrics(daemon) == {"no_signature": 1}
    state = recorder.wait_for_topic(
        BRIDGE_STATE,
        payload_predicate=lambda p: b'"no_signature": 1' in p,
        timeout=15,
    )
    assert json.loads(state.payload)["webhooks_refused"] == {"no_signature": 1}
    page = requests.get(f"http://localhost:{daemon.webhook_port}/", timeout=5).text
    assert "Refused deliveries" in page and "no signature: 1" in page
    [line] = [r.getMessage() for r in caplog.records if "delivery refused" in r.getMessage()]
    assert "no signature in header X-Minut-Signature" in line
    assert "x-other" in line.lower() and "hook_id" in line and "event" in line
    assert daemon.hook is not None and daemon.hook.hook_secret not in line
    # The next ones are counted, not logged again within the hour.
    account.inject_event("pir_motion", home_id="home1", device_id="dev1")
    assert account.wait_deliveries()
    assert refusals_in_metrics(daemon) == {"no_signature": 2}
    assert len([r for r in caplog.records if "delivery refused" in r.getMessage()]) == 1


@pytest.mark.parametrize(
    ("verification", "style", "headers_from", "reason"),
    [
        ("any", "hex", "wrong-signature", "signature_mismatch"),
        ("any", None, "wrong-token", "token_mismatch"),
        ("both", "hex", "nothing", "token_missing"),
        ("signature", None, "token", "no_signature"),
        ("token", "hex", "nothing", "token_missing"),
        ("any", "hex", "other-hook", "unknown_hook_id"),
    ],
)
def test_each_way_a_delivery_fails_is_refused_with_its_reason(
    start_registering_daemon, recorder, verification, style, headers_from, reason
):
    daemon = start_registering_daemon(**{"webhook.verification": verification})
    assert daemon.hook is not None
    delivery: dict[str, Any] = {
        "hook_id": "someone-else" if headers_from == "other-hook" else daemon.hook.hook_id,
        "event": {"id": "e-1", "type": "pir_motion", "home_id": "home1", "device_id": "dev1"},
    }
    body, signature = signed(daemon, delivery)
    headers = {"Content-Type": "application/json"}
    if style is not None:
        headers["X-Minut-Signature"] = "ab" * 32 if headers_from == "wrong-signature" else signature
    if headers_from in ("token", "wrong-token"):
        headers["X-Minut-Token"] = daemon.hook.token + (
            "x" if headers_from == "wrong-token" else ""
        )
    answer = requests.post(webhook_url(daemon), data=body, headers=headers, timeout=5)
    assert answer.status_code == 401
    assert refusals_in_metrics(daemon) == {reason: 1}
    time.sleep(0.3)
    assert published_ids(recorder) == []


@pytest.mark.parametrize("form", ["hex", "HEX", "sha256=hex", "base64"])
def test_the_signature_is_read_in_each_usual_form(start_registering_daemon, recorder, form):
    daemon = start_registering_daemon(**{"webhook.verification": "signature"})
    assert daemon.hook is not None
    delivery = {
        "hook_id": daemon.hook.hook_id,
        "event": {"id": f"e-{form}", "type": "pir_motion", "home_id": "home1", "device_id": "dev1"},
    }
    body, signature = signed(daemon, delivery, form)
    answer = requests.post(
        webhook_url(daemon), data=body, headers={"X-Minut-Signature": signature}, timeout=5
    )
    assert answer.status_code == 202
    recorder.wait_for_topic(DEV1_EVENT)


# -- paging ---------------------------------------------------------------------------------------


def big_account(homes: int = 7, points_per_home: int = 2) -> SimulatedAccount:
    account = SimulatedAccount(client_id=CLIENT_ID, client_secret=CLIENT_SECRET)
    for home in range(homes):
        account.add_home(f"home{home}", f"Home {home}")
        for point in range(points_per_home):
            account.add_device(f"point{home}-{point}", f"home{home}", f"Room {point}")
    return account


@pytest.mark.parametrize(
    ("homes_paging", "devices_paging", "page_size"),
    [
        (Paging(default_limit=3, max_limit=3), Paging(max_limit=4), 100),  # paging objects
        (Paging(paging_object=False), Paging(paging_object=False), 3),  # limit and offset only
        (Paging(honours_limit=False), Paging(honours_limit=False), 3),  # everything at once
        (Paging(default_limit=5, max_limit=5), Paging(), 100),  # the contract's defaults
    ],
    ids=["paging-objects", "offset-only", "limit-ignored", "default"],
)
def test_every_home_and_point_is_read_however_the_lists_page(
    homes_paging, devices_paging, page_size
):
    account = big_account()
    account.homes_paging, account.devices_paging = homes_paging, devices_paging
    with SimulatorServer(account, host="127.0.0.1", port=0) as server:
        client = MinutClient(server.base_url, CLIENT_ID, CLIENT_SECRET)
        client.page_size = page_size
        homes = client.get_homes()
        devices = client.get_devices()
    assert sorted(home["home_id"] for home in homes) == [f"home{n}" for n in range(7)]
    assert len({device["device_id"] for device in devices}) == len(devices) == 14


def test_a_silent_page_limit_is_found_once_and_asked_for_from_then_on(caplog):
    caplog.set_level(logging.INFO)
    account = big_account(homes=3, points_per_home=60)
    account.devices_paging = Paging(paging_object=False, max_limit=70)
    with SimulatorServer(account, host="127.0.0.1", port=0) as server:
        client = MinutClient(server.base_url, CLIENT_ID, CLIENT_SECRET)
        first, second = client.get_devices(), client.get_devices()
        requests_made = len([r for r in account.requests if r[1] == "/v8/devices"])
    assert len({device["device_id"] for device in first}) == len(second) == 180
    assert requests_made == 3 + 3
    assert caplog.text.count("GET /devices answers at most 70 objects a page") == 1


def test_a_small_account_costs_one_request_per_list():
    account = big_account(homes=3, points_per_home=3)
    with SimulatorServer(account, host="127.0.0.1", port=0) as server:
        client = MinutClient(server.base_url, CLIENT_ID, CLIENT_SECRET)
        client.get_homes(), client.get_devices()
        paths = [r[1] for r in account.requests if r[1] != "/v8/oauth/token"]
    assert paths == ["/v8/homes", "/v8/devices"]


def test_an_api_ignoring_offset_is_read_once_and_said_so(caplog):
    account = big_account()
    account.homes_paging = Paging(paging_object=False, honours_offset=False)
    with SimulatorServer(account, host="127.0.0.1", port=0) as server:
        client = MinutClient(server.base_url, CLIENT_ID, CLIENT_SECRET)
        client.page_size = 3
        homes = client.get_homes()
        requests_made = len([r for r in account.requests if r[1] == "/v8/homes"])
    assert len(homes) == 3 and requests_made == 2
    assert "does not page by offset" in caplog.text


def test_the_daemon_bridges_an_account_larger_than_one_page(start_daemon, account, recorder):
    for home in range(2, 6):
        account.add_home(f"home{home}", f"Home {home}")
        account.add_device(f"point{home}", f"home{home}", f"Room {home}", readings={})
    account.homes_paging = Paging(default_limit=2, max_limit=2)
    daemon = start_daemon()
    for home in range(2, 6):
        recorder.wait_for_topic(f"minut2mqtt/home/home{home}/state")
        recorder.wait_for_topic(f"minut2mqtt/device/point{home}/state")
    assert daemon.status.snapshot().homes == 5
