"""How fast can the emulator feed one Event Streams client? (issue: fast mode ≥ 150,000 frames/s)

Runs ``ivrstream emulator --fast-frames N`` in its own process and reads the burst with a raw
socket client that only parses frame headers, so the client is not what limits the number.
Baseline, measured in the same run: the same emulator sending one frame per ``send`` call
(``--fast-batch 1``), the way most WebSocket servers write.

    python -m bench.emulator_fast [--frames 200000] [--bytes 1000]
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import os
import struct
import time
from typing import Any
from urllib.parse import urlparse

from bench.common import emulator_process, fetch_token, save


def masked_text_frame(payload: bytes) -> bytes:
    mask = os.urandom(4)
    body = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
    length = len(payload)
    if length < 126:
        header = bytes((0x81, 0x80 | length))
    else:
        header = struct.pack("!BBH", 0x81, 0x80 | 126, length)
    return header + mask + body


async def read_burst(base_url: str, token: str, frames: int, run: int) -> dict[str, Any]:
    """Subscribe and count frames until ``frames`` events (plus the acknowledgement) arrived.

    Fast mode serves its burst to new subscriptions only, so each ``run`` filters differently.
    """
    url = urlparse(base_url)
    reader, writer = await asyncio.open_connection(url.hostname, url.port, limit=1 << 22)
    key = base64.b64encode(os.urandom(16)).decode()
    writer.write(
        (
            f"GET /api/v2/events HTTP/1.1\r\nHost: {url.netloc}\r\nUpgrade: websocket\r\n"
            f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n"
            f"Authorization: Bearer {token}\r\n\r\n"
        ).encode()
    )
    await reader.readuntil(b"\r\n\r\n")
    subscription = {
        "eventType": "interaction:updated",
        "dataTypes": ["interaction"],
        "contentType": "application/msgpack",
        "filters": {"interaction.routing.type": f"benchmark-run-{run}"},
    }
    writer.write(masked_text_frame(json.dumps(subscription).encode()))
    await writer.drain()
    buffer = bytearray()
    offset = 0
    seen = 0
    wanted = frames + 1  # the acknowledgement comes first
    first = last = 0.0
    total = 0
    while seen < wanted:
        chunk = await reader.read(1 << 20)
        if not chunk:
            raise RuntimeError(f"connection closed after {seen} frames")
        if seen == 1 and first == 0.0:
            first = time.perf_counter()
        buffer += chunk
        total += len(chunk)
        end = len(buffer)
        while end - offset >= 2:
            marker = buffer[offset + 1] & 0x7F
            if marker < 126:
                start, length = offset + 2, marker
            elif marker == 126:
                if end - offset < 4:
                    break
                start, length = offset + 4, int.from_bytes(buffer[offset + 2 : offset + 4])
            else:
                if end - offset < 10:
                    break
                start, length = offset + 10, int.from_bytes(buffer[offset + 2 : offset + 10])
            if end < start + length:
                break
            offset = start + length
            seen += 1
            if seen == 1:
                first = time.perf_counter()
        del buffer[:offset]
        offset = 0
        last = time.perf_counter()
    writer.close()
    seconds = last - first
    return {
        "frames": frames,
        "bytes": total,
        "seconds": round(seconds, 4),
        "frames_per_second": round(frames / seconds),
    }


def measure(frames: int, frame_bytes: int, batch: int) -> dict[str, Any]:
    args = [
        "--no-traffic",
        "--fast-frames",
        str(frames),
        "--fast-frame-bytes",
        str(frame_bytes),
        "--fast-batch",
        str(batch),
    ]
    with emulator_process(*args) as base_url:
        token = fetch_token(base_url)
        asyncio.run(read_burst(base_url, token, frames, run=0))  # warm up (and encode)
        best: dict[str, Any] | None = None
        for run in range(1, 4):
            result = asyncio.run(read_burst(base_url, token, frames, run))
            if best is None or result["frames_per_second"] > best["frames_per_second"]:
                best = result
        assert best is not None
        return best


def run(frames: int = 200_000, frame_bytes: int = 1_000) -> dict[str, Any]:
    """Measure fast mode against one-send-per-frame; print, save and return the result."""
    baseline = measure(frames, frame_bytes, batch=1)
    fast = measure(frames, frame_bytes, batch=512)
    ratio = fast["frames_per_second"] / baseline["frames_per_second"]
    print(
        f"emulator fast mode: {fast['frames_per_second']:,} frames/s "
        f"({frame_bytes}-byte MessagePack frames, batch 512)"
    )
    print(f"baseline (one send per frame): {baseline['frames_per_second']:,} frames/s")
    print(f"ratio: {ratio:.2f}x  (target: >= 150,000 frames/s)")
    result = {
        "title": "Emulator fast mode → one raw client",
        "command": f"python -m bench.emulator_fast --frames {frames} --bytes {frame_bytes}",
        "unit": "frames/s",
        "value": fast["frames_per_second"],
        "baseline_name": "one send() per frame",
        "baseline": baseline["frames_per_second"],
        "ratio": round(ratio, 2),
        "target": 150_000,
        "detail": {"fast": fast, "baseline": baseline},
    }
    save("emulator_fast", result)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=200_000)
    parser.add_argument("--bytes", type=int, default=1_000)
    args = parser.parse_args()
    run(args.frames, args.bytes)


if __name__ == "__main__":
    main()
