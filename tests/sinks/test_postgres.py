"""PostgresSink against a real PostgreSQL (each test in a fresh schema, see ``postgres_dsn``)."""

from __future__ import annotations

import asyncio
import itertools
import socket
import sys
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import asyncpg
import msgspec
import pytest

from ivrstream.config import PostgresSettings
from ivrstream.emulator.render import interaction_snapshot
from ivrstream.emulator.traffic import Fact
from ivrstream.errors import ConfigError
from ivrstream.logs import REDACTOR
from ivrstream.sinks.base import Delivery, Outcome, Verdict
from ivrstream.sinks.postgres import (
    SCHEMA_VERSION,
    Change,
    Interaction,
    PostgresSink,
    apply,
    verdict,
)
from tests.sinks.support import Source, deliveries, delivery, event, facts

SinkFactory = Callable[..., Awaitable[PostgresSink]]


@pytest.fixture
async def make_sink(postgres_dsn: str) -> AsyncIterator[SinkFactory]:
    """``await make_sink(dsn=…, within=seconds, schema_name=…)``: a started sink, closed after."""
    sinks: list[PostgresSink] = []

    async def make(dsn: str = postgres_dsn, within: float = 5.0, **settings: Any) -> PostgresSink:
        sink = PostgresSink(PostgresSettings(dsn=dsn, **settings), timeout=within)
        sinks.append(sink)
        await sink.start()
        return sink

    yield make
    for sink in sinks:
        await sink.close()


async def query(dsn: str, sql: str, *args: Any) -> list[asyncpg.Record]:
    connection = await asyncpg.connect(dsn)
    try:
        return list(await connection.fetch(sql, *args))
    finally:
        await connection.close()


async def event_ids(dsn: str) -> list[str]:
    return [r["event_id"] for r in await query(dsn, "SELECT event_id FROM ivr_events")]


async def interactions(dsn: str) -> dict[str, asyncpg.Record]:
    rows = await query(dsn, "SELECT * FROM ivr_interactions")
    return {r["conversation_id"]: r for r in rows}


def at(ms: int) -> datetime:
    return datetime.fromtimestamp(ms / 1000, tz=UTC)


# -- schema --------------------------------------------------------------------------------------


async def test_schema_is_created_once_and_versioned(
    make_sink: SinkFactory, postgres_dsn: str
) -> None:
    first = await make_sink()
    await first.start()  # again, on the same sink
    await first.close()
    await make_sink()  # a restart: a new sink finds the schema in place
    versions = await query(postgres_dsn, "SELECT version FROM ivrstream_schema")
    assert [r["version"] for r in versions] == [SCHEMA_VERSION]
    tables = await query(
        postgres_dsn,
        "SELECT table_name FROM information_schema.tables WHERE table_schema = current_schema()",
    )
    assert {r["table_name"] for r in tables} == {
        "ivrstream_schema",
        "ivr_events",
        "ivr_interactions",
    }
    indexes = await query(
        postgres_dsn, "SELECT indexdef FROM pg_indexes WHERE tablename = 'ivr_events'"
    )
    assert any("(conversation_id, event_time)" in r["indexdef"] for r in indexes)


async def test_schema_name_creates_and_uses_its_own_schema(
    make_sink: SinkFactory, postgres_dsn: str
) -> None:
    schema = f"ivr_{uuid.uuid4().hex[:10]}"
    try:
        sink = await make_sink(schema_name=schema)
        outcome = await sink.deliver(deliveries(5))
        assert outcome.verdict is Verdict.OK
        count = await query(postgres_dsn, f"SELECT count(*) AS n FROM {schema}.ivr_events")  # noqa: S608
        assert count[0]["n"] == 5
        here = await query(postgres_dsn, "SELECT to_regclass('ivr_events') AS t")
        assert here[0]["t"] is None  # nothing landed in the DSN's own search_path
    finally:
        await query(postgres_dsn, f"DROP SCHEMA IF EXISTS {schema} CASCADE")


# -- events, once --------------------------------------------------------------------------------


async def test_a_batch_lands_once_and_redelivery_counts_duplicates(
    make_sink: SinkFactory, postgres_dsn: str
) -> None:
    sink = await make_sink()
    batch = deliveries(300)
    assert await sink.deliver([]) == Outcome.ok()
    assert await sink.deliver(batch[:200]) == Outcome.ok()
    stored = await query(
        postgres_dsn, "SELECT event_id, body, sequence_id, event_time FROM ivr_events"
    )
    assert len(stored) == 200
    first = next(r for r in stored if r["event_id"] == batch[0].event_id)
    original = msgspec.json.decode(batch[0].body)
    assert msgspec.json.decode(first["body"]) == original
    assert first["sequence_id"] == original["sequence_id"]
    assert first["event_time"] == datetime.fromisoformat(original["event_time"])
    before = await interactions(postgres_dsn)

    assert await sink.deliver(batch[:200]) == Outcome.ok(duplicates=200)
    assert await interactions(postgres_dsn) == before  # not even updated_at moved

    overlapping = [*batch[150:300], batch[299]]  # 50 old ones, and one event twice
    assert await sink.deliver(overlapping) == Outcome.ok(duplicates=51)
    ids = await event_ids(postgres_dsn)
    assert sorted(ids) == sorted(d.event_id for d in batch)
    stats = sink.statistics()
    assert (stats["delivered"], stats["duplicates"], stats["reconnects"]) == (300, 251, 0)
    assert stats["last_error"] is None


# -- interaction state ---------------------------------------------------------------------------


def expected_row(latest: Fact, source: Source) -> dict[str, Any]:
    """The interaction row after ``latest`` (and everything before it), read from the snapshot
    the emulator renders: both sources must converge on it."""
    snap = interaction_snapshot(latest)
    row = {
        "state": snap["state"],
        "flow_id": snap.get("flow", {}).get("id"),
        "ani": snap["ani"],
        "dnis": snap["dnis"],
        "queue_id": snap.get("queue", {}).get("id"),
        "outcome": snap.get("outcome", {}),
        "attributes": snap.get("attributes", {}),
        "last_event_type": latest.kind,
        "last_event_time": at(latest.time_ms),
    }
    if source == "eventstreams":
        row["flow_name"] = snap.get("flow", {}).get("name")
        row["menu_path"] = snap["menuPath"]
    return row


def actual_row(record: asyncpg.Record, source: Source) -> dict[str, Any]:
    row = {key: record[key] for key in ("state", "flow_id", "ani", "dnis", "queue_id")}
    row["outcome"] = msgspec.json.decode(record["outcome"])
    row["attributes"] = msgspec.json.decode(record["attributes"])
    row["last_event_type"] = record["last_event_type"]
    row["last_event_time"] = record["last_event_time"]
    if source == "eventstreams":
        row["flow_name"] = record["flow_name"]
        row["menu_path"] = record["menu_path"]
    else:
        assert (record["flow_name"], record["menu_path"]) == (None, None)
    return row


# kinds a detail event may arrive late with and still converge on the snapshot's row (a late
# state-setting detail event only fills gaps, so it cannot converge when its state was needed)
LATE_KINDS = {"attributes", "flow.outcome", "flow.end"}


@pytest.mark.parametrize("source", ["eventstreams", "notifications"])
async def test_interactions_hold_the_latest_state_even_when_events_come_late(
    make_sink: SinkFactory, postgres_dsn: str, source: Source
) -> None:
    sink = await make_sink()
    all_facts = facts(900, seed=7)
    later: dict[str, int] = {}  # conversation → index of its last fact
    for i, f in enumerate(all_facts):
        later[f.conversation_id] = i
    held = [
        f
        for i, f in enumerate(all_facts)
        if f.kind in LATE_KINDS and later[f.conversation_id] > i and i % 2 == 0
    ]
    assert len(held) > 20
    held_ids = {id(f) for f in held}
    on_time = [f for f in all_facts if id(f) not in held_ids]
    items = [
        delivery(event(f, source=source, sequence_id=pos), pos)
        for pos, f in enumerate(on_time + held, start=1)
    ]
    n_on_time = len(on_time)
    assert n_on_time > 600
    # three batches in order; the held-back (older) events trail the last one — some in the
    # same batch as newer events of their conversation, the rest in a batch of their own
    cuts = [0, 300, 600, n_on_time + len(held) // 2, len(items)]
    for lo, hi in itertools.pairwise(cuts):
        assert await sink.deliver(items[lo:hi]) == Outcome.ok()

    latest: dict[str, Fact] = {}
    for f in all_facts:
        latest[f.conversation_id] = f
    rows = await interactions(postgres_dsn)
    assert rows.keys() == latest.keys()
    for conversation, fact in latest.items():
        assert actual_row(rows[conversation], source) == expected_row(fact, source), conversation
    assert {r["state"] for r in rows.values()} >= {"ivr", "queued", "disconnected"}


async def test_a_late_detail_event_fills_gaps_but_never_overwrites(
    make_sink: SinkFactory, postgres_dsn: str
) -> None:
    sink = await make_sink()
    call = next(f.call for f in facts(400, seed=3) if f.call.queue is not None)
    by_kind = {f.kind: event(f, source="notifications") for f in call.facts}
    late = by_kind.pop("acd.start")
    first = [delivery(e, pos) for pos, e in enumerate(by_kind.values(), start=1)]
    assert (await sink.deliver(first)).verdict is Verdict.OK
    (row,) = (await interactions(postgres_dsn)).values()
    assert (row["state"], row["queue_id"]) == ("disconnected", call.queue.id)  # from acd.end

    await query(postgres_dsn, "UPDATE ivr_interactions SET queue_id = NULL")  # a gap to fill
    assert (await sink.deliver([delivery(late, 99)])).verdict is Verdict.OK
    (row,) = (await interactions(postgres_dsn)).values()
    assert row["state"] == "disconnected"  # not "queued": acd.start is older
    assert row["last_event_type"] == "customer.end"
    assert row["queue_id"] == call.queue.id  # filled in


def test_apply_overwrites_with_newer_and_fills_with_older() -> None:
    def change(kind: str, ms: int, **data: Any) -> Change:
        return Change(f"e{ms}", "c1", kind, at(ms), data)

    state = apply(None, change("flow.start", 10, flowId="f1", ani="tel:1"))
    state = apply(state, change("customer.end", 30, disconnectType="PEER"))
    state = apply(state, change("flow.end", 20, exitReason="FLOW_DISCONNECT", flowId="f2"))
    state = apply(state, change("attributes", 5, attributes={"MenuChoice": "4"}))
    assert state == Interaction(
        "c1",
        "customer.end",
        at(30),
        state="disconnected",
        flow_id="f1",
        ani="tel:1",
        outcome={"disconnectType": "PEER", "exitReason": "FLOW_DISCONNECT"},
        attributes={"MenuChoice": "4"},
    )
    snapshot = {"state": "ivr", "flow": "not-a-mapping", "menuPath": ["main", 3], "ani": 7}
    assert apply(state, change("x", 40, **snapshot)).state == "ivr"  # odd fields are ignored


# -- poison --------------------------------------------------------------------------------------


def poisoned(body: bytes) -> Delivery:
    return Delivery(10_000, "poison-1", "conv-poison", "flow.start", body)


def canonical_with(**fields: Any) -> bytes:
    base = msgspec.json.decode(deliveries(1)[0].body)
    return msgspec.json.encode({**base, "event_id": "poison-1", **fields})


POISON = {
    "invalid JSON": b'{"event_id":"x", "data": }',
    "not an event": b'{"event_id": "x", "n": 1}',
    "bigint overflow": canonical_with(sequence_id=2**63),
    "bad timestamp": canonical_with(event_time="yesterday"),
    "NUL for jsonb": canonical_with(data={"ani": "tel:\u0000"}),  # refused by the server
}


@pytest.mark.parametrize("body", POISON.values(), ids=POISON.keys())
async def test_a_poison_event_is_rejected_and_good_batches_still_go_in(
    make_sink: SinkFactory, postgres_dsn: str, body: bytes
) -> None:
    sink = await make_sink()
    good = deliveries(60)
    outcome = await sink.deliver([*good[:30], poisoned(body), *good[30:]])
    assert outcome.verdict is Verdict.REJECT, outcome
    assert outcome.error
    assert await event_ids(postgres_dsn) == []  # all of the batch or none of it
    assert await interactions(postgres_dsn) == {}
    assert (await sink.deliver(good)).verdict is Verdict.OK
    assert len(await event_ids(postgres_dsn)) == 60
    stats = sink.statistics()
    assert (stats["rejects"], stats["reconnects"], stats["connected"]) == (1, 0, True)


# -- outages -------------------------------------------------------------------------------------


class Proxy:
    """A TCP proxy on 127.0.0.1 port 0 in front of the real server, which can simulate a restart:
    :meth:`outage` drops every connection and refuses new ones until :meth:`restore`."""

    def __init__(self, host: str, port: int) -> None:
        self.target = (host, port)
        self.accepting = True
        self.writers: set[asyncio.StreamWriter] = set()
        self.handlers: set[asyncio.Task[None]] = set()
        self.server: asyncio.Server | None = None
        self.port = 0

    async def __aenter__(self) -> Proxy:
        self.server = await asyncio.start_server(self._client, "127.0.0.1", 0)
        self.port = self.server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self.server is not None
        self.server.close()
        self.outage()
        await self.server.wait_closed()
        await asyncio.gather(*self.handlers, return_exceptions=True)

    def outage(self) -> None:
        self.accepting = False
        for writer in self.writers:
            writer.transport.abort()
        self.writers.clear()

    def restore(self) -> None:
        self.accepting = True

    async def _client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self.handlers.add(task)
        task.add_done_callback(self.handlers.discard)
        if not self.accepting:
            writer.transport.abort()
            return
        try:
            up_reader, up_writer = await asyncio.open_connection(*self.target)
        except OSError:
            writer.transport.abort()
            return
        self.writers |= {writer, up_writer}
        await asyncio.gather(
            self._pipe(reader, up_writer), self._pipe(up_reader, writer), return_exceptions=True
        )
        self.writers -= {writer, up_writer}

    @staticmethod
    async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while data := await reader.read(65536):
                writer.write(data)
                await writer.drain()
        finally:
            writer.transport.abort()

    def dsn(self, dsn: str) -> str:
        """``dsn`` aimed at the proxy."""
        parts = urlsplit(dsn)
        user = parts.netloc.rpartition("@")[0]
        netloc = f"{user}@127.0.0.1:{self.port}" if user else f"127.0.0.1:{self.port}"
        return urlunsplit(parts._replace(netloc=netloc))


async def test_database_down_means_retry_then_recovery_without_duplicates(
    make_sink: SinkFactory, postgres_dsn: str
) -> None:
    parts = urlsplit(postgres_dsn)
    async with Proxy(parts.hostname or "127.0.0.1", parts.port or 5432) as proxy:
        sink = await make_sink(dsn=proxy.dsn(postgres_dsn), within=3.0)
        batches = [deliveries(300)[i : i + 100] for i in range(0, 300, 100)]
        assert (await sink.deliver(batches[0])).verdict is Verdict.OK

        proxy.outage()  # the server "restarts": live connections drop, new ones are refused
        for _ in range(2):
            outcome = await sink.deliver(batches[1])
            assert outcome.verdict is Verdict.RETRY, outcome
            assert sink.statistics()["connected"] is False
        assert sink.statistics()["last_error"] == outcome.error

        proxy.restore()
        for batch in batches[1:]:
            assert await sink.deliver(batch) == Outcome.ok()  # no duplicates
    ids = await event_ids(postgres_dsn)
    assert sorted(ids) == sorted(d.event_id for b in batches for d in b)
    stats = sink.statistics()
    assert (stats["delivered"], stats["retries"], stats["reconnects"]) == (300, 2, 1)


async def test_a_terminated_backend_is_retried_on_a_new_connection(
    make_sink: SinkFactory, postgres_dsn: str
) -> None:
    tag = f"ivrstream-test-{uuid.uuid4().hex[:8]}"
    sink = await make_sink(dsn=f"{postgres_dsn}&application_name={tag}")
    items = deliveries(40)
    assert (await sink.deliver(items[:20])).verdict is Verdict.OK
    killed = await query(
        postgres_dsn,
        "SELECT pg_terminate_backend(pid) AS ok FROM pg_stat_activity WHERE application_name = $1",
        tag,
    )
    assert [r["ok"] for r in killed] == [True]
    outcomes = [await sink.deliver(items[20:]) for _ in range(2)]
    # the driver may notice the closed socket before the next delivery (then it just reconnects)
    assert outcomes[-1].verdict is Verdict.OK
    assert outcomes[0].verdict in (Verdict.RETRY, Verdict.OK)
    assert len(await event_ids(postgres_dsn)) == 40
    assert sink.statistics()["reconnects"] == 1


async def test_a_delivery_that_hangs_times_out_and_retries_on_a_new_connection(
    make_sink: SinkFactory, postgres_dsn: str
) -> None:
    sink = await make_sink(within=0.3)
    items = deliveries(20)
    blocker = await asyncpg.connect(postgres_dsn)
    try:
        async with blocker.transaction():
            await blocker.execute("LOCK TABLE ivr_events IN SHARE MODE")  # INSERTs wait
            outcome = await sink.deliver(items)
            assert outcome.verdict is Verdict.RETRY
            assert outcome.error == "TimeoutError: timed out"
    finally:
        await blocker.close()
    assert await sink.deliver(items) == Outcome.ok()  # the abandoned transaction never committed
    assert len(await event_ids(postgres_dsn)) == 20
    assert sink.statistics()["reconnects"] == 1


async def test_a_schema_newer_than_this_code_is_not_written_to(
    make_sink: SinkFactory, postgres_dsn: str
) -> None:
    await make_sink()
    await query(postgres_dsn, "UPDATE ivrstream_schema SET version = $1", SCHEMA_VERSION + 1)
    sink = await make_sink()  # starts anyway: only logs
    outcome = await sink.deliver(deliveries(3))
    assert outcome.verdict is Verdict.RETRY
    assert "upgrade ivrstream" in outcome.error
    assert await event_ids(postgres_dsn) == []


@pytest.mark.parametrize(
    ("exc", "expected", "drop"),
    [
        (asyncpg.exceptions.SerializationError("could not serialize"), Verdict.RETRY, False),
        (asyncpg.exceptions.DeadlockDetectedError("deadlock detected"), Verdict.RETRY, False),
        (asyncpg.exceptions.TooManyConnectionsError("too many clients"), Verdict.RETRY, True),
        (asyncpg.exceptions.CannotConnectNowError("starting up"), Verdict.RETRY, True),
        (asyncpg.exceptions.AdminShutdownError("terminating"), Verdict.RETRY, True),
        (asyncpg.exceptions.ConnectionFailureError("lost"), Verdict.RETRY, True),
        (asyncpg.exceptions.InsufficientPrivilegeError("denied"), Verdict.RETRY, True),
        (asyncpg.exceptions.InterfaceError("connection is closed"), Verdict.RETRY, True),
        (ConnectionRefusedError(111, "refused"), Verdict.RETRY, True),
        (TimeoutError(), Verdict.RETRY, True),
        (asyncpg.exceptions.NumericValueOutOfRangeError("out of range"), Verdict.REJECT, False),
        (asyncpg.exceptions.NotNullViolationError("null value"), Verdict.REJECT, False),
        (asyncpg.exceptions.InvalidTextRepresentationError("bad json"), Verdict.REJECT, False),
        (OverflowError("value out of int64 range"), Verdict.REJECT, False),
    ],
)
def test_verdict(exc: Exception, expected: Verdict, drop: bool) -> None:
    judged = verdict(exc, asyncpg)
    assert judged is not None
    assert (judged[0].verdict, judged[1]) == (expected, drop)


def test_a_bug_is_not_a_delivery_problem() -> None:
    assert verdict(KeyError("oops"), asyncpg) is None


def unused_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def test_the_password_never_shows() -> None:
    password = f"pw-{uuid.uuid4().hex}"
    dsn = f"postgresql://ivr:{password}@127.0.0.1:{unused_port()}/ivr"
    sink = PostgresSink(PostgresSettings(dsn=dsn), timeout=2.0)
    await sink.start()  # the database is not there: no exception, only a log line
    outcome = await sink.deliver(deliveries(3))
    assert outcome.verdict is Verdict.RETRY
    assert password not in outcome.error
    assert password not in str(sink.statistics())
    assert password not in REDACTOR.scrub(f"connecting to {dsn}")
    await sink.close()
    assert (await sink.deliver(deliveries(1))).verdict is Verdict.RETRY  # closed: not reopened


# -- configuration -------------------------------------------------------------------------------


def test_a_dsn_is_required() -> None:
    with pytest.raises(ConfigError) as caught:
        PostgresSink(PostgresSettings())
    assert caught.value.field == "sinks.postgres.dsn"
    with pytest.raises(ConfigError):
        PostgresSink(PostgresSettings(dsn="mysql://somewhere/db"))


async def test_without_asyncpg_start_says_what_to_install(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setitem(sys.modules, "asyncpg", None)  # makes `import asyncpg` fail
    sink = PostgresSink(PostgresSettings(dsn="postgresql://ivr@127.0.0.1/ivr"))
    with pytest.raises(ConfigError, match=r"ivrstream\[postgres\]") as caught:
        await sink.start()
    assert caught.value.field == "sinks.postgres"


# -- volume --------------------------------------------------------------------------------------


async def test_ten_thousand_events_in_batches_of_500(
    make_sink: SinkFactory, postgres_dsn: str
) -> None:
    sink = await make_sink()
    items = deliveries(10_000)
    started = time.perf_counter()
    for i in range(0, len(items), 500):
        assert await sink.deliver(items[i : i + 500]) == Outcome.ok()
    elapsed = time.perf_counter() - started
    print(f"\n10,000 events in batches of 500: {elapsed:.3f}s ({10_000 / elapsed:,.0f}/s)")
    count = await query(postgres_dsn, "SELECT count(*) AS n FROM ivr_events")
    assert count[0]["n"] == 10_000
    conversations = {d.conversation_id for d in items}
    assert len(await interactions(postgres_dsn)) == len(conversations)
