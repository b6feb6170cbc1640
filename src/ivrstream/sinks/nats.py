"""Publish events to NATS JetStream: one message per event, stored once by the server.

Rules this module keeps:

- Idempotent on the event id: every message carries ``Nats-Msg-Id: <event id>``, so JetStream
  stores one copy per id within the stream's duplicate window (:data:`DUPLICATE_WINDOW` when we
  create the stream). A retried batch, or the same event published by the other instance of a
  hot-standby pair, is acknowledged as ``duplicate``: that counts as delivered.
- Subjects (see :func:`subject_for`) are ``<subject_prefix>.<event_type>.<conversation_id>``,
  each token sanitized (``.``, ``*``, ``>``, whitespace and control characters become ``_``;
  an empty token is ``_``), so consumers filter without reading bodies::

      ivr.events.>                          everything
      ivr.events.flow_end.>                 every flow.end
      ivr.events.*.<conversationId>         one conversation, all of its events, in order

  The body is the canonical event JSON as the journal holds it (``Content-Type:
  application/json``); ``event_type`` inside it is exact, the subject token is not (``flow.end``
  becomes ``flow_end``).
- Order: a batch is published in its order on one connection, then the acks are awaited
  (pipelined, at most :data:`MAX_IN_FLIGHT` unacknowledged), so one conversation's events land
  in batch order. The one exception needs a server-side failure: if an ack in the middle of a
  batch fails while later ones succeed, the retry stores the failed event after its successors.
- Every ack is checked (:func:`judge_ack`): ``duplicate`` is success; a missing ack, a timeout,
  a lost connection, "no responders" or a 5xx is ``retry`` (publishing again is safe: the
  server de-duplicates on ``Nats-Msg-Id``); content the server refuses — bigger than the
  server's ``max_payload`` (checked before anything is sent, since the server would cut the
  connection) or than the stream's ``max_msg_size`` — is ``reject``, so the dispatcher isolates
  the event at fault. A stream that cannot take our subjects is ``gone``: no retry fixes it.
- The stream is ensured on the first successful connection and again after "no responders":
  created when missing (subjects ``<subject_prefix>.>``, file storage, duplicate window
  :data:`DUPLICATE_WINDOW`), left alone when it exists and captures our subjects, and named
  clearly when it exists but does not (``ConfigError`` from :meth:`NatsSink.start`, ``gone``
  from :meth:`NatsSink.deliver`).
- Lazy: :meth:`NatsSink.start` connects if it can; while NATS is down, deliveries answer
  ``retry`` quickly (a refused connection is not waited out). Once connected, nats-py
  reconnects by itself; publishing pauses (``retry``) until it has.
- nats-py is imported only here (``pip install 'ivrstream[nats]'``). Its ``publish_async`` is
  not used: in nats-py 2.16 an error reply (e.g. "message size exceeds maximum allowed")
  leaves that future pending forever, and a client-side ``MaxPayloadError`` leaks its
  in-flight slot. The pipeline below is the same idea (publish with a reply subject on one
  wildcard inbox subscription, then await the acks) with every reply judged.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import logging
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal
from urllib.parse import urlsplit

from ivrstream.config import NatsSettings
from ivrstream.errors import ConfigError
from ivrstream.logs import REDACTOR, register_secret
from ivrstream.sinks.base import Delivery, Outcome

if TYPE_CHECKING:
    from nats.aio.client import Client
    from nats.aio.msg import Msg
    from nats.js import JetStreamContext

log = logging.getLogger(__name__)

DUPLICATE_WINDOW = 120.0  # seconds; the de-duplication window of a stream we create (≥ 2 min)
MAX_IN_FLIGHT = 1_000  # messages of one batch published and not yet acknowledged
CONNECT_TIMEOUT = 5.0  # seconds to reach a server (a refused connection fails at once)
ACK_TIMEOUT = 5.0  # seconds to wait for acks (and for JetStream API calls)
RECONNECT_WAIT = 2.0  # seconds between nats-py's attempts to get a lost connection back
INSTALL_HINT = "install ivrstream[nats] (pip install 'ivrstream[nats]') to use the NATS sink"

# JetStream error codes (``err_code``) this module tells apart
STREAM_NAME_IN_USE = 10058  # add_stream: the name exists with another configuration
SUBJECTS_OVERLAP = 10065  # add_stream: another stream already captures these subjects
EXPECTED_STREAM_MISMATCH = 10060  # publish: the subject belongs to a stream not ours

AckKind = Literal["stored", "duplicate", "retry", "reject", "unrouted"]

# -- Subjects ------------------------------------------------------------------------------------

_TOKEN_UNSAFE = {ord(c): "_" for c in ".*> \t\r\n\v\f"}


def token(value: str) -> str:
    """``value`` as one subject token: dots, ``*``, ``>``, whitespace and other non-printable
    characters become ``_``; an empty value becomes ``_``."""
    cleaned = value.translate(_TOKEN_UNSAFE)
    if not cleaned.isprintable():
        cleaned = "".join(ch if ch.isprintable() else "_" for ch in cleaned)
    return cleaned or "_"


def subject_for(prefix: str, event_type: str, conversation_id: str) -> str:
    """``<prefix>.<event_type>.<conversation_id>``, e.g. ``ivr.events.flow_start.<uuid>``."""
    return f"{prefix}.{token(event_type)}.{token(conversation_id)}"


def covers(pattern: str, subject: str) -> bool:
    """Whether stream subject ``pattern`` captures every subject that ``subject`` (which may
    end in ``>``) matches: ``ivr.>`` and ``ivr.*.>`` cover ``ivr.events.>``; ``ivr.events.*``
    does not."""
    wanted = subject.split(".")
    for i, part in enumerate(pattern.split(".")):
        if part == ">":
            return i < len(wanted)
        if i >= len(wanted) or wanted[i] == ">":
            return False
        if part not in ("*", wanted[i]):
            return False
    return len(pattern.split(".")) == len(wanted)


# -- Acks ----------------------------------------------------------------------------------------


def judge_ack(status: str | None, data: bytes) -> tuple[AckKind, str]:
    """What one reply to a publish means: ``stored``, ``duplicate``, ``retry``, ``reject``
    (the content is refused) or ``unrouted`` (no stream took it: retry after checking the
    stream). ``status`` is the reply's ``Status`` header, if any."""
    if status == "503":
        return "unrouted", "no responders: JetStream is unavailable or the stream is gone"
    if status:
        return "retry", f"status {status} instead of an ack"
    try:
        reply = json.loads(data)
    except ValueError:
        return "retry", f"unreadable ack: {data[:80]!r}"
    if not isinstance(reply, dict):
        return "retry", f"unreadable ack: {data[:80]!r}"
    error = reply.get("error")
    if error is None:
        if "seq" not in reply:
            return "retry", f"ack without a sequence: {data[:80]!r}"
        return ("duplicate" if reply.get("duplicate") else "stored"), ""
    if not isinstance(error, dict):
        return "retry", f"unreadable error: {error!r}"
    code, err_code = error.get("code"), error.get("err_code")
    detail = f"JetStream error {code}/{err_code}: {error.get('description', '')}"
    if code == 404 or err_code == EXPECTED_STREAM_MISMATCH:
        return "unrouted", detail
    if code in (408, 429) or not isinstance(code, int) or code >= 500:
        return "retry", detail
    return "reject", detail


def header_size(headers: dict[str, str]) -> int:
    """Bytes the header block takes on the wire (it counts towards ``max_payload``)."""
    lines = sum(len(k.encode()) + len(v.encode()) + 4 for k, v in headers.items())
    return len(b"NATS/1.0\r\n") + lines + 2


# -- The sink ------------------------------------------------------------------------------------


class _Unavailable(Exception):
    """NATS or JetStream cannot be reached now: retry later."""


class _Misconfigured(Exception):
    """The stream exists but cannot take our subjects: no retry fixes that."""


def _describe(exc: BaseException) -> str:
    text = str(exc)
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def _load_driver(settings: NatsSettings) -> None:
    try:
        import nats  # noqa: F401
    except ImportError:
        raise ConfigError("sinks.nats", INSTALL_HINT) from None
    if settings.credentials_file is not None:
        try:
            import nkeys  # type: ignore[import-not-found, unused-ignore]  # noqa: F401
        except ImportError:
            raise ConfigError(
                "sinks.nats.credentials_file", "a credentials file needs: pip install nkeys"
            ) from None


def _without_credentials(server: str) -> str:
    parts = urlsplit(server if "://" in server else f"nats://{server}")
    host = parts.hostname or ""
    host = f"[{host}]" if ":" in host else host
    return f"{parts.scheme}://{host}" + (f":{parts.port}" if parts.port else "")


def _check(settings: NatsSettings) -> None:
    if not settings.servers:
        raise ConfigError("sinks.nats.servers", "list at least one, e.g. nats://127.0.0.1:4222")
    for server in settings.servers:
        parts = urlsplit(server if "://" in server else f"nats://{server}")
        register_secret(parts.password)
        if parts.username and not parts.password:
            register_secret(parts.username)  # nats://<token>@host
    stream = settings.stream
    if not stream or token(stream) != stream or any(c in stream for c in "/\\"):
        raise ConfigError(
            "sinks.nats.stream",
            f"{stream!r} is not a stream name (no dots, spaces, '*', '>', '/' or '\\')",
        )
    prefix = settings.subject_prefix
    if not prefix or any(not part or token(part) != part for part in prefix.split(".")):
        raise ConfigError(
            "sinks.nats.subject_prefix",
            f"{prefix!r} is not a subject prefix: dot-separated tokens, no wildcards or spaces",
        )
    if settings.credentials_file is not None and not Path(settings.credentials_file).is_file():
        raise ConfigError(
            "sinks.nats.credentials_file", f"no such file: {settings.credentials_file}"
        )


class _Link:
    """One connection: the client, its JetStream context and the acks it is waiting for."""

    def __init__(self, client: Client, inbox: str, api_timeout: float) -> None:
        self.client = client
        self.js: JetStreamContext = client.jetstream(timeout=api_timeout)
        self.inbox = inbox
        self.waiting: dict[str, asyncio.Future[tuple[AckKind, str]]] = {}
        self.stream_ready = False

    async def on_reply(self, msg: Msg) -> None:
        future = self.waiting.pop(msg.subject[len(self.inbox) + 1 :], None)
        if future is not None and not future.done():
            status = msg.headers.get("Status") if msg.headers else None
            future.set_result(judge_ack(status, msg.data))

    def fail_all(self, reason: str) -> None:
        waiting, self.waiting = self.waiting, {}
        for future in waiting.values():
            if not future.done():
                future.set_result(("retry", reason))


class NatsSink:
    """Publishes each event to JetStream with ``Nats-Msg-Id`` = its event id."""

    def __init__(
        self,
        settings: NatsSettings,
        name: str = "nats",
        *,
        connect_timeout: float = CONNECT_TIMEOUT,
        ack_timeout: float = ACK_TIMEOUT,
        reconnect_wait: float = RECONNECT_WAIT,
    ) -> None:
        _check(settings)
        self.name = name
        self.settings = settings
        self.stream = settings.stream
        self.where = ", ".join(_without_credentials(server) for server in settings.servers)
        self.prefix = settings.subject_prefix
        self.connect_timeout = connect_timeout
        self.ack_timeout = ack_timeout
        self.reconnect_wait = reconnect_wait
        self._started = False
        self._link: _Link | None = None
        self._lock = asyncio.Lock()
        self._tokens = itertools.count()
        self._ever_connected = False
        self.published = 0  # messages the stream stored
        self.duplicates = 0  # acks that said the stream already had the event
        self.batches = 0  # batches answered ``ok``
        self.retries = 0
        self.rejects = 0
        self.reconnects = 0
        self.last_error: str | None = None

    async def start(self) -> None:
        """Load nats-py and connect (ensuring the stream) if NATS is there; if it is not,
        deliveries answer ``retry`` until it is. Raises :class:`ConfigError` when nats-py is
        missing or the stream exists without our subjects."""
        _load_driver(self.settings)
        self._started = True
        try:
            await self._connected()
        except _Misconfigured as exc:
            raise ConfigError("sinks.nats.stream", str(exc)) from None
        except _Unavailable as exc:
            log.warning("%s: NATS is not there yet (%s); deliveries will retry", self.name, exc)

    async def deliver(self, batch: list[Delivery]) -> Outcome:
        if not self._started:
            raise RuntimeError("NatsSink.start() was not called")
        if not batch:
            return Outcome.ok()
        try:
            link = await self._connected()
        except _Misconfigured as exc:
            self.last_error = REDACTOR.scrub(str(exc))
            log.error("%s: %s", self.name, self.last_error)
            return Outcome.gone(self.last_error)
        except _Unavailable as exc:
            return self._retry(str(exc))
        return await self._publish(link, batch)

    async def close(self) -> None:
        self._started = False
        link, self._link = self._link, None
        if link is not None:
            link.fail_all("the sink was closed")
            with contextlib.suppress(Exception):
                await link.client.close()

    def statistics(self) -> dict[str, Any]:
        link = self._link
        return {
            "published": self.published,
            "duplicates": self.duplicates,
            "batches": self.batches,
            "retries": self.retries,
            "rejects": self.rejects,
            "reconnects": self.reconnects,
            "connected": link is not None and link.client.is_connected,
            "last_error": self.last_error,
        }

    # -- publishing ------------------------------------------------------------------------------

    async def _publish(self, link: _Link, batch: list[Delivery]) -> Outcome:
        import nats.errors

        messages: list[tuple[str, bytes, dict[str, str]]] = []
        too_big: list[str] = []
        limit = link.client.max_payload
        for delivery in batch:
            headers = {
                "Nats-Msg-Id": delivery.event_id,
                "Nats-Expected-Stream": self.stream,
                "Content-Type": "application/json",
            }
            if len(delivery.body) + header_size(headers) > limit:
                too_big.append(delivery.event_id)
            subject = subject_for(self.prefix, delivery.event_type, delivery.conversation_id)
            messages.append((subject, delivery.body, headers))
        if too_big:
            return self._reject(
                f"{len(too_big)} event(s) exceed the server's max_payload of {limit} bytes"
                f" (first: {too_big[0]})"
            )

        loop = asyncio.get_running_loop()
        tokens: list[str] = []
        acks: list[asyncio.Future[tuple[AckKind, str]]] = []
        stopped = ""
        try:
            for i, (subject, body, headers) in enumerate(messages):
                if i >= MAX_IN_FLIGHT:
                    oldest = acks[i - MAX_IN_FLIGHT]
                    if not oldest.done():
                        await asyncio.wait([oldest], timeout=self.ack_timeout)
                    if not oldest.done() or oldest.result()[0] in ("retry", "unrouted"):
                        stopped = "acks stopped coming"
                        break
                if not link.client.is_connected:
                    stopped = "the connection to NATS was lost"
                    break
                key = str(next(self._tokens))
                ack: asyncio.Future[tuple[AckKind, str]] = loop.create_future()
                link.waiting[key] = ack
                tokens.append(key)
                acks.append(ack)
                await link.client.publish(
                    subject, body, reply=f"{link.inbox}.{key}", headers=headers
                )
            pending = [ack for ack in acks if not ack.done()]
            if pending:
                await asyncio.wait(pending, timeout=self.ack_timeout)
        except (nats.errors.MaxPayloadError, nats.errors.BadSubjectError) as exc:
            return self._reject(_describe(exc))
        except (nats.errors.Error, OSError, TimeoutError) as exc:
            stopped = _describe(exc)
        finally:
            for key in tokens:
                link.waiting.pop(key, None)
        return self._judge(link, batch, acks, stopped)

    def _judge(
        self,
        link: _Link,
        batch: list[Delivery],
        acks: list[asyncio.Future[tuple[AckKind, str]]],
        stopped: str,
    ) -> Outcome:
        stored = duplicates = missing = 0
        rejected: list[str] = []
        unrouted = ""
        failed = ""
        for delivery, ack in zip(batch, acks, strict=False):
            if not ack.done():
                ack.cancel()
                missing += 1
                continue
            kind, detail = ack.result()
            if kind == "stored":
                stored += 1
            elif kind == "duplicate":
                duplicates += 1
            elif kind == "reject":
                rejected.append(f"{delivery.event_id}: {detail}")
            elif kind == "unrouted":
                unrouted = unrouted or detail
            else:
                failed = failed or detail
        self.published += stored
        self.duplicates += duplicates
        if rejected:
            return self._reject(f"{len(rejected)} event(s) refused, first {rejected[0]}")
        if unrouted:
            link.stream_ready = False  # check (or re-create) the stream before the next try
            return self._retry(f"stream {self.stream!r}: {unrouted}")
        unsent = len(batch) - len(acks)
        if stopped or failed or missing or unsent:
            reason = stopped or failed or f"no ack within {self.ack_timeout:g}s"
            return self._retry(f"{missing + unsent} of {len(batch)} events unconfirmed: {reason}")
        self.batches += 1
        return Outcome.ok(duplicates)

    def _retry(self, error: str) -> Outcome:
        error = REDACTOR.scrub(error)
        self.retries += 1
        self.last_error = error
        return Outcome.retry(error)

    def _reject(self, error: str) -> Outcome:
        error = REDACTOR.scrub(error)
        self.rejects += 1
        self.last_error = error
        return Outcome.reject(error)

    # -- connection and stream -------------------------------------------------------------------

    async def _connected(self) -> _Link:
        """The live connection, with the stream checked; raises :class:`_Unavailable` or
        :class:`_Misconfigured`."""
        async with self._lock:
            link = self._link
            if link is not None and link.client.is_closed:
                self._link = link = None
            if link is None:
                link = self._link = await self._connect()
            if not link.client.is_connected:
                raise _Unavailable(f"reconnecting to NATS ({self.last_error or 'disconnected'})")
            if not link.stream_ready:
                await self._ensure_stream(link)
                link.stream_ready = True
            return link

    async def _connect(self) -> _Link:
        from nats.aio.client import Client

        client = Client()
        servers = list(self.settings.servers)
        connecting = True
        failures = 0
        all_failed = asyncio.Event()
        links: list[_Link] = []  # the callbacks exist before the link does

        async def on_error(exc: Exception) -> None:
            nonlocal failures
            self.last_error = _describe(exc)
            if connecting:
                failures += 1
                if failures >= len(servers):  # every server refused once: do not wait it out
                    all_failed.set()
            else:
                log.warning("%s: NATS: %s", self.name, self.last_error)

        async def on_disconnected() -> None:
            if links:
                links[0].fail_all("the connection to NATS was lost")
            if not connecting and not client.is_closed:
                log.warning("%s: lost the connection to NATS; reconnecting", self.name)

        async def on_reconnected() -> None:
            self.reconnects += 1
            log.info("%s: reconnected to NATS", self.name)

        options: dict[str, Any] = {
            "servers": servers,
            "name": f"ivrstream {self.name}",
            "error_cb": on_error,
            "disconnected_cb": on_disconnected,
            "reconnected_cb": on_reconnected,
            "connect_timeout": self.connect_timeout,
            "reconnect_time_wait": self.reconnect_wait,
            "max_reconnect_attempts": -1,  # once connected, nats-py keeps trying
        }
        if self.settings.credentials_file is not None:
            options["user_credentials"] = self.settings.credentials_file
        connect = asyncio.ensure_future(client.connect(**options))
        gave_up = asyncio.ensure_future(all_failed.wait())
        try:
            await asyncio.wait(
                [connect, gave_up],
                timeout=self.connect_timeout,
                return_when=asyncio.FIRST_COMPLETED,
            )
        finally:
            connecting = False
            for task in (connect, gave_up):
                task.cancel()
            await asyncio.gather(connect, gave_up, return_exceptions=True)
            if connect.cancelled() or connect.exception() is not None:
                with contextlib.suppress(Exception):
                    await client.close()
        if connect.cancelled() or connect.exception() is not None:
            reason = "" if connect.cancelled() else _describe(connect.exception() or Exception())
            reason = self.last_error or reason or f"no answer in {self.connect_timeout:g}s"
            self.last_error = f"cannot connect to NATS at {self.where}: {reason}"
            raise _Unavailable(self.last_error)
        try:
            link = _Link(client, client.new_inbox(), self.ack_timeout)
            links.append(link)
            await client.subscribe(f"{link.inbox}.*", cb=link.on_reply)
        except Exception as exc:
            with contextlib.suppress(Exception):
                await client.close()
            raise _Unavailable(_describe(exc)) from None
        if self._ever_connected:
            self.reconnects += 1
        self._ever_connected = True
        log.info("%s: connected to NATS at %s", self.name, self.where)
        return link

    async def _ensure_stream(self, link: _Link) -> None:
        """Create the stream if missing; accept an existing one only if it takes our subjects."""
        import nats.errors
        from nats.js.api import StorageType, StreamConfig
        from nats.js.errors import BadRequestError, NotFoundError, ServiceUnavailableError

        wanted = f"{self.prefix}.>"
        js = link.js
        try:
            try:
                info = await js.stream_info(self.stream)
            except NotFoundError:
                config = StreamConfig(
                    name=self.stream,
                    description="IVR interaction events, published by ivrstream",
                    subjects=[wanted],
                    storage=StorageType.FILE,
                    duplicate_window=DUPLICATE_WINDOW,
                )
                try:
                    await js.add_stream(config)
                    log.info("%s: created stream %s for %s", self.name, self.stream, wanted)
                    return
                except BadRequestError as exc:
                    if exc.err_code == SUBJECTS_OVERLAP:
                        raise _Misconfigured(
                            f"cannot create stream {self.stream!r} for {wanted!r}: another"
                            " stream already captures those subjects; point sinks.nats.stream"
                            " at that stream or choose another subject_prefix"
                        ) from None
                    if exc.err_code != STREAM_NAME_IN_USE:
                        raise _Misconfigured(
                            f"cannot create stream {self.stream!r}: {exc.description}"
                        ) from None
                    info = await js.stream_info(self.stream)  # a peer created it just now
        except (nats.errors.Error, OSError, TimeoutError) as exc:
            if isinstance(exc, nats.errors.NoRespondersError | ServiceUnavailableError):
                reason = "JetStream did not answer (is JetStream enabled on the server?)"
            else:
                reason = _describe(exc)
            self.last_error = f"cannot check stream {self.stream!r}: {reason}"
            raise _Unavailable(self.last_error) from None
        subjects = info.config.subjects or []
        if not any(covers(pattern, wanted) for pattern in subjects):
            raise _Misconfigured(
                f"stream {self.stream!r} exists but does not capture {wanted!r} (its subjects:"
                f" {subjects or 'none'}); add {wanted!r} to the stream's subjects, or set"
                " sinks.nats.stream / subject_prefix to a stream that captures them"
            )
        window = info.config.duplicate_window
        if window is not None and window < DUPLICATE_WINDOW:
            log.warning(
                "%s: stream %s de-duplicates over %gs only (ivrstream creates %gs): copies"
                " published further apart than that are stored twice",
                self.name,
                self.stream,
                window,
                DUPLICATE_WINDOW,
            )
