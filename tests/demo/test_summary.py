"""The demo's verdict: a lost event, a duplicate, an unaccounted frame or a bad audit fails it."""

from __future__ import annotations

from typing import Any

from ivrstream.demo.summary import Assigned, Evidence, GapInfo, Journaled, build_summary

SUB = "sub-1"


def audit(ok: bool = True, events: int = 10, **counts: int) -> dict[str, Any]:
    return {
        "ok": ok,
        "chain": {
            "records": events + 5,
            "checkpoints": 1,
            "signed_checkpoints": 1,
            "signatures_checked": True,
            "first_failure": None,
        },
        "journal": {
            "ok": ok,
            "journal_events": events,
            "audit_events": events + counts.get("DUPLICATE", 0),
            "counts": {
                "NO_AUDIT_RECORD": 0,
                "DUPLICATE": 0,
                "HASH_MISMATCH": 0,
                "NOT_IN_JOURNAL": 0,
                **counts,
            },
        },
    }


def evidence(n: int = 10, **changes: Any) -> Evidence:
    """A clean run of ``n`` events: everything everywhere once, one malformed frame quarantined."""
    journal = [Journaled(f"e{i}", SUB, i, f"c{i % 3}") for i in range(1, n + 1)]
    ids = [j.event_id for j in journal]
    base = {
        "facts_generated": n + 3,
        "assigned": [Assigned(SUB, i, f"c{i % 3}") for i in range(1, n + 1)],
        "journal": journal,
        "gaps": [],
        "quarantined": {"invalid JSON": 1},
        "malformed_sent": 1,
        "frames": {"duplicate": 2, "early": 1, "late": 0},
        "injected": {"duplicate": 2, "reorder": 1},
        "sinks": {"webhook": list(ids), "jsonl": list(ids)},
        "redeliveries": {"webhook": 3},
        "audit": audit(events=n),
    }
    base.update(changes)
    return Evidence(**base)


def test_a_clean_run_is_ok():
    summary = build_summary(evidence())
    assert summary["ok"], summary["problems"]
    assert summary["problems"] == []
    assert summary["generated"] == {"facts": 13, "events": 10}
    assert summary["lost"] == summary["duplicates"] == 0
    assert summary["journal"]["events"] == 10
    assert summary["delivered"]["webhook"]["delivered"] == 10
    assert summary["delivered"]["webhook"]["redeliveries_absorbed"] == 3  # absorbed: not a fault
    assert summary["delivered"]["audit"]["delivered"] == 10
    assert summary["received"]["frames_absorbed"]["duplicate"] == 2
    assert summary["quarantined"]["accounted"]
    assert summary["gaps"] == {
        "opened": 0,
        "states": {},
        "missing_in_gaps": 0,
        "missing_outside_gaps": 0,
        "accounted": True,
    }
    assert summary["audit"]["intact"]


def test_an_event_never_journaled_is_lost_and_silent_without_a_gap():
    ev = evidence()
    ev.journal = [j for j in ev.journal if j.seq != 4]
    for name in ev.sinks:
        ev.sinks[name] = [i for i in ev.sinks[name] if i != "e4"]
    summary = build_summary(ev)
    assert not summary["ok"]
    assert summary["journal"]["lost"] == summary["lost"] == 1
    assert not summary["gaps"]["accounted"]
    assert any("never journaled" in p for p in summary["problems"])
    assert any("outside any recorded gap" in p for p in summary["problems"])


def test_a_lost_event_inside_a_recorded_gap_is_accounted_for_but_still_lost():
    ev = evidence(gaps=[GapInfo("lost", [[4, 4]]), GapInfo("filled", [])])
    ev.journal = [j for j in ev.journal if j.seq != 4]
    summary = build_summary(ev)
    assert summary["gaps"]["accounted"]
    assert summary["gaps"]["states"] == {"filled": 1, "lost": 1}
    assert summary["gaps"]["missing_in_gaps"] == 1
    assert not summary["ok"]
    assert summary["lost"] == 1


def test_a_sequence_id_journaled_twice_is_a_duplicate():
    ev = evidence()
    ev.journal.append(Journaled("e4-again", SUB, 4, "c1", recovered=True))
    summary = build_summary(ev)
    assert summary["journal"]["duplicates"] == 1
    assert summary["duplicates"] >= 1
    assert not summary["ok"]


def test_a_sink_that_stores_an_event_twice_or_misses_one_fails():
    ev = evidence()
    ev.sinks["webhook"].append("e2")
    ev.sinks["jsonl"].remove("e7")
    summary = build_summary(ev)
    assert summary["delivered"]["webhook"]["duplicates"] == 1
    assert summary["delivered"]["jsonl"]["lost"] == 1
    assert summary["lost"] == 1
    assert summary["duplicates"] == 1
    assert "webhook: 1 duplicates" in summary["problems"]
    assert "jsonl: 1 lost" in summary["problems"]
    assert not summary["ok"]


def test_events_nobody_sequenced_are_unexpected():
    ev = evidence()
    ev.sinks["webhook"].append("phantom")
    ev.journal.append(Journaled("x", SUB, 99, "c0"))
    ev.journal[0] = Journaled("e1", SUB, 1, "another-conversation")
    summary = build_summary(ev)
    assert summary["journal"]["unexpected"] == 2
    assert summary["delivered"]["webhook"]["unexpected"] == 1
    assert not summary["ok"]


def test_late_events_may_come_out_of_order_but_live_ones_may_not():
    ev = evidence()
    ev.journal[2], ev.journal[3] = ev.journal[3], ev.journal[2]
    assert build_summary(ev)["journal"]["out_of_order"] == 1
    ev.journal[2] = Journaled("e4", SUB, 4, "c1", recovered=True)
    assert build_summary(ev)["journal"]["out_of_order"] == 0


def test_quarantine_must_match_the_malformed_frames_injected():
    assert not build_summary(evidence(malformed_sent=2))["ok"]
    summary = build_summary(evidence(quarantined={"invalid JSON": 1, "invalid event": 1}))
    assert not summary["quarantined"]["accounted"]
    assert any(p.startswith("quarantine:") for p in summary["problems"])


def test_an_audit_that_does_not_verify_fails_the_demo():
    summary = build_summary(evidence(audit=audit(ok=False, NO_AUDIT_RECORD=1)))
    assert not summary["audit"]["intact"]
    assert summary["delivered"]["audit"]["lost"] == 1
    assert not summary["ok"]
    summary = build_summary(evidence(audit=audit(ok=False, DUPLICATE=2)))
    assert summary["delivered"]["audit"]["duplicates"] == 2


def test_an_empty_journal_is_never_ok():
    summary = build_summary(evidence(n=0, audit=audit(events=0)))
    assert not summary["ok"]
    assert any("empty" in p for p in summary["problems"])
