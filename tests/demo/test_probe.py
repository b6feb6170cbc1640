"""What the dashboard reads: active calls from journaled events, throughput, service figures."""

from __future__ import annotations

from ivrstream.demo.probe import UNKNOWN_FLOW, ActiveCalls, Throughput, service_figures
from ivrstream.models import InteractionEvent


def event(kind: str, conversation: str, flow: str | None = None) -> InteractionEvent:
    data = {"flow": {"name": flow}} if flow else {}
    return InteractionEvent(
        event_id=f"{conversation}-{kind}",
        source="eventstreams",
        event_type=kind,
        conversation_id=conversation,
        sequence_id=None,
        event_time="2026-05-01T10:00:00.000Z",
        received_at="2026-05-01T10:00:00.001Z",
        data=data,
    )


def test_a_call_is_in_its_flow_from_flow_start_until_it_leaves():
    calls = ActiveCalls()
    calls.add(event("flow.start", "a", "Main IVR"))
    calls.add(event("flow.start", "b", "Main IVR"))
    calls.add(event("flow.start", "c", "Claims IVR"))
    calls.add(event("flow.start", "a", "Main IVR"))  # the same call again: counted once
    calls.add(event("attributes", "b", "Main IVR"))
    calls.add(event("flow.end", "a", "Main IVR"))
    calls.add(event("customer.end", "c", "Claims IVR"))  # hung up in the IVR
    calls.add(event("customer.end", "a"))  # already left the IVR: nothing changes
    calls.add(event("flow.start", "d"))
    lines = {line.name: line for line in calls.lines()}
    main = lines["Main IVR"]
    assert (main.in_ivr, main.entered, main.left) == (1, 2, 1)
    assert (lines["Claims IVR"].in_ivr, lines["Claims IVR"].left) == (0, 1)
    assert lines[UNKNOWN_FLOW].in_ivr == 1
    assert [line.name for line in calls.lines()] == sorted(lines)


def test_throughput_is_a_rate_over_a_sliding_window():
    rate = Throughput(window=2.0)
    assert rate.sample(0.0, 0) == 0
    assert rate.sample(1.0, 100) == 50.0
    assert rate.sample(2.0, 200) == 100.0
    assert rate.sample(10.0, 200) == 0.0


def test_service_figures_sum_the_streams_and_list_the_sinks():
    statistics = {
        "source": {"state": "streaming", "endings": {"network": 1, "token": 2}},
        "intake": {
            "committed": 500,
            "quarantined": 5,
            "latency": {"p50_ms": 1.0, "p99_ms": 9.0},
            "streams": {
                "a": {"gaps_opened": 2, "open_gaps": 1, "duplicate": 3, "early": 4},
                "b": {"gaps_opened": 1, "open_gaps": 0, "duplicate": 1, "early": 0},
            },
        },
        "sinks": {
            "webhook": {
                "state": "retrying",
                "delivered": 450,
                "backlog": 50,
                "retries": 7,
                "dead_lettered": 0,
            }
        },
    }
    figures = service_figures(statistics)
    assert figures["reconnects"] == 3
    assert (figures["gaps_opened"], figures["gaps_open"]) == (3, 1)
    assert (figures["duplicates"], figures["reordered"]) == (4, 4)
    assert figures["connection"] == "streaming"
    (sink,) = figures["sinks"]
    assert (sink.name, sink.backlog, sink.retries) == ("webhook", 50, 7)
    assert service_figures({**statistics, "source": None})["connection"] == "–"
