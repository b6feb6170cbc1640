"""Fast mode: pre-encoded, pre-framed Event Streams events for benchmarks.

A new subscription first receives ``fast_frames`` events (sequence ids 1..N) built from the
traffic model and padded to about ``fast_frame_bytes``, then the live stream. With
``fast_batch`` > 1 many frames go out per socket write, which is what lets one Python process
outrun any client; ``fast_batch = 1`` sends one frame per ``send`` (the baseline). Fast-mode
events are not kept for ``resumeAfter``: a benchmark that reconnects starts over.
"""

from __future__ import annotations

import struct
import time
from typing import Any

import msgspec
from aiohttp import WSMsgType

from ivrstream.emulator.config import EmulatorConfig
from ivrstream.emulator.render import es_event_type, interaction_snapshot
from ivrstream.emulator.sockets import EmulatedSocket
from ivrstream.emulator.traffic import TrafficConfig, TrafficModel
from ivrstream.isotime import format_ms

TEMPLATES = 1_000
OPCODE_TEXT, OPCODE_BINARY = 0x1, 0x2


def frame_header(opcode: int, length: int) -> bytes:
    """An unmasked, final server-to-client frame header (RFC 6455 §5.2)."""
    first = 0x80 | opcode
    if length < 126:
        return bytes((first, length))
    if length < 1 << 16:
        return struct.pack("!BBH", first, 126, length)
    return struct.pack("!BBQ", first, 127, length)


def _templates(config: EmulatorConfig) -> list[dict[str, Any]]:
    model = TrafficModel(TrafficConfig(seed=config.seed, time_scale=config.time_scale))
    out: list[dict[str, Any]] = []
    index = 0
    while len(out) < TEMPLATES:
        call = model.make_call(index, 1_780_000_000_000 + index * 500)
        index += 1
        for fact in call.facts:
            if es_event_type(fact) == "interaction:updated":
                out.append(
                    {
                        "eventType": "interaction:updated",
                        "sequenceId": 0,
                        "timestamp": format_ms(fact.time_ms),
                        "data": interaction_snapshot(fact),
                    }
                )
    return out[:TEMPLATES]


class FastFrames:
    """Builds (once per content type) and sends the fast-mode burst."""

    def __init__(self, config: EmulatorConfig) -> None:
        self.config = config
        self._framed: dict[bool, list[bytes]] = {}

    def framed(self, msgpack: bool) -> list[bytes]:
        cached = self._framed.get(msgpack)
        if cached is not None:
            return cached
        templates = _templates(self.config)
        encode = (msgspec.msgpack.Encoder() if msgpack else msgspec.json.Encoder()).encode
        opcode = OPCODE_BINARY if msgpack else OPCODE_TEXT
        for template in templates:  # pad each template to the wanted size
            size = len(encode(template))
            room = self.config.fast_frame_bytes - size - 30
            if room > 0:
                template["data"]["attributes"] = {
                    **template["data"].get("attributes", {}),
                    "Padding": "p" * room,
                }
        frames: list[bytes] = []
        start_ms = 1_780_000_000_000
        for seq in range(1, self.config.fast_frames + 1):
            template = templates[seq % TEMPLATES]
            template["sequenceId"] = seq
            # one event per millisecond: distinct events, so distinct event ids downstream
            template["timestamp"] = format_ms(start_ms + seq)
            payload = encode(template)
            frames.append(frame_header(opcode, len(payload)) + payload)
        self._framed[msgpack] = frames
        return frames

    async def send(self, socket: EmulatedSocket, msgpack: bool) -> dict[str, Any]:
        """Send the whole burst on ``socket``; returns what was sent and how fast."""
        frames = self.framed(msgpack)
        batch = max(1, self.config.fast_batch)
        writer = socket.raw_writer
        started = time.perf_counter()
        total_bytes = 0
        if batch == 1 or writer is None:
            opcode = WSMsgType.BINARY if msgpack else WSMsgType.TEXT
            for framed in frames:
                payload = framed[_header_length(framed) :]
                await socket.ws.send_frame(payload, opcode)
                total_bytes += len(framed)
        else:
            for start in range(0, len(frames), batch):
                chunk = b"".join(frames[start : start + batch])
                total_bytes += len(chunk)
                await writer.write(chunk)
            await writer.drain()
        seconds = time.perf_counter() - started
        socket.frames_sent += len(frames)
        return {
            "from": 1,
            "to": len(frames),
            "frames": len(frames),
            "bytes": total_bytes,
            "batch": batch,
            "seconds": round(seconds, 6),
            "framesPerSecond": round(len(frames) / seconds) if seconds > 0 else None,
        }


def _header_length(framed: bytes) -> int:
    marker = framed[1] & 0x7F
    return 2 if marker < 126 else 4 if marker == 126 else 10
