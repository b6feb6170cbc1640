"""The reference webhook receiver: verify, deduplicate, store — and fail on purpose when asked.

Rules this module keeps:

- Nothing is stored unless the Standard Webhooks signature verifies within ``tolerance`` seconds
  (401 with a short JSON reason otherwise). The secret is never logged, echoed or stored.
- A body is one canonical event object or a JSON array of them, each with a non-empty
  ``event_id`` (400 otherwise, and nothing of it is stored). One request is one transaction.
- Each event id is stored at most once, in arrival order. A repeat — later in the same body or in a
  later request — is a duplicate: counted, answered 200, not stored again.
- Injected faults are decided before the body is read. ``fail_rate`` draws once per request, in
  arrival order, from a ``random.Random(seed)``: the same seed and requests fail the same way. An
  outage window fails every request inside it. ``latency`` delays every answer (a real
  ``asyncio.sleep``, since wall-clock latency is what it simulates). All of it is counted.
- Bind to loopback: the control routes have no authentication. There is no access log.

Routes:

- ``POST {path}`` (default ``/webhook``) — a delivery; 200 ``{"received": n, "duplicates": d}``
  where ``n`` events were newly stored and ``d`` were already there (``n + d`` = events sent).
- ``GET /events?after=N&limit=M`` — stored bodies as JSON lines in arrival order, after position
  ``N``; the ``X-Next-After`` header is the position to pass next.
- ``GET /stats`` — counters since this receiver started (:meth:`Receiver.stats`).
- ``GET|POST /receiver/faults`` — read or change faults at run time: ``fail_rate``, ``latency``,
  ``status``, ``retry_after``, ``outage_for_seconds`` (0 ends an outage).

Storage: SQLite (stdlib ``sqlite3`` in a worker thread) or PostgreSQL (asyncpg), one table
``received(event_id PRIMARY KEY, received_at, conversation_id, event_type, sequence_id, body)``;
PostgreSQL adds an identity column ``pos`` that plays SQLite's ``rowid``.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import operator
import random
import sqlite3
import threading
from collections import Counter
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple, Protocol, TypeVar

import msgspec
from aiohttp import web

from ivrstream import logs
from ivrstream.clock import Clock, SystemClock
from ivrstream.isotime import format_ms
from ivrstream.lifecycle import StartStop
from ivrstream.webhooks import (
    DEFAULT_TOLERANCE,
    WebhookVerificationError,
    parse_secret,
    verify,
)

log = logging.getLogger(__name__)
T = TypeVar("T")

MAX_BODY = 16 * 1024 * 1024
_EVENT_ID = operator.itemgetter(0)  # of a Row
_EVENT_TYPE = operator.itemgetter(3)
MAX_PAGE = 10_000

# -- faults ----------------------------------------------------------------------------------------


class Faults(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """Standing faults: what share fails, how slow every answer is, and how a failure looks."""

    fail_rate: float = 0.0
    latency: float = 0.0
    status: int = 503
    retry_after: int | None = None

    def check(self) -> None:
        """Raise ValueError naming the first field out of range."""
        if not 0.0 <= self.fail_rate <= 1.0:
            raise ValueError("fail_rate must be between 0 and 1")
        if self.latency < 0:
            raise ValueError("latency must be >= 0 seconds")
        if not 400 <= self.status <= 599:
            raise ValueError("status must be an HTTP error status (400-599)")
        if self.retry_after is not None and self.retry_after < 0:
            raise ValueError("retry_after must be >= 0 seconds")


class FaultChange(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """The body of ``POST /receiver/faults``: fields left out stay as they are."""

    fail_rate: float | msgspec.UnsetType = msgspec.UNSET
    latency: float | msgspec.UnsetType = msgspec.UNSET
    status: int | msgspec.UnsetType = msgspec.UNSET
    retry_after: int | msgspec.UnsetType | None = msgspec.UNSET
    outage_for_seconds: float | msgspec.UnsetType = msgspec.UNSET


# -- storage ---------------------------------------------------------------------------------------


class Row(NamedTuple):
    event_id: str
    received_at: str
    conversation_id: str | None
    event_type: str | None
    sequence_id: int | None
    body: str


class Store(Protocol):
    """Where accepted events go; ``insert`` is one transaction and returns the ids it stored."""

    async def open(self) -> None: ...

    async def insert(self, rows: list[Row]) -> set[str]: ...

    async def read(self, after: int, limit: int) -> list[tuple[int, str]]: ...

    async def close(self) -> None: ...


COLUMNS = "event_id, received_at, conversation_id, event_type, sequence_id, body"
_CHUNK = 1_000  # rows (6 variables each) or ids per statement, well under SQLite's cap

SQLITE_SCHEMA = """
CREATE TABLE IF NOT EXISTS received (
    event_id TEXT PRIMARY KEY,
    received_at TEXT NOT NULL,
    conversation_id TEXT,
    event_type TEXT,
    sequence_id INTEGER,
    body TEXT NOT NULL
)
"""


class SqliteStore:
    """A SQLite file (or ``:memory:``); every call runs in a worker thread, one at a time."""

    def __init__(self, path: str | Path) -> None:
        self.path = str(path)
        self._conn: sqlite3.Connection | None = None
        # a thread lock, not an asyncio one: a cancelled caller must not free the connection
        # while its thread is still using it
        self._guard = threading.Lock()
        # one thread for the connection: calls queue here instead of parking threads on the
        # lock, each waking for its turn and for the GIL
        self._worker = ThreadPoolExecutor(1, thread_name_prefix="receiver-store")

    def _in_worker(self, function: Callable[..., T], *args: Any) -> asyncio.Future[T]:
        return asyncio.get_running_loop().run_in_executor(self._worker, function, *args)

    async def open(self) -> None:
        self._conn = await self._in_worker(self._connect)

    def _connect(self) -> sqlite3.Connection:
        conn = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        conn.execute("PRAGMA page_size=65536")  # kilobyte rows in order: big pages (new files)
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=NORMAL")
        conn.execute("PRAGMA wal_autocheckpoint=256")  # pages of 64 KiB: checkpoint every ~16 MiB
        conn.execute(SQLITE_SCHEMA)
        return conn

    def _connection(self) -> sqlite3.Connection:
        if self._conn is None:
            raise RuntimeError("the store is not open")
        return self._conn

    async def insert(self, rows: list[Row]) -> set[str]:
        return await self._in_worker(self._insert, rows)

    def _insert(self, rows: list[Row]) -> set[str]:
        """Insert the rows not stored yet; return their event ids. A few statements a request,
        not one a row: each statement hands the GIL over once."""
        with self._guard:
            conn = self._connection()
            conn.execute("BEGIN IMMEDIATE")
            try:
                known: set[str] = set()
                ids = list(map(_EVENT_ID, rows))
                for start in range(0, len(ids), _CHUNK):
                    chunk = ids[start : start + _CHUNK]
                    marks = ",".join("?" * len(chunk))
                    known.update(
                        r[0]
                        for r in conn.execute(
                            f"SELECT event_id FROM received WHERE event_id IN ({marks})",  # noqa: S608
                            chunk,
                        )
                    )
                fresh: dict[str, Row] = {}
                if known or len(set(ids)) != len(ids):
                    for row in rows:  # the first copy of each new event, in order
                        if row.event_id not in known and row.event_id not in fresh:
                            fresh[row.event_id] = row
                else:
                    fresh = dict(zip(ids, rows, strict=True))  # all new, all different
                new_rows = list(fresh.values())
                for start in range(0, len(new_rows), _CHUNK):
                    chunk_rows = new_rows[start : start + _CHUNK]
                    values = ",".join(["(?, ?, ?, ?, ?, ?)"] * len(chunk_rows))
                    conn.execute(
                        f"INSERT INTO received ({COLUMNS}) VALUES {values}",  # noqa: S608
                        list(itertools.chain.from_iterable(chunk_rows)),
                    )
                conn.execute("COMMIT")
            except BaseException:
                conn.execute("ROLLBACK")
                raise
        return set(fresh)

    async def read(self, after: int, limit: int) -> list[tuple[int, str]]:
        return await self._in_worker(self._read, after, limit)

    def _read(self, after: int, limit: int) -> list[tuple[int, str]]:
        with self._guard:
            cursor = self._connection().execute(
                "SELECT rowid, body FROM received WHERE rowid > ? ORDER BY rowid LIMIT ?",
                (after, limit),
            )
            return [(int(pos), str(body)) for pos, body in cursor.fetchall()]

    async def close(self) -> None:
        if self._conn is not None:
            await self._in_worker(self._close)

    def _close(self) -> None:
        with self._guard:
            if self._conn is not None:
                self._conn.close()
                self._conn = None
        self._worker.shutdown(wait=False)


POSTGRES_SCHEMA = """
CREATE TABLE IF NOT EXISTS received (
    event_id TEXT PRIMARY KEY,
    received_at TEXT NOT NULL,
    conversation_id TEXT,
    event_type TEXT,
    sequence_id BIGINT,
    body TEXT NOT NULL,
    pos BIGINT GENERATED ALWAYS AS IDENTITY UNIQUE
)
"""

POSTGRES_INSERT = f"""
INSERT INTO received ({COLUMNS})
SELECT {COLUMNS}
FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::bigint[], $6::text[])
    WITH ORDINALITY AS r ({COLUMNS}, n)
ORDER BY n
ON CONFLICT (event_id) DO NOTHING
RETURNING event_id
"""  # noqa: S608 - the column list is a constant


class PostgresStore:
    """A PostgreSQL table through an asyncpg pool; writes one at a time so ``pos`` is arrival
    order as readers see it (no later commit ever appears behind a position already read)."""

    def __init__(self, dsn: str) -> None:
        self._dsn = dsn
        self._pool: Any = None
        self._write = asyncio.Lock()

    async def open(self) -> None:
        import asyncpg

        self._pool = await asyncpg.create_pool(self._dsn, min_size=1, max_size=4)
        async with self._pool.acquire() as conn:
            await conn.execute(POSTGRES_SCHEMA)

    async def insert(self, rows: list[Row]) -> set[str]:
        if not rows:
            return set()
        columns = [list(column) for column in zip(*rows, strict=True)]
        async with self._write, self._pool.acquire() as conn, conn.transaction():
            records = await conn.fetch(POSTGRES_INSERT, *columns)
        return {str(record["event_id"]) for record in records}

    async def read(self, after: int, limit: int) -> list[tuple[int, str]]:
        async with self._pool.acquire() as conn:
            records = await conn.fetch(
                "SELECT pos, body FROM received WHERE pos > $1 ORDER BY pos LIMIT $2",
                after,
                limit,
            )
        return [(int(record["pos"]), str(record["body"])) for record in records]

    async def close(self) -> None:
        if self._pool is not None:
            await self._pool.close()
            self._pool = None


# -- bodies ----------------------------------------------------------------------------------------


class BadBody(ValueError):
    """The body is not an event or an array of events; the message says why."""


class _Envelope(msgspec.Struct):
    """The fields of a canonical event the receiver indexes; the rest is kept verbatim."""

    event_id: str
    conversation_id: str | None = None
    event_type: str | None = None
    sequence_id: int | None = None


_RAWS = msgspec.json.Decoder(list[msgspec.Raw])
_ENVELOPES = msgspec.json.Decoder(list[_Envelope])


def parse_body(body: bytes, received_at: str) -> list[Row]:
    """One row per event in ``body``, in order; raise :class:`BadBody` if any is not an event."""
    start = body.lstrip()[:1]
    if start == b"[" and b"\n" not in body:
        rows = _parse_array(body, received_at)
        if rows is not None:
            return rows
    return _parse_each(body, start, received_at)


def _parse_array(body: bytes, received_at: str) -> list[Row] | None:
    """The common case, a batch without line breaks, in two passes of the decoder over the
    whole body instead of one call an event; None when anything is off (then
    :func:`_parse_each` finds and names the event at fault)."""
    try:
        envelopes = _ENVELOPES.decode(body)
        texts = list(map(str, _RAWS.decode(body), itertools.repeat("utf-8")))
    except (msgspec.DecodeError, UnicodeDecodeError):
        return None
    if len(texts) != len(envelopes) or not all(e.event_id for e in envelopes):
        return None
    return [
        Row(e.event_id, received_at, e.conversation_id, e.event_type, e.sequence_id, text)
        for e, text in zip(envelopes, texts, strict=True)
    ]


def _parse_each(body: bytes, start: bytes, received_at: str) -> list[Row]:
    try:
        if start == b"[":
            raws = msgspec.json.decode(body, type=list[msgspec.Raw])
        elif start == b"{":
            raws = [msgspec.json.decode(body, type=msgspec.Raw)]
        else:
            raise BadBody("the body is neither an event object nor a JSON array of them")
    except msgspec.DecodeError as exc:
        raise BadBody(f"malformed JSON: {exc}") from None
    rows: list[Row] = []
    for index, raw in enumerate(raws):
        where = f"event {index}" if start == b"[" else "the event"
        try:
            envelope = msgspec.json.decode(raw, type=_Envelope)
            # one line per event, so GET /events can answer in JSON lines
            line = bytes(raw)
            text = (msgspec.json.format(line, indent=-1) if b"\n" in line else line).decode()
        except (msgspec.DecodeError, UnicodeDecodeError) as exc:
            raise BadBody(f"{where}: {exc}") from None
        if not envelope.event_id:
            raise BadBody(f"{where}: event_id is empty")
        rows.append(
            Row(
                envelope.event_id,
                received_at,
                envelope.conversation_id,
                envelope.event_type,
                envelope.sequence_id,
                text,
            )
        )
    return rows


# -- the receiver ----------------------------------------------------------------------------------


@dataclass
class Counters:
    requests: int = 0
    accepted: int = 0
    events: int = 0
    duplicates: int = 0
    rejected_signatures: int = 0
    bad_requests: int = 0
    injected_failures: int = 0
    delayed: int = 0
    storage_errors: int = 0
    rejected_by_reason: Counter[str] = field(default_factory=Counter)
    injected_by_cause: Counter[str] = field(default_factory=Counter)
    by_event_type: Counter[str] = field(default_factory=Counter)


def _json(data: object, status: int = 200, headers: dict[str, str] | None = None) -> web.Response:
    return web.Response(
        body=msgspec.json.encode(data),
        status=status,
        content_type="application/json",
        headers=headers,
    )


class Receiver(StartStop):
    """A webhook receiver on ``host:port`` (loopback, a free port by default).

    ``async with Receiver(secret="whsec_…", db=path) as r:`` then POST signed bodies to ``r.url``;
    read ``r.stats()``, ``await r.events()``, change faults with ``r.set_faults(fail_rate=0.5)``.
    With neither ``db`` nor ``dsn`` it stores in SQLite ``:memory:``. ``outages`` are
    ``(start, end)`` windows in seconds after :meth:`start`.
    """

    def __init__(
        self,
        secret: str | bytes,
        *,
        db: str | Path | None = None,
        dsn: str | None = None,
        host: str = "127.0.0.1",
        port: int = 0,
        path: str = "/webhook",
        tolerance: float = DEFAULT_TOLERANCE,
        faults: Faults | None = None,
        outages: Sequence[tuple[float, float]] = (),
        seed: int = 1,
        clock: Clock | None = None,
    ) -> None:
        if isinstance(secret, str):
            logs.register_secret(secret.strip())
            self._key = parse_secret(secret)
        else:
            self._key = secret
        if not self._key:
            raise ValueError("the webhook secret is empty")
        if db is not None and dsn is not None:
            raise ValueError("give db or dsn, not both")
        if not path.startswith("/"):
            raise ValueError("path must start with '/'")
        if tolerance <= 0:
            raise ValueError("tolerance must be > 0 seconds")
        for start, end in outages:
            if not 0 <= start < end:
                raise ValueError("an outage is START:END seconds with 0 <= START < END")
        self.faults = faults or Faults()
        self.faults.check()
        self.store: Store = PostgresStore(dsn) if dsn is not None else SqliteStore(db or ":memory:")
        self.storage = "postgresql" if dsn is not None else str(db or ":memory:")
        self.host = host
        self.port = port
        self.path = path
        self.tolerance = tolerance
        self.clock = clock or SystemClock()
        self._relative_outages = list(outages)
        self._outages: list[tuple[float, float]] = []
        self._random = random.Random(seed)
        self._counters = Counters()
        self._stored = asyncio.Condition()
        self._runner: web.AppRunner | None = None
        self.app = self._build_app()

    def _build_app(self) -> web.Application:
        app = web.Application(client_max_size=MAX_BODY)
        app.router.add_post(self.path, self._webhook)
        app.router.add_get("/events", self._events)
        app.router.add_get("/stats", self._stats)
        app.router.add_get("/receiver/faults", self._get_faults)
        app.router.add_post("/receiver/faults", self._post_faults)
        return app

    # -- lifecycle ------------------------------------------------------------------------------

    @property
    def base_url(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def url(self) -> str:
        """Where to POST deliveries."""
        return self.base_url + self.path

    async def start(self) -> None:
        await self.store.open()
        try:
            self._runner = web.AppRunner(
                self.app, handle_signals=False, shutdown_timeout=1.0, access_log=None
            )
            await self._runner.setup()
            site = web.TCPSite(self._runner, self.host, self.port)
            await site.start()
        except BaseException:
            await self.stop()
            raise
        self.port = int(self._runner.addresses[0][1])
        origin = self.clock.monotonic()
        self._outages = [(origin + start, origin + end) for start, end in self._relative_outages]

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
        await self.store.close()

    # -- inspection -----------------------------------------------------------------------------

    def stats(self) -> dict[str, Any]:
        """Counters since start: requests, events stored, duplicates, rejections, faults."""
        c = self._counters
        return {
            "requests": c.requests,
            "accepted": c.accepted,
            "events": c.events,
            "duplicates": c.duplicates,
            "rejected_signatures": c.rejected_signatures,
            "rejected_by_reason": dict(c.rejected_by_reason),
            "bad_requests": c.bad_requests,
            "injected_failures": c.injected_failures,
            "injected_by_cause": dict(c.injected_by_cause),
            "delayed": c.delayed,
            "storage_errors": c.storage_errors,
            "by_event_type": dict(c.by_event_type),
        }

    async def events(self, after: int = 0, limit: int = 1_000) -> list[tuple[int, str]]:
        """Stored events after position ``after``: ``(position, body JSON)`` in arrival order."""
        return await self.store.read(after, limit)

    async def wait_events(self, count: int) -> None:
        """Wait until ``count`` events have been stored since start; bound it with a timeout."""
        async with self._stored:
            await self._stored.wait_for(lambda: self._counters.events >= count)

    # -- faults ---------------------------------------------------------------------------------

    def set_faults(self, **changes: Any) -> dict[str, Any]:
        """Change faults now (the fields of :class:`FaultChange`); ValueError if one is wrong.

        ``outage_for_seconds=N`` fails every request for the next N seconds (0 ends any outage).
        """
        try:
            change = msgspec.convert(changes, FaultChange)
        except msgspec.ValidationError as exc:
            raise ValueError(str(exc)) from None
        updates = {
            name: value
            for name in ("fail_rate", "latency", "status", "retry_after")
            if (value := getattr(change, name)) is not msgspec.UNSET
        }
        faults = msgspec.structs.replace(self.faults, **updates)
        faults.check()
        outage = change.outage_for_seconds
        if outage is not msgspec.UNSET:
            if outage < 0:
                raise ValueError("outage_for_seconds must be >= 0")
            now = self.clock.monotonic()
            self._outages = [(now, now + outage)] if outage > 0 else []
        self.faults = faults
        return self.fault_status()

    def fault_status(self) -> dict[str, Any]:
        now = self.clock.monotonic()
        ends = [end for start, end in self._outages if start <= now < end]
        remaining = max(ends, default=now) - now
        return {**msgspec.structs.asdict(self.faults), "outage_remaining": remaining}

    def _injected_failure(self) -> str | None:
        now = self.clock.monotonic()
        if any(start <= now < end for start, end in self._outages):
            return "outage"
        if self.faults.fail_rate > 0 and self._random.random() < self.faults.fail_rate:
            return "fail_rate"
        return None

    # -- routes ---------------------------------------------------------------------------------

    async def _webhook(self, request: web.Request) -> web.Response:
        counters = self._counters
        counters.requests += 1
        faults = self.faults
        failure = self._injected_failure()  # decided on arrival, so the draw order is arrivals
        if faults.latency > 0:
            counters.delayed += 1
            await asyncio.sleep(faults.latency)
        if failure is not None:
            counters.injected_failures += 1
            counters.injected_by_cause[failure] += 1
            headers = None
            if faults.retry_after is not None:
                headers = {"Retry-After": str(faults.retry_after)}
            return _json({"error": "injected", "cause": failure}, faults.status, headers)

        body = await request.read()
        try:
            verify(self._key, request.headers, body, self.clock.time(), self.tolerance)
        except WebhookVerificationError as exc:
            counters.rejected_signatures += 1
            counters.rejected_by_reason[exc.code] += 1
            return _json({"error": "unauthorized", "reason": exc.code, "detail": str(exc)}, 401)
        try:
            rows = parse_body(body, format_ms(int(self.clock.time() * 1000)))
        except BadBody as exc:
            counters.bad_requests += 1
            return _json({"error": "bad_request", "detail": str(exc)}, 400)

        unique = dict(zip(map(_EVENT_ID, rows), rows, strict=True))
        if len(unique) != len(rows):  # repeats in the body: keep each one's first copy, in order
            unique = {}
            for row in rows:
                unique.setdefault(row.event_id, row)
        try:
            inserted = await self.store.insert(list(unique.values()))
        except Exception:
            counters.storage_errors += 1
            log.exception("storing %d events failed", len(unique))
            return _json({"error": "storage"}, 500)
        kinds = map(
            _EVENT_TYPE,
            unique.values()
            if len(inserted) == len(unique)
            else (row for row in unique.values() if row.event_id in inserted),
        )
        counted = Counter(kinds)  # counted in C
        if None in counted:
            counted[""] += counted.pop(None)  # no type: counted as ""
        counters.by_event_type.update(counted)
        duplicates = len(rows) - len(inserted)
        counters.accepted += 1
        counters.events += len(inserted)
        counters.duplicates += duplicates
        async with self._stored:
            self._stored.notify_all()
        return _json({"received": len(inserted), "duplicates": duplicates})

    async def _events(self, request: web.Request) -> web.Response:
        try:
            after = int(request.query.get("after", "0"))
            limit = int(request.query.get("limit", "1000"))
        except ValueError:
            return _json({"error": "bad_request", "detail": "after and limit are integers"}, 400)
        if after < 0 or not 1 <= limit <= MAX_PAGE:
            detail = f"after must be >= 0 and limit between 1 and {MAX_PAGE}"
            return _json({"error": "bad_request", "detail": detail}, 400)
        stored = await self.store.read(after, limit)
        next_after = stored[-1][0] if stored else after
        return web.Response(
            body="".join(body + "\n" for _, body in stored).encode(),
            content_type="application/x-ndjson",
            headers={"X-Next-After": str(next_after)},
        )

    async def _stats(self, request: web.Request) -> web.Response:
        return _json(self.stats())

    async def _get_faults(self, request: web.Request) -> web.Response:
        return _json(self.fault_status())

    async def _post_faults(self, request: web.Request) -> web.Response:
        try:
            changes = msgspec.json.decode(await request.read(), type=dict[str, Any])
            return _json(self.set_faults(**changes))
        except (msgspec.DecodeError, ValueError) as exc:
            return _json({"error": "bad_request", "detail": str(exc)}, 400)
