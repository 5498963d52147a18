"""The command runner's own rules, on the writer's mirror and a fake Minut (no threads)."""

from __future__ import annotations

import json
from typing import Any

from fakes import MemoryPublisher
from test_mirror import TOPICS, connected_to_an_empty_broker, poll, raw_device

from minut2mqtt.core.control_configs import Controls
from minut2mqtt.core.mirror import Mirror
from minut2mqtt.core.status import StatusBoard
from minut2mqtt.minut.errors import MinutApiError
from minut2mqtt.runtime.commands import CommandRunner
from minut2mqtt.runtime.writer import Writer

TOPIC = "minut2mqtt/device/dev1/sound_level_high/set"
REACTION = {"type": "sound_level_high", "value": 75, "duration_seconds": 600}


class FakeMinut:
    """Answers like the API: a PUT changes the device, a GET shows it."""

    def __init__(self, device: dict[str, Any]) -> None:
        self.device = device
        self.requests: list[tuple[str, str, Any]] = []
        self.failures: list[MinutApiError] = []
        self.scheduler = self

    def wait_needed(self) -> float:
        return 0.0

    def request(self, method: str, path: str, **kwargs: Any) -> Any:
        self.requests.append((method, path, kwargs.get("json")))
        if self.failures:
            raise self.failures.pop(0)
        if method == "PUT":
            self.device["reactions"] = kwargs["json"]["reactions"]
        return self.device


def runner_on(device: dict[str, Any]) -> tuple[CommandRunner, FakeMinut, MemoryPublisher]:
    publisher = MemoryPublisher()
    mirror = Mirror(publisher, TOPICS, controls=Controls())
    connected_to_an_empty_broker(mirror)
    writer = Writer(mirror, StatusBoard())
    poll(mirror, device)
    minut = FakeMinut(device)
    runner = CommandRunner(
        writer, publisher, TOPICS, lambda kind, subject: minut, sleep=lambda seconds: None
    )
    return runner, minut, publisher


def answers(publisher: MemoryPublisher) -> list[dict[str, Any]]:
    return [json.loads(m.payload) for m in publisher.on_topic("minut2mqtt/bridge/response")]


def test_a_burst_on_one_control_sends_only_its_last_value():
    runner, minut, publisher = runner_on(raw_device(reactions=[dict(REACTION)]))
    for value in (60, 61, 62, 70):  # a slider dragged
        runner.submit(TOPIC, str(value).encode())
    runner.run_pending()
    puts = [r for r in minut.requests if r[0] == "PUT"]
    assert [body["reactions"][0]["value"] for _, _, body in puts] == [70]
    assert [a["state"] for a in answers(publisher)] == [70]


def test_minut_failing_is_tried_again_then_answered_as_failed():
    runner, minut, publisher = runner_on(raw_device(reactions=[dict(REACTION)]))
    minut.failures = [MinutApiError("GET: HTTP 503", 503) for _ in range(3)]
    runner.submit(TOPIC, b"70")
    runner.run_pending()
    [answer] = answers(publisher)
    assert answer["result"] == "failed" and "503" in answer["reason"]
    assert len(minut.requests) == 3  # once and two retries, never more
    assert runner.results["failed"] == 1


def test_a_flood_of_commands_is_bounded_in_memory_and_counted():
    runner, minut, publisher = runner_on(raw_device(reactions=[dict(REACTION)]))
    huge = b"7" * 1_000_000
    for number in range(1001):  # to ever new (unknown) Points
        runner.submit(f"minut2mqtt/device/nope{number}/sound_level_high/set", huge)
    assert runner.results["refused"] == 1  # the one beyond the bound, dropped at once
    runner.run_pending()
    assert runner.results["refused"] == 1001 and minut.requests == []
    assert {a["reason"] for a in answers(publisher)} == {"1000000 bytes long: at most 256"}


def test_bad_commands_are_all_answered_but_warned_of_once_saying_so(caplog):
    runner, _, publisher = runner_on(raw_device(reactions=[dict(REACTION)]))
    for value in (b"200", b"bad", b"300"):
        runner.submit(TOPIC, value)
        runner.run_pending()
    assert [a["result"] for a in answers(publisher)] == ["refused"] * 3
    warnings = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert len(warnings) == 1
    assert "more refused commands in the next 5 minutes are logged at debug level" in warnings[0]
