"""Prometheus metrics for one subscriber, from its own :class:`CollectorRegistry`.

Every value is read when scraped — from the components' own counters and statistics, from what
the monitor counted through hooks, and from what it read back from the journal — so nothing is
added to the path of an event. Several subscribers in one process (tests, shards) each get a
registry of their own; nothing goes into prometheus_client's global one.

Names follow Prometheus conventions: counters end in ``_total``, durations are ``_seconds``,
every name starts with ``ivrstream_``. Labels take bounded values only (sources, event types,
sink names, reasons reduced to their kind, flow ids under a cap).
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Iterable, Iterator, Sequence
from itertools import accumulate
from typing import TYPE_CHECKING

from prometheus_client.core import (
    CollectorRegistry,
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector

from ivrstream import __version__
from ivrstream.stats import BOUNDS, CountHistogram, LatencyHistogram

if TYPE_CHECKING:
    from ivrstream.aio.monitor import Monitor

# every tenth of the latency histogram's fine bounds: 0.1 ms, 0.32 ms, 1 ms … 100 s
_LATENCY_INDEXES = tuple(range(0, len(BOUNDS), 10))


def registry_for(monitor: Monitor) -> CollectorRegistry:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(SubscriberCollector(monitor))
    return registry


def latency_buckets(histogram: LatencyHistogram) -> list[tuple[str, float]]:
    """Cumulative ``le`` buckets of a :class:`LatencyHistogram` (its counts hold the values up
    to each bound, so no value is ever placed in a wrong bucket)."""
    cumulative = list(accumulate(histogram.counts))
    buckets = [(f"{BOUNDS[i]:.6g}", float(cumulative[i])) for i in _LATENCY_INDEXES]
    buckets.append(("+Inf", float(histogram.total)))
    return buckets


def count_buckets(histogram: CountHistogram) -> list[tuple[str, float]]:
    cumulative = list(accumulate(histogram.counts))
    buckets = [(str(b), float(c)) for b, c in zip(histogram.bounds, cumulative, strict=False)]
    buckets.append(("+Inf", float(histogram.total)))
    return buckets


def _counter(name: str, doc: str, labels: Sequence[str] = ()) -> CounterMetricFamily:
    return CounterMetricFamily(name, doc, labels=labels)


def _gauge(name: str, doc: str, labels: Sequence[str] = ()) -> GaugeMetricFamily:
    return GaugeMetricFamily(name, doc, labels=labels)


class SubscriberCollector(Collector):
    """Turns one monitor's view of its subscriber into metric families at each scrape."""

    def __init__(self, monitor: Monitor) -> None:
        self.monitor = monitor

    def collect(self) -> Iterable[Metric]:
        yield from self._service()
        yield from self._intake()
        yield from self._journal()
        yield from self._sinks()
        yield from self._source()
        yield from self._gaps()
        yield from self._auth()
        yield from self._ivr()

    # -- families -------------------------------------------------------------------------------

    def _service(self) -> Iterator[Metric]:
        monitor = self.monitor
        info = _gauge(
            "ivrstream_info", "Version and source of this service.", ["version", "source"]
        )
        info.add_metric([__version__, monitor.sub.config.source], 1)
        yield info
        ready = monitor.readiness()
        yield GaugeMetricFamily(
            "ivrstream_ready",
            "1 when /readyz answers 200 (events or heartbeats flowing).",
            value=int(ready.ok),
        )
        connected, _ = monitor.connected()
        yield GaugeMetricFamily(
            "ivrstream_source_connected",
            "1 while the source is connected (Event Streams streaming; a Notifications channel"
            " live).",
            value=int(connected),
        )
        now = monitor.clock.monotonic()
        for name, activity, doc in (
            (
                "ivrstream_seconds_since_last_event",
                monitor.last_event,
                "Seconds since the source last delivered an event.",
            ),
            (
                "ivrstream_seconds_since_last_heartbeat",
                monitor.last_frame,
                "Seconds since the source last showed life: a heartbeat, pong or event"
                " (Event Streams sends no heartbeats: any frame).",
            ),
        ):
            since = activity.since(now)
            if since is not None:
                yield GaugeMetricFamily(name, doc, value=since)

    def _intake(self) -> Iterator[Metric]:
        monitor = self.monitor
        intake = monitor.sub.intake
        received = _counter(
            "ivrstream_events_received",
            "Events committed to the journal (received), by source and event type.",
            ["source", "type"],
        )
        for (source, kind), count in sorted(monitor.received.items()):
            received.add_metric([source, kind], count)
        yield received
        yield CounterMetricFamily(
            "ivrstream_frames_received",
            "Event Streams frames read from the socket (before decoding and ordering).",
            value=intake.stats.frames,
        )
        dispositions: Counter[str] = Counter()
        for stream in list(intake.streams.values()):
            stats = stream.ordering.stats
            dispositions.update(
                next=stats.next, duplicate=stats.duplicate, early=stats.early, late=stats.late
            )
        ordered = _counter(
            "ivrstream_frames_ordered",
            "Event Streams frames by how they arrived: next in sequence, duplicate (dropped),"
            " early (held to reorder) or late (filled a gap).",
            ["disposition"],
        )
        for disposition in ("next", "duplicate", "early", "late"):
            ordered.add_metric([disposition], dispositions[disposition])
        yield ordered
        yield CounterMetricFamily(
            "ivrstream_journal_duplicate_events",
            "Events the journal already held (same event id): not stored again.",
            value=intake.stats.duplicate_rows,
        )
        quarantined = _counter(
            "ivrstream_quarantined_frames",
            "Frames and events quarantined with their raw bytes, by kind of reason.",
            ["reason"],
        )
        for reason, count in sorted(monitor.quarantined.items()):
            quarantined.add_metric([reason], count)
        yield quarantined
        yield CounterMetricFamily(
            "ivrstream_schema_new_fields",
            "Top-level fields the schema did not know, each counted once when first seen.",
            value=monitor.new_fields,
        )
        fields = _counter(
            "ivrstream_schema_field_events",
            "Frames carrying each unannounced top-level field.",
            ["field"],
        )
        for name, count in sorted(intake.decoder.field_counts.items())[:50]:
            fields.add_metric([name], count)
        yield fields
        for name, histogram, doc in (
            (
                "ivrstream_receive_to_commit_seconds",
                intake.latency,
                "Time from a frame arriving to its event being committed to the journal.",
            ),
            (
                "ivrstream_event_to_commit_seconds",
                intake.event_latency,
                "Time from the server's event timestamp to the event being committed.",
            ),
            (
                "ivrstream_journal_commit_duration_seconds",
                intake.commit_seconds,
                "Time inside each journal transaction (group commit).",
            ),
        ):
            family = HistogramMetricFamily(name, doc)
            family.add_metric([], latency_buckets(histogram), sum_value=histogram.sum)
            yield family
        sizes = intake.commit_sizes
        batch = HistogramMetricFamily(
            "ivrstream_journal_commit_batch_events",
            "Rows (events and quarantined frames) per journal commit.",
        )
        batch.add_metric([], count_buckets(sizes), sum_value=sizes.sum)
        yield batch

    def _journal(self) -> Iterator[Metric]:
        intake = self.monitor.sub.intake
        yield GaugeMetricFamily(
            "ivrstream_journal_position",
            "Position of the newest committed event.",
            value=intake.last_pos,
        )
        yield GaugeMetricFamily(
            "ivrstream_journal_pending_events",
            "Events and frames handed to the journal writer, not yet committed.",
            value=intake.statistics()["inflight"],
        )
        yield GaugeMetricFamily(
            "ivrstream_journal_writable",
            "1 while journal writes succeed; 0 after a failed commit.",
            value=int(intake.error is None),
        )

    def _sinks(self) -> Iterator[Metric]:
        monitor = self.monitor
        dispatchers = list(monitor.sub.dispatchers)
        last = monitor.sub.intake.last_pos
        ages = monitor.sink_ages()
        families: dict[str, CounterMetricFamily | GaugeMetricFamily] = {
            "delivered": _counter(
                "ivrstream_sink_delivered_events",
                "Events each sink confirmed.",
                ["sink"],
            ),
            "retries": _counter(
                "ivrstream_sink_retries",
                "Delivery attempts that failed and will be tried again.",
                ["sink"],
            ),
            "dead_lettered": _counter(
                "ivrstream_sink_dead_lettered_events",
                "Events a sink refused or gave up on (see `ivrstream journal dlq list`).",
                ["sink"],
            ),
            "backlog": _gauge(
                "ivrstream_sink_backlog_events",
                "Journaled events a sink has not confirmed yet.",
                ["sink"],
            ),
            "age": _gauge(
                "ivrstream_sink_oldest_undelivered_age_seconds",
                "How long ago the oldest event a sink has not confirmed was received (0: caught"
                " up).",
                ["sink"],
            ),
            "disabled": _gauge(
                "ivrstream_sink_disabled",
                "1 when a sink was disabled (its destination said it is gone).",
                ["sink"],
            ),
        }
        for dispatcher in dispatchers:
            name, stats = [dispatcher.name], dispatcher.stats
            families["delivered"].add_metric(name, stats.delivered)
            families["retries"].add_metric(name, stats.retries)
            families["dead_lettered"].add_metric(name, stats.dead_lettered)
            families["backlog"].add_metric(name, max(0, last - dispatcher.position))
            families["age"].add_metric(name, ages.get(dispatcher.name) or 0.0)
            families["disabled"].add_metric(name, int(dispatcher.state == "disabled"))
        yield from families.values()

    def _source(self) -> Iterator[Metric]:
        reconnects = _counter(
            "ivrstream_reconnects",
            "Sockets that ended and were replaced, by source and reason.",
            ["source", "reason"],
        )
        for (source, reason), count in sorted(self.monitor.reconnect_counts().items()):
            reconnects.add_metric([source, reason], count)
        yield reconnects

    def _gaps(self) -> Iterator[Metric]:
        monitor = self.monitor
        opened = _counter(
            "ivrstream_gaps_opened",
            "Sequence gaps (Event Streams) and loss windows (Notifications) opened.",
            ["source"],
        )
        for source, count in sorted(monitor.gaps_opened.items()):
            opened.add_metric([source], count)
        yield opened
        closed = _counter(
            "ivrstream_gaps_closed",
            "Gaps closed: filled (by late frames, a resend or backfill), partly_filled or lost.",
            ["state"],
        )
        for state, count in sorted(monitor.gaps_closed.items()):
            closed.add_metric([state], count)
        yield closed
        states = _gauge(
            "ivrstream_gaps",
            "Gaps recorded in the journal, by state (open ones need attention).",
            ["state"],
        )
        for state in sorted({"open", *monitor.gap_states}):
            states.add_metric([state], monitor.gap_states.get(state, 0))
        yield states
        backfill = monitor.sub.backfill
        yield CounterMetricFamily(
            "ivrstream_events_backfilled",
            "Events journaled from analytics (gap backfill and sweeps).",
            value=backfill.statistics()["events_backfilled"] if backfill else 0,
        )

    def _auth(self) -> Iterator[Metric]:
        monitor = self.monitor
        tokens = monitor.sub.tokens
        yield CounterMetricFamily(
            "ivrstream_token_refreshes",
            "Access tokens obtained.",
            value=tokens.refreshes if tokens else 0,
        )
        yield CounterMetricFamily(
            "ivrstream_token_refresh_failures",
            "Token requests that failed (each retried or reported).",
            value=tokens.failures if tokens else 0,
        )
        yield CounterMetricFamily(
            "ivrstream_auth_failures",
            "Authentication failures reported by any part (token endpoint, 401/403 upgrades).",
            value=monitor.auth_failures,
        )

    def _ivr(self) -> Iterator[Metric]:
        ivr = self.monitor.ivr
        active = _gauge("ivrstream_ivr_active_calls", "Calls in each IVR flow now.", ["flow"])
        starts = _counter("ivrstream_ivr_flow_starts", "Calls that entered each flow.", ["flow"])
        for flow in ivr.flows():
            active.add_metric([flow], ivr.active.get(flow, 0))
            starts.add_metric([flow], ivr.starts.get(flow, 0))
        yield active
        yield starts
        exits = _counter(
            "ivrstream_ivr_flow_exits",
            "Calls that left a flow, by flow and exitReason (TRANSFER, DISCONNECT,"
            " FLOW_DISCONNECT, …).",
            ["flow", "reason"],
        )
        for (flow, reason), count in sorted(ivr.exits.items()):
            exits.add_metric([flow, reason], count)
        yield exits
        transfers = _counter(
            "ivrstream_ivr_transfers",
            "Calls a flow transferred out, by flow and transferType.",
            ["flow", "type"],
        )
        for (flow, kind), count in sorted(ivr.transfers.items()):
            transfers.add_metric([flow, kind], count)
        yield transfers
        yield CounterMetricFamily(
            "ivrstream_ivr_abandons",
            "Calls abandoned in the queue the IVR sent them to (acd.end, acdOutcome ABANDON).",
            value=ivr.abandons,
        )
        containment = ivr.containment()
        yield GaugeMetricFamily(
            "ivrstream_ivr_containment_ratio",
            "Share of flow exits that were not transfers, since the start (NaN before the first"
            " exit; for a window use the exits and transfers counters).",
            value=math.nan if containment is None else containment,
        )
        names = _gauge(
            "ivrstream_ivr_flow_info", "Flow names, where events carried them.", ["flow", "name"]
        )
        for flow, name in sorted(ivr.names.items()):
            names.add_metric([flow, name], 1)
        yield names
