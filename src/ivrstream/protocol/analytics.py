"""Filling gaps from analytics conversation details, as request/response conversations.

Rules this module keeps:

- **Planning** (:func:`plan_window`, pure): ``[start, end)`` is cut at ``now - settle``; the part
  after that is handed back (:attr:`WindowPlan.deferred`) to be fetched later, never queried. The
  settled part goes to the async jobs API when it is longer than ``jobs_over`` — only up to the
  jobs' ``dataAvailabilityDate`` when it is known, and only if that part is still longer than
  ``jobs_over`` — and the rest to the paged details query. Query intervals are at most
  :data:`MAX_INTERVAL_FILTERED_DAYS` long (:data:`MAX_INTERVAL_UNFILTERED_DAYS` without a filter;
  we always send one), job intervals at most :data:`MAX_JOB_INTERVAL_DAYS`. Intervals are
  contiguous, in time order, jobs first, and end on UTC midnights where the limit allows (results
  match by start *day*, so a day shared by two intervals would be read twice).
- **Paged query** (:func:`query_interval`): ``order=asc``, ``orderBy=conversationStart``, a
  segment filter ``purpose = settings.segment_filter_purpose``. Pages continue until one comes
  back shorter than the page size, the offset reaches ``totalHits``, or (:data:`STOP_PAST_END`)
  a page ends with a conversation that started at or after the interval end. The offset is the
  number of conversations already read: ``pageNumber = read // pageSize + 1`` and the first
  ``read % pageSize`` conversations of that page are skipped, so halving the page size on HTTP
  400 neither skips nor repeats anything. ``order``, ``orderBy`` and ``paging`` are always
  spelled out, defaults included. A page longer than asked is an
  :class:`AnalyticsProtocolError` (the offsets would be wrong), and so is a server that never
  ends the paging (pages are budgeted, :func:`page_budget`), not an endless loop.
- **Jobs** (:func:`job_interval`): submit, poll with capped exponential waits until ``FULFILLED``
  (``FAILED``/``CANCELLED``/``EXPIRED`` → :class:`JobFailed`; waiting longer than
  ``policy.job_timeout`` → the job is cancelled and :class:`ServiceUnavailable` raised), then
  follow ``cursor`` until it is absent. A repeated cursor is a protocol error.
- **Every conversation** delivered has a ``conversationStart`` inside its interval (results can
  lie outside: the query matches by start day, jobs by lifetime overlap) and is delivered once
  per interval (duplicates across pages are dropped by ``conversationId``). Intervals do not
  overlap, so a window delivers each conversation once.
- **Every request** goes through one retry rule (:func:`call_api`): 429 → sleep ``Retry-After``
  (``policy.default_retry_after`` if absent), stretched by up to 20 % of jitter, unless it asks
  for more than ``settings.max_retry_after`` → :class:`RateLimited` at once; 5xx and network
  errors → full-jitter exponential backoff (``policy.backoff_base``/``backoff_cap``), at most
  ``policy.max_attempts`` tries → :class:`ServiceUnavailable`; 401 → retried once if the bearer
  callable now returns a different token (the shell refreshed it), else :class:`TokenRejected`;
  403 → :class:`MissingScope`. Randomness comes only from the ``rng`` argument.
- **Progress and resuming**: after every page the caller's ``deliver`` receives a :class:`Batch`
  (new conversations and a :class:`Progress`). ``Progress.resume_ms`` is a watermark: every
  conversation that started before it has been delivered. Persist it together with the batch;
  after a crash, an error or :class:`TokenRejected` (refresh the token first), call
  :func:`fetch_window` again from ``resume_ms``. Within a paged interval the watermark is the
  start of the last conversation read (asc order), within a job it moves only when the job is
  done. Resuming may deliver again the conversations that started exactly at ``resume_ms``
  (at-least-once; the journal deduplicates by event id).

Unconfirmed Genesys behaviours this module assumes, and where each is tuned:

- The query's maximum ``pageSize`` is unknown: we start at ``settings.page_size`` (100) and read
  any 400 as "page too big", halving down to ``policy.min_page_size`` before giving up with
  :class:`QueryRejected` (a 400 for another reason costs a few extra requests).
- ``totalHits`` is approximate while an interval is live, but does not more than double while
  we page: the budget is :data:`PAGE_BUDGET_FACTOR` × the pages the *first* page's
  ``totalHits`` implies (at the current page size) + :data:`PAGE_BUDGET_SLACK`.
- Results really are sorted by ``conversationStart`` as asked: :data:`STOP_PAST_END` (stop once
  past the interval) and the in-interval resume watermark rely on it, so a start that goes back
  (within a page or across pages) is an :class:`AnalyticsProtocolError`, not a silent loss.
- The jobs API takes intervals up to :data:`MAX_JOB_INTERVAL_DAYS` (no limit is documented) and
  honours ``startOfDayIntervalMatching`` (:data:`JOB_START_OF_DAY_MATCHING`; we filter by start
  client-side either way).
- A 429 without ``Retry-After`` means ``policy.default_retry_after`` (3 s, as the SDKs assume).
- Jobs may be polled every ``policy.poll_cap`` seconds (no polling rate is documented) and are
  fulfilled within ``policy.job_timeout``.
- ``dataAvailabilityDate`` (availability endpoint and every results page) bounds what a job saw:
  conversations starting after it are left to the paged query (:func:`fetch_window` re-plans).
"""

from __future__ import annotations

import contextlib
import random
import urllib.parse
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from functools import partial
from typing import Any, Literal, TypeVar

import msgspec

from ivrstream.config import BackfillSettings
from ivrstream.errors import (
    IvrstreamError,
    MissingScope,
    RateLimited,
    ServiceUnavailable,
    TransientError,
)
from ivrstream.isotime import DAY_MS, TimeFormatError, format_interval, format_ms, parse_ms
from ivrstream.models import (
    ApiError,
    AsyncConversationQuery,
    AsyncQueryResponse,
    AsyncQueryStatus,
    ConversationAsyncQueryResponse,
    ConversationQuery,
    ConversationQueryResponse,
    DataAvailability,
    Filter,
    PagingSpec,
    Predicate,
)
from ivrstream.protocol.backoff import ceiling, jittered
from ivrstream.protocol.conversation import (
    Conversation,
    NetworkError,
    Request,
    Response,
    Sleep,
    retry_after_seconds,
)

T = TypeVar("T")
Json = dict[str, Any]
Method = Literal["query", "jobs"]
Bearer = str | Callable[[], str]
"""The access token, or a callable returning the current one (called for every request)."""

DETAILS_PATH = "/api/v2/analytics/conversations/details"
DETAIL_PERMISSION = "analytics:conversationDetail:view"
MAX_INTERVAL_UNFILTERED_DAYS = 7  # documented: a query without filters spans at most 7 days
MAX_INTERVAL_FILTERED_DAYS = 31  # documented: with a filter, 31 days
MAX_JOB_INTERVAL_DAYS = 31  # assumed (undocumented): jobs are cut like filtered queries
PAGE_BUDGET_FACTOR = 2  # assumed: totalHits may grow, but not past twice what it said
PAGE_BUDGET_SLACK = 10
STOP_PAST_END = True  # assumed: results are sorted by conversationStart as asked
JOB_START_OF_DAY_MATCHING = True  # assumed honoured; only trims what we filter out anyway
MAX_TOKEN_RETRIES = 1  # 401s retried per request when the bearer callable changed its token
MAX_EMPTY_CURSOR_PAGES = 10  # job result pages with no conversations but a cursor, in a row


# -- errors ---------------------------------------------------------------------------------------


class TokenRejected(TransientError):
    """401: the token expired or was revoked. Refresh it (``TokenManager.refresh()``), then call
    :func:`fetch_window` again from the last ``Progress.resume_ms``."""


class QueryRejected(IvrstreamError):
    """A 4xx that retrying will not fix (after page-size halving, for 400). Fix the request."""

    def __init__(self, message: str, status: int, code: str = "") -> None:
        super().__init__(message)
        self.status = status
        self.code = code


class JobFailed(IvrstreamError):
    """A details job ended ``FAILED``, ``CANCELLED`` or ``EXPIRED`` (or vanished): submit again,
    perhaps for a shorter interval."""

    def __init__(self, message: str, job_id: str, state: str) -> None:
        super().__init__(message)
        self.job_id = job_id
        self.state = state


class AnalyticsProtocolError(IvrstreamError):
    """The server broke the protocol: a malformed body, paging that never ends, a cursor loop."""


# -- planning -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Interval:
    """``[start_ms, end_ms)`` and the API that fetches it."""

    start_ms: int
    end_ms: int
    method: Method = "query"

    @property
    def text(self) -> str:
        """The ISO-8601 ``start/end`` Genesys expects."""
        return format_interval(self.start_ms, self.end_ms)

    def __contains__(self, epoch_ms: object) -> bool:
        return isinstance(epoch_ms, int) and self.start_ms <= epoch_ms < self.end_ms


@dataclass(frozen=True)
class WindowPlan:
    """What to fetch now (``intervals``, contiguous from ``start_ms`` to ``ready_end_ms``) and
    what must wait (``deferred``: not settled yet; fetch it again later)."""

    start_ms: int
    end_ms: int
    ready_end_ms: int
    intervals: tuple[Interval, ...]

    @property
    def deferred(self) -> tuple[int, int] | None:
        return (self.ready_end_ms, self.end_ms) if self.ready_end_ms < self.end_ms else None

    @property
    def uses_jobs(self) -> bool:
        return any(i.method == "jobs" for i in self.intervals)


def max_interval_ms(filtered: bool = True) -> int:
    """The longest details-query interval Genesys accepts."""
    days = MAX_INTERVAL_FILTERED_DAYS if filtered else MAX_INTERVAL_UNFILTERED_DAYS
    return days * DAY_MS


def split_interval(start_ms: int, end_ms: int, limit_ms: int, method: Method) -> list[Interval]:
    """``[start_ms, end_ms)`` in contiguous pieces of at most ``limit_ms``, each ending on a UTC
    midnight when the limit is a day or more (except the last, which ends at ``end_ms``)."""
    if limit_ms <= 0:
        raise ValueError("limit_ms must be positive")
    pieces: list[Interval] = []
    cursor = start_ms
    while cursor < end_ms:
        stop = cursor + limit_ms
        if limit_ms >= DAY_MS and (stop // DAY_MS) * DAY_MS > cursor:
            stop = (stop // DAY_MS) * DAY_MS
        stop = min(stop, end_ms)
        pieces.append(Interval(cursor, stop, method))
        cursor = stop
    return pieces


def plan_window(
    start_ms: int,
    end_ms: int,
    now_ms: int,
    settings: BackfillSettings,
    *,
    filtered: bool = True,
    available_ms: int | None = None,
) -> WindowPlan:
    """Cut ``[start_ms, end_ms)`` into query and job intervals (see the module rules).

    ``available_ms`` is the jobs' ``dataAvailabilityDate`` when known: jobs stop there.
    """
    if end_ms < start_ms:
        raise ValueError(f"window ends before it starts: {start_ms} > {end_ms}")
    settle_ms = round(settings.settle * 1000)
    jobs_over_ms = round(settings.jobs_over * 1000)
    ready_end = max(start_ms, min(end_ms, now_ms - settle_ms))
    jobs_end = start_ms
    if ready_end - start_ms > jobs_over_ms:
        jobs_end = (
            ready_end if available_ms is None else max(start_ms, min(ready_end, available_ms))
        )
        if jobs_end - start_ms <= jobs_over_ms:
            jobs_end = start_ms
    intervals = [
        *split_interval(start_ms, jobs_end, MAX_JOB_INTERVAL_DAYS * DAY_MS, "jobs"),
        *split_interval(jobs_end, ready_end, max_interval_ms(filtered), "query"),
    ]
    return WindowPlan(start_ms, end_ms, ready_end, tuple(intervals))


def page_budget(total_hits: int, page_size: int) -> int:
    """How many pages an interval may take before we call the paging runaway."""
    return PAGE_BUDGET_FACTOR * -(-max(0, total_hits) // page_size) + PAGE_BUDGET_SLACK


# -- requests -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class AnalyticsPolicy:
    """Retry and polling knobs that are not user settings (those live in BackfillSettings)."""

    max_attempts: int = 6  # tries per request for 5xx and network errors
    max_rate_limited: int = 30  # 429s per request (each waited out) before giving up
    backoff_base: float = 1.0
    backoff_cap: float = 60.0
    default_retry_after: float = 3.0
    min_page_size: int = 1
    poll_first: float = 1.0  # first wait between job status polls
    poll_cap: float = 30.0
    job_timeout: float = 3_600.0  # seconds of polling before a job is given up


def _token(bearer: Bearer) -> str:
    return bearer() if callable(bearer) else bearer


def _sleep(seconds: float) -> Conversation[float]:
    now = yield Sleep(seconds)
    assert isinstance(now, float | int)
    return float(now)


def _problem(response: Response) -> tuple[str, str]:
    """(code, message) from a Genesys error body, or ("", a short excerpt of the body)."""
    try:
        error = msgspec.json.decode(response.body, type=ApiError)
    except (msgspec.DecodeError, msgspec.ValidationError):
        text = response.body[:200].decode("utf-8", "replace").strip()
        return "", text
    return error.code, error.message


def _describe(what: str, response: Response) -> str:
    code, message = _problem(response)
    detail = ": ".join(part for part in (code, message) if part)
    return f"{what} answered {response.status}{' (' + detail + ')' if detail else ''}"


def call_api(
    request: Request,
    bearer: Bearer,
    settings: BackfillSettings,
    rng: random.Random,
    policy: AnalyticsPolicy,
    what: str,
) -> Conversation[Response]:
    """Send ``request`` with a bearer token until it gets an answer worth reading: any 2xx, or a
    4xx other than 401/403/429 (the caller decides). The retry rules are the module's."""
    failures = 0
    limited = 0
    token_retries = 0
    while True:
        token = _token(bearer)
        headers = {**request.headers, "Authorization": f"Bearer {token}"}
        try:
            answer = yield replace(request, headers=headers)
        except NetworkError as exc:
            failures += 1
            if failures >= policy.max_attempts:
                raise ServiceUnavailable(
                    f"{what}: no answer after {failures} tries ({exc})"
                ) from None
            yield from _sleep(backoff_delay(failures, policy, rng))
            continue
        assert isinstance(answer, Response)
        status = answer.status
        if status == 401:
            if token_retries < MAX_TOKEN_RETRIES and _token(bearer) != token:
                token_retries += 1
                continue
            raise TokenRejected(f"{what}: the access token was refused (401); refresh it")
        if status == 403:
            raise MissingScope(
                f"{_describe(what, answer)}; the OAuth client needs {DETAIL_PERMISSION}"
            )
        if status == 429:
            limited += 1
            wait = retry_after_seconds(answer)
            wait = policy.default_retry_after if wait is None else wait
            if wait > settings.max_retry_after:
                raise RateLimited(
                    f"{what}: rate limited with Retry-After {wait:g}s, more than"
                    f" backfill.max_retry_after ({settings.max_retry_after:g}s)",
                    retry_after=wait,
                )
            if limited > policy.max_rate_limited:
                raise RateLimited(f"{what}: rate limited {limited} times", retry_after=wait)
            yield from _sleep(jittered(wait, rng))
            continue
        if status >= 500:
            failures += 1
            if failures >= policy.max_attempts:
                raise ServiceUnavailable(f"{_describe(what, answer)} {failures} times")
            yield from _sleep(backoff_delay(failures, policy, rng))
            continue
        return answer


def backoff_delay(failures: int, policy: AnalyticsPolicy, rng: random.Random) -> float:
    """Full jitter: uniform in ``[0, min(cap, base · 2^(failures-1))]``."""
    return rng.uniform(0.0, ceiling(policy.backoff_base, policy.backoff_cap, failures - 1))


def _decode(response: Response, kind: type[T], what: str) -> T:
    try:
        return msgspec.json.decode(response.body, type=kind)
    except (msgspec.DecodeError, msgspec.ValidationError) as exc:
        raise AnalyticsProtocolError(f"{what}: malformed answer: {exc}") from None


def _expect_success(response: Response, what: str) -> None:
    if not 200 <= response.status < 300:
        code, _ = _problem(response)
        raise QueryRejected(_describe(what, response), response.status, code)


def segment_filters(settings: BackfillSettings) -> list[Filter]:
    """``purpose = settings.segment_filter_purpose`` on some segment: what makes it an IVR call."""
    purpose = Predicate(
        type="dimension",
        dimension="purpose",
        operator="matches",
        value=settings.segment_filter_purpose,
    )
    return [Filter(type="and", predicates=[purpose])]


def _encode(query: ConversationQuery | AsyncConversationQuery) -> bytes:
    """The request body with ``order``, ``orderBy`` and ``paging`` spelled out in full: the
    models omit default values (``pageSize`` 25 would vanish), and paging and the watermark
    depend on exactly these."""
    body = msgspec.to_builtins(query)
    body["order"], body["orderBy"] = query.order, query.order_by
    if isinstance(query, ConversationQuery) and query.paging is not None:
        paging = query.paging
        body["paging"] = {"pageSize": paging.page_size, "pageNumber": paging.page_number}
    return msgspec.json.encode(body)


JSON_HEADERS = {"Accept": "application/json"}
JSON_BODY_HEADERS = {**JSON_HEADERS, "Content-Type": "application/json"}


def _start_ms(conversation: Json) -> int | None:
    value = conversation.get("conversationStart")
    if not isinstance(value, str):
        return None
    try:
        return parse_ms(value)
    except TimeFormatError:
        return None


# -- one interval ---------------------------------------------------------------------------------

OnPage = Callable[[list[Json], int], None]
"""Called after every page with (new conversations in the interval, resume watermark)."""


@dataclass
class IntervalResult:
    """What fetching one interval took and found."""

    interval: Interval
    delivered: int = 0  # conversations handed to on_page
    duplicates: int = 0  # seen again on a later page (dropped)
    outside: int = 0  # started outside the interval (dropped)
    malformed: int = 0  # no readable conversationStart or conversationId (dropped)
    pages: int = 0  # query pages or job result pages read
    page_size: int = 0  # the query page size in use at the end
    job_id: str | None = None
    available_ms: int | None = None  # jobs: the lowest dataAvailabilityDate seen

    def _sort(self, conversations: Sequence[Json], seen: set[str], before: int) -> list[Json]:
        """The conversations that are new and started in ``[interval.start, before)``."""
        new: list[Json] = []
        for conversation in conversations:
            start = _start_ms(conversation)
            conversation_id = conversation.get("conversationId")
            if start is None or not isinstance(conversation_id, str) or not conversation_id:
                self.malformed += 1
            elif not self.interval.start_ms <= start < before:
                self.outside += 1
            elif conversation_id in seen:
                self.duplicates += 1
            else:
                seen.add(conversation_id)
                new.append(conversation)
        self.delivered += len(new)
        return new


def query_interval(
    interval: Interval,
    *,
    api_url: str,
    bearer: Bearer,
    settings: BackfillSettings,
    rng: random.Random,
    on_page: OnPage,
    policy: AnalyticsPolicy | None = None,
) -> Conversation[IntervalResult]:
    """Page through the details query for ``interval`` (see the module rules).

    Raises :class:`QueryRejected` (a 400 even at the smallest page, other 4xx),
    :class:`AnalyticsProtocolError` (malformed body, paging runaway, a page longer than asked,
    results out of start order), and :func:`call_api`'s errors.
    """
    policy = policy or AnalyticsPolicy()
    smallest = max(1, policy.min_page_size)
    result = IntervalResult(interval, page_size=max(smallest, settings.page_size))
    url = f"{api_url.rstrip('/')}{DETAILS_PATH}/query"
    filters = segment_filters(settings)
    start_filters = (
        [
            Filter(
                type="and",
                predicates=[Predicate(dimension="conversationStart", value=interval.text)],
            )
        ]
        if settings.start_filter
        else []
    )
    seen: set[str] = set()
    read = 0  # conversations consumed so far: our offset into the server's ordered results
    first_hits: int | None = None  # the budget's base: later pages may report more
    resume = interval.start_ms
    last_start: int | None = None  # of the last conversation read: starts never go back (asc)
    while True:
        size = result.page_size
        number, skip = divmod(read, size)
        query = ConversationQuery(
            interval=interval.text,
            segment_filters=filters,
            conversation_filters=start_filters,
            order="asc",
            order_by="conversationStart",
            paging=PagingSpec(page_size=size, page_number=number + 1),
        )
        request = Request("POST", url, dict(JSON_BODY_HEADERS), _encode(query))
        what = f"details query {interval.text} page {number + 1}"
        response = yield from call_api(request, bearer, settings, rng, policy, what)
        if response.status == 400 and size > smallest:
            result.page_size = max(smallest, size // 2)
            continue
        _expect_success(response, what)
        page = _decode(response, ConversationQueryResponse, what)
        result.pages += 1
        first_hits = page.total_hits if first_hits is None else first_hits
        if len(page.conversations) > size:
            # the server pages by a size of its own: our offsets would skip conversations
            raise AnalyticsProtocolError(
                f"{what}: {len(page.conversations)} conversations on a page of {size}"
            )
        fresh = page.conversations[skip:]
        read += len(fresh)
        starts = [s for s in map(_start_ms, fresh) if s is not None]
        for start in starts:
            if last_start is not None and start < last_start:
                # STOP_PAST_END and the watermark would silently lose conversations
                raise AnalyticsProtocolError(
                    f"{what}: results are not in conversationStart order"
                    f" ({format_ms(start)} after {format_ms(last_start)})"
                )
            last_start = start
        new = result._sort(fresh, seen, interval.end_ms)
        past_end = STOP_PAST_END and bool(starts) and starts[-1] >= interval.end_ms
        done = len(page.conversations) < size or read >= page.total_hits or past_end
        if done:
            resume = interval.end_ms
        elif starts:
            resume = max(resume, min(starts[-1], interval.end_ms))
        on_page(new, resume)
        if done:
            return result
        if result.pages >= page_budget(first_hits, size):
            raise AnalyticsProtocolError(
                f"details query {interval.text}: still paging after {result.pages} pages"
                f" ({read} conversations read; the first page said totalHits {first_hits})"
            )


def job_interval(
    interval: Interval,
    *,
    api_url: str,
    bearer: Bearer,
    settings: BackfillSettings,
    rng: random.Random,
    on_page: OnPage,
    policy: AnalyticsPolicy | None = None,
) -> Conversation[IntervalResult]:
    """Submit a details job for ``interval``, wait for it and read every result page.

    Conversations that started after a page's ``dataAvailabilityDate`` are not delivered, and
    ``result.available_ms`` says where the job's data stops: fetch from there with the query.
    The resume watermark reaches ``min(interval end, available_ms)`` only on the last page.
    Raises :class:`JobFailed`, :class:`QueryRejected`, :class:`AnalyticsProtocolError`,
    :class:`ServiceUnavailable` (not fulfilled within ``policy.job_timeout``) and
    :func:`call_api`'s errors.
    """
    policy = policy or AnalyticsPolicy()
    result = IntervalResult(interval)
    jobs_url = f"{api_url.rstrip('/')}{DETAILS_PATH}/jobs"
    query = AsyncConversationQuery(
        interval=interval.text,
        segment_filters=segment_filters(settings),
        order="asc",
        order_by="conversationStart",
        start_of_day_interval_matching=JOB_START_OF_DAY_MATCHING or None,
    )
    what = f"details job {interval.text}"
    request = Request("POST", jobs_url, dict(JSON_BODY_HEADERS), _encode(query))
    response = yield from call_api(request, bearer, settings, rng, policy, what)
    _expect_success(response, what)
    job_id = _decode(response, AsyncQueryResponse, what).job_id
    result.job_id = job_id
    job_url = f"{jobs_url}/{urllib.parse.quote(job_id, safe='')}"
    what = f"details job {job_id}"

    waited = 0.0
    pause = policy.poll_first
    while True:
        status_request = Request("GET", job_url, dict(JSON_HEADERS))
        response = yield from call_api(status_request, bearer, settings, rng, policy, what)
        if response.status == 404:
            raise JobFailed(f"{what} is gone (404)", job_id, "NOT_FOUND")
        _expect_success(response, what)
        status = _decode(response, AsyncQueryStatus, what)
        if status.state == "FULFILLED":
            break
        if status.state in ("FAILED", "CANCELLED", "EXPIRED"):
            reason = f": {status.error_message}" if status.error_message else ""
            raise JobFailed(f"{what} is {status.state}{reason}", job_id, status.state)
        if waited >= policy.job_timeout:
            yield from _cancel(job_url, bearer)
            raise ServiceUnavailable(
                f"{what} still {status.state} after {waited:g}s of polling; cancelled it"
            )
        delay = jittered(min(pause, policy.poll_cap, policy.job_timeout - waited), rng, 0.1)
        yield from _sleep(delay)
        waited += delay  # as slept, jitter included
        pause = min(policy.poll_cap, pause * 2)

    seen: set[str] = set()
    cursors: set[str] = set()
    cursor: str | None = None
    empty_in_a_row = 0
    while True:
        query_string = f"?cursor={urllib.parse.quote(cursor, safe='')}" if cursor else ""
        results_request = Request("GET", f"{job_url}/results{query_string}", dict(JSON_HEADERS))
        page_what = f"{what} results page {result.pages + 1}"
        response = yield from call_api(results_request, bearer, settings, rng, policy, page_what)
        if response.status in (400, 404):
            # Genesys' state may have moved on (EXPIRED) between the poll and the read
            raise JobFailed(_describe(page_what, response), job_id, "UNREADABLE")
        _expect_success(response, page_what)
        page = _decode(response, ConversationAsyncQueryResponse, page_what)
        result.pages += 1
        if page.data_availability_date:
            try:
                available = parse_ms(page.data_availability_date)
            except TimeFormatError:
                raise AnalyticsProtocolError(
                    f"{page_what}: dataAvailabilityDate {page.data_availability_date!r}"
                ) from None
            if result.available_ms is None or available < result.available_ms:
                result.available_ms = available
        limit = interval.end_ms
        if result.available_ms is not None:
            limit = min(limit, max(interval.start_ms, result.available_ms))
        new = result._sort(page.conversations, seen, limit)
        if not page.cursor:
            on_page(new, limit)
            return result
        on_page(new, interval.start_ms)
        if page.cursor in cursors:
            raise AnalyticsProtocolError(f"{page_what}: the cursor repeats")
        empty_in_a_row = 0 if page.conversations else empty_in_a_row + 1
        if empty_in_a_row >= MAX_EMPTY_CURSOR_PAGES:
            raise AnalyticsProtocolError(f"{page_what}: {empty_in_a_row} empty pages in a row")
        cursors.add(page.cursor)
        cursor = page.cursor


def _cancel(job_url: str, bearer: Bearer) -> Conversation[None]:
    """Best effort ``DELETE`` of a job we gave up on; any answer (or none) will do."""
    request = Request("DELETE", job_url, {"Authorization": f"Bearer {_token(bearer)}"})
    with contextlib.suppress(NetworkError):
        yield request


def data_availability(
    *,
    api_url: str,
    bearer: Bearer,
    settings: BackfillSettings,
    rng: random.Random,
    policy: AnalyticsPolicy | None = None,
) -> Conversation[int | None]:
    """``GET …/details/jobs/availability`` → epoch ms before which jobs have all data (or None
    when the server does not say)."""
    policy = policy or AnalyticsPolicy()
    url = f"{api_url.rstrip('/')}{DETAILS_PATH}/jobs/availability"
    what = "jobs availability"
    request = Request("GET", url, dict(JSON_HEADERS))
    response = yield from call_api(request, bearer, settings, rng, policy, what)
    _expect_success(response, what)
    body = _decode(response, DataAvailability, what)
    if not body.data_availability_date:
        return None
    try:
        return parse_ms(body.data_availability_date)
    except TimeFormatError:
        raise AnalyticsProtocolError(
            f"{what}: dataAvailabilityDate {body.data_availability_date!r}"
        ) from None


# -- a whole window -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Progress:
    """Where a backfill stands. Show ``fraction`` (or the counts); persist ``resume_ms``."""

    start_ms: int  # the window's start
    ready_end_ms: int  # where its settled part ends: the backfill is done when resume_ms gets here
    resume_ms: int  # every conversation that started before this has been delivered
    intervals_done: int
    intervals_total: int
    conversations: int  # delivered so far in this run
    pages: int  # pages read so far in this run
    interval: Interval | None  # the one being fetched

    @property
    def fraction(self) -> float:
        """How much of the settled window is done, by time: 0.0 … 1.0."""
        span = self.ready_end_ms - self.start_ms
        return 1.0 if span <= 0 else (self.resume_ms - self.start_ms) / span


@dataclass(frozen=True)
class Batch:
    """New conversations (may be empty) and the progress after them: commit both together."""

    conversations: list[Json]
    progress: Progress


@dataclass
class WindowResult:
    """The outcome of :func:`fetch_window`."""

    plan: WindowPlan  # as finally carried out (after any availability re-plan)
    resume_ms: int  # == plan.ready_end_ms: the settled part is complete
    delivered: int
    intervals: list[IntervalResult] = field(default_factory=list)
    conversations: list[Json] = field(default_factory=list)  # only when no deliver was given

    @property
    def deferred(self) -> tuple[int, int] | None:
        """The unsettled tail: fetch it again once ``now - settle`` has passed its end."""
        return self.plan.deferred


def fetch_window(
    start_ms: int,
    end_ms: int,
    now_ms: int,
    *,
    api_url: str,
    bearer: Bearer,
    settings: BackfillSettings,
    rng: random.Random,
    deliver: Callable[[Batch], None] | None = None,
    policy: AnalyticsPolicy | None = None,
    check_availability: bool = True,
) -> Conversation[WindowResult]:
    """Every IVR conversation that started in ``[start_ms, end_ms)`` — the settled part of it.

    Plans with :func:`plan_window` (asking the jobs' data availability first when the plan uses
    jobs and ``check_availability``), fetches each interval, and hands every page to ``deliver``
    as a :class:`Batch`; without ``deliver`` the conversations are collected in the result.
    A job whose data stops short (``dataAvailabilityDate``) sends the rest of the window to the
    paged query. Errors are those of :func:`query_interval` and :func:`job_interval`; after one,
    restart from the last ``Batch.progress.resume_ms``.
    """
    policy = policy or AnalyticsPolicy()
    plan = plan_window(start_ms, end_ms, now_ms, settings)
    if check_availability and plan.uses_jobs:
        available = yield from data_availability(
            api_url=api_url, bearer=bearer, settings=settings, rng=rng, policy=policy
        )
        plan = plan_window(start_ms, end_ms, now_ms, settings, available_ms=available)
    run = _Run(plan, deliver)
    while run.pending:
        interval = run.pending.pop(0)
        fetch = job_interval if interval.method == "jobs" else query_interval
        result = yield from fetch(
            interval,
            api_url=api_url,
            bearer=bearer,
            settings=settings,
            rng=rng,
            on_page=partial(run.page, interval),
            policy=policy,
        )
        run.outcome.intervals.append(result)
        available = result.available_ms
        if available is not None and available < interval.end_ms:
            # the datalake stops short of this job: the query fetches the rest of the window
            cut = max(interval.start_ms, available)
            rest = plan_window(cut, plan.ready_end_ms, now_ms, settings, available_ms=cut)
            run.replan(replace(interval, end_ms=cut), rest.intervals)
        else:
            run.done.append(interval)
    run.outcome.resume_ms = max(run.outcome.resume_ms, plan.ready_end_ms)
    return run.outcome


class _Run:
    """The bookkeeping of one :func:`fetch_window`: progress, batches, re-plans."""

    def __init__(self, plan: WindowPlan, deliver: Callable[[Batch], None] | None) -> None:
        self.outcome = WindowResult(plan, resume_ms=plan.start_ms, delivered=0)
        self.deliver = deliver
        self.pending = list(plan.intervals)
        self.done: list[Interval] = []
        self.pages = 0

    def page(self, interval: Interval, new: list[Json], resume: int) -> None:
        outcome = self.outcome
        self.pages += 1
        outcome.delivered += len(new)
        outcome.resume_ms = max(outcome.resume_ms, resume)
        if self.deliver is None:
            outcome.conversations.extend(new)
            return
        progress = Progress(
            start_ms=outcome.plan.start_ms,
            ready_end_ms=outcome.plan.ready_end_ms,
            resume_ms=outcome.resume_ms,
            intervals_done=len(self.done),
            intervals_total=len(self.done) + 1 + len(self.pending),
            conversations=outcome.delivered,
            pages=self.pages,
            interval=interval,
        )
        self.deliver(Batch(new, progress))

    def replan(self, cut: Interval, rest: Sequence[Interval]) -> None:
        """``cut`` is done (shortened to where its data stops); ``rest`` replaces what was left."""
        if cut.end_ms > cut.start_ms:
            self.done.append(cut)
        self.pending = list(rest)
        plan = self.outcome.plan
        self.outcome.plan = replace(plan, intervals=(*self.done, *self.pending))
