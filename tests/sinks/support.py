"""Delivery batches for sink tests, built the way the live pipeline builds them.

Facts come from the emulator's seeded traffic model, so the same seed always gives the same
events. Each one becomes a canonical :class:`~ivrstream.models.InteractionEvent` with its
``data`` in the source's shape (an Event Streams interaction snapshot, or a Notifications
detail-event body), then a :class:`~ivrstream.sinks.base.Delivery` holding its JSON.
"""

from __future__ import annotations

from typing import Literal

import msgspec

from ivrstream.emulator.render import detail_body, es_event_type, interaction_snapshot
from ivrstream.emulator.traffic import Fact, TrafficConfig, TrafficModel
from ivrstream.identity import event_id
from ivrstream.isotime import format_ms
from ivrstream.models import InteractionEvent
from ivrstream.sinks.base import Delivery

Source = Literal["eventstreams", "notifications"]

START_MS = 1_777_629_600_000  # 2026-05-01T10:00:00Z
_encode = msgspec.json.Encoder().encode


def facts(count: int, *, seed: int = 1) -> list[Fact]:
    """The first ``count`` facts of the seeded traffic model, in time order."""
    model = TrafficModel(TrafficConfig(seed=seed, rate=20.0, time_scale=30.0, start_ms=START_MS))
    out: list[Fact] = []
    horizon = START_MS
    while len(out) < count:
        horizon += 1_000
        out.extend(model.facts_until(horizon))
    return out[:count]


def event(
    fact: Fact,
    *,
    source: Source = "eventstreams",
    sequence_id: int | None = None,
) -> InteractionEvent:
    """``fact`` as the intake would journal it from ``source``."""
    snapshot = source == "eventstreams"
    return InteractionEvent(
        event_id=event_id(fact.conversation_id, fact.kind, fact.time_ms),
        source=source,
        event_type=fact.kind,
        conversation_id=fact.conversation_id,
        sequence_id=sequence_id if snapshot else None,
        event_time=format_ms(fact.time_ms),
        received_at=format_ms(fact.time_ms + 7),
        subscription_id="sub-test" if snapshot else None,
        source_event_type=es_event_type(fact) if snapshot else None,
        data=interaction_snapshot(fact) if snapshot else detail_body(fact),
    )


def delivery(item: InteractionEvent, pos: int) -> Delivery:
    """The journal row at ``pos`` holding ``item``."""
    return Delivery(pos, item.event_id, item.conversation_id, item.event_type, _encode(item))


def deliveries(
    count: int, *, seed: int = 1, start_pos: int = 1, source: Source = "eventstreams"
) -> list[Delivery]:
    """``count`` deliveries in journal order, positions (and sequence ids) from ``start_pos``."""
    return [
        delivery(event(fact, source=source, sequence_id=pos), pos)
        for pos, fact in enumerate(facts(count, seed=seed), start=start_pos)
    ]
