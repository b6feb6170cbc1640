"""Fuzzing the intake: 100,000 generated frames (valid, mutated and random) through decoding,
ordering and the journal. Every frame must end up journaled, quarantined, or counted as a
duplicate; nothing may raise; memory must stay bounded.

Baseline, in the same run: the same number of valid frames alone — the ratio says what hostile
input costs.

    python -m bench.fuzz [--frames 100000] [--seed 1]
"""

from __future__ import annotations

import argparse
import asyncio
import random
import resource
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import msgspec

from bench.common import save
from ivrstream.aio.intake import Intake
from ivrstream.clock import SystemClock
from ivrstream.config import JournalSettings, OrderingSettings
from ivrstream.emulator.config import EmulatorConfig
from ivrstream.emulator.fastmode import FastFrames
from ivrstream.hooks import Hooks
from ivrstream.isotime import format_ms

MAX_INPUT = 512 * 1024  # the largest frame the generator makes


def unframe(framed: bytes) -> bytes:
    marker = framed[1] & 0x7F
    return framed[2 if marker < 126 else 4 if marker == 126 else 10 :]


def mutate(rng: random.Random, frame: bytes) -> bytes:
    data = bytearray(frame)
    for _ in range(rng.randint(1, 4)):
        choice = rng.random()
        if choice < 0.35 and data:
            data[rng.randrange(len(data))] = rng.randrange(256)
        elif choice < 0.55 and data:
            del data[rng.randrange(len(data)) :]
        elif choice < 0.75:
            at = rng.randrange(len(data) + 1)
            data[at:at] = rng.randbytes(rng.randint(1, 16))
        elif choice < 0.9 and data and len(data) < MAX_INPUT // 50:
            a, b = sorted(rng.randrange(len(data) + 1) for _ in range(2))
            data[a:b] = data[a:b] * rng.randint(2, 50)  # some grow past the frame limit
        else:
            data[:] = rng.randbytes(rng.randint(0, 2_000))
    return bytes(data)


def frames(count: int, seed: int, hostile: bool) -> Iterator[tuple[bytes, bool]]:
    """Frames made one at a time, so the input itself takes no memory worth measuring."""
    rng = random.Random(seed)
    fast = FastFrames(EmulatorConfig(fast_frames=1))
    template_frames = [unframe(f) for f in fast.framed(True)]
    template = msgspec.msgpack.decode(template_frames[0])
    for seq in range(1, count + 1):
        template["sequenceId"] = seq
        template["timestamp"] = format_ms(1_780_000_000_000 + seq)
        template["data"]["conversationId"] = f"conv-{seq % 997}"
        frame = msgspec.msgpack.encode(template)
        if hostile and rng.random() < 0.5:
            text = rng.random() < 0.2
            if text:  # the JSON twin of a frame, mutated
                frame = msgspec.json.encode(template)
            yield mutate(rng, frame), text
        else:
            yield frame, False


async def feed(batch: Iterator[tuple[bytes, bool]], journal: Path, count: int) -> dict[str, Any]:
    intake = Intake(
        JournalSettings(path=str(journal)),
        OrderingSettings(),
        SystemClock(),
        Hooks(),
        max_frame_bytes=64 * 1024,
    )
    await intake.open()
    intake.subscribed("fuzz", "eventstreams", "sub-fuzz", 0, None)
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    started = time.perf_counter()
    for payload, text in batch:
        intake.on_frame("fuzz", "es-fuzz", payload, text)
        if intake.backlogged:
            await intake.wait_for_room()
    intake.flush()
    while intake.statistics()["inflight"]:
        await intake.wait_committed(intake.last_pos)
    seconds = time.perf_counter() - started
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 - before
    stats = intake.statistics()
    await intake.close()
    (stream,) = stats["streams"].values()
    return {
        "frames": count,
        "seconds": round(seconds, 3),
        "frames_per_second": round(count / seconds),
        "journaled": stats["committed"],
        "quarantined": stats["quarantined"],
        "duplicates": stream["duplicate"],
        "held": stream["held"],
        "gaps": stream["gaps_opened"],
        "peak_rss_growth_mb": round(peak / 1e6, 1),
    }


def run(count: int = 100_000, seed: int = 1) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as tmp:
        hostile = asyncio.run(feed(frames(count, seed, hostile=True), Path(tmp) / "fuzz.db", count))
        clean = asyncio.run(feed(frames(count, seed, hostile=False), Path(tmp) / "clean.db", count))
    accounted = hostile["journaled"] + hostile["quarantined"] + hostile["duplicates"]
    print(
        f"fuzz: {count:,} frames ({hostile['quarantined']:,} quarantined, "
        f"{hostile['journaled']:,} journaled, {hostile['duplicates']:,} duplicates), "
        f"{hostile['frames_per_second']:,} frames/s, peak RSS grew "
        f"{hostile['peak_rss_growth_mb']} MB, nothing raised"
    )
    print(f"baseline (valid frames only): {clean['frames_per_second']:,} frames/s")
    ratio = hostile["frames_per_second"] / clean["frames_per_second"]
    print(f"ratio {ratio:.2f}x; every frame accounted for: {accounted >= count - hostile['held']}")
    result = {
        "title": "Fuzzing: 100k valid, mutated and random frames through intake",
        "command": f"python -m bench.fuzz --frames {count} --seed {seed}",
        "unit": "frames/s",
        "value": hostile["frames_per_second"],
        "baseline_name": "the same number of valid frames",
        "baseline": clean["frames_per_second"],
        "ratio": round(ratio, 2),
        "target": 0,
        "detail": {"hostile": hostile, "clean": clean, "accounted": accounted},
    }
    save("fuzz", result)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=100_000)
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    run(args.frames, args.seed)


if __name__ == "__main__":
    main()
