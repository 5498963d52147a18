"""examples/node-red-flow.json: a valid Node-RED flow that reads what the real bridge publishes.

The structure is checked as Node-RED would load it (unique ids, wires to existing nodes, every
`mqtt in` on the one broker node). Then the real daemon runs against the simulator and a real
broker, and the flow's topic filters, the fields its functions read and its switch rules are
checked against the messages the bridge actually published. When `node` is installed, the
function nodes' JavaScript also runs on those messages.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from paho.mqtt.client import topic_matches_sub

from minut2mqtt.core.entities import KNOWN_EVENT_TYPES

FLOW_FILE = Path(__file__).parent.parent / "examples" / "node-red-flow.json"
CORE_NODE_TYPES = {"tab", "comment", "mqtt-broker", "mqtt in", "json", "function", "switch"}
CORE_NODE_TYPES |= {"debug", "change"}
PAYLOAD_PATH = re.compile(r"\bmsg\.payload((?:\.[A-Za-z_]\w*)+)")
PAYLOAD_ASSIGNMENT = re.compile(r"\bmsg\.payload\s*=(?!=)")

Node = dict[str, Any]


def load_flow() -> list[Node]:
    flow = json.loads(FLOW_FILE.read_text(encoding="utf-8"))
    assert isinstance(flow, list), "a Node-RED flow file is a JSON array of nodes"
    return flow


def by_type(flow: list[Node], node_type: str) -> list[Node]:
    return [node for node in flow if node["type"] == node_type]


def targets(node: Node) -> Iterator[str]:
    for output in node.get("wires", []):
        yield from output


def upstream_mqtt_inputs(flow: list[Node], node: Node) -> list[tuple[Node, list[Node]]]:
    """Each `mqtt in` node that feeds `node`, with the nodes in between (nearest last)."""
    feeders: dict[str, list[Node]] = {}
    for candidate in flow:
        for target in targets(candidate):
            feeders.setdefault(target, []).append(candidate)
    found: list[tuple[Node, list[Node]]] = []

    def walk(current: Node, between: list[Node]) -> None:
        for feeder in feeders.get(current["id"], []):
            if feeder["type"] == "mqtt in":
                found.append((feeder, between))
            else:
                walk(feeder, [feeder, *between])

    walk(node, [])
    return found


def reads_payload_as_json(mqtt_in: Node, between: list[Node]) -> bool:
    return mqtt_in["datatype"] == "json" or any(
        node["type"] == "json" and node.get("property", "payload") == "payload" for node in between
    )


def incoming_payload_paths(code: str) -> set[tuple[str, ...]]:
    """Fields of the incoming msg.payload a function reads (before it replaces msg.payload)."""
    assignment = PAYLOAD_ASSIGNMENT.search(code)
    if assignment is not None:
        rest = code[assignment.end() :]
        assert PAYLOAD_PATH.search(rest) is None, (
            "a function reads msg.payload.… after replacing msg.payload; build the new payload "
            "in a variable first, so that every msg.payload.… read is of the bridge's document"
        )
        code = code[: assignment.start()]
    return {tuple(match.group(1).lstrip(".").split(".")) for match in PAYLOAD_PATH.finditer(code)}


def has_path(document: Any, path: tuple[str, ...]) -> bool:
    for key in path:
        if not isinstance(document, dict) or key not in document:
            return False
        document = document[key]
    return True


def switch_output(switch: Node, value: Any) -> int | None:
    """The first output of a `switch` node (checkall false) that `value` goes to."""
    for index, rule in enumerate(switch["rules"]):
        kind = rule["t"]
        if kind == "else":
            return index
        if kind == "eq" and rule.get("vt", "str") == "str" and value == rule["v"]:
            return index
        if kind == "regex" and isinstance(value, str):
            flags = re.IGNORECASE if rule.get("case") else 0
            if re.search(rule["v"], value, flags):
                return index
        if kind not in {"eq", "regex"}:
            raise AssertionError(f"switch rule {kind!r} is not emulated by this test")
    return None


# The flow as Node-RED loads it --------------------------------------------------------------


def test_flow_is_a_well_formed_node_red_flow():
    flow = load_flow()
    ids = [node["id"] for node in flow]
    assert len(ids) == len(set(ids)), "node ids must be unique"
    known = set(ids)
    tabs = {node["id"] for node in by_type(flow, "tab")}
    for node in flow:
        assert node["type"] in CORE_NODE_TYPES, f"{node['type']} needs an extra palette"
        if "z" in node:
            assert node["z"] in tabs, f"{node['id']} is on a tab that does not exist"
        if node["type"] in {"tab", "mqtt-broker"}:
            continue
        wires = node["wires"]
        assert isinstance(wires, list) and all(isinstance(output, list) for output in wires)
        if node["type"] in {"function", "switch"}:
            assert len(wires) == node["outputs"], f"{node['name']}: one wire list per output"
        for target in targets(node):
            assert target in known, f"{node['name']} is wired to missing node {target}"


def test_every_mqtt_in_uses_the_one_broker_node_pointing_at_the_demo():
    flow = load_flow()
    (broker,) = by_type(flow, "mqtt-broker")
    assert (broker["broker"], broker["port"]) == ("localhost", "1883")
    # The demo's embedded broker speaks MQTT 3.1.1 only (protocol level 4).
    assert broker["protocolVersion"] == "4"
    inputs = by_type(flow, "mqtt in")
    assert inputs
    for node in inputs:
        assert node["broker"] == broker["id"], f"{node['name']} uses another broker"
        assert node["topic"], f"{node['name']} subscribes to nothing"
        assert list(targets(node)), f"{node['name']} is wired to nothing"


def test_every_function_reading_fields_gets_parsed_json():
    flow = load_flow()
    for node in by_type(flow, "function") + by_type(flow, "switch"):
        reads_fields = (
            node["type"] == "switch" and node["property"].startswith("payload.")
        ) or bool(incoming_payload_paths(node.get("func", "")))
        if not reads_fields:
            continue
        for mqtt_in, between in upstream_mqtt_inputs(flow, node):
            assert reads_payload_as_json(mqtt_in, between), (
                f"{node['name']} reads payload fields but {mqtt_in['name']} delivers a string"
            )


# The flow against the real bridge -----------------------------------------------------------


@pytest.fixture
def published(start_daemon, recorder, account) -> list[tuple[str, Any]]:
    """(topic, payload) of what the bridge published: states, an alarm, a noise event, …"""
    start_daemon()
    for topic in (
        "minut2mqtt/bridge/availability",
        "minut2mqtt/device/dev1/state",
        "minut2mqtt/device/dev2/state",
        "minut2mqtt/home/home1/state",
    ):
        recorder.wait_for_topic(topic)
    account.inject_event("alarm_heard", home_id="home1", device_id="dev1")
    account.inject_event("disturbance_first_notice", home_id="home1", sensor_value=78.0)
    account.inject_event("short_button_press", home_id="home1", device_id="dev2")
    for topic, event_type in (
        ("minut2mqtt/device/dev1/event", "alarm_heard"),
        ("minut2mqtt/home/home1/event", "disturbance_first_notice"),
        ("minut2mqtt/device/dev2/event", "short_button_press"),
    ):
        recorder.wait_for_topic(topic, payload_predicate=lambda p, t=event_type: t.encode() in p)
    messages = []
    for message in recorder.messages:
        try:
            payload: Any = json.loads(message.payload)
        except ValueError:
            payload = message.text
        messages.append((message.topic, payload))
    return messages


def payloads_for(published: list[tuple[str, Any]], topic_filter: str) -> list[Any]:
    return [payload for topic, payload in published if topic_matches_sub(topic_filter, topic)]


def test_flow_reads_what_the_bridge_publishes(published):
    flow = load_flow()
    for node in by_type(flow, "mqtt in"):
        matching = payloads_for(published, node["topic"])
        assert matching, (
            f"{node['name']}: {node['topic']} matches none of the published topics "
            f"{sorted({topic for topic, _ in published})}"
        )

    for node in by_type(flow, "function"):
        paths = incoming_payload_paths(node["func"])
        for mqtt_in, between in upstream_mqtt_inputs(flow, node):
            documents = payloads_for(published, mqtt_in["topic"])
            if reads_payload_as_json(mqtt_in, between):
                assert all(isinstance(document, dict) for document in documents), (
                    f"{mqtt_in['topic']} also carries payloads that are not JSON objects"
                )
            for path in paths:
                assert any(has_path(document, path) for document in documents), (
                    f"{node['name']} reads msg.payload.{'.'.join(path)}, which no message on "
                    f"{mqtt_in['topic']} carries"
                )


def test_switch_sends_alarms_and_noise_where_the_flow_expects(published):
    flow = load_flow()
    (switch,) = by_type(flow, "switch")
    path = tuple(switch["property"].split(".")[1:])
    nodes = {node["id"]: node for node in flow}
    routed: dict[str, set[str]] = {}
    for mqtt_in, _ in upstream_mqtt_inputs(flow, switch):
        for event in payloads_for(published, mqtt_in["topic"]):
            assert has_path(event, path), f"an event without {switch['property']}: {event}"
            output = switch_output(switch, event[path[0]])
            assert output is not None
            for target in switch["wires"][output]:
                routed.setdefault(nodes[target]["name"], set()).add(event[path[0]])
    assert routed["alarm message"] == {"alarm_heard"}
    assert routed["noise"] == {"disturbance_first_notice"}
    assert "short_button_press" in routed["other events"]
    # The rules name real Minut event types, not typos that would never match.
    for rule in switch["rules"]:
        if rule["t"] == "eq":
            assert rule["v"] in KNOWN_EVENT_TYPES
        if rule["t"] == "regex":
            assert any(re.search(rule["v"], known) for known in KNOWN_EVENT_TYPES)


# The JavaScript itself, when Node.js is installed ----------------------------------------------

NODE_HARNESS = r"""
const input = JSON.parse(require("fs").readFileSync(0, "utf8"));
const context = new Map();
const flow = { get: (key) => context.get(key), set: (key, value) => context.set(key, value) };
const results = [];
for (const step of input) {
    const statuses = [];
    const node = { status: (status) => statuses.push(status), warn: () => {}, error: (e) => {
        throw new Error(String(e)); }, log: () => {} };
    const run = new Function("msg", "node", "flow", step.func);
    const out = run({ topic: step.topic, payload: step.payload }, node, flow);
    results.push({ name: step.name, out: out === undefined ? null : out, statuses });
}
process.stdout.write(JSON.stringify(results));
"""


@pytest.mark.skipif(shutil.which("node") is None, reason="Node.js is not installed")
def test_function_nodes_run_on_the_published_messages(published):
    flow = load_flow()
    functions = {node["name"]: node for node in by_type(flow, "function")}
    (switch,) = by_type(flow, "switch")
    steps = []
    # State documents first (they teach "remember room names" the rooms), then the events.
    for name in ("remember room names", "temperature", "alarm status", "alarm message"):
        node = functions[name]
        for mqtt_in, _ in upstream_mqtt_inputs(flow, node):
            for topic, payload in published:
                if not topic_matches_sub(mqtt_in["topic"], topic):
                    continue
                if name == "alarm message" and switch_output(switch, payload["event_type"]) != 0:
                    continue
                steps.append(
                    {"name": name, "func": node["func"], "topic": topic, "payload": payload}
                )
    result = subprocess.run(
        ["node", "-e", NODE_HARNESS],
        input=json.dumps(steps),
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    outputs: dict[str, list[Any]] = {}
    for entry in json.loads(result.stdout):
        if entry["out"] is not None:
            outputs.setdefault(entry["name"], []).append(entry["out"]["payload"])
    temperatures = {reading["room"]: reading for reading in outputs["temperature"]}
    with_thermometer = {
        document["name"]
        for document in payloads_for(published, "minut2mqtt/device/+/state")
        if "temperature" in document["readings"]
    }
    assert set(temperatures) == with_thermometer
    assert temperatures["Hallway"]["celsius"] == pytest.approx(21.44)
    assert temperatures["Hallway"]["fresh"] is True
    assert {"home": "Beach house", "alarm_status": "off", "noise_disturbance": False} in outputs[
        "alarm status"
    ]
    (alarm,) = outputs["alarm message"]
    assert alarm.startswith("Smoke/CO alarm heard in Hallway at ")
