"""Caller privacy: rules, precedence, the card scan, raw-byte scrubbing and the key."""

from __future__ import annotations

import base64
import copy
import os
import re
import stat
import time
from pathlib import Path
from typing import Any

import msgspec
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ivrstream.emulator import render
from ivrstream.emulator.traffic import Call, TrafficConfig, TrafficModel, luhn_complete
from ivrstream.errors import ConfigError
from ivrstream.privacy import (
    DEFAULT_RULES,
    Redactor,
    Rule,
    load_key,
    luhn_valid,
    scrub_bytes,
)

KEY = bytes(range(32))
OTHER_KEY = bytes(range(1, 33))
ANI = "tel:+15555550520"
DNIS = "tel:+15555550000"
CARD = "4111111111111111"  # the classic Visa test number: Luhn-valid
NOT_LUHN = "4111111111111112"
HASHED = re.compile(r"hmac-sha256:[0-9a-f]{32}")

# shared/reference/examples/eventstreams-event.json, its ``data``
ES_DATA: dict[str, Any] = {
    "id": "3d1f7c2a-9b4e-4c1d-8e2f-6a7b8c9d0e1f",
    "conversationId": "3d1f7c2a-9b4e-4c1d-8e2f-6a7b8c9d0e1f",
    "state": "ivr",
    "routing": {"type": "IVR"},
    "ani": ANI,
    "dnis": DNIS,
    "flow": {
        "id": "0f3e2d1c-3333-4b5a-9c8d-2c3d4e5f6071",
        "name": "Main IVR",
        "type": "INBOUNDCALL",
        "version": "7.0",
    },
    "menuPath": ["main", "billing"],
    "attributes": {"MenuChoice": "2"},
}

# shared/reference/examples/notification-flow-start.json, its ``eventBody``, plus the detail
# events' other caller fields (genesys-schemas.md §2.3)
DETAIL_BODY: dict[str, Any] = {
    "eventTime": 1765551656400,
    "conversationId": "3d1f7c2a-9b4e-4c1d-8e2f-6a7b8c9d0e1f",
    "participantId": "a5c1e0b2-1111-4c2d-9e3f-0a1b2c3d4e5f",
    "sessionId": "b6d2f1c3-2222-4d3e-8f40-1b2c3d4e5f60",
    "mediaType": "VOICE",
    "provider": "Edge",
    "direction": "INBOUND",
    "ani": ANI,
    "dnis": DNIS,
    "addressFrom": ANI,
    "addressTo": DNIS,
    "callbackNumbers": ["tel:+15555550199", ANI],
    "callbackUserName": "Ada Lovelace",
    "divisionId": "a1b2c3d4-4444-4e5f-8a9b-3d4e5f607182",
    "flowType": "INBOUNDCALL",
    "flowId": "0f3e2d1c-3333-4b5a-9c8d-2c3d4e5f6071",
    "flowVersion": "7.0",
    "conversationExternalContactIds": [],
}


def with_attributes(data: dict[str, Any], **attributes: Any) -> dict[str, Any]:
    return {**data, "attributes": {**data.get("attributes", {}), **attributes}}


@pytest.fixture
def redactor() -> Redactor:
    return Redactor(DEFAULT_RULES, KEY)


def only(rules: list[Rule], **kwargs: Any) -> Redactor:
    return Redactor(rules, KEY, **kwargs)


# -- the defaults ------------------------------------------------------------------------------


def test_defaults_on_an_event_streams_snapshot(redactor: Redactor) -> None:
    data = with_attributes(
        ES_DATA,
        PaymentCard=CARD,
        AccountId="4000123456",  # 10 digits: no card
        Reference=NOT_LUHN,  # 16 digits, not Luhn-valid
        CalledAt="2026-05-01T10:00:56.400Z",
    )
    out = redactor.redact(data)
    assert out["ani"] == redactor.hash(ANI)
    assert HASHED.fullmatch(out["ani"])
    assert out["dnis"] == redactor.hash(DNIS)
    assert out["dnis"] != out["ani"]
    assert out["attributes"] == {
        "MenuChoice": "2",
        "PaymentCard": "************1111",
        "AccountId": "4000123456",
        "Reference": NOT_LUHN,
        "CalledAt": "2026-05-01T10:00:56.400Z",
    }
    untouched = {k: v for k, v in data.items() if k not in ("ani", "dnis", "attributes")}
    assert {k: v for k, v in out.items() if k in untouched} == untouched


def test_defaults_on_a_notifications_detail_body(redactor: Redactor) -> None:
    data = with_attributes(DETAIL_BODY, PaymentCard=f"card {CARD[:4]} {CARD[4:8]} {CARD[8:]}")
    data["eventTime"] = int(CARD)  # a Luhn-valid *number*: integers are never cards
    out = redactor.redact(data)
    for field in ("ani", "addressFrom"):
        assert out[field] == redactor.hash(ANI)
    for field in ("dnis", "addressTo"):
        assert out[field] == redactor.hash(DNIS)
    assert out["callbackNumbers"] == [redactor.hash("tel:+15555550199"), redactor.hash(ANI)]
    assert out["callbackUserName"] == redactor.hash("Ada Lovelace")
    assert out["attributes"]["PaymentCard"] == "card **** **** ****1111"
    assert out["eventTime"] == int(CARD)
    assert out["participantId"] == DETAIL_BODY["participantId"]


def emulated_call(index: int = 7, card_share: float = 1.0) -> Call:
    return TrafficModel(TrafficConfig(card_share=card_share)).make_call(index, 1_000)


def test_no_caller_number_or_card_survives_any_emulated_shape(redactor: Redactor) -> None:
    """Every surface the emulator renders: Event Streams, detail events, queue snapshots,
    flow metrics and analytics conversations (backfill)."""
    for index in range(40):
        call = emulated_call(index)
        card = next(
            (f.attributes["PaymentCard"] for f in call.facts if "PaymentCard" in f.attributes),
            None,
        )
        shapes: list[dict[str, Any]] = []
        for fact in call.facts:
            shapes.append(render.interaction_snapshot(fact))
            shapes.extend(body for _, body in render.notifications_for(fact))
        shapes.append(render.analytics_conversation(call, call.end_ms, with_attributes=True))
        for shape in shapes:
            text = msgspec.json.encode(redactor.redact(shape)).decode()
            assert call.ani not in text
            assert call.flow.dnis not in text
            assert card is None or card not in text
            if call.ani in msgspec.json.encode(shape).decode():
                assert redactor.hash(call.ani) in text  # hashed, so it still joins


def test_one_caller_hashes_the_same_in_every_event_and_shape(redactor: Redactor) -> None:
    call = emulated_call(3)
    hashes = {redactor.redact(render.interaction_snapshot(f))["ani"] for f in call.facts}
    hashes |= {redactor.redact(render.detail_body(f)).get("ani") for f in call.facts} - {None}
    queue = [f for f in call.facts if f.kind == "acd.start"]
    for fact in queue:  # the customer participant's address is the ANI
        customer = redactor.redact(render.queue_snapshot(fact))["participants"][0]
        hashes.add(customer["address"])
    assert hashes == {redactor.hash(call.ani)}


# -- actions -----------------------------------------------------------------------------------


def test_hash_is_keyed_stable_and_joins() -> None:
    first, again, other = Redactor([], KEY), Redactor([], KEY), Redactor([], OTHER_KEY)
    assert first.hash(ANI) == again.hash(ANI)  # a restart with the same key
    assert first.hash(ANI) != other.hash(ANI)
    assert first.hash(ANI) != first.hash(DNIS)
    assert HASHED.fullmatch(first.hash(ANI))
    event_1, event_2 = {"ani": ANI, "n": 1}, {"ani": ANI, "n": 2}
    rules = [Rule("ani", "hash")]
    assert only(rules).redact(event_1)["ani"] == Redactor(rules, KEY).redact(event_2)["ani"]


def test_hash_of_a_non_string_is_on_its_canonical_json() -> None:
    r = only([Rule("a", "hash"), Rule("b", "hash"), Rule("c", "hash")])
    out = r.redact({"a": {"y": 1, "x": [2, None]}, "b": 15555550520, "c": None})
    assert out["a"] == r.hash('{"x":[2,null],"y":1}')  # keys sorted: order does not matter
    assert out["a"] == r.redact({"a": {"x": [2, None], "y": 1}})["a"]
    assert out["b"] == r.hash("15555550520")
    assert out["c"] == r.hash("null")


def test_mask_keeps_the_last_digits_and_every_non_digit() -> None:
    out = only(
        [
            Rule("ani", "mask"),
            Rule("dnis", "mask", keep_last=0),
            Rule("short", "mask"),
            Rule("number", "mask", keep_last=2),
            Rule("flag", "mask"),
        ]
    ).redact({"ani": ANI, "dnis": DNIS, "short": "+123", "number": 15555550520, "flag": True})
    assert out == {
        "ani": "tel:+*******0520",
        "dnis": "tel:+***********",
        "short": "+123",
        "number": "*********20",  # a masked number becomes a string
        "flag": True,
    }


def test_drop_removes_keys_and_list_elements() -> None:
    out = only([Rule("ani", "drop"), Rule("callbackNumbers.*", "drop")]).redact(DETAIL_BODY)
    assert "ani" not in out
    assert out["callbackNumbers"] == []
    assert list(out) == [k for k in DETAIL_BODY if k != "ani"]  # order kept


def test_keep_leaves_the_value(redactor: Redactor) -> None:
    out = Redactor([Rule("ani", "keep"), *DEFAULT_RULES], KEY).redact(ES_DATA)
    assert out["ani"] == ANI
    assert out["dnis"] == redactor.hash(DNIS)


def test_actions_on_maps_and_lists() -> None:
    data = {"flow": {"id": "f-1", "name": "Main IVR"}, "caller": {"a": ANI, "n": [DNIS, 12345]}}
    out = only([Rule("flow", "hash"), Rule("caller", "mask"), Rule("caller.a", "keep")]).redact(
        data
    )
    assert out["flow"] == only([]).hash(data["flow"])  # the whole subtree, as one value
    assert out["caller"] == {"a": ANI, "n": ["tel:+*******0000", "*2345"]}
    assert only([Rule("flow", "drop"), Rule("flow.name", "keep")]).redact(data) == {
        "caller": data["caller"]
    }


# -- paths and precedence -----------------------------------------------------------------------


def test_star_matches_any_one_key_or_list_element() -> None:
    data = {
        "attributes": {"A": "123456", "B": {"C": "123456"}},
        "list": ["123456", {"x": "654321"}],
        "map": {"1": "123456"},
    }
    rules = [
        Rule("attributes.*", "mask", keep_last=1),
        Rule("list.*.x", "drop"),
        Rule("list.1", "drop"),  # positions are not paths: lists are reached by * alone
        Rule("map.1", "drop"),
    ]
    assert only(rules).redact(data) == {
        "attributes": {"A": "*****6", "B": {"C": "*****6"}},  # B is masked as a whole
        "list": ["123456", {}],
        "map": {},
    }


def test_double_star_matches_any_depth_including_none() -> None:
    data = {"ani": ANI, "participants": [{"sessions": [{"ani": ANI}]}], "x": {"y": {"ani": ANI}}}
    r = only([Rule("**.ani", "hash")])
    out = r.redact(data)
    assert out["ani"] == out["participants"][0]["sessions"][0]["ani"] == r.hash(ANI)
    assert out["x"]["y"]["ani"] == r.hash(ANI)
    below = only([Rule("x.**", "drop")]).redact({"x": {"y": 1}, "z": 2})
    assert below == {"z": 2}  # ``x.**`` matches x itself


def test_the_more_literal_rule_decides_wherever_it_is_listed() -> None:
    data = {"attributes": {"AccountRef": "5555550520", "Other": "5555550520"}}
    rules = [Rule("attributes.*", "mask"), Rule("attributes.AccountRef", "keep")]
    for ordered in (rules, rules[::-1]):
        assert only(ordered).redact(data)["attributes"] == {
            "AccountRef": "5555550520",
            "Other": "******0520",
        }


def test_a_star_beats_a_double_star_and_literals_come_first() -> None:
    data = {"a": {"b": {"c": "12345678"}}}
    for rules in (
        [Rule("**.c", "drop"), Rule("a.*.c", "keep")],
        [Rule("a.*.c", "keep"), Rule("**.c", "drop")],
    ):
        assert only(rules).redact(data) == data  # a.*.c: 2 literals beat **.c's 1
    for rules in (
        [Rule("a.**", "mask"), Rule("*.*.c", "keep")],  # 1 literal + 0 stars vs 1 literal + 2
        [Rule("*.*.c", "keep"), Rule("a.**", "mask")],
    ):
        assert only(rules).redact(data) == data
    # but a drop or hash on a map decides for all it holds: a.** matches ``a`` itself
    assert only([Rule("a.**", "drop"), Rule("*.*.c", "keep")]).redact(data) == {}


def test_equally_specific_rules_first_listed_wins() -> None:
    data = {"a": {"b": "12345678"}}
    assert only([Rule("a.*", "drop"), Rule("*.b", "keep")]).redact(data) == {"a": {}}
    assert only([Rule("*.b", "keep"), Rule("a.*", "drop")]).redact(data) == data
    assert only([Rule("ani", "keep"), *DEFAULT_RULES]).redact({"ani": ANI}) == {"ani": ANI}
    assert only([*DEFAULT_RULES, Rule("ani", "keep")]).redact({"ani": ANI}) != {"ani": ANI}


@pytest.mark.parametrize(
    ("rule", "complaint"),
    [
        (Rule("ani", "scramble"), "action must be"),  # type: ignore[arg-type]
        (Rule("a..b", "drop"), "empty segment"),
        (Rule("", "drop"), "empty segment"),
        (Rule("attributes.Pay*", "drop"), "whole segments"),
        (Rule("ani", "mask", keep_last=-1), "keep_last must be ≥ 0"),
    ],
)
def test_bad_rules_are_config_errors_naming_the_rule(rule: Rule, complaint: str) -> None:
    with pytest.raises(ConfigError, match=re.escape(complaint)) as caught:
        Redactor([Rule("ani", "hash"), rule], KEY)
    assert caught.value.field == "privacy.rules[1]"


def test_rules_decode_from_config_tables() -> None:
    table = [{"path": "attributes.CallerNumber", "action": "hash"}, {"path": "x", "action": "mask"}]
    rules = msgspec.convert(table, list[Rule])
    assert rules == [Rule("attributes.CallerNumber", "hash"), Rule("x", "mask", keep_last=4)]
    with pytest.raises(msgspec.ValidationError):
        msgspec.convert([{"path": "x", "action": "scramble"}], list[Rule])


def test_a_short_key_is_refused() -> None:
    with pytest.raises(ValueError, match="at least 16 bytes"):
        Redactor(DEFAULT_RULES, b"short")


# -- the card scan ------------------------------------------------------------------------------


def test_cards_are_found_in_every_string_not_only_attributes(redactor: Redactor) -> None:
    data = {
        "flow": {"name": f"pay {CARD}"},
        "menuPath": ["main", f"{CARD[:4]}-{CARD[4:8]}-{CARD[8:12]}-{CARD[12:]}"],
        "notes": [{"text": f"card {CARD} cvv 123"}],
    }
    out = redactor.redact(data)
    assert out == {
        "flow": {"name": "pay ************1111"},
        "menuPath": ["main", "****-****-****-1111"],
        "notes": [{"text": "card ************1111 cvv 123"}],
    }


@pytest.mark.parametrize(
    ("text", "masked"),
    [
        (f"{CARD} 123", "************1111 123"),  # card, then CVV: one run, but the card is whole
        ("4111 1111 1111 1111 12 25", "**** **** **** 1111 12 25"),
        ("378282246310005", "***********0005"),  # 15-digit Amex
        ("6011000990139424", "************9424"),
        ("4222222222222", "*********2222"),  # 13 digits
        ("４１１１１１１１１１１１１１１１", "************１１１１"),  # full-width digits
        (f"x{CARD}y", "x************1111y"),
    ],
)
def test_card_runs_are_masked_to_their_last_four(text: str, masked: str) -> None:
    assert only([]).redact({"v": text}) == {"v": masked}


@pytest.mark.parametrize(
    "text",
    [
        NOT_LUHN,
        "4000123456",  # an account id
        "411111111111",  # 12 digits, Luhn-valid: too short for a card
        f"7{CARD}",  # glued to another digit: not a card of its own
        "12345678901234567890",  # 20 digits, no card
        "2026-05-01T10:00:56.400Z",
        "3d1f7c2a-9b4e-4c1d-8e2f-6a7b8c9d0e1f",
        "tel:+15555550520",
    ],
)
def test_other_numbers_are_left_alone(text: str) -> None:
    assert only([]).redact({"v": text}) == {"v": text}


def test_keep_exempts_its_exact_path_from_the_card_scan() -> None:
    data = {"attributes": {"TestCard": CARD, "PaymentCard": CARD}, "qa": {"x": {"card": CARD}}}
    out = only([Rule("attributes.TestCard", "keep"), Rule("qa.**", "keep")]).redact(data)
    assert out["attributes"] == {"TestCard": CARD, "PaymentCard": "************1111"}
    assert out["qa"] == data["qa"]
    # a keep on a map is not a keep on what it holds
    assert only([Rule("attributes", "keep")]).redact(data)["attributes"]["TestCard"] != CARD


def test_the_card_scan_can_be_switched_off() -> None:
    data = {"ani": ANI, "attributes": {"PaymentCard": CARD}}
    out = Redactor(DEFAULT_RULES, KEY, scan_cards=False).redact(data)
    assert out["attributes"]["PaymentCard"] == CARD
    assert out["ani"] != ANI


def test_a_hash_that_looks_like_a_card_is_not_masked() -> None:
    r = Redactor([Rule("ani", "hash")], KEY)
    digits = re.compile(r"\d{13,19}")
    number = next(
        n
        for n in (f"tel:+1555{i:07d}" for i in range(100_000))
        if any(luhn_valid(m.group()) for m in digits.finditer(r.hash(n)))
    )
    assert r.redact({"ani": number})["ani"] == r.hash(number)  # joins must not break


# -- the contract -------------------------------------------------------------------------------


def test_input_is_never_mutated(redactor: Redactor) -> None:
    data = with_attributes(DETAIL_BODY, PaymentCard=CARD)
    data["participants"] = [{"address": ANI, "calls": [{"other": {"addressNormalized": ANI}}]}]
    before = copy.deepcopy(data)
    out = redactor.redact(data)
    assert data == before
    assert out is not data
    assert out != data
    assert redactor.redact({"x": 1}) is not None
    plain = {"x": 1}
    assert redactor.redact(plain) is not plain


def test_redacting_twice_changes_nothing(redactor: Redactor) -> None:
    data = with_attributes(DETAIL_BODY, PaymentCard=CARD)
    data["complex"] = {"a": 1}
    r = Redactor([*DEFAULT_RULES, Rule("complex", "hash"), Rule("eventTime", "mask")], KEY)
    once = r.redact(data)
    assert r.redact(once) == once


def test_deep_nesting_is_cut_not_fatal(redactor: Redactor) -> None:
    deep: Any = CARD
    for _ in range(400):
        deep = {"k": [deep]}
    out = redactor.redact({"deep": deep})
    assert CARD not in msgspec.json.encode(out).decode()
    assert "nested deeper than 128 levels" in msgspec.json.encode(out).decode()


def test_values_json_cannot_encode_are_still_redacted(redactor: Redactor) -> None:
    thing = object()  # msgspec cannot encode it: the pre-check gives way to a full walk
    data: dict[Any, Any] = {"ani": ANI, 7: CARD, "b": b"\x00" + CARD.encode(), "o": thing}
    out = redactor.redact(data)
    assert out["ani"] == redactor.hash(ANI)
    assert out[7] == "************1111"  # type: ignore[index]
    assert out["b"] == data["b"]
    assert out["o"] is thing


def test_speed_of_the_default_redactor(redactor: Redactor) -> None:
    """Prints µs per event; timings are reported, never asserted."""
    model = TrafficModel(TrafficConfig(card_share=0.02))
    snapshots = [
        render.interaction_snapshot(f) for i in range(60) for f in model.make_call(i, 0).facts
    ]
    with_card = [
        render.interaction_snapshot(f) for f in emulated_call(5).facts if f.kind == "attributes"
    ]
    assert with_card
    assert all("PaymentCard" in s["attributes"] for s in with_card)
    for name, events in (
        ("Event Streams snapshot", snapshots),
        ("snapshot with a card", with_card),
    ):
        rounds = max(1, 3000 // len(events))
        start = time.perf_counter()
        for _ in range(rounds):
            for event in events:
                redactor.redact(event)
        spent = (time.perf_counter() - start) / (rounds * len(events))
        print(f"\nprivacy: default redactor, {name}: {spent * 1e6:.1f} µs/event")


# -- scrub_bytes ---------------------------------------------------------------------------------


def test_scrub_bytes_on_invalid_json() -> None:
    raw = b'{"data":{"ani":"tel:+15555550520","attributes":{"PaymentCard":"4111111111111111"'
    scrubbed = scrub_bytes(raw)
    assert scrubbed == (
        b'{"data":{"ani":"tel:+[phone####]","attributes":{"PaymentCard":"************1111"'
    )
    assert len(scrubbed) == len(raw)


def test_scrub_bytes_on_invalid_messagepack_keeps_its_structure() -> None:
    body = {"ani": "tel:+15555550520", "caller": "+447700900123", "card": "4111 1111 1111 1111"}
    packed = msgspec.msgpack.encode({"data": body})
    raw = packed + b"\xc1"  # 0xc1 is never valid MessagePack
    with pytest.raises(msgspec.DecodeError):
        msgspec.msgpack.decode(raw)
    scrubbed = scrub_bytes(raw)
    assert len(scrubbed) == len(raw)
    for secret in (b"15555550520", b"447700900123", b"4111 1111 1111"):
        assert secret not in scrubbed
    # the same length everywhere, so the part before the fault still decodes
    assert msgspec.msgpack.decode(scrubbed[:-1]) == {
        "data": {
            "ani": "tel:+[phone####]",
            "caller": "+[phone#####]",
            "card": "**** **** **** 1111",
        }
    }


@pytest.mark.parametrize(
    ("raw", "scrubbed"),
    [
        (b"tel:15555550520", b"tel:[phone####]"),
        (b"tel:+123", b"tel:+###"),
        (b"call +44123456", b"call +[phone#]"),
        (b"sum 1+1234567", b"sum 1+1234567"),  # 7 digits: no phone number
        (b"+1234567890123456789", b"+1234567890123456789"),  # 19 digits, no card: not a phone
        (b"id 4000123456 ok", b"id 4000123456 ok"),
        (b"\xff\xfe4111111111111111\x00", b"\xff\xfe************1111\x00"),
    ],
)
def test_scrub_bytes_cases(raw: bytes, scrubbed: bytes) -> None:
    assert scrub_bytes(raw) == scrubbed


# -- load_key ------------------------------------------------------------------------------------


def test_load_key_creates_a_private_key_file_and_reuses_it(tmp_path: Path) -> None:
    path = tmp_path / "state" / "privacy.key"
    key = load_key(path, None)
    assert len(key) == 32
    assert path.read_bytes() == key
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert load_key(path, None) == key  # a restart: the same key, so the same hashes
    assert os.listdir(path.parent) == ["privacy.key"]  # no temporary file left behind


def test_load_key_from_the_environment_wins(tmp_path: Path) -> None:
    path = tmp_path / "privacy.key"
    raw = os.urandom(32)
    assert load_key(path, raw.hex()) == raw
    assert load_key(path, raw.hex().upper() + "\n") == raw
    assert load_key(path, base64.b64encode(raw).decode()) == raw
    assert load_key(path, base64.urlsafe_b64encode(raw).decode().rstrip("=")) == raw
    assert not path.exists()


@pytest.mark.parametrize(
    ("value", "complaint"),
    [
        ("not a key!", "neither hex nor base64"),
        ("", "holds 0 bytes"),
        ("00ff00ff", "holds 4 bytes"),
    ],
)
def test_a_malformed_key_in_the_environment(tmp_path: Path, value: str, complaint: str) -> None:
    with pytest.raises(ConfigError, match=complaint) as caught:
        load_key(tmp_path / "k", value)
    assert caught.value.field == "privacy.key_file"
    assert "IVRSTREAM_PRIVACY_KEY" in str(caught.value)
    if value:
        assert value not in str(caught.value)


def test_a_malformed_or_unreadable_key_file(tmp_path: Path) -> None:
    short = tmp_path / "short.key"
    short.write_bytes(b"secret-ish")
    with pytest.raises(ConfigError, match="holds 10 bytes") as caught:
        load_key(short, None)
    assert caught.value.field == "privacy.key_file"
    assert "secret-ish" not in str(caught.value)
    with pytest.raises(ConfigError, match="cannot read"):
        load_key(tmp_path, None)  # a directory
    blocker = tmp_path / "file"
    blocker.write_bytes(b"x")
    with pytest.raises(ConfigError, match="cannot read or create"):
        load_key(blocker / "privacy.key", None)  # its parent is a file


# -- properties ----------------------------------------------------------------------------------


def luhn_cards() -> st.SearchStrategy[str]:
    return st.text("0123456789", min_size=12, max_size=18).map(luhn_complete)


def formatted(card: str, separator: str, group: int) -> str:
    if not separator:
        return card
    return separator.join(card[i : i + group] for i in range(0, len(card), group))


def surviving_cards(text: str) -> list[str]:
    """Luhn-valid stretches of 13–19 digits of whole groups, checked the slow way."""
    found = []
    for run in re.finditer(r"\d(?:[ -]?\d)*", text):
        groups = re.split(r"[ -]", run.group())
        for i in range(len(groups)):
            for j in range(i + 1, len(groups) + 1):
                digits = "".join(groups[i:j])
                if 13 <= len(digits) <= 19 and luhn_valid(digits):
                    found.append(digits)
    return found


@settings(max_examples=300, deadline=None)
@given(
    prefix=st.text(max_size=20).filter(lambda s: not s or not s[-1].isdecimal()),
    suffix=st.text(max_size=20).filter(lambda s: not s or not s[0].isdecimal()),
    card=luhn_cards(),
    separator=st.sampled_from(["", " ", "-"]),
    group=st.integers(3, 6),
    path=st.lists(st.one_of(st.text(max_size=6), st.integers(0, 2)), max_size=4),
)
def test_any_card_anywhere_is_masked(
    prefix: str, suffix: str, card: str, separator: str, group: int, path: list[str | int]
) -> None:
    shown = formatted(card, separator, group)
    text = prefix + shown + suffix
    value: Any = text
    for step in reversed(path):
        value = [0] * step + [value] if isinstance(step, int) else {step: value}
    out = Redactor(DEFAULT_RULES, KEY).redact({"v": value})
    encoded = msgspec.json.encode(out).decode()
    assert shown not in encoded
    masked: Any = out["v"]
    for step in path:
        if not isinstance(masked, dict | list) or (isinstance(step, str) and step not in masked):
            return  # a default rule hashed or dropped it on the way (e.g. a key named "ani")
        masked = masked[step]  # type: ignore[index]
    if isinstance(masked, str) and not masked.startswith("hmac-sha256:"):
        assert len(masked) == len(text)
        assert masked.endswith(card[-1] + suffix) or masked.endswith(card[-4:] + suffix)
        assert surviving_cards(masked) == []


keys = st.one_of(
    st.sampled_from(["ani", "dnis", "attributes", "participants", "calls", "other", "0", "x"]),
    st.text(max_size=4),
)
scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.floats(allow_nan=False),
    st.text(),
    st.text("0123456789 -", min_size=10, max_size=40),
    luhn_cards(),
    # a card inside other text: control characters (escaped in JSON), separators, digits
    st.builds(
        lambda before, card, sep, after: before + sep.join([card[:6], card[6:]]) + after,
        st.text(max_size=6),
        luhn_cards(),
        st.sampled_from(["", " ", "-"]),
        st.text(max_size=6),
    ),
)
json_like = st.recursive(
    scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(keys, inner, max_size=4),
    max_leaves=25,
)
rules = st.builds(
    Rule,
    st.lists(
        st.sampled_from(["ani", "attributes", "participants", "*", "**", "0", "x"]),
        min_size=1,
        max_size=3,
    ).map(".".join),
    st.sampled_from(["keep", "mask", "hash", "drop"]),
    st.integers(0, 20),
)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.dictionaries(keys, json_like, max_size=6), extra=st.lists(rules, max_size=4))
def test_redact_never_raises_and_never_mutates(data: dict[str, Any], extra: list[Rule]) -> None:
    before = repr(data)
    redactor = Redactor([*extra, *DEFAULT_RULES], KEY)
    out = redactor.redact(data)
    assert repr(data) == before
    msgspec.json.encode(out)
    assert redactor.redact(out) == out


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.dictionaries(keys, json_like, max_size=6))
def test_the_fast_path_masks_exactly_what_the_full_walk_masks(data: dict[str, Any]) -> None:
    # a mask keeping 13 digits could expose a card, so it turns the pre-check off
    full = Redactor([*DEFAULT_RULES, Rule("never.here", "mask", keep_last=13)], KEY)
    assert Redactor(DEFAULT_RULES, KEY).redact(data) == full.redact(data)


@given(st.text("0123456789", min_size=1, max_size=30))
def test_luhn_valid_agrees_with_the_emulator(prefix: str) -> None:
    complete = luhn_complete(prefix)
    assert luhn_valid(complete)
    wrong = complete[:-1] + str((int(complete[-1]) + 1) % 10)
    assert not luhn_valid(wrong)
    assert not luhn_valid("")
    assert not luhn_valid("4111-1111")
