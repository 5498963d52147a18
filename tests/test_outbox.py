"""The outbox: messages wait on disk for the broker, across outages and restarts of the bridge."""

from __future__ import annotations

import logging
import os
import stat
import threading
from pathlib import Path

from minut2mqtt.mqtt.outbox import Outbox, OutboxRow

OUTBOX_LOG = "minut2mqtt.mqtt.outbox"


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


def test_outbox_row_is_plain_data():
    assert OutboxRow(1, "t", b"p", True) == OutboxRow(1, "t", b"p", True)
