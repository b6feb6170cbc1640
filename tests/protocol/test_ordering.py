"""Ordering: every rule of ``protocol.ordering``, then a property over any arrival order."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ivrstream.protocol.ordering import Disposition, Gap, Ordering, Outcome


def seqs(out: Outcome[str]) -> list[int]:
    return [r.seq for r in out.released]


def ranges(gap: Gap) -> list[tuple[int, int]]:
    return [(a, b) for a, b in gap.missing]


def feed(ordering: Ordering[str], *ids: int, now: float = 0.0) -> list[Outcome[str]]:
    """Accept ``ids`` in turn, event time = 1000 × id, item = ``"e<id>"``."""
    return [ordering.accept(i, f"e{i}", 1000 * i, now) for i in ids]


# -- next ----------------------------------------------------------------------------------------


def test_next_frames_are_released_at_once_and_move_high():
    o: Ordering[str] = Ordering()
    outs = feed(o, 1, 2, 3)
    assert [out.disposition for out in outs] == [Disposition.NEXT] * 3
    assert [seqs(out) for out in outs] == [[1], [2], [3]]
    assert [r.item for out in outs for r in out.released] == ["e1", "e2", "e3"]
    assert not any(r.recovered for out in outs for r in out.released)
    assert (o.high, o.high_time) == (3, 3000)
    assert o.stats.next == 3
    assert o.gaps == []
    assert o.held == 0


def test_a_frame_without_event_time_keeps_the_last_known_time():
    o: Ordering[str] = Ordering()
    o.accept(1, "a", 5_000, 0.0)
    o.accept(2, "b", None, 0.0)
    assert (o.high, o.high_time) == (2, 5_000)


def test_next_continues_from_a_restored_high():
    o: Ordering[str] = Ordering(high=41, high_time=7)
    out = o.accept(42, "x", None, 0.0)
    assert out.disposition is Disposition.NEXT
    assert seqs(out) == [42]


# -- duplicate -----------------------------------------------------------------------------------


@pytest.mark.parametrize("seq", [1, 2, 3])
def test_a_frame_at_or_below_high_outside_any_gap_is_a_duplicate(seq):
    o: Ordering[str] = Ordering()
    feed(o, 1, 2, 3)
    out = o.accept(seq, "again", 1, 0.0)
    assert out.disposition is Disposition.DUPLICATE
    assert (out.released, out.opened, out.changed) == ([], [], [])
    assert o.stats.duplicate == 1
    assert o.high == 3


def test_a_second_copy_of_a_held_frame_is_a_duplicate_and_the_first_copy_wins():
    o: Ordering[str] = Ordering()
    feed(o, 1)
    assert o.accept(3, "first", 3000, 0.0).disposition is Disposition.EARLY
    out = o.accept(3, "second", 3000, 0.0)
    assert out.disposition is Disposition.DUPLICATE
    assert o.held == 1
    assert (o.stats.early, o.stats.duplicate) == (1, 1)
    released = o.accept(2, "two", 2000, 0.0).released
    assert [(r.seq, r.item) for r in released] == [(2, "two"), (3, "first")]


# -- early: held, then released in order ---------------------------------------------------------


def test_early_frames_are_held_then_released_in_sequence_when_the_hole_fills():
    o: Ordering[str] = Ordering()
    feed(o, 1)
    for seq in (5, 3, 4):
        out = o.accept(seq, f"e{seq}", 1000 * seq, 0.0)
        assert out.disposition is Disposition.EARLY
        assert out.released == []
    assert o.held == 3
    assert o.high == 1
    out = o.accept(2, "e2", 2000, 0.0)
    assert out.disposition is Disposition.NEXT
    assert seqs(out) == [2, 3, 4, 5]
    assert [r.item for r in out.released] == ["e2", "e3", "e4", "e5"]
    assert not any(r.recovered for r in out.released)
    assert (o.high, o.high_time, o.held) == (5, 5000, 0)
    assert o.gaps == []
    assert (o.stats.early, o.stats.next) == (3, 2)


def test_the_run_stops_at_the_next_hole():
    o: Ordering[str] = Ordering()
    feed(o, 1, 3, 5)
    out = o.accept(2, "e2", 2000, 0.0)
    assert seqs(out) == [2, 3]
    assert o.high == 3
    assert o.held == 1  # 5 waits for 4


# -- the window: overflow by size ----------------------------------------------------------------


def test_window_overflow_turns_the_first_hole_into_a_gap_and_moves_the_held_frames_on():
    o: Ordering[str] = Ordering(window_size=2)
    feed(o, 1)
    assert seqs(o.accept(4, "e4", 4000, 1.0)) == []
    assert seqs(o.accept(5, "e5", 5000, 1.0)) == []
    out = o.accept(7, "e7", 7000, 1.5)  # a third held frame: one too many
    assert out.disposition is Disposition.EARLY
    assert seqs(out) == [4, 5]
    [gap] = out.opened
    assert (gap.first, gap.last, gap.size) == (2, 3, 2)
    assert ranges(gap) == [(2, 3)]
    assert gap.opened_at == 1.5
    assert (gap.time_from, gap.time_to) == (1000, 4000)  # last before, first after
    assert not gap.resend_requested
    assert o.gaps == [gap]
    assert (o.high, o.held) == (5, 1)  # 7 still waits for 6: the window has room again
    assert o.stats.gaps_opened == 1


def test_a_window_of_one_frame_overflows_on_the_second_held_frame():
    o: Ordering[str] = Ordering(window_size=1)
    feed(o, 1)
    assert o.accept(3, "e3", 3000, 0.0).opened == []
    out = o.accept(6, "e6", 6000, 0.0)
    assert [(g.first, g.last) for g in out.opened] == [(2, 2)]
    assert seqs(out) == [3]
    assert o.held == 1


def test_the_window_rejects_impossible_sizes():
    with pytest.raises(ValueError, match="at least one frame"):
        Ordering(window_size=0)
    with pytest.raises(ValueError, match="at least one frame"):
        Ordering(window_seconds=-0.1)


# -- the window: expiry by time ------------------------------------------------------------------


def test_deadline_is_none_when_nothing_is_held():
    o: Ordering[str] = Ordering(window_seconds=2.0)
    assert o.deadline() is None
    feed(o, 1, 2)
    assert o.deadline() is None
    assert o.expire(1e9).released == []


def test_deadline_is_the_oldest_held_frame_plus_the_window():
    o: Ordering[str] = Ordering(window_seconds=2.0)
    feed(o, 1)
    o.accept(5, "e5", 5000, 10.0)
    o.accept(3, "e3", 3000, 11.0)
    assert o.deadline() == 12.0


def test_expire_before_the_deadline_does_nothing_and_at_the_deadline_opens_the_gap():
    o: Ordering[str] = Ordering(window_seconds=2.0)
    feed(o, 1)
    o.accept(3, "e3", 3000, 10.0)
    early = o.expire(11.999)
    assert (early.released, early.opened) == ([], [])
    assert o.held == 1
    out = o.expire(12.0)
    assert seqs(out) == [3]
    assert not out.released[0].recovered
    [gap] = out.opened
    assert (gap.first, gap.last, gap.opened_at) == (2, 2, 12.0)
    assert (gap.time_from, gap.time_to) == (1000, 3000)
    assert o.deadline() is None
    assert o.stats.window_expired == 1


def test_expire_releases_only_what_is_too_old_and_keeps_the_rest_waiting():
    o: Ordering[str] = Ordering(window_seconds=2.0)
    feed(o, 1)
    o.accept(3, "e3", 3000, 0.0)
    o.accept(6, "e6", 6000, 1.0)
    out = o.expire(2.5)
    assert seqs(out) == [3]
    assert [(g.first, g.last) for g in out.opened] == [(2, 2)]
    assert o.held == 1
    assert o.deadline() == 3.0
    out = o.expire(3.0)
    assert seqs(out) == [6]
    assert [(g.first, g.last) for g in out.opened] == [(4, 5)]
    assert [(g.first, g.last) for g in o.gaps] == [(2, 2), (4, 5)]


def test_an_old_frame_behind_a_young_one_releases_both_in_sequence():
    o: Ordering[str] = Ordering(window_seconds=2.0)
    feed(o, 1)
    o.accept(6, "e6", 6000, 0.0)  # old
    o.accept(3, "e3", 3000, 1.9)  # young, but first in sequence
    out = o.expire(2.0)
    assert seqs(out) == [3, 6]
    assert [(g.first, g.last) for g in out.opened] == [(2, 2), (4, 5)]
    assert o.held == 0


def test_a_zero_second_window_expires_at_once():
    o: Ordering[str] = Ordering(window_seconds=0.0)
    feed(o, 1)
    o.accept(3, "e3", 3000, 5.0)
    assert o.deadline() == 5.0
    assert seqs(o.expire(5.0)) == [3]


# -- late: a frame that fills a gap ---------------------------------------------------------------


def gapped(first_missing: int = 2, last_missing: int = 6) -> Ordering[str]:
    """An ordering that has journaled 1 and ``last_missing + 1`` with the ids between missing."""
    o: Ordering[str] = Ordering(window_size=1)
    feed(o, 1, last_missing + 1)
    o.accept(last_missing + 2, "next-held", None, 0.0)  # overflow: the hole becomes a gap
    o.accept(last_missing + 2, "dup", None, 0.0)
    assert [(g.first, g.last) for g in o.gaps] == [(first_missing, last_missing)]
    return o


def test_a_late_frame_inside_a_gap_is_released_at_once_and_flagged_recovered():
    o = gapped()
    [gap] = o.gaps
    high = o.high
    out = o.accept(4, "e4", 4000, 9.0)
    assert out.disposition is Disposition.LATE
    assert [(r.seq, r.item, r.recovered) for r in out.released] == [(4, "e4", True)]
    assert out.changed == [gap]
    assert out.opened == []
    assert ranges(gap) == [(2, 3), (5, 6)]  # the missing range split around 4
    assert gap.filled == 1
    assert not gap.is_filled
    assert o.gaps == [gap]
    assert o.high == high  # late frames never move high
    assert o.stats.late == 1


def test_filling_the_ends_of_a_missing_range_shrinks_it():
    o = gapped()
    [gap] = o.gaps
    o.accept(2, "e2", None, 0.0)
    assert ranges(gap) == [(3, 6)]
    o.accept(6, "e6", None, 0.0)
    assert ranges(gap) == [(3, 5)]


def test_a_second_copy_of_a_late_frame_is_a_duplicate():
    o = gapped()
    o.accept(4, "e4", None, 0.0)
    out = o.accept(4, "e4 again", None, 0.0)
    assert out.disposition is Disposition.DUPLICATE
    assert out.released == []
    assert o.stats.duplicate == 2  # one from building the fixture


def test_the_last_missing_id_fills_the_gap_and_closes_it():
    o = gapped()
    [gap] = o.gaps
    for seq in (5, 2, 6, 3):
        assert o.accept(seq, f"e{seq}", None, 0.0).disposition is Disposition.LATE
        assert o.gaps == [gap]
    out = o.accept(4, "e4", None, 0.0)
    assert out.changed == [gap]
    assert gap.is_filled
    assert gap.missing == []
    assert gap.filled == 5
    assert o.gaps == []
    assert o.stats.gaps_filled == 1
    assert o.accept(4, "e4", None, 0.0).disposition is Disposition.DUPLICATE


def test_gap_fill_reports_what_was_not_missing():
    gap = Gap(10, 12, 0.0, None, None)
    assert ranges(gap) == [(10, 12)]
    assert gap.size == 3
    assert not gap.fill(9)
    assert not gap.fill(13)
    assert gap.fill(11)
    assert not gap.fill(11)
    assert ranges(gap) == [(10, 10), (12, 12)]
    assert [gap.contains(seq) for seq in (10, 11, 12)] == [True, False, True]
    assert gap.filled == 1


def test_gaps_restored_from_the_journal_are_filled_by_late_frames():
    saved = Gap(3, 8, 0.0, None, None, missing=[[3, 4], [7, 8]], filled=2)
    o: Ordering[str] = Ordering(high=20, gaps=[saved])
    assert o.accept(5, "x", None, 0.0).disposition is Disposition.DUPLICATE
    out = o.accept(7, "y", None, 0.0)
    assert out.disposition is Disposition.LATE
    assert ranges(saved) == [(3, 4), (8, 8)]
    assert saved.filled == 3


# -- resend requests -----------------------------------------------------------------------------


def two_gaps() -> Ordering[str]:
    o: Ordering[str] = Ordering(window_seconds=1.0)
    feed(o, 1)
    o.accept(4, "e4", None, 0.0)
    o.accept(7, "e7", None, 0.0)
    o.expire(1.0)
    assert [(g.first, g.last) for g in o.gaps] == [(2, 3), (5, 6)]
    assert o.high == 7
    return o


def test_resume_after_is_high_when_no_gap_is_open():
    o: Ordering[str] = Ordering()
    assert o.resume_after() == 0
    feed(o, 1, 2, 3)
    assert o.resume_after() == 3
    assert not o.wants_resend()


def test_resume_after_points_before_the_oldest_gap_exactly_once():
    o = two_gaps()
    assert o.wants_resend()
    assert o.resume_after() == 1  # just before gap 2..3, so 5..6 is re-sent too
    assert all(g.resend_requested for g in o.gaps)
    assert not o.wants_resend()
    assert o.resume_after() == 7  # each gap is worth one request
    assert o.resume_after() == 7


def test_resume_after_chooses_the_lowest_gap_not_the_first_opened():
    o: Ordering[str] = Ordering(
        high=50,
        gaps=[Gap(30, 31, 0.0, None, None), Gap(10, 12, 1.0, None, None)],
    )
    assert o.resume_after() == 9


def test_resume_after_skips_gaps_already_asked_for():
    o = two_gaps()
    o.mark_resend_requested(o.gaps[0])
    assert o.wants_resend()
    assert o.resume_after() == 4  # before 5..6
    assert not o.wants_resend()


def test_resume_after_without_a_request_changes_nothing():
    o = two_gaps()
    assert o.resume_after(request_resend=False) == 7
    assert o.wants_resend()
    assert not any(g.resend_requested for g in o.gaps)


def test_a_new_gap_after_a_request_is_worth_a_request_of_its_own():
    o = two_gaps()
    o.resume_after()
    o.accept(10, "e10", None, 2.0)
    o.expire(3.0)
    assert o.wants_resend()
    assert o.resume_after() == 7
    assert not o.wants_resend()


# -- a restarted server sequence -----------------------------------------------------------------


def test_restart_epoch_records_an_unbounded_gap_and_continues_from_the_server():
    o: Ordering[str] = Ordering()
    feed(o, 1, 2, 3)
    out = o.restart_epoch(1, now=5.0)
    [gap] = out.opened
    assert (gap.first, gap.last, gap.size, gap.opened_at) == (4, None, None, 5.0)
    assert (gap.time_from, gap.time_to) == (3000, None)
    assert not gap.is_filled
    assert o.gaps == [gap]
    assert o.high == 1
    assert (o.stats.epochs, o.stats.gaps_opened) == (1, 1)
    assert not o.wants_resend()  # nothing the server can re-send
    assert o.resume_after() == 1
    out = o.accept(2, "new 2", None, 6.0)
    assert out.disposition is Disposition.NEXT
    assert seqs(out) == [2]
    assert not gap.contains(4)  # an unbounded gap is never filled by the new epoch's ids


def test_restart_epoch_still_journals_the_frames_held_from_the_old_epoch():
    o: Ordering[str] = Ordering()
    feed(o, 1)
    o.accept(3, "old 3", 3000, 0.0)
    o.accept(5, "old 5", 5000, 0.0)
    out = o.restart_epoch(0, now=1.0)
    assert [(r.seq, r.item) for r in out.released] == [(3, "old 3"), (5, "old 5")]
    assert [(g.first, g.last) for g in out.opened] == [(2, 2), (4, 4), (6, None)]
    assert o.held == 0
    assert o.high == 0
    assert not o.wants_resend()  # the new server cannot re-send the old epoch's ids
    assert o.resume_after() == 0
    assert seqs(o.accept(1, "new 1", None, 1.0)) == [1]


def test_after_a_restart_resume_after_never_points_into_the_old_epoch():
    o: Ordering[str] = Ordering(high=1_000, gaps=[Gap(900, 950, 0.0, None, None)])
    o.accept(1_005, "old 1005", None, 0.0)
    out = o.restart_epoch(10, now=1.0)
    assert [r.seq for r in out.released] == [1_005]
    old = o.gaps[0]
    assert out.changed == [old]  # the shell saves its new resend_requested
    assert old.resend_requested
    assert o.resume_after() == 10  # not 899 or 1000: the new epoch's 11..1000 must not be skipped


# -- declaring a gap lost ------------------------------------------------------------------------


def test_declare_lost_stops_waiting_for_a_gap():
    o = two_gaps()
    first, second = o.gaps
    o.declare_lost(first)
    assert o.gaps == [second]
    out = o.accept(2, "too late", None, 9.0)
    assert out.disposition is Disposition.DUPLICATE  # no longer awaited
    assert out.released == []
    assert o.resume_after() == 4  # only the remaining gap is asked for
    o.declare_lost(first)  # twice: harmless
    assert o.gaps == [second]


# -- any arrival order ---------------------------------------------------------------------------


@st.composite
def arrivals(draw: st.DrawFn) -> tuple[int, int, float, list[tuple[str, int, float]]]:
    """N, window size and seconds, and a script of ("frame", id, dt) / ("expire", 0, dt)."""
    n = draw(st.integers(1, 40))
    delivered = draw(st.lists(st.integers(1, n), max_size=3 * n))  # loss and duplication
    delivered = draw(st.permutations(delivered))
    script: list[tuple[str, int, float]] = []
    for seq in delivered:
        if draw(st.integers(0, 5)) == 0:
            script.append(("expire", 0, draw(st.floats(0, 3))))
        script.append(("frame", seq, draw(st.floats(0, 1))))
    return n, draw(st.integers(1, 6)), draw(st.floats(0, 3)), script


@settings(max_examples=400, deadline=None)
@given(arrivals())
def test_any_arrival_order_is_released_once_in_order_with_every_hole_in_one_gap(case):
    _, window_size, window_seconds, script = case
    o: Ordering[int] = Ordering(window_size=window_size, window_seconds=window_seconds)
    released: list[tuple[int, bool]] = []
    delivered: set[int] = set()
    now = 0.0
    for kind, seq, dt in script:
        now += dt
        if kind == "expire":
            out = o.expire(now)
        else:
            delivered.add(seq)
            out = o.accept(seq, seq, seq * 10, now)
            assert out.disposition is not None
        assert all(r.item == r.seq for r in out.released)
        released.extend((r.seq, r.recovered) for r in out.released)
        deadline = o.deadline()
        assert deadline is None or o.held > 0
    released.extend((r.seq, r.recovered) for r in o.expire(now + 1e9).released)
    assert o.held == 0
    assert o.deadline() is None

    ids = [seq for seq, _ in released]
    assert len(ids) == len(set(ids))  # (a) at most once
    in_order = [seq for seq, recovered in released if not recovered]
    assert in_order == sorted(set(in_order))  # (b) strictly increasing
    assert set(ids) == delivered  # (c) everything delivered is released
    assert o.high == max(delivered, default=0)

    owners: dict[int, int] = {}
    for index, gap in enumerate(o.gaps):
        assert gap.last is not None
        assert gap.first <= gap.last < o.high
        for a, b in gap.missing:
            assert gap.first <= a <= b <= gap.last
            for seq in range(a, b + 1):
                assert seq not in owners  # (e) gaps never overlap
                owners[seq] = index
    never = set(range(1, o.high + 1)) - delivered
    assert set(owners) == never  # (d) every hole lies in exactly one gap, and nothing else does
    for seq in never:
        assert sum(g.contains(seq) for g in o.gaps) == 1

    stats = o.stats
    frames = sum(1 for kind, _, _ in script if kind == "frame")
    assert stats.next + stats.early + stats.late + stats.duplicate == frames
    assert stats.next + stats.early + stats.late == len(delivered)
    assert stats.gaps_opened - stats.gaps_filled == len(o.gaps)
