"""The journal: group commits from the writer thread, and everything the readers see."""

from __future__ import annotations

import sqlite3
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import msgspec
import pytest

from ivrstream.isotime import format_ms
from ivrstream.journal import (
    CHUNKS,
    WRITER_SWITCH_INTERVAL,
    CommitResult,
    GapRow,
    Journal,
    JournalWriter,
    QuarantineRow,
    StreamMark,
    WriteBatch,
    body_fields,
    connect,
    open_journal,
)

WAIT = 10.0  # seconds: only ever reached when a commit never comes


CHUNK = CHUNKS[-2]  # a small chunk size, so counts around it cross statement boundaries


def row(
    n: int,
    *,
    event_id: str | None = None,
    sub: str | None = "sub-1",
    recovered: bool = False,
    source: str = "eventstreams",
    event_type: str | None = None,
    conversation: str | None = None,
    sequence: int | None = -1,
    event_time: int | None = None,
) -> bytes:
    """A canonical event body (the journal reads every column from it)."""
    return msgspec.json.encode(
        {
            "event_id": event_id or eid(n),
            "source": source,
            "event_type": event_type or ("flow.start" if n % 2 else "flow.end"),
            "conversation_id": conversation or f"conv-{n % 3}",
            "sequence_id": n if sequence == -1 else sequence,
            "event_time": format_ms(1_000_000 + n if event_time is None else event_time),
            "received_at": format_ms(2_000_000 + n),
            "subscription_id": sub,
            "recovered": recovered,
            "n": n,
        }
    )


def eid(n: int) -> str:
    """A UUID-shaped id, as every real event id is (so batches take the one-statement insert)."""
    return f"00000000-0000-7000-8000-{n:012d}"


def rows(first: int, last: int) -> list[bytes]:
    return [row(n) for n in range(first, last + 1)]


class Commits:
    """``on_commit`` for a writer: records each result; ``wait(batches)`` blocks on an Event
    until that many batches have been committed (or failed)."""

    def __init__(self) -> None:
        self.results: list[CommitResult] = []
        self._lock = threading.Lock()
        self._target = 0
        self._reached = threading.Event()

    def __call__(self, result: CommitResult) -> None:
        with self._lock:
            self.results.append(result)
            if self.batches >= self._target:
                self._reached.set()

    @property
    def batches(self) -> int:
        return sum(len(r.batches) for r in self.results)

    def wait(self, batches: int) -> list[CommitResult]:
        with self._lock:
            self._target = batches
            self._reached.clear()
            if self.batches >= batches:
                self._reached.set()
        assert self._reached.wait(WAIT), f"only {self.batches} of {batches} batches committed"
        return self.results


@pytest.fixture
def path(tmp_path: Path) -> Path:
    return tmp_path / "journal.db"


@pytest.fixture
def commits() -> Commits:
    return Commits()


@pytest.fixture
def writer(path: Path, commits: Commits) -> Iterator[JournalWriter]:
    w = JournalWriter(path, flush_interval=0.0, on_commit=commits)
    yield w
    w.close()


def read(path: Path) -> Journal:
    return open_journal(path)


GAP = GapRow(
    id="g1",
    source="eventstreams",
    stream="s1",
    first_seq=5,
    last_seq=9,
    time_from=1_000,
    time_to=2_000,
    opened_at=3_000,
    state="open",
    missing=[[5, 9]],
)


def gap(id: str = "g1", **changes: object) -> GapRow:
    return replace(GAP, id=id, **changes)


# -- committing ----------------------------------------------------------------------------------


def test_a_batch_commits_events_quarantine_gaps_and_stream_marks_together(path, writer, commits):
    batch = WriteBatch(
        events=rows(1, 3),
        quarantine=[QuarantineRow(7_000, "eventstreams", "conn-1", "invalid JSON: x", b"{no")],
        gaps=[gap()],
        streams={"s1": StreamMark("s1", "sub-1", 3, 1_000_003)},
    )
    writer.start()
    writer.submit(batch)
    [result] = commits.wait(1)
    assert result.error is None
    assert result.batches == [batch]
    assert (result.inserted, result.duplicates, result.last_pos) == (3, 0, 3)
    assert result.seconds >= 0
    assert result.committed > 0
    assert writer.commits == 1
    with read(path) as journal:
        assert journal.count() == 3
        assert journal.sequence("sub-1") == [1, 2, 3]
        assert journal.streams() == {"s1": StreamMark("s1", "sub-1", 3, 1_000_003)}
        assert journal.gaps() == [gap()]
        [q] = journal.quarantined(with_raw=True)
        assert (q["source"], q["connection"], q["reason"], q["size"], q["raw"]) == (
            "eventstreams",
            "conn-1",
            "invalid JSON: x",
            3,
            b"{no",
        )


def test_a_batch_of_only_a_stream_mark_commits(path, writer, commits):
    writer.start()
    writer.submit(WriteBatch(streams={"s1": StreamMark("s1", None, 0, None)}))
    [result] = commits.wait(1)
    assert (result.inserted, result.duplicates, result.last_pos, result.error) == (0, 0, 0, None)
    with read(path) as journal:
        assert journal.streams() == {"s1": StreamMark("s1", None, 0, None)}


def test_duplicate_event_ids_are_ignored_and_counted(path, writer, commits):
    writer.start()
    writer.submit(WriteBatch(events=rows(1, 5)))
    commits.wait(1)
    again = [row(4), row(5), row(6), row(6, event_id=eid(6)), row(99, event_id=eid(1))]
    writer.submit(WriteBatch(events=again))
    first, second = commits.wait(2)
    assert (first.inserted, first.duplicates) == (5, 0)
    assert (second.inserted, second.duplicates) == (1, 4)
    assert second.last_pos == 6
    with read(path) as journal:
        assert journal.count() == 6
        assert journal.sequence("sub-1") == [1, 2, 3, 4, 5, 6]  # the first copy stays


@pytest.mark.parametrize(
    "count", [1, CHUNK - 1, CHUNK, CHUNK + 1, 2 * CHUNK, 2 * CHUNK + 7, 5 * CHUNK + 3]
)
def test_any_number_of_rows_goes_in_whole_and_in_order(path, writer, commits, count):
    writer.start()
    writer.submit(WriteBatch(events=rows(1, count)))
    [result] = commits.wait(1)
    assert (result.inserted, result.duplicates, result.last_pos) == (count, 0, count)
    with read(path) as journal:
        assert journal.sequence("sub-1") == list(range(1, count + 1))
        assert [body_fields(b)["n"] for b in journal.iter_bodies()] == list(range(1, count + 1))


@pytest.mark.parametrize("ids", ["uuid", "short"])
def test_duplicates_are_counted_in_full_chunks_and_in_the_remainder(path, writer, commits, ids):
    def some(first: int, last: int) -> list[bytes]:
        if ids == "uuid":
            return rows(first, last)  # one statement for the batch
        return [row(n, event_id=f"ev-{n}") for n in range(first, last + 1)]  # chunked VALUES

    writer.start()
    writer.submit(WriteBatch(events=some(1, 300)))
    commits.wait(1)
    # 600 rows: the first full chunk holds 250 duplicates, the remainder (88 rows) 40 more
    mixed = some(51, 300) + some(301, 562) + some(1, 40) + some(563, 610)
    assert len(mixed) == 600
    writer.submit(WriteBatch(events=mixed))
    _, result = commits.wait(2)
    assert (result.inserted, result.duplicates, result.last_pos) == (310, 290, 610)
    with read(path) as journal:
        assert journal.count() == 610
        assert journal.sequence("sub-1") == list(range(1, 611))


def test_batches_waiting_together_are_group_committed_in_one_transaction(path, commits):
    writer = JournalWriter(path, flush_interval=0.0, on_commit=commits)
    batches = [WriteBatch(events=rows(n, n + 9)) for n in range(1, 50, 10)]
    for batch in batches:
        writer.submit(batch)  # queued before the thread starts: all waiting at once
    writer.start()
    [result] = commits.wait(len(batches))
    writer.close()
    assert result.batches == batches
    assert (result.inserted, result.last_pos) == (50, 50)
    assert writer.commits == 1


def test_batch_max_splits_a_group_commit(path, commits):
    writer = JournalWriter(path, batch_max=20, flush_interval=0.0, on_commit=commits)
    for n in range(1, 60, 10):
        writer.submit(WriteBatch(events=rows(n, n + 9)))
    writer.start()
    results = commits.wait(6)
    writer.close()
    assert [len(r.batches) for r in results] == [2, 2, 2]
    assert [r.last_pos for r in results] == [20, 40, 60]


def test_the_last_stream_mark_of_a_group_wins_and_updates_the_row(path, commits):
    writer = JournalWriter(path, flush_interval=0.0, on_commit=commits)
    writer.submit(WriteBatch(streams={"s1": StreamMark("s1", "sub-1", 5, 50)}))
    writer.submit(
        WriteBatch(
            streams={
                "s1": StreamMark("s1", "sub-2", 9, 90),
                "s2": StreamMark("s2", "sub-3", 1, None),
            }
        )
    )
    writer.start()
    commits.wait(2)
    writer.submit(WriteBatch(streams={"s2": StreamMark("s2", "sub-3", 4, 40)}))
    commits.wait(3)
    writer.close()
    with read(path) as journal:
        assert journal.streams() == {
            "s1": StreamMark("s1", "sub-2", 9, 90),
            "s2": StreamMark("s2", "sub-3", 4, 40),
        }


def test_a_gap_row_is_upserted_as_it_fills(path, writer, commits):
    writer.start()
    writer.submit(WriteBatch(gaps=[gap(time_to=None), gap("g2", first_seq=20, last_seq=20)]))
    commits.wait(1)
    filled = gap(
        state="filled",
        filled=5,
        missing=[],
        resend_requested=True,
        closed_at=4_000,
        note="5 filled by late frames",
        time_to=2_500,
    )
    writer.submit(WriteBatch(gaps=[gap(state="partly_filled", missing=[[5, 6]], filled=3)]))
    writer.submit(WriteBatch(gaps=[filled]))
    commits.wait(3)
    with read(path) as journal:
        g1, g2 = journal.gaps()
        assert g1 == replace(filled, time_to=2_000)  # the first time after the gap that was known
        assert g2.id == "g2"
        assert journal.gaps(state="filled") == [g1]
        assert journal.gaps(state="open") == [g2]
        assert journal.gaps(state="lost") == []
        assert journal.gaps(stream="s1", state="open") == [g2]
        assert journal.gaps(stream="nope") == []


def test_a_gap_keeps_the_first_known_time_after_it(path, writer, commits):
    writer.start()
    writer.submit(WriteBatch(gaps=[gap(time_to=2_000)]))
    writer.submit(WriteBatch(gaps=[gap(time_to=9_999, state="lost")]))
    commits.wait(2)
    with read(path) as journal:
        [g] = journal.gaps()
        assert (g.time_to, g.state) == (2_000, "lost")


# -- failures ------------------------------------------------------------------------------------


def test_a_failing_batch_reports_its_error_and_writes_nothing_of_itself(path, writer, commits):
    writer.start()
    bad = WriteBatch(
        events=rows(1, 300),  # inserted first, then rolled back
        quarantine=[QuarantineRow(1, "eventstreams", None, None, b"x")],  # type: ignore[arg-type]
        gaps=[gap()],
        streams={"s1": StreamMark("s1", "sub-1", 300, None)},
    )
    writer.submit(bad)
    [result] = commits.wait(1)
    assert isinstance(result.error, sqlite3.IntegrityError)
    assert result.batches == [bad]
    assert (result.inserted, result.duplicates) == (0, 0)
    assert writer.commits == 0
    with read(path) as journal:
        assert journal.count() == 0
        assert journal.quarantined() == []
        assert journal.gaps() == []
        assert journal.streams() == {}
    writer.submit(WriteBatch(events=rows(1, 2)))  # the writer carries on
    _, after = commits.wait(2)
    assert (after.error, after.inserted, after.last_pos) == (None, 2, 2)


def test_a_value_sqlite_cannot_hold_fails_the_batch_not_the_writer(path, writer, commits):
    no_id = msgspec.json.encode({"source": "eventstreams", "n": 1})  # event_id is NOT NULL
    writer.start()
    writer.submit(WriteBatch(events=[*rows(2, 3), no_id]))
    [result] = commits.wait(1)
    assert result.error is not None
    writer.submit(WriteBatch(events=rows(4, 5)))
    _, after = commits.wait(2)
    assert (after.error, after.inserted) == (None, 2)
    with read(path) as journal:
        assert journal.sequence("sub-1") == [4, 5]


def test_a_closed_database_reports_an_error_for_the_batch(path, commits):
    writer = JournalWriter(path, flush_interval=0.0, on_commit=commits)
    writer._db.close()
    writer.start()
    writer.submit(WriteBatch(events=rows(1, 3)))
    [result] = commits.wait(1)
    writer.close()
    assert isinstance(result.error, sqlite3.ProgrammingError)
    assert result.inserted == 0
    with read(path) as journal:
        assert journal.count() == 0


def test_a_path_that_cannot_be_created_fails_at_once(tmp_path, commits):
    with pytest.raises(sqlite3.OperationalError):
        JournalWriter(tmp_path / "missing-dir" / "j.db", on_commit=commits)


# -- closing -------------------------------------------------------------------------------------


def test_close_commits_everything_submitted_before_it(path, commits):
    writer = JournalWriter(path, batch_max=7, flush_interval=0.0, on_commit=commits)
    writer.start()
    for n in range(1, 1_000, 10):
        writer.submit(WriteBatch(events=rows(n, n + 9)))
    writer.close()
    assert commits.batches == 100  # close returned after the last commit
    assert sum(r.inserted for r in commits.results) == 1_000
    with read(path) as journal:
        assert journal.sequence("sub-1") == list(range(1, 1_001))


def test_close_twice_and_close_before_start_are_harmless(path, commits):
    writer = JournalWriter(path, on_commit=commits)
    writer.close()
    writer.close()
    assert commits.results == []


# -- connecting ----------------------------------------------------------------------------------


def test_the_journal_is_wal_with_the_chosen_synchronous_level(path):
    db = connect(path, synchronous="full")
    assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert db.execute("PRAGMA synchronous").fetchone()[0] == 2  # FULL
    assert db.execute("SELECT value FROM meta WHERE key='schema_version'").fetchone()[0] == "2"
    db.close()
    with pytest.raises(ValueError, match="synchronous"):
        connect(path, synchronous="sometimes")


def test_reading_a_journal_that_does_not_exist_fails_clearly(tmp_path):
    with pytest.raises(FileNotFoundError, match="no journal"):
        open_journal(tmp_path / "nope.db")


def test_a_read_only_journal_cannot_be_written(path):
    open_journal(path, readonly=False).close()
    with read(path) as journal, pytest.raises(sqlite3.OperationalError):
        journal.db.execute("DELETE FROM events")


# -- reading -------------------------------------------------------------------------------------


@pytest.fixture
def filled(path: Path, writer: JournalWriter, commits: Commits) -> Path:
    """A journal of 12 events (3 recovered, 2 from backfill), 3 quarantined frames, 2 gaps."""
    events = rows(1, 10)
    events[4] = row(5, recovered=True)
    events += [
        row(
            11,
            event_id="bf-1",
            source="backfill",
            event_type="flow.end",
            conversation="conv-9",
            sub=None,
            sequence=None,
            event_time=500,
            recovered=True,
        ),
        row(
            12,
            event_id="bf-2",
            source="backfill",
            event_type="acd.start",
            conversation="conv-9",
            sub=None,
            sequence=None,
            event_time=5_000_000,
            recovered=True,
        ),
    ]
    writer.start()
    writer.submit(
        WriteBatch(
            events=events,
            quarantine=[
                QuarantineRow(1, "eventstreams", "c1", "invalid JSON: a", b"\x00\xff raw"),
                QuarantineRow(2, "eventstreams", "c1", "oversized", b"x" * 100),
                QuarantineRow(3, "notifications", None, "oversized", b""),
            ],
            gaps=[gap(), gap("g2", state="lost")],
            streams={"s1": StreamMark("s1", "sub-1", 10, 1_000_010)},
        )
    )
    commits.wait(1)
    return path


def test_read_after_pages_in_journal_order(filled):
    with read(filled) as journal:
        first = journal.read_after(0, limit=4)
        assert [pos for pos, _ in first] == [1, 2, 3, 4]
        assert body_fields(first[0][1])["n"] == 1
        assert [pos for pos, _ in journal.read_after(10)] == [11, 12]
        assert journal.read_after(12) == []
        assert journal.last_pos() == 12
        assert journal.count() == 12


def test_deliveries_carry_what_sinks_need_without_decoding_the_body(filled):
    with read(filled) as journal:
        first, second = journal.deliveries_after(0, limit=2)
        assert first == (
            1,
            eid(1),
            "conv-1",
            "flow.start",
            row(1),
            1,
            format_ms(1_000_001),
            format_ms(2_000_001),
        )
        assert second[0] == 2
        backfilled = journal.deliveries_at([11, 99])  # a position that is not there is skipped
        assert [(d[0], d[1], d[5]) for d in backfilled] == [(11, "bf-1", None)]
        assert journal.deliveries_after(12, limit=10) == []


@pytest.mark.parametrize("when", ["too big", "out of order"])
def test_deliveries_are_read_row_by_row_when_one_step_cannot_hold_them(filled, monkeypatch, when):
    with read(filled) as journal:
        in_one_step = [journal.deliveries_after(p, limit=5) for p in (0, 3, 10, 12)]

        def cannot(self: Journal, pos: int, limit: int) -> None:
            if when == "too big":
                raise sqlite3.DataError("string or blob too big")
            return None

        monkeypatch.setattr(Journal, "_deliveries_in_one_step", cannot)
        row_by_row = [journal.deliveries_after(p, limit=5) for p in (0, 3, 10, 12)]
    assert row_by_row == in_one_step
    assert [len(rows) for rows in row_by_row] == [5, 5, 2, 0]
    assert all(type(body) is bytes for rows in row_by_row for body in (r[4] for r in rows))


def test_iter_bodies_walks_everything_after_a_position_in_chunks(filled):
    with read(filled) as journal:
        assert [body_fields(b)["n"] for b in journal.iter_bodies(chunk=5)] == list(range(1, 13))
        assert [body_fields(b)["n"] for b in journal.iter_bodies(after=9, chunk=1)] == [10, 11, 12]
        assert list(journal.iter_bodies(after=12)) == []


def test_sequence_lists_one_subscriptions_ids(filled):
    with read(filled) as journal:
        assert journal.sequence("sub-1") == list(range(1, 11))
        assert journal.sequence("other") == []


def test_quarantined_lists_newest_first_and_returns_the_exact_raw_bytes(filled):
    with read(filled) as journal:
        listed = journal.quarantined()
        assert [q["received_at"] for q in listed] == [3, 2, 1]
        assert all("raw" not in q for q in listed)
        assert [q["size"] for q in listed] == [0, 100, 6]
        with_raw = journal.quarantined(limit=2, with_raw=True)
        assert [q["raw"] for q in with_raw] == [b"", b"x" * 100]
        oldest = journal.quarantined(limit=10, with_raw=True)[-1]
        assert oldest["raw"] == b"\x00\xff raw"
        assert type(oldest["raw"]) is bytes


def test_stats_summarise_the_journal(filled):
    with read(filled) as journal:
        stats = journal.stats()
    assert stats["path"] == str(filled)
    assert stats["bytes"] > 0
    assert stats["events"] == 12
    assert (stats["first_event_time"], stats["last_event_time"]) == (
        format_ms(500),
        format_ms(5_000_000),
    )
    assert stats["by_source"] == {"eventstreams": 10, "backfill": 2}
    assert stats["by_type"] == {"flow.start": 5, "flow.end": 6, "acd.start": 1}
    assert stats["recovered"] == 3
    assert stats["quarantined"] == 3
    assert stats["quarantine_reasons"] == {"oversized": 2, "invalid JSON: a": 1}
    assert list(stats["quarantine_reasons"]) == ["oversized", "invalid JSON: a"]  # most first
    assert stats["gaps"] == {"open": 1, "lost": 1}
    assert stats["streams"] == {"s1": {"subscription_id": "sub-1", "high": 10}}


def test_stats_of_an_empty_journal(path):
    open_journal(path, readonly=False).close()
    with read(path) as journal:
        stats = journal.stats()
        assert journal.last_pos() == 0
    assert stats["events"] == 0
    assert stats["first_event_time"] is None
    assert stats["quarantined"] == 0
    assert (stats["by_source"], stats["gaps"], stats["streams"]) == ({}, {}, {})


def test_a_version_1_journal_is_still_written_and_read(path, commits):
    """Journals made before event_id was stored (schema 1: generated from the body) keep
    working: the writer inserts bodies only, duplicates are still refused by the index."""
    from ivrstream.journal import SCHEMA

    stored = (
        "    event_id TEXT NOT NULL UNIQUE,  -- the body's event_id, stored for the unique index\n"
    )
    generated = (
        "    event_id TEXT GENERATED ALWAYS AS (json_extract(CAST(body AS TEXT), '$.event_id'))\n"
        "        VIRTUAL NOT NULL UNIQUE,\n"
    )
    assert stored in SCHEMA
    db = sqlite3.connect(path)
    db.executescript(SCHEMA.replace(stored, generated))
    db.execute("INSERT INTO meta(key, value) VALUES ('schema_version', '1')")
    db.commit()
    db.close()
    writer = JournalWriter(path, flush_interval=0.0, on_commit=commits)
    try:
        assert writer.schema_version == 1
        writer.start()
        writer.submit(WriteBatch(events=rows(1, 5)))
        (first,) = commits.wait(1)
        writer.submit(WriteBatch(events=rows(3, 7)))
        _, second = commits.wait(2)
    finally:
        writer.close()
    assert (first.inserted, second.inserted, second.duplicates) == (5, 2, 3)
    with read(path) as journal:
        assert journal.sequence("sub-1") == [1, 2, 3, 4, 5, 6, 7]


def test_ids_of_any_length_go_in_whole_and_in_order(path, writer, commits):
    # not every id is UUID-shaped (hand-made rows, other tools): those batches take the
    # chunked statements, with the same outcome
    bodies = [row(n, event_id="x" * (n % 40 + 1) + str(n)) for n in range(1, 301)]
    writer.start()
    writer.submit(WriteBatch(events=bodies))
    [result] = commits.wait(1)
    assert (result.inserted, result.duplicates, result.last_pos) == (300, 0, 300)
    with read(path) as journal:
        assert journal.sequence("sub-1") == list(range(1, 301))
        stored = [r[0] for r in journal.db.execute("SELECT event_id FROM events ORDER BY pos")]
    assert stored == [body_fields(b)["event_id"] for b in bodies]


def test_bodies_are_stored_byte_for_byte_whatever_they_hold(path, writer, commits):
    # the one-statement insert cuts bodies out of one blob: bodies of very different sizes,
    # multi-byte UTF-8 and escapes all come back exactly as they went in
    odd = [
        {"event_id": eid(2), "text": "é€😀 " * 50},
        {"event_id": eid(3), "escaped": '\u00e9 "quoted" \\ \n', "big": "x" * 70_000},
        {"event_id": eid(4)},
    ]
    bodies = [row(1), *(msgspec.json.encode(o) for o in odd), row(5) * 1]
    ids = [eid(n) for n in range(1, 6)]
    writer.start()
    writer.submit(WriteBatch(events=bodies, event_ids=ids))
    [result] = commits.wait(1)
    assert result.inserted == 5, result.error
    with read(path) as journal:
        stored = list(journal.db.execute("SELECT body, event_id FROM events ORDER BY pos"))
    assert stored == list(zip(bodies, ids, strict=True))


def test_the_thread_switch_interval_is_lowered_while_a_writer_runs(path, commits):
    before = sys.getswitchinterval()
    first = JournalWriter(path, flush_interval=0.0, on_commit=commits)
    second = JournalWriter(path, flush_interval=0.0, on_commit=commits)
    first.start()
    second.start()
    assert sys.getswitchinterval() == min(before, WRITER_SWITCH_INTERVAL)
    first.close()
    assert sys.getswitchinterval() == min(before, WRITER_SWITCH_INTERVAL)  # one still runs
    second.close()
    assert sys.getswitchinterval() == before


def test_ids_handed_over_with_the_bodies_are_the_ones_stored(path, writer, commits):
    bodies = rows(1, 3)
    writer.start()
    writer.submit(WriteBatch(events=bodies, event_ids=[body_fields(b)["event_id"] for b in bodies]))
    commits.wait(1)
    with read(path) as journal:
        stored = [r[0] for r in journal.db.execute("SELECT event_id FROM events ORDER BY pos")]
    assert stored == [body_fields(b)["event_id"] for b in bodies]


def test_export_reports_its_progress_against_the_events_after_the_start(filled, monkeypatch):
    import io

    from ivrstream.commands import journal as journal_commands

    monkeypatch.setattr(journal_commands, "EXPORT_PROGRESS_EVERY", 4)
    seen: list[tuple[int, int]] = []
    out = io.BytesIO()
    count = journal_commands.export(
        str(filled), out, after=2, on_progress=lambda *p: seen.append(p)
    )
    assert count == 10
    assert seen == [(4, 10), (8, 10), (10, 10)]
    assert len(out.getvalue().splitlines()) == 10


def test_the_checkpointer_outlives_a_failure_to_open_and_keeps_checkpointing(
    path, commits, monkeypatch
):
    import ivrstream.journal as journal_module

    monkeypatch.setattr(journal_module, "CHECKPOINT_INTERVAL", 0.005)
    opened = journal_module._checkpoint_connection
    failures = [sqlite3.OperationalError("database is locked")]

    def flaky(*args: object) -> sqlite3.Connection:
        if failures:
            raise failures.pop()
        return opened(*args)  # type: ignore[arg-type]

    monkeypatch.setattr(journal_module, "_checkpoint_connection", flaky)
    writer = JournalWriter(path, flush_interval=0.0, on_commit=commits)
    writer.start()
    try:
        deadline = time.monotonic() + WAIT
        while writer.checkpoints < 2 and time.monotonic() < deadline:
            time.sleep(0.005)
        assert failures == []  # the first open failed …
        assert writer.checkpoints >= 2  # … and the thread went on checkpointing
    finally:
        writer.close()
