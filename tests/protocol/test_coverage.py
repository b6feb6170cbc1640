import uuid

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ivrstream.config import NotificationsSettings
from ivrstream.protocol.coverage import (
    END_KIND,
    FORGET_AFTER,
    LATE_AFTER,
    RELEASE_GRACE,
    Backfill,
    Coverage,
    Reason,
    State,
    budget,
    conversation_cost,
    conversation_units,
)
from ivrstream.protocol.planner import Limits
from ivrstream.protocol.topics import (
    DETAIL_KINDS,
    DETAIL_PREFIX,
    DETAIL_VIEW,
    MAX_COMBINED_LENGTH,
    TopicError,
    detail_topic,
    expand_combined,
    flow_metrics_topic,
    queue_topic,
)

IDS = [str(uuid.UUID(int=n * 104_729 + 3)) for n in range(40)]
FLOW, QUEUE = IDS[30], IDS[31]
ALL_KINDS = list(DETAIL_KINDS)


def notifications(**overrides) -> NotificationsSettings:
    values = {"coverage": ["flows", "conversations"], "flow_ids": [FLOW]}
    values.update(overrides)
    return NotificationsSettings(**values)


def unit_of(conversation_id: str) -> str:
    (unit,) = conversation_units(conversation_id, ALL_KINDS)
    return unit


def end_topic(conversation_id: str) -> str:
    return detail_topic(conversation_id, END_KIND)


# -- discovery -----------------------------------------------------------------------------------


def test_a_discovered_conversation_gets_one_combined_unit():
    cov = Coverage(notifications())
    assert cov.plan().channels == {0: (flow_metrics_topic(FLOW),)}
    assert cov.discovered(IDS[0], 100.0, started_at=99.0) is True
    unit = unit_of(IDS[0])
    assert unit.startswith(f"{DETAIL_PREFIX}{IDS[0]}?")
    assert len(unit) <= MAX_COMBINED_LENGTH
    assert sorted(expand_combined(unit)) == sorted(detail_topic(IDS[0], k) for k in ALL_KINDS)
    assert cov.plan().channels == {0: (flow_metrics_topic(FLOW), unit)}
    assert cov.state(IDS[0]) is State.COVERED
    assert cov.covered() == [IDS[0]]
    assert cov.backfill() == []
    # a second sighting changes nothing
    assert cov.discovered(IDS[0], 101.0) is True
    assert cov.plan().channels == {}
    stats, planner = cov.statistics()
    assert (stats.discovered, stats.covered, stats.covered_total, stats.seen_late) == (1, 1, 1, 0)
    assert planner.topics == 1 + 8


def test_ids_are_compared_in_lower_case():
    cov = Coverage(notifications())
    assert cov.discovered(IDS[0].upper(), 100.0)
    assert cov.discovered(IDS[0], 100.0)
    assert cov.covered() == [IDS[0]]
    cov.observe(end_topic(IDS[0].upper()), 110.0)
    assert cov.state(IDS[0]) is State.ENDING


def test_plain_topics_when_not_combined():
    cov = Coverage(notifications(detail_kinds=["flow.start", "customer.end"]), combined=False)
    assert cov.cost == 2
    cov.discovered(IDS[0], 100.0)
    assert cov.plan().channels == {
        0: (flow_metrics_topic(FLOW), detail_topic(IDS[0], "flow.start"), end_topic(IDS[0]))
    }


def test_sightings_that_cannot_be_covered_are_ignored():
    cov = Coverage(notifications())
    assert cov.discovered("not-a-uuid", 100.0) is False
    assert cov.discovered(f"{IDS[0]}?x&y", 100.0) is False
    assert cov.statistics()[0].invalid_ids == 2
    off = Coverage(notifications(coverage=["flows"]))
    assert off.discovered(IDS[0], 100.0) is False
    assert off.state(IDS[0]) is None
    assert off.backfill() == []
    assert off.room() == 0


def test_invalid_base_topics_raise():
    with pytest.raises(TopicError, match="flowId must be a UUID"):
        Coverage(notifications(flow_ids=["main-ivr"]))
    cov = Coverage(notifications())
    with pytest.raises(TopicError, match="wildcards"):
        cov.set_base([queue_topic("{id}")])


def test_set_base_replaces_base_topics_and_leaves_conversations_alone():
    cov = Coverage(notifications(), flow_ids=[IDS[32]])
    cov.discovered(IDS[0], 100.0)
    cov.set_base([queue_topic(QUEUE)])
    assert cov.planner.channel(0) == (unit_of(IDS[0]), queue_topic(QUEUE))


# -- release -------------------------------------------------------------------------------------


def test_released_after_customer_end_and_the_grace_period():
    cov = Coverage(notifications())
    cov.discovered(IDS[0], 100.0)
    cov.plan()
    cov.observe(detail_topic(IDS[0], "flow.end"), 150.0)  # not the end of the conversation
    assert cov.state(IDS[0]) is State.COVERED
    cov.observe(end_topic(IDS[0]), 200.0)
    assert cov.state(IDS[0]) is State.ENDING
    assert cov.next_deadline() == 200.0 + RELEASE_GRACE
    cov.tick(200.0 + RELEASE_GRACE - 0.1)
    assert cov.covered() == [IDS[0]]
    cov.tick(200.0 + RELEASE_GRACE)
    assert cov.state(IDS[0]) is State.DONE
    assert cov.covered() == []
    assert cov.plan().channels == {0: (flow_metrics_topic(FLOW),)}
    stats, _ = cov.statistics()
    assert (stats.released, stats.released_by_ttl, stats.backfill) == (1, 0, 0)
    assert cov.backfill() == []


def test_an_end_from_analytics_releases_too():
    cov = Coverage(notifications(), release_grace=0.0)
    cov.discovered(IDS[0], 100.0)
    cov.ended(IDS[0], 300.0)
    cov.tick(300.0)
    assert cov.state(IDS[0]) is State.DONE


def test_released_by_ttl_and_handed_out_when_the_end_was_never_seen():
    cov = Coverage(notifications(conversation_ttl=60.0))
    cov.discovered(IDS[0], 100.0, started_at=98.0)  # ttl counts from the start
    cov.discovered(IDS[1], 100.0)  # start unknown: from the sighting
    assert cov.next_deadline() == 158.0
    cov.tick(157.9)
    assert len(cov.covered()) == 2
    cov.tick(158.0)
    assert cov.covered() == [IDS[1]]
    cov.tick(160.0)
    assert cov.covered() == []
    handed = cov.backfill()
    assert [(b.conversation_id, b.reason) for b in handed] == [
        (IDS[0], Reason.END_NOT_SEEN),
        (IDS[1], Reason.END_NOT_SEEN),
    ]
    assert cov.statistics()[0].released_by_ttl == 2
    # the end arriving after the release changes nothing
    cov.observe(end_topic(IDS[0]), 170.0)
    assert cov.state(IDS[0]) is State.DONE
    assert cov.backfill() == []


def test_ttl_release_without_customer_end_subscribed_is_expected():
    cov = Coverage(notifications(detail_kinds=["flow.start", "flow.end"], conversation_ttl=60.0))
    cov.discovered(IDS[0], 100.0)
    cov.tick(160.0)
    assert cov.state(IDS[0]) is State.DONE
    assert cov.backfill() == []


def test_the_ttl_wins_over_a_long_grace():
    cov = Coverage(notifications(conversation_ttl=60.0), release_grace=1_000.0)
    cov.discovered(IDS[0], 100.0)
    cov.ended(IDS[0], 150.0)
    cov.tick(160.0)
    assert cov.state(IDS[0]) is State.DONE
    assert cov.backfill() == []  # its end was seen


def test_forgotten_after_forget_after_and_covered_again_when_seen_anew():
    cov = Coverage(notifications(), release_grace=0.0)
    cov.discovered(IDS[0], 100.0)
    cov.ended(IDS[0], 200.0)
    cov.tick(200.0)
    assert cov.discovered(IDS[0], 200.0 + FORGET_AFTER - 1) is False  # a late flow metric record
    assert cov.plan().channels == {0: (flow_metrics_topic(FLOW),)}
    assert cov.backfill() == []
    cov.tick(200.0 + FORGET_AFTER)
    assert cov.state(IDS[0]) is None
    assert cov.statistics()[0].remembered == 0
    assert cov.next_deadline() is None
    assert cov.discovered(IDS[0], 2_000.0) is True  # ids are unique: this is news
    assert cov.statistics()[0].discovered == 2


# -- backfill hand-outs --------------------------------------------------------------------------


def test_over_budget_conversations_are_handed_out_once_and_never_covered_later():
    # one channel of 17 topics: the flow topic and two conversations of 8
    cov = Coverage(notifications(), limits=Limits(max_channels=1, topics_per_channel=17))
    assert cov.room() == 2
    assert cov.discovered(IDS[0], 100.0, started_at=99.0)
    assert cov.discovered(IDS[1], 100.0)
    assert cov.discovered(IDS[2], 101.0, started_at=100.5) is False
    assert cov.state(IDS[2]) is State.UNCOVERED
    assert cov.backfill() == [Backfill(IDS[2], Reason.OVER_BUDGET, 100.5, 101.0)]
    assert cov.plan().over_budget == ()  # nothing of it is left waiting
    assert cov.discovered(IDS[2], 102.0) is False
    assert cov.backfill() == []
    # room freed later goes to new conversations, not to the one already handed out
    cov.ended(IDS[0], 110.0)
    cov.tick(110.0 + RELEASE_GRACE)
    assert cov.room() == 1
    assert cov.state(IDS[2]) is State.UNCOVERED
    assert cov.discovered(IDS[3], 121.0)
    assert all(unit_of(IDS[2]) not in units for units in cov.planner.channels().values())
    cov.ended(IDS[2], 130.0)
    assert cov.state(IDS[2]) is State.DONE
    assert cov.backfill() == []
    assert cov.statistics()[0].over_budget == 1


def test_conversations_seen_late_are_covered_and_handed_out():
    cov = Coverage(notifications())
    assert cov.discovered(IDS[0], 100.0, started_at=100.0 - LATE_AFTER)  # just in time
    assert cov.discovered(IDS[1], 100.0, started_at=90.0)  # ten seconds of events missed
    assert cov.backfill() == [Backfill(IDS[1], Reason.SEEN_LATE, 90.0, 100.0)]
    assert cov.state(IDS[1]) is State.COVERED
    # a start learned after the sighting is judged against the sighting
    cov.discovered(IDS[2], 100.0)
    cov.discovered(IDS[2], 130.0, started_at=99.0)
    assert cov.backfill() == []
    cov.discovered(IDS[3], 100.0)
    cov.discovered(IDS[3], 130.0, started_at=60.0)
    assert cov.backfill() == [Backfill(IDS[3], Reason.SEEN_LATE, 60.0, 100.0)]
    stats, _ = cov.statistics()
    assert (stats.discovered, stats.covered, stats.seen_late, stats.seen_after_end) == (4, 4, 2, 0)


def test_a_start_learned_later_brings_the_ttl_forward():
    cov = Coverage(notifications(conversation_ttl=60.0))
    cov.discovered(IDS[0], 100.0)
    cov.discovered(IDS[0], 101.0, started_at=95.0)
    assert cov.next_deadline() == 155.0


def test_a_conversation_first_seen_after_its_end_is_handed_out_not_subscribed():
    cov = Coverage(notifications())
    cov.ended(IDS[0], 100.0)  # analytics says it is over; nobody has sighted it yet
    assert cov.backfill() == []
    assert cov.discovered(IDS[0], 105.0, started_at=40.0) is False  # its flow metric record
    assert cov.backfill() == [Backfill(IDS[0], Reason.SEEN_LATE, 40.0, 105.0)]
    assert cov.discovered(IDS[0], 106.0) is False
    assert cov.backfill() == []
    assert cov.plan().channels == {0: (flow_metrics_topic(FLOW),)}
    stats, _ = cov.statistics()
    assert (stats.discovered, stats.seen_late, stats.seen_after_end) == (1, 1, 1)


def rejected(unit: str, *permissions: str) -> dict:
    return {
        "id": unit,
        "state": "Rejected",
        "rejectionReason": "missing permissions" if permissions else "not found",
        "missingPermissions": list(permissions),
    }


def test_a_rejection_for_missing_permissions_stops_further_tries():
    cov = Coverage(notifications())
    cov.discovered(IDS[0], 100.0)
    cov.discovered(IDS[1], 100.0)
    assert cov.plan().channels == {0: (flow_metrics_topic(FLOW), unit_of(IDS[0]), unit_of(IDS[1]))}
    results = [
        {"id": flow_metrics_topic(FLOW), "state": "Permitted"},
        rejected(unit_of(IDS[0]), DETAIL_VIEW),
        rejected(unit_of(IDS[1]), DETAIL_VIEW),
    ]
    assert [r.topic for r in cov.record(0, results)] == [unit_of(IDS[0]), unit_of(IDS[1])]
    assert cov.blocked is not None
    assert cov.blocked.missing_permissions == (DETAIL_VIEW,)
    assert [(b.conversation_id, b.reason, b.detail) for b in cov.backfill()] == [
        (IDS[0], Reason.REJECTED, "missing permissions"),
        (IDS[1], Reason.REJECTED, "missing permissions"),
    ]
    assert cov.covered() == []
    plan = cov.plan()
    assert plan.channels == {}  # the refused topics go with the channel's next PUT
    assert len(plan.rejected) == 2
    assert cov.planner.channel(0) == (flow_metrics_topic(FLOW),)
    # no further conversation is tried, but none is lost either
    assert cov.discovered(IDS[2], 110.0) is False
    assert cov.state(IDS[2]) is State.UNCOVERED
    assert [(b.conversation_id, b.reason) for b in cov.backfill()] == [(IDS[2], Reason.REJECTED)]
    assert cov.plan().channels == {}
    stats, planner = cov.statistics()
    assert (stats.discovered, stats.covered_total, stats.rejected) == (3, 0, 3)
    assert planner.rejected == 0  # released units leave no rejection behind


def test_a_rejection_without_missing_permissions_affects_one_conversation():
    cov = Coverage(notifications())
    cov.discovered(IDS[0], 100.0)
    cov.plan()
    cov.record(0, [rejected(unit_of(IDS[0]))])
    assert cov.blocked is None
    assert [b.reason for b in cov.backfill()] == [Reason.REJECTED]
    assert cov.discovered(IDS[1], 101.0) is True


def test_a_rejected_base_topic_blocks_no_conversation():
    cov = Coverage(notifications())
    cov.plan()
    cov.record(0, [rejected(flow_metrics_topic(FLOW), "analytics:flowMetrics:view")])
    assert cov.blocked is None
    assert cov.discovered(IDS[0], 100.0) is True
    assert cov.backfill() == []


def test_one_rejected_part_of_plain_topics_uncovers_the_whole_conversation():
    cov = Coverage(notifications(), combined=False)
    cov.discovered(IDS[0], 100.0)
    cov.plan()
    cov.record(0, [rejected(detail_topic(IDS[0], "attributes"))])
    assert cov.state(IDS[0]) is State.UNCOVERED
    assert cov.planner.channel(0) == (flow_metrics_topic(FLOW),)
    assert len(cov.backfill()) == 1


def test_a_conversation_seen_late_then_rejected_is_handed_out_once():
    cov = Coverage(notifications())
    cov.discovered(IDS[0], 100.0, started_at=50.0)
    cov.plan()
    cov.record(0, [rejected(unit_of(IDS[0]))])
    assert [b.reason for b in cov.backfill()] == [Reason.SEEN_LATE]
    stats, _ = cov.statistics()
    assert (stats.seen_late, stats.covered_total, stats.rejected, stats.backfill) == (1, 0, 1, 1)


def test_statistics_show_covered_and_seen_late():
    cov = Coverage(notifications(), limits=Limits(max_channels=1, topics_per_channel=33))
    cov.discovered(IDS[0], 100.0, started_at=99.0)  # live
    cov.discovered(IDS[1], 100.0)  # live (start unknown)
    cov.discovered(IDS[2], 100.0, started_at=10.0)  # late
    cov.discovered(IDS[3], 100.0)  # rejected below
    cov.discovered(IDS[4], 100.0)  # over budget
    cov.ended(IDS[5], 100.0)
    cov.discovered(IDS[5], 101.0)  # seen after its end
    cov.plan()
    cov.record(0, [rejected(unit_of(IDS[3]))])
    cov.ended(IDS[0], 110.0)
    cov.tick(110.0 + RELEASE_GRACE)
    stats, planner = cov.statistics()
    assert stats.discovered == 6
    assert stats.covered == 2
    assert stats.covered_total == 3
    assert stats.seen_late == 2
    assert stats.seen_after_end == 1
    assert (stats.over_budget, stats.rejected, stats.released) == (1, 1, 1)
    assert stats.backfill == len(cov.backfill()) == 4
    assert stats.discovered == (
        stats.covered_total + stats.seen_after_end + stats.over_budget + stats.rejected
    )
    assert stats.remembered == 6
    assert (planner.channels, planner.topics) == (1, 1 + 2 * 8)


# -- the budget validate shows -------------------------------------------------------------------


def test_budget_of_the_defaults():
    planned = budget(NotificationsSettings())
    assert planned.problems == ()
    assert planned.base_topics == 0  # every INBOUNDCALL flow is looked up at start
    assert (planned.max_channels, planned.topics_per_channel) == (10, 1_000)
    assert (planned.conversation_units, planned.conversation_cost) == (1, 8)
    assert planned.concurrent_conversations == 10 * (1_000 // 8)
    assert planned.released_on_end is True
    assert planned.combined_counts_parts is True


def test_budget_counts_base_topics_first():
    settings = notifications(
        coverage=["flows", "queues", "conversations"],
        flow_ids=IDS[:3],
        queue_ids=[*IDS[3:5], IDS[3]],  # duplicates count once
        max_channels=2,
    )
    planned = budget(settings)
    assert planned.problems == ()
    assert (planned.base_topics, planned.base_channels) == (5, 1)
    assert planned.concurrent_conversations == (1_000 - 5) // 8 + 1_000 // 8
    plain = budget(settings, combined=False)
    assert (plain.conversation_units, plain.conversation_cost) == (8, 8)
    few = budget(notifications(detail_kinds=["flow.start", "flow.end"]))
    assert (few.conversation_cost, few.released_on_end) == (2, False)
    assert budget(notifications(coverage=["flows"])).concurrent_conversations is None


def fields(settings: NotificationsSettings) -> list[str]:
    return [name for name, _ in budget(settings).problems]


def test_budget_names_every_problem():
    assert fields(notifications(max_channels=21, topics_per_channel=1_001)) == [
        "notifications.max_channels",
        "notifications.topics_per_channel",
    ]
    clamped = budget(notifications(max_channels=50, topics_per_channel=5_000))
    assert (clamped.max_channels, clamped.topics_per_channel) == (20, 1_000)
    planned = budget(
        notifications(
            coverage=["flows", "queues"],
            flow_ids=[IDS[0], "main-ivr", "{id}", ""],
            queue_ids=["*", f"{IDS[1]}?x"],
        )
    )
    problems = dict(planned.problems)
    assert list(problems) == [
        "notifications.flow_ids[1]",
        "notifications.flow_ids[2]",
        "notifications.flow_ids[3]",
        "notifications.queue_ids[0]",
        "notifications.queue_ids[1]",
    ]
    assert problems["notifications.flow_ids[1]"] == "flowId must be a UUID, got 'main-ivr'"
    assert "EventBridge" in problems["notifications.flow_ids[2]"]
    assert problems["notifications.flow_ids[3]"] == "must be a UUID, got ''"
    assert planned.base_topics == 1
    assert "do not fit" in dict(
        budget(notifications(flow_ids=IDS[:3], max_channels=1, topics_per_channel=2)).problems
    ).get("notifications.max_channels", "")
    assert "no room for a single conversation" in dict(
        budget(notifications(topics_per_channel=7)).problems
    ).get("notifications.max_channels", "")
    assert fields(notifications(coverage=["conversations"], discovery_interval=0.0)) == [
        "notifications.coverage"
    ]
    assert fields(notifications(coverage=[])) == ["notifications.coverage"]
    assert fields(notifications(coverage=["queues"])) == ["notifications.queue_ids"]
    assert fields(notifications(detail_kinds=[])) == ["notifications.detail_kinds"]
    assert fields(notifications(conversation_ttl=0.0)) == ["notifications.conversation_ttl"]


def test_the_budget_matches_what_coverage_fits():
    settings = notifications(flow_ids=IDS[:3], max_channels=2, topics_per_channel=50)
    planned = budget(settings)
    cov = Coverage(settings)
    assert cov.room() == planned.concurrent_conversations == (50 - 3) // 8 + 50 // 8
    covered = [cov.discovered(IDS[10 + n], 100.0) for n in range(planned.concurrent_conversations)]
    assert all(covered)
    assert cov.discovered(IDS[39], 100.0) is False
    assert conversation_cost(ALL_KINDS, cov.planner.limits) == cov.cost == 8


# -- properties ----------------------------------------------------------------------------------

CONVERSATIONS = IDS[:8]
operation = st.one_of(
    st.tuples(
        st.just("discover"),
        st.sampled_from(CONVERSATIONS),
        st.one_of(st.none(), st.floats(0, 30)),
    ),
    st.tuples(st.just("end"), st.sampled_from(CONVERSATIONS), st.booleans()),
    st.tuples(st.just("tick"), st.just(""), st.floats(0, 120)),
    st.tuples(st.just("reject"), st.sampled_from(CONVERSATIONS), st.booleans()),
)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    max_channels=st.integers(1, 3),
    per_channel=st.integers(8, 30),
    base=st.integers(0, 3),
    combined=st.booleans(),
    ttl=st.floats(20, 300),
    operations=st.lists(operation, max_size=60),
)
def test_never_over_the_limits_and_no_conversation_is_lost(
    max_channels, per_channel, base, combined, ttl, operations
):
    limits = Limits(max_channels, per_channel)
    cov = Coverage(
        notifications(
            coverage=["queues", "conversations"],
            queue_ids=IDS[30 : 30 + base],
            conversation_ttl=ttl,
        ),
        limits=limits,
        combined=combined,
        forget_after=200.0,
    )
    now = 1_000.0
    # per conversation, in its current life (until it is forgotten)
    sighted: set[str] = set()
    covered: set[str] = set()  # covered at some point
    refused: set[str] = set()
    handed: dict[str, int] = {}

    def check(finished: str) -> None:
        if finished in sighted:
            assert handed.get(finished, 0) == 1 or (finished in covered - refused)
        sighted.discard(finished)
        covered.discard(finished)
        refused.discard(finished)
        handed.pop(finished, None)

    def observe_state() -> None:
        for b in cov.backfill():
            handed[b.conversation_id] = handed.get(b.conversation_id, 0) + 1
            assert handed[b.conversation_id] == 1, "handed out twice"
            assert b.conversation_id in sighted
        for conversation_id in CONVERSATIONS:
            state = cov.state(conversation_id)
            if state is None:
                check(conversation_id)
            elif state in (State.COVERED, State.ENDING):
                covered.add(conversation_id)
        # the limits
        channels = cov.planner.channels()
        assert len(channels) <= max_channels
        listed = [u for units in channels.values() for u in units]
        assert len(listed) == len(set(listed))
        for units in channels.values():
            assert sum(limits.cost(u) for u in units) <= per_channel
            assert all(len(u) <= MAX_COMBINED_LENGTH for u in units)
        # exactly the covered conversations have detail topics on a channel
        now_covered = set(cov.covered())
        with_topics = {u[len(DETAIL_PREFIX) :][:36] for u in listed if u.startswith(DETAIL_PREFIX)}
        assert with_topics == now_covered
        for conversation_id in now_covered:
            for unit in conversation_units(conversation_id, ALL_KINDS, combined=combined):
                assert cov.planner.slot_of(unit) is not None
        stats, _ = cov.statistics()
        assert stats.covered == len(now_covered)
        assert stats.discovered == (
            stats.covered_total + stats.seen_after_end + stats.over_budget + stats.rejected
        )

    for op, conversation_id, arg in operations:
        if op == "discover":
            started = None if arg is None else now - arg
            on = cov.discovered(conversation_id, now, started_at=started)
            sighted.add(conversation_id)
            assert on == (cov.state(conversation_id) in (State.COVERED, State.ENDING))
        elif op == "end":
            if arg:
                cov.observe(end_topic(conversation_id), now)
            else:
                cov.ended(conversation_id, now)
        elif op == "tick":
            now += arg
            cov.tick(now)
        else:
            units = conversation_units(conversation_id, ALL_KINDS, combined=combined)
            slot = cov.planner.slot_of(units[-1])  # plain topics may span channels
            if slot is not None:
                permissions = [DETAIL_VIEW] if arg else []
                assert cov.record(slot, [rejected(units[-1], *permissions)])
                refused.add(conversation_id)
        cov.plan()
        observe_state()

    # in the end every conversation is released, forgotten and accounted for
    for _ in range(3):
        now += ttl + RELEASE_GRACE + 200.0
        cov.tick(now)
        observe_state()
    assert not sighted
    assert cov.statistics()[0].remembered == 0
    assert cov.next_deadline() is None
    listed = [u for units in cov.planner.channels().values() for u in units]
    assert not [u for u in listed if u.startswith(DETAIL_PREFIX)]
