"""The lifecycle of one notification channel slot, driven by hand and by a simulated Genesys."""

from __future__ import annotations

import math
import random
from collections import deque
from collections.abc import Callable

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ivrstream.config import NotificationsSettings, ReconnectSettings
from ivrstream.isotime import format_ms, parse_ms
from ivrstream.models import Channel, NotificationEnvelope
from ivrstream.protocol.notifications import (
    CHANNEL_LIFETIME,
    Action,
    ChannelHandle,
    ChannelLifecycle,
    ChannelTimings,
    CheckChannel,
    CloseSocket,
    Connect,
    CreateChannel,
    FrameKind,
    LifecycleError,
    LossWindow,
    Phase,
    PutTopics,
    RefreshToken,
    SendPing,
    Wait,
    channel_tag,
    frame_kind,
)

T0 = 1_777_629_600.0  # 2026-05-01T10:00:00Z
RENEW_AT = T0 + CHANNEL_LIFETIME - 3600.0  # of a channel subscribed at T0
QUIET = 10_000_000.0  # a heartbeat timeout that never fires within a test


class Highest(random.Random):
    """Always the top of the range, so each delay shows its ceiling."""

    def uniform(self, a: float, b: float) -> float:
        return b


def make(**timings: float) -> ChannelLifecycle:
    return ChannelLifecycle(ChannelTimings(**timings), rng=Highest())  # type: ignore[arg-type]


def wire_channel(n: int = 0, now: float = T0, lifetime: float = CHANNEL_LIFETIME) -> Channel:
    cid = f"streaming-0-topsecret{n:04d}xyzw"
    return Channel(
        id=cid,
        connect_uri=f"wss://streaming.example.com/channels/{cid}",
        expires=format_ms(round((now + lifetime) * 1000)),
    )


def handle(n: int = 0, now: float = T0) -> ChannelHandle:
    return ChannelHandle.from_wire(wire_channel(n, now), now)


def start_ms(seconds: float) -> int:
    return math.floor(seconds * 1000)


def end_ms(seconds: float) -> int:
    return math.ceil(seconds * 1000)


def of(actions: list[Action], kind: type) -> list:
    return [a for a in actions if isinstance(a, kind)]


def go_live(m: ChannelLifecycle, now: float = T0, n: int = 0) -> int:
    """Start ``m`` and bring it live at ``now`` on channel ``n``; the socket id."""
    assert m.start(now) == [CreateChannel("new channel")]
    assert m.on_channel_created(wire_channel(n, now), now) == [PutTopics(handle(n, now))]
    (connect,) = m.on_subscribed(now)
    assert isinstance(connect, Connect)
    assert m.on_connected(connect.socket, now) == [LossWindow(*[start_ms(now)] * 2, "starting")]
    assert m.live
    return connect.socket


def build_channel(m: ChannelLifecycle, n: int, now: float, out: list[Action]) -> int:
    """Answer a CreateChannel in ``out`` with channel ``n``, PUT it, connect: the socket id."""
    assert of(out, CreateChannel)
    assert m.on_channel_created(wire_channel(n, now), now) == [PutTopics(handle(n, now))]
    (connect,) = m.on_subscribed(now)
    assert isinstance(connect, Connect)
    assert connect.channel == handle(n, now)
    return connect.socket


# -- the order of things -----------------------------------------------------------------------


def test_create_then_subscribe_then_connect():
    m = make()
    assert m.phase is Phase.IDLE
    assert m.deadline() is None
    assert m.start(T0) == [CreateChannel("new channel")]
    assert m.phase is Phase.CREATING
    assert m.on_channel_created(wire_channel(), T0 + 1) == [PutTopics(handle())]
    assert m.phase is Phase.SUBSCRIBING
    actions = m.on_subscribed(T0 + 2)
    assert actions == [Connect(1, handle())]
    assert actions[0].uri == wire_channel().connect_uri
    assert m.phase is Phase.CONNECTING
    # subscribed but not yet connected: that moment is already a loss
    assert m.on_connected(1, T0 + 3) == [LossWindow(start_ms(T0 + 2), end_ms(T0 + 3), "starting")]
    assert m.phase is Phase.LIVE


def test_answers_must_match_the_request_in_flight():
    m = make()
    with pytest.raises(LifecycleError):
        m.on_subscribed(T0)
    m.start(T0)
    with pytest.raises(LifecycleError):
        m.on_subscribed(T0)
    with pytest.raises(LifecycleError):
        m.start(T0)


def test_sockets_never_asked_for_are_refused_and_old_ones_ignored():
    m = make()
    socket = go_live(m)
    with pytest.raises(LifecycleError):
        m.on_connected(socket + 1, T0)
    with pytest.raises(LifecycleError):
        m.on_frame(0, FrameKind.EVENT, T0)
    m.on_frame(socket, FrameKind.SOCKET_CLOSING, T0 + 1)
    m.on_connected(socket + 1, T0 + 2)
    assert m.on_frame(socket, FrameKind.EVENT, T0 + 3) == []  # retired
    assert m.on_closed(socket, 1000, T0 + 3) == []


def test_one_http_call_at_a_time():
    m = make()
    go_live(m)
    assert m.topics_changed(T0 + 1) == [PutTopics(handle())]
    assert m.topics_changed(T0 + 2) == []  # serialised behind the PUT in flight
    assert m.on_subscribed(T0 + 3) == [PutTopics(handle())]  # the list moved during the PUT
    assert m.on_subscribed(T0 + 4) == []
    assert m.statistics().subscribes == 3


# -- watchdog ----------------------------------------------------------------------------------


def test_silence_brings_one_ping_and_a_pong_answers_it():
    m = make()
    socket = go_live(m)
    assert m.deadline() == T0 + 75
    assert m.tick(T0 + 74.5) == []
    assert m.tick(T0 + 75) == [SendPing(socket)]
    assert SendPing.payload == '{"message":"ping"}'
    assert m.deadline() == T0 + 85
    assert m.tick(T0 + 80) == []  # no second ping
    assert m.on_frame(socket, FrameKind.PONG, T0 + 81) == []
    assert m.deadline() == T0 + 81 + 75
    assert m.statistics().pings == 1


@pytest.mark.parametrize("kind", [FrameKind.HEARTBEAT, FrameKind.EVENT, FrameKind.OTHER])
def test_any_frame_resets_the_idle_timer(kind):
    m = make()
    socket = go_live(m)
    m.on_frame(socket, kind, T0 + 30)
    assert m.deadline() == T0 + 105
    assert m.tick(T0 + 104) == []
    assert m.tick(T0 + 105) == [SendPing(socket)]
    m.on_frame(socket, kind, T0 + 106)  # a heartbeat after the ping answers it as well
    assert m.deadline() == T0 + 181


def test_no_pong_in_time_is_a_stall_and_the_window_starts_at_the_last_frame():
    m = make()
    socket = go_live(m)
    m.on_frame(socket, FrameKind.HEARTBEAT, T0 + 20)
    assert m.tick(T0 + 95) == [SendPing(socket)]
    assert m.tick(T0 + 104.5) == []
    # the first stall after a healthy spell reconnects at once
    assert m.tick(T0 + 105) == [CloseSocket(socket, "stalled"), Connect(2, handle())]
    assert not m.live
    assert m.on_connected(2, T0 + 106) == [
        LossWindow(start_ms(T0 + 20 - 5), end_ms(T0 + 106), "stalled")
    ]
    assert m.statistics().stalls == 1


# -- socket_closing ----------------------------------------------------------------------------


def test_socket_closing_opens_a_new_socket_at_once_and_keeps_the_old_one():
    m = make()
    old = go_live(m)
    assert m.on_frame(old, FrameKind.SOCKET_CLOSING, T0 + 30) == [Connect(2, handle())]
    assert m.live
    assert m.on_frame(old, FrameKind.EVENT, T0 + 31) == []  # the old one still delivers
    assert m.on_connected(2, T0 + 32) == [
        CloseSocket(old, "replaced by a new socket"),
        LossWindow(start_ms(T0 + 31 - 5), end_ms(T0 + 32), "socket closing"),
    ]
    assert m.live
    assert m.on_closed(old, 1001, T0 + 33) == []
    assert m.on_frame(2, FrameKind.HEARTBEAT, T0 + 40) == []
    assert m.statistics().socket_closing_notices == 1


def test_socket_closing_when_the_old_socket_dies_first():
    m = make()
    old = go_live(m)
    m.on_frame(old, FrameKind.HEARTBEAT, T0 + 25)
    assert m.on_frame(old, FrameKind.SOCKET_CLOSING, T0 + 30) == [Connect(2, handle())]
    assert m.on_closed(old, 1001, T0 + 40) == []  # nothing to wait for: 2 is on its way
    assert not m.live
    assert m.on_connected(2, T0 + 41) == [
        LossWindow(start_ms(T0 + 30 - 5), end_ms(T0 + 41), "socket closing")
    ]
    assert m.statistics().failures == 0  # announced maintenance is no failure


def test_socket_closing_reconnects_without_backoff_after_earlier_failures():
    m = make(stable_after=1_000.0)
    socket = go_live(m)
    for n in range(3):  # three short spells: the backoff grows
        m.on_closed(socket, 1006, T0 + 100 * n)
        socket = of(m.tick(T0 + 100 * n + 50), Connect)[0].socket
        m.on_connected(socket, T0 + 100 * n + 51)
    assert m.statistics().failures == 3
    assert m.on_frame(socket, FrameKind.SOCKET_CLOSING, T0 + 400) == [Connect(socket + 1, handle())]
    assert m.on_closed(socket, 1001, T0 + 401) == []
    assert m.on_closed(socket + 1, None, T0 + 402) == [
        Wait(T0 + 402 + 8, "connect failed (setback 4)")
    ]


# -- backoff -----------------------------------------------------------------------------------


def test_socket_failures_back_off_with_growing_ceilings_up_to_the_cap():
    m = make(backoff_base=1.0, backoff_cap=8.0, check_after_failures=100)
    socket = go_live(m)
    now = T0 + 1
    assert m.on_closed(socket, 1006, now) == [Wait(now + 1, "socket closed (setback 1)")]
    assert m.deadline() == now + 1
    assert m.tick(now + 0.5) == []
    waits = []
    for _ in range(5):
        now = m.deadline()
        (connect,) = m.tick(now)
        (wait,) = m.on_closed(connect.socket, None, now, status=502)
        waits.append(wait.until - now)
    assert waits == [2.0, 4.0, 8.0, 8.0, 8.0]
    assert m.at_cap
    assert m.statistics().failures == 6


def test_a_healthy_spell_resets_the_backoff_and_a_short_one_does_not():
    m = make(stable_after=10.0)
    socket = go_live(m)
    m.on_closed(socket, 1006, T0 + 1)
    socket = m.tick(T0 + 2)[0].socket
    m.on_connected(socket, T0 + 2)
    m.on_frame(socket, FrameKind.EVENT, T0 + 5)  # 3 s of delivery: not healthy yet
    assert m.on_closed(socket, 1006, T0 + 6) == [Wait(T0 + 6 + 2, "socket closed (setback 2)")]
    socket = m.tick(T0 + 8)[0].socket
    m.on_connected(socket, T0 + 8)
    m.on_frame(socket, FrameKind.HEARTBEAT, T0 + 18)  # 10 s: healthy
    assert m.on_closed(socket, 1006, T0 + 19) == [Wait(T0 + 19 + 1, "socket closed (setback 1)")]
    assert not m.at_cap


# -- renewal and rotation ----------------------------------------------------------------------


def test_the_channel_is_renewed_before_it_expires():
    m = make(heartbeat_timeout=QUIET)
    go_live(m)
    assert m.deadline() == RENEW_AT
    assert m.tick(RENEW_AT - 1) == []
    assert m.tick(RENEW_AT) == [PutTopics(handle(), renewal=True)]
    assert m.on_subscribed(RENEW_AT + 1) == []
    # the PUT extended the channel by its lifetime
    assert m.deadline() == RENEW_AT + 1 + CHANNEL_LIFETIME - 3600
    assert m.statistics().renewals == 1
    assert m.live


def test_a_topic_change_after_the_renewal_time_counts_as_the_renewal():
    m = make(heartbeat_timeout=QUIET)
    go_live(m)
    assert m.topics_changed(RENEW_AT + 5) == [PutTopics(handle(), renewal=True)]


def test_a_failed_renewal_rotates_to_a_new_channel():
    m = make(heartbeat_timeout=QUIET)
    old = go_live(m)
    m.on_frame(old, FrameKind.HEARTBEAT, RENEW_AT - 20)
    m.tick(RENEW_AT)
    now = RENEW_AT + 1
    assert m.on_request_failed(503, now) == [Wait(now + 1, "renew failed: HTTP 503")]
    assert m.tick(now + 1) == [CreateChannel("replace the channel")]
    assert m.live  # the old channel keeps delivering meanwhile
    new = build_channel(m, 1, now + 2, [CreateChannel("")])
    assert "replacement" in m.describe()
    m.on_frame(old, FrameKind.HEARTBEAT, now + 2)
    # the old socket delivered until its last frame; after it, only the new one is proof
    assert m.on_connected(new, now + 3) == [
        CloseSocket(old, "replaced by a new socket"),
        LossWindow(start_ms(now + 2 - 5), end_ms(now + 3), "rotated"),
    ]
    assert channel_tag(wire_channel(1).id) in m.describe()
    assert m.on_frame(old, FrameKind.EVENT, now + 4) == []
    # the new channel is the one renewed now
    assert m.deadline() == now + 2 + CHANNEL_LIFETIME - 3600
    assert m.statistics().rotations == 1


def test_the_old_socket_dying_during_a_rotation_is_a_loss_until_the_new_one_is_up():
    m = make(heartbeat_timeout=QUIET)
    old = go_live(m)
    m.tick(RENEW_AT)
    m.on_request_failed(None, RENEW_AT)
    m.tick(RENEW_AT + 1)
    m.on_frame(old, FrameKind.EVENT, RENEW_AT + 2)
    m.on_channel_created(wire_channel(1, RENEW_AT + 3), RENEW_AT + 3)
    assert m.on_closed(old, 1006, RENEW_AT + 4) == [Wait(RENEW_AT + 5, "socket closed (setback 1)")]
    (connect,) = m.on_subscribed(RENEW_AT + 6)  # the reconnect goes to the new channel
    assert connect.channel == handle(1, RENEW_AT + 3)
    assert m.on_connected(connect.socket, RENEW_AT + 7) == [
        LossWindow(start_ms(RENEW_AT + 2 - 5), end_ms(RENEW_AT + 7), "socket closed")
    ]


def test_a_renewal_refused_with_401_refreshes_the_token_and_renews_again():
    m = make(heartbeat_timeout=QUIET)
    go_live(m)
    m.tick(RENEW_AT)
    assert m.on_request_failed(401, RENEW_AT + 1) == [
        RefreshToken("HTTP 401 on renew"),
        PutTopics(handle(), renewal=True),
    ]
    assert m.statistics().rotations == 0


def test_a_lost_replacement_is_built_again():
    m = make(heartbeat_timeout=QUIET)
    go_live(m)
    m.tick(RENEW_AT)
    m.on_request_failed(500, RENEW_AT)
    m.tick(RENEW_AT + 1)
    m.on_channel_created(wire_channel(1, RENEW_AT + 1), RENEW_AT + 1)
    assert m.on_request_failed(404, RENEW_AT + 2) == [CreateChannel("replace the channel")]
    assert m.live


def test_a_channel_left_to_expire_is_dropped():
    m = make(heartbeat_timeout=QUIET)
    socket = go_live(m)
    m.on_frame(socket, FrameKind.EVENT, RENEW_AT - 10)
    m.tick(RENEW_AT)
    m.on_request_failed(500, RENEW_AT)  # the renewal failed: rotate
    assert m.tick(RENEW_AT + 1) == [CreateChannel("replace the channel")]
    m.on_request_failed(429, RENEW_AT + 1, retry_after=5_000.0)  # longer than the channel has
    expiry = T0 + CHANNEL_LIFETIME
    assert m.deadline() == expiry
    assert m.live
    assert m.tick(expiry) == [CloseSocket(socket, "expired")]
    assert not m.live
    when = m.deadline()
    assert when == RENEW_AT + 1 + 5_000 * 1.2
    new = build_channel(m, 1, when, m.tick(when))
    assert m.on_connected(new, when + 1) == [
        LossWindow(start_ms(RENEW_AT - 15), end_ms(when + 1), "expired")
    ]


# -- a channel that is gone --------------------------------------------------------------------


@pytest.mark.parametrize("kind", [FrameKind.NOT_FOUND, FrameKind.NO_LONGER_SUBSCRIBED])
def test_a_gone_channel_is_replaced_and_the_gap_reported(kind):
    m = make()
    socket = go_live(m)
    m.on_frame(socket, FrameKind.HEARTBEAT, T0 + 10)
    out = m.on_frame(socket, kind, T0 + 20)
    assert out == [CloseSocket(socket, "channel gone"), CreateChannel("new channel")]
    new = build_channel(m, 1, T0 + 21, out)
    last = T0 + 20 if kind is FrameKind.NO_LONGER_SUBSCRIBED else T0 + 10  # a 404 proves nothing
    assert m.on_connected(new, T0 + 22) == [
        LossWindow(start_ms(last - 5), end_ms(T0 + 22), "channel gone")
    ]
    assert m.statistics().channels_lost == 1


def test_a_revoked_token_refreshes_it_and_replaces_the_channel():
    m = make()
    socket = go_live(m)
    assert m.on_frame(socket, FrameKind.TOKEN_REVOKED, T0 + 5) == [
        RefreshToken("token revoked"),
        CloseSocket(socket, "token revoked"),
        CreateChannel("new channel"),
    ]


def test_a_404_on_put_replaces_the_channel():
    m = make()
    m.start(T0)
    m.on_channel_created(wire_channel(), T0)
    assert m.on_request_failed(404, T0 + 1) == [CreateChannel("new channel")]
    assert m.phase is Phase.CREATING


def test_a_404_on_a_renewal_replaces_the_channel_and_reports_the_gap():
    m = make(heartbeat_timeout=QUIET)
    socket = go_live(m)
    m.on_frame(socket, FrameKind.EVENT, RENEW_AT - 1)
    m.tick(RENEW_AT)
    out = m.on_request_failed(404, RENEW_AT + 1)
    assert out == [CloseSocket(socket, "channel gone"), CreateChannel("new channel")]
    new = build_channel(m, 1, RENEW_AT + 2, out)
    assert m.on_connected(new, RENEW_AT + 3) == [
        LossWindow(start_ms(RENEW_AT - 6), end_ms(RENEW_AT + 3), "channel gone")
    ]


def test_a_404_on_the_upgrade_replaces_the_channel():
    m = make()
    m.start(T0)
    m.on_channel_created(wire_channel(), T0)
    m.on_subscribed(T0)
    assert m.on_closed(1, None, T0 + 1, status=404) == [CreateChannel("new channel")]


def test_repeated_connect_failures_check_the_channel():
    m = make()
    m.start(T0)
    m.on_channel_created(wire_channel(), T0)
    (connect,) = m.on_subscribed(T0)
    now = T0
    for _ in range(2):
        m.on_closed(connect.socket, None, now)
        now = m.deadline()
        (connect,) = m.tick(now)
    out = m.on_closed(connect.socket, None, now)
    assert of(out, CheckChannel) == [CheckChannel(handle())]
    assert m.on_channel_found(now + 1) == []
    # the next failures count from zero before the next check
    now = m.deadline()
    (connect,) = m.tick(now)
    assert not of(m.on_closed(connect.socket, None, now), CheckChannel)


def test_a_check_answered_404_replaces_the_channel():
    m = make(check_after_failures=1)
    m.start(T0)
    m.on_channel_created(wire_channel(), T0)
    m.on_subscribed(T0)
    assert m.on_closed(1, None, T0) == [
        Wait(T0 + 1, "connect failed (setback 1)"),
        CheckChannel(handle()),
    ]
    assert m.on_request_failed(404, T0 + 0.5) == [Wait(T0 + 2.5, "channel gone (setback 2)")]
    assert m.phase is Phase.CREATING
    assert m.tick(T0 + 2.5) == [CreateChannel("new channel")]


def test_a_check_that_fails_otherwise_does_not_stop_the_reconnects():
    m = make(check_after_failures=1)
    m.start(T0)
    m.on_channel_created(wire_channel(), T0)
    m.on_subscribed(T0)
    m.on_closed(1, None, T0)  # → CheckChannel
    assert m.on_request_failed(503, T0 + 0.5) == [Wait(T0 + 1.5, "check failed: HTTP 503")]
    assert m.tick(T0 + 1) == [Connect(2, handle())]
    assert m.tick(T0 + 1.5) == []  # the failed check is not retried


def test_an_answer_about_a_channel_dropped_meanwhile_is_ignored():
    m = make()
    socket = go_live(m)
    assert m.topics_changed(T0 + 1) == [PutTopics(handle())]
    # the channel dies while its PUT is in flight; the new channel waits for the HTTP lane
    assert m.on_frame(socket, FrameKind.NO_LONGER_SUBSCRIBED, T0 + 2) == [
        CloseSocket(socket, "channel gone")
    ]
    assert m.on_subscribed(T0 + 3) == [CreateChannel("new channel")]
    assert m.statistics().subscribes == 1


# -- HTTP failures -----------------------------------------------------------------------------


def test_429_waits_for_retry_after_a_little_longer_never_shorter():
    m = make()
    m.start(T0)
    assert m.on_request_failed(429, T0, retry_after=7.0) == [
        Wait(T0 + 7 * 1.2, "create failed: HTTP 429")
    ]
    assert m.tick(T0 + 7) == []
    assert m.tick(T0 + 7 * 1.2) == [CreateChannel("new channel")]


def test_429_without_retry_after_backs_off():
    m = make()
    m.start(T0)
    assert m.on_request_failed(429, T0) == [Wait(T0 + 1, "create failed: HTTP 429")]


def test_server_and_network_errors_back_off_and_a_success_resets():
    m = make(backoff_cap=4.0)
    m.start(T0)
    now, waits = T0, []
    for status in (500, None, 503, 502):
        (wait,) = m.on_request_failed(status, now)
        waits.append(wait.until - now)
        now = wait.until
        assert m.tick(now) == [CreateChannel("new channel")]
    assert waits == [1.0, 2.0, 4.0, 4.0]
    assert m.on_channel_created(wire_channel(), now) == [PutTopics(handle())]
    assert m.on_request_failed(500, now) == [Wait(now + 1, "subscribe failed: HTTP 500")]


def test_401_refreshes_the_token_and_retries_at_once_then_backs_off():
    m = make()
    m.start(T0)
    assert m.on_request_failed(401, T0) == [
        RefreshToken("HTTP 401 on create"),
        CreateChannel("new channel"),
    ]
    assert m.on_request_failed(401, T0 + 1) == [
        RefreshToken("HTTP 401 on create"),
        Wait(T0 + 2, "create failed: HTTP 401"),
    ]
    assert m.tick(T0 + 2) == [CreateChannel("new channel")]
    m.on_channel_created(wire_channel(), T0 + 2)
    # a success makes the next 401 free again
    assert m.on_request_failed(401, T0 + 3) == [
        RefreshToken("HTTP 401 on subscribe"),
        PutTopics(handle()),
    ]


# -- loss windows ------------------------------------------------------------------------------


def test_windows_never_overlap_even_when_a_spell_is_shorter_than_the_margin():
    m = make()
    socket = go_live(m)
    m.on_closed(socket, 1006, T0 + 1)
    (connect,) = m.tick(T0 + 2)
    (first,) = m.on_connected(connect.socket, T0 + 2)
    m.on_closed(connect.socket, 1006, T0 + 3)
    (connect,) = m.tick(m.deadline())
    (second,) = m.on_connected(connect.socket, T0 + 6)
    # both start 5 s before the last frame, clamped to the end of the window before
    assert first == LossWindow(end_ms(T0), end_ms(T0 + 2), "socket closed")
    assert second == LossWindow(end_ms(T0 + 2), end_ms(T0 + 6), "socket closed")  # clamped


def test_stop_reports_the_last_window_and_ends_everything():
    m = make()
    socket = go_live(m)
    m.on_frame(socket, FrameKind.EVENT, T0 + 50)
    assert m.stop(T0 + 60) == [
        CloseSocket(socket, "stopped"),
        LossWindow(start_ms(T0 + 45), end_ms(T0 + 60), "stopped"),
    ]
    assert m.phase is Phase.STOPPED
    assert m.deadline() is None
    assert m.stop(T0 + 61) == []
    assert m.on_frame(socket, FrameKind.EVENT, T0 + 61) == []
    assert m.tick(T0 + 1_000) == []


def test_stop_while_reconnecting_keeps_the_reason_of_the_open_window():
    m = make()
    socket = go_live(m)
    m.on_frame(socket, FrameKind.EVENT, T0 + 9)
    m.on_closed(socket, 1006, T0 + 10)
    assert m.outage_since_ms == start_ms(T0 + 4)
    (connect,) = m.tick(T0 + 11)
    assert m.stop(T0 + 12) == [
        CloseSocket(connect.socket, "stopped"),
        LossWindow(start_ms(T0 + 4), end_ms(T0 + 12), "socket closed"),
    ]


def test_nothing_is_lost_before_the_first_subscription():
    m = make()
    m.start(T0)
    m.on_channel_created(wire_channel(), T0)
    assert m.stop(T0 + 100) == []


# -- secrets -----------------------------------------------------------------------------------


def test_no_channel_id_or_uri_in_any_repr_reason_or_description():
    m = make(heartbeat_timeout=QUIET)
    seen: list[object] = []
    old = go_live(m)
    seen += [m.describe(), handle()]
    seen += m.tick(RENEW_AT)
    seen += m.on_request_failed(500, RENEW_AT)
    seen += m.tick(RENEW_AT + 1)
    seen += m.on_channel_created(wire_channel(1), RENEW_AT + 1)
    seen += [m.describe()]
    seen += m.on_subscribed(RENEW_AT + 1)
    seen += [m.describe()]
    seen += m.on_connected(old + 1, RENEW_AT + 2)
    seen += m.on_frame(old + 1, FrameKind.NO_LONGER_SUBSCRIBED, RENEW_AT + 3)
    seen += [m.describe(), m.statistics()]
    seen += m.stop(RENEW_AT + 4)
    text = " ".join(f"{x!r} {x}" for x in seen)
    assert "topsecret" not in text
    assert "streaming.example.com" not in text
    assert channel_tag(wire_channel(0).id) in text
    assert of(seen, Connect)
    assert of(seen, PutTopics)
    assert of(seen, LossWindow)


def test_the_tag_is_the_emulators():
    from ivrstream.emulator.notifications import channel_tag as emulator_tag

    cid = wire_channel().id
    assert channel_tag(cid) == emulator_tag(cid)


# -- frames, handles and settings --------------------------------------------------------------

SYSTEM = "v2.system."


@pytest.mark.parametrize(
    ("frame", "kind"),
    [
        (
            {"topicName": "channel.metadata", "eventBody": {"message": "WebSocket Heartbeat"}},
            "heartbeat",
        ),
        ({"topicName": "channel.metadata", "eventBody": {"message": "pong"}}, "pong"),
        ({"topicName": "channel.metadata", "eventBody": "odd"}, "heartbeat"),
        (
            {"topicName": SYSTEM + "socket_closing", "eventBody": {"message": "bye"}},
            "socket_closing",
        ),
        (
            {"topicName": SYSTEM + "no_longer_subscribed.streaming-0-x", "eventBody": {}},
            "no_longer_subscribed",
        ),
        ({"topicName": SYSTEM + "token_revoked.streaming-0-x", "eventBody": {}}, "token_revoked"),
        ({"topicName": SYSTEM + "something_new", "eventBody": {}}, "other"),
        ({"result": "404", "message": "Channel not found"}, "not_found"),
        ({"result": 404}, "not_found"),
        ({"result": "500"}, "other"),
        ({}, "other"),
        ({"topicName": "v2.detail.events.conversation.x.flow.start", "eventBody": {}}, "event"),
    ],
)
def test_frame_kind(frame, kind):
    assert frame_kind(frame) is FrameKind(kind)


def test_frame_kind_of_an_envelope():
    envelope = NotificationEnvelope(topic_name="channel.metadata", event_body={"message": "pong"})
    assert frame_kind(envelope) is FrameKind.PONG
    event = NotificationEnvelope(topic_name="v2.routing.queues.q.conversations", event_body={})
    assert frame_kind(event) is FrameKind.EVENT


def test_handle_reads_expires_and_survives_a_bad_one():
    good = ChannelHandle.from_wire(wire_channel(lifetime=100.0), T0)
    assert good.expires_at == T0 + 100
    bad = Channel(id="streaming-0-a", connect_uri="wss://x/streaming-0-a", expires="soon")
    assert ChannelHandle.from_wire(bad, T0).expires_at == T0 + CHANNEL_LIFETIME
    assert repr(good) == f"ChannelHandle({channel_tag(good.id)})"


def test_a_short_lived_channel_is_extended_by_its_first_put():
    m = make(heartbeat_timeout=QUIET)
    m.start(T0)
    assert m.on_channel_created(wire_channel(lifetime=60.0), T0) == [PutTopics(handle())]
    assert m.deadline() == T0 + 60
    m.on_subscribed(T0)
    assert m.deadline() == RENEW_AT


def test_timings_from_settings():
    timings = ChannelTimings.from_settings(
        NotificationsSettings(heartbeat_timeout=40, pong_timeout=5, renew_before=600),
        ReconnectSettings(base=2, cap=60, stable_after=20),
    )
    assert (timings.heartbeat_timeout, timings.pong_timeout, timings.renew_before) == (40, 5, 600)
    assert (timings.backoff_base, timings.backoff_cap, timings.stable_after) == (2, 60, 20)
    assert ChannelTimings.from_settings(NotificationsSettings()) == ChannelTimings()


@pytest.mark.parametrize(
    "bad",
    [
        {"heartbeat_timeout": 0},
        {"backoff_cap": 0.5},
        {"renew_before": CHANNEL_LIFETIME},
        {"check_after_failures": 0},
        {"loss_margin": -1},
    ],
)
def test_timings_refuse_nonsense(bad):
    with pytest.raises(ValueError, match=r"must be|≥"):
        ChannelTimings(**bad)


# -- a simulated Genesys: loss windows cover every moment nothing was delivered ----------------

LIFETIME = 900.0
SIM_TIMINGS = ChannelTimings(channel_lifetime=LIFETIME, renew_before=300.0)
STEPS = [0.5, 3.0, 11.0, 31.0, 80.0, 700.0, 2_000.0, 4_000.0]
ANSWERS: list[object] = ["ok", "ok", "ok", 401, 429, "429ra", 500, None, 404]
SERVER_FRAMES = [
    FrameKind.HEARTBEAT,
    FrameKind.PONG,
    FrameKind.EVENT,
    FrameKind.SOCKET_CLOSING,
    FrameKind.NO_LONGER_SUBSCRIBED,
    FrameKind.TOKEN_REVOKED,
]


class World:
    """Genesys as the machine sees it, and the truth: when events could really arrive."""

    def __init__(self, seed: int) -> None:
        self.m = ChannelLifecycle(SIM_TIMINGS, rng=random.Random(seed))
        self.t = T0
        self.request: Action | None = None
        self.connecting: dict[int, str] = {}  # socket → channel id
        self.open: dict[int, str] = {}
        self.stalled: set[int] = set()
        self.alive: dict[str, float] = {}  # channel id → expiry (server side)
        self.subscribed: set[str] = set()
        self.windows: list[LossWindow] = []
        self.first_subscribed: float | None = None
        self.gap_since: float | None = None
        self.gaps: list[tuple[float, float]] = []
        self.made = 0
        self.fair_weather = False
        self.todo: deque[Callable[[], list[Action]]] = deque()
        self.feed(self.m.start(self.t))

    # -- truth ---------------------------------------------------------------------------------

    def receiving(self) -> bool:
        return any(
            cid in self.alive and cid in self.subscribed and s not in self.stalled
            for s, cid in self.open.items()
        )

    def note(self) -> None:
        if self.first_subscribed is None:
            return
        receiving = self.receiving()
        if not receiving and self.gap_since is None:
            self.gap_since = self.t
        elif receiving and self.gap_since is not None:
            self.gaps.append((self.gap_since, self.t))
            self.gap_since = None

    # -- the shell -----------------------------------------------------------------------------

    def feed(self, actions: list[Action]) -> None:
        self.apply_all(actions)
        while self.todo:
            self.apply_all(self.todo.popleft()())
        when = self.m.deadline()
        assert when is None or when > self.t, (when, self.t, self.m.describe())

    def apply_all(self, actions: list[Action]) -> None:
        for action in actions:
            self.apply(action)
        self.note()

    def apply(self, action: Action) -> None:
        match action:
            case CreateChannel() | PutTopics() | CheckChannel():
                assert self.request is None, "two HTTP calls at once"
                self.request = action
            case Connect(socket=socket, channel=channel):
                assert not self.connecting, "two sockets connecting at once"
                self.connecting[socket] = channel.id
            case CloseSocket(socket=socket):
                self.connecting.pop(socket, None)
                self.open.pop(socket, None)
            case SendPing(socket=socket):
                if self.fair_weather and socket not in self.stalled:
                    self.todo.append(lambda s=socket: self.frame_to(s, FrameKind.PONG))
            case Wait(until=until):
                assert until >= self.t
            case LossWindow():
                assert action.start_ms <= action.end_ms
                if self.windows:
                    assert action.start_ms >= self.windows[-1].end_ms, "windows overlap"
                self.windows.append(action)
            case RefreshToken():
                pass

    def frame_to(self, socket: int, kind: FrameKind) -> list[Action]:
        return self.m.on_frame(socket, kind, self.t) if socket in self.open else []

    # -- the server ----------------------------------------------------------------------------

    def kill(self, cid: str, notice: FrameKind | None, *, close: bool) -> None:
        self.alive.pop(cid, None)
        self.subscribed.discard(cid)
        self.note()
        for socket in [s for s, c in self.open.items() if c == cid]:
            if notice is not None and socket not in self.stalled:
                self.feed(self.frame_to(socket, notice))
            if not close:
                self.stalled.add(socket)  # open, silent
            elif socket in self.open:
                del self.open[socket]
                self.note()
                self.feed(self.m.on_closed(socket, 1000, self.t))

    def answer(self, outcome: object) -> None:
        request, self.request = self.request, None
        m, t = self.m, self.t
        if request is None:
            return
        if outcome == "ok":
            if isinstance(request, CreateChannel):
                self.made += 1
                wire = wire_channel(self.made, t, LIFETIME)
                self.alive[wire.id] = parse_ms(wire.expires) / 1000
                self.feed(m.on_channel_created(wire, t))
                return
            assert isinstance(request, PutTopics | CheckChannel)
            cid = request.channel.id
            if cid not in self.alive:
                self.feed(m.on_request_failed(404, t))
            elif isinstance(request, CheckChannel):
                self.feed(m.on_channel_found(t))
            else:
                self.subscribed.add(cid)
                self.alive[cid] = max(self.alive[cid], t + LIFETIME)
                if self.first_subscribed is None:
                    self.first_subscribed = t
                self.note()
                self.feed(m.on_subscribed(t))
            return
        if outcome == 404 and not isinstance(request, CreateChannel):
            self.kill(request.channel.id, None, close=True)  # evicted: hence the 404
            self.feed(m.on_request_failed(404, t))
            return
        status = 429 if outcome == "429ra" else 500 if outcome == 404 else outcome
        assert status is None or isinstance(status, int)
        self.feed(m.on_request_failed(status, t, 3.0 if outcome == "429ra" else None))

    def connect(self, how: int) -> None:
        if not self.connecting:
            return
        ((socket, cid),) = self.connecting.items()
        del self.connecting[socket]
        if how % 3 == 0:
            self.feed(
                self.m.on_closed(socket, None, self.t, status=None if cid in self.alive else 404)
            )
        elif cid not in self.alive:  # the upgrade works, then the 404 message and a close
            self.open[socket] = cid
            self.note()
            self.feed(self.m.on_connected(socket, self.t))
            self.feed(self.frame_to(socket, FrameKind.NOT_FOUND))
            if self.open.pop(socket, None) is not None:
                self.note()
                self.feed(self.m.on_closed(socket, 1000, self.t))
        else:  # one socket per channel: the server drops the older one
            older = [s for s, c in self.open.items() if c == cid]
            self.open[socket] = cid
            for s in older:
                del self.open[s]
            self.note()
            reports = [lambda s=s: self.m.on_closed(s, 1000, self.t) for s in older]
            reports.insert(
                len(reports) if how % 2 else 0, lambda: self.m.on_connected(socket, self.t)
            )
            for report in reports:
                self.feed(report())

    def pick(self, how: int) -> int | None:
        sockets = sorted(s for s in self.open if s not in self.stalled)
        if not sockets:
            return None
        return sockets[-1] if how % 2 else sockets[0]

    def frame(self, how: int) -> None:
        socket = self.pick(how)
        if socket is None:
            return
        kind = SERVER_FRAMES[how % len(SERVER_FRAMES)]
        if kind in (FrameKind.NO_LONGER_SUBSCRIBED, FrameKind.TOKEN_REVOKED):
            self.kill(self.open[socket], kind, close=True)
        else:
            self.feed(self.frame_to(socket, kind))

    def close(self, how: int) -> None:
        socket = self.pick(how)
        if socket is not None:
            del self.open[socket]
            self.note()
            self.feed(self.m.on_closed(socket, [1000, 1001, 1006, None][how % 4], self.t))

    def stall(self, how: int) -> None:
        socket = self.pick(how)
        if socket is not None:
            self.stalled.add(socket)
            self.note()

    def evict(self, how: int) -> None:
        if self.alive:
            cid = sorted(self.alive)[how % len(self.alive)]
            self.kill(cid, None, close=how % 2 == 0)

    def advance(self, seconds: float, *, fair: bool, renewals_fail: bool = False) -> None:
        """Let time pass; in fair weather every call succeeds (but renewals, if they are to
        fail) and heartbeats flow."""
        self.fair_weather = fair
        target = self.t + seconds
        heartbeat = self.t + 30.0
        for _ in range(20_000):
            if fair and self.request is not None:
                renewal = isinstance(self.request, PutTopics) and self.request.renewal
                self.answer(500 if renewal and renewals_fail else "ok")
                continue
            if fair and self.connecting:
                self.connect(1)
                continue
            when = min(
                target,
                self.m.deadline() or math.inf,
                min(self.alive.values(), default=math.inf),
                heartbeat if fair else math.inf,
            )
            self.t = max(self.t, when)
            for cid, expires in sorted(self.alive.items()):
                if expires <= self.t:
                    self.kill(cid, None, close=True)
            if fair and self.t >= heartbeat:
                heartbeat = self.t + 30.0
                for socket in [s for s in self.open if s not in self.stalled]:
                    self.feed(self.frame_to(socket, FrameKind.HEARTBEAT))
            if (due := self.m.deadline()) is not None and due <= self.t:
                self.feed(self.m.tick(self.t))
            if self.t >= target:
                break
        else:
            raise AssertionError("time stood still")
        self.fair_weather = False

    def run(self, op: int, how: int) -> None:
        if op == 0:
            self.advance(STEPS[how % len(STEPS)], fair=how >= 8, renewals_fail=how % 2 == 1)
        elif op == 1:
            self.answer(ANSWERS[how % len(ANSWERS)])
        elif op == 2:
            self.connect(how)
        elif op == 3:
            self.frame(how)
        elif op == 4:
            self.close(how)
        elif op == 5:
            self.stall(how)
        elif op == 6:
            self.evict(how)
        else:
            self.feed(self.m.topics_changed(self.t))

    def finish(self) -> None:
        self.feed(self.m.stop(self.t))
        if self.gap_since is not None:
            self.gaps.append((self.gap_since, self.t))
            self.gap_since = None


def merged(windows: list[LossWindow]) -> list[tuple[int, int]]:
    spans: list[tuple[int, int]] = []
    for w in windows:
        if spans and w.start_ms <= spans[-1][1]:
            spans[-1] = (spans[-1][0], max(spans[-1][1], w.end_ms))
        else:
            spans.append((w.start_ms, w.end_ms))
    return spans


def uncovered(gaps: list[tuple[float, float]], windows: list[LossWindow]) -> list[tuple]:
    spans = merged(windows)
    return [
        (start, end)
        for start, end in gaps
        if end > start and not any(a <= start * 1000 and end * 1000 <= b for a, b in spans)
    ]


ops = st.lists(st.tuples(st.integers(0, 7), st.integers(0, 15)), max_size=100)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(seed=st.integers(0, 2**32), steps=ops)
def test_loss_windows_cover_every_moment_nothing_could_arrive(seed, steps):
    world = World(seed)
    for op, how in steps:
        world.run(op, how)
    world.finish()
    assert not uncovered(world.gaps, world.windows), (world.gaps, world.windows)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(seed=st.integers(0, 2**32), steps=ops)
def test_fair_weather_always_brings_the_slot_back(seed, steps):
    world = World(seed)
    for op, how in steps:
        world.run(op, how)
    world.advance(600.0, fair=True)
    assert world.m.live, world.m.describe()
    assert world.receiving()
    world.finish()
    assert not uncovered(world.gaps, world.windows)


def test_the_simulation_sees_a_gap_the_machine_would_miss():
    """The property is not vacuous: drop a window and it fails."""
    world = World(7)
    world.advance(60.0, fair=True)
    world.close(0)
    world.advance(60.0, fair=True)
    world.finish()
    assert world.gaps
    assert not uncovered(world.gaps, world.windows)
    assert uncovered(world.gaps, [w for w in world.windows if w.reason != "socket closed"])
