"""Reconnect policy: one function decides what follows each way a socket can end."""

from __future__ import annotations

import random

import pytest

from ivrstream.protocol.reconnect import Decision, ReconnectPolicy, Why, why_closed


class Highest(random.Random):
    """Always the top of the range, so each delay shows its ceiling."""

    def uniform(self, a: float, b: float) -> float:
        return b


def policy(**kw) -> ReconnectPolicy:
    kw.setdefault("rng", Highest())
    return ReconnectPolicy(**kw)


# -- why_closed ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("code", "why"),
    [
        (4001, Why.TOKEN),
        (4003, Why.FORBIDDEN),
        (4029, Why.QUOTA),
        (1006, Why.NETWORK),
        (None, Why.NETWORK),
        (1000, Why.SERVER),
        (1001, Why.SERVER),
        (1011, Why.SERVER),
        (4000, Why.SERVER),
    ],
)
def test_why_closed(code, why):
    assert why_closed(code) is why


# -- token ---------------------------------------------------------------------------------------


def test_the_first_token_failure_refreshes_and_reconnects_at_once():
    p = policy()
    assert p.after(Why.TOKEN) == Decision(0.0, True, 1)


def test_repeated_token_failures_refresh_and_back_off():
    p = policy()
    p.after(Why.TOKEN)
    assert p.after(Why.TOKEN) == Decision(2.0, True, 2)
    assert p.after(Why.TOKEN) == Decision(4.0, True, 3)


def test_a_token_failure_after_other_failures_is_still_free_once():
    p = policy()
    p.after(Why.NETWORK)
    p.after(Why.NETWORK)
    assert p.after(Why.TOKEN) == Decision(0.0, True, 3)
    assert p.after(Why.TOKEN).delay == 8.0


def test_streaming_makes_the_next_token_retry_free_again():
    p = policy()
    p.after(Why.TOKEN)
    p.after(Why.TOKEN)
    p.streaming()
    assert p.after(Why.TOKEN) == Decision(0.0, True, 1)


# -- forbidden -----------------------------------------------------------------------------------


def test_forbidden_stops_with_the_servers_detail():
    p = policy()
    p.after(Why.NETWORK)
    decision = p.after(Why.FORBIDDEN, "bad filter syntax: interaction.x")
    assert decision.stop == "bad filter syntax: interaction.x"
    assert decision.delay == 0.0
    assert not decision.refresh_token
    assert decision.attempt == 1  # not counted as another attempt


def test_forbidden_without_detail_still_says_why():
    assert policy().after(Why.FORBIDDEN).stop == "subscription forbidden"


# -- quota, network, server ----------------------------------------------------------------------


@pytest.mark.parametrize("why", [Why.QUOTA, Why.NETWORK, Why.SERVER])
def test_failures_back_off_doubling_up_to_the_cap(why):
    p = policy(base=1.0, cap=30.0)
    decisions = [p.after(why) for _ in range(8)]
    assert [d.delay for d in decisions] == [1, 2, 4, 8, 16, 30, 30, 30]
    assert [d.attempt for d in decisions] == list(range(1, 9))
    assert not any(d.refresh_token or d.stop for d in decisions)


def test_delays_are_fully_jittered_and_repeatable_with_a_seed():
    def run(seed: int) -> list[float]:
        p = ReconnectPolicy(base=1.0, cap=30.0, rng=random.Random(seed))
        return [p.after(Why.NETWORK).delay for _ in range(30)]

    delays = run(11)
    assert delays == run(11)
    assert delays != run(12)
    for n, delay in enumerate(delays):
        assert 0.0 <= delay <= min(30.0, 2.0**n)
    assert any(d < 15.0 for d in delays[6:])  # at the cap, still anywhere in [0, 30]


# -- our own reasons: resend and idle ------------------------------------------------------------


@pytest.mark.parametrize("why", [Why.RESEND, Why.IDLE])
def test_our_own_reconnects_are_immediate_while_healthy(why):
    p = policy()
    assert p.after(why) == Decision(0.0, False, 1)
    p.streaming()
    assert p.after(why) == Decision(0.0, False, 1)


@pytest.mark.parametrize("why", [Why.RESEND, Why.IDLE])
def test_our_own_reconnects_back_off_when_the_last_one_did_not_deliver(why):
    p = policy()
    p.after(why)
    assert p.after(why) == Decision(2.0, False, 2)
    p2 = policy()
    p2.after(Why.NETWORK)
    assert p2.after(why) == Decision(2.0, False, 2)


# -- streaming resets, max_attempts, at_cap ------------------------------------------------------


def test_streaming_resets_the_backoff():
    p = policy()
    for _ in range(6):
        p.after(Why.NETWORK)
    p.streaming()
    assert p.attempts == 0
    assert p.after(Why.NETWORK) == Decision(1.0, False, 1)
    assert p.total == 7  # the total keeps counting


def test_max_attempts_gives_up_with_a_stop_message():
    p = policy(max_attempts=3)
    assert [p.after(Why.QUOTA).stop for _ in range(3)] == [None, None, None]
    decision = p.after(Why.QUOTA)
    assert decision.stop == "gave up after 3 reconnect attempts (quota)"
    assert decision.attempt == 4
    assert decision.delay == 0.0


def test_max_attempts_counts_consecutive_failures_only():
    p = policy(max_attempts=2)
    for _ in range(5):
        assert p.after(Why.NETWORK).stop is None
        assert p.after(Why.NETWORK).stop is None
        p.streaming()
    assert p.after(Why.NETWORK).stop is None


def test_giving_up_on_a_token_failure_still_says_the_token_was_the_problem():
    p = policy(max_attempts=1)
    p.after(Why.TOKEN)
    decision = p.after(Why.TOKEN)
    assert decision.stop == "gave up after 1 reconnect attempts (token)"
    assert decision.refresh_token


def test_max_attempts_zero_gives_up_at_the_first_failure():
    assert policy(max_attempts=0).after(Why.NETWORK).stop is not None


def test_without_max_attempts_it_keeps_trying_at_the_cap():
    p = policy()
    decisions = [p.after(Why.NETWORK) for _ in range(1_000)]
    assert all(d.stop is None for d in decisions)
    assert decisions[-1].delay == 30.0


def test_at_cap_once_the_ceiling_reaches_the_cap_and_not_after_streaming():
    p = policy(base=1.0, cap=30.0)
    assert not p.at_cap
    flags = []
    for _ in range(7):
        p.after(Why.NETWORK)
        flags.append(p.at_cap)
    assert flags == [False, False, False, False, False, True, True]  # ceilings 1..16, then 30
    p.streaming()
    assert not p.at_cap
