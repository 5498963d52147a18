"""The Minut side: tolerant parsing, the request budget, errors and backoff."""

from __future__ import annotations

import threading
import time

import pytest
from conftest import CLIENT_ID, CLIENT_SECRET

from minut2mqtt.minut.client import MinutApiError, MinutAuthError, MinutClient
from minut2mqtt.minut.models import MinutDataError, parse_device, parse_event, parse_home
from minut2mqtt.minut.scheduler import Priority, RequestScheduler
from minut2mqtt.runtime.retry import retry_delay


def test_device_with_nulls_missing_keys_and_unknown_fields():
    device = parse_device(
        {
            "device_id": "abc",
            "description": None,
            "latest_sensor_values": {
                "temperature": {"value": None},
                "humidity": "n/a",
                "sound": {},
            },
            "battery": None,
            "ongoing_events": None,
            "offline": None,
            "hardware_version": "2",
            "firmware": None,
            "brand_new_field": {"nested": [1, 2]},
        }
    )
    assert device.name == "Point abc"
    assert dict(device.readings) == {}
    assert device.battery_percent is None
    assert device.ongoing_events == frozenset()
    assert device.offline is False
    assert device.model == "Point v2"


def test_device_without_latest_sensor_values_is_normal():
    device = parse_device({"device_id": "abc", "home": "h"})
    assert dict(device.readings) == {}


def test_reading_without_time_and_legacy_keys():
    device = parse_device(
        {
            "device_id": "abc",
            "latest_sensor_values": {"pressure": {"value": 1013.2}, "part_als": {"value": 12}},
        }
    )
    assert device.readings["pressure"].value == 1013.2
    assert device.readings["pressure"].time is None
    assert device.readings["part_als"].value == 12.0


@pytest.mark.parametrize(
    "raw",
    [{}, {"device_id": ""}, {"device_id": None}, {"device_id": True}],
)
def test_device_without_an_id_is_refused(raw):
    with pytest.raises(MinutDataError):
        parse_device(raw)


def test_home_and_event_tolerate_odd_values():
    home = parse_home({"home_id": 42, "devices": ["a", None, 3], "alarm_status": None})
    assert home.home_id == "42" and home.device_ids == ("a",) and home.alarm_status is None
    event = parse_event({"id": "e", "type": "x", "created_at": "not a time", "device_id": None})
    assert event.created_at is None and event.device_id is None


class FakeTime:
    def __init__(self) -> None:
        self.now = 0.0
        self.slept: list[float] = []

    def clock(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.now += seconds


def test_budget_never_exceeds_its_minute_or_second_limits():
    fake = FakeTime()
    scheduler = RequestScheduler(per_minute=10, per_second=5, clock=fake.clock, sleep=fake.sleep)
    sent_at = []
    for _ in range(25):
        scheduler.acquire()
        sent_at.append(fake.now)
    for index, moment in enumerate(sent_at):
        assert sum(1 for other in sent_at if moment - 60 < other <= moment) <= 10
        assert sum(1 for other in sent_at if moment - 1 < other <= moment) <= 5, index
    assert sent_at[-1] >= 120  # 25 requests at 10 a minute need two full minutes of waiting


def test_waiting_requests_go_by_priority_then_in_order():
    scheduler = RequestScheduler(per_minute=100)
    scheduler.pause(0.5)  # as after a 429: every request must queue until then
    admitted: list[str] = []

    def request(name: str, priority: Priority) -> None:
        scheduler.acquire(priority)
        admitted.append(name)

    queued = [
        ("poll", Priority.POLL),
        ("another poll", Priority.POLL),
        ("events", Priority.EVENTS),
        ("token", Priority.TOKEN),
    ]
    threads = []
    for name, priority in queued:
        thread = threading.Thread(target=request, args=(name, priority))
        thread.start()
        threads.append(thread)
        while scheduler.waiting() < len(threads):
            time.sleep(0.01)
    for thread in threads:
        thread.join(timeout=10)
    assert admitted == ["token", "events", "poll", "another poll"]


def test_a_long_waiting_poll_goes_before_event_pulls_that_came_much_later():
    scheduler = RequestScheduler(per_minute=100, head_start_per_level=0.2)
    scheduler.pause(0.6)
    admitted: list[str] = []

    def request(name: str, priority: Priority) -> None:
        scheduler.acquire(priority)
        admitted.append(name)

    poll = threading.Thread(target=request, args=("poll", Priority.POLL))
    poll.start()
    time.sleep(0.4)  # longer than the events' head start of one level
    pull = threading.Thread(target=request, args=("pull", Priority.EVENTS))
    pull.start()
    for thread in (poll, pull):
        thread.join(timeout=10)
    assert admitted == ["poll", "pull"]


def test_a_429_pauses_every_request_for_its_retry_after():
    fake = FakeTime()
    scheduler = RequestScheduler(per_minute=100, clock=fake.clock, sleep=fake.sleep)
    scheduler.acquire()
    scheduler.pause(42)
    scheduler.acquire(Priority.TOKEN)
    assert fake.now >= 42
    assert scheduler.rate_limited == 1


def test_after_a_429_the_client_waits_for_retry_after_before_its_next_request(simulator, account):
    client = MinutClient(simulator.base_url, CLIENT_ID, CLIENT_SECRET)
    account.fail_next(1, status=429, retry_after=1, paths="/devices")
    with pytest.raises(MinutApiError):
        client.get_devices()
    refused_at = time.monotonic()
    client.get_homes()
    assert time.monotonic() - refused_at >= 0.9
    assert client.scheduler.rate_limited == 1


def test_wrong_credentials_are_an_auth_error(simulator):
    client = MinutClient(simulator.base_url, CLIENT_ID, "wrong")
    with pytest.raises(MinutAuthError, match=r"client_id and minut\.client_secret"):
        client.get_devices()


def test_rate_limit_answer_carries_retry_after(simulator, account):
    client = MinutClient(simulator.base_url, CLIENT_ID, CLIENT_SECRET)
    account.fail_next(1, status=429, retry_after=17)
    with pytest.raises(MinutApiError) as caught:
        client.get_homes()
    assert (caught.value.status, caught.value.retry_after) == (429, 17)


def test_unreachable_api_is_an_api_error():
    client = MinutClient("http://127.0.0.1:9/v8", CLIENT_ID, CLIENT_SECRET, timeout=2)
    with pytest.raises(
        MinutApiError, match=r"token request to http://127.0.0.1:9/v8/oauth/token failed"
    ):
        client.get_devices()


def test_retry_delay_backs_off_exponentially_and_honours_retry_after():
    plain = MinutApiError("boom", 503)
    delays = [retry_delay(plain, failures, ceiling=300) for failures in range(1, 8)]
    assert 2.5 <= delays[0] <= 5
    assert all(delay <= 300 for delay in delays)
    assert delays[5] >= 80  # 5 s doubled five times, with at most half taken off by jitter
    assert retry_delay(MinutApiError("slow down", 429, retry_after=120), 1, ceiling=300) >= 120


def test_readings_that_are_not_finite_numbers_are_ignored():
    device = parse_device(
        {
            "device_id": "abc",
            "latest_sensor_values": {
                "temperature": {"value": float("inf")},
                "humidity": {"value": float("nan")},
                "sound": {"value": 10**400},
                "pressure": {"value": 1000},
            },
        }
    )
    assert set(device.readings) == {"pressure"}


@pytest.mark.parametrize(
    ("api_url", "reason"),
    [
        ("http://no-such-host.invalid/v8", "the host name does not resolve (DNS)"),
        ("http://127.0.0.1:1/v8", "connection refused (nothing listens there)"),
    ],
)
def test_an_api_that_does_not_answer_says_why(api_url, reason):
    client = MinutClient(api_url, CLIENT_ID, CLIENT_SECRET, timeout=2)
    with pytest.raises(MinutApiError) as caught:
        client.get_devices()
    assert str(caught.value).endswith(reason)
