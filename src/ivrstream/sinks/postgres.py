"""Store events in PostgreSQL: each event once in ``ivr_events``, and each interaction's current
state in ``ivr_interactions``.

Rules this module keeps:

- Idempotent on the event id (the primary key of ``ivr_events``): a re-delivered event is counted
  in ``Outcome.ok(duplicates=n)`` and changes nothing, not even ``ivr_interactions``.
- One transaction per batch: the events (COPY into a session temp table, then
  ``INSERT … SELECT … ON CONFLICT DO NOTHING RETURNING``) and the interaction states they change
  commit together or not at all.
- Never raises for a delivery problem; :func:`verdict` alone decides. A lost, refused or timed-out
  connection, a server shutting down or out of connections: ``retry``, and the connection is
  dropped so the next delivery reconnects. A serialization failure or deadlock: ``retry`` on the
  same connection. Content no retry can fix (not JSON, not a canonical event, invalid for
  ``jsonb``, out of range — SQLSTATE classes 22 and 23): ``reject``, so the dispatcher isolates
  the poison event. Anything else from the server: ``retry`` on a new connection.
- Lazy: :meth:`PostgresSink.start` connects if it can and otherwise only logs; every new
  connection first brings the schema up to date, idempotently, under an advisory lock, recorded
  as the single row of ``ivrstream_schema(version)``.
- Table names are not qualified, so the connection's ``search_path`` decides where they live (the
  DSN's ``options=-csearch_path=…`` or the server's default) — unless ``schema_name`` is not
  ``public``: then that schema is created when missing and becomes the search_path.
- One connection; deliveries from parallel lanes take turns (a batch is one short transaction).
- The DSN's password is registered with the log redactor the moment the DSN is read, and every
  error message is scrubbed. asyncpg is imported only here (``pip install ivrstream[postgres]``).

Interaction state (:func:`apply`, pure): events of a conversation apply in batch order. An event
at least as new as the stored state (by ``event_time``) overwrites the fields it carries; an
older one only fills fields still empty (and adds missing outcome/attribute keys), so a late
event never overwrites newer state. What an event carries depends on its ``data``:

- an interaction snapshot (Event Streams: ``data`` has ``state`` or ``routing``): state,
  flow.id → flow_id, flow.name → flow_name, menuPath → menu_path, ani, dnis, queue.id → queue_id;
  ``outcome`` and ``attributes`` merge key by key;
- a detail event (Notifications): ani, dnis, flowId → flow_id, queueId → queue_id, attributes
  (merged), plus by ``event_type``:

  ==============  =======================================  ===================================
  event_type      state                                    outcome keys
  ==============  =======================================  ===================================
  customer.start  offering
  flow.start      ivr
  flow.outcome                                             flowOutcomeValue
  flow.end        transferring when exitReason = TRANSFER  exitReason, transferType
  acd.start       queued
  acd.end         connected (ANSWERED) or abandoned        acdOutcome
  customer.end    disconnected                             disconnectType
  ==============  =======================================  ===================================

  (the same states the emulator's snapshots show, so both sources converge on the same row).
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

import msgspec

from ivrstream.config import PostgresSettings
from ivrstream.errors import ConfigError
from ivrstream.logs import REDACTOR, register_secret
from ivrstream.sinks.base import Delivery, Outcome

log = logging.getLogger(__name__)

# -- Schema --------------------------------------------------------------------------------------

MIGRATIONS: tuple[str, ...] = (
    """
    CREATE TABLE ivr_events (
        event_id        text PRIMARY KEY,
        source          text NOT NULL,
        event_type      text NOT NULL,
        conversation_id text NOT NULL,
        sequence_id     bigint,
        event_time      timestamptz NOT NULL,
        received_at     timestamptz NOT NULL,
        recovered       boolean NOT NULL,
        body            jsonb NOT NULL,
        delivered_at    timestamptz NOT NULL DEFAULT now()
    );
    CREATE INDEX ivr_events_conversation_time ON ivr_events (conversation_id, event_time);
    CREATE TABLE ivr_interactions (
        conversation_id text PRIMARY KEY,
        state           text,
        flow_id         text,
        flow_name       text,
        menu_path       text[],
        last_event_type text NOT NULL,
        last_event_time timestamptz NOT NULL,
        outcome         jsonb NOT NULL DEFAULT '{}',
        attributes      jsonb NOT NULL DEFAULT '{}',
        ani             text,
        dnis            text,
        queue_id        text,
        updated_at      timestamptz NOT NULL DEFAULT now()
    );
    """,
)
SCHEMA_VERSION = len(MIGRATIONS)
_SCHEMA_LOCK = 0x6976_7273_7472_6D  # pg_advisory_xact_lock key: "ivrstrm"

EVENT_COLUMNS = (
    "event_id",
    "source",
    "event_type",
    "conversation_id",
    "sequence_id",
    "event_time",
    "received_at",
    "recovered",
    "body",
)
INTERACTION_COLUMNS = (
    "conversation_id",
    "state",
    "flow_id",
    "flow_name",
    "menu_path",
    "last_event_type",
    "last_event_time",
    "outcome",
    "attributes",
    "ani",
    "dnis",
    "queue_id",
)
_EVENTS = ", ".join(EVENT_COLUMNS)
_INTERACTIONS = ", ".join(INTERACTION_COLUMNS)

# per connection: staging tables emptied at every commit
_STAGING = """
CREATE TEMP TABLE IF NOT EXISTS ivr_events_in (
    event_id text, source text, event_type text, conversation_id text, sequence_id bigint,
    event_time timestamptz, received_at timestamptz, recovered boolean, body jsonb
) ON COMMIT DELETE ROWS;
CREATE TEMP TABLE IF NOT EXISTS ivr_interactions_in (
    conversation_id text, state text, flow_id text, flow_name text, menu_path text[],
    last_event_type text, last_event_time timestamptz, outcome jsonb, attributes jsonb,
    ani text, dnis text, queue_id text
) ON COMMIT DELETE ROWS;
"""
_INSERT_EVENTS = f"""
INSERT INTO ivr_events ({_EVENTS}) SELECT {_EVENTS} FROM ivr_events_in
ON CONFLICT (event_id) DO NOTHING RETURNING event_id
"""  # noqa: S608 - column names are constants
_SELECT_INTERACTIONS = f"""
SELECT {_INTERACTIONS} FROM ivr_interactions WHERE conversation_id = ANY($1::text[])
ORDER BY conversation_id FOR UPDATE
"""  # noqa: S608
_UPSERT_INTERACTIONS = (
    f"INSERT INTO ivr_interactions AS t ({_INTERACTIONS}) "  # noqa: S608
    f"SELECT {_INTERACTIONS} FROM ivr_interactions_in "
    "ON CONFLICT (conversation_id) DO UPDATE SET "
    + ", ".join(f"{c} = excluded.{c}" for c in INTERACTION_COLUMNS[1:])
    + ", updated_at = now() WHERE t.last_event_time <= excluded.last_event_time"
)

_INT64 = 1 << 63

# -- Interaction state (pure) --------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Change:
    """One stored event, as the interaction state sees it."""

    event_id: str
    conversation_id: str
    event_type: str
    event_time: datetime
    data: dict[str, Any]


@dataclass(frozen=True, slots=True)
class Interaction:
    """A row of ``ivr_interactions``."""

    conversation_id: str
    last_event_type: str
    last_event_time: datetime
    state: str | None = None
    flow_id: str | None = None
    flow_name: str | None = None
    menu_path: list[str] | None = None
    ani: str | None = None
    dnis: str | None = None
    queue_id: str | None = None
    outcome: dict[str, Any] = field(default_factory=dict)
    attributes: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Patch:
    """What one event says about its interaction."""

    fields: dict[str, Any]  # Interaction fields among state … queue_id
    outcome: dict[str, Any]
    attributes: dict[str, Any]


_DETAIL_STATE = {
    "customer.start": "offering",
    "flow.start": "ivr",
    "acd.start": "queued",
    "customer.end": "disconnected",
}
_DETAIL_OUTCOME = {
    "flow.outcome": ("flowOutcomeValue",),
    "flow.end": ("exitReason", "transferType"),
    "acd.end": ("acdOutcome",),
    "customer.end": ("disconnectType",),
}


def _mapping(value: object) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _take(fields: dict[str, Any], name: str, value: object) -> None:
    if isinstance(value, str) and value:
        fields[name] = value


def patch_of(event_type: str, data: dict[str, Any]) -> Patch:
    """The fields ``data`` carries, read as a snapshot or as a detail event (module docstring)."""
    fields: dict[str, Any] = {}
    _take(fields, "ani", data.get("ani"))
    _take(fields, "dnis", data.get("dnis"))
    attributes = _mapping(data.get("attributes"))
    if "state" in data or "routing" in data:  # an interaction snapshot
        flow = _mapping(data.get("flow"))
        _take(fields, "state", data.get("state"))
        _take(fields, "flow_id", flow.get("id"))
        _take(fields, "flow_name", flow.get("name"))
        _take(fields, "queue_id", _mapping(data.get("queue")).get("id"))
        menu = data.get("menuPath")
        if isinstance(menu, list) and all(isinstance(step, str) for step in menu):
            fields["menu_path"] = list(menu)
        return Patch(fields, _mapping(data.get("outcome")), attributes)
    _take(fields, "flow_id", data.get("flowId"))
    _take(fields, "queue_id", data.get("queueId"))
    state = _DETAIL_STATE.get(event_type)
    if event_type == "flow.end" and data.get("exitReason") == "TRANSFER":
        state = "transferring"
    elif event_type == "acd.end" and isinstance(data.get("acdOutcome"), str):
        state = "connected" if data["acdOutcome"] == "ANSWERED" else "abandoned"
    if state is not None:
        fields["state"] = state
    outcome = {key: data[key] for key in _DETAIL_OUTCOME.get(event_type, ()) if key in data}
    return Patch(fields, outcome, attributes)


def apply(current: Interaction | None, change: Change) -> Interaction:
    """``current`` after ``change``: overwritten if the event is at least as new, else only
    filled in where empty."""
    patch = patch_of(change.event_type, change.data)
    if current is None:
        current = Interaction(change.conversation_id, change.event_type, change.event_time)
    if current.last_event_time <= change.event_time:
        return replace(
            current,
            last_event_type=change.event_type,
            last_event_time=change.event_time,
            outcome={**current.outcome, **patch.outcome},
            attributes={**current.attributes, **patch.attributes},
            **patch.fields,
        )
    return replace(
        current,
        outcome={**patch.outcome, **current.outcome},
        attributes={**patch.attributes, **current.attributes},
        **{name: value for name, value in patch.fields.items() if getattr(current, name) is None},
    )


# -- Reading a batch -----------------------------------------------------------------------------


class _Event(msgspec.Struct):
    """The fields of a canonical event this sink reads (the body is stored whole)."""

    source: str
    event_type: str
    conversation_id: str
    event_time: str
    received_at: str
    sequence_id: int | None = None
    recovered: bool = False
    data: dict[str, Any] = msgspec.field(default_factory=dict)


_decode_event = msgspec.json.Decoder(_Event).decode


class Poison(ValueError):
    """An event no database will take as it is."""


def _timestamp(text: str) -> datetime:
    moment = datetime.fromisoformat(text)
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


def prepare(batch: list[Delivery]) -> tuple[list[tuple[Any, ...]], list[Change]]:
    """The ``ivr_events`` rows and interaction changes of ``batch``; :class:`Poison` names the
    first event that cannot be stored."""
    rows: list[tuple[Any, ...]] = []
    changes: list[Change] = []
    for d in batch:
        try:
            e = _decode_event(d.body)
            event_time = _timestamp(e.event_time)
            received_at = _timestamp(e.received_at)
            body = d.body.decode()
        except (msgspec.DecodeError, ValueError) as exc:
            raise Poison(f"event {d.event_id} (position {d.pos}): {exc}") from None
        if e.sequence_id is not None and not -_INT64 <= e.sequence_id < _INT64:
            raise Poison(f"event {d.event_id} (position {d.pos}): sequence_id out of range")
        rows.append(
            (
                d.event_id,
                e.source,
                e.event_type,
                e.conversation_id,
                e.sequence_id,
                event_time,
                received_at,
                e.recovered,
                body,
            )
        )
        changes.append(Change(d.event_id, e.conversation_id, e.event_type, event_time, e.data))
    return rows, changes


# -- Deciding what a failure means ---------------------------------------------------------------


def describe(exc: BaseException) -> str:
    """``exc`` as one line fit for logs and outcomes (secrets scrubbed)."""
    state = getattr(exc, "sqlstate", None)
    text = " ".join(str(exc).split()) or (
        "timed out" if isinstance(exc, TimeoutError) else "no detail"
    )
    prefix = f"{type(exc).__name__} [{state}]" if state else type(exc).__name__
    return REDACTOR.scrub(f"{prefix}: {text}")


def verdict(exc: Exception, driver: Any) -> tuple[Outcome, bool] | None:
    """What ``exc`` (raised while delivering) means: the outcome, and whether to drop the
    connection. ``None``: not a delivery problem (a bug) — let it raise."""
    error = describe(exc)
    if isinstance(exc, Poison | OverflowError | UnicodeError):
        return Outcome.reject(error), False
    if isinstance(exc, TimeoutError | OSError | SchemaTooNew):
        return Outcome.retry(error), True
    if isinstance(exc, driver.PostgresError):
        kind = (exc.sqlstate or "")[:2]
        if kind in ("22", "23"):  # data exception, integrity constraint violation
            return Outcome.reject(error), False
        return Outcome.retry(error), kind != "40"  # 40: rolled back, the connection is fine
    if isinstance(exc, driver.InterfaceError):
        if isinstance(exc, ValueError) and not isinstance(exc, driver.ClientConfigurationError):
            return Outcome.reject(error), False  # a value the driver cannot encode
        return Outcome.retry(error), True  # closed connection, operation in progress, …
    if isinstance(exc, driver.InternalClientError):  # e.g. an outdated statement cache
        return Outcome.retry(error), True
    return None


class SchemaTooNew(Exception):
    """The database was migrated by a newer ivrstream."""


# -- The sink ------------------------------------------------------------------------------------


def _load_driver() -> Any:
    try:
        import asyncpg  # the optional driver: imported only by the adapter that needs it
    except ImportError:
        raise ConfigError(
            "sinks.postgres", "install ivrstream[postgres] (the asyncpg driver) to use this sink"
        ) from None
    return asyncpg


def _checked_dsn(dsn: str | None) -> str:
    """``dsn`` once its password (if any) is registered as a secret."""
    if not dsn:
        raise ConfigError(
            "sinks.postgres.dsn", "set IVRSTREAM_POSTGRES_DSN (or sinks.postgres.dsn)"
        )
    try:
        parts = urlsplit(dsn)
        passwords = [parts.password, *parse_qs(parts.query).get("password", [])]
    except ValueError:
        raise ConfigError("sinks.postgres.dsn", "is not a valid postgresql:// URL") from None
    for password in passwords:
        if password:
            register_secret(password)
            register_secret(unquote(password))
    if parts.scheme not in ("postgresql", "postgres"):
        raise ConfigError("sinks.postgres.dsn", "must be a postgresql:// URL")
    return dsn


def _quote(identifier: str) -> str:
    return '"' + identifier.replace('"', '""') + '"'


def _interaction(row: Any) -> Interaction:
    return Interaction(
        conversation_id=row["conversation_id"],
        last_event_type=row["last_event_type"],
        last_event_time=row["last_event_time"],
        state=row["state"],
        flow_id=row["flow_id"],
        flow_name=row["flow_name"],
        menu_path=row["menu_path"],
        ani=row["ani"],
        dnis=row["dnis"],
        queue_id=row["queue_id"],
        outcome=_mapping(msgspec.json.decode(row["outcome"])),
        attributes=_mapping(msgspec.json.decode(row["attributes"])),
    )


def _row(s: Interaction) -> tuple[Any, ...]:
    return (
        s.conversation_id,
        s.state,
        s.flow_id,
        s.flow_name,
        s.menu_path,
        s.last_event_type,
        s.last_event_time,
        msgspec.json.encode(s.outcome).decode(),
        msgspec.json.encode(s.attributes).decode(),
        s.ani,
        s.dnis,
        s.queue_id,
    )


class PostgresSink:
    """Events into ``ivr_events`` (once each), interaction states into ``ivr_interactions``.

    ``timeout`` bounds each delivery (connecting included); past it the answer is ``retry``.
    """

    def __init__(
        self, settings: PostgresSettings, name: str = "postgres", *, timeout: float = 30.0
    ) -> None:
        self.name = name
        self.settings = settings
        self.timeout = timeout
        self._dsn = _checked_dsn(settings.dsn)
        self._driver: Any = None
        self._conn: Any = None
        self._lock = asyncio.Lock()
        self._closed = False
        self._ever_connected = False
        self.delivered = 0
        self.duplicates = 0
        self.batches = 0
        self.retries = 0
        self.rejects = 0
        self.reconnects = 0
        self.last_error: str | None = None

    async def start(self) -> None:
        """Load the driver and connect (creating the schema) if the database is there; if it is
        not, deliveries answer ``retry`` until it is."""
        self._driver = _load_driver()
        self._closed = False
        async with self._lock:
            try:
                async with asyncio.timeout(self.timeout):
                    await self._connection()
            except Exception as exc:
                if self._judge(exc) is None:
                    raise
                log.warning("%s: cannot connect yet (%s); will retry", self.name, self.last_error)

    async def deliver(self, batch: list[Delivery]) -> Outcome:
        if self._driver is None:
            raise RuntimeError("PostgresSink.start() was not called")
        if not batch:
            return Outcome.ok()
        try:
            rows, changes = prepare(batch)
        except Poison as exc:
            return self._judge(exc) or Outcome.reject(str(exc))
        async with self._lock:
            if self._closed:
                return Outcome.retry("the sink is closed")
            try:
                async with asyncio.timeout(self.timeout):
                    connection = await self._connection()
                    stored = await self._write(connection, rows, changes)
            except asyncio.CancelledError:
                self._drop()  # mid-transaction: its state is unknown
                raise
            except Exception as exc:
                outcome = self._judge(exc)
                if outcome is None:
                    raise
                return outcome
        duplicates = len(batch) - stored
        self.delivered += stored
        self.duplicates += duplicates
        self.batches += 1
        return Outcome.ok(duplicates=duplicates)

    async def close(self) -> None:
        self._closed = True
        connection, self._conn = self._conn, None
        if connection is not None:
            try:
                await connection.close(timeout=min(self.timeout, 5.0))
            except Exception:  # closing is best effort: the server may be gone
                connection.terminate()

    def statistics(self) -> dict[str, Any]:
        return {
            "delivered": self.delivered,
            "duplicates": self.duplicates,
            "batches": self.batches,
            "retries": self.retries,
            "rejects": self.rejects,
            "reconnects": self.reconnects,
            "connected": self._conn is not None and not self._conn.is_closed(),
            "last_error": self.last_error,
        }

    # -- internals -------------------------------------------------------------------------------

    def _judge(self, exc: Exception) -> Outcome | None:
        judged = verdict(exc, self._driver)
        if judged is None:
            return None
        outcome, drop = judged
        self.last_error = outcome.error
        if outcome.verdict == "reject":
            self.rejects += 1
        else:
            self.retries += 1
        if drop and self._conn is not None:
            log.warning("%s: connection dropped: %s", self.name, outcome.error)
            self._drop()
        return outcome

    def _drop(self) -> None:
        connection, self._conn = self._conn, None
        if connection is not None:
            connection.terminate()

    async def _connection(self) -> Any:
        if self._conn is not None:
            if not self._conn.is_closed():
                return self._conn
            self._drop()
        connection = await self._driver.connect(self._dsn, timeout=self.timeout)
        try:
            await self._prepare_session(connection)
        except BaseException:
            connection.terminate()
            raise
        if self._ever_connected:
            self.reconnects += 1
            log.info("%s: reconnected", self.name)
        self._ever_connected = True
        self._conn = connection
        return connection

    async def _prepare_session(self, connection: Any) -> None:
        """Search path, schema (created or migrated), staging tables."""
        schema = self.settings.schema_name
        if schema != "public":
            exists = await connection.fetchval(
                "SELECT EXISTS (SELECT 1 FROM pg_namespace WHERE nspname = $1)", schema
            )
            if not exists:
                await connection.execute(f"CREATE SCHEMA IF NOT EXISTS {_quote(schema)}")
            await connection.execute(f"SET search_path TO {_quote(schema)}")
        async with connection.transaction():
            await connection.execute("SELECT pg_advisory_xact_lock($1)", _SCHEMA_LOCK)
            await connection.execute(
                "CREATE TABLE IF NOT EXISTS ivrstream_schema (version integer NOT NULL)"
            )
            version = await connection.fetchval("SELECT max(version) FROM ivrstream_schema")
            if version is not None and version > SCHEMA_VERSION:
                raise SchemaTooNew(
                    f"the database schema is version {version}; this ivrstream knows up to"
                    f" {SCHEMA_VERSION}: upgrade ivrstream"
                )
            for script in MIGRATIONS[version or 0 :]:
                await connection.execute(script)
            if version is None:
                await connection.execute(
                    "INSERT INTO ivrstream_schema (version) VALUES ($1)", SCHEMA_VERSION
                )
            elif version < SCHEMA_VERSION:
                await connection.execute("UPDATE ivrstream_schema SET version = $1", SCHEMA_VERSION)
        await connection.execute(_STAGING)

    async def _write(
        self, connection: Any, rows: list[tuple[Any, ...]], changes: list[Change]
    ) -> int:
        """Store one batch in one transaction; returns how many events were new."""
        async with connection.transaction():
            await connection.copy_records_to_table(
                "ivr_events_in", records=rows, columns=EVENT_COLUMNS
            )
            inserted = {record[0] for record in await connection.fetch(_INSERT_EVENTS)}
            stored = len(inserted)
            fresh: list[Change] = []
            for change in changes:
                if change.event_id in inserted:
                    inserted.discard(change.event_id)  # a batch may hold an event twice
                    fresh.append(change)
            await self._update_interactions(connection, fresh)
        return stored

    async def _update_interactions(self, connection: Any, fresh: list[Change]) -> None:
        ids = sorted({c.conversation_id for c in fresh if c.conversation_id})
        if not ids:
            return
        records = await connection.fetch(_SELECT_INTERACTIONS, ids)
        before = {record["conversation_id"]: _interaction(record) for record in records}
        after = dict(before)
        for change in fresh:
            if change.conversation_id:
                after[change.conversation_id] = apply(after.get(change.conversation_id), change)
        changed = [_row(after[i]) for i in ids if after[i] != before.get(i)]
        if changed:
            await connection.copy_records_to_table(
                "ivr_interactions_in", records=changed, columns=INTERACTION_COLUMNS
            )
            await connection.execute(_UPSERT_INTERACTIONS)
