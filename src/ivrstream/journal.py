"""The journal: an SQLite (WAL) file that is the durability point of every event.

Rules this module keeps:

- An event counts as received only once its row is committed. ``events`` holds one row per
  canonical event, unique on ``event_id``; ``pos`` (the rowid) is journal order, which is the
  order every sink and ``journal export`` read in.
- Writes go through one :class:`JournalWriter` thread that group-commits: it takes every batch
  waiting (up to ``batch_max`` events, waiting at most ``flush_interval`` for more) and applies
  them — events, quarantined frames, gap records and per-stream high-water marks — in one
  transaction, so a crash leaves all of a batch or none of it. Rows go in as multi-row INSERTs,
  which let SQLite work without the GIL for a whole chunk.
- Checkpoints (copying the WAL into the main file) run in their own thread every second, not
  inside the writer's commits, so the writer never stalls on them; closing truncates the WAL.
- ``synchronous`` is NORMAL by default (a power cut may lose the last commits, never corrupt the
  file) or FULL (every commit is on disk before it is acknowledged).
- ``streams`` records, per subscription, the highest sequence id journaled and the server's
  subscription id: a restart resumes from there. ``gaps`` records every sequence gap with its
  state (open, filled, partly_filled, lost). ``quarantine`` keeps rejected frames' raw bytes
  and the reason. ``cursors`` holds each sink's position (used by delivery).
"""

from __future__ import annotations

import contextlib
import itertools
import operator
import queue
import sqlite3
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import msgspec

# 1: event_id generated from the body; 2: event_id stored (written with the body, from the same
# value: parsing 1 KB of JSON per insert for the unique index cost ~10 % of the insert rate).
# Both are read and written; new journals are created at 2.
SCHEMA_VERSION = 2
SCHEMA = """
CREATE TABLE IF NOT EXISTS meta(key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS events(
    pos INTEGER PRIMARY KEY,
    body BLOB NOT NULL,  -- the canonical event (JSON); every other column is read from it
    event_id TEXT NOT NULL UNIQUE,  -- the body's event_id, stored for the unique index
    source TEXT GENERATED ALWAYS AS (json_extract(CAST(body AS TEXT), '$.source')) VIRTUAL,
    event_type TEXT GENERATED ALWAYS AS (json_extract(CAST(body AS TEXT), '$.event_type'))
        VIRTUAL,
    conversation_id TEXT
        GENERATED ALWAYS AS (json_extract(CAST(body AS TEXT), '$.conversation_id')) VIRTUAL,
    subscription_id TEXT
        GENERATED ALWAYS AS (json_extract(CAST(body AS TEXT), '$.subscription_id')) VIRTUAL,
    sequence_id INTEGER
        GENERATED ALWAYS AS (json_extract(CAST(body AS TEXT), '$.sequence_id')) VIRTUAL,
    event_time TEXT GENERATED ALWAYS AS (json_extract(CAST(body AS TEXT), '$.event_time'))
        VIRTUAL,
    received_at TEXT GENERATED ALWAYS AS (json_extract(CAST(body AS TEXT), '$.received_at'))
        VIRTUAL,
    recovered INTEGER GENERATED ALWAYS AS (json_extract(CAST(body AS TEXT), '$.recovered'))
        VIRTUAL
);
CREATE TABLE IF NOT EXISTS quarantine(
    id INTEGER PRIMARY KEY,
    received_at INTEGER NOT NULL,
    source TEXT NOT NULL,
    connection TEXT,
    reason TEXT NOT NULL,
    size INTEGER NOT NULL,
    raw BLOB NOT NULL
);
CREATE TABLE IF NOT EXISTS gaps(
    id TEXT PRIMARY KEY,
    source TEXT NOT NULL,
    stream TEXT NOT NULL,
    first_seq INTEGER,
    last_seq INTEGER,
    time_from INTEGER,
    time_to INTEGER,
    opened_at INTEGER NOT NULL,
    state TEXT NOT NULL,
    filled INTEGER NOT NULL DEFAULT 0,
    missing TEXT NOT NULL DEFAULT '[]',
    resend_requested INTEGER NOT NULL DEFAULT 0,
    closed_at INTEGER,
    note TEXT
);
CREATE TABLE IF NOT EXISTS streams(
    stream TEXT PRIMARY KEY,
    subscription_id TEXT,
    high INTEGER NOT NULL,
    high_time INTEGER,
    updated_at INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS cursors(
    sink TEXT PRIMARY KEY,
    position INTEGER NOT NULL,
    updated_at INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS operations(
    id INTEGER PRIMARY KEY,
    kind TEXT NOT NULL,  -- dlq_retry | dlq_purge | verification: for the audit trail
    details TEXT NOT NULL,
    at INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS backfill(
    gap_id TEXT PRIMARY KEY,  -- the gap (or manual window) being filled from analytics
    resume_ms INTEGER NOT NULL,  -- every conversation that started before this is journaled
    conversations INTEGER NOT NULL DEFAULT 0,
    events INTEGER NOT NULL DEFAULT 0,  -- rebuilt from analytics
    inserted INTEGER NOT NULL DEFAULT 0,  -- of those, events the journal did not have yet
    updated_at INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS dead_letters(
    id INTEGER PRIMARY KEY,
    sink TEXT NOT NULL,
    pos INTEGER NOT NULL,
    event_id TEXT NOT NULL,
    error TEXT NOT NULL,
    attempts INTEGER NOT NULL,
    failed_at INTEGER NOT NULL,
    state TEXT NOT NULL DEFAULT 'dead',  -- dead | retry (queued by `journal dlq retry`)
    UNIQUE(sink, pos)
);
"""
PAGE_SIZE = 65_536
CHECKPOINT_INTERVAL = 1.0  # seconds between the checkpointer's passive checkpoints
# Rows per INSERT statement, largest first. Each execute() gives the GIL away once, for all
# its rows; with the whole batch in a handful of statements the writer rarely waits for the GIL
# while the event loop is busy (one statement a row would wait up to 5 ms a row).
CHUNKS = (2048, 512, 128, 32, 8, 2, 1)
SYNCHRONOUS = ("OFF", "NORMAL", "FULL", "EXTRA")
ID_LENGTH = 36  # every event id is a UUID in text form
# A whole batch in one INSERT, so the writer hands the GIL over once a batch, not once a chunk:
# the bodies go as one blob, the ids as one fixed-width string, and where each body starts and
# how long it is as a JSON array of (start << 32 | length). SQLite cuts them apart in C, without
# the GIL. json_each walks its array in order, so positions follow the batch's order (no ORDER BY:
# it would sort every body through a temporary B-tree).
_BULK_INSERT = """
INSERT INTO events(body, event_id)
SELECT substr(?1, (value >> 32) + 1, value & 4294967295), CAST(substr(?2, key * 36 + 1, 36) AS TEXT)
FROM json_each(?3) WHERE true
ON CONFLICT(event_id) DO NOTHING
"""
_BULK_MAX_BYTES = 1 << 31  # starts and lengths must fit their 32 bits
_encode_json = msgspec.json.Encoder().encode

# What a sink gets per event: (pos, event_id, conversation_id, event_type, body, sequence_id,
# event_time, received_at). The last three come from the generated columns, so SQLite reads
# them out of the body (without the GIL) and no sink has to decode the JSON for them.
DeliveryRow = tuple[int, str, str, str, bytes, int | None, str | None, str | None]
# Rows come out of SQLite in this shape, with no Python work per row: the journal only holds
# canonical events, whose sequence_id is an integer or null and whose times are text.
_DELIVERY_SELECT = (
    "SELECT pos, event_id, coalesce(conversation_id, ''), coalesce(event_type, ''), body,"
    " sequence_id, event_time, received_at FROM events"
)

# The same rows as one row of columns (JSON arrays, and the bodies end to end in one blob), so a
# reader thread hands the GIL over once a read, not once a row: with the event loop busy, each
# hand-over waited for the GIL, and a 4,000-row read took a second instead of 15 ms.
_DELIVERY_AGGREGATE = """
SELECT json_group_array(pos), json_group_array(event_id),
    json_group_array(coalesce(conversation_id, '')), json_group_array(coalesce(event_type, '')),
    json_group_array(sequence_id), json_group_array(event_time), json_group_array(received_at),
    json_group_array(length(body)), CAST(group_concat(body, '') AS BLOB)
FROM (
    SELECT pos, event_id, body, conversation_id, event_type, sequence_id, event_time, received_at
    FROM events WHERE pos > ? ORDER BY pos LIMIT ?
)
"""
_decode_column = msgspec.json.Decoder(list[Any]).decode


@dataclass(frozen=True)
class QuarantineRow:
    received_at: int
    source: str
    connection: str | None
    reason: str
    raw: bytes


@dataclass
class GapRow:
    id: str
    source: str
    stream: str
    first_seq: int | None
    last_seq: int | None
    time_from: int | None
    time_to: int | None
    opened_at: int
    state: str  # open | filled | partly_filled | lost
    filled: int = 0
    missing: list[list[int]] = field(default_factory=list)
    resend_requested: bool = False
    closed_at: int | None = None
    note: str | None = None


@dataclass(frozen=True)
class StreamMark:
    stream: str
    subscription_id: str | None
    high: int
    high_time: int | None


@dataclass(frozen=True)
class DeadLetterRow:
    sink: str
    pos: int
    event_id: str
    error: str
    attempts: int
    failed_at: int


@dataclass(frozen=True)
class BackfillMark:
    """How far the backfill of one gap got; committed with the events of the same page."""

    gap_id: str
    resume_ms: int
    conversations: int
    events: int
    inserted: int


@dataclass(slots=True)
class DeliveryColumns:
    """Per event, in batch order, the rest of a :data:`DeliveryRow`: conversation id, event
    type, sequence id, event time and receive time, as the journal's columns would give them."""

    conversation_ids: list[str] = field(default_factory=list)
    event_types: list[str] = field(default_factory=list)
    sequence_ids: list[int | None] = field(default_factory=list)
    event_times: list[str | None] = field(default_factory=list)
    received_at: list[str | None] = field(default_factory=list)


@dataclass
class WriteBatch:
    """Everything one commit should make durable together."""

    events: list[bytes] = field(default_factory=list)  # canonical event JSON, one per event
    event_ids: list[str] = field(default_factory=list)  # each event's id (else read from it)
    quarantine: list[QuarantineRow] = field(default_factory=list)
    gaps: list[GapRow] = field(default_factory=list)
    streams: dict[str, StreamMark] = field(default_factory=dict)
    cursors: dict[str, int] = field(default_factory=dict)  # sink → last delivered position
    dead_letters: list[DeadLetterRow] = field(default_factory=list)
    redelivered: list[tuple[str, int]] = field(default_factory=list)  # (sink, pos) now delivered
    backfill: list[BackfillMark] = field(default_factory=list)
    submitted: float = 0.0  # monotonic time the shell handed it over
    weight: int = 0  # bytes it holds (for intake's backpressure)
    received: list[float] = field(default_factory=list)  # monotonic receive time per event
    event_times: list[int] = field(default_factory=list)  # server time (epoch ms) per event
    # what sinks need of each event besides id and body, when the shell keeps it (see
    # DeliveryColumns): committed rows can then reach the sinks without being read back
    columns: DeliveryColumns | None = None

    def __len__(self) -> int:
        return len(self.events)

    def empty(self) -> bool:
        return not (
            self.events
            or self.quarantine
            or self.gaps
            or self.streams
            or self.cursors
            or self.dead_letters
            or self.redelivered
            or self.backfill
        )


@dataclass
class CommitResult:
    batches: list[WriteBatch]
    inserted: int  # new event rows
    duplicates: int  # event rows whose event_id was already journaled
    last_pos: int
    seconds: float  # time spent in the transaction
    committed: float  # monotonic time of the commit
    error: BaseException | None = None


class JournalError(Exception):
    """The journal could not be written: nothing in the failed batch was acknowledged."""


def connect(
    path: str | Path, *, synchronous: str = "NORMAL", readonly: bool = False
) -> sqlite3.Connection:
    """Open (and create, unless ``readonly``) a journal file in WAL mode."""
    if synchronous.upper() not in SYNCHRONOUS:
        raise ValueError(f"synchronous must be one of {SYNCHRONOUS}")
    if readonly:
        db = sqlite3.connect(
            f"file:{path}?mode=ro", uri=True, isolation_level=None, check_same_thread=False
        )
    else:
        db = sqlite3.connect(str(path), isolation_level=None, check_same_thread=False)
        # big pages suit kilobyte rows appended in order (about 1.6x the insert rate of 4 KiB
        # pages here); it only takes effect on a new file, before WAL is switched on
        db.execute(f"PRAGMA page_size={PAGE_SIZE}")
        db.execute("PRAGMA journal_mode=WAL")
        db.executescript(SCHEMA)
        db.execute(
            "INSERT OR IGNORE INTO meta(key, value) VALUES ('schema_version', ?)",
            (str(SCHEMA_VERSION),),
        )
    db.execute(f"PRAGMA synchronous={synchronous.upper()}")
    db.execute("PRAGMA busy_timeout=5000")
    return db


def schema_version(db: sqlite3.Connection) -> int:
    row = db.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()
    return int(row[0]) if row else SCHEMA_VERSION


class _IdOnly(msgspec.Struct):
    event_id: str | None = None


_decode_id = msgspec.json.Decoder(_IdOnly).decode


def _ids_of(bodies: list[bytes]) -> list[str | None]:
    """The event ids of bodies handed over without them (None: none, which NOT NULL refuses)."""
    out: list[str | None] = []
    for body in bodies:
        try:
            out.append(_decode_id(body).event_id)
        except (msgspec.DecodeError, msgspec.ValidationError):
            out.append(None)
    return out


def _now_ms() -> int:
    return round(time.time() * 1000)


# While a writer runs, the interpreter hands the GIL between threads every 1 ms instead of
# Python's 5 ms. The writer gives the GIL away for every SQLite step; with the event loop busy,
# getting it back waited up to a whole interval each time, several times a commit, and the
# journal, not the disk, became the limit (`make bench`: about 95k → 130k rows/s of intake).
WRITER_SWITCH_INTERVAL = 0.001
_switch_lock = threading.Lock()
_switch_users = 0
_switch_saved: float | None = None


def _lower_switch_interval() -> None:
    global _switch_users, _switch_saved
    with _switch_lock:
        _switch_users += 1
        current = sys.getswitchinterval()
        if _switch_users == 1 and current > WRITER_SWITCH_INTERVAL:
            _switch_saved = current
            sys.setswitchinterval(WRITER_SWITCH_INTERVAL)


def _restore_switch_interval() -> None:
    """The last writer to stop puts back what was there, unless someone changed it since."""
    global _switch_users, _switch_saved
    with _switch_lock:
        _switch_users -= 1
        if _switch_users == 0 and _switch_saved is not None:
            if sys.getswitchinterval() == WRITER_SWITCH_INTERVAL:
                sys.setswitchinterval(_switch_saved)
            _switch_saved = None


class JournalWriter:
    """The one thread that writes the journal. ``submit`` batches; ``on_commit`` hears back
    (in the writer thread) once each group of batches is durable."""

    def __init__(
        self,
        path: str | Path,
        *,
        synchronous: str = "NORMAL",
        batch_max: int = 5_000,
        flush_interval: float = 0.002,
        on_commit: Callable[[CommitResult], None],
    ) -> None:
        self.path = Path(path)
        self.synchronous = synchronous
        self.batch_max = batch_max
        self.flush_interval = flush_interval
        self.on_commit = on_commit
        self._queue: queue.SimpleQueue[WriteBatch | None] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        self._db = connect(self.path, synchronous=synchronous)  # fail early on a bad path
        self._db.execute("PRAGMA wal_autocheckpoint=0")  # the checkpointer thread does it
        self._checkpointer: threading.Thread | None = None
        self._stop_checkpoints = threading.Event()
        self.checkpoints = 0
        self.schema_version = schema_version(self._db)
        stored_id = self.schema_version >= 2
        columns, row = ("(body, event_id)", "(?,?)") if stored_id else ("(body)", "(?)")
        self._insert_sql = {
            # only a repeated event_id is skipped; any other constraint still fails the batch
            rows: f"INSERT INTO events{columns} VALUES "  # noqa: S608 - placeholders only
            + ",".join([row] * rows)
            + " ON CONFLICT(event_id) DO NOTHING"
            for rows in CHUNKS
        }
        self.commits = 0

    def start(self) -> None:
        _lower_switch_interval()
        self._thread = threading.Thread(target=self._run, name="ivrstream-journal", daemon=True)
        self._thread.start()
        self._checkpointer = threading.Thread(
            target=self._checkpoint_loop, name="ivrstream-checkpoint", daemon=True
        )
        self._checkpointer.start()

    def _checkpoint_loop(self) -> None:
        """Checkpoint every interval. Nothing here may end the thread: without it the WAL
        grows without bound (the writer's own autocheckpoint is off)."""
        db: sqlite3.Connection | None = None
        try:
            while not self._stop_checkpoints.wait(CHECKPOINT_INTERVAL):
                try:
                    if db is None:
                        db = _checkpoint_connection(self.path, self.synchronous)
                    db.execute("PRAGMA wal_checkpoint(PASSIVE)")
                    self.checkpoints += 1
                except sqlite3.Error:
                    continue  # busy, or not openable just now: the next interval tries again
        finally:
            if db is not None:
                db.close()

    def submit(self, batch: WriteBatch) -> None:
        """Hand a batch to the writer (thread-safe, never blocks)."""
        self._queue.put(batch)

    def close(self, timeout: float = 10.0) -> None:
        """Commit everything submitted so far, then stop the thread and close the file."""
        self._queue.put(None)
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None
            _restore_switch_interval()
        else:
            self._run()  # never started: commit what was submitted, here
        self._stop_checkpoints.set()
        if self._checkpointer is not None:
            self._checkpointer.join(timeout)
            self._checkpointer = None
        with contextlib.suppress(sqlite3.Error):
            self._db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        with contextlib.suppress(sqlite3.Error):
            self._db.close()

    def _run(self) -> None:
        stopping = False
        while not stopping:
            first = self._queue.get()
            if first is None:
                break
            batches = [first]
            count = len(first)
            deadline = time.monotonic() + self.flush_interval
            while count < self.batch_max:
                try:
                    remaining = deadline - time.monotonic()
                    item = (
                        self._queue.get(timeout=remaining)
                        if remaining > 0
                        else (self._queue.get_nowait())
                    )
                except queue.Empty:
                    break
                if item is None:
                    stopping = True
                    break
                batches.append(item)
                count += len(item)
            self.on_commit(self._apply(batches))

    def _apply(self, batches: list[WriteBatch]) -> CommitResult:
        db = self._db
        started = time.monotonic()
        rows = [row for b in batches for row in b.events]
        try:
            db.execute("BEGIN IMMEDIATE")
            inserted = self._insert_events(rows, batches)
            for b in batches:
                for q in b.quarantine:
                    db.execute(
                        "INSERT INTO quarantine(received_at, source, connection, reason, size, raw)"
                        " VALUES (?,?,?,?,?,?)",
                        (q.received_at, q.source, q.connection, q.reason, len(q.raw), q.raw),
                    )
                for g in b.gaps:
                    _upsert_gap(db, g)
                for d in b.dead_letters:
                    db.execute(
                        "INSERT INTO dead_letters(sink, pos, event_id, error, attempts, failed_at)"
                        " VALUES (?,?,?,?,?,?) ON CONFLICT(sink, pos) DO UPDATE SET"
                        " error=excluded.error, attempts=dead_letters.attempts+excluded.attempts,"
                        " failed_at=excluded.failed_at, state='dead'",
                        (d.sink, d.pos, d.event_id, d.error, d.attempts, d.failed_at),
                    )
                for sink, pos in b.redelivered:
                    db.execute("DELETE FROM dead_letters WHERE sink = ? AND pos = ?", (sink, pos))
                for m in b.backfill:
                    db.execute(
                        "INSERT INTO backfill(gap_id, resume_ms, conversations, events, inserted,"
                        " updated_at) VALUES (?,?,?,?,?,?) ON CONFLICT(gap_id) DO UPDATE SET"
                        " resume_ms=max(resume_ms, excluded.resume_ms),"
                        " conversations=excluded.conversations, events=excluded.events,"
                        " inserted=excluded.inserted, updated_at=excluded.updated_at",
                        (
                            m.gap_id,
                            m.resume_ms,
                            m.conversations,
                            m.events,
                            m.inserted,
                            _now_ms(),
                        ),
                    )
            marks: dict[str, StreamMark] = {}
            cursors: dict[str, int] = {}
            for b in batches:
                marks.update(b.streams)
                for sink, position in b.cursors.items():
                    cursors[sink] = max(position, cursors.get(sink, 0))
            now = _now_ms()
            for sink, position in cursors.items():
                db.execute(
                    "INSERT INTO cursors(sink, position, updated_at) VALUES (?,?,?)"
                    " ON CONFLICT(sink) DO UPDATE SET position=max(position, excluded.position),"
                    " updated_at=excluded.updated_at",
                    (sink, position, now),
                )
            for mark in marks.values():
                db.execute(
                    "INSERT INTO streams(stream, subscription_id, high, high_time, updated_at)"
                    " VALUES (?,?,?,?,?) ON CONFLICT(stream) DO UPDATE SET"
                    " subscription_id=excluded.subscription_id, high=excluded.high,"
                    " high_time=excluded.high_time, updated_at=excluded.updated_at",
                    (mark.stream, mark.subscription_id, mark.high, mark.high_time, now),
                )
            # inside the transaction: with the write lock held, this commit's rows are the last
            # ones, at consecutive positions, whoever else writes the file
            last = db.execute("SELECT max(pos) FROM events").fetchone()[0] or 0
            db.execute("COMMIT")
        except Exception as exc:  # sqlite3.Error, or a value it cannot bind (OverflowError)
            with contextlib.suppress(sqlite3.Error):
                db.execute("ROLLBACK")
            return CommitResult(
                batches, 0, 0, 0, time.monotonic() - started, time.monotonic(), error=exc
            )
        self.commits += 1
        done = time.monotonic()
        return CommitResult(batches, inserted, len(rows) - inserted, last, done - started, done)

    def _insert_events(self, bodies: list[bytes], batches: list[WriteBatch]) -> int:
        db = self._db
        before = db.total_changes
        params: list[Any] = bodies
        width = 1
        if self.schema_version >= 2:
            ids: list[str | None] = []
            for b in batches:
                ids.extend(b.event_ids if len(b.event_ids) == len(b.events) else _ids_of(b.events))
            if _insert_in_one_statement(db, bodies, ids):
                return db.total_changes - before
            # body, id, body, id, …: built by slice assignment (C), not a loop under the GIL
            params, width = [None] * (2 * len(bodies)), 2
            params[0::2] = bodies
            params[1::2] = ids
        at = 0
        count = len(bodies)
        for size in CHUNKS:
            sql = self._insert_sql[size]
            while count - at >= size:
                db.execute(sql, params[at * width : (at + size) * width])
                at += size
        return db.total_changes - before


def _insert_in_one_statement(
    db: sqlite3.Connection, bodies: list[bytes], ids: list[str | None]
) -> bool:
    """The whole batch in one INSERT (see ``_BULK_INSERT``); False when it does not fit one:
    an id that is missing or not UUID-shaped, or more than 2 GiB of bodies."""
    if not bodies or None in ids or set(map(len, ids)) != {ID_LENGTH}:  # type: ignore[arg-type]
        return False
    blob = b"".join(bodies)
    if len(blob) >= _BULK_MAX_BYTES:
        return False
    lengths = list(map(len, bodies))
    starts = itertools.accumulate(lengths, initial=0)  # n + 1 of them: map stops at n
    spans = map(operator.or_, map(operator.lshift, starts, itertools.repeat(32)), lengths)
    text_ids = "".join(ids).encode()  # type: ignore[arg-type]  # no None: checked above
    db.execute(_BULK_INSERT, (blob, text_ids, _encode_json(list(spans))))
    return True


def _checkpoint_connection(path: Path, synchronous: str) -> sqlite3.Connection:
    """A connection that only checkpoints: it writes no schema, so it never waits for the
    writer's lock to open."""
    db = sqlite3.connect(str(path), isolation_level=None, check_same_thread=False)
    db.execute(f"PRAGMA synchronous={synchronous.upper()}")
    return db


def _upsert_gap(db: sqlite3.Connection, g: GapRow) -> None:
    db.execute(
        "INSERT INTO gaps(id, source, stream, first_seq, last_seq, time_from, time_to, opened_at,"
        " state, filled, missing, resend_requested, closed_at, note)"
        " VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?) ON CONFLICT(id) DO UPDATE SET"
        " state=excluded.state, filled=excluded.filled, missing=excluded.missing,"
        " resend_requested=excluded.resend_requested, closed_at=excluded.closed_at,"
        " note=excluded.note, time_to=coalesce(gaps.time_to, excluded.time_to)",
        (
            g.id,
            g.source,
            g.stream,
            g.first_seq,
            g.last_seq,
            g.time_from,
            g.time_to,
            g.opened_at,
            g.state,
            g.filled,
            msgspec.json.encode(g.missing).decode(),
            int(g.resend_requested),
            g.closed_at,
            g.note,
        ),
    )


class Journal:
    """Reading (and small administrative writes) for one thread. Open with :func:`open_journal`."""

    def __init__(self, db: sqlite3.Connection, path: Path) -> None:
        self.db = db
        self.path = path

    def close(self) -> None:
        self.db.close()

    def __enter__(self) -> Journal:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- state a restart resumes from ------------------------------------------------------------

    def streams(self) -> dict[str, StreamMark]:
        rows = self.db.execute("SELECT stream, subscription_id, high, high_time FROM streams")
        return {r[0]: StreamMark(r[0], r[1], r[2], r[3]) for r in rows}

    def gaps(self, *, stream: str | None = None, state: str | None = None) -> list[GapRow]:
        sql = (
            "SELECT id, source, stream, first_seq, last_seq, time_from, time_to, opened_at, state,"
            " filled, missing, resend_requested, closed_at, note FROM gaps WHERE 1=1"
        )
        args: list[Any] = []
        if stream is not None:
            sql += " AND stream = ?"
            args.append(stream)
        if state is not None:
            sql += " AND state = ?"
            args.append(state)
        out = []
        for r in self.db.execute(sql + " ORDER BY opened_at, first_seq", args):
            out.append(
                GapRow(
                    r[0],
                    r[1],
                    r[2],
                    r[3],
                    r[4],
                    r[5],
                    r[6],
                    r[7],
                    r[8],
                    r[9],
                    msgspec.json.decode(r[10]),
                    bool(r[11]),
                    r[12],
                    r[13],
                )
            )
        return out

    # -- reading events ------------------------------------------------------------------------

    def backfill_progress(self, gap_id: str) -> BackfillMark | None:
        row = self.db.execute(
            "SELECT gap_id, resume_ms, conversations, events, inserted FROM backfill"
            " WHERE gap_id = ?",
            (gap_id,),
        ).fetchone()
        return None if row is None else BackfillMark(*row)

    def known_event_ids(self, event_ids: list[str]) -> set[str]:
        """Which of ``event_ids`` the journal already holds."""
        rows = self.db.execute(
            "SELECT event_id FROM events WHERE event_id IN (SELECT value FROM json_each(?))",
            (msgspec.json.encode(event_ids).decode(),),
        )
        return {r[0] for r in rows}

    def cursors(self) -> dict[str, int]:
        return dict(self.db.execute("SELECT sink, position FROM cursors"))

    def deliveries_after(self, pos: int, limit: int) -> list[DeliveryRow]:
        """The events after ``pos``, in journal order, as :class:`DeliveryRow` tuples."""
        with contextlib.suppress(sqlite3.DataError, sqlite3.OperationalError):
            rows = self._deliveries_in_one_step(pos, limit)
            if rows is not None:
                return rows
        cursor = self.db.execute(
            _DELIVERY_SELECT + " WHERE pos > ? ORDER BY pos LIMIT ?", (pos, limit)
        )
        fetched: list[DeliveryRow] = cursor.fetchall()
        return fetched

    def _deliveries_in_one_step(self, pos: int, limit: int) -> list[DeliveryRow] | None:
        """The same rows from one aggregate row (see ``_DELIVERY_AGGREGATE``); None if SQLite
        did not aggregate them in journal order. Raises when the bodies are too big for one
        value (SQLite's 1 GB limit): the caller then reads row by row."""
        columns = self.db.execute(_DELIVERY_AGGREGATE, (pos, limit)).fetchone()
        if columns[-1] is None:
            return []
        positions, ids, conversations, kinds, sequences, times, received, lengths = map(
            _decode_column, columns[:-1]
        )
        if positions != sorted(positions):
            return None
        blob: bytes = columns[-1]
        ends = list(itertools.accumulate(lengths))
        starts = itertools.accumulate(lengths, initial=0)  # n + 1 of them: map stops at n
        bodies = map(blob.__getitem__, map(slice, starts, ends))
        columns_zipped = zip(
            positions, ids, conversations, kinds, bodies, sequences, times, received, strict=True
        )
        return list(columns_zipped)

    def deliveries_at(self, positions: list[int]) -> list[DeliveryRow]:
        out = []
        for pos in positions:
            row = self.db.execute(_DELIVERY_SELECT + " WHERE pos = ?", (pos,)).fetchone()
            if row is not None:
                out.append(row)
        return out

    def event_time_at(self, pos: int) -> str | None:
        row = self.db.execute("SELECT event_time FROM events WHERE pos = ?", (pos,)).fetchone()
        return None if row is None else row[0]

    def dead_letters(
        self, sink: str | None = None, state: str | None = None, limit: int = 1_000
    ) -> list[dict[str, Any]]:
        sql = (
            "SELECT id, sink, pos, event_id, error, attempts, failed_at, state FROM dead_letters"
            " WHERE 1=1"
        )
        args: list[Any] = []
        if sink is not None:
            sql += " AND sink = ?"
            args.append(sink)
        if state is not None:
            sql += " AND state = ?"
            args.append(state)
        sql += " ORDER BY pos LIMIT ?"
        args.append(limit)
        keys = ("id", "sink", "pos", "event_id", "error", "attempts", "failed_at", "state")
        return [dict(zip(keys, row, strict=True)) for row in self.db.execute(sql, args)]

    def queue_dead_letters(self, sink: str | None = None) -> int:
        """Mark dead letters for another delivery attempt (the sink's dispatcher picks them up)."""
        sql = "UPDATE dead_letters SET state = 'retry' WHERE state = 'dead'"
        args: tuple[str, ...] = ()
        if sink is not None:
            sql += " AND sink = ?"
            args = (sink,)
        return self.db.execute(sql, args).rowcount

    def purge_dead_letters(self, sink: str | None = None) -> int:
        """Forget dead letters for good (the events stay in the journal)."""
        sql = "DELETE FROM dead_letters"
        args: tuple[str, ...] = ()
        if sink is not None:
            sql += " WHERE sink = ?"
            args = (sink,)
        return self.db.execute(sql, args).rowcount

    def record_operation(self, kind: str, details: dict[str, Any]) -> None:
        """Note an administrative action for the audit trail (the service picks it up)."""
        self.db.execute(
            "INSERT INTO operations(kind, details, at) VALUES (?,?,?)",
            (kind, msgspec.json.encode(details).decode(), _now_ms()),
        )

    def operations_after(self, op_id: int) -> list[tuple[int, str, dict[str, Any]]]:
        rows = self.db.execute(
            "SELECT id, kind, details FROM operations WHERE id > ? ORDER BY id", (op_id,)
        )
        return [(r[0], r[1], msgspec.json.decode(r[2])) for r in rows]

    def read_after(self, pos: int, limit: int = 1_000) -> list[tuple[int, bytes]]:
        """Up to ``limit`` (pos, canonical event JSON) after ``pos``, in journal order."""
        rows = self.db.execute(
            "SELECT pos, body FROM events WHERE pos > ? ORDER BY pos LIMIT ?", (pos, limit)
        )
        return [(r[0], bytes(r[1])) for r in rows]

    def iter_bodies(self, after: int = 0, chunk: int = 5_000) -> Iterator[bytes]:
        while True:
            rows = self.read_after(after, chunk)
            if not rows:
                return
            for pos, body in rows:
                after = pos
                yield body

    def last_pos(self) -> int:
        return int(self.db.execute("SELECT coalesce(max(pos), 0) FROM events").fetchone()[0])

    def count(self) -> int:
        return int(self.db.execute("SELECT count(*) FROM events").fetchone()[0])

    def count_after(self, pos: int) -> int:
        """How many events follow position ``pos``."""
        return int(
            self.db.execute("SELECT count(*) FROM events WHERE pos > ?", (pos,)).fetchone()[0]
        )

    def sequence(self, subscription_id: str) -> list[int]:
        """Sequence ids of one subscription's events, in journal order."""
        rows = self.db.execute(
            "SELECT sequence_id FROM events WHERE subscription_id = ? ORDER BY pos",
            (subscription_id,),
        )
        return [r[0] for r in rows]

    def quarantined(self, limit: int = 100, *, with_raw: bool = False) -> list[dict[str, Any]]:
        rows = self.db.execute(
            "SELECT id, received_at, source, connection, reason, size, raw FROM quarantine"
            " ORDER BY id DESC LIMIT ?",
            (limit,),
        )
        out = []
        for r in rows:
            entry = {
                "id": r[0],
                "received_at": r[1],
                "source": r[2],
                "connection": r[3],
                "reason": r[4],
                "size": r[5],
            }
            if with_raw:
                entry["raw"] = bytes(r[6])
            out.append(entry)
        return out

    def stats(self) -> dict[str, Any]:
        db = self.db
        events, first, last = db.execute(
            "SELECT count(*), min(event_time), max(event_time) FROM events"
        ).fetchone()  # ISO-8601 texts: they sort as times
        by_source = dict(db.execute("SELECT source, count(*) FROM events GROUP BY source"))
        by_type = dict(db.execute("SELECT event_type, count(*) FROM events GROUP BY event_type"))
        recovered = db.execute("SELECT count(*) FROM events WHERE recovered").fetchone()[0]
        quarantine = dict(
            db.execute("SELECT reason, count(*) FROM quarantine GROUP BY reason ORDER BY 2 DESC")
        )
        gaps = dict(db.execute("SELECT state, count(*) FROM gaps GROUP BY state"))
        cursors = self.cursors()
        newest = self.last_pos()
        sinks = {
            sink: {
                "position": position,
                "backlog": max(0, newest - position),
                "dead_letters": db.execute(
                    "SELECT count(*) FROM dead_letters WHERE sink = ?", (sink,)
                ).fetchone()[0],
            }
            for sink, position in cursors.items()
        }
        streams = {
            m.stream: {"subscription_id": m.subscription_id, "high": m.high}
            for m in self.streams().values()
        }
        size = sum(p.stat().st_size for p in (self.path, Path(f"{self.path}-wal")) if p.exists())
        return {
            "path": str(self.path),
            "bytes": size,
            "events": events,
            "first_event_time": first,
            "last_event_time": last,
            "by_source": by_source,
            "by_type": by_type,
            "recovered": recovered,
            "quarantined": sum(quarantine.values()),
            "quarantine_reasons": quarantine,
            "gaps": gaps,
            "streams": streams,
            "sinks": sinks,
        }


def open_journal(path: str | Path, *, readonly: bool = True) -> Journal:
    """Open an existing journal for reading (``readonly``) or create one."""
    path = Path(path)
    if readonly and not path.exists():
        raise FileNotFoundError(f"no journal at {path}")
    return Journal(connect(path, readonly=readonly), path)


def body_fields(body: bytes) -> dict[str, Any]:
    """Decode one stored canonical event."""
    result: dict[str, Any] = msgspec.json.decode(body)
    return result
