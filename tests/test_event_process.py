"""`webhook.event_process`: deliveries and their events in a process of their own.

The tests of the webhook's road that matter most run in both modes (test_end_to_end.py,
test_accounts.py, test_webhook_registration.py, test_faults.py); these are the event process's own.
"""

from __future__ import annotations

import json
import time
from typing import Any

import requests
from conftest import IN_BOTH_PROCESS_MODES, webhook_url
from test_account_connect import get, page_app, wait_until
from test_end_to_end import DEV1_EVENT, DEV1_STATE, document, state_where

from minut2mqtt.web.forwarding import PEER_HEADER, TOKEN_HEADER, ForwardedOnly

EVENT_PROCESS = {"webhook.event_process": True}


def events_of(recorder: Any, topic: str = DEV1_EVENT) -> list[str]:
    return [json.loads(m.payload)["id"] for m in recorder.messages if m.topic == topic]


def test_an_event_both_delivered_and_pulled_is_published_once(start_daemon, recorder, account):
    daemon = start_daemon(**EVENT_PROCESS)
    recorder.wait_for_topic(DEV1_STATE)
    delivered = account.inject_event("pir_motion", home_id="home1", device_id="dev1")
    recorder.wait_for_topic(DEV1_EVENT)
    for hook in account.list_webhooks():  # what comes now, only a pull brings
        account.delete_webhook(hook["hook_id"])
    pulled = account.inject_event("temperature_high", home_id="home1", device_id="dev1")
    daemon.first_account.catch_up.request()  # it pulls both: the delivered one again
    state_where(recorder, DEV1_STATE, lambda s: s["states"]["heat"] == "ON")
    redelivery = {"event": {k: v for k, v in pulled.items() if k != "created_at"}}
    assert requests.post(webhook_url(daemon), json=redelivery, timeout=5).status_code == 202
    time.sleep(1)
    assert events_of(recorder) == [delivered["id"], pulled["id"]]
    snapshot = daemon.status.snapshot()
    assert (snapshot.events_published, snapshot.events_pulled) == (2, 1)


@IN_BOTH_PROCESS_MODES
def test_the_page_health_and_metrics_answer_on_the_webhook_port(
    start_daemon, recorder, event_process
):
    daemon = start_daemon(**{"webhook.event_process": event_process})
    recorder.wait_for_topic(DEV1_STATE)
    base = f"http://127.0.0.1:{daemon.webhook_port}"
    health = requests.get(f"{base}/healthz", timeout=5)
    assert health.status_code == 200 and health.json()["mqtt"]["connected"] is True
    assert "minut2mqtt_webhooks_total" in requests.get(f"{base}/metrics", timeout=5).text
    page = requests.get(f"{base}/", timeout=5, headers={"Host": "localhost"})
    assert page.status_code == 200 and "Hallway" in page.text
    # the page's "only from this machine" rule still sees the browser's request as it was
    proxied = requests.get(f"{base}/", timeout=5, headers={"X-Forwarded-For": "192.0.2.7"})
    assert proxied.status_code == 403
    assert requests.get(f"{base}/", timeout=5, headers={"Host": "evil.example"}).status_code == 403
    too_big = requests.post(webhook_url(daemon), data=b"x" * 70_000, timeout=5)
    assert (too_big.status_code, too_big.json()) == (413, {"error": "request entity too large"})
    if not event_process:
        return
    # the main process's own listener answers the event process only
    inner = f"http://127.0.0.1:{daemon._web_server.port}"
    assert requests.get(f"{inner}/healthz", timeout=5).status_code == 403
    counted = daemon.status.snapshot().webhook_deliveries
    assert requests.post(webhook_url(daemon), data=b"not json", timeout=5).status_code == 400
    wait_until(
        lambda: daemon.status.snapshot().webhook_deliveries != counted,
        "the refused delivery counted",
        timeout=5,
    )


def test_the_main_listener_takes_the_browsers_address_from_the_event_process_only():
    client = page_app()
    client.application.wsgi_app = ForwardedOnly(client.application.wsgi_app, "the-token")
    forwarded = {TOKEN_HEADER: "the-token", PEER_HEADER: "192.0.2.7"}
    assert get(client, "/", "127.0.0.1", headers=forwarded).status_code == 403  # another machine
    local = {TOKEN_HEADER: "the-token", PEER_HEADER: "127.0.0.1"}
    assert get(client, "/", "127.0.0.1", headers=local).status_code == 200
    forged = {TOKEN_HEADER: "a-guess", PEER_HEADER: "127.0.0.1"}
    assert get(client, "/", "127.0.0.1", headers=forged).status_code == 403
    assert get(client, "/healthz", "127.0.0.1").status_code == 403


def test_an_event_process_that_ends_stops_the_bridge_with_an_error(start_daemon, recorder):
    daemon = start_daemon(**EVENT_PROCESS)
    recorder.wait_for_topic(DEV1_STATE)
    daemon._event_process._process.kill()
    wait_until(daemon._stop.is_set, "the bridge noticed", timeout=5)
    assert daemon.failed


def test_a_webhook_event_before_the_first_poll_goes_out_at_once(start_daemon, recorder, account):
    daemon = start_daemon(**EVENT_PROCESS)
    delivery = {"event": {"id": "early", "type": "disturbance_first_notice", "home_id": "home1"}}
    assert requests.post(webhook_url(daemon), json=delivery, timeout=5).status_code == 202
    assert document(recorder.wait_for_topic("minut2mqtt/home/home1/event"))["id"] == "early"
    home_state = "minut2mqtt/home/home1/state"
    state_where(recorder, home_state, lambda s: s["states"]["disturbance"] == "ON")
