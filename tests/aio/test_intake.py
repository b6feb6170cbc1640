"""Intake hands what it commits to the shared tail, exactly as the journal would give it back."""

from __future__ import annotations

import msgspec

from ivrstream.aio.intake import Intake
from ivrstream.aio.tail import JournalTail
from ivrstream.journal import open_journal
from ivrstream.models import InteractionEvent
from ivrstream.sinks.base import Delivery
from tests.aio.support import open_intake


def frame(seq: int, conversation: str = "conv-1") -> bytes:
    return msgspec.msgpack.encode(
        {
            "eventType": "interaction:updated",
            "sequenceId": seq,
            "timestamp": f"2026-05-01T10:00:{seq % 60:02d}.{seq % 1000:03d}Z",
            "data": {"conversationId": conversation, "change": f"flow.step{seq}", "n": seq},
        }
    )


def event(n: int) -> InteractionEvent:
    return InteractionEvent(
        event_id=f"00000000-0000-7000-8000-{n:012d}",
        source="backfill",
        event_type="flow.start",
        conversation_id=f"conv-{n}",
        sequence_id=None,
        event_time="2026-05-01T10:00:00.000Z",
        received_at="2026-05-01T10:00:01.000Z",
        data={"n": n},
    )


def journal_rows(intake: Intake) -> list[Delivery]:
    with open_journal(intake.path) as journal:
        return [Delivery(*row) for row in journal.deliveries_after(0, 1_000)]


async def test_committed_events_reach_the_tail_as_the_journal_holds_them(tmp_path):
    intake = await open_intake(tmp_path / "j.db")
    tail = JournalTail()
    intake.share_commits(tail)
    try:
        intake.subscribed("es", "eventstreams", "sub-1", 0, None)
        for seq in range(1, 41):
            intake.on_frame("es", "c1", frame(seq, f"conv-{seq % 3}"), False)
        intake.append_events([event(n) for n in range(1, 6)], received_mono=0.0)
        await intake.wait_idle()
        shared = tail.after(0, 1_000)
        assert shared is not None
        assert shared == journal_rows(intake)
        assert len(shared) == 45
        assert all(type(d) is Delivery for d in shared)
        assert (tail.committed, tail.misses) == (45, 0)
    finally:
        await intake.close()


async def test_a_commit_with_duplicates_is_not_shared(tmp_path):
    intake = await open_intake(tmp_path / "j.db")
    tail = JournalTail()
    intake.share_commits(tail)
    try:
        intake.append_events([event(n) for n in range(1, 4)], received_mono=0.0)
        await intake.wait_idle()
        # 2 and 3 again, with 4 new: where 4 landed cannot be told from the counts alone
        intake.append_events([event(n) for n in range(2, 5)], received_mono=0.0)
        await intake.wait_idle()
        assert [d.pos for d in tail.after(0, 10) or []] == [1, 2, 3]
        assert tail.after(3, 10) is None  # the dispatchers read position 4 from the file
        assert [d.event_id for d in journal_rows(intake)][-1] == event(4).event_id
    finally:
        await intake.close()


async def test_without_a_tail_nothing_is_kept_for_one(tmp_path):
    intake = await open_intake(tmp_path / "j.db")
    try:
        intake.append_events([event(1)], received_mono=0.0)
        assert intake._pending.columns is None
        await intake.wait_idle()
    finally:
        await intake.close()
