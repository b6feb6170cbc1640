"""The IVR view: calls in flows, exits, transfers, abandons, containment, bounded memory."""

from __future__ import annotations

from ivrstream.ivr import OTHER, UNKNOWN, IvrRow, IvrView


def start(conv: str, flow: str = "f1", name: str | None = None) -> IvrRow:
    return IvrRow(conv, "flow.start", flow, name)


def end(conv: str, flow: str = "f1", reason: str = "FLOW_DISCONNECT", transfer: str | None = None):
    return IvrRow(conv, "flow.end", flow, None, reason, transfer)


def test_a_call_is_active_from_flow_start_to_flow_end():
    view = IvrView()
    view.apply([start("a", name="Main IVR"), start("b"), start("c", "f2")], now=0)
    assert dict(view.active) == {"f1": 2, "f2": 1}
    assert view.active_total == 3
    view.apply([end("a"), IvrRow("c", "customer.end")], now=1)
    assert dict(view.active) == {"f1": 1}
    assert view.names == {"f1": "Main IVR"}
    assert view.starts == {"f1": 2, "f2": 1}


def test_exits_transfers_abandons_and_containment():
    view = IvrView()
    view.apply(
        [
            start("a"),
            start("b"),
            start("c"),
            start("d"),
            end("a", reason="TRANSFER", transfer="ACD"),
            end("b", reason="FLOW_DISCONNECT"),
            end("c", reason="DISCONNECT"),
            end("d", reason="TRANSFER", transfer="ACD"),
            IvrRow("a", "acd.end", acd_outcome="ABANDON"),
            IvrRow("d", "acd.end", acd_outcome="ANSWERED"),
        ],
        now=0,
    )
    assert view.exits == {
        ("f1", "TRANSFER"): 2,
        ("f1", "FLOW_DISCONNECT"): 1,
        ("f1", "DISCONNECT"): 1,
    }
    assert view.transfers == {("f1", "ACD"): 2}
    assert view.abandons == 1
    assert view.containment() == 0.5
    assert view.containment("f1") == 0.5
    assert view.containment("nowhere") is None
    snapshot = view.snapshot()
    assert snapshot["active_calls"] == 0
    assert snapshot["transfers"] == 2
    assert snapshot["flows"][0]["exits"] == {"TRANSFER": 2, "FLOW_DISCONNECT": 1, "DISCONNECT": 1}


def test_a_late_backfilled_start_does_not_revive_a_finished_call():
    view = IvrView()
    view.apply([end("a"), start("a")], now=0)  # flow.end live, flow.start from analytics later
    view.apply([IvrRow("b", "customer.end"), start("b")], now=0)
    assert view.active_total == 0
    assert view.starts["f1"] == 2  # still counted as entries into the flow


def test_a_transfer_to_another_flow_moves_the_call():
    view = IvrView()
    view.apply([start("a", "f1"), end("a", "f1", "TRANSFER", "FLOW"), start("a", "f2")], now=0)
    assert dict(view.active) == {"f2": 1}


def test_an_end_without_a_flow_id_still_ends_the_call():
    view = IvrView()
    view.apply([start("a"), IvrRow("a", "flow.end", None, None, "DISCONNECT")], now=0)
    assert view.active_total == 0
    assert view.exits == {(UNKNOWN, "DISCONNECT"): 1}


def test_warm_up_rebuilds_active_calls_without_counting():
    view = IvrView()
    view.apply([start("a"), start("b"), end("b")], now=0, count=False)
    assert view.active == {"f1": 1}
    assert not view.starts
    assert not view.exits


def test_memory_is_bounded_by_the_cap_and_the_ttl():
    view = IvrView(max_active=3, ttl=100)
    view.apply([start(str(i)) for i in range(5)], now=0)
    assert view.active_total == 3
    assert view.forgotten == 2
    view.apply([start("late")], now=50)
    view.expire(150)  # the first three are older than the ttl, "late" is not
    assert view.active_total == 1
    assert dict(view.active) == {"f1": 1}


def test_labels_from_data_are_capped_and_cleaned():
    view = IvrView(max_flows=2, max_reasons=2)
    view.apply([start("a", "f1"), start("b", "f2"), start("c", "f3")], now=0)
    assert set(view.active) == {"f1", "f2", OTHER}
    view.apply([end("x", "f1", 'bad "reason"\n')], now=0)
    view.apply([end("y", "f1", "R2"), end("z", "f1", "R3")], now=0)
    assert view.exits == {("f1", 'bad "reason"_'): 1, ("f1", "R2"): 1, ("f1", OTHER): 1}
    view.apply([IvrRow("y", "flow.start", 42, 7)], now=0)  # type: ignore[arg-type]
    assert view.starts[UNKNOWN] == 1
