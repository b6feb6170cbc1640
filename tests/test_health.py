"""Readiness, rates, last arrivals and history, decided without I/O."""

from __future__ import annotations

import pytest

from ivrstream.health import Activity, History, Rates, readiness


def verdict(**overrides):
    args = {
        "journal_error": None,
        "has_source": True,
        "connected": True,
        "state": "streaming",
        "silent_for": 1.0,
        "idle_limit": 5.0,
    }
    args.update(overrides)
    return readiness(**args)


def test_ready_when_connected_and_something_arrived_within_the_idle_limit():
    assert verdict().ok
    assert verdict().reason is None
    assert verdict(silent_for=5.0).ok


@pytest.mark.parametrize(
    ("overrides", "reason"),
    [
        ({"journal_error": "disk I/O error"}, "the journal cannot be written: disk I/O error"),
        ({"connected": False, "state": "waiting"}, "not connected (source waiting)"),
        ({"silent_for": 7.25}, "no event or heartbeat for 7.2s (idle limit 5s)"),
        ({"silent_for": None}, "no event or heartbeat for ever (idle limit 5s)"),
    ],
)
def test_not_ready_says_why(overrides, reason):
    result = verdict(**overrides)
    assert not result.ok
    assert result.reason == reason
    assert result.as_dict() == {"ready": False, "reason": reason}


def test_the_journal_comes_first_then_the_connection():
    result = verdict(journal_error="full", connected=False, silent_for=None)
    assert result.reason is not None
    assert result.reason.startswith("the journal")
    assert verdict(connected=False, silent_for=None).reason.startswith("not connected")


def test_without_a_source_only_the_journal_matters():
    assert verdict(has_source=False, connected=False, silent_for=None).ok
    assert not verdict(has_source=False, journal_error="x").ok


def test_activity_counts_changes_after_the_first_sample():
    activity = Activity()
    activity.observe(10, now=1.0)
    assert activity.since(2.0) is None  # a baseline, not an arrival
    activity.observe(10, now=2.0)
    assert activity.since(3.0) is None
    activity.observe(11, now=3.0)
    assert activity.since(4.5) == 1.5
    activity.touch(4.0)
    activity.touch(3.5)  # never moves back
    assert activity.since(5.0) == 1.0


def test_rates_over_windows_from_cumulative_samples():
    rates = Rates((1.0, 60.0))
    assert rates.rate(1.0) is None
    for step in range(0, 121):  # 100 per second, sampled every 0.5 s, for 60 s
        rates.add(step * 0.5, step * 50)
    assert rates.rate(1.0) == pytest.approx(100.0)
    assert rates.rate(60.0) == pytest.approx(100.0)
    rates.add(61.0, 6_000)  # nothing for a second
    assert rates.rate(1.0) == pytest.approx(0.0)
    assert rates.rate(60.0) == pytest.approx(6_000 / 61.0, rel=0.02)
    assert rates.summary() == {"1s": 0.0, "1m": pytest.approx(98.36, rel=0.02)}
    assert len(rates._samples) <= 124  # bounded by the longest window


def test_history_keeps_the_newest_entries():
    history = History(limit=3)
    for i in range(5):
        history.add(float(i), "reconnecting", attempt=i)
    assert [e["attempt"] for e in history.entries()] == [2, 3, 4]
    assert history.total == 5
    assert history.entries()[0] == {"at": 2.0, "event": "reconnecting", "attempt": 2}
