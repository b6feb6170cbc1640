import string
import uuid

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ivrstream.protocol.topics import (
    CATALOGUE,
    DETAIL_KINDS,
    DETAIL_VIEW,
    FLOW_METRICS,
    FLOW_METRICS_VIEW,
    MAX_COMBINED_LENGTH,
    QUEUE_CONVERSATIONS,
    QUEUE_VIEW,
    TopicError,
    combine,
    conversation_topics,
    detail_topic,
    expand_combined,
    flow_metrics_topic,
    missing_permissions,
    over_websocket,
    parse_topic,
    queue_topic,
    split_topic,
)

CONV = "3d1f7c2a-9b4e-4c1d-8e2f-6a7b8c9d0e1f"
SUBSCRIBABLE = [spec for spec in CATALOGUE if spec.subscribable]


# -- the catalogue -------------------------------------------------------------------------------


def test_catalogue_covers_every_ivr_topic():
    patterns = {spec.pattern for spec in SUBSCRIBABLE}
    assert patterns == {
        *(f"v2.detail.events.conversation.{{id}}.{kind}" for kind in DETAIL_KINDS),
        "v2.routing.queues.{id}.conversations",
        "v2.analytics.flow.{id}.metrics",
    }
    assert len(DETAIL_KINDS) == 8


def test_catalogue_names_parameters_and_permissions():
    by_pattern = {spec.pattern: spec for spec in CATALOGUE}
    assert by_pattern[QUEUE_CONVERSATIONS].parameter == "queueId"
    assert by_pattern[QUEUE_CONVERSATIONS].permissions == (QUEUE_VIEW,)
    assert by_pattern[FLOW_METRICS].parameter == "flowId"
    assert by_pattern[FLOW_METRICS].permissions == (FLOW_METRICS_VIEW,)
    for kind in DETAIL_KINDS:
        spec = by_pattern[f"v2.detail.events.conversation.{{id}}.{kind}"]
        assert spec.parameter == "conversationId"
        assert spec.permissions == (DETAIL_VIEW,)
        assert spec.body.endswith("Event")
    assert all(spec.transports == ("All",) for spec in SUBSCRIBABLE)
    assert not any(spec.subscribable for spec in CATALOGUE if spec.pattern.startswith("v2.system"))


def test_builders_make_concrete_topics():
    assert detail_topic(CONV, "flow.end") == f"v2.detail.events.conversation.{CONV}.flow.end"
    assert queue_topic(CONV) == f"v2.routing.queues.{CONV}.conversations"
    assert flow_metrics_topic(CONV) == f"v2.analytics.flow.{CONV}.metrics"
    assert len(conversation_topics(CONV)) == 8
    with pytest.raises(ValueError, match="unknown detail event kind"):
        detail_topic(CONV, "user.start")


def test_missing_permissions_and_transports():
    spec = parse_topic(queue_topic(CONV)).spec
    assert spec is not None
    assert missing_permissions(spec, {DETAIL_VIEW}) == [QUEUE_VIEW]
    assert missing_permissions(spec, {QUEUE_VIEW, DETAIL_VIEW}) == []
    assert over_websocket(["All"])
    assert over_websocket(["EventBridge", "Websocket"])
    assert not over_websocket(["EventBridge"])
    assert not over_websocket([])


# -- parse_topic ---------------------------------------------------------------------------------


@pytest.mark.parametrize("spec", SUBSCRIBABLE, ids=lambda s: s.pattern)
def test_every_pattern_parses_with_a_uuid(spec):
    parsed = parse_topic(spec.topic(CONV))
    assert parsed.ok
    assert parsed.spec is spec
    assert parsed.id == CONV


def test_uppercase_uuids_are_accepted():
    assert parse_topic(detail_topic(CONV.upper(), "flow.start")).ok


@pytest.mark.parametrize("wildcard", ["{id}", "*"])
def test_wildcards_are_rejected_as_genesys_does(wildcard):
    parsed = parse_topic(f"v2.detail.events.conversation.{wildcard}.flow.start")
    assert not parsed.ok
    assert parsed.problem == "wildcards are only supported by EventBridge"
    assert parsed.spec is not None


@pytest.mark.parametrize(
    ("topic", "problem"),
    [
        ("", "topic is empty"),
        ("v2.detail.events.conversation.12345.flow.start", "conversationId must be a UUID"),
        ("v2.routing.queues.billing.conversations", "queueId must be a UUID"),
        (f"v2.detail.events.conversation.{CONV}.user.start", "unknown topic"),
        (f"v2.users.{CONV}.presence", "unknown topic"),
        ("v2.detail.events.conversation..flow.start", "unknown topic"),
        ("v2.system.socket_closing", "v2.system topics cannot be subscribed"),
        ("v2.system.no_longer_subscribed.streaming-0-abc", "v2.system topics cannot be subscribed"),
        ("v2.system.anything", "v2.system topics cannot be subscribed"),
        (f"v2.detail.events.conversation.{CONV}?flow.start", "combined topic"),
    ],
)
def test_invalid_topics_say_why(topic, problem):
    parsed = parse_topic(topic)
    assert not parsed.ok
    assert parsed.problem is not None
    assert parsed.problem.startswith(problem)


def test_a_long_bad_id_is_shortened_in_the_reason():
    parsed = parse_topic(f"v2.analytics.flow.{'x' * 500}.metrics")
    assert parsed.problem is not None
    assert len(parsed.problem) < 120


# -- expand_combined -----------------------------------------------------------------------------


def test_expand_combined_topic():
    prefix = f"v2.detail.events.conversation.{CONV}"
    assert expand_combined(f"{prefix}?flow.start&flow.end&flow.start") == [
        f"{prefix}.flow.start",
        f"{prefix}.flow.end",
    ]


def test_expand_plain_topic_is_itself_whatever_its_length():
    topic = "x" * 500
    assert expand_combined(topic) == [topic]


def test_combined_length_limit_is_exactly_200():
    prefix = f"v2.detail.events.conversation.{CONV}?"
    filler = "a" * (MAX_COMBINED_LENGTH - len(prefix) - len("&b"))
    at_limit = f"{prefix}{filler}&b"
    assert len(at_limit) == 200
    assert len(expand_combined(at_limit)) == 2
    with pytest.raises(TopicError, match="201 characters; the limit is 200"):
        expand_combined(at_limit + "c")
    assert len(expand_combined(at_limit + "c", max_length=201)) == 2


@pytest.mark.parametrize("bad", ["?a&b", "p?", "p?a&&b", "p?a&", "p?a?b"])
def test_malformed_combined_topics(bad):
    with pytest.raises(TopicError):
        expand_combined(bad)


# -- combine -------------------------------------------------------------------------------------


def test_one_conversation_combines_into_one_string():
    combined = combine(conversation_topics(CONV))
    assert len(combined) == 1
    assert combined[0].startswith(f"v2.detail.events.conversation.{CONV}?flow.start&")
    assert len(combined[0]) <= 200
    assert expand_combined(combined[0]) == conversation_topics(CONV)


def test_single_topics_stay_plain():
    topics = [queue_topic(CONV), flow_metrics_topic(CONV), "plain", ".leading", "a&b"]
    assert combine(topics) == [
        "plain",
        ".leading",
        "a&b",
        queue_topic(CONV),
        flow_metrics_topic(CONV),
    ]


def test_split_cuts_catalogue_topics_after_the_id():
    assert split_topic(detail_topic(CONV, "flow.start")) == (
        f"v2.detail.events.conversation.{CONV}",
        "flow.start",
    )
    assert split_topic("a.b.c") == ("a.b", "c")
    assert split_topic("nodot") is None
    assert split_topic("trailing.") is None


def test_many_conversations_pack_within_the_limit():
    conversations = [str(uuid.UUID(int=i, version=4)) for i in range(125)]
    topics = [t for c in conversations for t in conversation_topics(c)]
    combined = combine(topics)
    assert len(topics) == 1000
    assert len(combined) == 125
    assert all(len(c) <= 200 for c in combined)


def test_combine_refuses_question_marks():
    with pytest.raises(TopicError):
        combine(["a.b?c"])


def test_combine_with_a_tight_limit_splits_groups():
    topics = conversation_topics(CONV)
    combined = combine(topics, max_length=100)
    assert len(combined) > 1
    assert all(len(c) <= 100 for c in combined if "?" in c)
    assert [t for c in combined for t in expand_combined(c, 100)] == topics


_segment = st.text(alphabet=string.ascii_lowercase + string.digits + "_-", min_size=1, max_size=12)
_dotted = st.lists(_segment, min_size=1, max_size=6).map(".".join)
_catalogue_topic = st.builds(
    lambda spec, ident: spec.topic(str(ident)),
    st.sampled_from(SUBSCRIBABLE),
    st.uuids(),
)
_few_conversations = st.builds(
    lambda ident, kind: detail_topic(str(ident), kind),
    st.sampled_from([uuid.UUID(int=i, version=4) for i in range(3)]),
    st.sampled_from(list(DETAIL_KINDS)),
)
_topics = st.lists(st.one_of(_catalogue_topic, _few_conversations, _dotted), max_size=150)


@given(_topics)
def test_property_expand_of_combine_is_the_same_set(topics):
    combined = combine(topics)
    expanded = [t for c in combined for t in expand_combined(c)]
    assert set(expanded) == set(topics)
    assert len(expanded) == len(set(topics))  # nothing twice
    assert all(len(c) <= MAX_COMBINED_LENGTH for c in combined)
    assert len(combined) <= len(set(topics))


@given(_topics, st.integers(min_value=20, max_value=400))
def test_property_any_limit_is_kept_by_combined_strings(topics, limit):
    combined = combine(topics, max_length=limit)
    assert {t for c in combined for t in expand_combined(c, limit)} == set(topics)
    for c in combined:
        assert len(c) <= limit if "?" in c else c in topics
