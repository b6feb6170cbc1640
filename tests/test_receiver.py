"""The reference webhook receiver on 127.0.0.1 port 0: verify, dedupe, store, fail on purpose."""

import asyncio
import base64
import json
import os
import random
import signal
import sys
import time

import aiohttp
import msgspec
import pytest
from click.testing import CliRunner

from ivrstream import receiver as receiver_module
from ivrstream.cli import main
from ivrstream.models import InteractionEvent
from ivrstream.receiver import Faults, Receiver
from ivrstream.testing.clock import FakeClock
from ivrstream.webhooks import batch_id, sign

SECRET = "whsec_" + base64.b64encode(b"receiver-test-key-32-bytes-long!").decode()
OTHER_SECRET = "whsec_" + base64.b64encode(b"another-key-entirely-32-bytes-xx").decode()


def event(n: int, event_type: str = "flow.start", conversation: str = "conv-1") -> dict:
    return msgspec.to_builtins(
        InteractionEvent(
            event_id=f"evt-{n}",
            source="eventstreams",
            event_type=event_type,
            conversation_id=conversation,
            sequence_id=n,
            event_time="2026-05-01T10:00:00.000Z",
            received_at="2026-05-01T10:00:00.100Z",
            data={"flow": "Main IVR", "n": n},
        )
    )


def encode(payload: object) -> bytes:
    return payload if isinstance(payload, bytes) else msgspec.json.encode(payload)


async def deliver(
    http, receiver, payload, *, secret=SECRET, timestamp=None, msg_id=None, headers=None
):
    """POST ``payload`` signed; returns (status, JSON answer, response headers)."""
    body = encode(payload)
    if timestamp is None:
        timestamp = int(receiver.clock.time())
    if msg_id is None:
        msg_id = "msg_test"
    sent = {**sign(secret, msg_id, timestamp, body), "Content-Type": "application/json"}
    if headers is not None:
        sent = headers
    async with http.post(receiver.url, data=body, headers=sent) as resp:
        return resp.status, await resp.json(), resp.headers


async def stored(http, receiver, after=0, limit=1000):
    async with http.get(f"{receiver.base_url}/events?after={after}&limit={limit}") as resp:
        assert resp.status == 200
        assert resp.content_type == "application/x-ndjson"
        text = await resp.text()
        return [json.loads(line) for line in text.splitlines()], int(resp.headers["X-Next-After"])


@pytest.fixture
async def receiver(tmp_path):
    async with Receiver(secret=SECRET, db=tmp_path / "received.db") as r:
        yield r


# -- signatures ------------------------------------------------------------------------------------


async def test_a_signed_event_is_stored_and_listed(http, receiver):
    assert receiver.url == f"http://127.0.0.1:{receiver.port}/webhook"
    assert receiver.port > 0
    status, answer, _ = await deliver(http, receiver, event(1))
    assert (status, answer) == (200, {"received": 1, "duplicates": 0})
    events, _ = await stored(http, receiver)
    assert events == [event(1)]
    assert [body for _, body in await receiver.events()] == [msgspec.json.encode(event(1)).decode()]


async def test_a_wrong_signature_is_refused_401_and_nothing_is_stored(http, receiver):
    status, answer, _ = await deliver(http, receiver, event(1), secret=OTHER_SECRET)
    assert status == 401
    assert answer["reason"] == "no_match"
    assert SECRET.removeprefix("whsec_") not in json.dumps(answer)
    assert await receiver.events() == []
    stats = receiver.stats()
    assert stats["rejected_signatures"] == 1
    assert stats["rejected_by_reason"] == {"no_match": 1}
    assert stats["events"] == 0


async def test_a_body_changed_after_signing_is_refused(http, receiver):
    body = encode(event(1))
    headers = sign(SECRET, "msg_1", int(time.time()), body)
    async with http.post(receiver.url, data=body.replace(b"evt-1", b"evt-9"), headers=headers) as r:
        assert r.status == 401
        assert (await r.json())["reason"] == "no_match"


async def test_an_expired_or_future_timestamp_is_refused_401(http, receiver):
    now = int(time.time())
    status, answer, _ = await deliver(http, receiver, event(1), timestamp=now - 301)
    assert (status, answer["reason"]) == (401, "too_old")
    status, answer, _ = await deliver(http, receiver, event(1), timestamp=now + 3600)
    assert (status, answer["reason"]) == (401, "too_new")
    assert await receiver.events() == []


async def test_the_tolerance_is_configurable(http, tmp_path):
    async with Receiver(secret=SECRET, tolerance=3600) as r:
        status, _, _ = await deliver(http, r, event(1), timestamp=int(time.time()) - 1800)
        assert status == 200


async def test_missing_signature_headers_are_refused_401(http, receiver):
    status, answer, _ = await deliver(
        http, receiver, event(1), headers={"Content-Type": "application/json"}
    )
    assert (status, answer["reason"]) == (401, "missing_header")
    assert "webhook-id" in answer["detail"]


# -- bodies and duplicates -------------------------------------------------------------------------


async def test_a_batch_is_stored_in_order_in_one_request(http, receiver):
    batch = [event(1), event(2, "flow.end"), event(3, "acd.start", "conv-2")]
    status, answer, _ = await deliver(
        http, receiver, batch, msg_id=batch_id([e["event_id"] for e in batch])
    )
    assert (status, answer) == (200, {"received": 3, "duplicates": 0})
    events, _ = await stored(http, receiver)
    assert events == batch
    assert receiver.stats()["by_event_type"] == {"flow.start": 1, "flow.end": 1, "acd.start": 1}


async def test_events_without_a_type_are_counted_under_an_empty_one(http, receiver):
    untyped = {"event_id": "evt-9", "data": {}}
    status, answer, _ = await deliver(http, receiver, [event(1), untyped, {"event_id": "evt-8"}])
    assert (status, answer) == (200, {"received": 3, "duplicates": 0})
    assert receiver.stats()["by_event_type"] == {"flow.start": 1, "": 2}


async def test_duplicates_are_counted_within_a_batch_and_across_requests(http, receiver):
    status, answer, _ = await deliver(http, receiver, [event(1), event(2), event(1)])
    assert (status, answer) == (200, {"received": 2, "duplicates": 1})
    status, answer, _ = await deliver(http, receiver, [event(2), event(3)])
    assert (status, answer) == (200, {"received": 1, "duplicates": 1})
    status, answer, _ = await deliver(http, receiver, event(3))
    assert (status, answer) == (200, {"received": 0, "duplicates": 1})
    events, _ = await stored(http, receiver)
    assert [e["event_id"] for e in events] == ["evt-1", "evt-2", "evt-3"]
    stats = receiver.stats()
    assert (stats["events"], stats["duplicates"], stats["requests"]) == (3, 3, 3)
    assert stats["by_event_type"] == {"flow.start": 3}


async def test_a_retried_batch_with_the_same_webhook_id_changes_nothing(http, receiver):
    batch = [event(1), event(2)]
    msg_id = batch_id([e["event_id"] for e in batch])
    await deliver(http, receiver, batch, msg_id=msg_id)
    status, answer, _ = await deliver(http, receiver, batch, msg_id=msg_id)
    assert (status, answer) == (200, {"received": 0, "duplicates": 2})
    assert len(await receiver.events()) == 2


async def test_an_empty_batch_is_accepted_and_stores_nothing(http, receiver):
    status, answer, _ = await deliver(http, receiver, [])
    assert (status, answer) == (200, {"received": 0, "duplicates": 0})


@pytest.mark.parametrize(
    ("body", "words"),
    [
        (b"not json", "neither"),
        (b"42", "neither"),
        (b'"evt-1"', "neither"),
        (b'{"event_id": "evt-1"', "malformed"),
        (b'{"conversation_id": "c"}', "event_id"),
        (b'{"event_id": ""}', "event_id is empty"),
        (b'{"event_id": 7}', "event_id"),
        (b'[{"event_id": "evt-1"}, {"event_type": "x"}]', "event 1"),
        (b'[{"event_id": "evt-1"}, 3]', "event 1"),
        (b'[{"event_id": "evt-1"}, {"event_id": ""}]', "event 1: event_id is empty"),
        (b'[{"event_id": "evt-1", "x": "\xff"}]', "event 0"),
        (b'{"event_id": "evt-1", "sequence_id": "seven"}', "sequence_id"),
    ],
)
async def test_a_body_that_is_not_events_is_refused_400_and_nothing_of_it_is_stored(
    http, receiver, body, words
):
    status, answer, _ = await deliver(http, receiver, body)
    assert status == 400
    assert words in answer["detail"]
    assert await receiver.events() == []
    assert receiver.stats()["bad_requests"] == 1


def test_a_batch_parses_the_same_in_one_pass_as_event_by_event():
    events = [
        {**event(1), "text": 'é€😀 "quoted" \\ tab\t'},
        event(2),
        {"event_id": "evt-3"},  # only the id: the other columns are empty
        {**event(2), "again": True},  # a repeat is a row too (the store skips it)
    ]
    body = msgspec.json.encode(events)
    fast = receiver_module.parse_body(body, "2026-01-01T00:00:00.000Z")
    each = receiver_module._parse_each(body, b"[", "2026-01-01T00:00:00.000Z")
    assert fast == each
    assert [r.event_id for r in fast] == ["evt-1", "evt-2", "evt-3", "evt-2"]
    assert [json.loads(r.body) for r in fast] == events


async def test_a_pretty_printed_event_is_stored_on_one_line_with_unknown_fields_kept(
    http, receiver
):
    pretty = {**event(1), "future_field": {"nested": [1, 2]}}
    body = json.dumps(pretty, indent=2).encode()
    status, _, _ = await deliver(http, receiver, body)
    assert status == 200
    ((position, text),) = await receiver.events()
    assert position == 1
    assert "\n" not in text
    assert json.loads(text) == pretty


async def test_events_pages_in_arrival_order(http, receiver):
    await deliver(http, receiver, [event(5), event(3)])
    await deliver(http, receiver, [event(4), event(1), event(2)])
    first, after = await stored(http, receiver, after=0, limit=2)
    assert [e["event_id"] for e in first] == ["evt-5", "evt-3"]
    second, after = await stored(http, receiver, after=after, limit=2)
    assert [e["event_id"] for e in second] == ["evt-4", "evt-1"]
    third, after = await stored(http, receiver, after=after, limit=2)
    assert [e["event_id"] for e in third] == ["evt-2"]
    last, again = await stored(http, receiver, after=after, limit=2)
    assert (last, again) == ([], after)


@pytest.mark.parametrize("query", ["after=-1", "after=x", "limit=0", "limit=10001", "limit=y"])
async def test_events_refuses_bad_paging(http, receiver, query):
    async with http.get(f"{receiver.base_url}/events?{query}") as resp:
        assert resp.status == 400


async def test_stats_over_http_match_the_python_api(http, receiver):
    await deliver(http, receiver, [event(1), event(1, "flow.end")])
    await deliver(http, receiver, event(2, "flow.end"), secret=OTHER_SECRET)
    await deliver(http, receiver, b"[1]")
    async with http.get(f"{receiver.base_url}/stats") as resp:
        stats = await resp.json()
    assert stats == receiver.stats()
    assert stats["requests"] == 3
    assert stats["accepted"] == 1
    assert (stats["events"], stats["duplicates"]) == (1, 1)
    assert (stats["rejected_signatures"], stats["bad_requests"]) == (1, 1)
    assert stats["by_event_type"] == {"flow.start": 1}
    assert stats["injected_failures"] == 0


async def test_events_survive_a_restart_and_still_deduplicate(http, tmp_path):
    db = tmp_path / "received.db"
    async with Receiver(secret=SECRET, db=db) as r:
        await deliver(http, r, [event(1), event(2)])
    async with Receiver(secret=SECRET, db=db) as r:
        status, answer, _ = await deliver(http, r, [event(2), event(3)])
        assert (status, answer) == (200, {"received": 1, "duplicates": 1})
        assert [pos for pos, _ in await r.events()] == [1, 2, 3]


async def test_wait_events_returns_once_enough_are_stored(http, receiver):
    waiter = asyncio.create_task(receiver.wait_events(3))
    await deliver(http, receiver, [event(1), event(2)])
    await asyncio.sleep(0)
    assert not waiter.done()
    await deliver(http, receiver, [event(2), event(3)])
    async with asyncio.timeout(5):
        await waiter


# -- injected faults -------------------------------------------------------------------------------


async def statuses(http, receiver, count: int) -> list[int]:
    result = []
    for n in range(count):
        status, _, _ = await deliver(http, receiver, event(n))
        result.append(status)
    return result


async def test_fail_rate_follows_the_seed_and_stores_nothing_it_fails(http):
    faults = Faults(fail_rate=0.4)
    runs = []
    for _ in range(2):
        async with Receiver(secret=SECRET, faults=faults, seed=7) as r:
            runs.append(await statuses(http, r, 30))
            stats = r.stats()
            assert stats["events"] == runs[-1].count(200)
            assert stats["injected_failures"] == runs[-1].count(503)
            assert stats["injected_by_cause"] == {"fail_rate": runs[-1].count(503)}
            assert len(await r.events()) == runs[-1].count(200)
    assert runs[0] == runs[1]
    rng = random.Random(7)
    assert runs[0] == [503 if rng.random() < 0.4 else 200 for _ in range(30)]
    assert 0 < runs[0].count(503) < 30
    async with Receiver(secret=SECRET, faults=faults, seed=8) as r:
        assert await statuses(http, r, 30) != runs[0]


async def test_injected_429_carries_retry_after(http):
    async with Receiver(
        secret=SECRET, faults=Faults(fail_rate=1.0, status=429, retry_after=7)
    ) as r:
        status, answer, headers = await deliver(http, r, event(1))
        assert (status, headers["Retry-After"]) == (429, "7")
        assert answer == {"error": "injected", "cause": "fail_rate"}
        # a failure is decided before the signature is even looked at, as an outage would be
        status, _, _ = await deliver(http, r, event(1), secret=OTHER_SECRET)
        assert status == 429
        assert r.stats()["injected_failures"] == 2
        assert r.stats()["rejected_signatures"] == 0


async def test_a_503_has_no_retry_after_unless_asked(http):
    async with Receiver(secret=SECRET, faults=Faults(fail_rate=1.0)) as r:
        status, _, headers = await deliver(http, r, event(1))
        assert status == 503
        assert "Retry-After" not in headers


async def test_an_outage_set_at_run_time_fails_everything_until_it_ends(http, receiver):
    faults_url = f"{receiver.base_url}/receiver/faults"
    async with http.post(faults_url, json={"outage_for_seconds": 60, "retry_after": 2}) as resp:
        assert resp.status == 200
        assert (await resp.json())["outage_remaining"] > 59
    assert await statuses(http, receiver, 3) == [503, 503, 503]
    _, _, headers = await deliver(http, receiver, event(1))
    assert headers["Retry-After"] == "2"
    async with http.get(faults_url) as resp:
        current = await resp.json()
    assert current["outage_remaining"] > 0
    assert current["status"] == 503
    async with http.post(faults_url, json={"outage_for_seconds": 0}) as resp:
        assert (await resp.json())["outage_remaining"] == 0
    status, answer, _ = await deliver(http, receiver, event(1))
    assert (status, answer) == (200, {"received": 1, "duplicates": 0})
    stats = receiver.stats()
    assert stats["injected_by_cause"] == {"outage": 4}
    assert stats["events"] == 1


@pytest.mark.parametrize(
    "change",
    [
        {"fail_rate": 2},
        {"fail_rate": "half"},
        {"latency": -1},
        {"status": 200},
        {"retry_after": -3},
        {"outage_for_seconds": -1},
        {"explode": True},
    ],
)
async def test_a_bad_fault_change_is_refused_400_and_changes_nothing(http, receiver, change):
    async with http.post(f"{receiver.base_url}/receiver/faults", json=change) as resp:
        assert resp.status == 400
    assert receiver.faults == Faults()
    assert receiver.fault_status()["outage_remaining"] == 0


async def test_outage_windows_are_seconds_after_start():
    clock = FakeClock()
    async with (
        Receiver(secret=SECRET, outages=[(10, 20)], clock=clock) as r,
        aiohttp.ClientSession() as http,
    ):
        assert await statuses(http, r, 1) == [200]
        await clock.advance(10)
        assert await statuses(http, r, 2) == [503, 503]
        await clock.advance(10)
        assert await statuses(http, r, 1) == [200]
        assert r.stats()["injected_by_cause"] == {"outage": 2}


async def test_latency_delays_every_answer(http, receiver):
    receiver.set_faults(latency=0.05)
    started = time.monotonic()
    status, _, _ = await deliver(http, receiver, event(1))
    assert status == 200
    assert time.monotonic() - started >= 0.05
    assert receiver.stats()["delayed"] == 1
    receiver.set_faults(latency=0)
    await deliver(http, receiver, event(2))
    assert receiver.stats()["delayed"] == 1


def test_the_constructor_refuses_what_cannot_work(tmp_path):
    with pytest.raises(ValueError, match="Standard Webhooks secret"):
        Receiver(secret="not a secret")
    with pytest.raises(ValueError, match="not both"):
        Receiver(secret=SECRET, db=tmp_path / "x.db", dsn="postgresql://x")
    with pytest.raises(ValueError, match="path"):
        Receiver(secret=SECRET, path="webhook")
    with pytest.raises(ValueError, match="START"):
        Receiver(secret=SECRET, outages=[(5, 1)])
    with pytest.raises(ValueError, match="fail_rate"):
        Receiver(secret=SECRET, faults=Faults(fail_rate=1.5))


# -- PostgreSQL ------------------------------------------------------------------------------------


@pytest.mark.services
async def test_postgresql_storage_deduplicates_and_keeps_arrival_order(http, postgres_dsn):
    async with Receiver(secret=SECRET, dsn=postgres_dsn) as r:
        status, answer, _ = await deliver(http, r, [event(3), event(1), event(3)])
        assert (status, answer) == (200, {"received": 2, "duplicates": 1})
        status, answer, _ = await deliver(http, r, [event(1), event(2)])
        assert (status, answer) == (200, {"received": 1, "duplicates": 1})
        events, after = await stored(http, r, limit=2)
        assert [e["event_id"] for e in events] == ["evt-3", "evt-1"]
        events, _ = await stored(http, r, after=after)
        assert events == [event(2)]
        assert r.stats()["by_event_type"] == {"flow.start": 3}
    async with Receiver(secret=SECRET, dsn=postgres_dsn) as r:
        status, answer, _ = await deliver(http, r, [event(2), event(4)])
        assert (status, answer) == (200, {"received": 1, "duplicates": 1})
        assert [json.loads(body)["event_id"] for _, body in await r.events()] == [
            "evt-3",
            "evt-1",
            "evt-2",
            "evt-4",
        ]


# -- the command -----------------------------------------------------------------------------------


async def test_receiver_command_serves_on_the_port_it_writes_and_stops_on_sigterm(http, tmp_path):
    port_file = tmp_path / "port"
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "ivrstream",
        "receiver",
        "--port-file",
        str(port_file),
        "--db",
        str(tmp_path / "received.db"),
        "--outage-status",
        "429",
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env={**os.environ, "WEBHOOK_SECRET": SECRET},
    )
    try:
        for _ in range(500):
            if port_file.exists():
                break
            await asyncio.sleep(0.02)
        port = int(port_file.read_text())
        line = (await asyncio.wait_for(proc.stdout.readline(), 10)).decode()
        assert f"http://127.0.0.1:{port}/webhook" in line
        body = encode([event(1), event(2)])
        headers = sign(SECRET, "msg_cli", int(time.time()), body)
        async with http.post(f"http://127.0.0.1:{port}/webhook", data=body, headers=headers) as r:
            assert (r.status, await r.json()) == (200, {"received": 2, "duplicates": 0})
        async with http.get(f"http://127.0.0.1:{port}/stats") as r:
            assert (await r.json())["events"] == 2
    finally:
        proc.send_signal(signal.SIGTERM)
        code = await asyncio.wait_for(proc.wait(), 10)
        stdout = line + (await proc.stdout.read()).decode()
        stderr = (await proc.stderr.read()).decode()
    assert code == 0, stderr
    assert "Traceback" not in stderr
    assert "2 events stored" in stdout
    key = SECRET.removeprefix("whsec_")
    assert key not in stdout
    assert key not in stderr


@pytest.mark.parametrize(
    ("args", "named"),
    [
        (["--db", "x.db"], "--secret"),
        (["--secret", "whsec_not base64!", "--db", "x.db"], "--secret"),
        (["--secret", SECRET], "--db"),
        (["--secret", SECRET, "--db", "x.db", "--dsn", "postgresql://x"], "--dsn"),
        (["--secret", SECRET, "--db", "x.db", "--fail-rate", "2"], "--fail-rate"),
        (["--secret", SECRET, "--db", "x.db", "--outage", "5:1"], "--outage"),
        (["--secret", SECRET, "--db", "x.db", "--outage", "soon"], "--outage"),
        (["--secret", SECRET, "--db", "x.db", "--path", "webhook"], "--path"),
        (["--secret", SECRET, "--db", "x.db", "--outage-status", "200"], "--outage-status"),
        (["--secret", SECRET, "--db", "x.db", "--tolerance", "0"], "--tolerance"),
    ],
)
def test_bad_receiver_options_exit_2_naming_the_option(args, named, monkeypatch):
    monkeypatch.delenv("WEBHOOK_SECRET", raising=False)
    monkeypatch.delenv("IVRSTREAM_RECEIVER_DSN", raising=False)
    result = CliRunner().invoke(main, ["receiver", *args])
    assert result.exit_code == 2, result.output
    assert named in result.stderr
    assert "Traceback" not in result.stderr
    assert "not base64!" not in result.stderr
