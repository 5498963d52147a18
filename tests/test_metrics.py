"""`/metrics`: what an operator's Prometheus scrapes, counted by the real daemon."""

from __future__ import annotations

import time

import pytest
import requests
from conftest import webhook_url
from prometheus_client.parser import text_string_to_metric_families

from minut2mqtt.minut.client import MinutApiError

DEV1_EVENT = "minut2mqtt/device/dev1/event"


DEFAULT = ("account", "default")
"""The label of the account of `minut.client_id`."""


def scrape(port: int) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    answer = requests.get(f"http://127.0.0.1:{port}/metrics", timeout=5)
    assert answer.status_code == 200
    assert answer.headers["Content-Type"].startswith("text/plain; version=")
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(answer.text)
        for sample in family.samples
    }


def wait_for_first_poll(daemon) -> None:
    """After it, the poll loop sleeps for poll_interval: the test's own polls are the only ones."""
    deadline = time.monotonic() + 10
    while daemon.status.snapshot().last_poll is None:
        assert time.monotonic() < deadline, "no first poll"
        time.sleep(0.05)


def test_metrics_count_polls_requests_webhooks_events_and_mqtt(start_daemon, recorder, account):
    daemon = start_daemon()
    wait_for_first_poll(daemon)
    account.fail_next(1, status=503, paths="/devices")
    with pytest.raises(MinutApiError):
        daemon.poller.poll_once()
    delivery = {
        "event": {"id": "m-1", "type": "pir_motion", "home_id": "home1", "device_id": "dev1"}
    }
    assert requests.post(webhook_url(daemon), json=delivery, timeout=5).status_code == 202
    assert requests.post(webhook_url(daemon), data=b"{", timeout=5).status_code == 400
    recorder.wait_for_topic(DEV1_EVENT)

    metrics = scrape(daemon.webhook_port)

    assert metrics[("minut2mqtt_polls_total", (DEFAULT, ("outcome", "failed")))] == 1
    assert metrics[("minut2mqtt_polls_total", (DEFAULT, ("outcome", "ok")))] >= 1
    assert metrics[("minut2mqtt_api_requests_total", (DEFAULT, ("status", "503")))] == 1
    assert metrics[("minut2mqtt_api_requests_total", (DEFAULT, ("status", "200")))] >= 2
    assert metrics[("minut2mqtt_webhooks_total", (("outcome", "accepted"),))] == 1
    assert metrics[("minut2mqtt_webhooks_total", (("outcome", "rejected"),))] == 1
    assert metrics[("minut2mqtt_events_published_total", ())] == 1
    assert metrics[("minut2mqtt_mqtt_up", ())] == 1
    assert metrics[("minut2mqtt_mqtt_reconnects_total", ())] == 0
    assert metrics[("minut2mqtt_devices", ())] == 2
    assert ("minut2mqtt_publish_queue", ()) in metrics
    assert ("minut2mqtt_api_rate_limited_total", (DEFAULT,)) in metrics
    assert metrics[("minut2mqtt_api_requests_last_minute", (DEFAULT,))] >= 3


def test_a_429_is_counted(start_daemon, account):
    daemon = start_daemon()
    wait_for_first_poll(daemon)
    account.fail_next(1, status=429, retry_after=0, paths="/devices")
    with pytest.raises(MinutApiError):
        daemon.poller.poll_once()
    metrics = scrape(daemon.webhook_port)
    assert metrics[("minut2mqtt_api_rate_limited_total", (DEFAULT,))] == 1
    assert metrics[("minut2mqtt_api_requests_total", (DEFAULT, ("status", "429")))] == 1
