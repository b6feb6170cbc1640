"""The webhook sink against the reference receiver (and a few stub endpoints) on loopback."""

from __future__ import annotations

import msgspec
import pytest
from aiohttp import web

from ivrstream.clock import SystemClock
from ivrstream.config import WebhookSettings
from ivrstream.errors import ConfigError
from ivrstream.receiver import Receiver
from ivrstream.sinks.base import Verdict
from ivrstream.sinks.webhook import WebhookSink
from ivrstream.webhooks import verify
from tests.sinks.support import deliveries

SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"


async def sink_for(url: str, **settings) -> WebhookSink:
    sink = WebhookSink(WebhookSettings(url=url, secret=SECRET, **settings), SystemClock())
    await sink.start()
    return sink


async def test_batches_arrive_signed_and_once(tmp_path):
    async with Receiver(secret=SECRET, db=tmp_path / "r.db") as receiver:
        sink = await sink_for(receiver.url)
        batch = deliveries(25)
        assert (await sink.deliver(batch)).verdict is Verdict.OK
        assert (await sink.deliver(batch)).verdict is Verdict.OK  # a retried batch: no harm
        await sink.close()
        stats = receiver.stats()
        stored = [msgspec.json.decode(body)["event_id"] for _, body in await receiver.events()]
    assert stats["requests"] == 2
    assert stats["events"] == 25
    assert stats["duplicates"] == 25
    assert stored == [d.event_id for d in batch]


async def test_single_mode_posts_one_event_per_request_with_its_id(tmp_path):
    async with Receiver(secret=SECRET, db=tmp_path / "r.db") as receiver:
        sink = await sink_for(receiver.url, mode="single")
        assert (await sink.deliver(deliveries(4))).verdict is Verdict.OK
        await sink.close()
        assert receiver.stats()["requests"] == 4
        assert receiver.stats()["events"] == 4


@pytest.fixture
async def stub():
    """A scripted endpoint: ``stub.answers`` is a list of (status, headers) to give in turn."""
    seen: list[tuple[dict[str, str], bytes]] = []
    answers: list[tuple[int, dict[str, str]]] = []

    async def handle(request: web.Request) -> web.Response:
        body = await request.read()
        seen.append((dict(request.headers), body))
        status, headers = answers.pop(0) if answers else (200, {})
        return web.Response(status=status, headers=headers, text="answer")

    app = web.Application()
    app.router.add_post("/hook", handle)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]

    class Stub:
        url = f"http://127.0.0.1:{port}/hook"

    stub = Stub()
    stub.seen = seen
    stub.answers = answers
    yield stub
    await runner.cleanup()


async def test_the_signature_verifies_and_the_id_is_stable_across_retries(stub):
    sink = await sink_for(stub.url)
    batch = deliveries(3)
    stub.answers[:] = [(503, {}), (200, {})]
    assert (await sink.deliver(batch)).verdict is Verdict.RETRY
    assert (await sink.deliver(batch)).verdict is Verdict.OK
    await sink.close()
    (first_headers, first_body), (second_headers, _) = stub.seen
    assert first_headers["webhook-id"] == second_headers["webhook-id"]
    now = int(first_headers["webhook-timestamp"])
    verify(SECRET, first_headers, first_body, now=now)
    assert [e["event_id"] for e in msgspec.json.decode(first_body)] == [d.event_id for d in batch]


@pytest.mark.parametrize(
    ("status", "headers", "verdict", "retry_after"),
    [
        (200, {}, Verdict.OK, None),
        (204, {}, Verdict.OK, None),
        (410, {}, Verdict.GONE, None),
        (408, {}, Verdict.RETRY, None),
        (425, {}, Verdict.RETRY, None),
        (429, {"Retry-After": "7"}, Verdict.RETRY, 7.0),
        (500, {}, Verdict.RETRY, None),
        (503, {"Retry-After": "2"}, Verdict.RETRY, 2.0),
        (400, {}, Verdict.REJECT, None),
        (401, {}, Verdict.REJECT, None),
        (422, {}, Verdict.REJECT, None),
    ],
)
async def test_status_codes_map_to_verdicts(stub, status, headers, verdict, retry_after):
    sink = await sink_for(stub.url)
    stub.answers[:] = [(status, headers)]
    outcome = await sink.deliver(deliveries(2))
    await sink.close()
    assert outcome.verdict is verdict
    assert outcome.retry_after == retry_after
    if verdict is not Verdict.OK:
        assert str(status) in outcome.error


async def test_network_failures_and_timeouts_are_retried(stub):
    sink = await sink_for("http://127.0.0.1:1/unreachable")
    assert (await sink.deliver(deliveries(1))).verdict is Verdict.RETRY
    await sink.close()


async def test_a_slow_endpoint_times_out_into_a_retry(tmp_path):
    async with Receiver(secret=SECRET, db=tmp_path / "r.db") as receiver:
        receiver.set_faults(latency=0.5)
        sink = await sink_for(receiver.url, timeout=0.1)
        outcome = await sink.deliver(deliveries(1))
        await sink.close()
    assert outcome.verdict is Verdict.RETRY


@pytest.mark.parametrize(
    ("settings", "field"),
    [
        ({"url": None}, "sinks.webhook.url"),
        ({"url": "ftp://x"}, "sinks.webhook.url"),
        ({"url": "http://x", "secret": "not base64!"}, "sinks.webhook.secret"),
    ],
)
def test_configuration_mistakes_name_the_field(settings, field):
    with pytest.raises(ConfigError) as info:
        WebhookSink(WebhookSettings(**settings), SystemClock())
    assert info.value.field == field
    assert "not base64!" not in str(info.value)
