"""Standard Webhooks signing and verification: the published vector, tampering, time, secrets."""

import base64
import hashlib

import pytest

from ivrstream import webhooks
from ivrstream.webhooks import (
    BadTimestamp,
    MissingHeader,
    NoMatchingSignature,
    TimestampTooNew,
    TimestampTooOld,
    WebhookVerificationError,
    batch_id,
    parse_secret,
    sign,
    verify,
)

# The example of the Standard Webhooks reference libraries (standard-webhooks/standard-webhooks,
# libraries/python/tests/test_webhooks.py, test_sign_function; the same in every language).
SPEC_SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
SPEC_ID = "msg_p5jXN8AQM9LWM0D4loKWxJek"
SPEC_TIMESTAMP = 1614265330
SPEC_BODY = b'{"test": 2432232314}'
SPEC_SIGNATURE = "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="

SECRET = "whsec_" + base64.b64encode(b"k" * 32).decode()
NOW = 1_780_000_000
BODY = b'{"event_id":"e-1","event_type":"flow.start"}'


def test_signing_reproduces_the_published_test_vector():
    headers = sign(SPEC_SECRET, SPEC_ID, SPEC_TIMESTAMP, SPEC_BODY)
    assert headers == {
        "webhook-id": SPEC_ID,
        "webhook-timestamp": "1614265330",
        "webhook-signature": SPEC_SIGNATURE,
    }


def test_the_published_test_vector_verifies_with_and_without_the_prefix():
    headers = {
        "webhook-id": SPEC_ID,
        "webhook-timestamp": str(SPEC_TIMESTAMP),
        "webhook-signature": SPEC_SIGNATURE,
    }
    verify(SPEC_SECRET, headers, SPEC_BODY, now=SPEC_TIMESTAMP)
    verify(SPEC_SECRET.removeprefix("whsec_"), headers, SPEC_BODY, now=SPEC_TIMESTAMP)
    verify(parse_secret(SPEC_SECRET), headers, SPEC_BODY.decode(), now=SPEC_TIMESTAMP + 300)


def test_a_signed_body_round_trips():
    verify(SECRET, sign(SECRET, "msg_1", NOW, BODY), BODY, now=NOW)


def test_header_names_match_whatever_their_case():
    headers = {name.title(): value for name, value in sign(SECRET, "msg_1", NOW, BODY).items()}
    assert "Webhook-Signature" in headers
    verify(SECRET, headers, BODY, now=NOW)


@pytest.mark.parametrize(
    "tamper",
    [
        pytest.param(lambda h, b: (h, b + b" "), id="body"),
        pytest.param(lambda h, b: ({**h, "webhook-id": "msg_2"}, b), id="id"),
        pytest.param(lambda h, b: ({**h, "webhook-timestamp": str(NOW + 1)}, b), id="timestamp"),
        pytest.param(
            lambda h, b: ({**h, "webhook-signature": h["webhook-signature"][:-5] + "AAAA="}, b),
            id="signature",
        ),
        pytest.param(
            lambda h, b: ({**h, "webhook-signature": "v2" + h["webhook-signature"][2:]}, b),
            id="version",
        ),
    ],
)
def test_any_tampering_fails_with_no_matching_signature(tamper):
    headers, body = tamper(sign(SECRET, "msg_1", NOW, BODY), BODY)
    with pytest.raises(NoMatchingSignature) as caught:
        verify(SECRET, headers, body, now=NOW)
    assert caught.value.code == "no_match"


def test_another_secret_does_not_verify():
    other = "whsec_" + base64.b64encode(b"o" * 32).decode()
    with pytest.raises(NoMatchingSignature):
        verify(other, sign(SECRET, "msg_1", NOW, BODY), BODY, now=NOW)


def test_timestamps_within_the_tolerance_pass_and_beyond_it_fail():
    headers = sign(SECRET, "msg_1", NOW, BODY)
    verify(SECRET, headers, BODY, now=NOW + 300)
    verify(SECRET, headers, BODY, now=NOW - 300)
    with pytest.raises(TimestampTooOld) as old:
        verify(SECRET, headers, BODY, now=NOW + 301)
    with pytest.raises(TimestampTooNew) as new:
        verify(SECRET, headers, BODY, now=NOW - 301)
    assert (old.value.code, new.value.code) == ("too_old", "too_new")
    verify(SECRET, headers, BODY, now=NOW + 3000, tolerance=3600)
    with pytest.raises(TimestampTooOld):
        verify(SECRET, headers, BODY, now=NOW + 11, tolerance=10)


def test_an_expired_timestamp_is_refused_even_with_a_valid_signature():
    old = NOW - 3600
    with pytest.raises(TimestampTooOld):
        verify(SECRET, sign(SECRET, "msg_1", old, BODY), BODY, now=NOW)


def test_any_one_of_several_signatures_is_enough():
    good = sign(SECRET, "msg_1", NOW, BODY)["webhook-signature"]
    other = webhooks.signature(b"rotated-out-key", "msg_1", NOW, BODY)
    headers = {
        **sign(SECRET, "msg_1", NOW, BODY),
        "webhook-signature": f"v1,bm9wZQ== v2,{good[3:]} {other} {good} v1a,zzz",
    }
    verify(SECRET, headers, BODY, now=NOW)
    headers["webhook-signature"] = f"v1,bm9wZQ== {other}"
    with pytest.raises(NoMatchingSignature):
        verify(SECRET, headers, BODY, now=NOW)


def test_a_non_ascii_signature_is_refused_not_crashed_on():
    headers = {**sign(SECRET, "msg_1", NOW, BODY), "webhook-signature": "v1,é"}
    with pytest.raises(NoMatchingSignature):
        verify(SECRET, headers, BODY, now=NOW)


@pytest.mark.parametrize("header", ["webhook-id", "webhook-timestamp", "webhook-signature"])
def test_a_missing_or_empty_header_is_named(header):
    headers = sign(SECRET, "msg_1", NOW, BODY)
    del headers[header]
    with pytest.raises(MissingHeader) as caught:
        verify(SECRET, headers, BODY, now=NOW)
    assert caught.value.header == header
    assert header in str(caught.value)
    with pytest.raises(MissingHeader):
        verify(SECRET, {**headers, header: " "}, BODY, now=NOW)


@pytest.mark.parametrize("value", ["hello", "-5", "1614265330.5", "1e9", "١٢٣"])
def test_a_timestamp_that_is_not_integer_seconds_is_refused(value):
    headers = {**sign(SECRET, "msg_1", NOW, BODY), "webhook-timestamp": value}
    with pytest.raises(BadTimestamp) as caught:
        verify(SECRET, headers, BODY, now=NOW)
    assert isinstance(caught.value, WebhookVerificationError)


def test_parse_secret_accepts_the_prefix_or_bare_base64():
    key = parse_secret(SPEC_SECRET)
    assert key == base64.b64decode("MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw")
    assert parse_secret("MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw") == key
    assert parse_secret(f"  {SPEC_SECRET}\n") == key


@pytest.mark.parametrize(
    "text", ["", "whsec_", "whsec_not base64!", "whsec_abc", "plain-text-password", "whsec_====="]
)
def test_parse_secret_refuses_what_is_not_a_secret_without_repeating_it(text):
    with pytest.raises(ValueError, match="Standard Webhooks secret") as caught:
        parse_secret(text)
    if key_text := text.removeprefix("whsec_"):
        assert key_text not in str(caught.value)


def test_errors_never_carry_the_secret_or_the_expected_signature():
    headers = sign(SECRET, "msg_1", NOW, BODY)
    expected = headers["webhook-signature"]
    failures = [
        ({**headers, "webhook-signature": "v1,AAAA"}, NOW),
        (headers, NOW + 1000),
        (headers, NOW - 1000),
        ({**headers, "webhook-timestamp": "x"}, NOW),
    ]
    for sent, now in failures:
        with pytest.raises(WebhookVerificationError) as caught:
            verify(SECRET, sent, BODY, now=now)
        text = f"{caught.value!s} {caught.value!r}"
        assert SECRET.removeprefix("whsec_") not in text
        assert expected.removeprefix("v1,") not in text


def test_batch_id_is_deterministic_and_depends_on_every_id_in_order():
    ids = ["e-1", "e-2", "e-3"]
    assert batch_id(ids) == batch_id(list(ids))
    assert batch_id(ids).startswith("batch_")
    assert len(batch_id(ids)) == len("batch_") + 32
    assert batch_id(ids) != batch_id(["e-1", "e-2"])
    assert batch_id(ids) != batch_id(["e-2", "e-1", "e-3"])
    # no concatenation collisions
    assert batch_id(["ab", "c"]) != batch_id(["a", "bc"])
    assert batch_id(["a.b"]) != batch_id(["a", "b"])


def test_batch_id_keeps_its_recipe():
    # a retry after an upgrade must carry the same webhook-id: sha256 over "<len>:<id>" of each
    # id's UTF-8, the first 32 hex digits
    ids = ["00000000-0000-7000-8000-000000000001", "é-2", "x" * 300]
    key = b"".join(b"%d:%s" % (len(i.encode()), i.encode()) for i in ids)
    assert batch_id(ids) == "batch_" + hashlib.sha256(key).hexdigest()[:32]
    assert batch_id(["e-1"]) == "batch_c46253df65cce4292cfecba1b98d6b42"  # as it always was


def test_batch_id_of_nothing_is_an_error():
    with pytest.raises(ValueError, match="at least one"):
        batch_id([])
