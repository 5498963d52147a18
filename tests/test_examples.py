"""examples/node-red-flow.json: a valid Node-RED flow that reads what the real bridge publishes
and sends commands the real bridge carries out.

The structure is checked as Node-RED would load it (unique ids, wires to existing nodes, every
`mqtt in` and `mqtt out` on the one broker node). Then the real daemon runs against the simulator
and a real broker, and the flow's topic filters, the fields its functions read and its switch
rules are checked against the messages the bridge actually published. The flow's commands ("arm
all homes", "set threshold") are published as its nodes would publish them, against the demo's
account whose ids the flow names: the simulator's homes get armed, the threshold changes, and the
bridge's answers arrive where the flow listens. When `node` is installed, the function nodes'
JavaScript runs on those messages; without it, "arm all homes" is replayed in Python.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import paho.mqtt.publish as publish
import pytest
from conftest import CLIENT_ID, CLIENT_SECRET
from paho.mqtt.client import topic_matches_sub
from test_end_to_end import document, retained, state_where

from minut2mqtt.core.entities import KNOWN_EVENT_TYPES
from minut2mqtt.simulator import SimulatedAccount
from minut2mqtt.simulator.scenario import demo_account

FLOW_FILE = Path(__file__).parent.parent / "examples" / "node-red-flow.json"
CORE_NODE_TYPES = {"tab", "comment", "mqtt-broker", "mqtt in", "json", "function", "switch"}
CORE_NODE_TYPES |= {"debug", "change", "inject", "mqtt out"}
RESPONSE = "minut2mqtt/bridge/response"
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


def named(flow: list[Node], name: str) -> Node:
    (node,) = [node for node in flow if node.get("name") == name]
    return node


def typed_value(value: str, value_type: str) -> Any:
    """A value typed in an `inject` or `change` node, as Node-RED reads it."""
    if value_type == "str":
        return value
    if value_type == "num":
        return float(value) if "." in value else int(value)
    if value_type == "json":
        return json.loads(value)
    if value_type == "date":
        return int(time.time() * 1000)
    raise AssertionError(f"value type {value_type!r} is not emulated by this test")


def inject_message(inject: Node) -> dict[str, Any]:
    """The message an `inject` node sends (Node-RED 2.1+ `props`)."""
    message = {}
    for prop in inject["props"]:
        name = prop["p"]
        value = prop.get("v", inject.get(name, ""))
        message[name] = typed_value(value, prop.get("vt", inject.get(f"{name}Type", "str")))
    return message


def apply_change(change: Node, message: dict[str, Any]) -> dict[str, Any]:
    """A `change` node's rules applied to a message (only "set" a top-level msg property)."""
    changed = dict(message)
    for rule in change["rules"]:
        if (rule["t"], rule["pt"]) != ("set", "msg") or "." in rule["p"]:
            raise AssertionError(f"change rule {rule} is not emulated by this test")
        changed[rule["p"]] = typed_value(rule["to"], rule["tot"])
    return changed


def mqtt_out_publication(mqtt_out: Node, message: dict[str, Any]) -> tuple[str, str, int, bool]:
    """(topic, payload, qos, retain) of what an `mqtt out` node publishes for `message`."""
    topic = mqtt_out["topic"] or message.get("topic")
    assert topic, f"{mqtt_out['name']} gets a message without msg.topic"
    payload = message["payload"]
    if isinstance(payload, bool):
        text = "true" if payload else "false"
    elif isinstance(payload, int | float):  # as JavaScript prints it: 70, not 70.0
        text = str(int(payload)) if float(payload).is_integer() else repr(payload)
    elif isinstance(payload, str):
        text = payload
    else:
        text = json.dumps(payload, separators=(",", ":"))
    return topic, text, int(mqtt_out["qos"] or 0), mqtt_out["retain"] == "true"


FunctionRunner = Callable[[Node, dict[str, Any]], list[dict[str, Any]]]


def reaching_mqtt_out(
    flow: list[Node], node: Node, message: dict[str, Any], run_function: FunctionRunner
) -> list[tuple[Node, dict[str, Any]]]:
    """(mqtt out node, message) for each message that `node` sends on and an `mqtt out` gets."""
    if node["type"] == "mqtt out":
        return [(node, message)]
    if node["type"] == "inject":
        sent = [message]
    elif node["type"] == "change":
        sent = [apply_change(node, message)]
    elif node["type"] == "function":
        sent = run_function(node, message)
    else:
        raise AssertionError(f"{node['type']} on the way to an mqtt out is not emulated")
    nodes = {candidate["id"]: candidate for candidate in flow}
    return [
        reached
        for out in sent
        for target in targets(node)
        for reached in reaching_mqtt_out(flow, nodes[target], out, run_function)
    ]


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


def test_every_mqtt_out_uses_the_one_broker_node_and_sends_commands_unretained():
    flow = load_flow()
    (broker,) = by_type(flow, "mqtt-broker")
    outputs = by_type(flow, "mqtt out")
    assert {node["name"] for node in outputs} == {"alarm commands", "threshold command"}
    fed = {target for node in flow for target in targets(node)}
    for node in outputs:
        assert node["broker"] == broker["id"], f"{node['name']} uses another broker"
        # The bridge ignores retained commands: they would run again on every reconnect.
        assert node["retain"] == "false", f"{node['name']} would retain its commands"
        assert node["qos"] in {"1", "2"}, f"{node['name']} may lose a command (QoS 0)"
        assert node["id"] in fed, f"nothing is wired to {node['name']}"
        assert node["wires"] == []


def test_arm_all_homes_fires_every_day_at_23_00():
    flow = load_flow()
    inject = named(flow, "23:00 every day")
    # Node-RED's "at a specific time" on every day: minutes, hours, any day of the month,
    # any month, every day of the week; no repeat interval besides.
    assert (inject["crontab"], inject["repeat"], inject["once"]) == ("00 23 * * *", "", False)
    assert list(targets(inject)) == [named(flow, "arm all homes")["id"]]
    (threshold,) = [node for node in by_type(flow, "inject") if node is not inject]
    assert (threshold["crontab"], threshold["repeat"]) == ("", ""), "only sent by its button"


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
def published(start_daemon, recorder, broker, account) -> list[tuple[str, Any]]:
    """(topic, payload) of what the bridge published: states, an alarm, a noise event, …, and
    its answer to a command it refused (this Point shows Minut no noise threshold)."""
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
    publish_command(broker, "minut2mqtt/device/dev1/sound_level_high/set", "70")
    refused = document(recorder.wait_for_topic(RESPONSE))
    assert (refused["result"], refused["device_id"]) == ("refused", "dev1")
    messages = []
    for message in recorder.messages:
        try:
            payload: Any = json.loads(message.payload)
        except ValueError:
            payload = message.text
        messages.append((message.topic, payload))
    return messages


def publish_command(broker: Any, topic: str, payload: str, qos: int = 1) -> None:
    publish.single(topic, payload, qos=qos, retain=False, hostname=broker.host, port=broker.port)


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
needs_node = pytest.mark.skipif(shutil.which("node") is None, reason="Node.js is not installed")


def run_functions(steps: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Run each step's function node JavaScript on its message, in order, in one flow context."""
    result = subprocess.run(
        ["node", "-e", NODE_HARNESS],
        input=json.dumps(steps),
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    entries: list[dict[str, Any]] = json.loads(result.stdout)
    return entries


def first_output(returned: Any) -> list[dict[str, Any]]:
    """The messages a function's return value sends on its first output, as Node-RED reads it."""
    if isinstance(returned, dict):
        return [returned]
    first = returned[0] if returned else None
    if first is None:
        return []
    return first if isinstance(first, list) else [first]


@needs_node
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
    outputs: dict[str, list[Any]] = {}
    for entry in run_functions(steps):
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


@needs_node
def test_remember_homes_forgets_a_home_that_left_the_account():
    flow = load_flow()
    remember, arm = named(flow, "remember homes"), named(flow, "arm all homes")
    inject = {"name": arm["name"], "func": arm["func"], "topic": "", "payload": 0}

    def state(home_id: str, name: str | None) -> dict[str, Any]:
        payload = json.dumps({"home_id": home_id, "name": name}) if name else ""
        topic = f"minut2mqtt/home/{home_id}/state"
        return {
            "name": remember["name"],
            "func": remember["func"],
            "topic": topic,
            "payload": payload,
        }

    first, *_, last = run_functions(
        [
            inject,  # deployed before the broker delivered anything: no command, a warning
            state("beach-house", "Beach house"),
            state("city-flat", "City flat"),
            state("city-flat", None),  # the bridge clears a home's state when the home leaves
            inject,
        ]
    )
    assert first["out"] is None
    assert first_output(last["out"]) == [
        {"topic": "minut2mqtt/home/beach-house/alarm/set", "payload": "ARM_AWAY"}
    ]
    assert last["statuses"][-1]["text"] == "ARM_AWAY sent to Beach house"


# The flow's commands, carried out by the real bridge -------------------------------------------


@pytest.fixture
def account(request: pytest.FixtureRequest, account: SimulatedAccount) -> SimulatedAccount:
    """The tests' account, or (parametrized "demo") the demo's, whose ids the flow names."""
    if getattr(request, "param", None) == "demo":
        return demo_account(client_id=CLIENT_ID, client_secret=CLIENT_SECRET, alarm_grace_seconds=0)
    return account


def arm_all_homes_runner(flow: list[Node], home_states: dict[str, bytes]) -> FunctionRunner:
    """Runs "arm all homes" once "remember homes" has seen `home_states`: its JavaScript when
    Node.js is installed, else the same in Python."""
    remember = named(flow, "remember homes")

    def run(function: Node, message: dict[str, Any]) -> list[dict[str, Any]]:
        assert function["name"] == "arm all homes"
        if shutil.which("node") is None:
            assert '"ARM_AWAY"' in function["func"] and "/alarm/set" in function["func"]
            return [
                {
                    "topic": f"minut2mqtt/home/{topic.split('/')[-2]}/alarm/set",
                    "payload": "ARM_AWAY",
                }
                for topic, payload in sorted(home_states.items())
                if payload
            ]
        steps = [
            {"name": remember["name"], "func": remember["func"], "topic": topic, "payload": text}
            for topic, text in sorted((t, p.decode()) for t, p in home_states.items())
        ]
        steps.append(
            {
                "name": function["name"],
                "func": function["func"],
                "topic": message.get("topic", ""),
                "payload": message["payload"],
            }
        )
        return first_output(run_functions(steps)[-1]["out"])

    return run


@pytest.mark.parametrize("account", ["demo"], indirect=True)
def test_the_flows_commands_arm_every_home_and_set_the_threshold(
    start_daemon, recorder, broker, account
):
    flow = load_flow()
    start_daemon()
    home_ids = sorted(home["home_id"] for home in account.list_homes())
    assert home_ids == ["beach-house", "city-flat"]
    alarms = {}
    for home_id in home_ids:
        topic = f"minut2mqtt/home/{home_id}/state"
        alarms[home_id] = state_where(recorder, topic, lambda doc: "alarm" in doc["controls"])
    assert {home_id: doc["controls"]["alarm"] for home_id, doc in alarms.items()} == {
        "beach-house": "disarmed",
        "city-flat": "armed_away",
    }
    hallway = "minut2mqtt/device/point-hallway/state"
    state_where(recorder, hallway, lambda doc: doc["controls"]["sound_level_high"] == 75)

    # "Home ids" gets the retained home states when the flow is deployed.
    ((home_ids_in, _),) = upstream_mqtt_inputs(flow, named(flow, "remember homes"))
    home_states = retained(broker, home_ids_in["topic"])
    assert sorted(home_states) == [f"minut2mqtt/home/{home_id}/state" for home_id in home_ids]

    # Each inject node fires once ("23:00 every day" and the "70 dB" button).
    run_function = arm_all_homes_runner(flow, home_states)
    sent = [
        mqtt_out_publication(mqtt_out, message)
        for inject in by_type(flow, "inject")
        for mqtt_out, message in reaching_mqtt_out(
            flow, inject, inject_message(inject), run_function
        )
    ]
    assert sorted((topic, payload) for topic, payload, _, _ in sent) == [
        ("minut2mqtt/device/point-hallway/sound_level_high/set", "70"),
        ("minut2mqtt/home/beach-house/alarm/set", "ARM_AWAY"),
        ("minut2mqtt/home/city-flat/alarm/set", "ARM_AWAY"),
    ]
    recorder.clear()
    for topic, payload, qos, retain in sent:
        publish.single(
            topic, payload, qos=qos, retain=retain, hostname=broker.host, port=broker.port
        )

    # Every command is answered where "Command responses" listens.
    responses_in = named(flow, "Command responses")
    assert topic_matches_sub(responses_in["topic"], RESPONSE)
    answers = {}
    for topic, *_ in sent:
        answers[topic] = document(
            recorder.wait_for_topic(
                RESPONSE, 10, lambda payload, t=topic: json.loads(payload)["topic"] == t
            )
        )
    assert {topic: (a["result"], a["state"]) for topic, a in answers.items()} == {
        "minut2mqtt/device/point-hallway/sound_level_high/set": ("ok", 70),
        "minut2mqtt/home/beach-house/alarm/set": ("ok", "armed_away"),
        "minut2mqtt/home/city-flat/alarm/set": ("ok", "armed_away"),
    }

    # Minut changed, and the published states follow.
    written = {(w.method, w.path.removeprefix("/v8"), w.status) for w in account.writes}
    assert ("PATCH", "/homes/beach-house/alarm", 200) in written
    assert ("PUT", "/devices/point-hallway", 200) in written
    assert {home_id: account.get_home(home_id)["alarm_status"] for home_id in home_ids} == {
        "beach-house": "on",
        "city-flat": "on",
    }
    reactions = {r["type"]: r["value"] for r in account.get_device("point-hallway")["reactions"]}
    assert reactions["sound_level_high"] == 70
    state_where(recorder, hallway, lambda doc: doc["controls"]["sound_level_high"] == 70)
    state_where(
        recorder,
        "minut2mqtt/home/beach-house/state",
        lambda doc: doc["controls"]["alarm"] == "armed_away",
    )
    for topic, payload in retained(broker, home_ids_in["topic"]).items():
        assert json.loads(payload)["controls"]["alarm"] == "armed_away", topic
