"""The dispatcher with a scripted sink: cursors, lanes, retries, dead letters, bisection."""

from __future__ import annotations

import asyncio
import random
from collections import defaultdict
from typing import Any

import msgspec
import pytest

from ivrstream.aio.dispatcher import Dispatcher
from ivrstream.aio.intake import Intake
from ivrstream.aio.tail import JournalTail
from ivrstream.clock import SystemClock
from ivrstream.config import SinkSettings
from ivrstream.hooks import Hooks
from ivrstream.isotime import format_ms
from ivrstream.journal import JournalWriter, WriteBatch, open_journal
from ivrstream.sinks.base import Delivery, Outcome
from ivrstream.testing import FakeClock
from tests.aio.support import open_intake, until


def body(n: int, conversation: str | None = None) -> bytes:
    return msgspec.json.encode(
        {
            "event_id": f"ev-{n:06d}",
            "source": "eventstreams",
            "event_type": "flow.start",
            "conversation_id": conversation or f"conv-{n % 5}",
            "sequence_id": n,
            "event_time": format_ms(1_780_000_000_000 + n),
            "received_at": format_ms(1_780_000_000_000 + n),
            "recovered": False,
            "data": {"n": n},
        }
    )


class ScriptedSink:
    """Answers from a script (callable per call) and remembers what it stored."""

    def __init__(self, name: str = "fake", script: Any = None) -> None:
        self.name = name
        self.script = script or (lambda batch, call: Outcome.ok())
        self.calls: list[list[int]] = []
        self.stored: list[int] = []
        self.started = False

    async def start(self) -> None:
        self.started = True

    async def deliver(self, batch: list[Delivery]) -> Outcome:
        self.calls.append([d.pos for d in batch])
        outcome = self.script(batch, len(self.calls))
        if outcome.verdict == "ok":
            self.stored.extend(d.pos for d in batch)
        return outcome

    async def close(self) -> None:
        pass

    def statistics(self) -> dict[str, Any]:
        return {"calls": len(self.calls)}


@pytest.fixture
async def intake(tmp_path):
    intake = await open_intake(tmp_path / "j.db")
    yield intake
    await intake.close()


async def add_events(intake: Intake, first: int, last: int, **kw: Any) -> None:
    intake.submit(WriteBatch(events=[body(n, **kw) for n in range(first, last + 1)]))
    await until(lambda: intake.last_pos >= last)


def settings(**overrides: Any) -> SinkSettings:
    base = {"batch_max": 10, "max_attempts": 3, "retry_base": 0.5, "retry_cap": 4.0, "lanes": 3}
    return SinkSettings(**{**base, **overrides})


async def advance_until(clock: FakeClock, predicate: Any, step: float = 5.0) -> None:
    """Move fake time on, a step at a time, letting real threads (journal reads) finish."""
    for _ in range(500):
        if predicate():
            return
        await clock.advance(step)
        await asyncio.sleep(0.005)
    raise AssertionError("condition not met")


async def run(dispatcher: Dispatcher) -> asyncio.Task[None]:
    dispatcher.dead_letter_poll = 0.02
    return asyncio.ensure_future(dispatcher.run())


async def stop(task: asyncio.Task[None]) -> None:
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task


async def test_everything_is_delivered_once_and_each_conversation_in_order(intake):
    await add_events(intake, 1, 95)
    sink = ScriptedSink()
    dispatcher = Dispatcher(sink, settings(), intake, SystemClock(), random.Random(1), Hooks())
    task = await run(dispatcher)
    await until(lambda: dispatcher.position == 95)
    await add_events(intake, 96, 120)  # more arrive while it runs
    await until(lambda: dispatcher.position == 120)
    await stop(task)
    assert sorted(sink.stored) == list(range(1, 121))
    per_conversation = defaultdict(list)
    for pos in sink.stored:
        per_conversation[pos % 5].append(pos)
    assert all(p == sorted(p) for p in per_conversation.values())
    assert all(len(call) <= 10 for call in sink.calls)
    assert dispatcher.stats.delivered == 120
    await until(lambda: open_journal(intake.path).cursors().get("fake") == 120)


async def test_a_restart_resumes_from_the_recorded_cursor(intake):
    await add_events(intake, 1, 40)
    first = ScriptedSink()
    dispatcher = Dispatcher(first, settings(), intake, SystemClock(), random.Random(1), Hooks())
    task = await run(dispatcher)
    await until(lambda: dispatcher.position == 40)
    await stop(task)
    await until(lambda: open_journal(intake.path).cursors().get("fake") == 40)
    await add_events(intake, 41, 50)
    second = ScriptedSink()
    again = Dispatcher(second, settings(), intake, SystemClock(), random.Random(1), Hooks())
    task = await run(again)
    await until(lambda: again.position == 50)
    await stop(task)
    assert sorted(second.stored) == list(range(41, 51))


async def test_retries_back_off_and_honour_retry_after(intake):
    await add_events(intake, 1, 1)
    clock = FakeClock()

    def script(batch, call):
        return Outcome.retry("503", retry_after=30.0) if call < 3 else Outcome.ok()

    sink = ScriptedSink(script=script)
    dispatcher = Dispatcher(
        sink, settings(max_attempts=5), intake, clock, random.Random(1), Hooks()
    )
    task = await run(dispatcher)
    await until(lambda: len(sink.calls) == 1)
    await clock.advance(29)  # Retry-After says 30 s: not yet
    assert len(sink.calls) == 1
    await clock.advance(8)  # 30 s plus at most 20 % jitter
    await until(lambda: len(sink.calls) == 2)
    await clock.advance(37)
    await until(lambda: dispatcher.position == 1)
    await stop(task)
    assert dispatcher.stats.retries == 2
    assert sink.stored == [1]


async def test_a_spent_retry_budget_dead_letters_and_moves_on(intake):
    await add_events(intake, 1, 4, conversation="conv-a")
    clock = FakeClock()
    dead = []

    def script(batch, call):
        return Outcome.retry("503 forever") if 1 in [d.pos for d in batch] else Outcome.ok()

    hooks = Hooks()
    hooks.on("dead_lettered", lambda **kw: dead.append(kw["event_id"]))
    sink = ScriptedSink(script=script)
    dispatcher = Dispatcher(
        sink, settings(batch_max=2, max_attempts=3, lanes=1), intake, clock, random.Random(1), hooks
    )
    task = await run(dispatcher)
    await advance_until(clock, lambda: dispatcher.position == 4)
    await stop(task)
    assert dead == ["ev-000001", "ev-000002"]
    assert sink.stored == [3, 4]
    with open_journal(intake.path) as journal:
        await until(lambda: len(journal.dead_letters("fake")) == 2)
        letters = journal.dead_letters("fake")
    assert [d["pos"] for d in letters] == [1, 2]
    assert all("gave up after 3 tries: 503 forever" in d["error"] for d in letters)
    assert all(d["attempts"] == 3 for d in letters)


async def test_a_rejected_batch_is_halved_until_only_the_poison_event_is_dead(intake):
    await add_events(intake, 1, 10, conversation="conv-a")

    def script(batch, call):
        return Outcome.reject("HTTP 422") if 7 in [d.pos for d in batch] else Outcome.ok()

    sink = ScriptedSink(script=script)
    dispatcher = Dispatcher(
        sink, settings(lanes=1), intake, SystemClock(), random.Random(1), Hooks()
    )
    task = await run(dispatcher)
    await until(lambda: dispatcher.position == 10)
    await stop(task)
    assert sink.stored == [1, 2, 3, 4, 5, 6, 8, 9, 10]
    assert dispatcher.stats.dead_lettered == 1
    with open_journal(intake.path) as journal:
        await until(lambda: len(journal.dead_letters("fake")) == 1)
        assert journal.dead_letters("fake")[0]["event_id"] == "ev-000007"


async def test_a_gone_destination_disables_the_sink_and_keeps_its_cursor(intake):
    await add_events(intake, 1, 5)
    disabled = []
    hooks = Hooks()
    hooks.on("sink_disabled", lambda **kw: disabled.append(kw))
    sink = ScriptedSink(script=lambda batch, call: Outcome.gone("HTTP 410"))
    dispatcher = Dispatcher(sink, settings(), intake, SystemClock(), random.Random(1), hooks)
    await asyncio.wait_for(await run(dispatcher), 5)  # returns by itself
    assert dispatcher.state == "disabled"
    assert dispatcher.position == 0
    assert disabled == [{"sink": "fake", "error": "HTTP 410"}]


async def test_dead_letters_queued_for_retry_are_delivered_and_removed(intake):
    await add_events(intake, 1, 3, conversation="conv-a")
    poisoned = {2}

    def script(batch, call):
        return Outcome.reject("HTTP 400") if poisoned & {d.pos for d in batch} else Outcome.ok()

    sink = ScriptedSink(script=script)
    dispatcher = Dispatcher(
        sink, settings(lanes=1), intake, SystemClock(), random.Random(1), Hooks()
    )
    task = await run(dispatcher)
    await until(lambda: dispatcher.position == 3)
    with open_journal(intake.path, readonly=False) as journal:
        await until(lambda: len(journal.dead_letters("fake")) == 1)
        poisoned.clear()  # the receiver was fixed
        assert journal.queue_dead_letters("fake") == 1
        await until(lambda: not journal.dead_letters("fake"))
    await stop(task)
    assert sorted(sink.stored) == [1, 2, 3]
    assert dispatcher.stats.redelivered == 1


async def test_a_failing_sink_does_not_hold_up_another(intake):
    await add_events(intake, 1, 50)
    clock = FakeClock()
    stuck = ScriptedSink("stuck", script=lambda batch, call: Outcome.retry("down"))
    healthy = ScriptedSink("healthy")
    slow = Dispatcher(stuck, settings(max_attempts=100), intake, clock, random.Random(1), Hooks())
    fast = Dispatcher(healthy, settings(), intake, clock, random.Random(2), Hooks())
    tasks = [await run(slow), await run(fast)]
    await until(lambda: fast.position == 50)
    assert slow.position == 0
    assert slow.statistics()["backlog"] == 50
    for task in tasks:
        await stop(task)


async def test_a_sink_that_raises_is_retried_not_fatal(intake):
    await add_events(intake, 1, 2)

    def script(batch, call):
        if call == 1:
            raise RuntimeError("bug in the sink")
        return Outcome.ok()

    sink = ScriptedSink(script=script)
    dispatcher = Dispatcher(
        sink,
        settings(retry_base=0.01, retry_cap=0.01, lanes=1),
        intake,
        SystemClock(),
        random.Random(1),
        Hooks(),
    )
    task = await run(dispatcher)
    await until(lambda: dispatcher.position == 2)
    await stop(task)
    assert sorted(sink.stored) == [1, 2]


async def test_a_dispatcher_always_stops_when_cancelled_while_events_keep_coming(intake):
    """Cancelling while a commit wakes the idle wait must stop it (on 3.11 asyncio.wait_for
    could swallow that cancellation and the dispatcher ran on for ever)."""
    rng = random.Random(3)
    produced = 0

    async def produce() -> None:
        nonlocal produced
        while True:
            produced += 1
            intake.submit(WriteBatch(events=[body(produced)]))
            await asyncio.sleep(rng.random() * 0.002)

    producer = asyncio.ensure_future(produce())
    try:
        for _ in range(40):
            sink = ScriptedSink()
            dispatcher = Dispatcher(
                sink, settings(), intake, SystemClock(), random.Random(1), Hooks()
            )
            task = await run(dispatcher)
            dispatcher.dead_letter_poll = 0.001
            await asyncio.sleep(0.01 + rng.random() * 0.02)
            task.cancel()
            async with asyncio.timeout(3):
                with pytest.raises(asyncio.CancelledError):
                    await task
    finally:
        producer.cancel()


async def test_shares_that_queued_behind_a_slow_batch_travel_together(intake):
    gate = asyncio.Event()

    class SlowFirst(ScriptedSink):
        async def deliver(self, batch: list[Delivery]) -> Outcome:
            if not self.calls:
                self.calls.append([d.pos for d in batch])
                await gate.wait()
                self.stored.extend(d.pos for d in batch)
                return Outcome.ok()
            return await super().deliver(batch)

    def script(batch, call):
        return Outcome.reject("HTTP 422") if 5 in [d.pos for d in batch] else Outcome.ok()

    sink = SlowFirst(script=script)
    dispatcher = Dispatcher(
        sink, settings(lanes=1), intake, SystemClock(), random.Random(1), Hooks()
    )
    await add_events(intake, 1, 3, conversation="conv-a")
    task = await run(dispatcher)
    await until(lambda: len(sink.calls) == 1)
    for first, stretches in ((4, 2), (7, 3)):  # two more, read one by one while it is busy
        await add_events(intake, first, first + 2, conversation="conv-a")
        await until(lambda n=stretches: len(dispatcher._stretches) == n)
    gate.set()
    await until(lambda: dispatcher.position == 9)
    await stop(task)
    assert sink.calls[:2] == [[1, 2, 3], [4, 5, 6, 7, 8, 9]]  # one request for both
    assert sink.stored == [1, 2, 3, 4, 6, 7, 8, 9]
    with open_journal(intake.path) as journal:
        await until(lambda: len(journal.dead_letters("fake")) == 1)
        assert journal.dead_letters("fake")[0]["pos"] == 5


async def test_events_another_process_journals_are_found_by_looking_in_the_file(intake):
    # intake shares its commits in memory; rows some other writer puts in the file (a backfill
    # run, say) never pass through it, and are found by the poll of a quiet dispatcher
    tail = JournalTail()
    intake.share_commits(tail)
    sink = ScriptedSink()
    dispatcher = Dispatcher(
        sink, settings(), intake, SystemClock(), random.Random(1), Hooks(), tail
    )
    task = await run(dispatcher)
    await add_events(intake, 1, 5)
    await until(lambda: dispatcher.position == 5)
    other = JournalWriter(intake.path, flush_interval=0.0, on_commit=lambda result: None)
    other.submit(WriteBatch(events=[body(n) for n in range(6, 9)]))
    other.close()  # commits what was submitted, from this thread
    await until(lambda: dispatcher.position == 8)
    await stop(task)
    assert sorted(sink.stored) == list(range(1, 9))
