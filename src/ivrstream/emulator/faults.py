"""Faults the emulator can inject, from ``--faults SPEC`` or ``POST /emulator/faults``.

Standing settings apply until changed; actions fire once. Every fault that fires is counted in
the ledger (kind ``fault``). Randomness comes from a seeded generator, so a fault run repeats.

Spec syntax (command line): comma-separated ``name=value``; lists join items with ``+``::

    drop_after=300,duplicate=0.01,reorder=0.02,malformed=0.005,malformed_kinds=invalid_json+oversized
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Any, Literal

import msgspec

MALFORMED_KINDS = (
    "invalid_json",
    "invalid_msgpack",
    "missing_field",
    "wrong_type",
    "oversized",
    "truncated_event",  # a real event cut in half: undecodable, and full of caller data
)
ACTIONS = (
    "drop",  # abort every open socket now (no close frame: the client sees 1006)
    "stall",  # stop all traffic, heartbeats included, on every open socket
    "lose_buffer",  # Event Streams forgets every subscription's resend buffer
    "revoke_tokens",  # every issued token becomes invalid; Event Streams sockets close with 4001
    "expire_channels",  # every notification channel expires now
    "evict_channel",  # the least recently used channel is evicted as if a 21st had been created
    "socket_closing",  # notification sockets get v2.system.socket_closing, then close after grace
    "malformed",  # one malformed frame of each kind in malformed_kinds on every socket
)


class FaultSettings(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """Standing faults. Shares are probabilities per event frame (0 to 1)."""

    drop_after: int | None = None  # abort each socket after this many event frames
    stall_after: int | None = None  # each socket goes silent after this many event frames
    duplicate: float = 0.0  # share of event frames sent twice
    reorder: float = 0.0  # share of event frames held back and sent after the next one
    skip: float = 0.0  # share of event frames never sent on the socket (still resendable)
    malformed: float = 0.0  # share of event frames followed by a malformed frame
    malformed_kinds: list[str] = msgspec.field(default_factory=lambda: list(MALFORMED_KINDS[:5]))
    oversized_bytes: int = 1_100_000  # size of an "oversized" malformed frame
    forbid_subscriptions: bool = False  # Event Streams answers every subscription with 4003
    token_errors: int = 0  # the next N token requests answer 503
    token_rate_limited: int = 0  # the next N token requests answer 429 with Retry-After
    analytics_errors: int = 0  # the next N analytics requests answer 503
    analytics_rate_limited: int = 0  # the next N analytics requests answer 429 with Retry-After
    retry_after: int = 2  # the Retry-After (seconds) of injected 429s


class FaultSpecError(ValueError):
    """A ``--faults`` spec or fault request that names an unknown fault or a bad value."""


class FaultRequest(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """The body of ``POST /emulator/faults``: settings to change and actions to fire."""

    set: dict[str, Any] = msgspec.field(default_factory=dict)
    actions: list[str] = msgspec.field(default_factory=list)


def parse_spec(spec: str, base: FaultSettings | None = None) -> FaultSettings:
    """``"drop_after=300,duplicate=0.01"`` → settings (on top of ``base``)."""
    changes: dict[str, Any] = {}
    for item in filter(None, (part.strip() for part in spec.split(","))):
        name, sep, value = item.partition("=")
        if not sep:
            raise FaultSpecError(f"fault {item!r} needs a value: name=value")
        changes[name.strip()] = value.split("+") if name.strip() == "malformed_kinds" else value
    return apply_changes(base or FaultSettings(), changes)


def apply_changes(settings: FaultSettings, changes: dict[str, Any]) -> FaultSettings:
    merged = msgspec.structs.asdict(settings) | changes
    try:
        updated = msgspec.convert(merged, FaultSettings, strict=False)
    except msgspec.ValidationError as exc:
        raise FaultSpecError(f"bad fault setting: {exc}") from exc
    unknown = set(updated.malformed_kinds) - set(MALFORMED_KINDS)
    if unknown:
        raise FaultSpecError(f"unknown malformed kinds {sorted(unknown)}; known: {MALFORMED_KINDS}")
    for name in ("duplicate", "reorder", "malformed"):
        if not 0.0 <= getattr(updated, name) <= 1.0:
            raise FaultSpecError(f"{name} is a share between 0 and 1")
    return updated


@dataclass
class OutFrame:
    """A frame to write: a text frame when ``text``, else a binary frame."""

    payload: bytes
    text: bool
    seq: int | None = None
    fact: str | None = None
    topic: str | None = None
    fault: str | None = None


Then = Literal["drop", "stall"] | None


class FrameFaults:
    """Applies the standing frame faults to one connection's event frames (no I/O).

    Feed each event frame to :meth:`plan`; write the frames it returns, in order, then act on
    ``then``. ``make_malformed(kind)`` builds a dialect's malformed frame.
    """

    def __init__(self, settings_source: FaultState, make_malformed: Any) -> None:
        self._state = settings_source
        self.make_malformed = make_malformed
        self._held: OutFrame | None = None
        self.event_frames = 0
        self._malformed_turn = 0

    def plan(self, frame: OutFrame) -> tuple[list[OutFrame], Then]:
        s = self._state.settings
        rng = self._state.rng
        self.event_frames += 1
        ordered: list[OutFrame]
        if s.skip and rng.random() < s.skip:
            self._state.fired("skip", seq=frame.seq)
            ordered = []
        elif self._held is not None:
            ordered = [frame, self._held]
            self._held = None
        elif s.reorder and rng.random() < s.reorder:
            self._held = frame
            self._state.fired("reorder", seq=frame.seq)
            ordered = []
        else:
            ordered = [frame]
        out: list[OutFrame] = []
        for f in ordered:
            out.append(f)
            if s.duplicate and rng.random() < s.duplicate:
                self._state.fired("duplicate", seq=f.seq)
                out.append(OutFrame(f.payload, f.text, f.seq, f.fact, f.topic, fault="duplicate"))
        if s.malformed and s.malformed_kinds and rng.random() < s.malformed:
            kind = s.malformed_kinds[self._malformed_turn % len(s.malformed_kinds)]
            self._malformed_turn += 1
            out.append(self.malformed(kind))
        then: Then = None
        if s.drop_after and self.event_frames % s.drop_after == 0:
            then = "drop"
        elif s.stall_after and self.event_frames == s.stall_after:
            then = "stall"
        return out, then

    def malformed(self, kind: str) -> OutFrame:
        self._state.fired("malformed", variant=kind)
        frame: OutFrame = self.make_malformed(kind, self._state.settings.oversized_bytes)
        frame.fault = f"malformed:{kind}"
        return frame


class FaultState:
    """The emulator's current faults, their random source and their one-shot counters."""

    def __init__(self, settings: FaultSettings, seed: int, on_fire: Any) -> None:
        self.settings = settings
        self.rng = random.Random(f"{seed}/faults")
        self._on_fire = on_fire  # called as on_fire(fault_name, **details) to record in the ledger

    def fired(self, fault: str, **details: Any) -> None:
        self._on_fire(fault, **details)

    def take(self, counter: str) -> bool:
        """Consume one use of a countdown fault (``token_errors`` …); True if it fires now."""
        remaining = getattr(self.settings, counter)
        if remaining <= 0:
            return False
        setattr(self.settings, counter, remaining - 1)
        self.fired(counter)
        return True

    def update(self, changes: dict[str, Any]) -> None:
        self.settings = apply_changes(self.settings, changes)
