"""The shared journal tail: one contiguous window of the newest events, bounded, never stale."""

from __future__ import annotations

import asyncio

from hypothesis import given, settings
from hypothesis import strategies as st

from ivrstream.aio.tail import JournalTail
from ivrstream.sinks.base import Delivery


def events(first: int, last: int, size: int = 10) -> list[Delivery]:
    return [Delivery(p, f"e{p}", "c", "t", b"x" * size, p) for p in range(first, last + 1)]


def positions(found: list[Delivery] | None) -> list[int] | None:
    return None if found is None else [e.pos for e in found]


def test_an_empty_tail_cannot_answer():
    tail = JournalTail()
    assert tail.after(0, 10) is None


def test_a_read_is_served_again_from_memory_up_to_the_limit():
    tail = JournalTail()
    tail.add(0, events(1, 5))
    assert positions(tail.after(0, 3)) == [1, 2, 3]
    assert positions(tail.after(3, 10)) == [4, 5]
    assert tail.after(5, 10) is None  # past the end: nothing is known there yet
    assert (tail.hits, tail.misses) == (5, 5)


def test_reads_that_continue_the_window_extend_it():
    tail = JournalTail()
    tail.add(0, events(1, 5))
    tail.add(5, events(6, 8))
    tail.add(3, events(4, 10))  # overlaps: only what is new joins
    assert positions(tail.after(0, 100)) == list(range(1, 11))


def test_holes_in_positions_are_not_missing_events():
    tail = JournalTail()
    tail.add(0, [e for e in events(1, 9) if e.pos % 3])  # 3, 6, 9 never existed
    assert positions(tail.after(3, 2)) == [4, 5]
    assert positions(tail.after(2, 100)) == [4, 5, 7, 8]


def test_a_read_behind_the_window_leaves_it_alone_and_one_past_it_restarts_it():
    tail = JournalTail()
    tail.add(10, events(11, 15))
    tail.add(0, events(1, 5))  # a dispatcher far behind
    assert tail.after(0, 10) is None
    assert positions(tail.after(10, 10)) == [11, 12, 13, 14, 15]
    tail.add(20, events(21, 22))  # past the window: 16..20 unknown, so it starts over
    assert tail.after(15, 10) is None
    assert positions(tail.after(20, 10)) == [21, 22]


def test_the_byte_budget_drops_the_oldest_events():
    tail = JournalTail(budget_bytes=100)
    tail.add(0, events(1, 30, size=10))
    assert len(tail) == 10
    assert tail.after(19, 5) is None  # gone from memory: read the journal
    assert positions(tail.after(20, 100)) == list(range(21, 31))


@settings(max_examples=200)
@given(st.lists(st.tuples(st.integers(0, 60), st.integers(1, 15)), max_size=40))
def test_whatever_the_reads_the_tail_answers_only_what_the_journal_holds(reads):
    journal = [e for e in events(1, 80) if e.pos % 7]  # positions with holes
    tail = JournalTail(budget_bytes=250)
    for position, limit in reads:
        found = tail.after(position, limit)
        expected = [e for e in journal if e.pos > position][:limit]
        if found is None or not found:
            tail.add(position, expected)
        else:
            assert found == expected[: len(found)]
            assert found  # an answer is never empty


async def test_a_read_in_flight_is_shared_with_whoever_wants_the_same_events():
    tail = JournalTail()
    assert tail.begin_read(0)
    assert not tail.begin_read(0)  # one at a time
    waiting = tail.read_in_flight(0)
    assert waiting is not None
    assert tail.read_in_flight(-1) is None  # a read from further back is not covered by it
    waiter = asyncio.create_task(waiting.wait())
    tail.add(0, events(1, 3))
    tail.end_read()
    await asyncio.wait_for(waiter, 1)
    assert positions(tail.after(0, 10)) == [1, 2, 3]
    assert not tail.begin_read(1)  # inside the window: nothing to share
    assert tail.begin_read(3)
    tail.end_read()
