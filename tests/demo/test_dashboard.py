"""The demo dashboard reads well in 80 columns: the live frame, log lines and the summary."""

from __future__ import annotations

import io

from rich.console import Console

from ivrstream.demo import dashboard
from ivrstream.demo.probe import FlowLine, SinkLine, Snapshot
from ivrstream.demo.summary import build_summary
from tests.demo.test_summary import evidence


def snapshot(**changes) -> Snapshot:
    base = {
        "elapsed": 14.2,
        "duration": 30.0,
        "phase": "running",
        "connection": "streaming",
        "rate": 1234.5,
        "committed": 123_456,
        "p50_ms": 2.8,
        "p99_ms": 123.4,
        "reconnects": 12,
        "gaps_opened": 10,
        "gaps_open": 2,
        "quarantined": 25,
        "duplicates": 1_234,
        "reordered": 1_234,
        "sinks": (
            SinkLine("webhook", "retrying", 118_000, 34_000, 123, 0),
            SinkLine("jsonl", "idle", 123_456, 0, 0, 0),
            SinkLine("audit", "delivering", 123_456, 0, 0, 0),
        ),
        "receiver_stored": 118_000,
        "receiver_failures": 123,
        "outage_left": 2.1,
        "flows": (
            FlowLine("After Hours IVR", 4, 10, 6),
            FlowLine("A flow whose name goes on and on and on", 3, 9, 6),
            FlowLine("Main IVR", 5, 25, 20),
        ),
        "last_injection": "token expiry at 16.5 s",
        "next_injection": "receiver outage at 20.4 s",
    }
    base.update(changes)
    return Snapshot(**base)


def rendered(renderable) -> str:
    console = Console(width=80, record=True, file=io.StringIO(), color_system=None)
    console.print(renderable)
    return console.export_text()


def widest(text: str) -> int:
    return max(len(line.rstrip()) for line in text.splitlines())


def test_a_frame_fits_80_columns_and_a_terminal_height():
    text = rendered(dashboard.frame(snapshot()))
    assert widest(text) <= 80
    assert len(text.splitlines()) <= 24
    for shown in ("1,234.5 ev/s", "123,456", "123.4 ms", "webhook", "retrying", "34,000", "OUTAGE"):
        assert shown in text
    assert "Main IVR" in text
    assert "next: receiver outage at 20.4 s" in text


def test_a_frame_before_any_call_and_after_the_end():
    text = rendered(dashboard.frame(snapshot(flows=(), phase="draining", p50_ms=None)))
    assert "(no calls yet)" in text
    assert "draining" in text
    assert "–" in text


def test_log_lines_fit_80_columns_even_with_big_numbers():
    lines = dashboard.log_lines(snapshot(committed=12_345_678, reconnects=1_000))
    assert all(len(line) <= 80 for line in lines)
    assert lines[0].startswith("[  14.2s]")
    assert "webhook 118,000 (+34,000)" in lines[-1]
    assert "jsonl 123,456 ·" in lines[-1]  # no backlog, nothing shown for it


def test_an_injection_line_is_cut_to_80_columns():
    line = dashboard.injection_line(3.0, "disconnect", "x" * 200)
    assert line.startswith("[   3.0s] >> disconnect: xxx")
    assert len(line) == 80
    assert line.endswith("…")


def test_the_summary_fits_80_columns_and_names_each_problem():
    ok = rendered(dashboard.summary_view(build_summary(evidence())))
    assert widest(ok) <= 80
    assert "OK: nothing lost (0), nothing duplicated (0), audit intact" in ok
    ev = evidence()
    ev.sinks["jsonl"].remove("e3")
    failed = rendered(dashboard.summary_view(build_summary(ev)))
    assert widest(failed) <= 80
    assert "PROBLEM  jsonl: 1 lost" in failed
    assert "FAILED: 1 problem(s)" in failed
