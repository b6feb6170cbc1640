"""The JSON-lines sink: every batch on disk, idempotent across restarts, torn lines repaired."""

from __future__ import annotations

import msgspec

from ivrstream.config import JsonlSettings
from ivrstream.sinks.base import Verdict
from ivrstream.sinks.jsonl import JsonlSink
from tests.sinks.support import deliveries


def ids(path) -> list[str]:
    return [msgspec.json.decode(line)["event_id"] for line in path.read_bytes().splitlines()]


async def test_batches_are_appended_in_order(tmp_path):
    path = tmp_path / "out" / "events.jsonl"
    sink = JsonlSink(JsonlSettings(path=str(path)))
    await sink.start()
    batch = deliveries(30)
    assert (await sink.deliver(batch[:10])).verdict is Verdict.OK
    assert (await sink.deliver(batch[10:])).verdict is Verdict.OK
    assert ids(path) == [d.event_id for d in batch]


async def test_after_a_restart_redelivered_events_are_not_written_twice(tmp_path):
    path = tmp_path / "events.jsonl"
    batch = deliveries(20)
    first = JsonlSink(JsonlSettings(path=str(path)))
    await first.start()
    await first.deliver(batch[:15])
    second = JsonlSink(JsonlSettings(path=str(path)))  # the process restarted
    await second.start()
    outcome = await second.deliver(batch[10:])  # the cursor lagged: 10..14 come again
    assert outcome.duplicates == 5
    assert ids(path) == [d.event_id for d in batch]


async def test_a_line_torn_by_a_crash_is_cut_and_rewritten(tmp_path):
    path = tmp_path / "events.jsonl"
    batch = deliveries(5)
    sink = JsonlSink(JsonlSettings(path=str(path)))
    await sink.start()
    await sink.deliver(batch[:4])
    with path.open("ab") as handle:
        handle.write(batch[4].body[:40])  # half a line, then the crash
    again = JsonlSink(JsonlSettings(path=str(path)))
    await again.start()
    await again.deliver(batch[3:])
    assert ids(path) == [d.event_id for d in batch]


async def test_an_unwritable_path_is_a_retry(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    sink = JsonlSink(JsonlSettings(path=str(blocker / "events.jsonl")))
    await sink.start()
    assert (await sink.deliver(deliveries(1))).verdict is Verdict.RETRY
