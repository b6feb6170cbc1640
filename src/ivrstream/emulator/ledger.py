"""The emulator's record of what it generated and what it actually sent.

One dict per entry, served as JSON lines by ``GET /emulator/ledger``. Kinds:

- ``generated``: a fact of the traffic model (``fact``, ``conversationId``, ``type``, ``time``).
- ``assigned``: an Event Streams subscription gave a fact a sequence id (``subscription``, ``seq``).
- ``sent``: a frame went out on a connection (``conn``, ``dialect``; ``seq``, ``topic``, ``fault``).
- ``sent_range``: fast mode sent sequence ids ``from``..``to`` on ``conn`` (one entry in all).
- ``fault``: a fault fired (``fault`` names it; ``conn`` where it has one).
- ``connection``: a socket opened or closed (``conn``, ``event``, ``code``, ``reason``).
- ``subscribed`` / ``subscription_rejected``: an Event Streams subscription was accepted
  (``subscription``, ``resumeAfter``, ``resent``) or refused (``reasons``); for Notifications,
  ``subscribed`` records a channel's topic change.
- ``channel``: a notification channel was created, expired, evicted or revoked (``channel`` is a
  short hash: channel ids are bearer secrets and never appear here).
- ``token_issued``, ``token_expired``, ``auth_failure``: OAuth and bearer-token outcomes.
- ``truncated``: the ledger reached its entry limit; nothing after this point was kept.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from typing import Any

import msgspec

Entry = dict[str, Any]


class Ledger:
    """An append-only list of entries, capped at ``limit`` so a long demo cannot exhaust memory."""

    def __init__(self, limit: int = 2_000_000) -> None:
        self.limit = limit
        self._entries: list[Entry] = []
        self.counts: Counter[str] = Counter()  # by kind, including entries past the limit
        self.fault_counts: Counter[str] = Counter()

    def record(self, kind: str, **fields: Any) -> None:
        self.counts[kind] += 1
        if kind == "fault":
            self.fault_counts[str(fields.get("fault"))] += 1
        if len(self._entries) < self.limit:
            fields["kind"] = kind
            self._entries.append(fields)
        elif len(self._entries) == self.limit:
            self._entries.append({"kind": "truncated", "limit": self.limit})

    def __len__(self) -> int:
        return len(self._entries)

    def entries(self, kind: str | None = None, since: int = 0, **match: Any) -> Iterator[Entry]:
        """Entries from position ``since``, optionally of one ``kind`` and matching ``match``."""
        for entry in self._entries[since:]:
            if kind is not None and entry["kind"] != kind:
                continue
            if all(entry.get(k) == v for k, v in match.items()):
                yield entry

    def jsonl(self, kind: str | None = None, since: int = 0) -> bytes:
        encoder = msgspec.json.Encoder()
        buffer = bytearray()
        for entry in self.entries(kind, since):
            encoder.encode_into(entry, buffer, len(buffer))
            buffer.extend(b"\n")
        return bytes(buffer)

    def summary(self) -> dict[str, Any]:
        return {
            "entries": len(self._entries),
            "limit": self.limit,
            "counts": dict(self.counts),
            "faults": dict(self.fault_counts),
        }
