"""TimeOrder: every rule of ``protocol.timeorder``, then properties over any arrival order."""

from __future__ import annotations

from dataclasses import dataclass

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ivrstream.config import NotificationsSettings
from ivrstream.protocol.timeorder import TimeOrder


@dataclass(frozen=True)
class Ev:
    conversation: str
    time_ms: int
    n: int  # arrival number: unique, so the test can tell equal-time items apart


def push(order: TimeOrder[Ev], ev: Ev, now: float = 0.0) -> list[Ev]:
    return order.push(ev.conversation, ev.time_ms, ev, now)


def names(items: list[Ev]) -> list[int]:
    return [i.n for i in items]


# -- holding and releasing -----------------------------------------------------------------------


def test_an_item_is_held_for_the_window_then_released():
    order: TimeOrder[Ev] = TimeOrder(window_seconds=2.0)
    assert push(order, Ev("a", 100, 1), now=10.0) == []
    assert order.held == 1
    assert order.deadline() == 12.0
    assert order.expire(11.999) == []
    assert names(order.expire(12.0)) == [1]
    assert order.deadline() is None
    assert order.held == 0


def test_a_conversation_is_released_in_event_time_order():
    order: TimeOrder[Ev] = TimeOrder(window_seconds=2.0)
    push(order, Ev("a", 300, 1), now=0.0)
    push(order, Ev("a", 100, 2), now=0.5)
    push(order, Ev("a", 200, 3), now=1.0)
    assert names(order.expire(2.0)) == [2, 3, 1]


def test_a_due_item_takes_the_earlier_items_of_its_conversation_and_no_later_ones():
    order: TimeOrder[Ev] = TimeOrder(window_seconds=2.0)
    push(order, Ev("a", 200, 1), now=0.0)
    push(order, Ev("a", 100, 2), now=1.0)  # earlier, arrived later: must not become late
    push(order, Ev("a", 300, 3), now=1.0)  # later: waits for its own window
    assert names(order.expire(2.0)) == [2, 1]
    assert order.held == 1
    assert order.deadline() == 3.0
    assert names(order.expire(3.0)) == [3]
    assert order.statistics().late == 0


def test_equal_times_keep_arrival_order():
    order: TimeOrder[Ev] = TimeOrder(window_seconds=1.0)
    for n in range(5):
        push(order, Ev("a", 100, n), now=0.0)
    assert names(order.expire(1.0)) == [0, 1, 2, 3, 4]
    # and after release, an item at the same time is in order, not late
    assert push(order, Ev("a", 100, 5), now=1.0) == []
    assert names(order.drain()) == [5]
    assert order.statistics().late == 0


def test_conversations_are_independent():
    order: TimeOrder[Ev] = TimeOrder(window_seconds=2.0)
    push(order, Ev("a", 500, 1), now=0.0)
    push(order, Ev("b", 100, 2), now=1.0)
    assert names(order.expire(2.0)) == [1]  # b's earlier time does not hold a back
    assert names(order.expire(3.0)) == [2]


def test_push_releases_what_is_already_due():
    order: TimeOrder[Ev] = TimeOrder(window_seconds=2.0)
    push(order, Ev("a", 100, 1), now=0.0)
    assert names(push(order, Ev("b", 100, 2), now=5.0)) == [1]


def test_a_zero_window_releases_at_once():
    order: TimeOrder[Ev] = TimeOrder(window_seconds=0.0)
    assert names(push(order, Ev("a", 100, 1), now=0.0)) == []
    assert order.deadline() == 0.0
    assert names(order.expire(0.0)) == [1]


# -- late ----------------------------------------------------------------------------------------


def test_an_item_older_than_one_released_is_late_released_at_once_and_counted():
    order: TimeOrder[Ev] = TimeOrder(window_seconds=1.0)
    push(order, Ev("a", 200, 1), now=0.0)
    order.expire(1.0)
    assert names(push(order, Ev("a", 100, 2), now=1.5)) == [2]
    stats = order.statistics()
    assert (stats.late, stats.released, stats.held) == (1, 2, 0)


def test_a_late_item_does_not_release_the_held_ones():
    order: TimeOrder[Ev] = TimeOrder(window_seconds=1.0)
    push(order, Ev("a", 200, 1), now=0.0)
    order.expire(1.0)
    push(order, Ev("a", 300, 2), now=1.2)
    assert names(push(order, Ev("a", 100, 3), now=1.5)) == [3]
    assert order.held == 1
    assert names(order.expire(2.2)) == [2]


def test_late_is_judged_against_the_newest_time_released():
    order: TimeOrder[Ev] = TimeOrder(window_seconds=1.0)
    push(order, Ev("a", 300, 1), now=0.0)
    order.expire(1.0)
    push(order, Ev("a", 100, 2), now=2.0)  # late
    push(order, Ev("a", 200, 3), now=2.0)  # still older than 300: late too
    assert order.statistics().late == 2


# -- bounds --------------------------------------------------------------------------------------


def test_a_full_buffer_releases_the_oldest_arrival_and_never_drops():
    order: TimeOrder[Ev] = TimeOrder(window_seconds=60.0, max_held=2)
    assert push(order, Ev("a", 100, 1)) == []
    assert push(order, Ev("b", 100, 2)) == []
    assert names(push(order, Ev("c", 100, 3))) == [1]
    assert order.held == 2
    stats = order.statistics()
    assert (stats.overflowed, stats.peak_held) == (1, 2)
    assert names(order.drain()) == [2, 3]


def test_overflow_takes_the_earlier_items_of_the_oldest_conversation_along():
    order: TimeOrder[Ev] = TimeOrder(window_seconds=60.0, max_held=3)
    push(order, Ev("a", 200, 1))
    push(order, Ev("b", 100, 2))
    push(order, Ev("a", 100, 3))
    assert names(push(order, Ev("a", 300, 4))) == [3, 1]
    assert order.held == 2


def test_idle_conversations_are_forgotten_least_recently_used_first():
    order: TimeOrder[Ev] = TimeOrder(window_seconds=1.0, max_conversations=2)
    for n, conversation in enumerate("abc"):
        push(order, Ev(conversation, 500, n), now=float(n))
        order.expire(float(n + 1))
    assert order.statistics().conversations == 2
    # "a" was forgotten: its older event is not recognised as late; "c" is remembered
    assert push(order, Ev("a", 100, 10), now=5.0) == []
    assert names(push(order, Ev("c", 100, 11), now=5.0)) == [11]
    assert order.statistics().late == 1


def test_a_late_sighting_keeps_an_idle_conversation_remembered():
    order: TimeOrder[Ev] = TimeOrder(window_seconds=0.0, max_conversations=2)
    for n, conversation in enumerate("ab"):
        push(order, Ev(conversation, 500, n), now=0.0)
    order.expire(0.0)
    push(order, Ev("a", 100, 2), now=0.0)  # late: "a" becomes the most recently used
    push(order, Ev("c", 500, 3), now=0.0)
    order.expire(0.0)
    assert names(push(order, Ev("a", 100, 4), now=0.0)) == [4]  # still known: late


def test_remembering_nothing_is_allowed():
    order: TimeOrder[Ev] = TimeOrder(window_seconds=0.0, max_conversations=0)
    push(order, Ev("a", 500, 1))
    order.expire(0.0)
    assert order.statistics().conversations == 0


def test_a_clock_going_backwards_does_not_reorder_arrivals():
    order: TimeOrder[Ev] = TimeOrder(window_seconds=1.0)
    push(order, Ev("a", 100, 1), now=10.0)
    push(order, Ev("b", 100, 2), now=5.0)  # stamped 10.0
    assert order.deadline() == 11.0
    assert names(order.expire(11.0)) == [1, 2]


def test_drain_releases_everything_per_conversation_in_order():
    order: TimeOrder[Ev] = TimeOrder(window_seconds=60.0)
    push(order, Ev("a", 300, 1))
    push(order, Ev("b", 200, 2))
    push(order, Ev("a", 100, 3))
    assert names(order.drain()) == [3, 1, 2]
    assert order.drain() == []
    stats = order.statistics()
    assert (stats.drained, stats.released, stats.held) == (3, 3, 0)


def test_settings_give_the_window():
    order: TimeOrder[Ev] = TimeOrder.from_settings(
        NotificationsSettings(reorder_window=3.5), max_held=7
    )
    assert (order.window_seconds, order.max_held) == (3.5, 7)


@pytest.mark.parametrize(
    "kwargs", [{"window_seconds": -1.0}, {"max_held": 0}, {"max_conversations": -1}]
)
def test_impossible_bounds_are_refused(kwargs):
    with pytest.raises(ValueError, match="must"):
        TimeOrder(**kwargs)


# -- properties ----------------------------------------------------------------------------------

operations = st.lists(
    st.one_of(
        st.tuples(
            st.just("push"),
            st.sampled_from("abcd"),
            st.integers(0, 20),  # few distinct times: many ties
            st.floats(0, 1.5),  # time passing before this push
        ),
        st.tuples(st.just("expire"), st.just(""), st.just(0), st.floats(0, 3)),
    ),
    max_size=120,
)


@given(
    ops=operations,
    window=st.sampled_from([0.0, 0.5, 2.0]),
    max_held=st.integers(1, 8),
    max_conversations=st.sampled_from([0, 2, 100]),
)
@settings(max_examples=400, suppress_health_check=[HealthCheck.too_slow])
def test_nothing_is_lost_or_duplicated_and_order_holds_except_for_late(
    ops, window, max_held, max_conversations
):
    order: TimeOrder[Ev] = TimeOrder(
        window_seconds=window, max_held=max_held, max_conversations=max_conversations
    )
    remembers_all = max_conversations >= 4  # only then is every late item recognised
    now = 0.0
    pushed: list[Ev] = []
    released: list[Ev] = []
    late: set[int] = set()
    newest: dict[str, int] = {}  # the test's own view: newest time released per conversation

    def record(items: list[Ev]) -> None:
        for item in items:
            released.append(item)
            newest[item.conversation] = max(newest.get(item.conversation, -1), item.time_ms)

    for op, conversation, time_ms, step in ops:
        now += step
        if op == "expire":
            record(order.expire(now))
            deadline = order.deadline()
            assert deadline is None or deadline > now  # nothing due is left behind
        else:
            ev = Ev(conversation, time_ms, len(pushed))
            pushed.append(ev)
            late_before = order.statistics().late
            out = order.push(conversation, time_ms, ev, now)
            # what was released before this item: earlier outputs, and the ones this push let
            # go first (their window had passed)
            before = out[: out.index(ev)] if ev in out else out
            older = time_ms < max(
                [newest.get(conversation, -1)]
                + [i.time_ms for i in before if i.conversation == conversation]
            )
            counted = order.statistics().late - late_before
            if counted:
                late.add(ev.n)
                assert out[-1] == ev  # released at once
            assert counted <= older  # never invents lateness
            if remembers_all:
                assert counted == older  # and misses none while it remembers
            record(out)
        stats = order.statistics()
        assert stats.held <= max_held  # bounded memory
        assert stats.conversations <= stats.held + max_conversations
        assert stats.released + stats.held == stats.pushed
    record(order.drain())
    assert order.held == 0

    assert sorted(i.n for i in released) == list(range(len(pushed)))  # each once
    assert order.statistics().released == len(pushed)
    assert order.statistics().late == len(late)
    if not remembers_all:
        return  # a forgotten conversation's old event is not late, and not in order
    for conversation in "abcd":
        in_order = [
            (i.time_ms, i.n) for i in released if i.conversation == conversation and i.n not in late
        ]
        assert in_order == sorted(in_order)  # by time; equal times in arrival order


@given(items=st.lists(st.tuples(st.sampled_from("abc"), st.integers(0, 50)), max_size=60))
@settings(max_examples=200)
def test_with_no_time_passing_every_conversation_drains_sorted_and_none_is_late(items):
    """Without overflow or expiry nothing is released early, so nothing can be late."""
    order: TimeOrder[Ev] = TimeOrder(window_seconds=1.0, max_held=max(len(items), 1))
    for n, (conversation, time_ms) in enumerate(items):
        assert push(order, Ev(conversation, time_ms, n), now=0.0) == []
    out = order.drain()
    assert len(out) == len(items)
    assert order.statistics().late == 0
    for conversation in "abc":
        keys = [(i.time_ms, i.n) for i in out if i.conversation == conversation]
        assert keys == sorted(keys)
