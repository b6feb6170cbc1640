"""Sinks: where journaled events are delivered. :func:`build` makes the configured ones."""

from __future__ import annotations

from ivrstream.clock import Clock
from ivrstream.config import (
    Config,
    JsonlSettings,
    NatsSettings,
    PostgresSettings,
    SinkSettings,
    WebhookSettings,
)
from ivrstream.sinks.base import Delivery, Outcome, Sink, Verdict

__all__ = ["Delivery", "Outcome", "Sink", "Verdict", "build", "build_one", "configured"]


def configured(config: Config) -> list[tuple[str, SinkSettings]]:
    """The sinks the configuration switches on, by name, in delivery order."""
    sinks = config.sinks
    named: list[tuple[str, SinkSettings | None]] = [
        ("webhook", sinks.webhook),
        ("postgres", sinks.postgres),
        ("nats", sinks.nats),
        ("jsonl", sinks.jsonl),
    ]
    return [(name, settings) for name, settings in named if settings is not None]


def build_one(settings: SinkSettings, clock: Clock) -> Sink:
    """The sink for one section; raises ConfigError naming the field (no I/O happens here)."""
    if isinstance(settings, WebhookSettings):
        from ivrstream.sinks.webhook import WebhookSink

        return WebhookSink(settings, clock)
    if isinstance(settings, PostgresSettings):
        from ivrstream.sinks.postgres import PostgresSink

        return PostgresSink(settings)
    if isinstance(settings, NatsSettings):
        from ivrstream.sinks.nats import NatsSink

        return NatsSink(settings)
    if isinstance(settings, JsonlSettings):
        from ivrstream.sinks.jsonl import JsonlSink

        return JsonlSink(settings)
    raise TypeError(f"no sink for {type(settings).__name__}")


def build(config: Config, clock: Clock) -> list[tuple[Sink, SinkSettings]]:
    """Every sink the configuration switches on, with its settings (drivers imported lazily)."""
    return [(build_one(settings, clock), settings) for _, settings in configured(config)]
