"""Analytics details (query and jobs), flows and queues, checked against the traffic model.

Every emulator here runs on a FakeClock with ``history`` traffic, so the data is there at once and
time only moves when a test says so.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import aiohttp
import pytest
from multidict import CIMultiDictProxy

from ivrstream.emulator.analytics import (
    entity_listing,
    job_state,
    page_slice,
    start_day_window,
)
from ivrstream.emulator.config import ClientSpec
from ivrstream.emulator.server import Emulator
from ivrstream.emulator.traffic import DIVISION_ID, FLOWS, QUEUES, Call, Outcome
from ivrstream.isotime import DAY_MS, format_interval, format_ms
from ivrstream.testing import FakeClock
from tests.conftest import EmulatorFactory
from tests.emulator.client import token

DETAILS = "/api/v2/analytics/conversations/details"
MIDNIGHT = 20_602 * DAY_MS  # 2026-05-29T00:00:00Z, in epoch ms
MINUTE = 60_000


@dataclass
class Reply:
    status: int
    body: Any
    headers: CIMultiDictProxy[str]


@dataclass
class Api:
    http: aiohttp.ClientSession
    emu: Emulator
    clock: FakeClock
    bearer: str

    @property
    def now(self) -> int:
        return round(self.clock.time() * 1000)

    @property
    def calls(self) -> list[Call]:
        return list(self.emu.world.calls)

    async def request(
        self, method: str, path: str, body: Any = None, bearer: str | None = None, **params: Any
    ) -> Reply:
        headers = {"Authorization": f"Bearer {self.bearer if bearer is None else bearer}"}
        async with self.http.request(
            method, self.emu.base_url + path, json=body, params=params, headers=headers
        ) as resp:
            payload = await resp.json() if resp.content_type == "application/json" else None
            return Reply(resp.status, payload, resp.headers)

    async def query(self, bearer: str | None = None, **body: Any) -> Reply:
        body.setdefault("interval", format_interval(self.now - MINUTE, self.now))
        return await self.request("POST", f"{DETAILS}/query", body, bearer=bearer)

    async def ids(self, **body: Any) -> list[str]:
        """Every conversation id the query returns, page by page (pages of 100)."""
        ids: list[str] = []
        for number in range(1, 1000):
            reply = await self.query(**body, paging={"pageSize": 100, "pageNumber": number})
            assert reply.status == 200, reply.body
            if not reply.body.get("conversations"):
                assert "conversations" not in reply.body  # Genesys omits empty arrays
                assert reply.body["totalHits"] == len(ids)
                return ids
            ids += [c["conversationId"] for c in reply.body["conversations"]]
        raise AssertionError("too many pages")

    async def submit(self, **body: Any) -> str:
        body.setdefault("interval", format_interval(self.now - 10 * MINUTE, self.now))
        reply = await self.request("POST", f"{DETAILS}/jobs", body)
        assert reply.status == 202, reply.body
        return str(reply.body["jobId"])

    async def results(self, job_id: str, page_size: int = 100) -> list[dict[str, Any]]:
        """Every conversation of a fulfilled job, following the cursor."""
        conversations: list[dict[str, Any]] = []
        cursor = ""
        while True:
            params = {"pageSize": page_size, **({"cursor": cursor} if cursor else {})}
            reply = await self.request("GET", f"{DETAILS}/jobs/{job_id}/results", **params)
            assert reply.status == 200, reply.body
            conversations += reply.body.get("conversations", [])
            if "cursor" not in reply.body:
                return conversations
            cursor = reply.body["cursor"]


@asynccontextmanager
async def running(
    emulator_factory: EmulatorFactory,
    http: aiohttp.ClientSession,
    clock: FakeClock | None = None,
    **config: Any,
) -> AsyncIterator[Api]:
    clock = clock or FakeClock()
    config = {"history": 600, "rate": 2, "time_scale": 30, "job_delay": 0, **config}
    async with emulator_factory(clock=clock, **config) as emu:
        yield Api(http, emu, clock, await token(http, emu))


def seen(call: Call, kind: str, now: int) -> bool:
    fact = call.fact(kind)
    return fact is not None and fact.time_ms <= now


def ended(call: Call, now: int) -> bool:
    return call.end_ms <= now


def expected_exit(call: Call) -> str:
    if call.queue is not None:
        return "TRANSFER"
    return "FLOW_DISCONNECT" if call.outcome is Outcome.CONTAINED else "DISCONNECT"


def predicate(dimension: str, value: str | None = None, operator: str = "matches") -> Any:
    return {"type": "dimension", "dimension": dimension, "operator": operator, "value": value}


def ivr(conversation: dict[str, Any]) -> dict[str, Any]:
    return next(p for p in conversation["participants"] if p["purpose"] == "ivr")


# -- authentication, limits and faults ------------------------------------------------------------

ENDPOINTS = [
    ("POST", f"{DETAILS}/query"),
    ("POST", f"{DETAILS}/jobs"),
    ("GET", f"{DETAILS}/jobs/availability"),
    ("GET", f"{DETAILS}/jobs/some-job"),
    ("DELETE", f"{DETAILS}/jobs/some-job"),
    ("GET", f"{DETAILS}/jobs/some-job/results"),
    ("GET", "/api/v2/flows"),
    ("GET", "/api/v2/routing/queues"),
]


async def test_every_endpoint_needs_a_valid_token(emulator_factory, http):
    async with running(emulator_factory, http, traffic=False) as api:
        for method, path in ENDPOINTS:
            for bearer in ("", "not-a-token"):
                reply = await api.request(method, path, {}, bearer=bearer)
                assert reply.status == 401, (method, path)
                assert reply.body["code"] == "bad.credentials"


async def test_analytics_needs_the_detail_permission(emulator_factory, http):
    client = ClientSpec(permissions=frozenset({"architect:flow:view"}))
    async with running(emulator_factory, http, traffic=False, clients=[client]) as api:
        assert (await api.query()).status == 403
        assert (await api.request("GET", "/api/v2/flows")).status == 200


async def test_interval_limits_depend_on_filters(emulator_factory, http):
    seg = [{"type": "and", "predicates": [predicate("purpose", "ivr")]}]
    conv = [{"type": "and", "predicates": [predicate("conversationEnd", operator="exists")]}]
    async with running(emulator_factory, http, traffic=False) as api:

        async def status(days: float, **filters: Any) -> int:
            end = api.now
            interval = format_interval(end - round(days * DAY_MS), end)
            return (await api.query(interval=interval, **filters)).status

        assert await status(7) == 200
        assert await status(7 + 1 / DAY_MS) == 400
        assert await status(8, segmentFilters=seg) == 200
        assert await status(31, segmentFilters=seg) == 200
        assert await status(31, conversationFilters=conv) == 200
        assert await status(32, segmentFilters=seg) == 400
        reply = await api.query(interval=format_interval(api.now, api.now - 1))
        assert reply.status == 400
        reply = await api.query(interval="yesterday")
        assert (reply.status, reply.body["code"]) == (400, "bad.request")


async def test_page_size_limits(emulator_factory, http):
    async with running(emulator_factory, http) as api:
        assert len((await api.query()).body["conversations"]) == 25  # the default page
        reply = await api.query(paging={"pageSize": 100})
        assert (reply.status, len(reply.body["conversations"])) == (200, 100)
        reply = await api.query(paging={"pageSize": 101})
        assert reply.status == 400
        assert "pageSize too large" in reply.body["message"]
        assert (await api.query(paging={"pageSize": 10, "pageNumber": 0})).status == 400
        assert (await api.query(paging={"pageSize": 0})).status == 400


async def test_injected_faults_come_after_authentication(emulator_factory, http):
    async with running(emulator_factory, http, traffic=False) as api:
        api.emu.set_faults(analytics_rate_limited=1, analytics_errors=1, retry_after=7)
        assert (await api.query(bearer="")).status == 401  # does not use up a fault
        limited = await api.query()
        assert limited.status == 429
        assert limited.headers["Retry-After"] == "7"
        assert limited.body["status"] == 429
        assert (await api.request("GET", f"{DETAILS}/jobs/availability")).status == 503
        assert (await api.query()).status == 200


# -- the details query ----------------------------------------------------------------------------


async def test_pages_partition_the_ground_truth(emulator_factory, http):
    async with running(emulator_factory, http) as api:
        now = api.now
        pages = []
        for number in range(1, 100):
            reply = await api.query(paging={"pageSize": 100, "pageNumber": number})
            assert reply.body["totalHits"] == len(api.calls)
            if not reply.body.get("conversations"):
                assert "conversations" not in reply.body
                break
            pages.append(reply.body["conversations"])
        conversations = [c for page in pages for c in page]
        assert [len(p) for p in pages[:-1]] == [100] * (len(pages) - 1)
        assert [c["conversationId"] for c in conversations] == [
            call.conversation_id for call in api.calls
        ]
        in_progress = 0
        for call, conversation in zip(api.calls, conversations, strict=True):
            assert conversation["conversationStart"] == format_ms(call.start_ms)
            if ended(call, now):
                assert conversation["conversationEnd"] == format_ms(call.end_ms)
            else:
                assert "conversationEnd" not in conversation
                in_progress += 1
            if seen(call, "flow.end", now):
                flow = ivr(conversation)["sessions"][0]["flow"]
                assert flow["exitReason"] == expected_exit(call)
                assert flow["flowId"] == call.flow.id
        assert in_progress > 0


async def test_live_results_move_with_the_clock(emulator_factory, http):
    async with running(emulator_factory, http, history=120) as api:
        before = api.now
        going = [c.conversation_id for c in api.calls if not ended(c, before)]
        first = await api.query(paging={"pageSize": 100, "pageNumber": 3})
        assert going
        await api.clock.advance(30)  # new calls start, every call going before has ended
        second = await api.query(paging={"pageSize": 100, "pageNumber": 3})
        assert second.body["totalHits"] > first.body["totalHits"]
        ends = {c["conversationId"]: c.get("conversationEnd") for c in second.body["conversations"]}
        assert all(ends[i] is not None for i in going if i in ends)
        assert any(i in ends for i in going)


async def test_query_matches_the_start_day_not_the_interval(emulator_factory, http):
    clock = FakeClock(start=(MIDNIGHT + 10 * MINUTE) / 1000)
    async with running(emulator_factory, http, clock, history=1800, rate=0.5) as api:
        today = [c.conversation_id for c in api.calls if c.start_ms >= MIDNIGHT]
        yesterday = [c.conversation_id for c in api.calls if c.start_ms < MIDNIGHT]
        assert today
        assert yesterday
        inside = format_interval(MIDNIGHT + 2 * MINUTE, MIDNIGHT + 3 * MINUTE)
        assert await api.ids(interval=inside) == today
        outside = [
            c
            for c in api.calls
            if c.start_ms >= MIDNIGHT
            and not MIDNIGHT + 2 * MINUTE <= c.start_ms < MIDNIGHT + 3 * MINUTE
        ]
        assert any(c.start_ms < MIDNIGHT + 2 * MINUTE for c in outside)
        assert any(c.start_ms >= MIDNIGHT + 3 * MINUTE for c in outside)
        # the end of an interval is exclusive: ending at midnight touches only yesterday
        assert await api.ids(interval=format_interval(MIDNIGHT - MINUTE, MIDNIGHT)) == yesterday
        both = format_interval(MIDNIGHT - MINUTE, MIDNIGHT + 1)
        assert await api.ids(interval=both) == yesterday + today


async def test_order_desc_and_order_by_conversation_end(emulator_factory, http):
    async with running(emulator_factory, http) as api:
        now, calls = api.now, api.calls
        reply = await api.query(order="desc", paging={"pageSize": 100})
        ids = [c["conversationId"] for c in reply.body["conversations"]]
        assert ids == [c.conversation_id for c in reversed(calls)][:100]

        finished = sorted((c for c in calls if ended(c, now)), key=lambda c: c.end_ms)
        going = [c.conversation_id for c in calls if not ended(c, now)]
        by_end = await api.ids(orderBy="conversationEnd")
        assert by_end == [c.conversation_id for c in finished] + going
        by_end_desc = await api.ids(orderBy="conversationEnd", order="desc")
        assert by_end_desc[: len(finished)] == [c.conversation_id for c in reversed(finished)]
        assert by_end_desc[len(finished) :] == going  # no end sorts last either way
        assert (await api.query(orderBy="segmentStart")).status == 400


def _main_ivr(call: Call, now: int) -> bool:
    return call.flow.name == "Main IVR" and seen(call, "flow.start", now)


def _billing(call: Call, now: int) -> bool:
    return call.queue is not None and call.queue.name == "Billing" and seen(call, "acd.start", now)


def _left_ivr(call: Call, now: int) -> bool:
    return seen(call, "flow.end", now) and expected_exit(call) in ("TRANSFER", "FLOW_DISCONNECT")


BILLING_ID = next(q.id for q in QUEUES if q.name == "Billing")
SALES_ID = next(q.id for q in QUEUES if q.name == "Sales")
MAIN_IVR_ID = next(f.id for f in FLOWS if f.name == "Main IVR")


@pytest.mark.parametrize(
    ("filters", "expected", "share"),
    [
        pytest.param(
            [{"type": "and", "predicates": [predicate("purpose", "ivr")]}],
            lambda call, now: seen(call, "flow.start", now),
            "some",
            id="purpose=ivr",
        ),
        pytest.param(
            [{"type": "or", "predicates": [predicate("segmentType", "ivr")]}],
            lambda call, now: seen(call, "flow.start", now),
            "some",
            id="segmentType=ivr",
        ),
        pytest.param(
            [{"type": "and", "predicates": [predicate("flowId", MAIN_IVR_ID)]}],
            _main_ivr,
            "some",
            id="flowId",
        ),
        pytest.param(
            [{"type": "and", "predicates": [predicate("flowName", "Main IVR")]}],
            _main_ivr,
            "some",
            id="flowName",
        ),
        pytest.param(
            [
                {
                    "type": "and",
                    "predicates": [predicate("purpose", "acd"), predicate("queueId", BILLING_ID)],
                }
            ],
            _billing,
            "some",
            id="purpose=acd-and-queueId",
        ),
        pytest.param(
            [
                {
                    "type": "or",
                    "predicates": [
                        predicate("exitReason", "TRANSFER"),
                        predicate("exitReason", "FLOW_DISCONNECT"),
                    ],
                }
            ],
            _left_ivr,
            "some",
            id="exitReason-or",
        ),
        pytest.param(
            [
                {
                    "type": "or",
                    "clauses": [
                        {"type": "and", "predicates": [predicate("queueId", q)]}
                        for q in (BILLING_ID, SALES_ID)
                    ],
                }
            ],
            lambda call, now: (
                call.queue is not None
                and call.queue.name in ("Billing", "Sales")
                and seen(call, "acd.start", now)
            ),
            "some",
            id="clauses",
        ),
        pytest.param(
            [
                {"type": "and", "predicates": [predicate("purpose", "customer")]},
                {"type": "and", "predicates": [predicate("segmentType", "ivr")]},
            ],
            lambda call, now: seen(call, "flow.start", now),
            "some",
            id="two-filters-may-hold-on-different-segments",
        ),
        pytest.param(
            [
                {
                    "type": "and",
                    "predicates": [
                        predicate("purpose", "customer"),
                        predicate("segmentType", "ivr"),
                    ],
                }
            ],
            lambda call, now: False,
            "none",
            id="and-holds-on-one-segment",
        ),
        pytest.param(
            [{"type": "and", "predicates": [predicate("queueId", operator="notExists")]}],
            lambda call, now: True,  # every call has a customer segment without a queue
            "all",
            id="notExists-on-some-segment",
        ),
    ],
)
async def test_segment_filters_agree_with_the_ground_truth(
    emulator_factory, http, filters, expected, share
):
    # time_scale 1: calls last minutes, so some are still before the IVR or in a queue
    async with running(emulator_factory, http, history=60, rate=10, time_scale=1) as api:
        want = [c.conversation_id for c in api.calls if expected(c, api.now)]
        shares = {"none": not want, "all": len(want) == len(api.calls)}
        assert shares.get(share, 0 < len(want) < len(api.calls))  # the case can tell
        reply = await api.query(segmentFilters=filters, paging={"pageSize": 100})
        assert reply.body["totalHits"] == len(want)
        assert [c["conversationId"] for c in reply.body.get("conversations", [])] == want[:100]


async def test_filter_dimensions_are_checked(emulator_factory, http):
    async with running(emulator_factory, http, traffic=False) as api:
        for filters in (
            {"segmentFilters": [{"type": "and", "predicates": [predicate("wrapUpCode", "x")]}]},
            {"conversationFilters": [{"type": "and", "predicates": [predicate("purpose", "x")]}]},
        ):
            reply = await api.query(**filters)
            assert reply.status == 400
            dimension = next(iter(filters.values()))[0]["predicates"][0]["dimension"]
            assert repr(dimension) in reply.body["message"]
        metric = {"type": "metric", "metric": "tFlow", "range": {"gt": 1}}
        reply = await api.query(segmentFilters=[{"type": "and", "predicates": [metric]}])
        assert reply.status == 400
        reply = await api.query(segmentFilters=[{"type": "xor", "predicates": []}])
        assert reply.status == 400


async def test_conversation_filters(emulator_factory, http):
    async with running(emulator_factory, http, history=300) as api:
        now, calls = api.now, api.calls

        async def ids(*predicates: Any, type_: str = "and") -> list[str]:
            return await api.ids(conversationFilters=[{"type": type_, "predicates": predicates}])

        done = await ids(predicate("conversationEnd", operator="exists"))
        going = await ids(predicate("conversationEnd", operator="notExists"))
        assert done == [c.conversation_id for c in calls if ended(c, now)]
        assert going == [c.conversation_id for c in calls if not ended(c, now)]
        assert done
        assert going
        one = calls[7].conversation_id
        assert await ids(predicate("conversationId", one)) == [one]
        assert await ids(predicate("divisionId", DIVISION_ID)) == [c.conversation_id for c in calls]
        assert await ids(predicate("divisionId", "elsewhere")) == []
        assert await ids(predicate("originatingDirection", "outbound")) == []
        window = (calls[10].start_ms, calls[20].start_ms)
        started = await ids(predicate("conversationStart", format_interval(*window)))
        assert started == [c.conversation_id for c in calls[10:20]]


async def test_analytics_delay_hides_recent_facts(emulator_factory, http):
    async with running(emulator_factory, http, analytics_delay=60) as api:
        visible_until = api.now - MINUTE
        visible = [c for c in api.calls if c.start_ms <= visible_until]
        assert len(visible) < len(api.calls)
        reply = await api.query(paging={"pageSize": 100, "pageNumber": len(visible) // 100 + 1})
        assert reply.body["totalHits"] == len(visible)
        last = reply.body["conversations"][-1]
        assert last["conversationId"] == visible[-1].conversation_id
        if visible[-1].end_ms <= api.now:  # ended by now, but not by what analytics sees
            assert "conversationEnd" not in last
        availability = await api.request("GET", f"{DETAILS}/jobs/availability")
        assert availability.body == {"dataAvailabilityDate": format_ms(visible_until)}


# -- details jobs ---------------------------------------------------------------------------------


async def test_job_lifecycle(emulator_factory, http):
    async with running(emulator_factory, http, job_delay=2, job_ttl=10) as api:
        submitted = api.now
        job_id = await api.submit()
        path = f"{DETAILS}/jobs/{job_id}"

        async def state() -> str:
            reply = await api.request("GET", path)
            assert reply.status == 200
            return str(reply.body["state"])

        assert await state() == "QUEUED"
        assert (await api.request("GET", f"{path}/results")).status == 400
        await api.clock.advance(1)
        assert await state() == "PENDING"
        await api.clock.advance(1)
        status = (await api.request("GET", path)).body
        assert status == {
            "state": "FULFILLED",
            "submissionDate": format_ms(submitted),
            "completionDate": format_ms(submitted + 2000),
            "expirationDate": format_ms(submitted + 10_000),
        }
        assert (await api.request("GET", f"{path}/results")).status == 200
        await api.clock.advance(8)
        assert await state() == "EXPIRED"
        assert (await api.request("GET", f"{path}/results")).status == 400

        other = await api.submit()
        assert (await api.request("DELETE", f"{DETAILS}/jobs/{other}")).status == 204
        assert (await api.request("GET", f"{DETAILS}/jobs/{other}")).body["state"] == "CANCELLED"
        assert (await api.request("GET", f"{DETAILS}/jobs/{other}/results")).status == 400


async def test_unknown_job_is_404(emulator_factory, http):
    async with running(emulator_factory, http, traffic=False) as api:
        for method, suffix in (("GET", ""), ("DELETE", ""), ("GET", "/results")):
            reply = await api.request(method, f"{DETAILS}/jobs/no-such-job{suffix}")
            assert reply.status == 404, (method, suffix)


async def test_job_results_page_by_cursor_with_attributes(emulator_factory, http):
    async with running(emulator_factory, http) as api:
        now = api.now
        job_id = await api.submit(interval=format_interval(now - 20 * MINUTE, now))
        conversations = await api.results(job_id, page_size=100)
        assert [c["conversationId"] for c in conversations] == [
            c.conversation_id for c in api.calls
        ]
        for call, conversation in zip(api.calls, conversations, strict=True):
            if seen(call, "flow.start", now):
                assert ivr(conversation)["attributes"] == call.attributes_until(now)
        assert any(ivr(c)["attributes"] for c in conversations if len(c["participants"]) > 1)

        first = await api.request("GET", f"{DETAILS}/jobs/{job_id}/results", pageSize=100)
        assert first.body["dataAvailabilityDate"] == format_ms(now)
        assert len(first.body["conversations"]) == 100
        path = f"{DETAILS}/jobs/{job_id}/results"
        assert (await api.request("GET", path, cursor="bm9wZQ")).status == 400
        assert (await api.request("GET", path, pageSize=1001)).status == 400


async def test_job_results_are_a_snapshot_of_submission(emulator_factory, http):
    async with running(emulator_factory, http) as api:
        now = api.now
        expected = [c.conversation_id for c in api.calls]
        going = {c.conversation_id for c in api.calls if not ended(c, now)}
        assert going
        job_id = await api.submit()
        await api.clock.advance(30)  # new calls arrive; every call going at submission ends
        assert len(api.calls) > len(expected)
        conversations = await api.results(job_id)
        assert [c["conversationId"] for c in conversations] == expected
        assert {c["conversationId"] for c in conversations if "conversationEnd" not in c} == going
        limited = await api.results(await api.submit(limit=5))
        assert len(limited) == 5


async def test_job_overlap_versus_start_of_day_matching(emulator_factory, http):
    clock = FakeClock(start=(MIDNIGHT + 10 * MINUTE) / 1000)
    config = {"history": 1200, "rate": 0.5, "time_scale": 5}
    async with running(emulator_factory, http, clock, **config) as api:
        now = api.now
        start, end = MIDNIGHT, MIDNIGHT + MINUTE
        overlapping = [
            c.conversation_id
            for c in api.calls
            if c.start_ms < end and (not ended(c, now) or c.end_ms > start)
        ]
        same_day = [
            c.conversation_id
            for c in api.calls
            if c.start_ms >= MIDNIGHT and c.conversation_id in overlapping
        ]
        interval = format_interval(start, end)
        by_overlap = await api.results(await api.submit(interval=interval))
        by_day = await api.results(
            await api.submit(interval=interval, startOfDayIntervalMatching=True)
        )
        assert [c["conversationId"] for c in by_overlap] == overlapping
        assert [c["conversationId"] for c in by_day] == same_day
        assert len(same_day) < len(overlapping)  # calls from before midnight still going
        assert any(c.start_ms >= end for c in api.calls)  # later calls exist and were left out
        # the details query (start-day matching) includes the later calls too
        query_ids = await api.ids(interval=interval)
        assert set(same_day) < set(query_ids)


# -- flows and queues -----------------------------------------------------------------------------


async def test_flows_listing(emulator_factory, http):
    async with running(emulator_factory, http, traffic=False) as api:
        reply = await api.request("GET", "/api/v2/flows", type="inboundcall")
        assert reply.status == 200
        assert [(f["id"], f["name"]) for f in reply.body["entities"]] == [
            (f.id, f.name) for f in FLOWS
        ]
        main = reply.body["entities"][0]
        assert main["publishedVersion"] == {"id": FLOWS[0].version}
        assert main["division"]["id"] == DIVISION_ID
        assert (reply.body["total"], reply.body["pageCount"]) == (len(FLOWS), 1)
        other = await api.request("GET", "/api/v2/flows", type="inqueuecall")
        assert (other.body["entities"], other.body["total"]) == ([], 0)
        second = await api.request("GET", "/api/v2/flows", pageSize=2, pageNumber=2)
        assert [f["id"] for f in second.body["entities"]] == [FLOWS[2].id]
        assert (second.body["pageCount"], second.body["pageNumber"]) == (2, 2)
        assert (await api.request("GET", "/api/v2/flows", pageSize="many")).status == 400


async def test_queues_listing(emulator_factory, http):
    async with running(emulator_factory, http, traffic=False) as api:
        reply = await api.request("GET", "/api/v2/routing/queues")
        assert reply.status == 200
        assert [(q["id"], q["name"]) for q in reply.body["entities"]] == [
            (q.id, q.name) for q in QUEUES
        ]
        assert {q["division"]["id"] for q in reply.body["entities"]} == {DIVISION_ID}
        assert reply.body["total"] == len(QUEUES)


# -- pure rules -----------------------------------------------------------------------------------


def test_start_day_window_treats_the_end_as_exclusive():
    assert start_day_window(MIDNIGHT - 1, MIDNIGHT) == (MIDNIGHT - DAY_MS, MIDNIGHT)
    assert start_day_window(MIDNIGHT - 1, MIDNIGHT + 1) == (MIDNIGHT - DAY_MS, MIDNIGHT + DAY_MS)


def test_job_state_moves_on_with_time():
    states = [job_state(t, delay=2, ttl=10, cancelled=False) for t in (0, 0.9, 1, 2, 9.9, 10)]
    assert states == ["QUEUED", "QUEUED", "PENDING", "FULFILLED", "FULFILLED", "EXPIRED"]
    assert job_state(0, delay=0, ttl=10, cancelled=False) == "FULFILLED"
    assert job_state(5, delay=2, ttl=10, cancelled=True) == "CANCELLED"


def test_paging_helpers():
    assert page_slice(25, 3, 100) == slice(50, 75)
    listing = entity_listing([{"id": str(i)} for i in range(5)], 2, 3)
    assert listing == {
        "entities": [{"id": "4"}],
        "pageSize": 2,
        "pageNumber": 3,
        "total": 5,
        "pageCount": 3,
    }
