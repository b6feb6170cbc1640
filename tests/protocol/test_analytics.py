"""Backfill from analytics conversation details, driven against a small in-memory Genesys.

The conversations of :mod:`ivrstream.protocol.analytics` are generators; :func:`run` answers their
requests with :class:`FakeGenesys` (paged details query, details jobs, availability) and their
sleeps with a fake clock, so nothing here waits or touches a network except the emulator tests
at the end, which drive the same code over HTTP with ``ivrstream.aio.http.drive``.
"""

from __future__ import annotations

import random
import urllib.parse
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, TypeVar

import aiohttp
import msgspec
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ivrstream.aio.http import drive
from ivrstream.config import BackfillSettings
from ivrstream.emulator.config import ClientSpec
from ivrstream.emulator.server import Emulator
from ivrstream.errors import MissingScope, RateLimited, ServiceUnavailable
from ivrstream.isotime import DAY_MS, format_ms, parse_interval, parse_ms, utc_day
from ivrstream.protocol.analytics import (
    DETAIL_PERMISSION,
    MAX_EMPTY_CURSOR_PAGES,
    MAX_JOB_INTERVAL_DAYS,
    AnalyticsPolicy,
    AnalyticsProtocolError,
    Batch,
    Interval,
    IntervalResult,
    JobFailed,
    QueryRejected,
    TokenRejected,
    WindowPlan,
    call_api,
    data_availability,
    fetch_window,
    job_interval,
    page_budget,
    plan_window,
    query_interval,
    split_interval,
)
from ivrstream.protocol.conversation import (
    Conversation,
    Finished,
    NetworkError,
    Request,
    Response,
    Sleep,
    resume,
)
from ivrstream.testing import FakeClock
from tests.conftest import EmulatorFactory
from tests.emulator.client import token

T = TypeVar("T")
Json = dict[str, Any]

API = "https://api.example.test"
DETAILS = "/api/v2/analytics/conversations/details"
MIDNIGHT = 20_602 * DAY_MS  # 2026-05-29T00:00:00Z
HOUR = 3_600_000
MINUTE = 60_000
SECOND = 1_000
DEFAULTS = BackfillSettings()
FAST = AnalyticsPolicy(poll_first=1.0, poll_cap=4.0, job_timeout=60.0)


# -- a tiny Genesys --------------------------------------------------------------------------------


def conversation(cid: str, start_ms: int) -> Json:
    return {
        "conversationId": cid,
        "conversationStart": format_ms(start_ms),
        "participants": [{"purpose": "ivr", "sessions": []}],
    }


def conversations_at(starts: Iterable[int], prefix: str = "c") -> list[Json]:
    return [conversation(f"{prefix}{i}", start) for i, start in enumerate(starts)]


def start_of(c: Json) -> int:
    return parse_ms(c["conversationStart"])


def ids(conversations: Iterable[Json]) -> list[str]:
    return [c["conversationId"] for c in conversations]


def error(status: int, code: str = "bad.request", message: str = "no", **headers: str) -> Response:
    body = {"status": status, "code": code, "message": message}
    return Response(status, headers, msgspec.json.encode(body))


def ok(body: Any, status: int = 200) -> Response:
    return Response(status, {"Content-Type": "application/json"}, msgspec.json.encode(body))


Answer = Response | NetworkError


@dataclass
class Job:
    id: str
    interval: tuple[int, int]
    matches: list[Json]
    polls: int = 0
    cancelled: bool = False


def assert_ivr_filter(body: Json) -> None:
    """One segment filter: ``purpose`` matches ``ivr`` (``matches`` is the default operator)."""
    [segment_filter] = body["segmentFilters"]
    assert segment_filter["type"] == "and"
    [predicate] = segment_filter["predicates"]
    assert predicate.pop("operator", "matches") == "matches"
    assert predicate == {"type": "dimension", "dimension": "purpose", "value": "ivr"}


@dataclass
class FakeGenesys:
    """Answers :class:`Request` objects as Genesys would, from a list of conversations.

    The query matches conversations by the UTC *day* they started (as Genesys does) and serves
    them sorted by start; jobs match from the interval's first midnight to its end and page with a
    cursor. ``scripted`` answers are given first, one per request, before anything is computed.
    """

    conversations: list[Json] = field(default_factory=list)
    max_page_size: int = 100
    scripted: list[Answer] = field(default_factory=list)
    reject_queries: set[int] = field(default_factory=set)  # query request numbers (from 0) → 400
    job_states: list[str] = field(default_factory=lambda: ["QUEUED", "PENDING", "FULFILLED"])
    job_page_size: int = 50
    job_available_ms: int | None = None  # dataAvailabilityDate on result pages
    available_ms: int | None = None  # GET …/jobs/availability
    before_query: Callable[[FakeGenesys, int], None] | None = None
    misorder: bool = False  # serve the query newest first, although asked for asc
    result_pages: Callable[[str, str], Response] | None = None  # (job id, cursor) → a page
    requests: list[Request] = field(default_factory=list)
    jobs: dict[str, Job] = field(default_factory=dict)
    queries: int = 0

    def __call__(self, request: Request) -> Answer:
        self.requests.append(request)
        assert request.headers.get("Authorization", "").startswith("Bearer ")
        if self.scripted:
            return self.scripted.pop(0)
        url = urllib.parse.urlsplit(request.url)
        assert f"{url.scheme}://{url.netloc}" == API
        path = url.path.removeprefix(DETAILS)
        params = dict(urllib.parse.parse_qsl(url.query))
        parts = path.strip("/").split("/")
        match request.method, parts:
            case "POST", ["query"]:
                return self.query(msgspec.json.decode(request.body))
            case "POST", ["jobs"]:
                return self.submit(msgspec.json.decode(request.body))
            case "GET", ["jobs", "availability"]:
                date = None if self.available_ms is None else format_ms(self.available_ms)
                return ok({"dataAvailabilityDate": date} if date else {})
            case "GET", ["jobs", job_id]:
                return self.status(job_id)
            case "DELETE", ["jobs", job_id]:
                self.jobs[job_id].cancelled = True
                return Response(204, {}, b"")
            case "GET", ["jobs", job_id, "results"]:
                return self.results(job_id, params.get("cursor", ""))
        raise AssertionError(f"unexpected request {request.method} {request.url}")

    def sorted(self) -> list[Json]:
        return sorted(self.conversations, key=start_of, reverse=self.misorder)

    def query(self, body: Json) -> Response:
        number = self.queries
        self.queries += 1
        if self.before_query is not None:
            self.before_query(self, number)
        assert body["order"] == "asc"
        assert body["orderBy"] == "conversationStart"
        assert_ivr_filter(body)
        start, end = parse_interval(body["interval"])
        assert end - start <= 31 * DAY_MS
        size, page = body["paging"]["pageSize"], body["paging"]["pageNumber"]
        assert size >= 1
        assert page >= 1
        if number in self.reject_queries or size > self.max_page_size:
            return error(400, message=f"pageSize too large: {size}")
        first, after = utc_day(start) * DAY_MS, (utc_day(end - 1) + 1) * DAY_MS
        matches = [c for c in self.sorted() if first <= start_of(c) < after]
        shown = matches[(page - 1) * size : page * size]
        return ok({"totalHits": len(matches), **({"conversations": shown} if shown else {})})

    def submit(self, body: Json) -> Response:
        assert "paging" not in body
        assert body["startOfDayIntervalMatching"] is True
        assert (body["order"], body["orderBy"]) == ("asc", "conversationStart")
        assert_ivr_filter(body)
        start, end = parse_interval(body["interval"])
        first = utc_day(start) * DAY_MS
        job = Job(f"job-{len(self.jobs) + 1}", (start, end), [])
        job.matches = [c for c in self.sorted() if first <= start_of(c) < end]
        self.jobs[job.id] = job
        return ok({"jobId": job.id}, status=202)

    def status(self, job_id: str) -> Response:
        job = self.jobs.get(job_id)
        if job is None:
            return error(404, "not.found")
        state = self.job_states[min(job.polls, len(self.job_states) - 1)]
        job.polls += 1
        body = {"state": state}
        if state == "FAILED":
            body["errorMessage"] = "the datalake is on fire"
        return ok(body)

    def results(self, job_id: str, cursor: str) -> Response:
        if self.result_pages is not None:
            return self.result_pages(job_id, cursor)
        job = self.jobs[job_id]
        offset = int(cursor.removeprefix("at-")) if cursor else 0
        chunk = job.matches[offset : offset + self.job_page_size]
        after = offset + len(chunk)
        body: Json = {"conversations": chunk} if chunk else {}
        if after < len(job.matches):
            body["cursor"] = f"at-{after}"
        if self.job_available_ms is not None:
            body["dataAvailabilityDate"] = format_ms(self.job_available_ms)
        return ok(body)

    def paths(self) -> list[str]:
        """``METHOD path?query`` of every request, for asserting the sequence."""
        out = []
        for r in self.requests:
            url = urllib.parse.urlsplit(r.url)
            out.append(
                f"{r.method} {url.path.removeprefix(DETAILS)}{'?' + url.query if url.query else ''}"
            )
        return out

    def query_pages(self) -> list[tuple[int, int]]:
        """(pageSize, pageNumber) of every details query sent."""
        pages = []
        for r in self.requests:
            if r.url.endswith("/query"):
                paging = msgspec.json.decode(r.body)["paging"]
                pages.append((paging["pageSize"], paging["pageNumber"]))
        return pages


@dataclass
class Clock:
    now: float = 1_000.0
    sleeps: list[float] = field(default_factory=list)


def run(
    conversation: Conversation[T],
    server: Callable[[Request], Answer],
    clock: Clock | None = None,
    max_steps: int = 100_000,
) -> T:
    """Drive ``conversation`` to its end: requests go to ``server``, sleeps move ``clock``."""
    clock = clock if clock is not None else Clock()
    answer: Response | float | NetworkError | None = None
    for _ in range(max_steps):
        step = resume(conversation, answer)
        if isinstance(step, Finished):
            return step.value
        if isinstance(step, Sleep):
            assert step.seconds >= 0
            clock.sleeps.append(step.seconds)
            clock.now += step.seconds
            answer = clock.now
        else:
            answer = server(step)
    raise AssertionError(f"still running after {max_steps} steps")


@dataclass
class Pages:
    """An ``on_page`` that records what it is given."""

    delivered: list[Json] = field(default_factory=list)
    watermarks: list[int] = field(default_factory=list)
    ends: list[int] = field(default_factory=list)  # len(delivered) after each page

    def __call__(self, new: list[Json], resume: int) -> None:
        self.delivered.extend(new)
        self.watermarks.append(resume)
        self.ends.append(len(self.delivered))


def query(
    server: FakeGenesys,
    interval: Interval,
    *,
    backfill: BackfillSettings = DEFAULTS,
    policy: AnalyticsPolicy | None = None,
    seed: int = 0,
    clock: Clock | None = None,
) -> tuple[IntervalResult, Pages]:
    pages = Pages()
    result = run(
        query_interval(
            interval,
            api_url=API,
            bearer="token",
            settings=backfill,
            rng=random.Random(seed),
            on_page=pages,
            policy=policy,
        ),
        server,
        clock,
    )
    return result, pages


def job(
    server: FakeGenesys,
    interval: Interval,
    *,
    policy: AnalyticsPolicy = FAST,
    clock: Clock | None = None,
) -> tuple[IntervalResult, Pages]:
    pages = Pages()
    result = run(
        job_interval(
            interval,
            api_url=API,
            bearer="token",
            settings=DEFAULTS,
            rng=random.Random(0),
            on_page=pages,
            policy=policy,
        ),
        server,
        clock,
    )
    return result, pages


def assert_each_once(delivered: list[Json], expected: Iterable[Json]) -> None:
    assert len(ids(delivered)) == len(set(ids(delivered))), "delivered twice"
    assert sorted(ids(delivered)) == sorted(ids(expected))


def inside(conversations: Iterable[Json], start_ms: int, end_ms: int) -> list[Json]:
    return [c for c in conversations if start_ms <= start_of(c) < end_ms]


# -- planning --------------------------------------------------------------------------------------


def backfill(**changes: Any) -> BackfillSettings:
    return msgspec.structs.replace(DEFAULTS, **changes)


def assert_contiguous(plan: WindowPlan) -> None:
    edges = [plan.start_ms]
    for interval in plan.intervals:
        assert interval.start_ms == edges[-1]
        assert interval.end_ms > interval.start_ms
        edges.append(interval.end_ms)
    assert edges[-1] == plan.ready_end_ms
    methods = [i.method for i in plan.intervals]
    assert methods == sorted(methods, key=lambda m: m != "jobs"), "jobs come first"


def test_the_unsettled_tail_is_deferred_never_queried() -> None:
    start, now = MIDNIGHT + 10 * HOUR, MIDNIGHT + 11 * HOUR
    plan = plan_window(start, now + MINUTE, now, DEFAULTS)
    assert plan.ready_end_ms == now - 60 * SECOND
    assert plan.deferred == (now - 60 * SECOND, now + MINUTE)
    assert plan.intervals == (Interval(start, now - 60 * SECOND, "query"),)
    assert plan.intervals[0].text == "2026-05-29T10:00:00.000Z/2026-05-29T10:59:00.000Z"
    assert not plan.uses_jobs


def test_a_settled_window_has_nothing_deferred() -> None:
    start = MIDNIGHT + 10 * HOUR
    plan = plan_window(start, start + HOUR, start + 2 * HOUR, DEFAULTS)
    assert plan.deferred is None
    assert plan.intervals == (Interval(start, start + HOUR),)


def test_a_window_entirely_too_fresh_waits_whole() -> None:
    now = MIDNIGHT + 10 * HOUR
    plan = plan_window(now - 30 * SECOND, now, now, DEFAULTS)
    assert plan.intervals == ()
    assert plan.ready_end_ms == now - 30 * SECOND
    assert plan.deferred == (now - 30 * SECOND, now)
    assert plan_window(now, now, now, DEFAULTS).intervals == ()
    with pytest.raises(ValueError, match="ends before it starts"):
        plan_window(now, now - 1, now, DEFAULTS)


@pytest.mark.parametrize(("filtered", "days"), [(True, 31), (False, 7)])
def test_query_intervals_are_cut_on_utc_midnights(filtered: bool, days: int) -> None:
    start = MIDNIGHT + 13 * HOUR + 17 * MINUTE
    end = start + 75 * DAY_MS
    plan = plan_window(start, end, end + HOUR, backfill(jobs_over=10**9), filtered=filtered)
    assert_contiguous(plan)
    assert {i.method for i in plan.intervals} == {"query"}
    for interval in plan.intervals:
        assert interval.end_ms - interval.start_ms <= days * DAY_MS
    for interval in plan.intervals[:-1]:
        assert interval.end_ms % DAY_MS == 0
    assert plan.intervals[0].end_ms == MIDNIGHT + days * DAY_MS  # the first is short of `days`
    for a, b in zip(plan.intervals, plan.intervals[1:], strict=False):
        assert utc_day(a.end_ms - 1) < utc_day(b.start_ms)  # no UTC day is read twice


def test_split_interval_below_a_day_ignores_midnights() -> None:
    start = MIDNIGHT - 90 * MINUTE
    pieces = split_interval(start, start + 3 * HOUR, HOUR, "query")
    assert [(p.start_ms - start, p.end_ms - start) for p in pieces] == [
        (0, HOUR),
        (HOUR, 2 * HOUR),
        (2 * HOUR, 3 * HOUR),
    ]
    assert split_interval(start, start, HOUR, "query") == []
    with pytest.raises(ValueError, match="positive"):
        split_interval(start, start + 1, 0, "query")


def test_windows_longer_than_jobs_over_go_to_jobs() -> None:
    start = MIDNIGHT + HOUR
    now = start + 30 * HOUR
    settings = backfill(jobs_over=6 * 3600.0, settle=0.0)
    long = plan_window(start, start + 6 * HOUR + 1, now, settings)
    assert long.intervals == (Interval(start, start + 6 * HOUR + 1, "jobs"),)
    assert long.uses_jobs
    exact = plan_window(start, start + 6 * HOUR, now, settings)
    assert exact.intervals == (Interval(start, start + 6 * HOUR, "query"),)
    # it is the settled length that counts
    fresh = plan_window(start, start + 7 * HOUR, start + 7 * HOUR, backfill(settle=3600.0))
    assert not fresh.uses_jobs


def test_jobs_stop_at_the_data_availability_date() -> None:
    start = MIDNIGHT + HOUR
    now = start + 3 * DAY_MS
    plan = plan_window(start, now, now, DEFAULTS, available_ms=now - 20 * HOUR)
    assert_contiguous(plan)
    assert plan.intervals[0] == Interval(start, now - 20 * HOUR, "jobs")
    assert all(i.method == "query" for i in plan.intervals[1:])
    assert plan.intervals[-1].end_ms == now - 60 * SECOND
    # availability later than the window: no effect
    later = plan_window(start, now, now, DEFAULTS, available_ms=now + DAY_MS)
    assert [i.method for i in later.intervals] == ["jobs"]
    assert later.intervals[0].end_ms == now - 60 * SECOND
    # what the jobs could fetch is no longer than jobs_over: everything goes to the query
    short = plan_window(start, now, now, DEFAULTS, available_ms=start + 6 * HOUR)
    assert not short.uses_jobs
    assert_contiguous(short)
    before = plan_window(start, now, now, DEFAULTS, available_ms=start - DAY_MS)
    assert not before.uses_jobs


def test_long_job_windows_are_split() -> None:
    start = MIDNIGHT + 5 * HOUR
    end = start + 70 * DAY_MS
    plan = plan_window(start, end, end + DAY_MS, DEFAULTS)
    assert_contiguous(plan)
    assert {i.method for i in plan.intervals} == {"jobs"}
    assert len(plan.intervals) == 3
    for interval in plan.intervals:
        assert interval.end_ms - interval.start_ms <= MAX_JOB_INTERVAL_DAYS * DAY_MS
    assert all(i.end_ms % DAY_MS == 0 for i in plan.intervals[:-1])


@settings(max_examples=300, deadline=None)
@given(
    start=st.integers(MIDNIGHT - 90 * DAY_MS, MIDNIGHT),
    length=st.integers(0, 90 * DAY_MS),
    now_after=st.integers(-DAY_MS, 100 * DAY_MS),
    available_after=st.none() | st.integers(-DAY_MS, 100 * DAY_MS),
    jobs_over=st.sampled_from([60.0, 3600.0, 6 * 3600.0, 10 * 86_400.0]),
    settle=st.sampled_from([0.0, 60.0, 7200.0]),
)
def test_plans_always_cover_the_settled_part(
    start: int,
    length: int,
    now_after: int,
    available_after: int | None,
    jobs_over: float,
    settle: float,
) -> None:
    end, now = start + length, start + now_after
    available = None if available_after is None else start + available_after
    settings_ = backfill(jobs_over=jobs_over, settle=settle)
    plan = plan_window(start, end, now, settings_, available_ms=available)
    assert plan.ready_end_ms == max(start, min(end, now - round(settle * 1000)))
    assert_contiguous(plan)
    jobs = [i for i in plan.intervals if i.method == "jobs"]
    queries = [i for i in plan.intervals if i.method == "query"]
    for i in jobs:
        assert i.end_ms - i.start_ms <= MAX_JOB_INTERVAL_DAYS * DAY_MS
        assert available is None or i.end_ms <= max(start, available)
    if jobs:
        assert jobs[-1].end_ms - start > jobs_over * 1000
    for i in queries:
        assert i.end_ms - i.start_ms <= 31 * DAY_MS
    for interval in queries[:-1]:
        assert interval.end_ms % DAY_MS == 0


def test_page_budget() -> None:
    assert page_budget(0, 100) == 10
    assert page_budget(250, 100) == 2 * 3 + 10
    assert page_budget(-5, 100) == 10


# -- the paged query -------------------------------------------------------------------------------

HOUR_10 = Interval(MIDNIGHT + 10 * HOUR, MIDNIGHT + 11 * HOUR)


def spread(count: int, start: int, end: int) -> list[int]:
    step = (end - start) // count
    return [start + i * step for i in range(count)]


def test_pages_follow_page_numbers_and_stop_on_a_short_page() -> None:
    server = FakeGenesys(conversations_at(spread(250, HOUR_10.start_ms, HOUR_10.end_ms)))
    result, pages = query(server, HOUR_10)
    assert server.query_pages() == [(100, 1), (100, 2), (100, 3)]
    assert ids(pages.delivered) == ids(server.conversations)  # in order, each once
    assert (result.pages, result.delivered, result.page_size) == (3, 250, 100)
    body = msgspec.json.decode(server.requests[0].body)
    assert body["interval"] == "2026-05-29T10:00:00.000Z/2026-05-29T11:00:00.000Z"
    request = server.requests[0]
    assert (request.method, request.url) == ("POST", f"{API}{DETAILS}/query")
    assert request.headers["Authorization"] == "Bearer token"
    assert request.headers["Content-Type"] == "application/json"


def test_paging_stops_when_total_hits_are_read() -> None:
    server = FakeGenesys(conversations_at(spread(200, HOUR_10.start_ms, HOUR_10.end_ms)))
    _result, pages = query(server, HOUR_10)
    assert server.query_pages() == [(100, 1), (100, 2)]  # no empty third page
    assert len(pages.delivered) == 200
    assert pages.watermarks[-1] == HOUR_10.end_ms


def test_an_empty_interval_takes_one_request() -> None:
    server = FakeGenesys()
    _result, pages = query(server, HOUR_10)
    assert server.query_pages() == [(100, 1)]
    assert pages.delivered == []
    assert pages.watermarks == [HOUR_10.end_ms]


def test_conversations_starting_outside_the_interval_are_dropped() -> None:
    before = spread(120, MIDNIGHT, HOUR_10.start_ms)  # same UTC day: the query returns them
    within = spread(30, HOUR_10.start_ms, HOUR_10.end_ms)
    after = spread(500, HOUR_10.end_ms, MIDNIGHT + DAY_MS)
    server = FakeGenesys(conversations_at([*before, *within, *after]))
    result, pages = query(server, HOUR_10)
    assert_each_once(
        pages.delivered, inside(server.conversations, HOUR_10.start_ms, HOUR_10.end_ms)
    )
    # the second page ends past the interval end: no need to read the rest of the day
    assert server.query_pages() == [(100, 1), (100, 2)]
    assert result.outside == 200 - 30
    assert result.delivered == 30


def test_the_interval_end_is_exclusive() -> None:
    starts = [HOUR_10.start_ms - 1, HOUR_10.start_ms, HOUR_10.end_ms - 1, HOUR_10.end_ms]
    server = FakeGenesys(conversations_at(starts))
    result, pages = query(server, HOUR_10)
    assert ids(pages.delivered) == ["c1", "c2"]
    assert result.outside == 2


def test_malformed_conversations_are_counted_and_dropped() -> None:
    good = conversations_at(spread(3, HOUR_10.start_ms, HOUR_10.end_ms))
    server = FakeGenesys(good)
    bad = [
        {"conversationId": "no-start"},
        {"conversationId": "bad-start", "conversationStart": "yesterday"},
        {"conversationStart": format_ms(HOUR_10.end_ms - 2)},  # no id
        {"conversationId": 7, "conversationStart": format_ms(HOUR_10.end_ms - 1)},
    ]

    def answer(request: Request) -> Answer:
        server.requests.append(request)
        return ok({"totalHits": 7, "conversations": [*good, *bad]})

    pages = Pages()
    result = run(
        query_interval(
            HOUR_10,
            api_url=API,
            bearer="token",
            settings=DEFAULTS,
            rng=random.Random(0),
            on_page=pages,
        ),
        answer,
    )
    assert ids(pages.delivered) == ids(good)
    assert result.malformed == 4


def test_duplicates_across_shifting_pages_are_dropped() -> None:
    starts = spread(150, HOUR_10.start_ms, HOUR_10.end_ms)
    server = FakeGenesys(conversations_at(starts))

    def shift(fake: FakeGenesys, number: int) -> None:
        if number == 1:  # a late conversation of the same day, before the offset
            fake.conversations.append(conversation("late", MIDNIGHT + HOUR))

    server.before_query = shift
    result, pages = query(server, HOUR_10)
    assert_each_once(pages.delivered, conversations_at(starts))
    assert result.duplicates == 1  # c99, shifted onto page 2
    assert result.outside == 0  # "late" sits before the offset: never read


def test_the_watermark_trails_the_last_start_read() -> None:
    starts = spread(250, HOUR_10.start_ms, HOUR_10.end_ms)
    server = FakeGenesys(conversations_at(starts))
    _, pages = query(server, HOUR_10)
    assert pages.watermarks == [starts[99], starts[199], HOUR_10.end_ms]


def test_a_page_longer_than_asked_is_a_protocol_error() -> None:
    starts = spread(130, HOUR_10.start_ms, HOUR_10.end_ms)
    server = FakeGenesys(conversations_at(starts))
    honest = server.query

    def generous(body: Json) -> Response:
        body["paging"]["pageSize"] *= 2  # the server pages by a size of its own
        return honest(body)

    server.query = generous  # type: ignore[method-assign]
    with pytest.raises(AnalyticsProtocolError, match="100 conversations on a page of 50"):
        query(server, HOUR_10, backfill=backfill(page_size=50))


def test_results_out_of_start_order_are_a_protocol_error() -> None:
    starts = spread(150, HOUR_10.start_ms, HOUR_10.end_ms)
    server = FakeGenesys(conversations_at(starts))
    server.misorder = True
    with pytest.raises(AnalyticsProtocolError, match="not in conversationStart order"):
        query(server, HOUR_10)


def test_a_server_repeating_one_page_is_caught() -> None:
    starts = spread(100, HOUR_10.start_ms, HOUR_10.end_ms)
    page = conversations_at(starts)
    server = FakeGenesys()

    def same(request: Request) -> Answer:
        server.requests.append(request)
        return ok({"totalHits": 10_000_000, "conversations": page})

    with pytest.raises(AnalyticsProtocolError):
        run(
            query_interval(
                HOUR_10,
                api_url=API,
                bearer="token",
                settings=DEFAULTS,
                rng=random.Random(0),
                on_page=Pages(),
            ),
            same,
        )
    assert len(server.requests) == 2


def test_400_halves_the_page_size_without_skipping_or_repeating() -> None:
    starts = spread(180, HOUR_10.start_ms, HOUR_10.end_ms)
    server = FakeGenesys(conversations_at(starts), max_page_size=30, reject_queries={3})
    result, pages = query(server, HOUR_10)
    assert ids(pages.delivered) == ids(server.conversations)
    assert result.duplicates == 0  # nothing was read twice …
    assert server.query_pages()[:6] == [
        (100, 1),  # 400: too big
        (50, 1),  # 400: too big
        (25, 1),
        (25, 2),  # 400: injected
        (12, 3),  # read 25: page 3 of 12 starts at 24, skip 1
        (12, 4),
    ]
    assert result.page_size == 12
    assert (result.pages, len(server.requests)) == (14, 17)  # … nothing skipped: 25 + 155/12


def test_400_at_the_smallest_page_is_rejected() -> None:
    server = FakeGenesys(conversations_at([HOUR_10.start_ms]), max_page_size=0)
    with pytest.raises(QueryRejected) as caught:
        query(server, HOUR_10, policy=AnalyticsPolicy(min_page_size=10))
    assert (caught.value.status, caught.value.code) == (400, "bad.request")
    assert "pageSize too large" in str(caught.value)
    assert [size for size, _ in server.query_pages()] == [100, 50, 25, 12, 10]


@pytest.mark.parametrize("status", [404, 409, 422])
def test_other_client_errors_are_rejected_at_once(status: int) -> None:
    server = FakeGenesys(scripted=[error(status, "some.code", "nope")])
    with pytest.raises(QueryRejected) as caught:
        query(server, HOUR_10)
    assert (caught.value.status, caught.value.code) == (status, "some.code")
    assert len(server.requests) == 1


@pytest.mark.parametrize(
    "body", [b"not json", b"{}", b'{"totalHits": "many"}', b'{"totalHits": 1, "conversations": 3}']
)
def test_a_malformed_page_is_a_protocol_error(body: bytes) -> None:
    server = FakeGenesys(scripted=[Response(200, {}, body)])
    with pytest.raises(AnalyticsProtocolError, match="malformed"):
        query(server, HOUR_10)


def test_a_server_that_never_stops_paging_runs_out_of_budget() -> None:
    server = FakeGenesys()
    served = 0

    def endless(request: Request) -> Answer:
        nonlocal served
        server.requests.append(request)
        size = msgspec.json.decode(request.body)["paging"]["pageSize"]
        page = conversations_at([HOUR_10.start_ms + served + i for i in range(size)], f"p{served}-")
        served += size
        return ok({"totalHits": served + 2 * size, "conversations": page})

    delivered = Pages()
    with pytest.raises(AnalyticsProtocolError, match="still paging after 16 pages"):
        run(
            query_interval(
                HOUR_10,
                api_url=API,
                bearer="token",
                settings=DEFAULTS,
                rng=random.Random(0),
                on_page=delivered,
            ),
            endless,
        )
    assert len(server.requests) == page_budget(300, 100) == 16
    assert len(delivered.delivered) == 1_600  # what was read is still handed over


# -- the property: every conversation of the interval, once, whatever the 400s ---------------------


def bulk(draw: st.DrawFn, lo: int, hi: int, most: int) -> list[int]:
    """Up to ``most`` starts in ``[lo, hi)``, many of them tied (hypothesis alone draws few)."""
    rng = random.Random(draw(st.integers(0, 2**32)))
    starts: list[int] = []
    for _ in range(draw(st.integers(0, most))):
        tie = starts and rng.random() < 0.2
        starts.append(rng.choice(starts) if tie else rng.randrange(lo, hi))
    return starts


@st.composite
def scenarios(draw: st.DrawFn) -> tuple[Interval, list[Json], set[int], int]:
    day0 = MIDNIGHT + draw(st.integers(0, 3)) * DAY_MS
    start = day0 + draw(st.integers(0, DAY_MS - 1))
    length = draw(st.integers(1, 2 * DAY_MS))
    interval = Interval(start, start + length)
    lo, hi = utc_day(start) * DAY_MS, (utc_day(start + length - 1) + 1) * DAY_MS
    near = st.integers(start - 2, start + 2) | st.integers(start + length - 2, start + length + 2)
    starts = draw(st.lists(st.integers(lo, hi - 1) | near, max_size=10))
    starts += bulk(draw, lo, hi, 250)
    rejected = set(draw(st.lists(st.integers(0, 12), max_size=6)))  # ≤ 6 halvings: 100 → 1
    page_size = draw(st.sampled_from([1, 2, 3, 7, 10, 25, 100]))
    return interval, conversations_at(starts), rejected, page_size


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(scenarios())
def test_every_conversation_of_the_interval_exactly_once(
    scenario: tuple[Interval, list[Json], set[int], int],
) -> None:
    interval, conversations, rejected, page_size = scenario
    rejected = set(sorted(rejected)[: page_size.bit_length() - 1])  # halvings before size 1
    server = FakeGenesys(conversations, reject_queries=rejected)
    result, pages = query(server, interval, backfill=backfill(page_size=page_size))
    expected = inside(conversations, interval.start_ms, interval.end_ms)
    assert_each_once(pages.delivered, expected)
    assert result.duplicates == 0
    assert pages.watermarks == sorted(pages.watermarks)
    assert pages.watermarks[-1] == interval.end_ms
    for end, watermark in zip(pages.ends, pages.watermarks, strict=True):
        # the watermark's promise: everything that started before it has been handed over
        so_far = set(ids(pages.delivered[:end]))
        assert {c["conversationId"] for c in expected if start_of(c) < watermark} <= so_far


# -- one retry rule for every request --------------------------------------------------------------

PING = Request("GET", f"{API}{DETAILS}/jobs/availability", {"Accept": "application/json"})


def call(
    answers: Iterable[Answer],
    *,
    bearer: str | Callable[[], str] = "token",
    backfill_: BackfillSettings = DEFAULTS,
    policy: AnalyticsPolicy | None = None,
    seed: int = 0,
) -> tuple[Response, FakeGenesys, Clock]:
    server = FakeGenesys(scripted=list(answers))
    clock = Clock()
    response = run(
        call_api(
            PING,
            bearer,
            backfill_,
            random.Random(seed),
            policy or AnalyticsPolicy(),
            "availability",
        ),
        server,
        clock,
    )
    return response, server, clock


@pytest.mark.parametrize(("header", "wait"), [({"Retry-After": "7"}, 7.0), ({}, 3.0)])
def test_429_waits_retry_after_with_at_most_20_percent_jitter(
    header: dict[str, str], wait: float
) -> None:
    for seed in range(50):
        limited = error(429, "too.many.requests", **header)
        response, server, clock = call([limited, limited, ok({})], seed=seed)
        assert response.status == 200
        assert len(server.requests) == 3
        assert len(clock.sleeps) == 2
        assert all(wait <= s <= wait * 1.2 for s in clock.sleeps), clock.sleeps
    assert call([error(429, **header), ok({})], seed=1)[2].sleeps == (
        call([error(429, **header), ok({})], seed=1)[2].sleeps
    )


def test_429_asking_too_long_gives_up_at_once() -> None:
    with pytest.raises(RateLimited) as caught:
        call([error(429, **{"Retry-After": "181"})])
    assert caught.value.retry_after == 181.0
    assert "max_retry_after" in str(caught.value)
    # the limit is a setting; exactly at it still waits
    response, _, clock = call(
        [error(429, **{"Retry-After": "30"}), ok({})], backfill_=backfill(max_retry_after=30.0)
    )
    assert response.status == 200
    assert 30 <= clock.sleeps[0] <= 36


def test_429_forever_runs_out() -> None:
    answers = [error(429, **{"Retry-After": "1"}) for _ in range(10)]
    with pytest.raises(RateLimited, match="rate limited 4 times"):
        call(answers, policy=AnalyticsPolicy(max_rate_limited=3))


@pytest.mark.parametrize("failure", [error(503), error(500), error(502), NetworkError("reset")])
def test_server_errors_back_off_then_give_up(failure: Answer) -> None:
    policy = AnalyticsPolicy(max_attempts=5, backoff_base=1.0, backoff_cap=4.0)
    response, server, clock = call(
        [failure, failure, ok({"dataAvailabilityDate": None})], policy=policy
    )
    assert response.status == 200
    assert len(server.requests) == 3
    assert 0 <= clock.sleeps[0] <= 1
    assert 0 <= clock.sleeps[1] <= 2
    server, clock = FakeGenesys(scripted=[failure] * 10), Clock()
    with pytest.raises(ServiceUnavailable, match="5"):
        run(
            call_api(PING, "token", DEFAULTS, random.Random(3), policy, "availability"),
            server,
            clock,
        )
    assert len(server.requests) == 5  # max_attempts tries
    assert len(clock.sleeps) == 4
    ceilings = [1, 2, 4, 4]
    assert all(0 <= s <= c for s, c in zip(clock.sleeps, ceilings, strict=True))


def test_backoff_is_full_jitter() -> None:
    policy = AnalyticsPolicy(max_attempts=3, backoff_base=10.0, backoff_cap=10.0)
    firsts = []
    for seed in range(200):
        _, _, clock = call([error(503), ok({})], policy=policy, seed=seed)
        firsts.append(clock.sleeps[0])
    assert min(firsts) < 1.0
    assert max(firsts) > 9.0


def test_401_is_retried_once_when_the_token_was_refreshed() -> None:
    tokens = iter(["new", "new", "new"])
    current = ["old"]

    def bearer() -> str:
        return current[0]

    server = FakeGenesys(scripted=[error(401, "bad.credentials"), ok({})])

    def refreshing(request: Request) -> Answer:
        answer = server(request)
        current[0] = next(tokens)  # the shell refreshes the token after the 401
        return answer

    response = run(
        call_api(PING, bearer, DEFAULTS, random.Random(0), AnalyticsPolicy(), "availability"),
        refreshing,
    )
    assert response.status == 200
    assert [r.headers["Authorization"] for r in server.requests] == ["Bearer old", "Bearer new"]


def test_401_with_the_same_token_is_rejected() -> None:
    with pytest.raises(TokenRejected, match="refresh"):
        call([error(401, "bad.credentials"), ok({})])
    # a changing token is retried only once
    counter = iter(range(100))
    with pytest.raises(TokenRejected):
        call([error(401), error(401), ok({})], bearer=lambda: f"t{next(counter)}")


def test_403_names_the_missing_permission() -> None:
    body = error(403, "missing.any.permissions", "You are missing the following permission")
    with pytest.raises(MissingScope, match=DETAIL_PERMISSION) as caught:
        call([body])
    assert "missing.any.permissions" in str(caught.value)


def test_other_answers_are_the_callers_to_read() -> None:
    for status in (200, 202, 204, 400, 404):
        assert call([Response(status, {}, b"")])[0].status == status


# -- jobs ------------------------------------------------------------------------------------------

DAY_2 = Interval(MIDNIGHT + 6 * HOUR, MIDNIGHT + 2 * DAY_MS + 6 * HOUR, "jobs")


def test_a_job_is_submitted_polled_and_read_by_cursor() -> None:
    starts = spread(120, DAY_2.start_ms - 5 * HOUR, DAY_2.end_ms + HOUR)
    server = FakeGenesys(conversations_at(starts), job_page_size=60)
    clock = Clock()
    result, pages = job(server, DAY_2, clock=clock)
    assert server.paths() == [
        "POST /jobs",
        "GET /jobs/job-1",
        "GET /jobs/job-1",
        "GET /jobs/job-1",
        "GET /jobs/job-1/results",
        "GET /jobs/job-1/results?cursor=at-60",
    ]
    assert_each_once(pages.delivered, inside(server.conversations, DAY_2.start_ms, DAY_2.end_ms))
    assert pages.watermarks == [DAY_2.start_ms, DAY_2.end_ms]  # moves only when the job is done
    assert result.job_id == "job-1"
    assert result.pages == 2
    assert result.outside > 0
    assert [round(s) for s in clock.sleeps] == [1, 2]  # capped exponential polling
    assert all(1 <= s / p <= 1.1 for s, p in zip(clock.sleeps, [1, 2], strict=True))
    body = msgspec.json.decode(server.requests[0].body)
    assert body["interval"] == DAY_2.text


def test_polling_waits_are_capped() -> None:
    server = FakeGenesys(job_states=["QUEUED"] * 8 + ["FULFILLED"])
    clock = Clock()
    job(server, DAY_2, clock=clock)
    assert [round(s) for s in clock.sleeps] == [1, 2, 4, 4, 4, 4, 4, 4]


@pytest.mark.parametrize("state", ["FAILED", "CANCELLED", "EXPIRED"])
def test_a_job_that_ends_badly_fails(state: str) -> None:
    server = FakeGenesys(job_states=["QUEUED", state])
    with pytest.raises(JobFailed) as caught:
        job(server, DAY_2)
    assert (caught.value.job_id, caught.value.state) == ("job-1", state)
    if state == "FAILED":
        assert "the datalake is on fire" in str(caught.value)


def test_a_vanished_job_fails() -> None:
    server = FakeGenesys()
    original = server.submit

    def lose(body: Json) -> Response:
        original(body)
        return ok({"jobId": "job-gone"}, status=202)

    server.submit = lose  # type: ignore[method-assign]
    with pytest.raises(JobFailed) as caught:
        job(server, DAY_2)
    assert caught.value.state == "NOT_FOUND"


def test_unreadable_results_fail_the_job() -> None:
    server = FakeGenesys(job_states=["FULFILLED"])
    server.result_pages = lambda job_id, cursor: error(400, "bad.request", "job is EXPIRED")
    with pytest.raises(JobFailed) as caught:
        job(server, DAY_2)
    assert caught.value.state == "UNREADABLE"
    assert "job is EXPIRED" in str(caught.value)


def test_a_job_that_takes_too_long_is_cancelled() -> None:
    server = FakeGenesys(job_states=["PENDING"])
    clock = Clock()
    with pytest.raises(ServiceUnavailable, match="cancelled"):
        job(server, DAY_2, clock=clock, policy=FAST)
    assert server.paths()[-1] == "DELETE /jobs/job-1"
    assert server.jobs["job-1"].cancelled
    assert FAST.job_timeout <= sum(clock.sleeps) <= FAST.job_timeout * 1.1 + FAST.poll_cap
    assert all(s <= FAST.poll_cap * 1.1 for s in clock.sleeps)


def test_a_failed_cancel_does_not_hide_the_timeout() -> None:
    server = FakeGenesys(job_states=["PENDING"])

    def unreachable_on_delete(request: Request) -> Answer:
        if request.method == "DELETE":
            server.requests.append(request)
            return NetworkError("gone")
        return server(request)

    with pytest.raises(ServiceUnavailable, match="cancelled"):
        run(
            job_interval(
                DAY_2,
                api_url=API,
                bearer="token",
                settings=DEFAULTS,
                rng=random.Random(0),
                on_page=Pages(),
                policy=FAST,
            ),
            unreachable_on_delete,
        )
    assert server.requests[-1].method == "DELETE"


def test_a_repeated_cursor_is_a_protocol_error() -> None:
    server = FakeGenesys(conversations_at(spread(10, DAY_2.start_ms, DAY_2.end_ms)))
    server.result_pages = lambda job_id, cursor: ok(
        {"conversations": server.conversations[:2], "cursor": "same"}
    )
    with pytest.raises(AnalyticsProtocolError, match="cursor repeats"):
        job(server, DAY_2)
    assert server.paths()[-2:] == ["GET /jobs/job-1/results", "GET /jobs/job-1/results?cursor=same"]


def test_endless_empty_result_pages_are_a_protocol_error() -> None:
    server = FakeGenesys()
    count = iter(range(1000))
    server.result_pages = lambda job_id, cursor: ok({"cursor": f"c{next(count)}"})
    with pytest.raises(AnalyticsProtocolError, match="empty pages"):
        job(server, DAY_2)
    assert server.paths().count("GET /jobs/job-1/results") == 1
    assert len([p for p in server.paths() if "/results" in p]) == MAX_EMPTY_CURSOR_PAGES


def test_job_results_stop_at_their_data_availability_date() -> None:
    cut = DAY_2.start_ms + DAY_MS
    server = FakeGenesys(
        conversations_at(spread(100, DAY_2.start_ms, DAY_2.end_ms)), job_available_ms=cut
    )
    result, pages = job(server, DAY_2)
    assert_each_once(pages.delivered, inside(server.conversations, DAY_2.start_ms, cut))
    assert result.available_ms == cut
    assert pages.watermarks[-1] == cut


def availability() -> Conversation[int | None]:
    return data_availability(api_url=API, bearer="token", settings=DEFAULTS, rng=random.Random(0))


@pytest.mark.parametrize("date", ["soon", "2026-13-45T00:00:00Z"])
def test_a_malformed_availability_date_is_a_protocol_error(date: str) -> None:
    server = FakeGenesys(job_states=["FULFILLED"])
    server.result_pages = lambda job_id, cursor: ok({"dataAvailabilityDate": date})
    with pytest.raises(AnalyticsProtocolError, match="dataAvailabilityDate"):
        job(server, DAY_2)
    server = FakeGenesys(scripted=[ok({"dataAvailabilityDate": date})])
    with pytest.raises(AnalyticsProtocolError, match="dataAvailabilityDate"):
        run(availability(), server)


def test_data_availability() -> None:
    server = FakeGenesys(available_ms=MIDNIGHT + 5)
    assert run(availability(), server) == MIDNIGHT + 5
    assert server.paths() == ["GET /jobs/availability"]
    assert run(availability(), FakeGenesys()) is None
    with pytest.raises(QueryRejected):
        run(availability(), FakeGenesys(scripted=[error(404, "not.found")]))


# -- a whole window --------------------------------------------------------------------------------


@dataclass
class Collector:
    """A ``deliver`` that keeps every batch and can crash after ``crash_after`` of them."""

    batches: list[Batch] = field(default_factory=list)
    crash_after: int | None = None

    def __call__(self, batch: Batch) -> None:
        if self.crash_after is not None and len(self.batches) >= self.crash_after:
            raise Crash
        self.batches.append(batch)

    @property
    def delivered(self) -> list[Json]:
        return [c for b in self.batches for c in b.conversations]

    @property
    def resume_ms(self) -> int | None:
        return self.batches[-1].progress.resume_ms if self.batches else None


class Crash(Exception):
    pass


def window(
    server: FakeGenesys,
    start: int,
    end: int,
    now: int,
    *,
    deliver: Callable[[Batch], None] | None = None,
    backfill_: BackfillSettings = DEFAULTS,
    check_availability: bool = True,
    bearer: str | Callable[[], str] = "token",
) -> Any:
    return run(
        fetch_window(
            start,
            end,
            now,
            api_url=API,
            bearer=bearer,
            settings=backfill_,
            rng=random.Random(0),
            deliver=deliver,
            policy=FAST,
            check_availability=check_availability,
        ),
        server,
    )


def test_a_short_window_is_paged_and_reported() -> None:
    start, now = MIDNIGHT + 10 * HOUR, MIDNIGHT + 12 * HOUR
    server = FakeGenesys(conversations_at(spread(450, MIDNIGHT, now)))
    collector = Collector()
    result = window(server, start, now, now, deliver=collector)
    ready = now - 60 * SECOND
    assert_each_once(collector.delivered, inside(server.conversations, start, ready))
    assert result.delivered == len(collector.delivered)
    assert result.resume_ms == ready
    assert result.deferred == (ready, now)
    assert result.conversations == []  # they went to deliver
    progress = [b.progress for b in collector.batches]
    assert [p.pages for p in progress] == list(range(1, len(progress) + 1))
    assert [p.resume_ms for p in progress] == sorted(p.resume_ms for p in progress)
    assert progress[-1].resume_ms == ready
    assert progress[-1].fraction == 1.0
    assert 0.0 <= progress[0].fraction < 1.0
    assert progress[-1].conversations == len(collector.delivered)
    assert {(p.intervals_done, p.intervals_total) for p in progress} == {(0, 1)}
    assert "GET /jobs/availability" not in server.paths()


def test_without_deliver_the_conversations_are_collected() -> None:
    start, now = MIDNIGHT + 10 * HOUR, MIDNIGHT + 12 * HOUR
    server = FakeGenesys(conversations_at(spread(150, start, now)))
    result = window(server, start, now - HOUR, now)
    assert_each_once(result.conversations, inside(server.conversations, start, now - HOUR))
    assert result.deferred is None


def test_a_long_window_uses_jobs_then_the_query_for_what_jobs_cannot_see() -> None:
    start = MIDNIGHT - 3 * DAY_MS + 7 * HOUR
    now = MIDNIGHT + 15 * HOUR
    available = MIDNIGHT + 2 * HOUR
    server = FakeGenesys(
        conversations_at(spread(900, start - DAY_MS, now)),
        available_ms=available,
        job_page_size=100,
    )
    collector = Collector()
    result = window(server, start, now, now, deliver=collector)
    assert_each_once(collector.delivered, inside(server.conversations, start, now - MINUTE))
    assert server.paths()[:2] == ["GET /jobs/availability", "POST /jobs"]
    assert [i.method for i in result.plan.intervals] == ["jobs", "query"]
    assert result.plan.intervals[0].end_ms == available
    total = {b.progress.intervals_total for b in collector.batches}
    assert total == {2}
    assert collector.batches[-1].progress.intervals_done == 1
    jobs = [b for b in collector.batches if b.progress.interval == result.plan.intervals[0]]
    assert [b.progress.resume_ms for b in jobs[:-1]] == [start] * (len(jobs) - 1)
    assert jobs[-1].progress.resume_ms == available


def test_a_job_whose_data_stops_short_hands_the_rest_to_the_query() -> None:
    start = MIDNIGHT - 3 * DAY_MS + 7 * HOUR
    now = MIDNIGHT + 15 * HOUR
    short = MIDNIGHT - DAY_MS - 3 * HOUR  # the results' dataAvailabilityDate
    server = FakeGenesys(
        conversations_at(spread(600, start - DAY_MS, now)),
        job_available_ms=short,
        job_page_size=1000,
    )
    collector = Collector()
    result = window(server, start, now, now, deliver=collector, check_availability=False)
    assert_each_once(collector.delivered, inside(server.conversations, start, now - MINUTE))
    assert "GET /jobs/availability" not in server.paths()
    plan = result.plan
    assert_contiguous(plan)
    assert plan.intervals[0] == Interval(start, short, "jobs")
    assert {i.method for i in plan.intervals[1:]} == {"query"}
    assert result.intervals[0].available_ms == short
    assert result.resume_ms == now - MINUTE


def test_a_job_with_no_data_at_all_leaves_everything_to_the_query() -> None:
    start = MIDNIGHT - 2 * DAY_MS
    now = MIDNIGHT
    server = FakeGenesys(conversations_at(spread(300, start, now)), job_available_ms=start - DAY_MS)
    result = window(server, start, now, now, check_availability=False)
    assert_each_once(result.conversations, inside(server.conversations, start, now - MINUTE))
    assert {i.method for i in result.plan.intervals} == {"query"}


def resumed_until_done(
    server: FakeGenesys,
    start: int,
    end: int,
    now: int,
    crashes: Iterable[int],
    backfill_: BackfillSettings = DEFAULTS,
) -> tuple[list[Json], list[int]]:
    """Fetch the window, crashing after each count of batches in ``crashes`` and resuming from
    the last persisted watermark; returns everything delivered and the resume points."""
    delivered: list[Json] = []
    resumes = [start]
    for crash_after in [*crashes, None]:
        collector = Collector(crash_after=crash_after)
        try:
            window(server, resumes[-1], end, now, deliver=collector, backfill_=backfill_)
        except Crash:
            pass
        else:
            assert crash_after is None or crash_after >= len(collector.batches)
        # the watermark's promise, checked at every batch
        so_far = {c["conversationId"] for c in delivered}
        for batch in collector.batches:
            so_far |= set(ids(batch.conversations))
            due = inside(server.conversations, start, batch.progress.resume_ms)
            assert set(ids(due)) <= so_far
        delivered += collector.delivered
        if collector.resume_ms is not None:
            resumes.append(collector.resume_ms)
    return delivered, resumes


@pytest.mark.parametrize("crashes", [[0], [1], [2, 2], [3], [1, 1, 1, 1], [5, 0, 2]])
def test_resuming_after_a_crash_loses_nothing(crashes: list[int]) -> None:
    start, now = MIDNIGHT + 8 * HOUR, MIDNIGHT + 12 * HOUR
    starts = spread(700, MIDNIGHT, now)
    starts[495:505] = [starts[495]] * 10  # ties across the boundary of query pages 5 and 6
    server = FakeGenesys(conversations_at(starts))
    delivered, resumes = resumed_until_done(server, start, now, now, crashes)
    expected = inside(server.conversations, start, now - MINUTE)
    assert starts[495] in {start_of(c) for c in expected}
    assert set(ids(delivered)) == set(ids(expected))
    assert resumes == sorted(resumes)
    assert resumes[-1] == now - MINUTE
    # only conversations starting exactly at a resume point may come twice
    twice = {c for c in ids(delivered) if ids(delivered).count(c) > 1}
    starts_twice = {start_of(c) for c in server.conversations if c["conversationId"] in twice}
    assert starts_twice <= set(resumes)


@pytest.mark.parametrize("crashes", [[0], [1], [3, 1], [4, 4]])
def test_resuming_a_window_with_jobs_loses_nothing(crashes: list[int]) -> None:
    start = MIDNIGHT - 2 * DAY_MS
    now = MIDNIGHT + 10 * HOUR
    server = FakeGenesys(
        conversations_at(spread(800, start - HOUR, now)),
        available_ms=MIDNIGHT + 2 * HOUR,
        job_page_size=200,
    )
    delivered, resumes = resumed_until_done(server, start, now, now, crashes)
    assert set(ids(delivered)) == set(ids(inside(server.conversations, start, now - MINUTE)))
    assert resumes[-1] == now - MINUTE


def test_a_rejected_token_is_resumed_after_a_refresh() -> None:
    start, now = MIDNIGHT + 8 * HOUR, MIDNIGHT + 12 * HOUR
    server = FakeGenesys(conversations_at(spread(500, start, now)))

    def expire_on_third(request: Request) -> Answer:
        if len(server.requests) == 2:
            server.scripted.append(error(401, "bad.credentials"))
        return server(request)

    collector = Collector()
    with pytest.raises(TokenRejected):
        run(
            fetch_window(
                start,
                now,
                now,
                api_url=API,
                bearer="token",
                settings=DEFAULTS,
                rng=random.Random(0),
                deliver=collector,
            ),
            expire_on_third,
        )
    assert len(collector.batches) == 2
    rest = Collector()
    window(server, collector.resume_ms or start, now, now, deliver=rest)
    delivered = collector.delivered + rest.delivered
    assert set(ids(delivered)) == set(ids(inside(server.conversations, start, now - MINUTE)))


@st.composite
def two_days(draw: st.DrawFn) -> list[int]:
    return bulk(draw, MIDNIGHT - DAY_MS, MIDNIGHT + DAY_MS, 300)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    starts=two_days(),
    window_start=st.integers(MIDNIGHT - DAY_MS, MIDNIGHT + DAY_MS),
    length=st.integers(0, DAY_MS),
    page_size=st.sampled_from([1, 3, 10, 50]),
    crashes=st.lists(st.integers(0, 6), max_size=3),
    rejected=st.sets(st.integers(0, 30), max_size=3),
)
def test_windows_resume_to_exactly_their_conversations(
    starts: list[int],
    window_start: int,
    length: int,
    page_size: int,
    crashes: list[int],
    rejected: set[int],
) -> None:
    now = window_start + length + 60 * SECOND
    server = FakeGenesys(conversations_at(starts))
    server.reject_queries = set(sorted(rejected)[: page_size.bit_length() - 1])
    delivered, resumes = resumed_until_done(
        server,
        window_start,
        now,
        now,
        crashes,
        backfill(page_size=page_size, jobs_over=12 * 3600.0),
    )
    expected = inside(server.conversations, window_start, now - MINUTE)
    assert set(ids(delivered)) == set(ids(expected))
    assert resumes[-1] == max(window_start, now - MINUTE)


# -- against the emulator, over HTTP ---------------------------------------------------------------


class SteppingClock:
    """The emulator's FakeClock, moved forward by exactly what the backfill sleeps."""

    def __init__(self, clock: FakeClock) -> None:
        self.clock = clock
        self.slept = 0.0

    def time(self) -> float:
        return self.clock.time()

    def monotonic(self) -> float:
        return self.clock.monotonic()

    async def sleep(self, seconds: float) -> None:
        self.slept += seconds
        await self.clock.advance(seconds)


def ivr_calls(emu: Emulator, start: int, end: int, now: int) -> set[str]:
    """What the emulator's analytics can show as IVR conversations that started in the window."""
    return {
        call.conversation_id
        for call in emu.world.calls_started_between(start, end)
        if (flow := call.fact("flow.start")) is not None and flow.time_ms <= now
    }


@pytest.mark.parametrize("use_jobs", [False, True])
async def test_a_window_from_the_emulator(
    emulator_factory: EmulatorFactory, http: aiohttp.ClientSession, use_jobs: bool
) -> None:
    fake = FakeClock()
    clock = SteppingClock(fake)
    config = {"history": 600, "rate": 1, "time_scale": 30, "max_page_size": 40}
    async with emulator_factory(clock=fake, job_delay=3, job_page_size=50, **config) as emu:
        bearer = await token(http, emu)
        emu.set_faults(analytics_rate_limited=1, analytics_errors=1, retry_after=2)
        now = round(fake.time() * 1000)
        start = now - 8 * MINUTE
        settings_ = backfill(jobs_over=300.0 if use_jobs else 3600.0)
        collector = Collector()
        result = await drive(
            fetch_window(
                start,
                now,
                now,
                api_url=emu.base_url,
                bearer=bearer,
                settings=settings_,
                rng=random.Random(7),
                deliver=collector,
            ),
            http,
            clock,
        )
        ready = now - MINUTE
        expected = ivr_calls(emu, start, ready, now)
        assert len(expected) > 100
        assert_each_once(collector.delivered, [{"conversationId": c} for c in expected])
        assert result.resume_ms == ready
        assert result.deferred == (ready, now)
        assert result.plan.uses_jobs is use_jobs
        if use_jobs:
            [interval] = result.intervals
            assert interval.pages > 1
            assert interval.job_id
        else:
            assert result.intervals[0].page_size == 25  # 100 and 50 answered 400
        assert emu.faults.settings.analytics_rate_limited == 0  # both faults were met …
        assert emu.faults.settings.analytics_errors == 0
        assert clock.slept >= 2.0  # … and waited out


async def test_the_emulator_refuses_a_client_without_the_permission(
    emulator_factory: EmulatorFactory, http: aiohttp.ClientSession
) -> None:
    client = ClientSpec(permissions=frozenset({"architect:flow:view"}))
    async with emulator_factory(clock=FakeClock(), traffic=False, clients=[client]) as emu:
        bearer = await token(http, emu)
        now = round(emu.clock.time() * 1000)
        with pytest.raises(MissingScope, match=DETAIL_PERMISSION):
            await drive(
                fetch_window(
                    now - HOUR,
                    now,
                    now,
                    api_url=emu.base_url,
                    bearer=bearer,
                    settings=DEFAULTS,
                    rng=random.Random(0),
                ),
                http,
                SteppingClock(FakeClock()),
            )
        with pytest.raises(TokenRejected):
            await drive(
                fetch_window(
                    now - HOUR,
                    now,
                    now,
                    api_url=emu.base_url,
                    bearer="expired",
                    settings=DEFAULTS,
                    rng=random.Random(0),
                ),
                http,
                SteppingClock(FakeClock()),
            )
