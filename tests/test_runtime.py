"""The daemon's loops, one step at a time: a fake Minut, a fake clock, no threads (but one test
that fires every kind of job at the writer from many threads at once)."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator, Mapping
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from fakes import Clock, MemoryPublisher

from minut2mqtt.core.mirror import UPDATES_PER_STEP, Mirror
from minut2mqtt.core.status import MINUT_CONNECTED, StatusBoard
from minut2mqtt.core.topics import Topics
from minut2mqtt.minut.errors import MinutApiError
from minut2mqtt.minut.models import Event, parse_device, parse_event, parse_home
from minut2mqtt.runtime.catch_up import CURSOR_FILE, PULL_OVERLAP, CatchUp
from minut2mqtt.runtime.housekeeping import Housekeeping
from minut2mqtt.runtime.poller import Poller
from minut2mqtt.runtime.writer import Writer

NOW = datetime(2026, 11, 30, 12, 0, tzinfo=UTC)
TOPICS = Topics("minut2mqtt", "homeassistant")
HOME = {"home_id": "home1", "name": "Beach house", "alarm_status": "off", "devices": ["dev1"]}
DEVICE = {
    "device_id": "dev1",
    "home": "home1",
    "description": "Hallway",
    "latest_sensor_values": {"temperature": {"value": 21.0, "time": "2026-11-30T11:59:00Z"}},
}


class FakeMinut:
    """Answers polls with `devices` and `homes`, or raises the errors queued in `failures`."""

    def __init__(self) -> None:
        self.devices: list[dict[str, Any]] = [DEVICE]
        self.homes: list[dict[str, Any]] = [HOME]
        self.failures: list[MinutApiError] = []
        self.requests = 0

    def get_devices(self) -> list[dict[str, Any]]:
        self.requests += 1
        if self.failures:
            raise self.failures.pop(0)
        return self.devices

    def get_homes(self) -> list[dict[str, Any]]:
        self.requests += 1
        return self.homes


class FakeHistory:
    """Answers pulls with the events of each home since its time; records what was asked."""

    def __init__(self) -> None:
        self.events: list[Event] = []
        self.asked: list[dict[str, datetime]] = []
        self.failure: MinutApiError | None = None

    def pull(
        self, since_by_home: Mapping[str, datetime]
    ) -> Iterator[tuple[list[str], list[Event]]]:
        self.asked.append(dict(since_by_home))
        if self.failure is not None:
            raise self.failure
        for home_id, since in since_by_home.items():
            yield (
                [home_id],
                [
                    event
                    for event in self.events
                    if event.home_id == home_id and event.created_at and event.created_at >= since
                ],
            )


def event(event_id: str, event_type: str = "pir_motion", at: datetime = NOW, **more: Any) -> Event:
    return parse_event(
        {
            "id": event_id,
            "type": event_type,
            "home_id": "home1",
            "device_id": "dev1",
            "created_at": at.isoformat(),
            **more,
        }
    )


@pytest.fixture
def clock() -> Clock:
    return Clock(NOW)


@pytest.fixture
def publisher() -> MemoryPublisher:
    return MemoryPublisher()


@pytest.fixture
def status(clock: Clock) -> StatusBoard:
    return StatusBoard(wall_clock=clock.now)


@pytest.fixture
def writer(publisher: MemoryPublisher, status: StatusBoard, clock: Clock) -> Writer:
    """A writer whose jobs run when a test calls `run_pending` (or asks it something)."""
    mirror = Mirror(publisher, TOPICS, wall_clock=clock.now, monotonic=clock.monotonic)
    return Writer(mirror, status)


def events_on(publisher: MemoryPublisher, topic: str = "minut2mqtt/device/dev1/event") -> list[str]:
    return [json.loads(message.payload)["id"] for message in publisher.on_topic(topic)]


def state(publisher: MemoryPublisher) -> dict[str, Any]:
    document: dict[str, Any] = json.loads(publisher.retained[TOPICS.device_state("dev1")])
    return document


# -- the writer -----------------------------------------------------------------------------------


def test_events_wait_for_the_first_poll_then_go_in_order(writer, publisher):
    writer.submit_event(event("e1"))
    writer.submit_event(event("e2", "tamper_removed"))
    writer.run_pending()
    assert events_on(publisher) == []
    writer.apply_poll([parse_device(DEVICE)], [parse_home(HOME)])
    writer.open_for_events()
    writer.run_pending()
    assert events_on(publisher) == ["e1", "e2"]
    assert state(publisher)["states"]["tamper"] == "ON", "the event found its Point"


def test_events_held_for_the_first_poll_find_every_point_it_brought(writer, publisher):
    devices = [{**DEVICE, "device_id": f"dev{n}"} for n in range(UPDATES_PER_STEP * 3)]
    last = devices[-1]["device_id"]
    writer.submit_event(event("e1", "tamper", device_id=last))
    writer.apply_poll([parse_device(device) for device in devices], [parse_home(HOME)])
    assert events_on(publisher, f"minut2mqtt/device/{last}/event") == ["e1"]
    document = json.loads(publisher.retained[TOPICS.device_state(last)])
    assert document["states"]["tamper"] == "ON", "the event found its Point"


def test_the_first_poll_announces_its_points_known_then_published_and_later_polls_nothing(
    publisher, status
):
    mirror = Mirror(publisher, TOPICS)
    seen: list[tuple[int, int]] = []

    def note_points_and_states() -> None:
        states = [topic for topic in publisher.retained if topic.startswith("minut2mqtt/device/")]
        seen.append((len(mirror.devices), len(states)))

    writer = Writer(mirror, status, on_long_lived=note_points_and_states)
    devices = [parse_device({**DEVICE, "device_id": f"d{n}"}) for n in range(UPDATES_PER_STEP * 3)]
    writer.apply_poll(devices, [parse_home(HOME)])
    writer.apply_poll(devices, [parse_home(HOME)])
    # cli.py freezes what exists at each call out of the garbage collector's full passes
    (points_known, states_then), (_, states_at_the_end) = seen
    assert points_known == len(devices) and states_then == 0
    assert states_at_the_end >= len(devices)


def test_every_accounts_first_poll_announces_once_it_is_published(publisher, status):
    mirror = Mirror(publisher, TOPICS)
    announced_with: list[int] = []
    writer = Writer(
        mirror, status, on_long_lived=lambda: announced_with.append(len(mirror.devices))
    )
    first = [parse_device({**DEVICE, "device_id": f"a{n}"}) for n in range(3)]
    second = [parse_device({**DEVICE, "device_id": f"b{n}"}) for n in range(2)]
    writer.apply_poll(first, [parse_home(HOME)], "first")
    writer.apply_poll(second, [parse_home(HOME)], "second")
    writer.apply_poll(first, [parse_home(HOME)], "first")
    writer.apply_poll(second, [parse_home(HOME)], "second")
    # the first poll's Points known, it published; the second account's published; then nothing
    assert announced_with == [3, 3, 5]


def test_republish_requests_waiting_together_are_one(writer, publisher):
    writer.apply_poll([parse_device(DEVICE)], [parse_home(HOME)])
    publisher.clear()
    for _ in range(5):
        writer.request_republish()
    writer.run_pending()
    state_topic = TOPICS.device_state("dev1")
    assert len(publisher.on_topic(state_topic)) == 1
    writer.request_republish()
    writer.run_pending()
    assert len(publisher.on_topic(state_topic)) == 2


def test_pulled_events_count_once_and_webhook_events_reach_the_cursor(writer, publisher, status):
    done: list[str] = []
    writer = Writer(writer.mirror, status, on_webhook_event_done=lambda e: done.append(e.id))
    writer.open_for_events()
    writer.submit_event(event("e1"))
    writer.submit_pulled([event("e1"), event("e2")])
    writer.submit_event(event("e2"))  # a late repeat: not published, still done
    writer.run_pending()
    assert events_on(publisher) == ["e1", "e2"]
    snapshot = status.snapshot()
    assert (snapshot.events_published, snapshot.events_pulled) == (2, 1)
    assert done == ["e1", "e2"]


def test_concurrent_deliveries_polls_and_republishes_leave_one_consistent_state(
    publisher, status, clock
):
    mirror = Mirror(publisher, TOPICS, wall_clock=clock.now, monotonic=clock.monotonic)
    writer = Writer(mirror, status)
    writer.start()
    try:
        writer.apply_poll([parse_device(DEVICE)], [parse_home(HOME)])
        writer.open_for_events()

        def deliver(sender: int) -> None:
            for number in range(200):
                writer.submit_event(event(f"e{number % 150}-{sender % 2}"))  # repeats too

        def poll() -> None:
            for value in range(50):
                device = {**DEVICE, "latest_sensor_values": {"temperature": {"value": value}}}
                writer.apply_poll([parse_device(device)], [parse_home(HOME)])

        def republish() -> None:
            for _ in range(50):
                writer.request_republish()
                writer.note_discovery_config("homeassistant/sensor/x/y/config", b"{}")
                writer.tick()

        threads = [threading.Thread(target=deliver, args=(n,)) for n in range(4)]
        threads += [threading.Thread(target=poll), threading.Thread(target=republish)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        published = writer.ask(
            lambda: sum(mirror.has_published(f"e{n}-{s}") for n in range(150) for s in (0, 1))
        )
    finally:
        writer.stop()
    ids = events_on(publisher)
    assert len(ids) == len(set(ids)) == 300 == published, "every event once"
    assert status.snapshot().events_published == 300
    assert state(publisher)["readings"]["temperature"]["value"] == 49, "the last poll wins"
    assert state(publisher)["states"]["motion"] == "ON"


# -- the poller -----------------------------------------------------------------------------------


def test_a_poll_is_applied_before_it_returns_and_the_next_waits_for_the_interval(
    writer, status, clock, publisher
):
    minut = FakeMinut()
    homes: list[tuple[list[str], datetime]] = []
    poller = Poller(
        minut,
        writer,
        status.account("default"),
        interval=300,
        on_homes=lambda ids, at: homes.append((ids, at)),
        monotonic=clock.monotonic,
        wall_clock=clock.now,
    )
    assert poller.step() == 300
    assert state(publisher)["readings"]["temperature"]["value"] == 21.0
    assert homes == [(["home1"], NOW)] and poller.first_attempt_done.is_set()
    assert (status.snapshot().last_poll, status.snapshot().minut) == (NOW, MINUT_CONNECTED)
    clock.advance(100)
    assert poller.step() == 200 and minut.requests == 2
    poller.request_poll()
    poller.step()
    assert minut.requests == 4, "asked for: polled at once"


def test_a_failing_poll_backs_off_and_its_recovery_asks_for_a_catch_up(writer, status, clock):
    minut = FakeMinut()
    minut.failures = [MinutApiError("GET /devices: HTTP 503", 503), MinutApiError("slow", 429, 90)]
    recovered: list[bool] = []
    poller = Poller(
        minut,
        writer,
        status.account("default"),
        interval=300,
        after_outage=lambda: recovered.append(True),
        monotonic=clock.monotonic,
    )
    first_wait = poller.step()
    assert 2.5 <= first_wait <= 5
    assert status.snapshot().last_poll_error == "GET /devices: HTTP 503"
    assert poller.first_attempt_done.is_set(), "events may go even when the first poll failed"
    clock.advance(first_wait)
    assert round(poller.step(), 6) >= 90, "Retry-After is honoured"
    assert status.snapshot().minut == "rate_limited"
    clock.advance(90)
    poller.step()
    assert recovered == [True]
    assert status.snapshot().polls == {"failed": 2, "ok": 1}


# -- the catch-up ---------------------------------------------------------------------------------


def catch_up_with(
    history: FakeHistory, writer: Writer, status: StatusBoard, clock: Clock, tmp_path: Path
) -> CatchUp:
    catch_up = CatchUp(
        history,
        writer.submit_pulled,
        status.account("default"),
        state_dir=tmp_path,
        silence=900,
        retry_ceiling=300,
        wall_clock=clock.now,
        monotonic=clock.monotonic,
    )
    catch_up.load()
    catch_up.homes_known(["home1"], clock.now())
    return catch_up


def test_a_new_home_is_covered_from_the_poll_that_found_it(
    writer, status, clock, tmp_path, publisher
):
    history = FakeHistory()
    history.events = [
        event("old", at=NOW - timedelta(days=3)),
        event("new", at=NOW + timedelta(minutes=5)),
    ]
    catch_up = catch_up_with(history, writer, status, clock, tmp_path)
    catch_up.step()
    assert history.asked == [], "a home seen for the first time: its past is not news"
    assert json.loads((tmp_path / CURSOR_FILE).read_text()) == {"home1": "2026-11-30T12:00:00.000Z"}
    clock.advance(600)
    catch_up.request()
    catch_up.step()
    writer.open_for_events()
    writer.run_pending()
    assert history.asked == [{"home1": NOW}]
    assert events_on(publisher) == ["new"]
    moved_to = json.loads((tmp_path / CURSOR_FILE).read_text())["home1"]
    assert moved_to == "2026-11-30T12:00:00.000Z", "now minus the overlap"
    assert clock.wall - PULL_OVERLAP == NOW


def test_an_event_right_after_the_first_poll_is_pulled_however_late_the_first_pull(
    writer, status, clock, tmp_path, publisher
):
    history = FakeHistory()
    history.events = [event("right-after-the-poll", at=NOW + timedelta(seconds=1))]
    catch_up = catch_up_with(history, writer, status, clock, tmp_path)  # the poll at NOW
    clock.advance(2)  # the catch-up thread gets its turn late
    catch_up.step()  # the startup pull: nothing to ask about a home just found
    catch_up.request()  # a later pull (an outage, a silence)
    catch_up.step()
    writer.open_for_events()
    writer.run_pending()
    assert events_on(publisher) == ["right-after-the-poll"]


def test_webhook_deliveries_move_the_cursor_only_while_no_pull_is_due(
    writer, status, clock, tmp_path
):
    catch_up = catch_up_with(FakeHistory(), writer, status, clock, tmp_path)
    late = event("e1", at=NOW + timedelta(hours=1))
    catch_up.note_delivered(late)  # at startup a pull is due: earlier events may be missing
    catch_up.step()
    assert json.loads((tmp_path / CURSOR_FILE).read_text())["home1"] == "2026-11-30T12:00:00.000Z"
    catch_up.note_delivered(late)
    catch_up.save()
    assert json.loads((tmp_path / CURSOR_FILE).read_text())["home1"] == "2026-11-30T13:00:00.000Z"


def test_silence_makes_a_pull_due_and_a_failure_retries_with_backoff(
    writer, status, clock, tmp_path
):
    history = FakeHistory()
    catch_up = catch_up_with(history, writer, status, clock, tmp_path)
    catch_up.step()  # the startup pull (no request: a new home)
    clock.advance(600)
    catch_up.note_webhook()
    clock.advance(800)
    assert catch_up.step() == 1.0 and history.asked == [], "a webhook came 800 s ago"
    clock.advance(101)
    history.failure = MinutApiError("GET /homes/home1/events: HTTP 503", 503)
    assert catch_up.step() == 1.0
    assert len(history.asked) == 1 and status.snapshot().minut == "unreachable"
    catch_up.step()
    assert len(history.asked) == 1, "backing off"
    history.failure = None
    clock.advance(10)
    catch_up.step()
    assert len(history.asked) == 2 and status.snapshot().minut == MINUT_CONNECTED


# -- housekeeping ---------------------------------------------------------------------------------


def test_orphans_are_swept_once_the_broker_replayed_its_configs_and_a_poll_came(writer, publisher):
    orphan = "homeassistant/sensor/minut2mqtt_gone/temperature/config"
    writer.broker_forgot()
    writer.note_discovery_config(
        orphan, b'{"availability": [{"topic": "minut2mqtt/bridge/availability"}]}'
    )
    writer.configs_replayed()
    writer.run_pending()
    assert not publisher.on_topic(orphan), "no poll yet: which entities exist is unknown"
    writer.apply_poll([parse_device(DEVICE)], [parse_home(HOME)])
    assert [message.payload for message in publisher.on_topic(orphan)] == [b""]
    writer.apply_poll([parse_device(DEVICE)], [parse_home(HOME)])
    writer.request_republish()
    writer.run_pending()
    assert len(publisher.on_topic(orphan)) == 1, "once"


def test_home_assistant_birth_republishes_after_the_pause(writer, status, clock, publisher):
    housekeeping = Housekeeping(writer, status, monotonic=clock.monotonic, birth_delay=lambda: 2.0)
    writer.apply_poll([parse_device(DEVICE)], [parse_home(HOME)])
    publisher.clear()
    assert housekeeping.home_assistant_started() == 2.0
    housekeeping.step()
    writer.run_pending()
    assert not publisher.on_topic(TOPICS.device_state("dev1"))
    clock.advance(2)
    housekeeping.step()
    writer.run_pending()
    assert publisher.on_topic(TOPICS.device_state("dev1"))
    assert publisher.on_topic(TOPICS.bridge_status), "and the status document, refreshed"


def test_a_republish_sends_the_status_as_it_is_now(writer, status, publisher):
    writer.refresh_status()
    writer.run_pending()
    status.event_published(pulled=False)
    writer.request_republish()
    writer.run_pending()
    latest = publisher.on_topic(TOPICS.bridge_status)[-1]
    assert json.loads(latest.payload)["events_forwarded"] == 1


def test_a_poll_parses_only_the_objects_whose_json_changed():
    from minut2mqtt.runtime.poller import ParsedLastTime

    parsed: list[str] = []

    def parse(raw):
        parsed.append(raw.get("device_id", "?"))
        return parse_device(raw)

    devices = ParsedLastTime(parse, "device_id")
    first = devices.parse_all([{**DEVICE, "device_id": "a"}, {**DEVICE, "device_id": "b"}])
    renamed = {**DEVICE, "device_id": "b", "description": "Renamed"}
    second = devices.parse_all([{**DEVICE, "device_id": "a"}, renamed, {"no": "id"}])
    assert parsed == ["a", "b", "b", "?"]  # the object without an id is refused and skipped
    assert second[0] is first[0] and second[1].name == "Renamed" and len(second) == 2
    devices.parse_all([renamed])
    assert devices.parse_all([{**DEVICE, "device_id": "a"}])[0] is not first[0]  # forgotten
