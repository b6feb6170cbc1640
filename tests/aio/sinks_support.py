"""Reading back what each sink stored, for end-to-end delivery tests."""

from __future__ import annotations

import contextlib
import uuid
from pathlib import Path
from typing import Any

import msgspec


class Stored:
    """Event ids in the order a sink stored them."""

    def __init__(self, name: str, ids: list[str]) -> None:
        self.name = name
        self.ids = ids

    def assert_once_each(self, expected: set[str]) -> None:
        assert len(self.ids) == len(set(self.ids)), f"{self.name} stored duplicates"
        missing = expected - set(self.ids)
        extra = set(self.ids) - expected
        assert not missing, f"{self.name} lacks {len(missing)} events"
        assert not extra, f"{self.name} has {len(extra)} events the journal does not"

    def assert_conversation_order(self, position: dict[str, int], conversation: dict[str, str]):
        last: dict[str, int] = {}
        for event_id in self.ids:
            conv, pos = conversation[event_id], position[event_id]
            assert pos > last.get(conv, 0), f"{self.name}: {conv} out of journal order"
            last[conv] = pos


async def receiver_ids(receiver: Any) -> Stored:
    ids: list[str] = []
    after = 0
    while True:
        rows = await receiver.events(after, 5_000)
        if not rows:
            return Stored("webhook", ids)
        ids.extend(msgspec.json.decode(body)["event_id"] for _, body in rows)
        after = rows[-1][0]


def jsonl_ids(path: Path) -> Stored:
    lines = path.read_bytes().splitlines() if path.exists() else []
    return Stored("jsonl", [msgspec.json.decode(line)["event_id"] for line in lines])


async def postgres_ids(dsn: str) -> Stored:
    import asyncpg

    conn = await asyncpg.connect(dsn)
    try:
        rows = await conn.fetch("SELECT event_id FROM ivr_events")
    finally:
        await conn.close()
    return Stored("postgres", [r["event_id"] for r in rows])


async def nats_ids(url: str, stream: str) -> Stored:
    import nats

    nc = await nats.connect(url)
    try:
        js = nc.jetstream()
        info = await js.stream_info(stream)
        ids: list[str] = []
        sub = await js.pull_subscribe(">", stream=stream, durable=f"check-{uuid.uuid4().hex[:8]}")
        while len(ids) < info.state.messages:
            for msg in await sub.fetch(min(1_000, info.state.messages - len(ids)), timeout=5):
                ids.append(msg.headers["Nats-Msg-Id"])
                await msg.ack()
        return Stored("nats", ids)
    finally:
        await nc.close()


async def delete_stream(url: str, stream: str) -> None:
    import nats

    nc = await nats.connect(url)
    try:
        with contextlib.suppress(Exception):  # it may never have been created
            await nc.jetstream().delete_stream(stream)
    finally:
        await nc.close()


def journal_index(events: list[dict[str, Any]]) -> tuple[dict[str, int], dict[str, str]]:
    """event id → journal order, event id → conversation."""
    return (
        {e["event_id"]: i + 1 for i, e in enumerate(events)},
        {e["event_id"]: e["conversation_id"] for e in events},
    )
