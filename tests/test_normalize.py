"""normalize: Notifications envelopes and analytics records → canonical events with one id per
real event, checked against the emulator's traffic model (the ground truth every surface renders).
"""

from __future__ import annotations

import copy
from typing import Any

import msgspec
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ivrstream.emulator.render import (
    analytics_conversation,
    detail_body,
    detail_topic,
    flow_metric_records,
    flow_metrics_topic,
    queue_snapshot,
    queue_topic,
)
from ivrstream.emulator.traffic import Call, Outcome, TrafficConfig, TrafficModel
from ivrstream.identity import event_id
from ivrstream.isotime import parse_ms as _ms
from ivrstream.models import InteractionEvent, NotificationEnvelope
from ivrstream.normalize import (
    BACKFILL_SOURCE_TYPE,
    NOT_REBUILT_KINDS,
    REBUILT_KINDS,
    Discovered,
    Rejected,
    TopicRole,
    classify,
    discovered_conversations,
    from_analytics,
    from_notification,
    rebuild,
)

CONVERSATION = "3d1f7c2a-9b4e-4c1d-8e2f-6a7b8c9d0e1f"

# shared/reference/examples/, copied so the tests need nothing outside the repository
EXAMPLES: dict[str, Any] = {
    "notification-flow-start.json": {
        "topicName": f"v2.detail.events.conversation.{CONVERSATION}.flow.start",
        "version": "2",
        "eventBody": {
            "eventTime": 1765551656400,
            "conversationId": "3d1f7c2a-9b4e-4c1d-8e2f-6a7b8c9d0e1f",
            "participantId": "a5c1e0b2-1111-4c2d-9e3f-0a1b2c3d4e5f",
            "sessionId": "b6d2f1c3-2222-4d3e-8f40-1b2c3d4e5f60",
            "mediaType": "VOICE",
            "provider": "Edge",
            "direction": "INBOUND",
            "ani": "tel:+15555550520",
            "dnis": "tel:+15555550000",
            "divisionId": "a1b2c3d4-4444-4e5f-8a9b-3d4e5f607182",
            "flowType": "INBOUNDCALL",
            "flowId": "0f3e2d1c-3333-4b5a-9c8d-2c3d4e5f6071",
            "flowVersion": "7.0",
            "conversationExternalContactIds": [],
        },
        "metadata": {"CorrelationId": "c0ffee00-5555-4abc-9def-4e5f60718293"},
    },
    "notification-flow-end.json": {
        "topicName": f"v2.detail.events.conversation.{CONVERSATION}.flow.end",
        "version": "2",
        "eventBody": {
            "eventTime": 1765551700853,
            "conversationId": "3d1f7c2a-9b4e-4c1d-8e2f-6a7b8c9d0e1f",
            "participantId": "a5c1e0b2-1111-4c2d-9e3f-0a1b2c3d4e5f",
            "sessionId": "b6d2f1c3-2222-4d3e-8f40-1b2c3d4e5f60",
            "mediaType": "VOICE",
            "provider": "Edge",
            "direction": "INBOUND",
            "ani": "tel:+15555550520",
            "dnis": "tel:+15555550000",
            "divisionId": "a1b2c3d4-4444-4e5f-8a9b-3d4e5f607182",
            "disconnectType": "TRANSFER",
            "flowType": "INBOUNDCALL",
            "flowId": "0f3e2d1c-3333-4b5a-9c8d-2c3d4e5f6071",
            "flowVersion": "7.0",
            "connectedDurationMs": 44453,
            "exitReason": "TRANSFER",
            "transferType": "ACD",
        },
        "metadata": {"CorrelationId": "c0ffee01-6666-4abc-9def-5f6071829304"},
    },
    "notification-acd-start.json": {
        "topicName": f"v2.detail.events.conversation.{CONVERSATION}.acd.start",
        "version": "2",
        "eventBody": {
            "eventTime": 1765551700900,
            "conversationId": "3d1f7c2a-9b4e-4c1d-8e2f-6a7b8c9d0e1f",
            "participantId": "q-7e6d5c4b-0000-4000-8000-000000000001",
            "sessionId": "b6d2f1c3-2222-4d3e-8f40-1b2c3d4e5f60",
            "mediaType": "VOICE",
            "provider": "Edge",
            "direction": "INBOUND",
            "ani": "tel:+15555550520",
            "dnis": "tel:+15555550000",
            "divisionId": "a1b2c3d4-4444-4e5f-8a9b-3d4e5f607182",
            "queueId": "9a8b7c6d-5555-4e5f-8a9b-4e5f60718293",
            "routingPriority": 0,
            "requestedRoutingSkillIds": [],
            "skillExpressionApplied": False,
        },
        "metadata": {"CorrelationId": "c0ffee03-8888-4abc-9def-718293a4b526"},
    },
    "notification-attributes.json": {
        "topicName": f"v2.detail.events.conversation.{CONVERSATION}.attributes",
        "version": "2",
        "eventBody": {
            "eventTime": 1765551690001,
            "conversationId": "3d1f7c2a-9b4e-4c1d-8e2f-6a7b8c9d0e1f",
            "participantId": "a5c1e0b2-1111-4c2d-9e3f-0a1b2c3d4e5f",
            "attributes": {"MenuChoice": "2", "AccountVerified": "true"},
            "communications": [
                {"id": "b6d2f1c3-2222-4d3e-8f40-1b2c3d4e5f60", "mediaType": "VOICE"}
            ],
            "participantStartTime": 1765551656400,
        },
        "metadata": {"CorrelationId": "c0ffee02-7777-4abc-9def-60718293a415"},
    },
    "notification-heartbeat.json": {
        "topicName": "channel.metadata",
        "eventBody": {"message": "WebSocket Heartbeat"},
    },
    "notification-pong.json": {"topicName": "channel.metadata", "eventBody": {"message": "pong"}},
    "notification-socket-closing.json": {
        "topicName": "v2.system.socket_closing",
        "version": "2",
        "eventBody": {"message": "Socket closing for maintenance"},
        "metadata": {"CorrelationId": "c0ffee04-9999-4abc-9def-8293a4b5c637"},
    },
    "analytics-details-response.json": {
        "totalHits": 1,
        "conversations": [
            {
                "conversationId": "3d1f7c2a-9b4e-4c1d-8e2f-6a7b8c9d0e1f",
                "conversationStart": "2026-05-01T10:00:56.400Z",
                "conversationEnd": "2026-05-01T10:07:12.000Z",
                "originatingDirection": "inbound",
                "divisionIds": ["a1b2c3d4-4444-4e5f-8a9b-3d4e5f607182"],
                "participants": [
                    {
                        "participantId": "c-1",
                        "purpose": "customer",
                        "sessions": [
                            {
                                "sessionId": "s-c",
                                "mediaType": "voice",
                                "direction": "inbound",
                                "ani": "tel:+15555550520",
                                "dnis": "tel:+15555550000",
                                "segments": [
                                    {
                                        "segmentStart": "2026-05-01T10:00:56.400Z",
                                        "segmentEnd": "2026-05-01T10:07:12.000Z",
                                        "segmentType": "interact",
                                        "disconnectType": "endpoint",
                                    }
                                ],
                            }
                        ],
                    },
                    {
                        "participantId": "a5c1e0b2-1111-4c2d-9e3f-0a1b2c3d4e5f",
                        "participantName": "Main IVR",
                        "purpose": "ivr",
                        "sessions": [
                            {
                                "sessionId": "b6d2f1c3-2222-4d3e-8f40-1b2c3d4e5f60",
                                "mediaType": "voice",
                                "flow": {
                                    "flowId": "0f3e2d1c-3333-4b5a-9c8d-2c3d4e5f6071",
                                    "flowName": "Main IVR",
                                    "flowType": "INBOUNDCALL",
                                    "flowVersion": "7.0",
                                    "entryType": "dnis",
                                    "entryReason": "tel:+15555550000",
                                    "exitReason": "TRANSFER",
                                    "transferType": "ACD",
                                    "transferTargetName": "Support",
                                },
                                "segments": [
                                    {
                                        "segmentStart": "2026-05-01T10:00:56.400Z",
                                        "segmentEnd": "2026-05-01T10:01:40.853Z",
                                        "segmentType": "ivr",
                                        "disconnectType": "transfer",
                                    }
                                ],
                            }
                        ],
                    },
                    {
                        "participantId": "q-1",
                        "purpose": "acd",
                        "sessions": [
                            {
                                "sessionId": "s-q",
                                "mediaType": "voice",
                                "segments": [
                                    {
                                        "segmentStart": "2026-05-01T10:01:40.900Z",
                                        "segmentEnd": "2026-05-01T10:02:30.000Z",
                                        "segmentType": "interact",
                                        "queueId": "9a8b7c6d-5555-4e5f-8a9b-4e5f60718293",
                                        "disconnectType": "transfer",
                                    }
                                ],
                            }
                        ],
                    },
                ],
            }
        ],
    },
}
RECEIVED = 1_777_629_999_000


def example(name: str) -> Any:
    return copy.deepcopy(EXAMPLES[name])


def envelope(topic: str, body: dict[str, Any], **kw: Any) -> NotificationEnvelope:
    return NotificationEnvelope(topic_name=topic, event_body=body, **kw)


def example_envelope(name: str) -> NotificationEnvelope:
    return msgspec.convert(example(name), NotificationEnvelope)


def live(topic: str, body: dict[str, Any]) -> InteractionEvent:
    event = from_notification(envelope(topic, body), RECEIVED)
    assert isinstance(event, InteractionEvent), event
    return event


def make_call(seed: int, index: int, arrival_ms: int = 1_777_629_600_000) -> Call:
    return TrafficModel(TrafficConfig(seed=seed)).make_call(index, arrival_ms)


# -- notifications: detail events ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "kind"),
    [
        ("notification-flow-start.json", "flow.start"),
        ("notification-flow-end.json", "flow.end"),
        ("notification-acd-start.json", "acd.start"),
        ("notification-attributes.json", "attributes"),
    ],
)
def test_a_detail_event_becomes_its_canonical_event(name, kind):
    raw = example(name)
    event = from_notification(example_envelope(name), RECEIVED)
    assert isinstance(event, InteractionEvent)
    body = raw["eventBody"]
    assert event.event_id == event_id(CONVERSATION, kind, body["eventTime"])
    assert event.source == "notifications"
    assert event.event_type == kind
    assert event.conversation_id == CONVERSATION
    assert event.sequence_id is None
    assert event.source_event_type == f"v2.detail.events.conversation.{{id}}.{kind}"
    assert event.data == body
    assert event.received_at == "2026-05-01T10:06:39.000Z"
    assert event.extra == {"metadata": raw["metadata"]}
    assert not event.recovered


def test_the_event_time_is_the_body_event_time():
    event = from_notification(example_envelope("notification-flow-end.json"), RECEIVED)
    assert isinstance(event, InteractionEvent)
    assert event.event_time == "2025-12-12T15:01:40.853Z"  # 1765551700853


def test_unknown_body_fields_are_kept_and_received_at_may_be_text():
    body = {"eventTime": 5, "conversationId": CONVERSATION, "brandNewField": {"x": [1]}}
    event = from_notification(
        envelope(f"v2.detail.events.conversation.{CONVERSATION}.customer.end", body),
        "2026-05-01T10:00:00.000Z",
    )
    assert isinstance(event, InteractionEvent)
    assert event.data["brandNewField"] == {"x": [1]}
    assert event.received_at == "2026-05-01T10:00:00.000Z"
    assert event.extra == {}


def test_a_body_without_conversation_id_takes_the_topic_id():
    event = live(f"v2.detail.events.conversation.{CONVERSATION}.acd.end", {"eventTime": 7})
    assert event.conversation_id == CONVERSATION
    assert event.event_id == event_id(CONVERSATION, "acd.end", 7)


def test_the_body_id_is_kept_when_it_differs_from_the_topic_only_in_case():
    upper = CONVERSATION.upper()
    event = live(
        f"v2.detail.events.conversation.{upper}.flow.start",
        {"eventTime": 7, "conversationId": CONVERSATION},
    )
    assert event.conversation_id == CONVERSATION


@pytest.mark.parametrize(
    "name",
    ["notification-heartbeat.json", "notification-pong.json", "notification-socket-closing.json"],
)
def test_channel_messages_are_not_events(name):
    assert from_notification(example_envelope(name), RECEIVED) is None


@pytest.mark.parametrize(
    "topic",
    [
        f"v2.system.no_longer_subscribed.{CONVERSATION}",
        f"v2.system.token_revoked.{CONVERSATION}",
    ],
)
def test_system_topics_are_not_events(topic):
    assert classify(topic) is TopicRole.SYSTEM
    assert from_notification(envelope(topic, {"message": "x"}), RECEIVED) is None


def test_discovery_topics_are_not_events():
    call = make_call(1, 3)
    flow_start = call.fact("flow.start")
    assert flow_start is not None
    [record] = flow_metric_records(flow_start)
    topic = flow_metrics_topic(call)
    assert classify(topic) is TopicRole.DISCOVERY
    assert from_notification(envelope(topic, record), RECEIVED) is None


GOOD = {"eventTime": 1_765_551_656_400, "conversationId": CONVERSATION}
TOPIC = f"v2.detail.events.conversation.{CONVERSATION}.flow.start"


@pytest.mark.parametrize(
    ("topic", "body", "reason"),
    [
        (TOPIC, {"conversationId": CONVERSATION}, "has no eventTime"),
        (TOPIC, {**GOOD, "eventTime": "1765551656400"}, "not an integer"),
        (TOPIC, {**GOOD, "eventTime": 1.5}, "not an integer"),
        (TOPIC, {**GOOD, "eventTime": True}, "not an integer"),
        (TOPIC, {**GOOD, "eventTime": None}, "has no eventTime"),
        (TOPIC, {**GOOD, "eventTime": -1}, "out of range"),
        (TOPIC, {**GOOD, "eventTime": 1 << 48}, "out of range"),
        (TOPIC, {**GOOD, "conversationId": 12}, "is not an id"),
        (TOPIC, {**GOOD, "conversationId": ""}, "is not an id"),
        (
            TOPIC,
            {**GOOD, "conversationId": "00000000-0000-4000-8000-000000000000"},
            "on the topic of",
        ),
        ("v2.detail.events.conversation.not-a-uuid.flow.start", GOOD, "must be a UUID"),
        ("v2.detail.events.conversation.{id}.flow.start", GOOD, "EventBridge"),
        (f"v2.detail.events.conversation.{CONVERSATION}.user.start", GOOD, "unknown topic"),
        (f"v2.detail.events.conversation.{CONVERSATION}?flow.start&flow.end", GOOD, "combined"),
        ("v2.users.abc.presence", GOOD, "unknown topic"),
        ("", GOOD, "unknown topic"),
    ],
)
def test_a_bad_detail_event_is_rejected_with_a_reason(topic, body, reason):
    result = from_notification(envelope(topic, body), RECEIVED)
    assert isinstance(result, Rejected)
    assert reason in result.reason


def test_a_hostile_value_is_shortened_in_the_reason():
    result = from_notification(envelope(TOPIC, {**GOOD, "conversationId": "x" * 10_000}), 0)
    assert isinstance(result, Rejected)
    assert len(result.reason) < 300


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=30),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=12), inner, max_size=4)
    ),
    max_leaves=20,
)


@given(
    kind=st.sampled_from(["flow.start", "customer.end", "attributes"]),
    body=st.dictionaries(
        st.sampled_from(["eventTime", "conversationId", "participantId", "x"]), json_values
    ),
)
@settings(max_examples=200, suppress_health_check=[HealthCheck.too_slow])
def test_any_body_is_an_event_or_a_rejection_never_an_exception(kind, body):
    result = from_notification(
        envelope(f"v2.detail.events.conversation.{CONVERSATION}.{kind}", body), RECEIVED
    )
    assert isinstance(result, InteractionEvent | Rejected)


# -- notifications: discovery --------------------------------------------------------------------


def test_flow_metric_records_name_their_conversation_and_start():
    call = next(c for i in range(100) if (c := make_call(2, i)).outcome is Outcome.CONTAINED)
    topic = flow_metrics_topic(call)
    found = [
        discovered_conversations(envelope(topic, record))
        for fact in call.facts
        for record in flow_metric_records(fact)
    ]
    assert found, "a flow emits metric records"
    assert all(d == [Discovered(call.conversation_id, call.start_ms, d[0].ended)] for d in found)
    # the call ends in the flow: its flow.end record says so (FLOW_DISCONNECT)
    assert [d[0].ended for d in found] == [False] * (len(found) - 2) + [True, True]


def test_a_flow_metric_record_of_a_transfer_does_not_end_the_conversation():
    call = next(c for i in range(100) if (c := make_call(2, i)).queue is not None)
    flow_end = call.fact("flow.end")
    assert flow_end is not None
    for record in flow_metric_records(flow_end):
        [found] = discovered_conversations(envelope(flow_metrics_topic(call), record))
        assert not found.ended


def test_queue_snapshots_name_their_conversation_and_say_when_it_ended():
    call = next(c for i in range(100) if (c := make_call(3, i)).queue is not None)
    topic = queue_topic(call)
    assert topic is not None
    assert classify(topic) is TopicRole.DISCOVERY
    seen = {
        fact.kind: discovered_conversations(envelope(topic, queue_snapshot(fact)))
        for fact in call.facts
        if fact.kind in ("acd.start", "acd.end", "customer.end")
    }
    assert seen["acd.start"] == [Discovered(call.conversation_id, call.start_ms, False)]
    assert seen["acd.end"] == [Discovered(call.conversation_id, call.start_ms, False)]
    assert seen["customer.end"] == [Discovered(call.conversation_id, call.start_ms, True)]


def test_a_customer_end_time_ends_the_conversation():
    body = {
        "id": CONVERSATION,
        "participants": [{"purpose": "customer", "endTime": "2026-05-01T10:07:12.000Z"}],
    }
    topic = f"v2.routing.queues.{CONVERSATION}.conversations"
    assert discovered_conversations(envelope(topic, body)) == [Discovered(CONVERSATION, None, True)]


@pytest.mark.parametrize(
    ("topic", "body"),
    [
        (f"v2.analytics.flow.{CONVERSATION}.metrics", {"metric": "nFlow"}),
        (f"v2.analytics.flow.{CONVERSATION}.metrics", {"conversationId": 5}),
        (f"v2.routing.queues.{CONVERSATION}.conversations", {"participants": []}),
        (TOPIC, GOOD),
        ("channel.metadata", {"message": "WebSocket Heartbeat"}),
    ],
)
def test_messages_that_name_no_conversation_discover_nothing(topic, body):
    assert discovered_conversations(envelope(topic, body)) == []


def test_unreadable_discovery_fields_are_ignored():
    body = {
        "id": CONVERSATION,
        "participants": [
            "junk",
            {"purpose": "customer", "connectedTime": "yesterday", "calls": "none"},
            {"purpose": "agent", "connectedTime": 1_000},
        ],
    }
    topic = f"v2.routing.queues.{CONVERSATION}.conversations"
    assert discovered_conversations(envelope(topic, body)) == [
        Discovered(CONVERSATION, 1_000, False)
    ]


# -- analytics: the reference example ------------------------------------------------------------


def test_the_reference_conversation_rebuilds_six_events_in_time_order():
    [conversation] = example("analytics-details-response.json")["conversations"]
    rebuilt = rebuild(conversation, RECEIVED)
    assert rebuilt.conversation_id == CONVERSATION
    assert rebuilt.problem is None
    assert [(e.event_type, e.event_time) for e in rebuilt.events] == [
        ("customer.start", "2026-05-01T10:00:56.400Z"),
        ("flow.start", "2026-05-01T10:00:56.400Z"),
        ("flow.end", "2026-05-01T10:01:40.853Z"),
        ("acd.start", "2026-05-01T10:01:40.900Z"),
        ("acd.end", "2026-05-01T10:02:30.000Z"),
        ("customer.end", "2026-05-01T10:07:12.000Z"),
    ]
    assert rebuilt.unrebuilt == {"attributes"}  # the flow may have set data: unseen here
    assert not rebuilt.complete
    for event in rebuilt.events:
        assert event.source == "backfill"
        assert event.recovered
        assert event.sequence_id is None
        assert event.source_event_type == BACKFILL_SOURCE_TYPE
        assert event.received_at == "2026-05-01T10:06:39.000Z"
        assert event.data["eventTime"] == _ms(event.event_time)
        assert event.event_id == event_id(CONVERSATION, event.event_type, _ms(event.event_time))
    by_kind = {e.event_type: e.data for e in rebuilt.events}
    assert by_kind["flow.end"] | {"eventTime": 0} == by_kind["flow.end"] | {
        "eventTime": 0,
        "flowId": "0f3e2d1c-3333-4b5a-9c8d-2c3d4e5f6071",
        "flowName": "Main IVR",
        "flowType": "INBOUNDCALL",
        "flowVersion": "7.0",
        "exitReason": "TRANSFER",
        "transferType": "ACD",
        "disconnectType": "TRANSFER",
        "connectedDurationMs": 44_453,
        "ani": "tel:+15555550520",
        "dnis": "tel:+15555550000",
        "mediaType": "VOICE",
        "direction": "INBOUND",
    }
    assert by_kind["acd.start"]["queueId"] == "9a8b7c6d-5555-4e5f-8a9b-4e5f60718293"
    assert by_kind["acd.start"]["ani"] == "tel:+15555550520"  # from the customer's session
    assert by_kind["customer.end"]["disconnectType"] == "ENDPOINT"
    assert from_analytics(conversation, RECEIVED) == rebuilt.events


def test_the_reference_ids_match_the_reference_notifications():
    """The examples share milliseconds (not dates): shift the analytics times onto them."""
    [conversation] = example("analytics-details-response.json")["conversations"]
    shift = 1_765_551_656_400 - _ms(conversation["conversationStart"])
    rebuilt = {e.event_type: _ms(e.event_time) + shift for e in from_analytics(conversation, 0)}
    for name, kind in [
        ("notification-flow-start.json", "flow.start"),
        ("notification-flow-end.json", "flow.end"),
        ("notification-acd-start.json", "acd.start"),
    ]:
        assert example(name)["eventBody"]["eventTime"] == rebuilt[kind]


# -- analytics against the traffic model --------------------------------------------------------


def live_ids(call: Call) -> dict[str, set[str]]:
    """Event ids of the live detail events of ``call``, by kind (via from_notification)."""
    out: dict[str, set[str]] = {}
    for fact in call.facts:
        event = live(detail_topic(fact), detail_body(fact))
        assert event.event_type == fact.kind
        out.setdefault(fact.kind, set()).add(event.event_id)
    return out


def eventstreams_ids(call: Call) -> dict[str, set[str]]:
    out: dict[str, set[str]] = {}
    for fact in call.facts:
        out.setdefault(fact.kind, set()).add(
            event_id(call.conversation_id, fact.kind, fact.time_ms)
        )
    return out


calls = st.builds(
    make_call,
    seed=st.integers(0, 2**16),
    index=st.integers(0, 10_000),
    arrival_ms=st.integers(1_500_000_000_000, 2_000_000_000_000),
)


@given(call=calls)
@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow])
def test_the_three_paths_give_one_id_per_rebuildable_event(call):
    notified = live_ids(call)
    assert notified == eventstreams_ids(call)
    rebuilt = rebuild(analytics_conversation(call, call.end_ms), RECEIVED)
    by_kind: dict[str, set[str]] = {}
    for event in rebuilt.events:
        by_kind.setdefault(event.event_type, set()).add(event.event_id)
    expected = {k: ids for k, ids in notified.items() if k in REBUILT_KINDS}
    assert by_kind == expected
    # every live kind analytics cannot rebuild is reported, and nothing else
    assert {k for k in notified if k not in REBUILT_KINDS} <= rebuilt.unrebuilt
    assert rebuilt.unrebuilt <= set(NOT_REBUILT_KINDS)
    assert rebuilt.problem is None


@given(call=calls, at=st.floats(0, 1))
@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow])
def test_a_conversation_in_progress_rebuilds_what_has_happened_and_no_more(call, at):
    now_ms = call.start_ms + round(at * (call.end_ms - call.start_ms))
    rebuilt = rebuild(analytics_conversation(call, now_ms), RECEIVED)
    expected = {
        event_id(call.conversation_id, f.kind, f.time_ms)
        for f in call.facts
        if f.kind in REBUILT_KINDS and f.time_ms <= now_ms
    }
    assert {e.event_id for e in rebuilt.events} == expected
    assert rebuilt.unrebuilt <= set(NOT_REBUILT_KINDS)
    times = [(_ms(e.event_time)) for e in rebuilt.events]
    assert times == sorted(times)


def test_rebuilt_events_carry_what_the_live_ones_say():
    model = TrafficModel(TrafficConfig(seed=7))
    seen: set[Outcome] = set()
    for index in range(300):
        call = model.make_call(index, 1_777_629_600_000 + index)
        seen.add(call.outcome)
        notified = {f.kind: detail_body(f) for f in call.facts}
        rebuilt = {
            e.event_type: e.data
            for e in from_analytics(analytics_conversation(call, call.end_ms), RECEIVED)
        }
        for kind, data in rebuilt.items():
            body = notified[kind]
            for key in ("eventTime", "conversationId", "participantId", "sessionId", "ani"):
                assert data[key] == body[key], (kind, key)
            for key in ("flowId", "flowType", "flowVersion", "queueId", "acdOutcome"):
                assert data.get(key) == body.get(key), (kind, key)
            for key in ("exitReason", "transferType", "answeredUserId"):
                assert data.get(key) == body.get(key), (kind, key)
        if "flow.start" in rebuilt:
            assert rebuilt["flow.start"]["flowName"] == call.flow.name
    assert seen == set(Outcome)


def test_the_flow_outcomes_ride_along_on_flow_end():
    call = next(c for i in range(100) if (c := make_call(4, i)).fact("flow.outcome"))
    rebuilt = rebuild(analytics_conversation(call, call.end_ms), RECEIVED)
    assert "flow.outcome" in rebuilt.unrebuilt
    [flow_end] = [e for e in rebuilt.events if e.event_type == "flow.end"]
    [outcome] = flow_end.extra["flowOutcomes"]
    assert outcome["flowOutcomeId"] == call.flow_outcome_id


# -- analytics: what cannot be rebuilt, and bad records ------------------------------------------


def conversation_of(seed: int = 5, kind: Outcome = Outcome.ANSWERED) -> dict[str, Any]:
    call = next(c for i in range(200) if (c := make_call(seed, i)).outcome is kind)
    return analytics_conversation(call, call.end_ms)


def sessions(conversation: dict[str, Any], purpose: str) -> list[dict[str, Any]]:
    return [
        s for p in conversation["participants"] if p["purpose"] == purpose for s in p["sessions"]
    ]


def kinds(conversation: dict[str, Any]) -> list[str]:
    return [e.event_type for e in from_analytics(conversation, RECEIVED)]


def test_an_ended_session_without_a_readable_end_is_reported_unrebuilt():
    conversation = conversation_of()
    [ivr] = sessions(conversation, "ivr")
    del ivr["segments"][0]["segmentEnd"]
    rebuilt = rebuild(conversation, RECEIVED)
    assert "flow.end" not in [e.event_type for e in rebuilt.events]
    assert "flow.end" in rebuilt.unrebuilt


def test_an_unreadable_start_is_reported_unrebuilt():
    conversation = conversation_of()
    [acd] = sessions(conversation, "acd")
    acd["segments"][0]["segmentStart"] = "not a time"
    rebuilt = rebuild(conversation, RECEIVED)
    assert "acd.start" not in [e.event_type for e in rebuilt.events]
    assert "acd.start" in rebuilt.unrebuilt
    assert "acd.end" in [e.event_type for e in rebuilt.events]


def test_a_time_out_of_the_id_range_is_reported_unrebuilt():
    conversation = conversation_of()
    [customer] = sessions(conversation, "customer")
    customer["segments"][0]["segmentStart"] = "0001-01-01T00:00:00.000Z"
    rebuilt = rebuild(conversation, RECEIVED)
    assert "customer.start" in rebuilt.unrebuilt


def test_participant_attributes_from_a_job_are_reported_unrebuilt():
    call = make_call(5, 1)
    rebuilt = rebuild(analytics_conversation(call, call.end_ms, with_attributes=True), 0)
    assert "attributes" in rebuilt.unrebuilt
    assert "attributes" not in [e.event_type for e in rebuilt.events]


def test_segments_of_one_session_span_from_first_start_to_last_end():
    conversation = conversation_of()
    [customer] = sessions(conversation, "customer")
    first = customer["segments"][0]
    customer["segments"] = [
        {**first, "segmentEnd": "2026-05-01T10:00:00.500Z", "segmentType": "interact"},
        {**first, "segmentStart": "2026-05-01T10:00:00.500Z", "segmentType": "hold"},
    ]
    customer["segments"][0]["segmentStart"] = "2026-05-01T10:00:00.000Z"
    events = {e.event_type: e for e in from_analytics(conversation, RECEIVED)}
    assert events["customer.start"].event_time == "2026-05-01T10:00:00.000Z"
    assert events["customer.end"].event_time == conversation["conversationEnd"]


@pytest.mark.parametrize(("metric", "outcome"), [("tAbandon", "ABANDON"), ("tFlowOut", "FLOW_OUT")])
def test_acd_outcome_comes_from_session_metrics_when_present(metric, outcome):
    conversation = conversation_of(kind=Outcome.ABANDONED_IN_QUEUE)
    [acd] = sessions(conversation, "acd")
    acd["metrics"] = [{"name": metric, "value": 1, "emitDate": conversation["conversationEnd"]}]
    acd["segments"][0]["disconnectType"] = "transfer"
    [acd_end] = [e for e in from_analytics(conversation, 0) if e.event_type == "acd.end"]
    assert acd_end.data["acdOutcome"] == outcome


def test_an_answered_metric_names_the_agent():
    conversation = conversation_of(kind=Outcome.ANSWERED)
    [acd] = sessions(conversation, "acd")
    acd["metrics"] = [{"name": "tAnswered", "value": 1}]
    [acd_end] = [e for e in from_analytics(conversation, 0) if e.event_type == "acd.end"]
    assert acd_end.data["acdOutcome"] == "ANSWERED"
    assert acd_end.data["answeredUserId"]


def test_disconnect_types_take_the_detail_event_spelling():
    conversation = conversation_of()
    [customer] = sessions(conversation, "customer")
    customer["segments"][-1]["disconnectType"] = "transportFailure"
    [end] = [e for e in from_analytics(conversation, 0) if e.event_type == "customer.end"]
    assert end.data["disconnectType"] == "TRANSPORT_FAILURE"


@pytest.mark.parametrize("cid", [None, "", 5])
def test_a_record_without_conversation_id_is_a_problem(cid):
    conversation = conversation_of()
    conversation["conversationId"] = cid
    rebuilt = rebuild(conversation, RECEIVED)
    assert rebuilt.events == []
    assert rebuilt.problem is not None
    assert rebuilt.conversation_id is None


def test_rebuilding_does_not_change_the_record():
    conversation = conversation_of()
    before = copy.deepcopy(conversation)
    rebuild(conversation, RECEIVED)
    assert conversation == before


@given(
    record=st.fixed_dictionaries(
        {"conversationId": st.just(CONVERSATION)},
        optional={
            "conversationEnd": json_values,
            "divisionIds": json_values,
            "participants": st.lists(
                st.fixed_dictionaries(
                    {},
                    optional={
                        "purpose": st.sampled_from(["customer", "ivr", "acd", "agent", 3]),
                        "attributes": json_values,
                        "userId": json_values,
                        "sessions": st.lists(
                            st.fixed_dictionaries(
                                {},
                                optional={
                                    "flow": json_values | st.just({"outcomes": [{}]}),
                                    "metrics": json_values,
                                    "direction": json_values,
                                    "mediaType": json_values,
                                    "segments": st.lists(
                                        st.fixed_dictionaries(
                                            {},
                                            optional={
                                                "segmentStart": json_values
                                                | st.just("2026-05-01T10:00:00Z"),
                                                "segmentEnd": json_values
                                                | st.just("2026-05-01T10:01:00Z"),
                                                "disconnectType": json_values,
                                                "queueId": json_values,
                                            },
                                        ),
                                        max_size=3,
                                    )
                                    | json_values,
                                },
                            ),
                            max_size=3,
                        )
                        | json_values,
                    },
                ),
                max_size=4,
            )
            | json_values,
        },
    )
)
@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow])
def test_any_record_rebuilds_without_an_exception(record):
    rebuilt = rebuild(record, RECEIVED)
    for event in rebuilt.events:
        assert event.event_id == event_id(CONVERSATION, event.event_type, _ms(event.event_time))
        assert event.event_type in REBUILT_KINDS
    assert rebuilt.unrebuilt <= set(REBUILT_KINDS) | set(NOT_REBUILT_KINDS)
