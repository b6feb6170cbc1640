from collections import Counter

from hypothesis import given, settings
from hypothesis import strategies as st

from ivrstream.emulator.traffic import (
    FLOWS,
    Outcome,
    TrafficConfig,
    TrafficModel,
    luhn_complete,
)

START = 1_780_000_000_000


def facts_of(model: TrafficModel, until_ms: int):
    return list(model.facts_until(until_ms))


def signature(facts):
    return [(f.fact_id, f.kind, f.time_ms, f.call.ani, f.call.outcome) for f in facts]


def test_same_seed_same_traffic_and_another_seed_differs():
    one = facts_of(TrafficModel(TrafficConfig(seed=7, start_ms=START)), START + 60_000)
    two = facts_of(TrafficModel(TrafficConfig(seed=7, start_ms=START)), START + 60_000)
    other = facts_of(TrafficModel(TrafficConfig(seed=8, start_ms=START)), START + 60_000)
    assert signature(one) == signature(two)
    assert signature(one) != signature(other)


def test_reading_in_small_steps_gives_the_same_facts_as_one_big_read():
    whole = facts_of(TrafficModel(TrafficConfig(seed=3, start_ms=START)), START + 30_000)
    stepped_model = TrafficModel(TrafficConfig(seed=3, start_ms=START))
    stepped = []
    for t in range(START, START + 30_001, 137):
        stepped.extend(stepped_model.facts_until(t))
    stepped.extend(stepped_model.facts_until(START + 30_000))
    assert signature(stepped) == signature(whole)


def test_call_content_does_not_depend_on_the_rate():
    slow = TrafficModel(TrafficConfig(seed=5, rate=1, start_ms=START)).make_call(4, START)
    fast = TrafficModel(TrafficConfig(seed=5, rate=100, start_ms=START)).make_call(4, START)
    assert (slow.conversation_id, slow.outcome, slow.menu_path) == (
        fast.conversation_id,
        fast.outcome,
        fast.menu_path,
    )


def test_facts_come_out_in_time_order_once_each():
    facts = facts_of(TrafficModel(TrafficConfig(seed=1, rate=20, start_ms=START)), START + 60_000)
    times = [f.time_ms for f in facts]
    assert times == sorted(times)
    assert len({f.fact_id for f in facts}) == len(facts)


def test_arrivals_follow_the_rate():
    model = TrafficModel(TrafficConfig(seed=11, rate=10, start_ms=START))
    facts_of(model, START + 100_000)
    assert 850 <= model.calls_started <= 1150  # Poisson, mean 1000


def test_every_outcome_happens_and_each_call_tells_a_consistent_story():
    model = TrafficModel(TrafficConfig(seed=2, start_ms=START))
    calls = [model.make_call(i, START + i * 1000) for i in range(600)]
    outcomes = Counter(c.outcome for c in calls)
    assert set(outcomes) == set(Outcome)
    assert {c.flow.name for c in calls} == {f.name for f in FLOWS}
    for call in calls:
        kinds = [f.kind for f in call.facts]
        assert kinds[0] == "customer.start"
        assert kinds[-1] == "customer.end"
        assert kinds[1] == "flow.start"
        assert kinds.count("flow.end") == 1
        transferred = call.outcome in (Outcome.ANSWERED, Outcome.ABANDONED_IN_QUEUE)
        assert ("acd.start" in kinds) == transferred == (call.queue is not None)
        assert ("flow.outcome" in kinds) == (call.outcome is not Outcome.ABANDONED_IN_IVR)
        assert [f.step for f in call.facts] == list(range(len(kinds)))


def test_time_scale_compresses_one_to_three_minute_calls_into_seconds():
    def median_duration(scale: float) -> float:
        model = TrafficModel(TrafficConfig(seed=4, time_scale=scale, start_ms=START))
        calls = [model.make_call(i, START) for i in range(300)]
        contained = sorted(c.end_ms - c.start_ms for c in calls if c.outcome is Outcome.CONTAINED)
        return contained[len(contained) // 2] / 1000

    real = median_duration(1)
    assert 40 <= real <= 180
    assert 1 <= median_duration(30) <= 6
    assert abs(median_duration(30) * 30 - real) < 1


@settings(max_examples=200)
@given(st.text(alphabet="0123456789", min_size=12, max_size=18))
def test_luhn_completed_numbers_validate(prefix):
    number = luhn_complete(prefix)
    digits = [int(d) for d in reversed(number)]
    total = sum(
        d if i % 2 == 0 else (d * 2 - 9 if d * 2 > 9 else d * 2) for i, d in enumerate(digits)
    )
    assert total % 10 == 0


def test_some_calls_carry_a_card_number_for_the_privacy_stage():
    model = TrafficModel(TrafficConfig(seed=9, start_ms=START, card_share=0.2))
    calls = [model.make_call(i, START) for i in range(200)]
    cards = [
        a["PaymentCard"]
        for c in calls
        for f in c.facts
        for a in [f.attributes]
        if "PaymentCard" in a
    ]
    assert 10 <= len(cards) <= 60
    assert all(len(card) == 16 for card in cards)
