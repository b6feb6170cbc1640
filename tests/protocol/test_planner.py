import uuid

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ivrstream.config import NotificationsSettings
from ivrstream.protocol.planner import (
    COMBINED_COUNTS_PARTS,
    OVER_BUDGET,
    PRIORITY_BASE,
    Limits,
    Planner,
    TopicResult,
    check_limits,
)
from ivrstream.protocol.topics import (
    DETAIL_KINDS,
    MAX_CHANNELS_PER_CLIENT,
    MAX_COMBINED_LENGTH,
    TopicError,
    combine,
    detail_topic,
    expand_combined,
    queue_topic,
)

IDS = [str(uuid.UUID(int=n * 7919 + 1)) for n in range(40)]
KINDS = list(DETAIL_KINDS)


def queue(n: int) -> str:
    return queue_topic(IDS[n])


def conversation(n: int, kinds: int = 8) -> str:
    (unit,) = combine(detail_topic(IDS[n], kind) for kind in KINDS[:kinds])
    return unit


# -- limits --------------------------------------------------------------------------------------


def test_combined_topics_count_their_parts_by_default():
    assert COMBINED_COUNTS_PARTS is True
    unit = conversation(0)
    assert "?" in unit
    assert len(unit) <= MAX_COMBINED_LENGTH
    assert Limits().cost(unit) == 8
    assert Limits(combined_counts_parts=False).cost(unit) == 1
    assert Limits().cost(queue(0)) == 1


def test_limits_refuse_what_genesys_does_not_allow():
    with pytest.raises(ValueError, match="max_channels"):
        Limits(max_channels=21)
    with pytest.raises(ValueError, match="topics_per_channel"):
        Limits(topics_per_channel=1_001)
    with pytest.raises(ValueError, match="max_channels"):
        Limits(max_channels=0)
    assert [name for name, _ in check_limits(30, 5_000)] == ["max_channels", "topics_per_channel"]
    clamped = Limits.from_settings(NotificationsSettings(max_channels=50, topics_per_channel=9999))
    assert (clamped.max_channels, clamped.topics_per_channel) == (MAX_CHANNELS_PER_CLIENT, 1_000)


def test_a_malformed_or_too_long_combined_topic_is_refused():
    planner = Planner()
    with pytest.raises(TopicError):
        planner.add("v2.detail.events.conversation." + "x" * 200 + "?a&b")
    with pytest.raises(TopicError):
        planner.add("prefix?a&&b")
    with pytest.raises(TopicError):
        planner.add("")


# -- placement -----------------------------------------------------------------------------------


def test_fills_existing_channels_before_opening_a_new_one():
    planner = Planner(Limits(max_channels=3, topics_per_channel=10))
    assert [planner.add(queue(n)) for n in range(10)] == [0] * 10
    assert planner.add(queue(10)) == 1
    plan = planner.plan()
    assert plan.channels == {0: tuple(queue(n) for n in range(10)), 1: (queue(10),)}
    assert plan.over_budget == ()
    # room freed in channel 0 is used before channel 1 grows
    planner.remove(queue(3))
    assert planner.add(queue(11)) == 0
    plan = planner.plan()
    assert list(plan.channels) == [0]
    assert plan.channels[0][-1] == queue(11)
    assert queue(3) not in plan.channels[0]
    assert planner.plan().channels == {}  # nothing changed since


def test_a_conversation_is_one_unit_on_one_channel():
    planner = Planner(Limits(max_channels=2, topics_per_channel=20))
    slots = [planner.add(conversation(n)) for n in range(5)]
    assert slots == [0, 0, 1, 1, None]  # 8 topics each: two per channel of 20
    plan = planner.plan()
    assert plan.over_budget == (conversation(4),)
    assert plan.unplaced == {conversation(4): OVER_BUDGET}
    assert planner.statistics().topics == 32


def test_never_plans_more_than_max_channels_and_reports_what_does_not_fit():
    planner = Planner(Limits(max_channels=2, topics_per_channel=3))
    for n in range(8):
        planner.add(queue(n))
    plan = planner.plan()
    assert sorted(plan.channels) == [0, 1]
    assert plan.over_budget == tuple(queue(n) for n in range(6, 8))
    # room goes to what waits, base topics first
    planner.add(queue(8), priority=PRIORITY_BASE)
    planner.remove(queue(0))
    plan = planner.plan()
    assert plan.channels == {0: (queue(1), queue(2), queue(8))}
    assert plan.over_budget == (queue(6), queue(7))
    assert planner.room_for(1) == 0


def test_a_unit_larger_than_a_channel_never_fits():
    planner = Planner(Limits(max_channels=5, topics_per_channel=4))
    assert planner.add(conversation(0)) is None
    assert planner.plan().over_budget == (conversation(0),)
    assert planner.channels() == {}


def test_resend_hands_out_a_full_list_again():
    planner = Planner(Limits(max_channels=2, topics_per_channel=2))
    for n in range(3):
        planner.add(queue(n))
    planner.plan()
    planner.resend(1)
    assert planner.plan().channels == {1: (queue(2),)}
    planner.resend()
    assert set(planner.plan().channels) == {0, 1}


def test_update_replaces_one_priority_only():
    planner = Planner()
    planner.add(conversation(0))
    planner.update([queue(0), queue(1)], priority=PRIORITY_BASE)
    planner.update([queue(1), queue(2)], priority=PRIORITY_BASE)
    assert planner.channel(0) == (conversation(0), queue(1), queue(2))


# -- results -------------------------------------------------------------------------------------


def test_rejected_topics_are_reported_once_and_not_retried():
    planner = Planner(Limits(max_channels=1, topics_per_channel=2))
    for n in range(3):
        planner.add(queue(n))
    planner.plan()
    rejected = planner.record(
        0,
        [
            {"id": queue(0), "state": "Permitted"},
            {
                "id": queue(1),
                "state": "Rejected",
                "rejectionReason": "missing permissions",
                "missingPermissions": ["routing:queue:view"],
            },
        ],
    )
    assert [(r.topic, r.reason, r.missing_permissions) for r in rejected] == [
        (queue(1), "missing permissions", ("routing:queue:view",))
    ]
    plan = planner.plan()
    assert plan.rejected == tuple(rejected)
    assert plan.unplaced == {queue(1): "missing permissions"}
    assert plan.channels == {0: (queue(0), queue(2))}  # the freed room went to the waiting one
    assert planner.add(queue(1)) is None  # not retried
    assert planner.plan().rejected == ()
    assert planner.rejection(queue(1)) is not None
    assert planner.statistics().rejected == 1
    # removing forgets the rejection; adding again retries
    assert planner.remove(queue(1))
    assert planner.rejection(queue(1)) is None


def test_a_rejection_alone_plans_no_put():
    planner = Planner(Limits(max_channels=1, topics_per_channel=5))
    planner.add(queue(0))
    planner.add(queue(1))
    planner.plan()
    planner.record(0, [TopicResult(queue(1), "Rejected", "no such queue")])
    assert planner.plan().channels == {}
    planner.add(queue(2))
    assert planner.plan().channels == {0: (queue(0), queue(2))}


def test_expanded_results_of_a_combined_topic_reject_the_whole_unit():
    planner = Planner()
    unit, other = conversation(0), conversation(1)
    planner.add(unit)
    planner.add(other)
    planner.plan()
    parts = expand_combined(unit)
    results = [TopicResult(p, "Permitted") for p in parts[1:]]
    results.append(TopicResult(parts[0], "Rejected", "forbidden", ("analytics:x",)))
    results.append(TopicResult(queue(5), "Rejected", "not ours"))
    assert planner.record(1, results) == []  # not the slot the unit is on: ignored
    assert planner.slot_of(unit) == 0
    (rejection,) = planner.record(0, results)
    assert (rejection.topic, rejection.reason) == (unit, "forbidden")
    assert rejection.parts == (parts[0],)
    assert rejection.missing_permissions == ("analytics:x",)
    assert planner.slot_of(unit) is None
    assert planner.slot_of(other) == 0
    assert unit in planner
    assert planner.statistics().permitted_results == 2 * (len(parts) - 1)  # both calls


# -- properties ----------------------------------------------------------------------------------

UNITS = [queue(n) for n in range(12)] + [conversation(n, 1 + n % 8) for n in range(12, 30)]
ops = st.lists(
    st.tuples(st.sampled_from(["add", "remove", "reject", "base"]), st.sampled_from(UNITS)),
    max_size=60,
)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    max_channels=st.one_of(st.integers(1, 3), st.integers(1, MAX_CHANNELS_PER_CLIENT)),
    per_channel=st.integers(1, 24),
    counts_parts=st.booleans(),
    operations=ops,
)
def test_plans_stay_within_limits_and_lose_nothing(
    max_channels, per_channel, counts_parts, operations
):
    limits = Limits(max_channels, per_channel, combined_counts_parts=counts_parts)
    planner = Planner(limits)
    server: dict[int, tuple[str, ...]] = {}  # what the PUTs have set
    wanted: set[str] = set()
    rejected: set[str] = set()
    leftovers: dict[int, set[str]] = {}  # rejected, still listed by the server until a PUT
    for op, unit in operations:
        if op in ("add", "base"):
            planner.add(unit, priority=PRIORITY_BASE if op == "base" else 1)
            wanted.add(unit)
        elif op == "remove":
            planner.remove(unit)
            wanted.discard(unit)
            rejected.discard(unit)
        else:
            slot = planner.slot_of(unit)
            if slot is not None:
                planner.record(slot, [TopicResult(unit, "Rejected", "nope")])
                rejected.add(unit)
                leftovers.setdefault(slot, set()).add(unit)
        plan = planner.plan()
        if op != "reject":
            assert len(plan.channels) <= 1  # one operation changes at most one channel
        server.update(plan.channels)
        for slot in plan.channels:
            leftovers.pop(slot, None)

        channels = planner.channels()
        assert len(channels) <= max_channels <= MAX_CHANNELS_PER_CLIENT
        placed = [u for units in channels.values() for u in units]
        assert len(placed) == len(set(placed))
        for units in channels.values():
            assert sum(limits.cost(u) for u in units) <= per_channel
            assert all(len(u) <= MAX_COMBINED_LENGTH for u in units if "?" in u)
        # every wanted unit is on a channel, reported over budget or rejected; nothing else is
        assert set(placed).isdisjoint(plan.over_budget)
        assert set(placed) | set(plan.over_budget) | rejected == wanted
        assert rejected == set(planner.rejections())
        # what the server holds (but for rejected leftovers) is the plan
        for slot, units in channels.items():
            held = tuple(u for u in server.get(slot, ()) if u not in leftovers.get(slot, ()))
            assert held == units
        # a unit waits only if it fits nowhere
        for unit in plan.over_budget:
            cost = limits.cost(unit)
            assert len(channels) == max_channels or cost > per_channel
            assert all(
                sum(limits.cost(u) for u in units) + cost > per_channel
                for units in channels.values()
            )


@settings(max_examples=100, deadline=None)
@given(st.lists(st.sampled_from(UNITS), unique=True, max_size=25), st.data())
def test_removing_one_unit_changes_one_channel(units, data):
    planner = Planner(Limits(max_channels=3, topics_per_channel=12))
    for unit in units:
        planner.add(unit)
    planner.plan()
    if not units:
        return
    victim = data.draw(st.sampled_from(units))
    slot = planner.slot_of(victim)
    planner.remove(victim)
    plan = planner.plan()
    assert set(plan.channels) == (set() if slot is None else {slot})
    assert victim not in planner
    assert all(victim not in listed for listed in planner.channels().values())


def test_update_forgets_rejections_of_units_no_longer_wanted():
    planner = Planner()
    planner.update([queue(0), queue(1)], priority=PRIORITY_BASE)
    planner.plan()
    planner.record(0, [TopicResult(queue(1), "Rejected", "no such queue")])
    planner.add(conversation(0))
    planner.update([queue(0)], priority=PRIORITY_BASE)
    assert planner.rejection(queue(1)) is None
    assert queue(1) not in planner
    planner.update([queue(0), queue(1)], priority=PRIORITY_BASE)  # wanted again: tried again
    assert planner.slot_of(queue(1)) == 0
    assert planner.slot_of(conversation(0)) == 0  # other priorities untouched
