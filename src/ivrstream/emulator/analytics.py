"""Analytics conversation details (query and jobs), flows and queues, rendered from the world.

Rules this module keeps:

- Every endpoint needs a valid bearer token (401) and the permission Genesys asks for (403).
  Analytics requests then pass the injected faults: ``analytics_rate_limited`` answers 429 with
  ``Retry-After``, ``analytics_errors`` answers 503.
- "Now" is the emulator clock minus ``analytics_delay``: later facts are not yet visible, calls
  still going have no ``conversationEnd`` and open segments no ``segmentEnd``.
- Query interval: ISO-8601 ``start/end``, at most 7 days without filters and 31 with any.
  A conversation matches when it *started on a UTC day the interval touches* (the end instant is
  exclusive), so results can lie outside the interval, as Genesys' daily indexes make them.
- Paging: ``pageSize`` 1 to ``max_page_size`` (above: 400 "pageSize too large"), ``pageNumber``
  from 1; ``totalHits`` counts every match; an empty ``conversations`` is omitted.
- Filters in a list must all hold. A segment filter holds when one segment row (a segment with
  its session, the session's flow and the participant) satisfies it as a whole, so ``and`` means
  "on the same segment"; separate filters may hold on different segments. A conversation filter
  holds on the conversation. ``matches`` compares exactly (time dimensions take an instant or a
  ``start/end`` interval); unknown or unemulated dimensions answer 400 naming them.
- Jobs match conversations whose lifetime overlaps the interval; ``startOfDayIntervalMatching``
  adds "started no earlier than 00:00 UTC of the interval's first day". The match is a snapshot
  taken at submission. A job is QUEUED, PENDING after half of ``job_delay``, FULFILLED after
  ``job_delay`` and EXPIRED after ``job_ttl`` (emulator clock); results carry participant
  attributes and page with an opaque cursor.
"""

from __future__ import annotations

import base64
import itertools
from collections.abc import Awaitable, Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from functools import partial
from typing import Any, TypeVar

import msgspec
from aiohttp import web

from ivrstream.clock import Clock
from ivrstream.emulator.config import EmulatorConfig
from ivrstream.emulator.faults import FaultState
from ivrstream.emulator.oauth import TokenIssuer, api_error
from ivrstream.emulator.render import analytics_conversation
from ivrstream.emulator.traffic import (
    DIVISION_ID,
    FLOWS,
    QUEUES,
    Call,
    FlowSpec,
    QueueSpec,
    stable_uuid,
)
from ivrstream.emulator.world import World
from ivrstream.isotime import DAY_MS, TimeFormatError, format_ms, parse_interval, parse_ms, utc_day
from ivrstream.models import (
    AsyncConversationQuery,
    AsyncQueryResponse,
    AsyncQueryStatus,
    ConversationAsyncQueryResponse,
    ConversationQuery,
    ConversationQueryResponse,
    DataAvailability,
    Filter,
    JobState,
    Order,
    OrderBy,
    PagingSpec,
    Predicate,
)

Json = dict[str, Any]
Handler = Callable[[web.Request], Awaitable[web.Response]]
T = TypeVar("T")

DETAILS = "/api/v2/analytics/conversations/details"
UNFILTERED_MAX_DAYS = 7
FILTERED_MAX_DAYS = 31
DETAIL_PERMISSION = "analytics:conversationDetail:view"
DIVISION = {
    "id": DIVISION_ID,
    "name": "Home",
    "selfUri": f"/api/v2/authorization/divisions/{DIVISION_ID}",
}

# segment dimension -> (where in the segment row, field)
SEGMENT_DIMENSIONS: dict[str, tuple[str, str]] = {
    "purpose": ("participant", "purpose"),
    "userId": ("participant", "userId"),
    "mediaType": ("session", "mediaType"),
    "direction": ("session", "direction"),
    "ani": ("session", "ani"),
    "dnis": ("session", "dnis"),
    "flowId": ("flow", "flowId"),
    "flowName": ("flow", "flowName"),
    "flowVersion": ("flow", "flowVersion"),
    "exitReason": ("flow", "exitReason"),
    "transferType": ("flow", "transferType"),
    "transferTargetName": ("flow", "transferTargetName"),
    "segmentType": ("segment", "segmentType"),
    "segmentEnd": ("segment", "segmentEnd"),
    "queueId": ("segment", "queueId"),
    "disconnectType": ("segment", "disconnectType"),
}
# conversation dimension -> field of the conversation
CONVERSATION_DIMENSIONS: dict[str, str] = {
    "conversationId": "conversationId",
    "conversationStart": "conversationStart",
    "conversationEnd": "conversationEnd",
    "conversationInitiator": "conversationInitiator",
    "divisionId": "divisionIds",
    "originatingDirection": "originatingDirection",
}
TIME_DIMENSIONS = frozenset({"conversationStart", "conversationEnd", "segmentEnd"})
ORDERABLE = ("conversationStart", "conversationEnd")  # orderBy values; each names its field


class QueryError(Exception):
    """A request the emulator refuses; answered with ``status`` and a Genesys error body."""

    def __init__(self, message: str, status: int = 400, code: str = "bad.request") -> None:
        super().__init__(message)
        self.status = status
        self.code = code


# -- query rules: pure functions of dicts and numbers -------------------------------------------


def check_interval(interval: str, *, filtered: bool) -> tuple[int, int]:
    """``start/end`` → epoch ms; raise :class:`QueryError` when malformed or too long."""
    start, end = parse_interval_or_400(interval)
    limit = FILTERED_MAX_DAYS if filtered else UNFILTERED_MAX_DAYS
    if end - start > limit * DAY_MS:
        hint = "" if filtered else " without a filter (add segmentFilters or conversationFilters)"
        raise QueryError(f"interval is longer than {limit} days{hint}")
    return start, end


def parse_interval_or_400(interval: str) -> tuple[int, int]:
    try:
        return parse_interval(interval)
    except TimeFormatError as exc:
        raise QueryError(f"invalid interval: {exc}") from None


def start_day_window(start_ms: int, end_ms: int) -> tuple[int, int]:
    """``[from, to)`` covering every UTC day the interval ``[start_ms, end_ms)`` touches."""
    return utc_day(start_ms) * DAY_MS, (utc_day(end_ms - 1) + 1) * DAY_MS


def overlaps(start_ms: int, end_ms: int | None, interval: tuple[int, int]) -> bool:
    """Does a conversation living ``[start_ms, end_ms)`` (``None``: still going) touch it?"""
    return start_ms < interval[1] and (end_ms is None or end_ms > interval[0])


def page_slice(page_size: int, page_number: int, max_page_size: int) -> slice:
    """The slice of the ordered matches one page shows; 400 on sizes Genesys refuses."""
    if page_size > max_page_size:
        raise QueryError(f"pageSize too large: {page_size} (the maximum is {max_page_size})")
    if page_size < 1 or page_number < 1:
        raise QueryError("pageSize and pageNumber start at 1")
    first = (page_number - 1) * page_size
    return slice(first, first + page_size)


def check_filters(filters: Sequence[Filter], dimensions: Mapping[str, object], kind: str) -> None:
    """Raise :class:`QueryError` naming the first predicate the emulator cannot evaluate."""
    for f in filters:
        predicates = [*f.predicates, *(p for c in f.clauses for p in c.predicates)]
        if not predicates:
            raise QueryError(f"a {kind} filter needs at least one predicate")
        for p in predicates:
            if p.type not in (None, "dimension") or p.metric or p.property or p.range:
                raise QueryError(f"{kind} filters: only dimension predicates are emulated")
            if p.dimension not in dimensions:
                known = ", ".join(sorted(dimensions))
                raise QueryError(f"unknown {kind} filter dimension {p.dimension!r}; known: {known}")
            if p.operator == "matches" and p.value is None:
                raise QueryError(f"{kind} filter on {p.dimension!r}: 'matches' needs a value")
            if p.operator == "matches" and p.dimension in TIME_DIMENSIONS:
                time_range(p.value or "")


def check_order_by(order_by: OrderBy) -> str:
    """The conversation field to sort on; 400 for orderings the emulator does not model."""
    if order_by not in ORDERABLE:
        raise QueryError(f"orderBy {order_by!r} is not emulated; use one of {ORDERABLE}")
    return order_by


def time_range(value: str) -> tuple[int, int]:
    """A time predicate's value: an instant, or a ``start/end`` interval (end exclusive)."""
    try:
        if "/" in value:
            return parse_interval(value)
        instant = parse_ms(value)
    except TimeFormatError as exc:
        raise QueryError(f"invalid time value: {exc}") from None
    return instant, instant + 1


def narrow_by_start(filters: Sequence[Filter], first: int, after: int) -> tuple[int, int]:
    """``[first, after)`` cut to what every ``and`` filter's ``conversationStart`` interval
    allows (only a scan limit: the filters are still applied to each conversation)."""
    for f in filters:
        if f.type != "and" or f.clauses:
            continue
        for p in f.predicates:
            if p.dimension == "conversationStart" and p.operator == "matches" and p.value:
                low, high = time_range(p.value)
                first, after = max(first, low), min(after, high)
    return first, max(first, after)


def predicate_holds(predicate: Predicate, value: Any) -> bool:
    """Does ``value`` (a field of a conversation or segment row, maybe absent) satisfy it?"""
    present = value is not None and value != []
    if predicate.operator == "exists":
        return present
    if predicate.operator == "notExists":
        return not present
    if not present:
        return False
    if predicate.dimension in TIME_DIMENSIONS:
        low, high = time_range(predicate.value or "")
        return low <= parse_ms(value) < high
    if isinstance(value, list):
        return predicate.value in value
    return bool(value == predicate.value)


def filter_holds(f: Filter, holds: Callable[[Predicate], bool]) -> bool:
    """``f`` joined by its ``type``: its predicates and each clause (itself joined by type)."""
    results = itertools.chain(
        (holds(p) for p in f.predicates),
        ((all if c.type == "and" else any)(holds(p) for p in c.predicates) for c in f.clauses),
    )
    return all(results) if f.type == "and" else any(results)


SegmentRow = tuple[Json, Json, Json]  # participant, session, segment


def segment_rows(conversation: Json) -> Iterator[SegmentRow]:
    for participant in conversation.get("participants", ()):
        for session in participant.get("sessions", ()):
            for segment in session.get("segments", ()):
                yield participant, session, segment


def segment_value(dimension: str, row: SegmentRow) -> Any:
    participant, session, segment = row
    where, field = SEGMENT_DIMENSIONS[dimension]
    source = {
        "participant": participant,
        "session": session,
        "flow": session.get("flow") or {},
        "segment": segment,
    }[where]
    return source.get(field)


def _segment_predicate(predicate: Predicate, row: SegmentRow) -> bool:
    return predicate_holds(predicate, segment_value(predicate.dimension or "", row))


def _conversation_predicate(predicate: Predicate, conversation: Json) -> bool:
    field = CONVERSATION_DIMENSIONS[predicate.dimension or ""]
    return predicate_holds(predicate, conversation.get(field))


def conversation_matches(
    conversation: Json, segment_filters: Sequence[Filter], conversation_filters: Sequence[Filter]
) -> bool:
    """Every conversation filter holds on it, and every segment filter on one of its segments."""
    for f in conversation_filters:
        if not filter_holds(f, partial(_conversation_predicate, conversation=conversation)):
            return False
    rows = list(segment_rows(conversation)) if segment_filters else []
    return all(
        any(filter_holds(f, partial(_segment_predicate, row=row)) for row in rows)
        for f in segment_filters
    )


def order_conversations(conversations: list[Json], field: str, order: Order) -> list[Json]:
    """Sort by ``field`` (ISO times sort as text, ties keep the given order); ``desc`` is the
    exact reverse of ``asc``; conversations without the field come last either way."""
    present = sorted((c for c in conversations if field in c), key=lambda c: str(c[field]))
    if order == "desc":
        present.reverse()
    return present + [c for c in conversations if field not in c]


def job_state(elapsed: float, delay: float, ttl: float, cancelled: bool) -> JobState:
    """A job's state ``elapsed`` seconds after submission."""
    if cancelled:
        return "CANCELLED"
    if elapsed >= ttl:
        return "EXPIRED"
    if elapsed >= delay:
        return "FULFILLED"
    return "PENDING" if elapsed >= delay / 2 else "QUEUED"


def entity_listing(entities: list[Json], page_size: int, page_number: int) -> Json:
    """A Genesys entity listing page (``entities``, ``pageSize``, ``total``, ``pageCount`` …)."""
    first = (page_number - 1) * page_size
    return {
        "entities": entities[first : first + page_size],
        "pageSize": page_size,
        "pageNumber": page_number,
        "total": len(entities),
        "pageCount": -(-len(entities) // page_size),
    }


def flow_entity(flow: FlowSpec) -> Json:
    return {
        "id": flow.id,
        "name": flow.name,
        "description": f"Answers {flow.dnis}",
        "type": "INBOUNDCALL",
        "division": DIVISION,
        "active": True,
        "system": False,
        "deleted": False,
        "publishedVersion": {"id": flow.version},
        "selfUri": f"/api/v2/flows/{flow.id}",
    }


def queue_entity(queue: QueueSpec) -> Json:
    return {
        "id": queue.id,
        "name": queue.name,
        "division": DIVISION,
        "selfUri": f"/api/v2/routing/queues/{queue.id}",
    }


# -- the endpoints --------------------------------------------------------------------------------


@dataclass(eq=False)
class Job:
    id: str
    calls: list[Call]  # the snapshot, in result order
    now_ms: int  # the analytics "now" the results show
    submitted: float  # clock seconds
    cancelled: bool = False


def _decode(body: bytes, kind: type[T]) -> T:
    try:
        return msgspec.json.decode(body, type=kind)
    except (msgspec.DecodeError, msgspec.ValidationError) as exc:
        raise QueryError(f"invalid request body: {exc}") from None


def _int_param(request: web.Request, name: str, default: int) -> int:
    try:
        return int(request.query.get(name, default))
    except ValueError:
        raise QueryError(f"{name} must be an integer") from None


def _json(body: object, status: int = 200) -> web.Response:
    return web.Response(
        status=status, body=msgspec.json.encode(body), content_type="application/json"
    )


def _iso(seconds: float) -> str:
    return format_ms(round(seconds * 1000))


class Analytics:
    """Serves the details query, details jobs, flows and queues from :class:`World`."""

    def __init__(
        self,
        config: EmulatorConfig,
        clock: Clock,
        issuer: TokenIssuer,
        faults: FaultState,
        world: World,
    ) -> None:
        self.config = config
        self.clock = clock
        self.issuer = issuer
        self.faults = faults
        self.world = world
        self._jobs: dict[str, Job] = {}
        self._jobs_submitted = 0
        self._rendered: dict[tuple[str, bool], Json] = {}  # ended calls only; oldest first

    def routes(self) -> list[web.RouteDef]:
        analytics = partial(self._guard, permission=DETAIL_PERMISSION, analytics=True)
        return [
            web.post(f"{DETAILS}/query", analytics(self._query)),
            web.post(f"{DETAILS}/jobs", analytics(self._submit_job)),
            web.get(f"{DETAILS}/jobs/availability", analytics(self._availability)),
            web.get(f"{DETAILS}/jobs/{{job_id}}", analytics(self._job_status)),
            web.delete(f"{DETAILS}/jobs/{{job_id}}", analytics(self._cancel_job)),
            web.get(f"{DETAILS}/jobs/{{job_id}}/results", analytics(self._job_results)),
            web.get("/api/v2/flows", self._guard(self._flows, "architect:flow:view")),
            web.get("/api/v2/routing/queues", self._guard(self._queues, "routing:queue:view")),
        ]

    def now_ms(self) -> int:
        """The newest moment analytics can see: the clock minus ``analytics_delay``."""
        return round(self.clock.time() * 1000) - round(self.config.analytics_delay * 1000)

    def _guard(self, handler: Handler, permission: str, analytics: bool = False) -> Handler:
        async def guarded(request: web.Request) -> web.Response:
            # as issuer.require() answers, without raising an HTTPException built from a body
            token, problem = self.issuer.from_request(request)
            if token is None:
                message = f"Invalid login credentials ({problem} token)."
                return api_error(401, "bad.credentials", message)
            if permission not in token.client.permissions:
                return api_error(
                    403,
                    "missing.any.permissions",
                    f"You are missing the following permission: {permission}",
                )
            if analytics and self.faults.take("analytics_rate_limited"):
                retry_after = str(self.faults.settings.retry_after)
                return api_error(
                    429, "too.many.requests", "Rate limit exceeded", **{"Retry-After": retry_after}
                )
            if analytics and self.faults.take("analytics_errors"):
                return api_error(503, "service.unavailable", "The service is unavailable")
            try:
                return await handler(request)
            except QueryError as exc:
                return api_error(exc.status, exc.code, str(exc))

        return guarded

    def _render(self, call: Call, now_ms: int, with_attributes: bool = False) -> Json:
        """The call as analytics shows it at ``now_ms``; ended calls are cached (never mutate)."""
        if call.end_ms > now_ms:
            return analytics_conversation(call, now_ms, with_attributes=with_attributes)
        key = (call.conversation_id, with_attributes)
        rendered = self._rendered.pop(key, None)  # re-inserted below: the most recently used
        if rendered is None:
            rendered = analytics_conversation(call, now_ms, with_attributes=with_attributes)
        if self.config.analytics_cache > 0:
            self._rendered[key] = rendered
            if len(self._rendered) > self.config.analytics_cache:
                del self._rendered[next(iter(self._rendered))]
        return rendered

    def _select(
        self,
        calls: Sequence[Call],
        now_ms: int,
        query: ConversationQuery | AsyncConversationQuery,
    ) -> list[tuple[Json, Call]]:
        """The calls whose conversations match ``query``, rendered, in the query's order."""
        field = check_order_by(query.order_by)
        matching: dict[str, tuple[Json, Call]] = {}
        for call in calls:
            conversation = self._render(call, now_ms)
            if conversation_matches(
                conversation, query.segment_filters, query.conversation_filters
            ):
                matching[call.conversation_id] = conversation, call
        conversations = [conversation for conversation, _ in matching.values()]
        ordered = order_conversations(conversations, field, query.order)
        return [matching[c["conversationId"]] for c in ordered]

    # -- details query ----------------------------------------------------------------------------

    async def _query(self, request: web.Request) -> web.Response:
        query = _decode(await request.read(), ConversationQuery)
        filtered = bool(query.segment_filters or query.conversation_filters)
        start, end = check_interval(query.interval, filtered=filtered)
        check_filters(query.segment_filters, SEGMENT_DIMENSIONS, "segment")
        check_filters(query.conversation_filters, CONVERSATION_DIMENSIONS, "conversation")
        paging = query.paging or PagingSpec()
        page = page_slice(paging.page_size, paging.page_number, self.config.max_page_size)
        now = self.now_ms()
        first, after = start_day_window(start, end)
        # an index on the start (as Genesys has): a conversationStart filter narrows the scan
        first, after = narrow_by_start(query.conversation_filters, first, after)
        calls = self.world.calls_started_between(first, min(after, now + 1))
        matches = [c for c, _ in self._select(calls, now, query)]
        return _json(
            ConversationQueryResponse(total_hits=len(matches), conversations=matches[page])
        )

    # -- details jobs -----------------------------------------------------------------------------

    async def _submit_job(self, request: web.Request) -> web.Response:
        query = _decode(await request.read(), AsyncConversationQuery)
        interval = parse_interval_or_400(query.interval)
        check_filters(query.segment_filters, SEGMENT_DIMENSIONS, "segment")
        check_filters(query.conversation_filters, CONVERSATION_DIMENSIONS, "conversation")
        if query.limit is not None and query.limit < 1:
            raise QueryError("limit starts at 1")
        now = self.now_ms()
        first = utc_day(interval[0]) * DAY_MS if query.start_of_day_interval_matching else 0
        candidates = [
            call
            for call in self.world.calls_started_between(first, min(interval[1], now + 1))
            if overlaps(call.start_ms, call.end_ms if call.end_ms <= now else None, interval)
        ]
        selected = [call for _, call in self._select(candidates, now, query)]
        self._jobs_submitted += 1
        job = Job(
            id=stable_uuid("job", self.config.seed, self._jobs_submitted),
            calls=selected[: query.limit],
            now_ms=now,
            submitted=self.clock.time(),
        )
        self._forget_old_jobs()
        self._jobs[job.id] = job
        return _json(AsyncQueryResponse(job_id=job.id), status=202)

    def _forget_old_jobs(self) -> None:
        horizon = self.clock.time() - 2 * self.config.job_ttl
        for job_id in [j.id for j in self._jobs.values() if j.submitted < horizon]:
            del self._jobs[job_id]

    def _job(self, request: web.Request) -> tuple[Job, JobState]:
        job = self._jobs.get(request.match_info["job_id"])
        if job is None:
            raise QueryError("no such job", status=404, code="not.found")
        elapsed = self.clock.time() - job.submitted
        state = job_state(elapsed, self.config.job_delay, self.config.job_ttl, job.cancelled)
        return job, state

    async def _job_status(self, request: web.Request) -> web.Response:
        job, state = self._job(request)
        done = state in ("FULFILLED", "EXPIRED")
        return _json(
            AsyncQueryStatus(
                state=state,
                submission_date=_iso(job.submitted),
                completion_date=_iso(job.submitted + self.config.job_delay) if done else None,
                expiration_date=_iso(job.submitted + self.config.job_ttl),
            )
        )

    async def _cancel_job(self, request: web.Request) -> web.Response:
        job, _ = self._job(request)
        job.cancelled = True
        return web.Response(status=204)

    async def _job_results(self, request: web.Request) -> web.Response:
        job, state = self._job(request)
        if state != "FULFILLED":
            raise QueryError(f"job is {state}; results can be read once it is FULFILLED")
        page_size = _int_param(request, "pageSize", self.config.job_page_size)
        if not 1 <= page_size <= self.config.job_page_size:
            raise QueryError(f"pageSize must be between 1 and {self.config.job_page_size}")
        offset = self._cursor_offset(job, request.query.get("cursor", ""))
        chunk = job.calls[offset : offset + page_size]
        after = offset + len(chunk)
        return _json(
            ConversationAsyncQueryResponse(
                conversations=[self._render(c, job.now_ms, with_attributes=True) for c in chunk],
                cursor=self._cursor(job, after) if after < len(job.calls) else None,
                data_availability_date=format_ms(job.now_ms),
            )
        )

    @staticmethod
    def _cursor(job: Job, offset: int) -> str:
        return base64.urlsafe_b64encode(f"{job.id}:{offset}".encode()).decode().rstrip("=")

    @staticmethod
    def _cursor_offset(job: Job, cursor: str) -> int:
        if not cursor:
            return 0
        try:
            text = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
            job_id, _, offset_text = text.rpartition(":")
            offset = int(offset_text)
        except ValueError:  # binascii.Error and UnicodeDecodeError are ValueErrors
            raise QueryError("invalid cursor") from None
        if job_id != job.id or not 0 <= offset <= len(job.calls):
            raise QueryError("invalid cursor")
        return offset

    async def _availability(self, request: web.Request) -> web.Response:
        return _json(DataAvailability(data_availability_date=format_ms(self.now_ms())))

    # -- flows and queues -------------------------------------------------------------------------

    def _listing_paging(self, request: web.Request) -> tuple[int, int]:
        page_size = _int_param(request, "pageSize", 25)
        page_number = _int_param(request, "pageNumber", 1)
        page_slice(page_size, page_number, self.config.max_page_size)  # the same limits
        return page_size, page_number

    async def _flows(self, request: web.Request) -> web.Response:
        page_size, page_number = self._listing_paging(request)
        types = {t.strip().lower() for v in request.query.getall("type", []) for t in v.split(",")}
        wanted = not types or "inboundcall" in types
        entities = [flow_entity(flow) for flow in FLOWS] if wanted else []
        return _json(entity_listing(entities, page_size, page_number))

    async def _queues(self, request: web.Request) -> web.Response:
        page_size, page_number = self._listing_paging(request)
        entities = [queue_entity(queue) for queue in QUEUES]
        return _json(entity_listing(entities, page_size, page_number))
