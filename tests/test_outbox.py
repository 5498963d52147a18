"""The outbox: messages wait on disk for the broker, across outages and restarts of the bridge."""

from __future__ import annotations

import contextlib
import logging
import os
import socket
import stat
import threading
import time
from collections.abc import Callable
from pathlib import Path

from brokers import MqttRecorder, TestBroker, make_test_broker

from minut2mqtt.core.publishing import Lane
from minut2mqtt.core.retained import fingerprint
from minut2mqtt.mqtt.outbox import Outbox, OutboxRow
from minut2mqtt.mqtt.publisher import MqttOptions, MqttPublisher

OUTBOX_LOG = "minut2mqtt.mqtt.outbox"
PUBLISHER_LOG = "minut2mqtt.mqtt.publisher"
EVENT_TOPIC = "outbox-test/event"
STATE_TOPIC = "outbox-test/state"


def waiting(outbox: Outbox) -> list[tuple[str, bytes, bool]]:
    return [(row.topic, row.payload, row.retain) for row in outbox.rows_after(0, 1_000_000)]


def file_mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


# -- the outbox on its own ------------------------------------------------------------------------


def test_messages_come_out_in_the_order_they_went_in():
    outbox = Outbox(None)
    outbox.append("a/event", b"1", retain=False)
    outbox.append("b/state", b"2", retain=True)
    outbox.append("a/event", b"3", retain=False)
    assert waiting(outbox) == [
        ("a/event", b"1", False),
        ("b/state", b"2", True),
        ("a/event", b"3", False),
    ]
    assert len(outbox) == 3


def test_a_newer_retained_message_replaces_the_waiting_one_of_its_topic():
    outbox = Outbox(None)
    outbox.append("dev1/state", b"old", retain=True)
    outbox.append("dev1/event", b"motion", retain=False)
    outbox.append("dev2/state", b"other", retain=True)
    outbox.append("dev1/state", b"new", retain=True)
    assert waiting(outbox) == [
        ("dev1/event", b"motion", False),
        ("dev2/state", b"other", True),
        ("dev1/state", b"new", True),
    ]


def test_events_are_never_compacted():
    outbox = Outbox(None)
    for payload in (b"same", b"same", b"other"):
        outbox.append("dev1/event", payload, retain=False)
    outbox.append("dev1/event", b"retained on an event topic", retain=True)
    assert [payload for _, payload, _ in waiting(outbox)] == [
        b"same",
        b"same",
        b"other",
        b"retained on an event topic",
    ]


def test_rows_after_continues_where_the_sender_left_off():
    outbox = Outbox(None)
    for number in range(5):
        outbox.append("t", str(number).encode(), retain=False)
    first = outbox.rows_after(0, 2)
    assert [row.payload for row in first] == [b"0", b"1"]
    assert [row.payload for row in outbox.rows_after(first[-1].row_id, 10)] == [b"2", b"3", b"4"]


def test_a_row_id_is_never_given_twice_even_after_the_newest_row_was_delivered():
    outbox = Outbox(None)
    outbox.append("t", b"first", retain=False)
    [handed_out] = outbox.rows_after(0, 10)
    outbox.delete([handed_out.row_id])
    outbox.append("t", b"second", retain=False)
    assert [row.payload for row in outbox.rows_after(handed_out.row_id, 10)] == [b"second"]


def test_delivered_rows_go_and_unknown_ids_are_ignored():
    outbox = Outbox(None)
    outbox.append("t", b"1", retain=False)
    outbox.append("t", b"2", retain=False)
    first, _ = outbox.rows_after(0, 10)
    outbox.delete([first.row_id, first.row_id, 999])
    assert waiting(outbox) == [("t", b"2", False)]
    assert len(outbox) == 1


def test_a_full_outbox_drops_retained_messages_first_then_the_oldest_events(caplog):
    outbox = Outbox(None, limit=5)
    outbox.append("dev1/state", b"s1", retain=True)
    outbox.append("dev1/event", b"e1", retain=False)
    outbox.append("dev2/state", b"s2", retain=True)
    outbox.append("dev1/event", b"e2", retain=False)
    outbox.append("dev1/event", b"e3", retain=False)
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger=OUTBOX_LOG):
        for payload in (b"e4", b"e5", b"e6", b"e7"):
            outbox.append("dev1/event", payload, retain=False)
    assert [payload for _, payload, _ in waiting(outbox)] == [b"e3", b"e4", b"e5", b"e6", b"e7"]
    assert len(outbox) == 5
    [error] = caplog.records
    assert error.levelno == logging.ERROR
    assert "full (5 messages" in error.getMessage()


def test_a_full_outbox_reports_again_after_it_had_room(caplog):
    outbox = Outbox(None, limit=2)
    for payload in (b"1", b"2", b"3"):
        outbox.append("t", payload, retain=False)
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger=OUTBOX_LOG):
        outbox.delete([row.row_id for row in outbox.rows_after(0, 1)])
        for payload in (b"4", b"5"):
            outbox.append("t", payload, retain=False)
    assert [record.levelno for record in caplog.records] == [logging.WARNING, logging.ERROR]
    assert "1 messages were dropped" in caplog.records[0].getMessage()


def test_what_a_previous_run_left_comes_back_in_order(tmp_path):
    path = tmp_path / "state" / "outbox.sqlite3"
    before = Outbox(path)
    before.append("dev1/event", b"first", retain=False)
    before.append("dev1/state", b"state", retain=True)
    before.append("dev1/event", "zweite Nachricht, Größe".encode(), retain=False)
    handed_out = before.rows_after(0, 1)
    before.delete([row.row_id for row in handed_out])  # the broker acknowledged this one
    del before  # not closed: as after a crash

    after = Outbox(path)
    assert after.left_by_previous_run == 2
    assert waiting(after) == [
        ("dev1/state", b"state", True),
        ("dev1/event", "zweite Nachricht, Größe".encode(), False),
    ]


def test_event_ids_are_kept_with_their_messages_also_after_delivery(tmp_path):
    path = tmp_path / "outbox.sqlite3"
    outbox = Outbox(path)
    outbox.append("t/device/a/event", b"{}", retain=False, event_id="ev-1")
    outbox.append("t/home/h/event", b"{}", retain=False, event_id="ev-1")  # same event, 2 topics
    outbox.append("t/device/a/state", b"{}", retain=True)
    outbox.append("t/device/a/event", b"{}", retain=False, event_id="ev-2")
    outbox.delete(row.row_id for row in outbox.rows_after(0, 10))  # all delivered
    outbox.close()
    assert Outbox(path).published_event_ids() == ["ev-1", "ev-2"]


def test_only_the_latest_event_ids_are_kept(monkeypatch):
    monkeypatch.setattr("minut2mqtt.mqtt.outbox.REMEMBERED_EVENT_IDS", 150)
    outbox = Outbox(None)
    for number in range(400):
        outbox.append("t/e", b"{}", retain=False, event_id=f"ev-{number}")
    remembered = outbox.published_event_ids()
    assert remembered == [f"ev-{number}" for number in range(250, 400)]


def test_the_outbox_file_is_readable_by_its_owner_only(tmp_path):
    path = tmp_path / "outbox.sqlite3"
    path.touch(mode=0o644)
    os.chmod(path, 0o644)
    outbox = Outbox(path)
    outbox.append("t", b"secret-ish", retain=False)
    assert file_mode(path) == 0o600
    assert file_mode(Path(f"{path}-wal")) == 0o600
    outbox.close()


def test_a_damaged_outbox_is_set_aside_and_a_new_one_started(tmp_path, caplog):
    path = tmp_path / "outbox.sqlite3"
    path.write_bytes(b"this is not SQLite" * 100)
    with caplog.at_level(logging.ERROR, logger=OUTBOX_LOG):
        outbox = Outbox(path)
    assert len(outbox) == 0
    [aside] = tmp_path.glob("outbox.sqlite3.corrupt-*")
    assert aside.read_bytes().startswith(b"this is not SQLite")
    assert "damaged" in caplog.text


def test_appends_from_several_threads_all_arrive():
    outbox = Outbox(None)

    def append_many(thread_number: int) -> None:
        for number in range(200):
            outbox.append(f"thread{thread_number}", str(number).encode(), retain=False)

    threads = [threading.Thread(target=append_many, args=(n,)) for n in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    rows = outbox.rows_after(0, 10_000)
    assert len(outbox) == len(rows) == 800
    for thread_number in range(4):
        mine = [row.payload for row in rows if row.topic == f"thread{thread_number}"]
        assert mine == [str(number).encode() for number in range(200)]


def test_a_batch_is_written_at_its_end_without_holding_the_outbox_meanwhile():
    written: list[int] = []
    outbox = Outbox(None, on_written=lambda: written.append(len(outbox)))
    with outbox.batch():
        outbox.append(STATE_TOPIC, b"1", retain=True, lane=Lane.CONFIGS)
        # Another thread appends, reads and deletes while this batch is being built.
        other = threading.Thread(target=lambda: outbox.append(EVENT_TOPIC, b"e", retain=False))
        other.start()
        other.join(2)
        assert not other.is_alive(), "the batch held the outbox"
        assert waiting(outbox) == [(EVENT_TOPIC, b"e", False)]
        outbox.append(STATE_TOPIC, b"2", retain=True, lane=Lane.CONFIGS)  # replaces "1"
    assert waiting(outbox) == [(EVENT_TOPIC, b"e", False), (STATE_TOPIC, b"2", True)]
    assert written == [1, 2]  # the sender hears once per commit
    assert outbox.held_configs() == {STATE_TOPIC: fingerprint(b"2")}


def test_a_batch_that_raises_keeps_none_of_its_messages():
    outbox = Outbox(None)
    with contextlib.suppress(RuntimeError), outbox.batch():
        outbox.append(STATE_TOPIC, b"1", retain=True)
        raise RuntimeError("the step failed")
    assert waiting(outbox) == []


def test_outbox_row_is_plain_data():
    assert OutboxRow(1, "t", b"p", True) == OutboxRow(1, "t", b"p", True)


# -- the publisher through outages ----------------------------------------------------------------


class BrokerGate:
    """A TCP relay between the publisher and the broker, for a test to choose what gets through.

    Open: connections pass. Closed: a new connection is accepted and hung up at once (as a
    broker still starting would) and the ones passing are cut. Held: what the publisher sends
    stops short of the broker (which still acknowledges what it got), so it stays
    unacknowledged. The gate lets a subscriber get ready after a
    broker restart before the publisher reconnects, whatever their reconnect delays.
    """

    def __init__(self, broker: TestBroker, *, is_open: bool) -> None:
        self._target = (broker.host, broker.port)
        self._listener = socket.create_server((broker.host, 0))
        self.port: int = self._listener.getsockname()[1]
        self._is_open = is_open
        self._flowing = threading.Event()
        self._flowing.set()
        self._connections: list[socket.socket] = []
        self._lock = threading.Lock()
        threading.Thread(target=self._accept, name="gate", daemon=True).start()

    def open(self) -> None:
        with self._lock:
            self._is_open = True
        self._flowing.set()

    def hold(self) -> None:
        self._flowing.clear()

    def close(self) -> None:
        with self._lock:
            self._is_open = False
            connections, self._connections = self._connections, []
        for connection in connections:
            _cut(connection)
        self._flowing.set()  # held bytes now meet cut sockets and go nowhere

    def shut(self) -> None:
        self.close()
        self._listener.close()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return  # shut
            with self._lock:
                admitted = self._is_open
            try:
                upstream = socket.create_connection(self._target, timeout=2) if admitted else None
            except OSError:
                upstream = None
            if upstream is None:
                _cut(client)
                continue
            upstream.settimeout(None)
            with self._lock:
                self._connections += [client, upstream]
            for source, sink, holdable in ((client, upstream, True), (upstream, client, False)):
                threading.Thread(
                    target=self._pump, args=(source, sink, holdable), daemon=True
                ).start()

    def _pump(self, source: socket.socket, sink: socket.socket, holdable: bool) -> None:
        with contextlib.suppress(OSError):
            while data := source.recv(65536):
                if holdable:
                    self._flowing.wait()
                sink.sendall(data)
        _cut(source)
        _cut(sink)


def _cut(connection: socket.socket) -> None:
    with contextlib.suppress(OSError):
        connection.shutdown(socket.SHUT_RDWR)
    connection.close()


def publisher_options(
    port: int, outbox_path: Path, client_id: str, messages_per_second: float = 500.0
) -> MqttOptions:
    return MqttOptions(
        "127.0.0.1",
        port,
        client_id,
        f"{client_id}/availability",
        messages_per_second=messages_per_second,
        outbox_path=outbox_path,
    )


def wait_until(condition: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {timeout:g} s: {what}")
        time.sleep(0.02)


def events_received(recorder: MqttRecorder) -> list[int]:
    return [int(message.text) for message in recorder.messages if message.topic == EVENT_TOPIC]


def test_a_bridge_restarted_during_a_broker_outage_sends_everything_once_in_order(tmp_path):
    broker = make_test_broker(tmp_path, start=False)
    gate = BrokerGate(broker, is_open=False)
    outbox_path = tmp_path / "state" / "outbox.sqlite3"
    count = 500
    try:
        before_restart = MqttPublisher(publisher_options(gate.port, outbox_path, "outbox-before"))
        before_restart.start()
        for number in range(count):
            before_restart.publish(EVENT_TOPIC, str(number), retain=False)
            if number % 50 == 0:
                before_restart.publish(STATE_TOPIC, f"state {number}", retain=True)
        assert before_restart.queue_depth == count + 1  # the states replaced one another
        started_stopping = time.monotonic()
        before_restart.stop()
        assert time.monotonic() - started_stopping < 2, "nothing to drain without a broker"
        assert not before_restart.connected

        after_restart = MqttPublisher(publisher_options(gate.port, outbox_path, "outbox-after"))
        after_restart.start()
        assert after_restart.queue_depth == count + 1
        broker.start()
        with MqttRecorder(broker.host, broker.port, topics=["outbox-test/#"]) as recorder:
            gate.open()
            assert after_restart.wait_connected(10)
            recorder.wait_for(lambda message: message.text == str(count - 1), timeout=15)
            wait_until(lambda: after_restart.queue_depth == 0, 5, "outbox emptied by the acks")
            assert events_received(recorder) == list(range(count))
            states = [m.text for m in recorder.messages if m.topic == STATE_TOPIC]
            assert states == ["state 450"], "only the newest state, once"
        after_restart.stop()
        assert len(Outbox(outbox_path)) == 0
    finally:
        gate.shut()
        broker.stop()


def test_every_event_arrives_when_the_broker_dies_mid_stream_and_comes_back(tmp_path, broker):
    gate = BrokerGate(broker, is_open=True)
    publisher = MqttPublisher(
        publisher_options(
            gate.port, tmp_path / "outbox.sqlite3", "outbox-midstream", messages_per_second=2000
        )
    )
    recorder = MqttRecorder(broker.host, broker.port, topics=[EVENT_TOPIC])
    sent: list[int] = []
    keep_publishing = threading.Event()
    keep_publishing.set()

    def publish_events() -> None:
        while keep_publishing.is_set():
            number = len(sent)
            publisher.publish(EVENT_TOPIC, str(number), retain=False)
            sent.append(number)
            time.sleep(0.002)

    publishing = threading.Thread(target=publish_events, name="events")
    publisher.start()
    try:
        assert publisher.wait_connected(10)
        recorder.start()
        publishing.start()
        wait_until(lambda: len(events_received(recorder)) >= 100, 10, "first events delivered")

        gate.hold()  # what the publisher sends now stays unacknowledged...
        wait_until(lambda: publisher.queue_depth >= 150, 10, "unacknowledged messages")
        broker.stop()  # ...and the broker dies with them
        gate.close()
        wait_until(lambda: not publisher.connected, 5, "publisher noticed the lost broker")
        time.sleep(0.3)  # events keep coming meanwhile

        broker.start()
        recorder.wait_subscribed(2)
        gate.open()
        assert publisher.wait_connected(10)
        time.sleep(0.3)
        keep_publishing.clear()
        publishing.join()

        wait_until(lambda: set(events_received(recorder)) >= set(sent), 15, "all events")
        time.sleep(0.2)  # time for a duplicate to show
        received = events_received(recorder)
        assert set(received) == set(sent), f"missing: {sorted(set(sent) - set(received))}"
        # Every unacknowledged message was held short of the broker: once each, in order.
        assert received == sent
        assert publisher.reconnects == 1
        wait_until(lambda: publisher.queue_depth == 0, 5, "outbox emptied by the acks")
    finally:
        keep_publishing.clear()
        if publishing.is_alive():
            publishing.join()
        recorder.stop()
        publisher.stop()
        gate.shut()


def test_publish_returns_once_the_message_is_on_disk_and_refuses_what_cannot_be_sent(
    tmp_path, caplog
):
    path = tmp_path / "outbox.sqlite3"
    unreachable = MqttPublisher(publisher_options(1, path, "outbox-unreachable"))
    unreachable.start()
    try:
        with caplog.at_level(logging.ERROR, logger=PUBLISHER_LOG):
            unreachable.publish(EVENT_TOPIC, "\ud800", retain=False)  # cannot be UTF-8
            unreachable.publish("outbox-test/#", "wildcards are for subscribing", retain=False)
        unreachable.publish(EVENT_TOPIC, b"fine", retain=False)
        # Read by another connection, as the next run would after a crash:
        assert waiting(Outbox(path)) == [(EVENT_TOPIC, b"fine", False)]
        assert unreachable.queue_depth == 1
        assert "cannot be encoded as UTF-8" in caplog.text
        assert "not a topic one can publish to" in caplog.text
    finally:
        unreachable.stop()


def test_stop_sends_what_is_waiting_before_saying_offline(tmp_path, broker, recorder):
    path = tmp_path / "outbox.sqlite3"
    publisher = MqttPublisher(publisher_options(broker.port, path, "outbox-drain"))
    publisher.start()
    assert publisher.wait_connected(10)
    for number in range(300):
        publisher.publish(EVENT_TOPIC, str(number), retain=False)
    publisher.stop()
    recorder.wait_for_topic(
        "outbox-drain/availability", payload_predicate=lambda p: p == b"offline"
    )
    assert events_received(recorder) == list(range(300))
    assert len(Outbox(path)) == 0


# -- lanes and query plans ------------------------------------------------------------------------


def test_each_lane_keeps_its_own_order():
    outbox = Outbox(None)
    outbox.append("homeassistant/sensor/x/t/config", b"config", retain=True, lane=Lane.CONFIGS)
    outbox.append("minut2mqtt/device/x/state", b"state", retain=True)
    outbox.append("minut2mqtt/device/x/event", b"event", retain=False)
    assert [row.payload for row in outbox.rows_after(0, 10, Lane.EVENTS)] == [b"event"]
    assert [row.payload for row in outbox.rows_after(0, 10, Lane.STATES)] == [b"state"]
    assert [row.payload for row in outbox.rows_after(0, 10, Lane.CONFIGS)] == [b"config"]


def test_each_lane_finds_what_a_previous_run_left_and_what_came_since(tmp_path):
    before = Outbox(tmp_path / "outbox.sqlite3")
    before.append(EVENT_TOPIC, b"left event", retain=False)
    before.append(STATE_TOPIC, b"left state", retain=True)
    before.close()
    outbox = Outbox(tmp_path / "outbox.sqlite3")
    [event] = outbox.rows_after(0, 10, Lane.EVENTS)
    [state] = outbox.rows_after(0, 10, Lane.STATES)
    assert (event.payload, state.payload) == (b"left event", b"left state")
    assert outbox.rows_after(event.row_id, 10, Lane.EVENTS) == []
    outbox.append(EVENT_TOPIC, b"new event", retain=False)
    assert [row.payload for row in outbox.rows_after(event.row_id, 10, Lane.EVENTS)] == [
        b"new event"
    ]
    assert outbox.rows_after(state.row_id, 10, Lane.STATES) == []


def test_every_statement_finds_its_rows_through_an_index(tmp_path):
    """100,000 waiting rows cost each append, hand-out and delete O(log n), not a scan."""
    outbox = Outbox(tmp_path / "outbox.sqlite3")
    for number in range(2000):
        outbox.append(f"t/{number}", b"x", retain=number % 2 == 0, lane=Lane(number % 3))
    statements = [
        ("DELETE FROM outbox INDEXED BY outbox_retained_topic WHERE topic = ? AND retain = 1",
         ("t/4",), "outbox_retained_topic (topic=?)"),
        ("SELECT id, topic, payload, retain, released FROM outbox INDEXED BY outbox_by_lane "
         "WHERE lane = ? AND id > ? ORDER BY id LIMIT ?", (1, 10, 20),
         "outbox_by_lane (lane=? AND id>?)"),
        ("SELECT id FROM outbox INDEXED BY outbox_by_lane WHERE lane = ? ORDER BY id LIMIT 1",
         (2,), "outbox_by_lane (lane=?)"),
        ("DELETE FROM outbox WHERE id = ?", (5,), "INTEGER PRIMARY KEY (rowid=?)"),
        ("UPDATE outbox SET released = 1 WHERE id = ?", (5,), "INTEGER PRIMARY KEY (rowid=?)"),
    ]  # fmt: skip
    database = outbox._db
    for statement, arguments, index in statements:
        plan = " ".join(
            str(row[-1]) for row in database.execute(f"EXPLAIN QUERY PLAN {statement}", arguments)
        )
        assert plan.startswith("SEARCH") and plan.endswith(index), f"{statement}: {plan}"


def test_an_event_goes_before_a_burst_of_configs_waiting_for_the_broker(broker, tmp_path):
    publisher = MqttPublisher(
        MqttOptions(
            broker.host,
            broker.port,
            f"lanes-{tmp_path.name}",
            "lanes-test/availability",
            outbox_path=tmp_path / "outbox.sqlite3",
            messages_per_second=200,
            burst=10,
            protocol="3.1.1" if broker.kind == "amqtt" else "5",
        )
    )
    publisher.start()
    try:
        assert publisher.wait_connected(10)
        with MqttRecorder(broker.host, broker.port, topics=["lanes-test/#"]) as recorder:
            for number in range(400):  # two seconds of configs at 200/s
                publisher.publish(
                    f"lanes-test/config/{number}", b"{}", retain=True, lane=Lane.CONFIGS
                )
            time.sleep(0.2)
            publisher.publish("lanes-test/event", b"alarm", retain=False, event_id="e1")
            recorder.wait_for_topic("lanes-test/event", 5)
            configs_before = len([m for m in recorder.messages if "/config/" in m.topic])
        assert configs_before < 200, f"the event waited behind {configs_before} configs"
    finally:
        publisher.stop(drain_timeout=0.5)


def test_the_configs_handed_over_are_remembered_across_restarts(tmp_path):
    path = tmp_path / "outbox.sqlite3"
    outbox = Outbox(path)
    outbox.append("homeassistant/sensor/a/t/config", b'{"a": 1}', retain=True, lane=Lane.CONFIGS)
    outbox.append("homeassistant/sensor/b/t/config", b'{"b": 1}', retain=True, lane=Lane.CONFIGS)
    outbox.append("homeassistant/sensor/b/t/config", b"", retain=True, lane=Lane.CONFIGS)
    outbox.append("minut2mqtt/device/a/state", b"{}", retain=True)
    outbox.close()
    held = Outbox(path).held_configs()
    assert held == {"homeassistant/sensor/a/t/config": fingerprint(b'{"a": 1}')}


def test_a_config_dropped_for_room_is_not_remembered_as_held():
    outbox = Outbox(None, limit=2)
    outbox.append("homeassistant/sensor/a/t/config", b"{}", retain=True, lane=Lane.CONFIGS)
    outbox.append("x/event", b"1", retain=False)
    outbox.append("x/event", b"2", retain=False)  # full: the config goes
    assert outbox.held_configs() == {}
