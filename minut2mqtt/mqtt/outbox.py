"""Messages waiting for the broker, kept in SQLite so a restart during an outage loses none.

The same file remembers the ids of the latest Minut events handed over, written in the same
transaction as their message, so that a pull after a crash never publishes one again; and a
fingerprint of every discovery config handed over (the broker holds it, or will), so that a
restart knows which configs need not be published again without reading them back from the
broker (a default Mosquitto drops much of a large retained replay: see docs/scale.md).

Three FIFOs of (topic, payload, retain) rows, one per lane (events, states, configs: see
core/publishing.py), which the publisher hands to paho in that order of priority. It appends
every message, and deletes a row once the broker acknowledged it: whatever is in the file at
startup was never acknowledged and goes out first. A QoS 2 row whose PUBREC came is marked
`released`: after a restart it is only released again, never published again (session.py).

Retained messages are the current value of their topic, so a newer retained message to a topic
replaces an older one still waiting; events (not retained) are all kept. The file is bounded:
when full, the oldest retained messages go first (the bridge publishes every state and
discovery config again after each reconnect), then the oldest events.

Every statement finds its rows through an index (named where SQLite might pick another), so
each costs O(log n) however many rows wait; tests/test_outbox.py checks the query plans.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sqlite3
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

from ..core.publishing import REMEMBERED_EVENT_IDS, Lane, lane_of
from ..core.retained import fingerprint

log = logging.getLogger(__name__)

DEFAULT_LIMIT = 100_000

_SCHEMA = """
CREATE TABLE IF NOT EXISTS outbox (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    topic TEXT NOT NULL,
    payload BLOB NOT NULL,
    retain INTEGER NOT NULL,
    released INTEGER NOT NULL DEFAULT 0,
    lane INTEGER NOT NULL DEFAULT 1
);
CREATE TABLE IF NOT EXISTS published_events (event_id TEXT PRIMARY KEY);
CREATE TABLE IF NOT EXISTS held_configs (topic TEXT PRIMARY KEY, fingerprint BLOB NOT NULL);
"""
_MIGRATIONS = (
    ("released", "ALTER TABLE outbox ADD COLUMN released INTEGER NOT NULL DEFAULT 0"),
    ("lane", "ALTER TABLE outbox ADD COLUMN lane INTEGER NOT NULL DEFAULT 1"),
)
"""Columns a file from an earlier release lacks, and how to add them."""
_INDEXES = """
DROP INDEX IF EXISTS outbox_retained_by_topic;
DROP INDEX IF EXISTS outbox_by_kind;
UPDATE outbox SET lane = 0 WHERE retain = 0 AND lane != 0;
CREATE UNIQUE INDEX IF NOT EXISTS outbox_retained_topic ON outbox (topic) WHERE retain = 1;
CREATE INDEX IF NOT EXISTS outbox_by_lane ON outbox (lane, id);
"""
# AUTOINCREMENT: ids never come back after the newest row was deleted, so "every row after the
# last one handed out" stays a correct question for the sender.


_Pending = tuple[str, bytes, bool, str | None, Lane]
"""An append waiting for the end of its batch: topic, payload, retain, event id, lane."""


class BatchRefused(sqlite3.Error):
    """The file refused a batch (a full disk…): none of its `messages` were kept."""

    def __init__(self, messages: int, error: sqlite3.Error) -> None:
        super().__init__(str(error))
        self.messages = messages


class OutboxError(Exception):
    """The outbox file cannot be opened or created: says which file and why."""


@dataclass(frozen=True, slots=True)
class OutboxRow:
    row_id: int
    topic: str
    payload: bytes
    retain: bool
    released: bool = False
    """The broker acknowledged receiving it (PUBREC): only its release is left to do."""


class Outbox:
    """A thread-safe, bounded, persistent FIFO of MQTT messages; in memory when `path` is None."""

    def __init__(
        self,
        path: Path | None,
        limit: int = DEFAULT_LIMIT,
        on_written: Callable[[], None] = lambda: None,
    ) -> None:
        """`on_written`: called after each commit of appended messages (the sender's cue)."""
        if limit < 1:
            raise ValueError(f"outbox limit must be at least 1, got {limit}")
        self.path = path
        self.limit = limit
        self._lock = threading.RLock()
        self._batch = threading.local()
        """`rows`: inside batch(), the calling thread's appends waiting for its end."""
        self._on_written = on_written
        self._dropped = 0
        """Messages dropped for room since the outbox was last below its limit."""
        try:
            try:
                self._db, self._count = self._open(path)
            except sqlite3.DatabaseError as error:
                if path is None or error.sqlite_errorname not in (
                    "SQLITE_NOTADB",
                    "SQLITE_CORRUPT",
                ):
                    raise
                aside = _set_aside(path)
                log.error(
                    "MQTT outbox %s is damaged (%s): moved to %s, its messages are lost; "
                    "starting with an empty one",
                    path,
                    error,
                    aside.name,
                )
                self._db, self._count = self._open(path)
        except (OSError, sqlite3.Error) as error:
            reason = error.strerror if isinstance(error, OSError) else str(error)
            raise OutboxError(f"MQTT outbox {path}: cannot be opened ({reason})") from None
        self._newest = dict.fromkeys(Lane, 0)
        """Per lane, the id of the newest row written: rows_after need not look past it (the
        sender asks after every acknowledgement, mostly with nothing new)."""
        for lane, newest in self._db.execute("SELECT lane, MAX(id) FROM outbox GROUP BY lane"):
            self._newest[Lane(lane)] = newest
        self.left_by_previous_run = self._count
        """Messages a previous run left unsent: they are the first rows, so they go first."""
        self.left_released: int = self._db.execute(
            "SELECT COUNT(*) FROM outbox WHERE released = 1"
        ).fetchone()[0]
        """Of those, events the broker had taken in: only their release is left to do."""

    @staticmethod
    def _open(path: Path | None) -> tuple[sqlite3.Connection, int]:
        """The connection and how many rows it holds (counting reads, and so checks, the file)."""
        if path is None:
            database = sqlite3.connect(":memory:", check_same_thread=False)
        else:
            path.parent.mkdir(parents=True, exist_ok=True)
            # Created 0600 before SQLite opens it: its -wal and -shm files copy this mode.
            os.close(os.open(path, os.O_RDWR | os.O_CREAT, 0o600))
            os.chmod(path, 0o600)
            database = sqlite3.connect(path, check_same_thread=False)
        try:
            if path is not None:
                # WAL with synchronous=NORMAL: when append() returns, the row is in the WAL file,
                # so it survives the process crashing or being restarted (the outage this file
                # is for), without an fsync per message as FULL or a rollback journal would
                # cost. A power cut may lose the last commits since a checkpoint; the file stays
                # consistent.
                database.execute("PRAGMA journal_mode = WAL")
                database.execute("PRAGMA synchronous = NORMAL")
            database.executescript(_SCHEMA)
            columns = {row[1] for row in database.execute("PRAGMA table_info(outbox)")}
            for column, statement in _MIGRATIONS:
                if column not in columns:
                    database.execute(statement)
            database.executescript(_INDEXES)
            count: int = database.execute("SELECT COUNT(*) FROM outbox").fetchone()[0]
        except BaseException:
            database.close()
            raise
        return database, count

    def __len__(self) -> int:
        """Messages waiting, including those handed to the broker but not acknowledged yet."""
        return self._count  # one read: no need to wait while another thread writes

    def append(
        self,
        topic: str,
        payload: bytes,
        *,
        retain: bool,
        event_id: str | None = None,
        lane: Lane | None = None,
    ) -> None:
        """Keep one message, and the id of the Minut event it carries; committed on return
        (inside `batch()`, at its end).

        Message and id go in one transaction: whatever moment the process dies, an event is
        either waiting here with its id remembered, or neither (and a pull will bring it again).
        """
        chosen = lane_of(retain, lane)
        pending: list[_Pending] | None = getattr(self._batch, "rows", None)
        if pending is not None:
            pending.append((topic, payload, retain, event_id, chosen))
            return
        with self._lock, self._db:
            self._write(topic, payload, retain, event_id, chosen)
        self._on_written()

    def _write(
        self, topic: str, payload: bytes, retain: bool, event_id: str | None, chosen: Lane
    ) -> None:
        """One message into the open transaction (`_lock` held)."""
        if event_id is not None:
            self._remember_event(event_id)
        if chosen == Lane.CONFIGS and retain:
            self._remember_config(topic, payload)
        if retain:
            superseded = self._db.execute(
                "DELETE FROM outbox INDEXED BY outbox_retained_topic "
                "WHERE topic = ? AND retain = 1",
                (topic,),
            )
            self._count -= superseded.rowcount
        if self._count >= self.limit:
            self._make_room()
        inserted = self._db.execute(
            "INSERT INTO outbox (topic, payload, retain, lane) VALUES (?, ?, ?, ?)",
            (topic, payload, int(retain), int(chosen)),
        )
        self._newest[chosen] = inserted.lastrowid or self._newest[chosen]
        self._count += 1

    def _remember_event(self, event_id: str) -> None:
        added = self._db.execute(
            "INSERT OR IGNORE INTO published_events (event_id) VALUES (?)", (event_id,)
        )
        if added.rowcount and (added.lastrowid or 0) % 100 == 0:  # trim now and then
            self._db.execute(
                "DELETE FROM published_events WHERE rowid <= "
                "(SELECT MAX(rowid) FROM published_events) - ?",
                (REMEMBERED_EVENT_IDS,),
            )

    @contextlib.contextmanager
    def batch(self) -> Iterator[None]:
        """The calling thread's appends inside are written together at its end, in one
        transaction (a tenth of the cost each); none if it raises.

        They wait in memory meanwhile, so the outbox is not held while the caller builds its
        messages: the sender and paho's thread (a PUBREC to record) never wait for that.
        """
        if getattr(self._batch, "rows", None) is not None:  # already in one: it writes
            yield
            return
        pending: list[_Pending] = []
        self._batch.rows = pending
        try:
            yield
        finally:
            self._batch.rows = None
        if pending:
            try:
                with self._lock, self._db:
                    for message in pending:
                        self._write(*message)
            except sqlite3.Error as error:
                raise BatchRefused(len(pending), error) from error
            self._on_written()

    def _remember_config(self, topic: str, payload: bytes) -> None:
        if payload:
            self._db.execute(
                "INSERT OR REPLACE INTO held_configs (topic, fingerprint) VALUES (?, ?)",
                (topic, fingerprint(payload)),
            )
        else:
            self._db.execute("DELETE FROM held_configs WHERE topic = ?", (topic,))

    def held_configs(self) -> dict[str, bytes]:
        """Fingerprints of the discovery configs handed over and not cleared since, by topic."""
        with self._lock:
            return dict(self._db.execute("SELECT topic, fingerprint FROM held_configs"))

    def published_event_ids(self) -> list[str]:
        """Ids of the latest events handed over, oldest first (also those sent long ago)."""
        with self._lock:
            found = self._db.execute(
                "SELECT event_id FROM published_events ORDER BY rowid DESC LIMIT ?",
                (REMEMBERED_EVENT_IDS,),
            ).fetchall()
        return [row[0] for row in reversed(found)]

    def _make_room(self) -> None:
        heads = {lane: self._head(lane) for lane in Lane}
        retained = [row for lane in (Lane.STATES, Lane.CONFIGS) if (row := heads[lane])]
        oldest = min(retained) if retained else heads[Lane.EVENTS]
        if oldest is not None and oldest == heads[Lane.CONFIGS]:  # never reaches the broker
            self._db.execute(
                "DELETE FROM held_configs WHERE topic = (SELECT topic FROM outbox WHERE id = ?)",
                (oldest,),
            )
        self._db.execute("DELETE FROM outbox WHERE id = ?", (oldest,))
        self._count -= 1
        if self._dropped == 0:
            log.error(
                "MQTT outbox%s is full (%d messages waiting for the broker): dropping the "
                "oldest, retained states first, then events, until the broker takes them",
                f" {self.path}" if self.path else "",
                self.limit,
            )
        self._dropped += 1

    def _head(self, lane: Lane) -> int | None:
        """The oldest row of a lane."""
        found = self._db.execute(
            "SELECT id FROM outbox INDEXED BY outbox_by_lane WHERE lane = ? ORDER BY id LIMIT 1",
            (int(lane),),
        ).fetchone()
        return int(found[0]) if found else None

    def rows_after(self, row_id: int, limit: int, lane: Lane | None = None) -> list[OutboxRow]:
        """Up to `limit` rows (of `lane`, if given) newer than `row_id`, oldest first (0: from
        the start)."""
        if lane is not None and self._newest[lane] <= row_id:
            return []  # without the lock: a row written meanwhile wakes the sender again
        with self._lock:
            if lane is None:
                query = "SELECT id, topic, payload, retain, released FROM outbox WHERE id > ?"
                arguments: tuple[int, ...] = (row_id, limit)
            else:
                query = (
                    "SELECT id, topic, payload, retain, released FROM outbox "
                    "INDEXED BY outbox_by_lane WHERE lane = ? AND id > ?"
                )
                arguments = (int(lane), row_id, limit)
            found = self._db.execute(f"{query} ORDER BY id LIMIT ?", arguments).fetchall()
        return [
            OutboxRow(row[0], row[1], bytes(row[2]), bool(row[3]), bool(row[4])) for row in found
        ]

    def mark_released(self, row_id: int) -> None:
        """The broker has the row's message (PUBREC): committed before the release is sent."""
        with self._lock, self._db:
            self._db.execute("UPDATE outbox SET released = 1 WHERE id = ?", (row_id,))

    def forget_releases(self) -> int:
        """The broker lost our session: released rows must be published again; how many."""
        with self._lock, self._db:
            return self._db.execute("UPDATE outbox SET released = 0 WHERE released = 1").rowcount

    def delete(self, row_ids: Iterable[int]) -> None:
        """Forget delivered rows; ids no longer there (superseded, dropped) are ignored."""
        with self._lock, self._db:
            deleted = self._db.executemany(
                "DELETE FROM outbox WHERE id = ?", [(row_id,) for row_id in row_ids]
            )
            self._count -= max(deleted.rowcount, 0)
            if self._dropped and self._count < self.limit:
                log.warning(
                    "MQTT outbox has room again; %d messages were dropped while it was full",
                    self._dropped,
                )
                self._dropped = 0

    def close(self) -> None:
        with self._lock:
            self._db.close()


def _set_aside(path: Path) -> Path:
    """Move a damaged outbox (with its WAL) out of the way, as evidence; its new name."""
    aside = path.with_name(f"{path.name}.corrupt-{time.strftime('%Y%m%dT%H%M%S')}")
    for suffix in ("", "-wal", "-shm"):
        source = Path(f"{path}{suffix}")
        if source.exists():
            source.replace(Path(f"{aside}{suffix}"))
    return aside
