"""NatsSink against a real NATS server with JetStream (``nats_url``), plus private servers.

Every test names its own stream and subject prefix and deletes the stream afterwards. Tests that
need NATS to be absent, restarted or configured differently start their own ``nats-server`` on
a free port with its own store directory.
"""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import socket
import sys
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import msgspec
import nats
import pytest
from nats.js import JetStreamContext
from nats.js.api import StorageType, StreamConfig
from nats.js.errors import NotFoundError

from ivrstream.config import NatsSettings
from ivrstream.errors import ConfigError
from ivrstream.logs import REDACTOR
from ivrstream.models import InteractionEvent
from ivrstream.sinks.base import Delivery, Outcome, Verdict
from ivrstream.sinks.nats import (
    DUPLICATE_WINDOW,
    NatsSink,
    covers,
    judge_ack,
    subject_for,
    token,
)
from tests.sinks.support import deliveries, delivery, event, facts

pytestmark = pytest.mark.services

NATS_SERVER = shutil.which("nats-server") or "/usr/sbin/nats-server"


# -- pure parts ----------------------------------------------------------------------------------


def test_subject_grammar() -> None:
    assert subject_for("ivr.events", "flow.start", "c0ffee") == "ivr.events.flow_start.c0ffee"
    assert subject_for("ivr.events", "interaction:updated", "a-b") == (
        "ivr.events.interaction:updated.a-b"
    )
    assert token("a b.c*d>e\tf\u00a0g\x00") == "a_b_c_d_e_f_g_"
    assert token("") == "_"
    assert token("5b0e1c2a-8f6d-4d7e-9a3b-0c1d2e3f4a5b") == "5b0e1c2a-8f6d-4d7e-9a3b-0c1d2e3f4a5b"


@pytest.mark.parametrize(
    ("pattern", "expected"),
    [
        ("ivr.events.>", True),
        ("ivr.>", True),
        (">", True),
        ("ivr.*.>", True),
        ("*.events.>", True),
        ("ivr.events.*", False),
        ("ivr.events.*.*", False),
        ("ivr.events", False),
        ("ivr.other.>", False),
        ("ivr.events.flow_start.>", False),
    ],
)
def test_covers(pattern: str, expected: bool) -> None:
    assert covers(pattern, "ivr.events.>") is expected


def test_judge_ack() -> None:
    assert judge_ack(None, b'{"stream":"S","seq":3}') == ("stored", "")
    assert judge_ack(None, b'{"stream":"S","seq":3,"duplicate":true}') == ("duplicate", "")
    assert judge_ack("503", b"")[0] == "unrouted"
    assert judge_ack("408", b"")[0] == "retry"
    assert judge_ack(None, b"not json")[0] == "retry"
    assert judge_ack(None, b"{}")[0] == "retry"
    too_big = b'{"error":{"code":400,"err_code":10054,"description":"message size exceeds"}}'
    kind, detail = judge_ack(None, too_big)
    assert kind == "reject"
    assert "10054" in detail
    assert "message size exceeds" in detail
    assert judge_ack(None, b'{"error":{"code":503,"err_code":10077}}')[0] == "retry"
    assert judge_ack(None, b'{"error":{"code":500}}')[0] == "retry"
    assert judge_ack(None, b'{"error":{"code":404,"err_code":10059}}')[0] == "unrouted"
    assert judge_ack(None, b'{"error":{"code":400,"err_code":10060}}')[0] == "unrouted"


def test_settings_are_checked() -> None:
    with pytest.raises(ConfigError) as caught:
        NatsSink(NatsSettings(subject_prefix="ivr.*"))
    assert caught.value.field == "sinks.nats.subject_prefix"
    with pytest.raises(ConfigError) as caught:
        NatsSink(NatsSettings(subject_prefix="ivr..events"))
    assert caught.value.field == "sinks.nats.subject_prefix"
    with pytest.raises(ConfigError) as caught:
        NatsSink(NatsSettings(stream="IVR.EVENTS"))
    assert caught.value.field == "sinks.nats.stream"
    with pytest.raises(ConfigError) as caught:
        NatsSink(NatsSettings(servers=[]))
    assert caught.value.field == "sinks.nats.servers"
    with pytest.raises(ConfigError) as caught:
        NatsSink(NatsSettings(credentials_file="/nonexistent/user.creds"))
    assert caught.value.field == "sinks.nats.credentials_file"


async def test_credentials_need_nkeys(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    creds = tmp_path / "user.creds"
    creds.write_text("-----BEGIN NATS USER JWT-----\n", encoding="utf-8")
    monkeypatch.setitem(sys.modules, "nkeys", None)
    sink = NatsSink(NatsSettings(credentials_file=str(creds)))
    with pytest.raises(ConfigError) as caught:
        await sink.start()
    assert caught.value.field == "sinks.nats.credentials_file"
    assert "nkeys" in caught.value.message


async def test_credentials_in_server_urls_stay_out_of_errors() -> None:
    port = free_port()  # nothing listens there
    secret = f"pw-{uuid.uuid4().hex}"
    sink = NatsSink(
        NatsSettings(servers=[f"nats://ivr:{secret}@127.0.0.1:{port}"]), connect_timeout=5.0
    )
    await sink.start()
    try:
        outcome = await sink.deliver(deliveries(1))
    finally:
        await sink.close()
    assert outcome.verdict is Verdict.RETRY
    assert f"nats://127.0.0.1:{port}" in outcome.error
    assert secret not in outcome.error
    assert secret not in REDACTOR.scrub(f"nats://ivr:{secret}@127.0.0.1")


async def test_missing_driver_is_a_config_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "nats", None)  # what `import nats` sees when not installed
    sink = NatsSink(NatsSettings())
    with pytest.raises(ConfigError) as caught:
        await sink.start()
    assert caught.value.field == "sinks.nats"
    assert "ivrstream[nats]" in caught.value.message


# -- helpers -------------------------------------------------------------------------------------


class Names:
    """A stream and subject prefix of one's own."""

    def __init__(self) -> None:
        tag = uuid.uuid4().hex[:12]
        self.stream = f"T_{tag.upper()}"
        self.root = f"t{tag}"
        self.prefix = f"{self.root}.events"


SinkFactory = Callable[..., Awaitable[NatsSink]]


def settings(url: str, names: Names, **overrides: Any) -> NatsSettings:
    return NatsSettings(
        servers=[url], stream=names.stream, subject_prefix=names.prefix, **overrides
    )


@pytest.fixture
def names() -> Names:
    return Names()


@pytest.fixture
async def admin(nats_url: str, names: Names) -> AsyncIterator[JetStreamContext]:
    """A JetStream context on the shared server; the test's stream is deleted afterwards."""
    nc = await nats.connect(nats_url)
    js = nc.jetstream()
    try:
        yield js
    finally:
        with contextlib.suppress(NotFoundError):
            await js.delete_stream(names.stream)
        await nc.close()


@pytest.fixture
async def make_sink(nats_url: str, names: Names) -> AsyncIterator[SinkFactory]:
    """Started sinks on the shared server, closed afterwards."""
    sinks: list[NatsSink] = []

    async def make(url: str = nats_url, **kwargs: Any) -> NatsSink:
        sink = NatsSink(settings(url, names), **kwargs)
        sinks.append(sink)
        await sink.start()
        return sink

    try:
        yield make
    finally:
        for sink in sinks:
            await sink.close()


async def read_back(js: JetStreamContext, stream: str, subject: str, count: int) -> list[Any]:
    """``count`` messages of ``stream`` on ``subject`` (wildcards allowed), via a consumer."""
    sub = await js.pull_subscribe(subject, stream=stream)
    out: list[Any] = []
    try:
        while len(out) < count:
            out.extend(await sub.fetch(count - len(out), timeout=2.0))
    finally:
        await sub.unsubscribe()
    for msg in out:
        await msg.ack()
    return out


async def stored(js: JetStreamContext, stream: str) -> int:
    return (await js.stream_info(stream)).state.messages


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


class PrivateNats:
    """A ``nats-server`` of our own (JetStream on, file store under ``directory``)."""

    def __init__(
        self, directory: Path, max_payload: int | None = None, jetstream: bool = True
    ) -> None:
        if not Path(NATS_SERVER).exists():
            pytest.skip(f"{NATS_SERVER} is not installed")
        self.port = free_port()
        self.url = f"nats://127.0.0.1:{self.port}"
        self.directory = directory
        self.max_payload = max_payload
        self.jetstream = jetstream
        self.process: asyncio.subprocess.Process | None = None

    async def start(self) -> None:
        args = ["-a", "127.0.0.1", "-p", str(self.port)]
        if self.jetstream:
            args += ["-js", "-sd", str(self.directory)]
        if self.max_payload is not None:
            config = self.directory.parent / "server.conf"
            config.write_text(f"max_payload: {self.max_payload}\n", encoding="utf-8")
            args += ["-c", str(config)]
        self.process = await asyncio.create_subprocess_exec(
            NATS_SERVER,
            *args,
            stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 10.0
        while True:  # poll briefly until it accepts connections
            try:
                _, writer = await asyncio.open_connection("127.0.0.1", self.port)
            except OSError:
                if time.monotonic() > deadline or self.process.returncode is not None:
                    raise RuntimeError("the private nats-server did not start") from None
                await asyncio.sleep(0.02)
            else:
                writer.close()
                await writer.wait_closed()
                return

    async def stop(self) -> None:
        process, self.process = self.process, None
        if process is not None and process.returncode is None:
            process.terminate()
            await process.wait()


@contextlib.asynccontextmanager
async def private_nats(
    tmp_path: Path, *, started: bool = True, max_payload: int | None = None, jetstream: bool = True
) -> AsyncIterator[PrivateNats]:
    server = PrivateNats(tmp_path / "js", max_payload, jetstream)
    try:
        if started:
            await server.start()
        yield server
    finally:
        await server.stop()


async def deliver_until_ok(sink: NatsSink, batch: list[Delivery], seconds: float = 5.0) -> Outcome:
    """Deliver ``batch`` again and again (briefly apart) until it is confirmed."""
    deadline = time.monotonic() + seconds
    while True:
        outcome = await sink.deliver(batch)
        if outcome.verdict is Verdict.OK or time.monotonic() > deadline:
            return outcome
        await asyncio.sleep(0.05)


# -- against the shared server -------------------------------------------------------------------


async def test_publishes_each_event_once_with_subject_headers_and_body(
    make_sink: SinkFactory, admin: JetStreamContext, names: Names
) -> None:
    batch = deliveries(12)
    sink = await make_sink()

    outcome = await sink.deliver(batch)

    assert outcome == Outcome.ok(duplicates=0)
    info = await admin.stream_info(names.stream)
    assert info.config.subjects == [f"{names.prefix}.>"]
    assert info.config.storage == StorageType.FILE
    assert (info.config.duplicate_window or 0) >= DUPLICATE_WINDOW >= 120
    assert info.state.messages == len(batch)
    messages = await read_back(admin, names.stream, f"{names.prefix}.>", len(batch))
    for sent, msg in zip(batch, messages, strict=True):
        kind = sent.event_type.replace(".", "_")
        assert msg.subject == f"{names.prefix}.{kind}.{sent.conversation_id}"
        assert msg.headers["Nats-Msg-Id"] == sent.event_id
        assert msg.headers["Content-Type"] == "application/json"
        assert msg.data == sent.body
        decoded = msgspec.json.decode(msg.data, type=InteractionEvent)
        assert decoded.event_id == sent.event_id
    stats = sink.statistics()
    assert stats["published"] == len(batch)
    assert stats["duplicates"] == 0
    assert stats["connected"] is True
    assert stats["last_error"] is None


async def test_delivering_a_batch_again_yields_only_duplicates(
    make_sink: SinkFactory, admin: JetStreamContext, names: Names
) -> None:
    batch = deliveries(20)
    sink = await make_sink()
    assert (await sink.deliver(batch)).verdict is Verdict.OK

    again = await sink.deliver(batch)
    partly = await sink.deliver(batch[5:10] + deliveries(3, seed=2))

    assert again == Outcome.ok(duplicates=len(batch))
    assert partly == Outcome.ok(duplicates=5)
    assert await stored(admin, names.stream) == len(batch) + 3
    assert sink.statistics()["published"] == len(batch) + 3
    assert sink.statistics()["duplicates"] == len(batch) + 5


async def test_each_conversation_keeps_batch_order(
    make_sink: SinkFactory, admin: JetStreamContext, names: Names
) -> None:
    batch = deliveries(80)
    sink = await make_sink()
    for start in range(0, len(batch), 25):  # several batches, as a lane sends them
        assert (await sink.deliver(batch[start : start + 25])).verdict is Verdict.OK

    everything = await read_back(admin, names.stream, f"{names.prefix}.>", len(batch))
    assert [m.headers["Nats-Msg-Id"] for m in everything] == [d.event_id for d in batch]
    conversations: dict[str, list[str]] = {}
    for d in batch:
        conversations.setdefault(d.conversation_id, []).append(d.event_id)
    assert len(conversations) > 5
    for conversation, expected in list(conversations.items())[:6]:
        # the subject grammar lets a consumer follow one conversation: <prefix>.*.<id>
        got = await read_back(
            admin, names.stream, f"{names.prefix}.*.{conversation}", len(expected)
        )
        assert [m.headers["Nats-Msg-Id"] for m in got] == expected
    ends = [d for d in batch if d.event_type == "flow.end"]
    got = await read_back(admin, names.stream, f"{names.prefix}.flow_end.>", len(ends))
    assert [m.headers["Nats-Msg-Id"] for m in got] == [d.event_id for d in ends]


async def test_a_hot_standby_pair_yields_one_copy(
    make_sink: SinkFactory, admin: JetStreamContext, names: Names
) -> None:
    batch = deliveries(200)
    primary = await make_sink(name="nats-a")
    standby = await make_sink(name="nats-b")

    outcomes = await asyncio.gather(primary.deliver(batch), standby.deliver(batch))
    late = await standby.deliver(batch[:50])  # the standby catching up later

    assert [o.verdict for o in outcomes] == [Verdict.OK, Verdict.OK]
    assert sum(o.duplicates for o in outcomes) == len(batch)
    assert late == Outcome.ok(duplicates=50)
    assert await stored(admin, names.stream) == len(batch)
    published = primary.statistics()["published"] + standby.statistics()["published"]
    assert published == len(batch)


async def test_an_existing_compatible_stream_is_left_alone(
    make_sink: SinkFactory, admin: JetStreamContext, names: Names
) -> None:
    await admin.add_stream(
        StreamConfig(
            name=names.stream,
            subjects=[f"{names.root}.>"],
            duplicate_window=300.0,
            max_msgs=10_000,
        )
    )
    before = (await admin.stream_info(names.stream)).config

    sink = await make_sink()
    assert (await sink.deliver(deliveries(5))).verdict is Verdict.OK

    after = (await admin.stream_info(names.stream)).config
    assert after.subjects == [f"{names.root}.>"]
    assert after.duplicate_window == before.duplicate_window == 300.0
    assert after.max_msgs == 10_000
    assert await stored(admin, names.stream) == 5


async def test_a_stream_without_our_subjects_is_named_clearly(
    nats_url: str, admin: JetStreamContext, names: Names
) -> None:
    await admin.add_stream(StreamConfig(name=names.stream, subjects=[f"{names.root}.other.>"]))
    sink = NatsSink(settings(nats_url, names))
    try:
        with pytest.raises(ConfigError) as caught:
            await sink.start()
    finally:
        await sink.close()
    assert caught.value.field == "sinks.nats.stream"
    assert names.stream in caught.value.message
    assert f"{names.prefix}.>" in caught.value.message
    assert f"{names.root}.other.>" in caught.value.message


async def test_a_stream_replaced_under_the_sink_is_rechecked(
    make_sink: SinkFactory, admin: JetStreamContext, names: Names
) -> None:
    sink = await make_sink()
    assert (await sink.deliver(deliveries(3))).verdict is Verdict.OK
    # deleted: the next try is unrouted (retry), then the stream is created again
    await admin.delete_stream(names.stream)
    assert (await sink.deliver(deliveries(3))).verdict is Verdict.RETRY
    assert (await sink.deliver(deliveries(3))) == Outcome.ok(duplicates=0)
    assert await stored(admin, names.stream) == 3
    # replaced by one that does not take our subjects: no retry can fix that
    await admin.delete_stream(names.stream)
    await admin.add_stream(StreamConfig(name=names.stream, subjects=[f"{names.root}.other.>"]))
    assert (await sink.deliver(deliveries(3))).verdict is Verdict.RETRY
    gone = await sink.deliver(deliveries(3))
    assert gone.verdict is Verdict.GONE
    assert "does not capture" in gone.error


async def test_an_event_too_big_for_the_stream_is_rejected(
    make_sink: SinkFactory, admin: JetStreamContext, names: Names
) -> None:
    await admin.add_stream(
        StreamConfig(name=names.stream, subjects=[f"{names.prefix}.>"], max_msg_size=4096)
    )
    small = deliveries(4)
    big = sized(small[0], 8_000, pos=99)
    sink = await make_sink(ack_timeout=2.0)

    outcome = await sink.deliver([*small[:2], big, *small[2:]])

    assert outcome.verdict is Verdict.REJECT
    assert big.event_id in outcome.error
    assert "10054" in outcome.error  # the server's "message size exceeds maximum allowed"
    # the dispatcher halves the batch to isolate the event at fault; the rest goes through
    assert (await sink.deliver(small)).verdict is Verdict.OK
    assert (await sink.deliver([big])).verdict is Verdict.REJECT
    assert await stored(admin, names.stream) == len(small)
    assert sink.statistics()["rejects"] == 2


def sized(template: Delivery, length: int, pos: int) -> Delivery:
    """A real canonical event whose JSON is exactly ``length`` bytes, in ``template``'s
    conversation."""
    item = event(facts(1, seed=7)[0])
    item = msgspec.structs.replace(
        item, event_id=f"{item.event_id}-big", conversation_id=template.conversation_id
    )
    base = len(delivery(item, pos).body) + len(msgspec.json.encode({"padding": ""})) - 2
    made = delivery(msgspec.structs.replace(item, extra={"padding": "x" * (length - base)}), pos)
    assert len(made.body) == length
    return made


async def test_five_thousand_events(
    make_sink: SinkFactory, admin: JetStreamContext, names: Names
) -> None:
    batch = deliveries(5_000)
    sink = await make_sink()

    started = time.perf_counter()
    outcome = await sink.deliver(batch)
    elapsed = time.perf_counter() - started
    again_started = time.perf_counter()
    again = await sink.deliver(batch)
    again_elapsed = time.perf_counter() - again_started

    print(
        f"\nNatsSink: 5000 events published in {elapsed:.3f}s ({len(batch) / elapsed:,.0f}/s);"
        f" the same again as duplicates in {again_elapsed:.3f}s"
    )
    assert outcome == Outcome.ok(duplicates=0)
    assert again == Outcome.ok(duplicates=len(batch))
    assert await stored(admin, names.stream) == len(batch)


# -- against private servers ---------------------------------------------------------------------


async def test_nats_absent_at_start_then_there(tmp_path: Path, names: Names) -> None:
    batch = deliveries(30)
    async with private_nats(tmp_path, started=False) as server:
        sink = NatsSink(settings(server.url, names), connect_timeout=20.0, reconnect_wait=0.1)
        try:
            started = time.monotonic()
            await sink.start()  # does not raise: NATS may come later
            first = await sink.deliver(batch)
            second = await sink.deliver(batch)
            # a refused connection answers at once; connect_timeout is for silent servers
            assert time.monotonic() - started < sink.connect_timeout
            assert first.verdict is Verdict.RETRY
            assert second.verdict is Verdict.RETRY
            assert "cannot connect" in first.error
            assert sink.statistics()["last_error"] == second.error
            assert sink.statistics()["connected"] is False

            await server.start()
            outcome = await deliver_until_ok(sink, batch)
            assert outcome == Outcome.ok(duplicates=0)
            assert await sink.deliver(batch) == Outcome.ok(duplicates=len(batch))
            assert sink.statistics()["published"] == len(batch)
        finally:
            await sink.close()
        nc = await nats.connect(server.url)
        try:
            assert await stored(nc.jetstream(), names.stream) == len(batch)
        finally:
            await nc.close()


async def test_a_lost_connection_is_retried_and_reconnected(tmp_path: Path, names: Names) -> None:
    first, later = deliveries(10), deliveries(10, seed=3)
    async with private_nats(tmp_path) as server:
        sink = NatsSink(
            settings(server.url, names), connect_timeout=1.0, ack_timeout=1.0, reconnect_wait=0.05
        )
        try:
            await sink.start()
            assert await sink.deliver(first) == Outcome.ok(duplicates=0)

            await server.stop()
            assert (await sink.deliver(later)).verdict is Verdict.RETRY
            await server.start()  # same port, same store: the stream is still there
            assert await deliver_until_ok(sink, first + later) == Outcome.ok(duplicates=10)

            stats = sink.statistics()
            assert stats["reconnects"] >= 1
            assert stats["published"] == 20
        finally:
            await sink.close()
        nc = await nats.connect(server.url)
        try:
            assert await stored(nc.jetstream(), names.stream) == 20
        finally:
            await nc.close()


async def test_a_message_over_max_payload_is_rejected(tmp_path: Path, names: Names) -> None:
    small = deliveries(5)
    big = sized(small[0], 6_000, pos=98)
    # fits max_payload by itself, not with its headers: the server would cut the connection
    edge = sized(small[1], 4_050, pos=99)
    assert len(edge.body) <= 4096 < len(edge.body) + 100
    async with private_nats(tmp_path, max_payload=4096) as server:
        sink = NatsSink(settings(server.url, names))
        try:
            await sink.start()
            for culprit in (big, edge):
                outcome = await sink.deliver([*small[:3], culprit, *small[3:]])
                assert outcome.verdict is Verdict.REJECT
                assert "exceed the server's max_payload of 4096 bytes" in outcome.error
                assert culprit.event_id in outcome.error
            # nothing of a refused batch was sent, and the connection is still good
            assert sink.statistics()["published"] == 0
            assert await sink.deliver(small) == Outcome.ok(duplicates=0)
            assert sink.statistics()["reconnects"] == 0
        finally:
            await sink.close()


async def test_nats_without_jetstream_is_retried_with_a_hint(tmp_path: Path, names: Names) -> None:
    async with private_nats(tmp_path, jetstream=False) as server:
        sink = NatsSink(settings(server.url, names), ack_timeout=1.0)
        try:
            await sink.start()
            outcome = await sink.deliver(deliveries(2))
        finally:
            await sink.close()
    assert outcome.verdict is Verdict.RETRY
    assert "JetStream enabled" in outcome.error


async def test_deliver_before_start_is_a_bug(names: Names) -> None:
    sink = NatsSink(NatsSettings(stream=names.stream, subject_prefix=names.prefix))
    with pytest.raises(RuntimeError, match="start"):
        await sink.deliver(deliveries(1))
