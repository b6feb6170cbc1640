"""The server side of one emulated WebSocket: a send queue, frame faults and the ledger.

Both dialects use it. Event frames pass through :class:`~ivrstream.emulator.faults.FrameFaults`
(duplicate, reorder, malformed, drop-after, stall-after); control frames (acknowledgements,
heartbeats, pongs) skip the faults but not a stall: a stalled socket sends nothing at all.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from aiohttp import WSMsgType, web
from aiohttp.abc import AbstractStreamWriter

from ivrstream.emulator.faults import FaultState, FrameFaults, OutFrame
from ivrstream.emulator.ledger import Ledger


@dataclass(frozen=True)
class _Close:
    code: int
    reason: str


class EmulatedSocket:
    """Queue frames with :meth:`send_event` or :meth:`send_control`; :meth:`serve` sends them."""

    def __init__(
        self,
        conn_id: str,
        dialect: str,
        ws: web.WebSocketResponse,
        request: web.Request,
        faults: FaultState,
        ledger: Ledger,
        make_malformed: Callable[[str, int], OutFrame],
        queue_limit: int,
    ) -> None:
        self.conn_id = conn_id
        self.dialect = dialect
        self.ws = ws
        self.request = request
        self.ledger = ledger
        self.frame_faults = FrameFaults(faults, make_malformed)
        self.queue_limit = queue_limit
        self._queue: asyncio.Queue[tuple[OutFrame, bool] | _Close] = asyncio.Queue()
        self.stalled = False
        self.closed = asyncio.Event()
        self.frames_sent = 0
        self.close_code: int | None = None
        self._closing: tuple[int, str] | None = None
        self._reader: asyncio.Future[None] | None = None
        self.raw_writer: AbstractStreamWriter | None = None  # for fast mode's pre-framed writes
        ledger.record("connection", conn=conn_id, dialect=dialect, event="opened")

    # -- feeding ---------------------------------------------------------------------------------

    def send_event(self, frame: OutFrame) -> None:
        """Queue an event frame (subject to frame faults)."""
        self._put((frame, True))

    def send_control(self, frame: OutFrame) -> None:
        """Queue a frame that no fault touches (acknowledgement, heartbeat, pong)."""
        self._put((frame, False))

    def _put(self, item: tuple[OutFrame, bool]) -> None:
        if self.stalled or self.closed.is_set():
            return
        if self._queue.qsize() >= self.queue_limit:
            self.ledger.record("fault", fault="send_queue_overflow", conn=self.conn_id)
            self.request_close(1013, "client too slow: send queue overflow")
            return
        self._queue.put_nowait(item)

    def request_close(self, code: int, reason: str) -> None:
        """Close after the frames already queued (a stalled socket closes at once)."""
        if self.stalled:
            asyncio.get_running_loop().create_task(self.close_now(code, reason))
            return
        self._queue.put_nowait(_Close(code, reason))

    # -- faults that act at once -----------------------------------------------------------------

    def drop(self) -> None:
        """Abort the TCP connection without a close frame (the client sees 1006)."""
        if self.closed.is_set():
            return
        self.ledger.record("fault", fault="drop", conn=self.conn_id)
        self._abort()

    def _abort(self) -> None:
        transport = self.request.transport
        if transport is not None:
            transport.abort()
        self.mark_closed(1006, "dropped")

    def stall(self) -> None:
        """Go silent: nothing more is sent, heartbeats included; the socket stays open."""
        if self.stalled or self.closed.is_set():
            return
        self.stalled = True
        self.ledger.record("fault", fault="stall", conn=self.conn_id)
        while not self._queue.empty():
            self._queue.get_nowait()

    # -- sending ---------------------------------------------------------------------------------

    async def run_writer(self) -> None:
        """Send queued frames until the socket closes."""
        try:
            while not self.closed.is_set():
                queued = await self._queue.get()
                if isinstance(queued, _Close):
                    await self.close_now(queued.code, queued.reason)
                    return
                item, with_faults = queued
                if with_faults:
                    frames, then = self.frame_faults.plan(item)
                else:
                    frames, then = [item], None
                for frame in frames:
                    await self._write(frame)
                if then == "drop":
                    self.drop()
                    return
                if then == "stall":
                    self.stall()
                    await self.closed.wait()
                    return
        except (ConnectionError, RuntimeError):
            # the peer went away mid-write; the reader sees how (its close code, or none)
            return

    async def _write(self, frame: OutFrame) -> None:
        if self.stalled or self.closed.is_set():
            return
        opcode = WSMsgType.TEXT if frame.text else WSMsgType.BINARY
        await self.ws.send_frame(frame.payload, opcode)
        self.frames_sent += 1
        entry: dict[str, Any] = {"conn": self.conn_id, "dialect": self.dialect}
        if frame.seq is not None:
            entry["seq"] = frame.seq
        if frame.fact is not None:
            entry["fact"] = frame.fact
        if frame.topic is not None:
            entry["topic"] = frame.topic
        if frame.fault is not None:
            entry["fault"] = frame.fault
        self.ledger.record("sent", **entry)

    async def close_now(self, code: int, reason: str) -> None:
        """Send a close frame with ``code`` and wait for the client's answer."""
        if self.closed.is_set() or self._closing is not None:
            return
        self._closing = (code, reason)
        reader = self._reader
        if reader is not None and reader is not asyncio.current_task() and not reader.done():
            # with a reader still waiting, aiohttp would drop the transport instead of waiting
            # for the client's close frame; let ws.close() read the answer itself
            reader.cancel()
            await asyncio.gather(reader, return_exceptions=True)
        with contextlib.suppress(ConnectionError, RuntimeError):
            await self.ws.close(code=code, message=reason.encode()[:123])
        self.mark_closed(code, reason)

    def mark_closed(self, code: int, reason: str) -> None:
        if self.closed.is_set():
            return
        if self._closing is not None:  # we started the close: record our code, not the echo
            code, reason = self._closing
        self.close_code = code
        self.closed.set()
        self.ledger.record(
            "connection",
            conn=self.conn_id,
            dialect=self.dialect,
            event="closed",
            code=code,
            reason=reason,
        )

    async def run_reader(self, on_message: Callable[[Any], Any] | None = None) -> None:
        """Read until the client closes; hand text/binary messages to ``on_message``."""
        async for msg in self.ws:
            if msg.type in (WSMsgType.TEXT, WSMsgType.BINARY) and on_message is not None:
                result = on_message(msg)
                if asyncio.iscoroutine(result):
                    await result
            elif msg.type == WSMsgType.ERROR:
                break
        self.mark_closed(self.ws.close_code or 1006, "closed by client")

    async def serve(self, on_message: Callable[[Any], Any] | None = None) -> None:
        """Run reader and writer until either side ends the connection."""
        reader = self._reader = asyncio.ensure_future(self.run_reader(on_message))
        writer = asyncio.ensure_future(self.run_writer())
        closed = asyncio.ensure_future(self.closed.wait())
        try:
            await asyncio.wait({reader, closed}, return_when=asyncio.FIRST_COMPLETED)
            if self._closing is not None and not writer.done():
                await asyncio.wait({writer}, timeout=5)  # let our close handshake finish
        finally:
            for task in (reader, writer, closed):
                task.cancel()
            await asyncio.gather(reader, writer, closed, return_exceptions=True)
            if not self.closed.is_set():
                await self.close_now(1000, "server closing")
