"""The monitor over HTTP against the emulator: /livez, /readyz through a stalled socket and back,
/status, both sources' event shapes read back from the journal, and no secret in any answer."""

from __future__ import annotations

import asyncio
import sqlite3
import uuid
from pathlib import Path
from typing import Any

import aiohttp
import msgspec
import pytest
from aiohttp import web

from ivrstream.aio.monitor import Monitor, quarantine_label, routes, scan_journal
from ivrstream.aio.subscriber import Subscriber
from ivrstream.clock import ScaledClock
from ivrstream.emulator.render import detail_body, interaction_snapshot
from ivrstream.emulator.traffic import Outcome, TrafficConfig, TrafficModel
from ivrstream.ivr import IvrView
from ivrstream.journal import connect, open_journal
from tests.aio.support import FAST_TRAFFIC, committed, es_config, until


async def get(http: aiohttp.ClientSession, url: str) -> tuple[int, dict]:
    async with http.get(url) as response:
        return response.status, await response.json()


async def test_readyz_fails_while_the_socket_is_stalled_and_recovers(
    emulator_factory, tmp_path, http
):
    async with emulator_factory(**FAST_TRAFFIC) as emu:
        # the watchdog replaces a silent socket after 1.5 s; readiness gives up after 0.3 s
        config = es_config(emu, tmp_path / "j.db", eventstreams={"idle_timeout": 1.5})
        sub = Subscriber(config)
        monitor = Monitor(sub, listen="127.0.0.1:0", idle_limit=0.3)
        async with sub, monitor:
            assert (await get(http, f"{monitor.url}/livez")) == (200, {"alive": True})
            await committed(sub, 200)
            assert (await get(http, f"{monitor.url}/readyz")) == (
                200,
                {"ready": True, "reason": None},
            )
            emu.fire("stall")
            statuses: list[tuple[int, dict]] = []

            async def poll() -> None:
                while True:
                    statuses.append(await get(http, f"{monitor.url}/readyz"))
                    await asyncio.sleep(0.05)

            poller = asyncio.ensure_future(poll())
            try:
                await until(lambda: any(s == 503 for s, _ in statuses), within=5)
                await until(lambda: sub.source.endings.get("idle", 0) >= 1, within=5)
                before = sub.intake.stats.committed
                await committed(sub, before + 100)
                await until(lambda: statuses[-1][0] == 200, within=5)
            finally:
                poller.cancel()
                with pytest.raises(asyncio.CancelledError):
                    await poller
        reason = next(body["reason"] for status, body in statuses if status == 503)
        assert reason.startswith("no event or heartbeat for ")
        assert "idle limit 0.3s" in reason


async def test_readyz_before_connecting_and_after_a_refusal(emulator_factory, tmp_path, http):
    async with emulator_factory(traffic=False) as emu:
        emu.set_faults(forbid_subscriptions=True)
        sub = Subscriber(es_config(emu, tmp_path / "j.db"))
        monitor = Monitor(sub, listen="127.0.0.1:0")
        async with sub, monitor:
            with pytest.raises(Exception, match="4003"):
                await asyncio.wait_for(sub.wait(), 10)
            status, body = await get(http, f"{monitor.url}/readyz")
        assert status == 503
        assert body == {"ready": False, "reason": "not connected (source failed)"}


async def test_status_shape_and_no_secrets(emulator_factory, tmp_path, http):
    async with emulator_factory(**FAST_TRAFFIC) as emu:
        emu.set_faults(drop_after=300)
        config = es_config(emu, tmp_path / "j.db", sinks={"jsonl": {"path": str(tmp_path / "o")}})
        sub = Subscriber(config)
        monitor = Monitor(sub, listen="127.0.0.1:0")
        async with sub, monitor:
            await committed(sub, 800)
            async with http.get(f"{monitor.url}/status") as response:
                assert response.status == 200
                assert response.headers["Cache-Control"] == "no-store"
                raw = await response.text()
            token = sub.tokens.token.access_token
    status = msgspec.json.decode(raw)
    assert set(status) == {
        "service",
        "ready",
        "connection",
        "subscription",
        "rates",
        "latency",
        "last",
        "journal",
        "sinks",
        "gaps",
        "quarantine",
        "auth",
        "history",
        "ivr",
    }
    assert status["ready"] == {"ready": True, "reason": None}
    connection = status["connection"]
    assert connection["source"] == "eventstreams"
    assert connection["connected"] is True
    assert connection["reconnects"]["network"] >= 1
    assert status["subscription"]["id"].startswith("sub-")
    assert set(status["rates"]["received"]) == {"1s", "1m"}
    assert status["rates"]["received"]["1m"] > 0
    latency = status["latency"]["receive_to_commit"]
    assert latency["count"] >= 800
    assert 0 < latency["p50_ms"] <= latency["p90_ms"] <= latency["p99_ms"] <= latency["max_ms"]
    sink = status["sinks"]["jsonl"]
    assert {"backlog", "oldest_undelivered_seconds", "delivered", "retries", "dead_lettered"} <= (
        set(sink)
    )
    assert status["journal"]["writable"] is True
    assert status["gaps"]["open"] == []
    events = [h["event"] for h in status["history"]["reconnects"]]
    assert {"connected", "disconnected", "reconnecting"} <= set(events)
    assert len(events) <= 50
    ivr = status["ivr"]
    assert ivr["flows"]
    assert ivr["active_calls"] == sum(f["active"] for f in ivr["flows"])
    assert 0 <= ivr["containment"] <= 1
    assert "demo-secret" not in raw
    assert token not in raw


async def test_routes_join_another_application(emulator_factory, tmp_path, http):
    async with emulator_factory(traffic=False) as emu:
        sub = Subscriber(es_config(emu, tmp_path / "j.db"))
        async with sub:
            monitor = Monitor(sub)  # no listen: serve it yourself
            await monitor.start()
            app = web.Application()
            app.add_routes(routes(monitor))

            async def page(request: web.Request) -> web.Response:
                return web.Response(text="page")

            app.router.add_get("/", page)
            runner = web.AppRunner(app)
            await runner.setup()
            site = web.TCPSite(runner, "127.0.0.1", 0)
            await site.start()
            host, port = runner.addresses[0][:2]
            try:
                async with http.get(f"http://{host}:{port}/") as response:
                    assert await response.text() == "page"
                assert (await get(http, f"http://{host}:{port}/livez"))[0] == 200
            finally:
                await runner.cleanup()
                await monitor.stop()
            assert monitor.url is None


async def test_notifications_ready_means_a_live_channel_and_hides_channel_ids(
    emulator_factory, tmp_path, http
):
    clock = ScaledClock(360.0)
    async with emulator_factory(clock=clock, rate=0.3, time_scale=10.0) as emu:
        config = es_config(
            emu,
            tmp_path / "j.db",
            source="notifications",
            reconnect={"base": 1.0, "cap": 10.0, "stable_after": 30.0},
            notifications={"heartbeat_timeout": 90.0, "pong_timeout": 60.0},
            backfill={"settle": 60.0, "check_every": 60.0, "lookback": 900.0},
        )
        sub = Subscriber(config, clock=clock)
        monitor = Monitor(sub, listen="127.0.0.1:0")
        async with sub, monitor:
            assert monitor.idle_limit == 150.0

            async def ready() -> bool:
                return (await get(http, f"{monitor.url}/readyz"))[0] == 200

            deadline = asyncio.get_running_loop().time() + 20
            while not await ready():
                assert asyncio.get_running_loop().time() < deadline, "never ready"
                await asyncio.sleep(0.05)
            assert any(slot.lifecycle.live for slot in sub.source.slots.values())
            await until(lambda: sub.intake.stats.committed > 20, within=20)
            async with http.get(f"{monitor.url}/status") as response:
                raw = await response.text()
            async with http.get(f"{monitor.url}/metrics") as response:
                metrics = await response.text()
            channel_ids = list(emu.notifications.channels)
        status = msgspec.json.decode(raw)
        assert status["connection"]["source"] == "notifications"
        assert status["connection"]["channels"][0]["live"] is True
        assert status["last"]["heartbeat_seconds_ago"] is not None
        assert channel_ids
        for secret in [*channel_ids, "demo-secret"]:
            assert secret not in raw
            assert secret not in metrics
        assert "ivrstream_source_connected 1.0" in metrics


def insert(db: sqlite3.Connection, body: dict[str, Any]) -> None:
    db.execute(
        "INSERT INTO events(body, event_id) VALUES (?, ?)",
        (msgspec.json.encode(body), body["event_id"]),
    )


def test_both_sources_event_shapes_feed_the_ivr_view(tmp_path):
    """Event Streams snapshots (``data.flow.id``, ``data.outcome.*``) and Notifications detail
    bodies (``data.flowId``, ``data.exitReason``…) count the same."""
    model = TrafficModel(TrafficConfig(seed=7))
    calls = [model.make_call(i, i * 1_000) for i in range(200)]
    path = tmp_path / "j.db"
    db = connect(path)
    for call in calls:
        for fact in call.facts:
            for source, data in (
                ("eventstreams", interaction_snapshot(fact)),
                ("notifications", detail_body(fact)),
            ):
                body = {
                    "event_id": uuid.uuid4().hex,
                    "source": source,
                    "event_type": fact.kind,
                    "conversation_id": call.conversation_id,
                    "data": data,
                }
                insert(db, body)
    db.close()
    views = {}
    with open_journal(path) as journal:
        rows = scan_journal(journal, after=0, limit=100_000).ivr
    for source in ("eventstreams", "notifications"):
        view = IvrView()
        view.apply(rows[::2] if source == "eventstreams" else rows[1::2], now=0)
        views[source] = view
    queued = [c for c in calls if c.queue is not None]
    abandoned = [c for c in calls if c.outcome is Outcome.ABANDONED_IN_QUEUE]
    for view in views.values():
        assert sum(view.starts.values()) == len(calls)
        assert sum(view.exits.values()) == len(calls)
        assert sum(n for (_, t), n in view.transfers.items() if t == "ACD") == len(queued)
        assert view.abandons == len(abandoned) > 0
        assert view.active_total == 0
        assert set(view.names.values()) <= {c.flow.name for c in calls}
        assert view.containment() == pytest.approx(1 - len(queued) / len(calls))
    assert views["eventstreams"].exits == views["notifications"].exits
    assert sum(views["notifications"].starts.values()) == len(calls)


def test_scan_counts_by_source_and_type_in_batches(tmp_path):
    path = tmp_path / "j.db"
    db = connect(path)
    for i in range(25):
        insert(db, {"event_id": str(i), "source": "s" if i % 2 else "t", "event_type": "x"})
    db.close()
    with open_journal(Path(path)) as journal:
        first = scan_journal(journal, after=0, limit=10)
        rest = scan_journal(journal, after=first.last, limit=100)
        empty = scan_journal(journal, after=rest.last, limit=100)
    assert (first.last, first.rows) == (10, 10)
    assert sorted(first.kinds) == [("s", "x", 5), ("t", "x", 5)]
    assert (rest.last, rest.rows) == (25, 15)
    assert empty.last is None
    assert empty.rows == 0


@pytest.mark.parametrize(
    ("reason", "label"),
    [
        ("invalid JSON: Input data was truncated", "invalid JSON"),
        (
            "frame is 1100135 bytes, over the 1048576-byte limit (the first 1048576 of 1100135"
            " bytes kept)",
            "frame is N bytes, over the N-byte limit",
        ),
        ("unknown topic 'v2.users.abc.presence'", "unknown topic …"),
        ("flow.end event: eventTime 'x' is not an integer", "flow.end event"),
        ("", "unknown"),
    ],
)
def test_quarantine_reasons_become_bounded_labels(reason, label):
    assert quarantine_label(reason) == label
