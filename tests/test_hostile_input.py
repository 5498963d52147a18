"""The real webhook listener under hostile input: it never answers 5xx and never falls over.

One daemon (real broker, simulator, waitress) takes a few thousand generated requests: random
bytes, random JSON, deliveries with a wrong type in some field, deep nesting, huge bodies,
wrong methods, paths and secrets, odd encodings. Every answer must be a JSON document with an
"error" or a "status" and a status below 500. Afterwards the listener is still healthy, and
exactly the valid deliveries (unknown event types included) reached the MQTT event topics.
"""

from __future__ import annotations

import itertools
import json
import math
import os
import time
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote, quote_from_bytes

import pytest
import requests
from brokers import Message, MqttRecorder, make_test_broker
from conftest import CLIENT_ID, CLIENT_SECRET, WEBHOOK_SECRET, daemon_overrides
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from minut2mqtt.core.entities import HOME_EVENT_TYPES
from minut2mqtt.core.topics import topic_safe
from minut2mqtt.daemon import Daemon
from minut2mqtt.settings import load_settings
from minut2mqtt.simulator import SimulatedAccount, SimulatorServer
from minut2mqtt.web.intake import MAX_BODY_BYTES

EVENT_TOPICS = "minut2mqtt/+/+/event"
# One listener takes every request of this module, and the last test counts them all: one worker.
# (xdist may still set it up twice on that worker, so the last test sends a mix of its own too.)
pytestmark = pytest.mark.xdist_group("hostile-input")

HOSTILE = settings(
    deadline=None,
    derandomize=True,  # the same requests on every run: a failure in CI reproduces locally
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)


@dataclass
class Listener:
    """The running daemon's webhook listener and what the tests expect on the event topics."""

    base_url: str
    http: requests.Session
    events: MqttRecorder
    expected_event_messages: Counter[tuple[str, str]] = field(default_factory=Counter)
    fresh_numbers: Iterator[int] = field(default_factory=itertools.count)

    @property
    def webhook_url(self) -> str:
        return f"{self.base_url}/webhook/{WEBHOOK_SECRET}"

    def fresh_event_id(self) -> str:
        return f"hostile-{next(self.fresh_numbers)}"

    def post_delivery(self, body: bytes, content_type: str = "application/json") -> Any:
        response = self.http.post(
            self.webhook_url, data=body, headers={"Content-Type": content_type}, timeout=10
        )
        return answer_of(response)

    def expect_published(self, event: dict[str, Any]) -> None:
        for topic in event_topics(event):
            self.expected_event_messages[(topic, str(event["id"]))] += 1


@pytest.fixture(scope="module")
def listener(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Listener]:
    tmp_path = tmp_path_factory.mktemp("hostile")
    account = SimulatedAccount(client_id=CLIENT_ID, client_secret=CLIENT_SECRET)
    account.add_home(home_id="home1", name="Beach house")
    account.add_device(device_id="dev1", home_id="home1", description="Hallway")
    account.add_device(device_id="dev2", home_id="home1", description="Kitchen")
    broker = make_test_broker(tmp_path)
    with (
        pytest.MonkeyPatch.context() as monkeypatch,
        SimulatorServer(account, host="127.0.0.1", port=0) as simulator,
        MqttRecorder(broker.host, broker.port, topics=[EVENT_TOPICS]) as events,
        requests.Session() as http,
    ):
        for name in [name for name in os.environ if name.startswith("MINUT2MQTT_")]:
            monkeypatch.delenv(name)
        overrides = daemon_overrides(tmp_path, broker, simulator) | {"log_level": "WARNING"}
        daemon = Daemon(load_settings(None, overrides))
        daemon.start()
        try:
            assert daemon.publisher.wait_connected(10), "daemon did not connect to the broker"
            deadline = time.monotonic() + 15
            while daemon.status.snapshot().devices < 2:  # events wait for the first poll
                assert time.monotonic() < deadline, "the first poll did not happen"
                time.sleep(0.05)
            yield Listener(f"http://127.0.0.1:{daemon.webhook_port}", http, events)
        finally:
            daemon.stop()
            broker.stop()


# -- what the listener promises -------------------------------------------------------------


def answer_of(response: requests.Response) -> tuple[int, dict[str, Any]]:
    """Status and JSON document of an answer, after checking it is a calm one."""
    assert response.status_code < 500, (response.status_code, response.text[:300])
    assert response.headers["Content-Type"] == "application/json", response.headers
    document = response.json()
    assert isinstance(document, dict), document
    assert "error" in document or "status" in document, document
    return response.status_code, document


def carried_event(delivery: Any) -> dict[str, Any] | None:
    """The event of a valid delivery `{"hook_id": str?, "event": {id, type, …}}`, else None.

    Valid: `event` is an object whose `id` is a non-empty string or an integer and whose
    `type` is a non-empty string; `hook_id` is absent, null or a string; every number is
    finite and every string is valid Unicode. Any other field may hold anything.
    """
    if not isinstance(delivery, dict) or not isinstance(delivery.get("event"), dict):
        return None
    hook_id = delivery.get("hook_id")
    if hook_id is not None and not isinstance(hook_id, str):
        return None
    event: dict[str, Any] = delivery["event"]
    event_id, event_type = event.get("id"), event.get("type")
    if isinstance(event_id, bool) or not isinstance(event_id, int | str) or event_id == "":
        return None
    if not isinstance(event_type, str) or not event_type:
        return None
    return event if well_formed(delivery) else None


def well_formed(value: Any) -> bool:
    if isinstance(value, float):
        return math.isfinite(value)
    if isinstance(value, str):
        return not any(0xD800 <= ord(character) <= 0xDFFF for character in value)
    if isinstance(value, list):
        return all(well_formed(item) for item in value)
    if isinstance(value, dict):
        return all(well_formed(key) and well_formed(item) for key, item in value.items())
    return True


def event_topics(event: dict[str, Any]) -> list[str]:
    """Where docs/topics.md says an accepted event is published."""
    device_id, home_id = usable_id(event.get("device_id")), usable_id(event.get("home_id"))
    topics = []
    if device_id is not None:
        topics.append(f"minut2mqtt/device/{topic_safe(device_id)}/event")
    if home_id is not None and (device_id is None or event["type"] in HOME_EVENT_TYPES):
        topics.append(f"minut2mqtt/home/{topic_safe(home_id)}/event")
    return topics


def usable_id(value: Any) -> str | None:
    if isinstance(value, str) and value:
        return value
    if isinstance(value, int | float) and not isinstance(value, bool):
        return str(value)
    return None


def event_id_of(message: Message) -> str:
    """The id of a published event, decoded in a thread of its own: the deepest accepted events
    nest nearly as deep as Python allows, too deep to decode from inside pytest's stack."""
    with ThreadPoolExecutor(max_workers=1) as fresh_stack:
        event = fresh_stack.submit(json.loads, message.payload).result()
    return str(event["id"])


def send_json_value(listener: Listener, value: Any) -> None:
    """POST `value` as JSON (NaN and Infinity as Python writes them); check the answer."""
    status, document = listener.post_delivery(json.dumps(value).encode())
    event = carried_event(value)
    if event is None:
        assert status == 400, (status, document, value)
    else:
        assert (status, document) == (202, {"status": "accepted", "event_id": str(event["id"])})
        listener.expect_published(event)


# -- strategies -------------------------------------------------------------------------------

lone_surrogates = st.characters(min_codepoint=0xD800, max_codepoint=0xDFFF)
json_text = st.text(st.characters() | lone_surrogates, max_size=12)
json_numbers = (
    st.integers()
    | st.integers(min_value=-(10**300), max_value=10**300)
    | st.floats()  # NaN, ±Infinity and ±1e308 included
)
json_leaves = st.none() | st.booleans() | json_numbers | json_text
json_values = st.recursive(
    json_leaves,
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(json_text, children, max_size=4)
    ),
    max_leaves=20,
)
json_containers = json_values.filter(lambda value: isinstance(value, list | dict))
wrong_for_text = st.none() | st.booleans() | json_numbers | st.just("") | json_containers
wrong_for_id = st.none() | st.booleans() | st.floats() | st.just("") | json_containers


class FreshId:
    """Stands for a new, unique event id (text or number), so each valid delivery is distinct."""

    def __init__(self, as_number: bool) -> None:
        self.as_number = as_number

    def __repr__(self) -> str:
        return f"FreshId(as_number={self.as_number})"


event_types = (
    st.sampled_from(["pir_motion", "tamper", "disturbance_first_notice", "alarm_silenced"])
    | st.sampled_from(["future_event_type", "teleportation_detected"])
    | st.text(min_size=1, max_size=20)
    | json_text.filter(bool)  # may hold lone surrogates
)
optional_event_fields = st.fixed_dictionaries(
    {},
    optional={
        "created_at": st.sampled_from(["2026-11-23T12:23:43.667Z", "yesterday", "2026-13-45"])
        | json_values,
        "device_id": st.sampled_from(["dev1", "dev2", "unknown-point", "a/b+#"]) | json_values,
        "home_id": st.sampled_from(["home1", "unknown-home"]) | json_values,
        "user_id": json_values,
        "sensor_value": json_numbers,
        "extra": json_values,
    },
)


@st.composite
def almost_deliveries(draw: st.DrawFn) -> Any:
    """A delivery with any fields; then, mostly, one required part missing or of a wrong type."""
    event = {"id": FreshId(draw(st.booleans())), "type": draw(event_types)}
    event |= draw(optional_event_fields)
    delivery: dict[str, Any] = {"event": event}
    if draw(st.booleans()):
        delivery["hook_id"] = draw(st.none() | st.text(max_size=24))
    broken = draw(st.sampled_from(["nothing", "hook_id", "event", "id", "type", "whole"]))
    if broken == "hook_id":
        delivery["hook_id"] = draw(wrong_for_text.filter(lambda value: value is not None))
    elif broken == "event":
        delivery["event"] = draw(st.sampled_from([[event], None, "event", 42]) | json_values)
    elif broken in ("id", "type"):
        wrong = wrong_for_id if broken == "id" else wrong_for_text
        if draw(st.booleans()):
            event[broken] = draw(wrong)
        else:
            del event[broken]
    elif broken == "whole":
        return draw(st.sampled_from([[delivery], event, json.dumps(event, default=str)]))
    return delivery


def with_fresh_ids(listener: Listener, value: Any) -> Any:
    if isinstance(value, FreshId):
        number = next(listener.fresh_numbers)
        return 10**12 + number if value.as_number else f"hostile-{number}"
    if isinstance(value, list):
        return [with_fresh_ids(listener, item) for item in value]
    if isinstance(value, dict):
        return {key: with_fresh_ids(listener, item) for key, item in value.items()}
    return value


def valid_delivery(listener: Listener, **fields: Any) -> dict[str, Any]:
    event = {
        "id": listener.fresh_event_id(),
        "type": "future_event_type",
        "created_at": "2026-11-23T12:23:43.667Z",
        "home_id": "home1",
        "device_id": "dev1",
        **fields,
    }
    return {"hook_id": "hook-1", "event": event}


# -- the requests -----------------------------------------------------------------------------


@settings(HOSTILE, max_examples=400)
@given(body=st.binary(max_size=2048))
def test_random_bytes_are_refused_calmly(listener: Listener, body: bytes) -> None:
    status, _ = listener.post_delivery(body)
    assert status == 400


@settings(HOSTILE, max_examples=500)
@given(value=json_values)
def test_random_json_values_are_refused_unless_they_are_a_delivery(
    listener: Listener, value: Any
) -> None:
    send_json_value(listener, value)


@settings(HOSTILE, max_examples=600)
@given(delivery=almost_deliveries())
def test_deliveries_with_a_wrong_type_somewhere_are_refused_and_valid_ones_accepted(
    listener: Listener, delivery: Any
) -> None:
    send_json_value(listener, with_fresh_ids(listener, delivery))


@pytest.mark.parametrize(
    ("literal", "accepted"),
    [
        ("NaN", False),
        ("Infinity", False),
        ("-Infinity", False),
        ("1e999", False),  # overflows to infinity
        ("-1e999", False),
        ("1" * 5000, False),  # beyond Python's 4300-digit limit for int()
        ("1e-999", True),  # underflows to 0.0: a number, just a small one
        ("-0", True),
        ("123456789012345678901234567890", True),
        ("1.7976931348623157e308", True),
    ],
)
def test_numbers_at_the_edges(listener: Listener, literal: str, accepted: bool) -> None:
    delivery = valid_delivery(listener, sensor_value="__number__")
    body = json.dumps(delivery).replace('"__number__"', literal).encode()
    status, _ = listener.post_delivery(body)
    assert status == (202 if accepted else 400)
    if accepted:
        listener.expect_published(delivery["event"])


@pytest.mark.parametrize(
    "body",
    [
        "[" * 10_000,
        "[" * 10_000 + "]" * 10_000,
        '{"a":' * 10_000 + "1" + "}" * 10_000,
        '{"hook_id":"h","event":' * 2_500 + "{}" + "}" * 2_500,  # just under 64 KiB
        '"' + "\\" * 10_001,
    ],
    ids=["open-lists", "closed-lists", "objects", "deliveries", "backslashes"],
)
def test_deep_nesting_is_refused(listener: Listener, body: str) -> None:
    status, _ = listener.post_delivery(body.encode())
    assert status == 400


# Not generated by hypothesis: it raises Python's recursion limit while a test runs, and this
# daemon runs in the test's process, so the depth it accepts would then not be the real one.
@pytest.mark.parametrize("depth", [1, 10, 100, 500, 900, 950, 980, 990, 995, 999, 1000, 2000])
def test_nesting_inside_a_valid_delivery_is_accepted_only_when_it_can_be_published(
    listener: Listener, depth: int
) -> None:
    delivery = valid_delivery(listener, extra="__nested__")
    body = json.dumps(delivery).replace('"__nested__"', "[" * depth + "]" * depth).encode()
    status, _ = listener.post_delivery(body)
    if depth <= 500:
        assert status == 202
    if depth >= 1000:
        assert status == 400
    if status == 202:  # then it must arrive too: the last test counts it
        listener.expect_published(delivery["event"])


@settings(HOSTILE, max_examples=30)
@given(
    excess=st.integers(min_value=1, max_value=2 * 1024 * 1024),
    chunked=st.booleans(),
    valid_json=st.booleans(),
)
def test_bodies_above_64_kib_are_too_large(
    listener: Listener, excess: int, chunked: bool, valid_json: bool
) -> None:
    size = MAX_BODY_BYTES + excess
    if valid_json:
        delivery = valid_delivery(listener, padding="")
        text = json.dumps(delivery)
        body = text.replace('"padding": ""', '"padding": "' + "x" * size + '"').encode()
    else:
        body = b"\xff" * size
    data: Any = iter([body[:1000], body[1000:]]) if chunked else body
    response = listener.http.post(listener.webhook_url, data=data, timeout=30)
    status, document = answer_of(response)
    assert (status, document) == (413, {"error": "request entity too large"})


@settings(HOSTILE, max_examples=120)
@given(
    method=st.sampled_from(["GET", "PUT", "DELETE", "PATCH"]),
    body=st.binary(max_size=200),
)
def test_other_methods_on_the_webhook_are_not_allowed(
    listener: Listener, method: str, body: bytes
) -> None:
    response = listener.http.request(method, listener.webhook_url, data=body, timeout=10)
    assert answer_of(response) == (405, {"error": "method not allowed"})


path_segments = st.text(max_size=12).filter(lambda segment: segment.strip(".") != "")


@settings(HOSTILE, max_examples=200)
@given(
    method=st.sampled_from(["GET", "POST", "PUT", "DELETE", "PATCH"]),
    segments=st.lists(path_segments, min_size=1, max_size=4),
)
def test_unknown_paths_are_not_found(listener: Listener, method: str, segments: list[str]) -> None:
    if segments[0].startswith(("webhook", "healthz")) or segments[0] == "":
        segments = ["not-" + segments[0], *segments[1:]]
    path = "/" + "/".join(quote(segment, safe="") for segment in segments)
    response = listener.http.request(method, listener.base_url + path, timeout=10)
    assert answer_of(response) == (404, {"error": "not found"})


@settings(HOSTILE, max_examples=150)
@given(secret=st.text(min_size=1, max_size=40) | st.binary(min_size=1, max_size=40))
def test_a_wrong_secret_is_not_found_even_with_a_valid_delivery(
    listener: Listener, secret: str | bytes
) -> None:
    quoted = quote_from_bytes(secret, safe="") if isinstance(secret, bytes) else quote(secret, "")
    if quoted in (WEBHOOK_SECRET, ".", ".."):
        quoted = "wrong-" + quoted
    body = json.dumps(valid_delivery(listener)).encode()
    response = listener.http.post(f"{listener.base_url}/webhook/{quoted}", data=body, timeout=10)
    assert answer_of(response) == (404, {"error": "not found"})


def test_a_prefix_or_an_extension_of_the_secret_is_not_the_secret(listener: Listener) -> None:
    body = json.dumps(valid_delivery(listener)).encode()
    for secret in (WEBHOOK_SECRET[:-1], WEBHOOK_SECRET + "x", WEBHOOK_SECRET.upper(), ""):
        response = listener.http.post(f"{listener.base_url}/webhook/{secret}", data=body)
        assert answer_of(response) == (404, {"error": "not found"}), secret


def test_a_doubled_slash_before_the_secret_redirects_to_the_webhook(listener: Listener) -> None:
    """Werkzeug merges slashes with a 308 (its own HTML page, the one non-JSON answer here)."""
    delivery = valid_delivery(listener)
    url = f"{listener.base_url}/webhook//{WEBHOOK_SECRET}"
    redirect = listener.http.post(url, data=b"{}", allow_redirects=False, timeout=10)
    assert redirect.status_code == 308
    assert redirect.headers["Location"].endswith(f"/webhook/{WEBHOOK_SECRET}")
    followed = listener.http.post(url, data=json.dumps(delivery).encode(), timeout=10)
    assert answer_of(followed)[0] == 202
    listener.expect_published(delivery["event"])


JSON_ENCODINGS = ["utf-8", "utf-8-sig", "utf-16", "utf-16-le", "utf-16-be", "utf-32"]


@settings(HOSTILE, max_examples=200)
@given(
    content_type=st.sampled_from(
        [
            "application/json",
            "text/plain",
            "application/x-www-form-urlencoded",
            "multipart/form-data; boundary=xyz",
            "application/json; charset=latin-1",
            "",
        ]
    )
    | st.text(st.characters(min_codepoint=0x20, max_codepoint=0x7E), max_size=30).map(str.strip),
    encoding=st.sampled_from([*JSON_ENCODINGS, "latin-1", "cp1252", "shift_jis"]),
    room=st.sampled_from(["Kök", "Hallway", "Wohnzimmer Süd", "寝室"]),
)
def test_odd_content_types_and_encodings(
    listener: Listener, content_type: str, encoding: str, room: str
) -> None:
    delivery = valid_delivery(listener, type="room_renamed", room=room)
    try:
        body = json.dumps(delivery, ensure_ascii=False).encode(encoding)
    except UnicodeEncodeError:
        body = json.dumps(delivery, ensure_ascii=False).encode(encoding, "replace")
    status, _ = listener.post_delivery(body, content_type)
    # JSON is UTF-8, -16 or -32 (RFC 8259); other bytes only pass while they are plain ASCII.
    if encoding in JSON_ENCODINGS or body.isascii():
        assert status == 202
        listener.expect_published(delivery["event"])
    else:
        assert status == 400


def test_a_non_utf8_byte_inside_a_string_is_refused(listener: Listener) -> None:
    delivery = valid_delivery(listener, type="glass_break_\ufffd")
    body = json.dumps(delivery, ensure_ascii=False).encode()
    status, _ = listener.post_delivery(body.replace("\ufffd".encode(), b"\xff"))
    assert status == 400


def test_a_lone_surrogate_is_refused(listener: Listener) -> None:
    """A `\\ud800` escape parses in Python but cannot be published: MQTT payloads are UTF-8."""
    body = json.dumps(valid_delivery(listener, type="\ud800")).encode()
    assert b"\\ud800" in body
    assert listener.post_delivery(body) == (
        400,
        {"error": "strings must be valid Unicode (no lone surrogates)"},
    )


# -- afterwards -------------------------------------------------------------------------------


def test_afterwards_the_listener_is_healthy_and_only_valid_deliveries_were_published(
    listener: Listener,
) -> None:
    health = listener.http.get(f"{listener.base_url}/healthz", timeout=10)
    assert health.status_code == 200, health.text
    assert health.json()["status"] == "ok"
    # A mix of its own: xdist may run this test on a listener set up again after the others
    for number in range(60):
        event_type = ["pir_motion", "alarm_heard", "future_event_type"][number % 3]
        send_json_value(listener, valid_delivery(listener, type=event_type))
        send_json_value(listener, valid_delivery(listener, type=number))  # refused: not text

    final = valid_delivery(listener, type="future_event_type")
    assert listener.post_delivery(json.dumps(final).encode())[0] == 202
    listener.expect_published(final["event"])
    final_id = final["event"]["id"]
    # One worker publishes events in the order they came, so everything else is in by now.
    listener.events.wait_for(lambda message: event_id_of(message) == final_id, timeout=20)
    published = Counter(
        (message.topic, event_id_of(message)) for message in listener.events.messages
    )
    missing = listener.expected_event_messages - published
    unexpected = published - listener.expected_event_messages
    assert not missing, f"valid deliveries never published: {sorted(missing)[:10]}"
    assert not unexpected, f"published without a valid delivery: {sorted(unexpected)[:10]}"
    assert sum(published.values()) > 60
