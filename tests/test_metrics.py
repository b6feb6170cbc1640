"""/metrics during an emulator run: the counters agree with the emulator's ledger and the journal,
names follow Prometheus conventions, every subscriber has its own registry, no secret leaks."""

from __future__ import annotations

import re
from collections import Counter
from pathlib import Path

import aiohttp
from prometheus_client import REGISTRY
from prometheus_client.parser import text_string_to_metric_families

from ivrstream.aio.monitor import Monitor, quarantine_label
from ivrstream.aio.subscriber import Subscriber
from ivrstream.journal import open_journal
from ivrstream.metrics import count_buckets, latency_buckets
from ivrstream.stats import CountHistogram, LatencyHistogram
from tests.aio.support import (
    FAST_TRAFFIC,
    assert_matches_ledger,
    committed,
    es_config,
    journal_events,
    until,
)

Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


async def scrape(http: aiohttp.ClientSession, monitor: Monitor) -> tuple[str, Samples]:
    async with http.get(f"{monitor.url}/metrics") as response:
        assert response.status == 200
        assert response.headers["Content-Type"].startswith("text/plain")
        text = await response.text()
    samples: Samples = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            samples[sample.name, tuple(sorted(sample.labels.items()))] = sample.value
    return text, samples


def total(samples: Samples, name: str, **labels: str) -> float:
    """Sum of ``name`` over the samples whose labels include ``labels``."""
    return sum(
        value
        for (sample, sample_labels), value in samples.items()
        if sample == name and set(labels.items()) <= set(sample_labels)
    )


def by_label(samples: Samples, name: str, label: str) -> dict[str, float]:
    out: dict[str, float] = {}
    for (sample, labels), value in samples.items():
        if sample == name:
            key = dict(labels)[label]
            out[key] = out.get(key, 0) + value
    return out


async def test_counters_agree_with_the_ledger_and_the_journal(emulator_factory, tmp_path, http):
    async with emulator_factory(**FAST_TRAFFIC) as emu:
        emu.set_faults(drop_after=400, duplicate=0.02, reorder=0.02, malformed=0.01)
        journal = tmp_path / "j.db"
        config = es_config(emu, journal, sinks={"jsonl": {"path": str(tmp_path / "out.jsonl")}})
        sub = Subscriber(config)
        monitor = Monitor(sub, listen="127.0.0.1:0")
        async with sub:
            await monitor.start()
            try:
                await committed(sub, 1_500, within=30)
                text, during = await scrape(http, monitor)  # mid-run: sane, not yet exact
                assert (
                    0
                    < total(during, "ivrstream_events_received_total")
                    <= (sub.intake.stats.committed)
                )
                # no new events: once everything assigned is journaled and delivered, exact
                emu.world.paused = True
                await caught_up(emu, sub)
                jsonl = sub.dispatchers[0]
                await until(lambda: jsonl.position >= sub.intake.last_pos)
                text, samples = await scrape(http, monitor)
                endings = sum(sub.source.endings.values())
                access_token = sub.tokens.token.access_token
            finally:
                await monitor.stop()
        report = assert_matches_ledger(journal, emu)

    events = journal_events(journal)
    with open_journal(journal) as j:
        stats = j.stats()
        reasons = Counter(quarantine_label(q["reason"]) for q in j.quarantined(10_000))
        gaps = j.gaps()
    # every event received is a journaled event, by source and type
    assert total(samples, "ivrstream_events_received_total") == len(events) == stats["events"]
    assert by_label(samples, "ivrstream_events_received_total", "type") == stats["by_type"]
    assert report["events"] == len(events)
    assigned = [
        e
        for e in emu.ledger.entries("assigned", subscription=report["subscription"])
        if report["first"] <= e["seq"] <= report["high"]
    ]
    assert total(samples, "ivrstream_events_received_total") == len(assigned) - report["missing"]
    # quarantine, by kind of reason
    assert total(samples, "ivrstream_quarantined_frames_total") == stats["quarantined"] > 0
    assert by_label(samples, "ivrstream_quarantined_frames_total", "reason") == reasons
    # ordering: duplicates counted and dropped, reordered frames held
    assert total(samples, "ivrstream_frames_ordered_total", disposition="duplicate") > 0
    assert total(samples, "ivrstream_frames_ordered_total", disposition="early") > 0
    # reconnects by reason: the emulator dropped the socket every 400 frames
    assert total(samples, "ivrstream_reconnects_total", source="eventstreams") == endings >= 2
    opened = list(emu.ledger.entries("connection", event="opened", dialect="eventstreams"))
    assert endings == len(opened) - 1
    # gaps: as many opened as the journal recorded, the gauge says the journal's states
    assert total(samples, "ivrstream_gaps_opened_total") == len(gaps)
    open_gaps = sum(1 for g in gaps if g.state == "open")
    assert total(samples, "ivrstream_gaps", state="open") == open_gaps
    # the sink has everything
    assert total(samples, "ivrstream_sink_delivered_events_total", sink="jsonl") == len(events)
    assert total(samples, "ivrstream_sink_backlog_events", sink="jsonl") == 0
    assert total(samples, "ivrstream_sink_oldest_undelivered_age_seconds", sink="jsonl") == 0
    # latency histograms count every committed event; commits add up
    assert total(samples, "ivrstream_receive_to_commit_seconds_count") >= len(events)
    batch_sum = total(samples, "ivrstream_journal_commit_batch_events_sum")
    assert batch_sum == len(events) + stats["quarantined"] + stats_duplicates(samples)
    assert total(samples, "ivrstream_journal_commit_duration_seconds_count") == total(
        samples, "ivrstream_journal_commit_batch_events_count"
    )
    assert total(samples, "ivrstream_token_refreshes_total") >= 1
    # the IVR, as the journal tells it
    kinds = Counter(e["event_type"] for e in events)
    assert total(samples, "ivrstream_ivr_flow_starts_total") == kinds["flow.start"]
    assert total(samples, "ivrstream_ivr_flow_exits_total") == kinds["flow.end"]
    transfers = sum(
        1
        for e in events
        if e["event_type"] == "flow.end" and e["data"]["outcome"]["exitReason"] == "TRANSFER"
    )
    abandons = sum(
        1
        for e in events
        if e["event_type"] == "acd.end" and e["data"]["outcome"]["acdOutcome"] == "ABANDON"
    )
    assert total(samples, "ivrstream_ivr_transfers_total", type="ACD") == transfers > 0
    assert total(samples, "ivrstream_ivr_abandons_total") == abandons
    ratio = total(samples, "ivrstream_ivr_containment_ratio")
    assert abs(ratio - (1 - transfers / kinds["flow.end"])) < 1e-9
    # nothing secret
    assert "demo-secret" not in text
    assert access_token not in text
    assert_conventional(text)


async def caught_up(emu, sub: Subscriber) -> None:
    """With the emulator paused: wait until ``sub`` journaled everything assigned to it."""
    source = sub.source
    assert source is not None
    assigned = emu.ledger.entries("assigned", subscription=source.subscription_id)
    high = max(e["seq"] for e in assigned)
    stream = sub.intake.streams[source.key]
    await until(lambda: stream.ordering.high >= high and not stream.ordering.held, within=20)
    await sub.intake.wait_idle()


def stats_duplicates(samples: Samples) -> float:
    return total(samples, "ivrstream_journal_duplicate_events_total")


def assert_conventional(text: str) -> None:
    """Every family is ivrstream_-prefixed; counters end in _total; durations in _seconds."""
    types = dict(re.findall(r"^# TYPE (\S+) (\S+)$", text, re.MULTILINE))
    assert types
    for name, kind in types.items():
        assert name.startswith("ivrstream_"), name
        if kind == "counter":
            assert name.endswith("_total") or f"{name}_total " in text, name
        if "duration" in name or "latency" in name or "_to_" in name:
            assert name.endswith("_seconds"), name


async def test_every_subscriber_has_its_own_registry(emulator_factory, tmp_path, http):
    async with emulator_factory(**FAST_TRAFFIC) as emu:
        subs = [Subscriber(es_config(emu, tmp_path / f"j{i}.db")) for i in range(2)]
        monitors = [Monitor(s, listen="127.0.0.1:0") for s in subs]
        async with subs[0], subs[1]:
            for monitor in monitors:
                await monitor.start()
            try:
                await committed(subs[0], 200)
                await committed(subs[1], 200)
                emu.world.paused = True
                for sub in subs:
                    await caught_up(emu, sub)
                counts = []
                for monitor in monitors:
                    _, samples = await scrape(http, monitor)
                    counts.append(total(samples, "ivrstream_events_received_total"))
            finally:
                for monitor in monitors:
                    await monitor.stop()
        assert monitors[0].registry is not monitors[1].registry
    assert REGISTRY.get_sample_value("ivrstream_journal_position") is None
    for i, count in enumerate(counts):
        with open_journal(Path(tmp_path / f"j{i}.db")) as j:
            assert count == j.count()


def test_latency_buckets_are_cumulative_and_exact():
    histogram = LatencyHistogram()
    histogram.add_many([0.0001, 0.0002, 0.001, 0.0011, 0.05, 2.0, 500.0])
    buckets = dict(latency_buckets(histogram))
    assert buckets["0.0001"] == 1  # le: the bound itself is inside
    assert buckets["0.000316228"] == 2
    assert buckets["0.001"] == 3
    assert buckets["0.1"] == 5
    assert buckets["3.16228"] == 6
    assert buckets["100"] == 6
    assert buckets["+Inf"] == 7
    values = list(buckets.values())
    assert values == sorted(values)


def test_count_buckets():
    sizes = CountHistogram()
    for value in (1, 1, 3, 1_000, 9_999):
        sizes.add(value)
    buckets = dict(count_buckets(sizes))
    assert buckets["1"] == 2
    assert buckets["5"] == 3
    assert buckets["1000"] == 4
    assert buckets["5000"] == 4
    assert buckets["+Inf"] == 5
    assert sizes.sum == 11_004
