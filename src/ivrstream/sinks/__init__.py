"""Sinks: where journaled events are delivered. :func:`build` makes the configured ones."""

from __future__ import annotations

from ivrstream.clock import Clock
from ivrstream.config import Config, SinkSettings
from ivrstream.sinks.base import Delivery, Outcome, Sink, Verdict

__all__ = ["Delivery", "Outcome", "Sink", "Verdict", "build"]


def build(config: Config, clock: Clock) -> list[tuple[Sink, SinkSettings]]:
    """Every sink the configuration switches on, with its settings (drivers imported lazily)."""
    out: list[tuple[Sink, SinkSettings]] = []
    sinks = config.sinks
    if sinks.webhook is not None:
        from ivrstream.sinks.webhook import WebhookSink

        out.append((WebhookSink(sinks.webhook, clock), sinks.webhook))
    if sinks.postgres is not None:
        from ivrstream.sinks.postgres import PostgresSink

        out.append((PostgresSink(sinks.postgres), sinks.postgres))
    if sinks.nats is not None:
        from ivrstream.sinks.nats import NatsSink

        out.append((NatsSink(sinks.nats), sinks.nats))
    if sinks.jsonl is not None:
        from ivrstream.sinks.jsonl import JsonlSink

        out.append((JsonlSink(sinks.jsonl), sinks.jsonl))
    return out
