"""The demo's timeline: every fault, in a fixed order, scaled to the duration, never overlapping."""

import pytest

from ivrstream.demo.timeline import MIN_SPELL, timeline

ORDER = [
    "drop",
    "burst",
    "burst_end",
    "malformed",
    "revoke_tokens",
    "outage",
    "outage_end",
    "stop_traffic",
]


@pytest.mark.parametrize("duration", [1.0, 1.5, 5.0, 8.0, 30.0, 600.0])
def test_every_fault_once_in_order_without_overlap(duration):
    steps = timeline(duration)
    assert [s.action for s in steps] == ORDER
    assert [s.at for s in steps] == sorted(s.at for s in steps)
    assert steps[0].at > 0
    by_action = {s.action: s for s in steps}
    for start, end in (("burst", "burst_end"), ("outage", "outage_end")):
        spell = by_action[start].spell
        assert spell >= MIN_SPELL
        assert by_action[end].at == pytest.approx(by_action[start].at + spell)
    assert by_action["stop_traffic"].at == pytest.approx(max(duration, steps[-2].at))


def test_it_scales_with_the_duration():
    short, long = timeline(5.0), timeline(30.0)
    for a, b in zip(short, long, strict=True):
        assert b.at == pytest.approx(a.at * 6, rel=0.01)
    assert long[-1].at == 30.0


def test_a_duration_must_be_positive():
    with pytest.raises(ValueError, match="positive"):
        timeline(0)
