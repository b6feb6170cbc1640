import msgspec
import pytest

from ivrstream.models import Subscription
from ivrstream.protocol.eventstreams import (
    MAX_PAYLOAD_BYTES,
    check_subscription,
    check_subscription_bytes,
    encode_subscription,
    parse_filter,
)


def IVR(**kw):  # noqa: N802 - reads as a constructor
    return Subscription(event_type="interaction:updated", data_types=["interaction"], **kw)


def fields(verdict):
    return [v.field for v in verdict.violations]


def test_a_default_subscription_is_valid_and_measured_on_its_bytes():
    sub = Subscription(
        event_type="interaction:updated",
        data_types=["interaction"],
        filters={"interaction.routing.type": "IVR"},
        retry=60,
    )
    verdict = check_subscription(sub)
    assert verdict.ok
    assert verdict.byte_size == len(encode_subscription(sub))
    assert verdict.subscription == sub


def test_exactly_the_limit_passes_and_one_byte_more_fails():
    def padded(total: int) -> bytes:
        base = encode_subscription(IVR(filters={"interaction.x": ""}))
        pad = total - len(base)
        return encode_subscription(IVR(filters={"interaction.x": "a" * pad}))

    assert len(padded(MAX_PAYLOAD_BYTES)) == MAX_PAYLOAD_BYTES
    assert check_subscription_bytes(padded(MAX_PAYLOAD_BYTES)).ok
    over = check_subscription_bytes(padded(MAX_PAYLOAD_BYTES + 1))
    assert fields(over) == ["payload"]
    assert "65537 bytes exceeds the 65536-byte limit" in str(over.violations[0])


def test_every_violation_is_reported_at_once_with_its_field():
    payload = msgspec.json.encode(
        {
            "eventType": "interaction:deleted",
            "dataTypes": ["user"],
            "filters": {"routing type": "IVR", "interaction.id": "eq:"},
            "retry": 301,
            "contentType": "text/xml",
            "resumeAfter": -1,
            "colour": "blue",
        }
    )
    verdict = check_subscription_bytes(payload, active_connections=100)
    assert not verdict.ok
    assert set(fields(verdict)) == {
        "connections",
        "colour",
        "eventType",
        "filters['routing type']",
        "filters['interaction.id']",
        "retry",
        "contentType",
        "resumeAfter",
    }


def test_restricted_data_type_for_interaction_events():
    payload = msgspec.json.encode(
        {"eventType": "interaction:updated", "dataTypes": ["interaction", "user"]}
    )
    verdict = check_subscription_bytes(payload)
    assert fields(verdict) == ["dataTypes"]
    assert "restricted data type" in verdict.violations[0].message


def test_filter_paths_must_start_with_a_subscribed_data_type():
    payload = msgspec.json.encode(
        {
            "eventType": "interaction:updated",
            "dataTypes": ["interaction"],
            "filters": {"queue.id": "x"},
        }
    )
    assert fields(check_subscription_bytes(payload)) == ["filters['queue.id']"]


@pytest.mark.parametrize("payload", [b"not json", b"[1,2]", b'"text"'])
def test_non_objects_are_violations_not_crashes(payload):
    verdict = check_subscription_bytes(payload)
    assert fields(verdict) == ["payload"]
    assert verdict.subscription is None


@pytest.mark.parametrize(
    ("value", "operator", "operand"),
    [
        ("IVR", "eq", "IVR"),
        ("eq:IVR", "eq", "IVR"),
        ("gt:2026-05-01T00:00:00Z", "gt", "2026-05-01T00:00:00Z"),
        ("contains:billing", "contains", "billing"),
        ("tel:+15555550100", "eq", "tel:+15555550100"),  # an unknown prefix is part of a literal
    ],
)
def test_parse_filter(value, operator, operand):
    condition = parse_filter("interaction.routing.type", value)
    assert (condition.data_type, condition.path) == ("interaction", ("routing", "type"))
    assert (condition.operator, condition.operand) == (operator, operand)


def test_absent_fields_take_the_servers_defaults():
    verdict = check_subscription_bytes(
        b'{"eventType":"interaction:created","dataTypes":["interaction"]}'
    )
    assert verdict.ok
    assert verdict.subscription is not None
    assert verdict.subscription.content_type == "application/json"
    assert verdict.subscription.retry == 60
    assert verdict.subscription.resume_after is None
